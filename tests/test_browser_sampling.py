"""The sampling lesson in a real Chromium: slider, top-k, bad input and sampling.

The page's Bokeh document says what is drawn (sources are named in
dashboard/views/sampling.py); the expected numbers come from torch on the model's logits,
computed here with the engine, independently of the page.
"""

from __future__ import annotations

import json

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
def server():
    with serve() as (url, _proc):
        yield url


def _open(browser, url):
    """A new session of the lesson at QUERY, drawn; ``page.received``: the websocket's frames
    from the server."""
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    record_errors(page)
    page.received = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: page.received.append(f)))
    page.goto(f"{url}?lesson=sampling&q={QUERY}")
    wait_ready(page, "sampling-bars")
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    page = _open(browser, server)
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


# -- a slider move is light; the values in use are the ones shown ---------------------------------
JS_SLIDER = """
(t) => {
  for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.type === "Slider" && (m.css_classes || []).includes("temperature-slider")) {
      if (t !== null) m.value = t;
      return Bokeh.index.find_one(m).title_el.textContent;
    }
  return null;
}
"""


def _slider(page, t=None) -> str:
    """Set the temperature slider's value as a drag would (``t``); the slider's label."""
    return page.evaluate(JS_SLIDER, t)


def _changes(page) -> list[tuple[str, str]]:
    """(kind, attribute) of every change the server sent since ``page.received`` was cleared."""
    out = []
    for frame in page.received:
        try:
            msg = json.loads(frame)
        except (TypeError, ValueError):
            continue
        if isinstance(msg, dict):
            out += [(e.get("kind"), e.get("attr")) for e in msg.get("events", [])]
    return out


def _wait_final(page, want, n=12):
    """Until the first ``n`` bars' solid heights are ``want`` (to 1e-6)."""
    want = [float(w) for w in want[:n]]
    wait_data(page, "sampling-bars", "final",
              f"v => {json.dumps(want)}.every((w, i) => Math.abs(v[i] - w) < 1e-6)")  # fmt: skip


@pytest.fixture(scope="module")
def fresh(browser, server):
    """A page of its own (the tests above sample a token, which moves the position)."""
    page = _open(browser, server)
    yield page
    page.close()


def _reset(page):
    """T = 1, no cuts; once the bars show it."""
    for box, text in (("temperature-input", "1"), ("top-k-input", ""), ("top-p-input", "1")):
        field = page.locator(f".{box} input")
        field.fill(text)
        field.press("Enter")
    logits = _expected()
    _wait_final(page, torch.softmax(logits, -1)[torch.topk(logits, 12).indices].numpy())


def test_a_slider_move_changes_few_models_and_no_style_sheets(browser, server):
    """The first move of a fresh page included, where an HTML pane re-sent its style sheets and
    the page laid itself out again (three times as slow as the next move)."""
    logits = _expected()
    page = _open(browser, server)
    top = torch.topk(logits, 12).indices.tolist()
    page.wait_for_timeout(1000)  # the first draws settle
    for t in (0.35, 1.85):
        page.received.clear()
        _slider(page, t)
        _wait_final(page, torch.softmax(logits / t, -1)[top].numpy())
        page.wait_for_timeout(500)  # anything sent after the bars
        changes = _changes(page)
        attrs = [a for _, a in changes]
        assert "stylesheets" not in attrs and "css_classes" not in attrs, changes
        # one new data each: bars, curve markers, entropy marker (the chosen token's triangle
        # stays where it was); the texts, spans, title, axis range, T box and address bar
        assert attrs.count("data") == 3, changes
        assert len(changes) <= 12, changes
    page.close()


def test_a_typed_temperature_is_the_one_the_slider_shows(fresh):
    page = fresh
    _reset(page)
    logits = _expected()
    top = torch.topk(logits, 12).indices.tolist()
    box = page.locator(".temperature-input input")
    for typed, shown in (("0.001", "0.001"), ("2.35", "2.35"), ("0.0125", "0.0125")):
        box.fill(typed)
        box.press("Enter")
        t = float(typed)
        _wait_final(page, torch.softmax(logits / t, -1)[top].numpy())
        expect(page.locator(".temperature-slider .bk-slider-value")).to_have_text(shown)
        assert _slider(page) == f"Temperature T: {shown}"
    box.fill("1")
    box.press("Enter")
    expect(page.locator(".temperature-slider .bk-slider-value")).to_have_text("1")
    assert page.errors == []


