"""The "Embeddings, Q, K and V" lesson in a real Chromium: the dashboard and the snapshot show
the model's own q, k, v and heads' outputs, a click on a row of Q or K picks the query or the
key, and the dot product lands on the model's attention score.

Oracles: the engine's named outputs (q, k, v, attn_heads, attn_scores, hidden) and the
weights, read here; the snapshot's heads' outputs are summed in the page and checked against
the model's attn_heads."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from dashboard.lessons.attention import kv_head
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_set, open_offline, record_errors, serve, wait_ready

pytestmark = pytest.mark.browser

TEXT = "Return the value of the named attribute of object."
ALL = ("q", "k", "v", "attn_heads", "attn_scores", "attn_probs", "hidden")

JS_IMAGE = """(n) => { for (const d of Bokeh.documents) { const m = d.get_model_by_name(n);
  if (m) { const a = m.data.image[0]; return {shape: a.shape, values: Array.from(a)}; } }
  return null; }"""

JS_CLICK_AT = """([n, x, y]) => {
  for (const doc of Bokeh.documents) {
    const m = doc.get_model_by_name(n);
    if (!m) continue;
    for (const root of Object.values(Bokeh.index)) {
      let v = null;
      try { v = root.owner.get_one(m); } catch (e) { continue; }
      v.el.scrollIntoView({block: "center"});
      const r = v.canvas_view.el.getBoundingClientRect();
      return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)];
    }
  }
  return null;
}"""


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _reading(engine, model):
    ids = engine.tokenizer(model).encode(TEXT)
    return ids, engine.run(model, ids, outputs=ALL)


def _image(page, name) -> np.ndarray:
    got = page.evaluate(JS_IMAGE, name)
    return np.array(got["values"], dtype=np.float32).reshape(got["shape"])


def _click_row(page, figure, row):
    # mid-row: a tooltip left by the previous click (to its right) covers no later target
    page.mouse.move(0, 0)
    page.mouse.click(*page.evaluate(JS_CLICK_AT, [figure, 24.0, float(row)]))


def _score_text(f, layer, head, i, j) -> str:
    """The pair's text with the model's own score and probability (the page computes both
    from q and k: its weight must be the model's probability)."""
    score, p = float(f.attn_scores[layer, head, i, j]), float(f.attn_probs[layer, head, i, j])
    return (
        f"it is {score:.4f}. Scored so against every key it may see, through the softmax, this "
        f"key gets the weight {p:.4f}; the model's own attention probability for the pair: "
        f"{p:.4f}, difference"
    )


# -- the dashboard ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


def test_the_dashboard_shows_the_models_q_k_v_and_a_click_picks_the_key(server, browser, engine):
    model = "anatomy-llama"  # shared key/value heads: head 3 reads K/V head 1
    ids, f = _reading(engine, model)
    t = len(ids)
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    record_errors(page)
    text = TEXT.replace(" ", "+")
    page.goto(f"{server}?lesson=qkv&model={model}&text={text}&layer=2&head=3&q={t - 1}&k=4")
    wait_ready(page, "qkv-q-labels")
    page.wait_for_timeout(500)
    np.testing.assert_array_equal(_image(page, "qkv-q-image"), f.q[2, 3])
    np.testing.assert_array_equal(_image(page, "qkv-k-image"), f.k[2, kv_head(3, 4, 2)])
    np.testing.assert_array_equal(_image(page, "qkv-v-image"), f.v[2, 1])
    heads = _image(page, "qkv-heads-image")
    np.testing.assert_array_equal(heads[1], f.attn_heads[2, :, t - 1].ravel())
    box = page.locator(".qkv-dot-text")
    expect(box).to_contain_text(_score_text(f, 2, 3, t - 1, 4))
    expect(page.locator(".qkv-share")).to_contain_text("reads key/value head 1")
    _click_row(page, "qkv-k", 7)  # a row of K: the key
    page.wait_for_function("() => new URL(location.href).searchParams.get('k') === '7'")
    expect(box).to_contain_text(_score_text(f, 2, 3, t - 1, 7))
    _click_row(page, "qkv-q", 2)  # a row of Q: the query, and the key 7 follows it to 2
    page.wait_for_function("() => new URL(location.href).searchParams.get('q') === '2'")
    page.wait_for_function("() => new URL(location.href).searchParams.get('k') === '2'")
    expect(box).to_contain_text(_score_text(f, 2, 3, 2, 2))
    _click_row(page, "qkv-k", 6)  # a key after the query: its score, then the mask
    expect(box).to_contain_text("The causal mask then removes this pair")
    expect(box).to_contain_text(_score_text(f, 2, 3, 2, 6))
    assert page.errors == []
    page.close()


# -- the snapshot -------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["anatomy-gpt", "anatomy-llama"])
def offline(request, browser, engine, tmp_path_factory):
    model = request.param
    path = tmp_path_factory.mktemp("snap") / f"qkv-{model}.html"
    export_snapshot(path, TEXT, model=model, lessons="qkv", options=dict(layer=1, head=2))
    page = open_offline(browser, path, 'doc.get_model_by_name("qkv-dot-text") != null')
    yield model, page
    page.close()


def test_the_snapshot_redraws_q_k_v_for_every_head_from_the_embedded_outputs(offline, engine):
    model, page = offline
    ids, f = _reading(engine, model)
    t, cfg = len(ids), engine.config(model)
    n_head, n_kv = cfg["n_head"], cfg["n_kv_head"] or cfg["n_head"]
    assert page.requests == [page.url_] and page.errors == []
    for layer, head in [(1, 2), (3, 0), (0, 3)]:
        model_set(page, "qkv-layer", "active", layer)
        model_set(page, "qkv-head", "active", head)
        kv = kv_head(head, n_head, n_kv)
        np.testing.assert_array_equal(_image(page, "qkv-q-image"), f.q[layer, head])
        np.testing.assert_array_equal(_image(page, "qkv-k-image"), f.k[layer, kv])
        np.testing.assert_array_equal(_image(page, "qkv-v-image"), f.v[layer, kv])
        heads = _image(page, "qkv-heads-image")  # q of every head; their outputs, summed here
        np.testing.assert_array_equal(heads[0], f.q[layer, :, t - 1].ravel())
        np.testing.assert_allclose(heads[1], f.attn_heads[layer, :, t - 1].ravel(), atol=1e-5)
    # the embedding rows of the query token: token row (+ position row), the stream, its norm
    w = engine.weights(model)
    embed = _image(page, "qkv-embed-image")
    np.testing.assert_array_equal(embed[0], w["wte.weight"][ids[t - 1]])
    if model == "anatomy-gpt":
        np.testing.assert_array_equal(embed[1], w["wpe.weight"][t - 1])
    np.testing.assert_array_equal(embed[-2], f.hidden[0, t - 1])
    assert len(embed) == (4 if model == "anatomy-gpt" else 3)


def test_a_click_on_a_row_of_k_gives_the_models_score(offline, engine):
    model, page = offline
    ids, f = _reading(engine, model)
    model_set(page, "qkv-layer", "active", 2)
    model_set(page, "qkv-head", "active", 1)
    _click_row(page, "qkv-k", 5)
    text = page.locator(".qkv-dot-text")
    expect(text).to_contain_text(_score_text(f, 2, 1, len(ids) - 1, 5))
    bars = page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('qkv-dot-bars').data.top)"
    )
    kv = kv_head(1, 4, engine.config(model)["n_kv_head"] or 4)
    want = f.q[2, 1, len(ids) - 1].astype(np.float64) * f.k[2, kv, 5].astype(np.float64)
    np.testing.assert_allclose(bars, want, rtol=1e-12)
    _click_row(page, "qkv-q", 3)  # the query moves before the key: the key follows it
    expect(text).to_contain_text(_score_text(f, 2, 1, 3, 3))
    _click_row(page, "qkv-k", 5)  # a key after the query: its score, then the mask
    expect(text).to_contain_text("The causal mask then removes this pair")
    expect(text).to_contain_text(_score_text(f, 2, 1, 3, 5))
    assert page.errors == []
