"""The sampling lesson in a real Chromium: slider, top-k, bad input and sampling.

The page's Bokeh document says what is drawn (sources are named in
dashboard/views/sampling.py); the expected numbers come from torch on the model's logits,
computed here with the engine, independently of the page.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from playwright.sync_api import expect

from dashboard.state import DEFAULT_TEXT
from models.bpe import readable
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_data, record_errors, serve, wait_data, wait_ready

pytestmark = pytest.mark.browser

QUERY = 4  # "·not" in the default text, followed by "·exist": a peaked distribution


def _expected():
    engine = Engine(STATIC_DIR)
    model = engine.default_model
    ids = engine.tokenizer(model).encode(DEFAULT_TEXT)
    logits = torch.from_numpy(engine.run(model, ids).logits[QUERY].astype(np.float64))
    return logits


@pytest.fixture(scope="module")
def page(browser):
    with serve() as (url, _proc):
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        record_errors(page)
        page.goto(f"{url}?lesson=sampling&q={QUERY}")
        wait_ready(page, "sampling-bars")
        yield page
        page.close()


def test_slider_changes_the_bars_and_the_curve_marker(page):
    logits = _expected()
    top = torch.topk(logits, 12).indices.tolist()
    assert model_data(page, "sampling-bars", "tid")[:12] == top
    np.testing.assert_allclose(
        model_data(page, "sampling-bars", "final")[:12],
        torch.softmax(logits, -1)[top].numpy(),
        atol=1e-6,
    )
    assert model_data(page, "sampling-marker", "x") == [1] * 5
    before = model_data(page, "sampling-bars", "final")

    track = page.locator(".temperature-slider .noUi-base")
    box = track.bounding_box()
    page.mouse.click(box["x"] + 0.1 * box["width"], box["y"] + box["height"] / 2)  # T = 0.5
    wait_data(page, "sampling-marker", "x", "v => v.length === 5 && v[0] !== 1")
    t = model_data(page, "sampling-marker", "x")[0]
    assert 0.4 <= t <= 0.6 and model_data(page, "sampling-entropy-marker", "x") == [t]
    expect(page.locator(".temperature-input input")).to_have_value(f"{t:g}")
    after = model_data(page, "sampling-bars", "final")
    assert after != before
    np.testing.assert_allclose(after[:12], torch.softmax(logits / t, -1)[top].numpy(), atol=1e-6)
    # the marker sits on the probability curves at that temperature
    marker_y = model_data(page, "sampling-marker", "y")
    np.testing.assert_allclose(marker_y, torch.softmax(logits / t, -1)[top[:5]].numpy(), atol=1e-6)
    assert page.errors == []


def test_top_k_greys_out_tokens(page):
    k_box = page.locator(".top-k-input input")
    k_box.fill("3")
    k_box.press("Enter")
    wait_data(page, "sampling-bars", "kept", "v => v.filter(Boolean).length === 3")
    kept = model_data(page, "sampling-bars", "kept")
    hatch = model_data(page, "sampling-bars", "hatch")
    final = model_data(page, "sampling-bars", "final")
    assert kept[:3] == [True] * 3 and not any(kept[3:])
    assert all(h == "/" for h in hatch[3:]) and all(f == 0 for f in final[3:])
    assert sum(final[:3]) == pytest.approx(1.0)
    expect(page.locator(".sampling-summary")).to_contain_text("keep 3 of 1025 tokens")
    assert page.errors == []


def test_bad_input_shows_a_message_and_keeps_the_state(page):
    before = model_data(page, "sampling-bars", "final")
    box = page.locator(".top-p-input input")
    box.fill("1.5")
    box.press("Enter")
    message = page.locator(".message.error").filter(has_text="top-p")
    expect(message).to_be_visible()
    expect(message).to_contain_text("(0, 1]")
    assert model_data(page, "sampling-bars", "final") == before
    box.fill("1")
    box.press("Enter")
    expect(message).to_be_hidden()


def test_sampled_token_is_appended_to_the_text(page):
    text_box = page.locator("textarea")
    before = text_box.input_value()
    assert before == DEFAULT_TEXT
    n_chips = page.locator(".chip").count()
    page.get_by_role("button", name="Sample next token").click()
    expect(text_box).not_to_have_value(before, timeout=15_000)  # (Panel's textarea: shadow DOM)
    after = text_box.input_value()
    assert after.startswith(before) and len(after) > len(before)
    listed = page.locator(".sampling-steps td.tok").first.inner_text()
    assert listed.rstrip("*") == readable(after[len(before) :].encode("utf-8"))
    # the step is listed (as text: the table escapes it), and the model ran on the new text
    steps = page.locator(".sampling-steps table")
    expect(steps).to_contain_text("T / k / p")
    if not listed.endswith("*"):  # "*": the longer text re-tokenises differently
        expect(page.locator(".chip")).to_have_count(n_chips + 1)
    # the bars now show the distribution the token was drawn from, highlighting it
    chosen = model_data(page, "sampling-bars", "chosen")
    assert chosen.count(True) == 1
    assert page.errors == []


def test_preset_button_stays_selected_and_sets_all_three(page):
    page.get_by_role("button", name="Balanced").click()
    expect(page.locator(".temperature-input input")).to_have_value("0.7")
    expect(page.locator(".top-p-input input")).to_have_value("0.9")
    expect(page.locator(".top-k-input input")).to_have_value("")
    expect(page.locator(".preset-explain")).to_contain_text("Balanced")
    # the clicked button is still the active one once the server has answered
    page.wait_for_timeout(500)
    active = page.locator(".bk-btn-group .bk-btn.bk-active")
    assert "Balanced" in active.all_inner_texts()
    assert "Custom" not in active.all_inner_texts()
    assert page.errors == []
