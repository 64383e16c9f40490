"""The training-run lesson, in the dashboard's view and in a real Chromium offline: every line
is the build's record of that model's run, checked against what the build wrote of the same
run in the manifest and against the schedule; a tap on a legend entry hides that model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dashboard.lessons import training as TR
from dashboard.state import AnatomyState
from dashboard.views import trainrun as V
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from models.train import TrainConfig, lr_at
from tests.browser_support import LEGEND_ENTRY, VISIBLE, open_offline, serve

pytestmark = pytest.mark.browser

SOURCE = """(name) => {
  const doc = Bokeh.documents.find(d => d.get_model_by_name(name));
  const data = doc.get_model_by_name(name).data;
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Array.from(v)]));
}"""


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _trained(engine):
    return [m for m in engine.model_names if "run" in engine.entry(m)]


def test_the_view_draws_every_models_record(engine):
    state = AnatomyState(engine=engine, lesson="run")
    view = V.TrainRunLesson(state=state)
    loss = view._figures[0]
    trained = _trained(engine)
    assert len(trained) >= 3
    assert [it.label.value for it in loss.legend[0].items] == trained
    for name in trained:
        entry = engine.entry(name)
        t = entry["training"]
        src = loss.select_one({"name": f"run-steps-{name}"})
        # the build's own numbers for the same run: the last 50 steps' mean and the final
        # validation loss, which it computed while training
        assert float(src.data["mean"][-1]) == pytest.approx(t["train_loss"], abs=1e-4)
        val = loss.select_one({"name": f"run-val-{name}"})
        assert float(val.data["val"][-1]) == pytest.approx(t["val_loss"], abs=1e-4)
        cfg = TrainConfig(**{k: t[k] for k in TrainConfig().to_dict()})
        want = [lr_at(s, cfg) for s in range(cfg.steps)]
        np.testing.assert_allclose(src.data["lr"], want, rtol=1e-6)
        assert len(src.data["grad"]) == cfg.steps
    html = view._layout[2].object
    for name in trained:
        s = TR.run_summary(TR.read_run(engine.static_dir, engine.entry(name)))
        assert f"{s.val_end:.3f}" in html and f"{s.clipped} of" in html


def test_a_manifest_without_trained_models_says_so(engine, monkeypatch):
    monkeypatch.setattr(type(engine), "model_names", property(lambda self: []))
    recs, missing = V.records(engine)
    assert recs == {} and "No model of this manifest" in V.setting_html(recs, missing)


def test_an_imported_model_is_named_as_without_a_record(engine):
    text = V.setting_html({}, ["gpt2-local was not trained by the build"])
    assert "gpt2-local was not trained by the build" in text


def _hides_by_tap(page, figure: str) -> None:
    assert all(page.evaluate(VISIBLE, [figure, 1]))
    at = page.evaluate(LEGEND_ENTRY, [figure, 1])
    page.mouse.click(at["x"], at["y"])
    page.wait_for_function(f"() => !({VISIBLE})({json.dumps([figure, 1])}).some(v => v)")
    assert all(page.evaluate(VISIBLE, [figure, 0]))  # the other models stay


def test_the_dashboard_draws_the_records_and_a_legend_tap_hides_a_model(engine, browser):
    with serve() as (url, _proc):
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{url}?lesson=run")
        page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.some(d => d.get_model_by_name('run-loss'))",
            timeout=30_000,
        )
        page.wait_for_timeout(500)
        name = _trained(engine)[0]
        data = page.evaluate(SOURCE, f"run-steps-{name}")
        rec = TR.read_run(engine.static_dir, engine.entry(name))
        np.testing.assert_allclose(data["grad"], rec.grad_norm, rtol=1e-6)
        np.testing.assert_allclose(data["weights"], rec.weight_norm, rtol=1e-6)
        _hides_by_tap(page, "run-loss")
        page.close()


def test_the_snapshot_holds_the_same_records(engine, browser, tmp_path):
    path = tmp_path / "run.html"
    export_snapshot(path, "Return the value.", lessons=["run"])
    page = open_offline(browser, path, 'doc.get_model_by_name("run-loss") != null')
    for name in _trained(engine):
        data = page.evaluate(SOURCE, f"run-steps-{name}")
        rec = TR.read_run(engine.static_dir, engine.entry(name))
        np.testing.assert_allclose(data["loss"], rec.loss, rtol=1e-6)
        np.testing.assert_allclose(data["mean"], TR.smooth(rec.loss, 50), rtol=1e-6)
    _hides_by_tap(page, "run-grad")
    assert page.errors == []
    page.close()
