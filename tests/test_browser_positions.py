"""The positions lesson in a real Chromium, dashboard and snapshot: the RoPE pair turns with
the position slider, the ALiBi slopes follow the head count (6 and 12: not powers of two), and
the ALiBi what-if follows the layer and head, each as numbers from the pure functions here.

Oracles: dashboard.lessons.positions (itself tested against Hugging Face's RoPE and Bloom's
ALiBi in test_lesson_positions.py) on the engine's scores, and the sinusoidal formula."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from dashboard.lessons import positions as P
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_set, open_offline, record_errors, serve, wait_ready

pytestmark = pytest.mark.browser

TEXT = "Return the value of the named attribute of object."
JS_IMAGE = """(n) => { for (const d of Bokeh.documents) { const m = d.get_model_by_name(n);
  if (m) { const a = m.data.image[0]; return {shape: a.shape, values: Array.from(a,
  v => Number.isFinite(v) ? v : String(v))}; } } return null; }"""
JS_ARROW = """() => { for (const d of Bokeh.documents) {
  const m = d.get_model_by_name('positions-rope-arrow');
  if (m) return [m.data.x1[0], m.data.y1[0]]; }
  return null; }"""


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _image(page, name) -> np.ndarray:
    got = page.evaluate(JS_IMAGE, name)
    values = [float(v) if isinstance(v, str) else v for v in got["values"]]
    return np.array(values, dtype=np.float64).reshape(got["shape"])


def _slopes(page) -> list[float]:
    cells = page.locator(".positions-slopes tr td:nth-child(2)").all_inner_texts()
    return [float(c) for c in cells]


def _what_if(engine, model, layer):
    ids = engine.tokenizer(model).encode(TEXT)
    return P.alibi_what_if(engine.run(model, ids).attn_scores[layer])


# -- the dashboard ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


def test_the_dashboard_turns_the_pair_and_computes_the_slopes(server, browser, engine):
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    record_errors(page)
    text = TEXT.replace(" ", "+")
    page.goto(f"{server}?lesson=positions&text={text}&pair=3&pos=40&alibi=6&layer=1&head=2")
    wait_ready(page, "positions-alibi-probs-labels")
    theta = P.rope_frequencies(32)[3]
    want = P.rotate_pair([1.0, 0.0], [40], theta)[0]
    page.wait_for_function(f"() => ({JS_ARROW})() !== null")
    np.testing.assert_allclose(page.evaluate(JS_ARROW), want, atol=1e-12)
    assert _slopes(page) == pytest.approx(P.alibi_slopes(6).tolist(), rel=1e-5)
    box = page.locator(".positions-alibi-heads input")
    box.fill("12")
    box.press("Enter")
    page.wait_for_function("() => new URL(location.href).searchParams.get('alibi') === '12'")
    expect(page.locator(".positions-slopes tr")).to_have_count(13)
    assert _slopes(page) == pytest.approx(P.alibi_slopes(12).tolist(), rel=1e-5)
    w = _what_if(engine, engine.default_model, 1)
    np.testing.assert_allclose(_image(page, "positions-alibi-probs-image"), w.probs[2], atol=1e-6)
    expect(page.locator(".positions-relative-box")).to_contain_text("anatomy-llama's own q")
    assert page.errors == []
    page.close()


# -- the snapshot -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def offline(browser, tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "positions.html"
    export_snapshot(path, TEXT, lessons="positions", options=dict(layer=0, head=0))
    page = open_offline(browser, path, 'doc.get_model_by_name("positions-pair") != null')
    yield page
    page.close()


def test_the_snapshot_draws_the_sinusoids_in_the_page(offline):
    page = offline
    assert page.requests == [page.url_] and page.errors == []
    page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('positions-sinusoid-image').data.image[0]"
        ".length > 1"
    )
    np.testing.assert_allclose(
        _image(page, "positions-sinusoid-image"), P.sinusoidal(128, 128), atol=1e-6
    )


def test_the_snapshot_turns_the_pair_and_computes_the_slopes(offline):
    page = offline
    for pair, position in [(0, 1), (7, 100), (15, 255)]:
        model_set(page, "positions-pair", "value", pair)
        model_set(page, "positions-pos", "value", position)
        theta = P.rope_frequencies(32)[pair]
        want = P.rotate_pair([1.0, 0.0], [position], theta)[0]
        np.testing.assert_allclose(page.evaluate(JS_ARROW), want, atol=1e-12)
        expect(page.locator(".positions-pair-text")).to_contain_text(
            f"At position {position} it has turned {position * theta:.4f} radians"
        )
    for n in (6, 12, 16, 64):
        model_set(page, "positions-alibi-heads", "value", n)
        assert _slopes(page) == pytest.approx(P.alibi_slopes(n).tolist(), rel=1e-5)
    model_set(page, "positions-alibi-heads", "value", 99)  # past the spinner's range: said
    expect(page.locator(".positions-slopes-box")).to_contain_text("between 1 and 64 heads")
    assert page.errors == []


def test_the_snapshot_alibi_what_if_follows_layer_and_head(offline, engine):
    page = offline
    for layer, head in [(0, 0), (2, 3), (3, 1)]:
        model_set(page, "positions-layer", "active", layer)
        model_set(page, "positions-head", "active", head)
        w = _what_if(engine, engine.default_model, layer)
        got = _image(page, "positions-alibi-probs-image")
        np.testing.assert_allclose(got, w.probs[head], atol=1e-6)
        bias = _image(page, "positions-alibi-bias-image")
        causal = np.tril(np.ones_like(bias, dtype=bool))
        np.testing.assert_allclose(bias[causal], w.bias[head][causal], atol=1e-7)
    assert page.errors == []
