"""The K/V heads and cache lesson in the dashboard's view and in a real Chromium offline.

The heatmaps are anatomy-llama's own probabilities, and each query head's pattern is the
softmax of its queries against the keys of the K/V head the diagram says it reads (and not
the other one's); the cache figures are worked out here from the published shapes; the
snapshot's texts are the Python view's, for every preset and every way of sharing."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from dashboard.lessons import kvcache as KV
from dashboard.lessons import scale
from dashboard.lessons.attention import softmax
from dashboard.state import AnatomyState
from dashboard.views import kvcache as V
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_get, model_set, open_offline
from tests.test_browser_views import cell_point

TEXT = "Return the value of the named attribute of object. If the attribute does not exist"
GQA = "anatomy-llama"


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def llama(engine):
    ids = engine.tokenizer(GQA).encode(TEXT)
    return engine.run(GQA, ids, outputs="all"), engine.tokenizer(GQA)


def test_each_query_head_reads_the_keys_of_its_kv_head(engine, llama):
    f, _ = llama
    cfg = engine.config(GQA)
    n_head, n_kv, d = cfg["n_head"], cfg["n_kv_head"], cfg["n_embd"] // cfg["n_head"]
    assert 1 < n_kv < n_head  # the lesson's model groups its heads
    t = f.q.shape[2]
    causal = np.tril(np.ones((t, t), bool))
    nodes, links = V.diagram_data(n_head, n_kv)
    for h, target_x in zip(links["x0"], links["x1"], strict=True):
        g = nodes["x"][n_head:].index(target_x)  # the K/V head the diagram draws it to
        for kv in range(n_kv):
            scores = np.where(causal, f.q[2, int(h)] @ f.k[2, kv].T / np.sqrt(d), -np.inf)
            diff = np.abs(softmax(scores) - f.attn_probs[2, int(h)]).max()
            assert (diff < 1e-5) == (kv == g), (h, kv, diff)


def test_the_view_draws_the_grouped_models_heads_and_the_caches(engine, llama):
    f, _ = llama
    state = AnatomyState(engine=engine, lesson="kv", text=TEXT)  # the session's model: a GPT
    assert state.model != GQA
    state.param.update(layer=3, query=9)
    view = V.KvLesson(state=state)
    for h, plot in enumerate(view._f.heads):
        np.testing.assert_allclose(plot.source.data["image"][0], f.attn_probs[3, h], atol=1e-7)
        assert plot.selection.data["y"] == [9, 9]
    assert "K/V head 1: query heads 2, 3" in view._groups.object
    # MQA: every line ends on one K/V head; MHA: each on its own
    state.kv_share = "mqa"
    assert len(set(view._f.links.data["x1"])) == 1 and len(view._f.links.data["x0"]) == 4
    assert "<b>MQA</b>, 1 K/V head for 4 query heads" in view._share_text.object
    assert "256 numbers, <b>512 B</b> per token in fp16" in view._share_text.object  # 2·4·1·32
    state.kv_share = "mha"
    assert len(set(view._f.links.data["x1"])) == 4
    # Llama 2 70B: 2 · 80 layers · 8 K/V heads · 128 · 2 bytes = 320 KiB per token
    state.param.update(kv_preset="Llama 2 70B", kv_context=8192, kv_batch=4)
    text = view._growth_text.object
    assert "adds 320 KiB per token" in text and "<b>10.0 GiB</b> of cache" in text
    assert view._f.growth.data["batch"][1] == pytest.approx(2 * 8192 * 4 * 327_680 / 2**30)


@pytest.mark.parametrize("typed", ["", "-5", "abc", "2.5", "0", "10000001", "٣"])
def test_a_bad_context_keeps_the_last_one_and_says_why(engine, typed):
    state = AnatomyState(engine=engine, lesson="kv", text=TEXT)
    view = V.KvLesson(state=state)
    view._inputs["kv_context"].value = "8,192"
    assert state.kv_context == 8192
    before = view._growth_text.object
    view._inputs["kv_context"].value = typed
    box = view._field_messages["kv_context"]
    assert box.visible and "kept 8,192" in box.object and "Context length" in box.object
    assert state.kv_context == 8192 and view._growth_text.object == before
    view._inputs["kv_context"].value = "100"
    assert not box.visible and state.kv_context == 100


@pytest.mark.browser
def test_the_snapshot_computes_the_same_in_the_page(browser, engine, llama, tmp_path):
    f, tok = llama
    path = tmp_path / "kv.html"
    export_snapshot(path, TEXT, lessons="kv", options=dict(layer=1, query=5))
    page = open_offline(browser, path, 'doc.get_model_by_name("kv-top") != null')
    assert page.requests == [page.url_] and page.errors == []
    labels = [f"{i}: {t}" for i, t in enumerate(V.read_text(engine, GQA, TEXT).tokens)]
    hf = scale.our_preset(engine.config(GQA))
    measured = engine.entry(GQA)["decode"]["cache_bytes_per_token"]
    # every way of sharing: the Python view's text
    for kind, k in KV.sharing_choices(4, 2).items():
        page.locator(".kv-share button").filter(has_text=kind.upper()).click()
        assert model_get(page, "kv-share-text", "text") == V.share_html(GQA, hf, k, measured)
    # another layer, then a tap on a query row
    model_set(page, "kv-layer", "active", 3)
    page.wait_for_function(
        "(want) => Bokeh.documents[0].get_model_by_name('kv-distance').text === want",
        arg=V.distance_html(GQA, f.attn_probs[3], 2, 3),
    )
    for h in range(4):
        got = page.evaluate(
            f"() => Array.from(Bokeh.documents[0].get_model_by_name('kv-head-{h}-image')"
            ".data.image[0])"
        )
        np.testing.assert_allclose(np.reshape(got, f.attn_probs[3, h].shape), f.attn_probs[3, h])
    x, y = cell_point(page, "kv-head-2", 2, 11)
    page.mouse.click(x, y)
    expect(page.locator(".kv-top")).to_contain_text("For query 11:")
    assert model_get(page, "kv-top", "text") == V.top_html(f.attn_probs[3], labels, 11)
    # every preset, with a context and batch typed in
    for box, value in ((".kv-context-input input", "8192"), (".kv-batch-input input", "4")):
        page.locator(box).fill(value)
        page.locator(box).press("Enter")
    table = V.presets(engine)
    for name, cfg in table.items():
        page.locator(".kv-preset select").select_option(name)
        want = V.growth_html(name, cfg, 8192, 4)
        page.wait_for_function(
            "(want) => Bokeh.documents[0].get_model_by_name('kv-growth-text').text === want",
            arg=want,
        )
    # a bad batch: its message, the last figures kept
    page.locator(".kv-batch-input input").fill("lots")
    page.locator(".kv-batch-input input").press("Enter")
    expect(page.locator(".kv-batch-message")).to_contain_text("“lots” is not a whole number")
    assert model_get(page, "kv-growth-text", "text") == want
    assert page.errors == []
    page.close()
