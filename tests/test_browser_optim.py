"""The Adam vs AdamW lesson in the dashboard's view and in a real Chromium offline: the paths
are optim.race's (itself checked against torch.optim in test_lesson_optim.py), the page's twin
gives the same paths, texts and messages, and bad hyper-parameters keep the last run."""

from __future__ import annotations

import html

import numpy as np
import pytest
from playwright.sync_api import expect

from dashboard.lessons import optim as O
from dashboard.state import AnatomyState
from dashboard.views import optimizers as V
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_get, open_offline

TEXT = "Return the value"


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _values(**changed):
    return {**{n: V.OptimOptions.param[n].default for n in V.OptimOptions.url}, **changed}


def test_the_view_draws_the_three_races(engine):
    state = AnatomyState(engine=engine, lesson="optimizers", text=TEXT)
    view = V.OptimLesson(state=state)
    h = V.hyper(_values())
    for k in V.KINDS:
        want = O.race("bowl", k, 200, **h[k]).path
        src = view._f.paths[k].data
        np.testing.assert_allclose(np.c_[src["x"], src["y"]], want)
    assert "AdamW</b>: loss" in view._result.object
    assert "Step <b>10</b>" in view._state_text.object
    state.param.update(opt_surface="rosenbrock", opt_decay=1.0, opt_at=50)
    runs = V.races(_values(opt_surface="rosenbrock", opt_decay=1.0, opt_at=50))
    assert view._state_text.object == V.state_html(runs, (0.9, 0.999), 50)
    # the two Adams part ways with a weight decay of 1
    a, w = runs["adam"].path[-1], runs["adamw"].path[-1]
    assert np.abs(a - w).max() > 1e-3


@pytest.mark.parametrize(
    ("field", "typed", "words"),
    [
        ("opt_lr", "abc", "learning rate: “abc” is not a number; kept 0.02."),
        ("opt_lr", "-1", "learning rate: -1.0 is not > 0; kept 0.02."),
        ("opt_lr", "", "learning rate: nothing is not a number; kept 0.02."),
        ("opt_beta1", "1", "β1: 1.0 is not in [0, 1); kept 0.9."),
        ("opt_eps", "0", "ε: 0.0 is not > 0; kept 1e-08."),
        ("opt_decay", "-0.5", "weight decay: -0.5 is not ≥ 0; kept 0.1."),
        ("opt_lr", "0x10", "is not a number"),
    ],
)
def test_bad_hyper_parameters_keep_the_last_run(engine, field, typed, words):
    state = AnatomyState(engine=engine, lesson="optimizers", text=TEXT)
    view = V.OptimLesson(state=state)
    before = view._result.object
    view._inputs[field].value = typed
    assert view._messages[field].visible and html.escape(words) in view._messages[field].object
    assert getattr(state, field) == V.OptimOptions.param[field].default
    assert view._result.object == before
    view._inputs[field].value = "0.5"
    assert not view._messages[field].visible and getattr(state, field) == 0.5


def test_a_diverging_run_says_so_and_stays_finite(engine):
    state = AnatomyState(engine=engine, lesson="optimizers", text=TEXT)
    view = V.OptimLesson(state=state)
    state.param.update(opt_surface="bowl", opt_lr=1.0)
    assert "SGD + momentum</b>: diverged at step" in view._result.object
    for k in V.KINDS:
        assert np.all(np.isfinite(view._f.paths[k].data["x"]))
        assert np.all(np.isfinite(view._f.losses[k].data["y"]))


def _page_path(page, kind):
    d = model_get(page, f"optim-path-{kind}", "data")
    return np.c_[d["x"], d["y"]]


@pytest.mark.browser
def test_the_snapshot_races_in_the_page(browser, engine, tmp_path):
    path = tmp_path / "optim.html"
    export_snapshot(path, TEXT, lessons="optimizers", options=dict(opt_at=30))
    page = open_offline(browser, path, 'doc.get_model_by_name("optim-result") != null')
    assert page.requests == [page.url_] and page.errors == []

    def check(**changed):
        v = _values(opt_at=30, **changed)
        runs = V.races(v)
        for k in V.KINDS:
            np.testing.assert_allclose(_page_path(page, k), runs[k].path, rtol=1e-9, atol=1e-12)
        page.wait_for_function(
            "(want) => Bokeh.documents[0].get_model_by_name('optim-result').text === want",
            arg=V.result_html(runs, v["opt_steps"]),
        )
        at = min(v["opt_at"], v["opt_steps"])
        want = V.state_html(runs, (v["opt_beta1"], v["opt_beta2"]), at)
        assert model_get(page, "optim-state", "text") == want

    check()
    contour = page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('optim-contour').data.image[0])"
    )
    np.testing.assert_allclose(np.reshape(contour, (V.GRID, V.GRID)), V.contour("bowl"))
    page.locator(".optim-surface select").select_option(label="Rosenbrock's valley")
    page.locator(".opt-decay-input input").fill("1")
    page.locator(".opt-decay-input input").press("Enter")
    check(opt_surface="rosenbrock", opt_decay=1.0)
    page.locator(".opt-lr-input input").fill("1")  # SGD diverges in the valley
    page.locator(".opt-lr-input input").press("Enter")
    check(opt_surface="rosenbrock", opt_decay=1.0, opt_lr=1.0)
    expect(page.locator(".optim-result")).to_contain_text("diverged at step")
    # bad input: the message the Python view gives, the last run kept
    for typed in ("abc", "-2", "0x10"):
        page.locator(".opt-lr-input input").fill(typed)
        page.locator(".opt-lr-input input").press("Enter")
        want = V.field_message("opt_lr", typed, _values(opt_lr=1.0))
        expect(page.locator(".opt-lr-message")).to_have_text(want)
        check(opt_surface="rosenbrock", opt_decay=1.0, opt_lr=1.0)
    page.locator(".opt-eps-input input").fill("0.00001")
    page.locator(".opt-eps-input input").press("Enter")
    check(opt_surface="rosenbrock", opt_decay=1.0, opt_lr=1.0, opt_eps=1e-5)
    page.locator(".opt-eps-input input").fill("0")
    page.locator(".opt-eps-input input").press("Enter")
    expect(page.locator(".opt-eps-message")).to_have_text(
        V.field_message("opt_eps", "0", _values(opt_eps=1e-5))
    )
    assert page.errors == []
    page.close()