@pytest.mark.parametrize(
    ("box", "good", "bad", "words"),
    [
        ("temperature-input", "0.7", "abc", "still using T = 0.7."),
        ("temperature-input", "0.7", "-1", "still using T = 0.7."),
        ("top-k-input", "3", "abc", "still using top-k = 3."),
        ("top-k-input", "3", "-1", "still using top-k = 3."),
        ("top-p-input", "0.9", "2", "still using top-p = 0.9."),
    ],
)
def test_a_refused_value_says_which_value_is_in_use(fresh, box, good, bad, words):
    page = fresh
    _reset(page)
    logits = _expected()
    top = torch.topk(logits, 12).indices.tolist()
    t, k, p = {"temperature-input": (0.7, None, 1.0), "top-k-input": (1.0, 3, 1.0),
               "top-p-input": (1.0, None, 0.9)}[box]  # fmt: skip
    # what the plots must keep showing: temperature, then top-k, then top-p (torch)
    probs = torch.softmax(logits / t, -1)
    if k is not None:
        probs = torch.where(probs >= torch.topk(probs, k).values[-1], probs, 0.0)
    if p < 1:
        ranked, order = torch.sort(probs, descending=True)
        before = torch.cumsum(ranked, 0) - ranked
        probs = torch.zeros_like(probs).scatter(0, order, torch.where(before < p, ranked, 0.0))
    want = (probs / probs.sum())[top].numpy()
    field = page.locator(f".{box} input")
    field.fill(good)
    field.press("Enter")
    _wait_final(page, want)
    field.fill(bad)
    field.press("Enter")
    message = page.locator(".message.error")
    expect(message).to_be_visible()
    expect(message).to_contain_text(words)
    # and it looks like an error: a red rule at its left (the pane's own shadow-root style)
    rule = message.evaluate("e => getComputedStyle(e).borderLeftColor")
    assert rule == "rgb(207, 34, 46)", rule
    expect(field).to_have_value(bad)  # left there to be corrected
    page.wait_for_timeout(300)
    np.testing.assert_allclose(model_data(page, "sampling-bars", "final")[:12], want, atol=1e-6)
    _reset(page)  # a valid value: the message goes
    expect(message).to_be_hidden()
    assert page.errors == []


JS_LEGEND = """
() => {
  const doc = Bokeh.documents.find(d => d.get_model_by_name("sampling-entropy-figure"));
  const fig = doc.get_model_by_name("sampling-entropy-figure");
  return fig.select({type: Bokeh.Models.get("LegendItem")}).map(i => [i.label.value, i.visible,
    i.renderers.map(r => [r.data_source.name, r.glyph.line_dash.value])]);
}
"""


def test_the_entropy_legend_shows_the_dotted_curve_only_beside_a_cut(fresh):
    page = fresh
    _reset(page)
    k_box, p_box = page.locator(".top-k-input input"), page.locator(".top-p-input input")
    for k, p, cut in (("", "1", False), ("3", "1", True), ("", "1", False), ("", "0.8", True),
                      ("", "1", False)):  # fmt: skip
        k_box.fill(k)
        k_box.press("Enter")
        p_box.fill(p)
        p_box.press("Enter")
        n = 101 if cut else 0
        wait_data(page, "sampling-entropy-plain", "y", f"v => v.length === {n}")
        (solid, s_visible, s_lines), (dotted, d_visible, d_lines) = page.evaluate(JS_LEGEND)
        assert (solid, s_visible) == ("sampled from", True)
        assert s_lines == [["sampling-entropy", []]]  # the solid curve
        assert (dotted, d_visible) == ("T alone (no cuts)", cut), (k, p)
        assert d_lines[0][0] == "sampling-entropy-plain" and d_lines[0][1] != []  # dotted
    assert page.errors == []


JS_MARK = """
() => {
  const doc = Bokeh.documents.find(d => d.get_model_by_name("sampling-tempered-mark"));
  const r = doc.get_model_by_name("sampling-tempered-mark");
  return [r.glyph.type, r.glyph.y.field, r.glyph.width.value, r.data_source.name, r.visible];
}
"""


def test_a_line_marks_the_probability_after_temperature_on_every_bar(fresh):
    page = fresh
    _reset(page)
    logits = _expected()
    top = torch.topk(logits, 12).indices.tolist()
    k_box = page.locator(".top-k-input input")
    for t, k in ((1.0, None), (1.6, 3)):
        _slider(page, t)
        k_box.fill("" if k is None else str(k))
        k_box.press("Enter")
        tempered = torch.softmax(logits / t, -1)
        final = tempered
        if k is not None:  # top-k keeps the k likeliest, renormalised
            keep = torch.tensor(top[:k])
            final = torch.zeros_like(tempered)
            final[keep] = tempered[keep] / tempered[keep].sum()
        _wait_final(page, final[top].numpy())
        assert page.evaluate(JS_MARK) == ["Rect", "tempered", 0.8, "sampling-bars", True]
        tid = model_data(page, "sampling-bars", "tid")
        assert tid[:12] == top
        # the line's height on every bar, cut or not (where nothing is cut it sits on top of
        # the solid bar, which would hide the pale one): softmax(logits / T)
        got = model_data(page, "sampling-bars", "tempered")
        np.testing.assert_allclose(got, tempered[tid].numpy(), atol=1e-9)
    k_box.fill("")
    k_box.press("Enter")
    assert page.errors == []
