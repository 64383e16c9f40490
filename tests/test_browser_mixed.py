"""The mixed-precision lesson, in the dashboard's view and in a real Chromium offline: its
counts are torch's casts of the build's saved gradients, a scale or a step changes them in
both homes, and a model the build did not train gets a message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from playwright.sync_api import expect

from dashboard.lessons import training as TR
from dashboard.state import AnatomyState
from dashboard.views import mixed as V
from export.snapshot import export_snapshot
from models.run_record import fates
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import open_offline

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _pct(n, total):
    return f"{100 * n / total:.2f}%"


@pytest.mark.parametrize("model", ["anatomy-gpt", "anatomy-moe"])
def test_the_view_counts_torchs_casts_of_the_saved_gradients(engine, model):
    rec = TR.read_run(STATIC_DIR, engine.entry(model))
    state = AnatomyState(engine=engine, lesson="mixed", model=model)
    view = V.MixedLesson(state=state)
    for step, k in ((0, 0), (1, 8), (3, 16), (2, 24)):
        state.param.update(mp_step=step, mp_scale=k)
        want = fates(rec.grad_sample[step], torch.float16, k)
        n = rec.grad_sample.shape[1]
        text = view._text.object
        assert f"at step {rec.grad_steps[step]} of" in text
        for fate in ("flushed", "subnormal", "normal"):
            if want[fate] and 100 * want[fate] / n >= 0.01:
                assert f"{_pct(want[fate], n)}</b> ({want[fate]:,})" in text, (fate, k)
        assert ("Too large" in text) == (want["overflow"] > 0)
        assert view._whole.object.count("<tr>") == 5
        flushed = rec.whole[step]["fp16@0"]["flushed"]
        if 100 * flushed / rec.grad_of >= 0.01:
            assert f"<td class='num'>{_pct(flushed, rec.grad_of)}</td>" in view._whole.object
        # the bars: the sample's binades, shifted by k
        got = dict(zip(view._f.source.data["x"], view._f.source.data["top"], strict=True))
        g = torch.tensor(rec.grad_sample[step])
        e = (torch.frexp(g[g != 0]).exponent - 1 + k).numpy()  # |g| in [2**e, 2**(e+1))
        ref = dict(zip(*np.unique(e, return_counts=True), strict=True))
        assert {x - 0.5: t for x, t in got.items()} == {float(a): int(b) for a, b in ref.items()}


def test_a_large_scale_overflows():
    """A scale of 2**30 moves every gradient above 2**-14 past fp16's max."""
    engine = Engine(STATIC_DIR)
    state = AnatomyState(engine=engine, lesson="mixed", model="anatomy-gpt")
    view = V.MixedLesson(state=state)
    state.mp_scale = 30
    assert "Too large" in view._text.object and "overflowed to ±inf: <b>" in view._text.object


def test_a_model_the_build_did_not_train_gets_a_message(engine, monkeypatch):
    state = AnatomyState(engine=engine, lesson="mixed", model="anatomy-gpt")
    monkeypatch.setattr(V, "trained", lambda engine: ["anatomy-llama"])
    view = V.MixedLesson(state=state)
    assert view._message.visible and "was not trained by the build" in view._message.object


def test_the_snapshot_swaps_the_views_texts(engine, browser, tmp_path):
    path = tmp_path / "mixed.html"
    export_snapshot(path, "Return the value.", lessons=["mixed"], model="anatomy-gpt")
    page = open_offline(browser, path, 'doc.get_model_by_name("mixed-hist") != null')
    rec = TR.read_run(STATIC_DIR, engine.entry("anatomy-gpt"))
    for step, k in ((2, 12), (3, 30)):
        page.evaluate(
            f"""() => {{ const d = Bokeh.documents[0];
              d.get_model_by_name('mixed-step').active = {step};
              d.get_model_by_name('mixed-scale').value = {k}; }}"""
        )
        want = V.counts_html("anatomy-gpt", rec, step, k, V.M.binade_counts(rec.grad_sample[step]))
        page.wait_for_function(
            "(w) => Bokeh.documents[0].get_model_by_name('mixed-text').text === w", arg=want
        )
        data = page.evaluate(
            "() => Array.from(Bokeh.documents[0].get_model_by_name('mixed-bars').data.x)"
        )
        state_bars = V.bars(V.M.binade_counts(rec.grad_sample[step]), k)
        assert data == pytest.approx(state_bars["x"])
        colors = page.evaluate(
            "() => Array.from(Bokeh.documents[0].get_model_by_name('mixed-bars').data.color)"
        )
        assert colors == state_bars["color"]
        whole = page.evaluate("() => Bokeh.documents[0].get_model_by_name('mixed-whole').text")
        assert whole == V.whole_html(rec, step)
    expect(page.locator("body")).not_to_contain_text("Traceback")
    assert page.errors == []
    page.close()
