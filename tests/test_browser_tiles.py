"""FlashAttention's tiles in the dashboard's view and in a real Chromium offline: every step's
running max, sum and output are tiled_attention's (itself checked against torch's
scaled_dot_product_attention in test_lesson_tiles.py) on the model's real q, k and v, and the
last step lands on the model's own head output."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from dashboard.lessons import tiles as TL
from dashboard.lessons.attention import kv_head
from dashboard.state import AnatomyState
from dashboard.views.tiles import TilesLesson
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_set, open_offline

TEXT = "Return the value of the named attribute of object. If the attribute does not exist"


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _steps(engine, model, layer, head, query, bq, bk):
    ids = engine.tokenizer(model).encode(TEXT)
    f = engine.run(model, ids, outputs="all")
    cfg = engine.config(model)
    kv = kv_head(head, cfg["n_head"], cfg["n_kv_head"] or cfg["n_head"])
    bq, bk = min(bq, len(ids)), min(bk, len(ids))  # a block of more than the text is the text
    _, steps = TL.tiled_attention(f.q[layer, head], f.k[layer, kv], f.v[layer, kv], bq, bk)
    return f, [s for s in steps if s.query_block == query // bq]


def _table(text: str) -> list[tuple[float, float]]:
    return [(float(m), float(x)) for m, x in re.findall(
        r"<td class='num'>([-0-9.]+)</td><td class='num'>([-0-9.]+)</td></tr>", text)]  # fmt: skip


def test_the_view_steps_through_the_key_blocks(engine):
    state = AnatomyState(engine=engine, lesson="tiles", text=TEXT, model="anatomy-llama")
    state.param.update(layer=2, head=3, query=13, block_q=4, block_k=4, tile_step=0)
    view = TilesLesson(state=state)
    f, steps = _steps(engine, "anatomy-llama", 2, 3, 13, 4, 4)
    assert len(steps) == 4  # rows 12-15 see key blocks 0-3
    for i, st in enumerate(steps):
        state.tile_step = i
        got = _table(view._text.object)
        assert got == [
            (float(f"{m:.4f}"), float(f"{x:.4f}")) for m, x in zip(st.m[0], st.l[0], strict=True)
        ]
        np.testing.assert_allclose(view._f.output.source.data["image"][0], st.output[0], atol=1e-6)
        assert len(view._f.rects.data["x"]) == i + 1
    assert "equals the full softmax's within" in view._text.object
    np.testing.assert_allclose(steps[-1].output[0], f.attn_heads[2, 3, 12:16], atol=1e-5)
    state.tile_step = 99  # a link past the last step shows the last
    assert "step 4 of 4" in view._text.object


@pytest.mark.browser
def test_the_snapshot_steps_with_the_same_numbers(browser, engine, tmp_path):
    path = tmp_path / "tiles.html"
    export_snapshot(path, TEXT, lessons="tiles", options=dict(layer=1, head=2, block_q=8,
                                                              block_k=4, query=10))  # fmt: skip
    page = open_offline(browser, path, 'doc.get_model_by_name("tiles-step") != null')
    assert page.requests == [page.url_] and page.errors == []
    model = engine.default_model
    f, steps = _steps(engine, model, 1, 2, 10, 8, 4)
    text = page.locator(".tiles-step")
    for i, st in enumerate(steps):
        expect(text).to_contain_text(f"step {i + 1} of {len(steps)}")
        cells = page.locator(".tiles-rows td.num").all_inner_texts()
        want = [f"{x:.4f}" for pair in zip(st.m[0], st.l[0], strict=True) for x in pair]
        assert cells == want
        got = page.evaluate(
            "() => Array.from(Bokeh.documents[0].get_model_by_name('tiles-output-image')"
            ".data.image[0])"
        )
        np.testing.assert_allclose(np.reshape(got, st.output[0].shape), st.output[0], atol=1e-6)
        page.get_by_role("button", name="Next ▶").click()  # past the last: stays there
    expect(text).to_contain_text("equals the full softmax's within")
    # another block size: the steps follow
    model_set(page, "tiles-bk", "active", 4)  # 32 keys a block
    _, steps = _steps(engine, model, 1, 2, 10, 8, 32)
    expect(text).to_contain_text(f"step 1 of {len(steps)}")
    assert page.errors == []
    page.close()


def test_the_memory_text_quotes_the_benchmark_as_measured():
    from dashboard.views.tiles import measured_html

    assert "make bench" in measured_html(None)
    result = {"t": 4096, "d": 64, "block": 128,
              "peak_bytes": {"full": 390 * 2**20, "tiled": 13 * 2**19}}  # fmt: skip
    text = measured_html(result)
    assert "T = 4,096, d = 64 peaks at 390 MiB whole and 6.50 MiB in 128 × 128 tiles" in text
    assert "(60× less)" in text
