"""The recipes lesson of a snapshot shows what the dashboard shows: the same table and texts,
and the bucket buttons redraw the loss-per-position lines offline.

Oracles: plain-Python bucket means (statistics.mean over each bucket) of the manifest's losses,
and the dashboard's view built on a session state with the same settings."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from dashboard.lessons.recipes import BUCKET_WIDTHS
from dashboard.state import AnatomyState
from dashboard.views.recipes import RecipesLesson
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_get, open_offline, overflow, small_things
from tests.browser_support import model_set as _set

pytestmark = pytest.mark.browser

READY = 'doc.get_model_by_name("recipes-caption") != null'


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "recipes.html"
    export_snapshot(path, "If the file", lessons="recipes", options=dict(bucket=8))
    return path


@pytest.fixture(scope="module")
def page(browser, snapshot):
    page = open_offline(browser, snapshot, READY)
    yield page
    page.close()


def _dashboard(engine, bucket: int) -> RecipesLesson:
    state = AnatomyState(engine=engine, lesson="recipes")
    state.bucket = bucket
    return RecipesLesson(state=state)


def _line(page, model: str) -> dict:
    return page.evaluate(
        "(n) => { const d = Bokeh.documents[0].get_model_by_name(n).data;"
        " return {first: Array.from(d.first), loss: Array.from(d.loss)}; }",
        f"recipes-line-{model}",
    )


def test_it_opens_on_the_chosen_width_with_the_dashboards_texts(page, engine):
    assert model_get(page, "recipes-bucket", "active") == list(BUCKET_WIDTHS).index(8)
    view = _dashboard(engine, 8)
    assert model_get(page, "recipes-caption", "text") == view._caption.object
    assert model_get(page, "recipes-table", "text") == view._table.object
    assert model_get(page, "recipes-positions", "text") == view._positions.object
    assert page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('recipes-block').location"
    ) == (engine.entry(engine.default_model)["positions"]["block_size"] - 0.5)
    assert page.errors == []


@pytest.mark.parametrize("width", [1, 32, 16, 8])
def test_the_buttons_redraw_every_line_offline(page, engine, width):
    _set(page, "recipes-bucket", "active", list(BUCKET_WIDTHS).index(width))
    models = [n for n in engine.model_names if engine.entry(n).get("positions")]
    assert models
    top = 0.0
    for model in models:
        loss = engine.entry(model)["positions"]["loss"]
        starts = list(range(0, len(loss), width))
        want = [statistics.mean(loss[s : s + width]) for s in starts]
        got = _line(page, model)
        assert got["first"] == starts
        np.testing.assert_allclose(got["loss"], want, rtol=1e-12)
        top = max(top, *want)
    # the "trained length" label sits at the top of the lines, inside the frame
    assert np.isclose(model_get(page, "recipes-block-label", "y"), top, rtol=1e-12)
    assert f"over {width} position" in model_get(page, "recipes-caption", "text")
    assert page.errors == [] and page.requests == [page.url_]


def test_the_snapshot_fits_a_phone(browser, snapshot):
    page = open_offline(browser, snapshot, READY, viewport=(390, 844), touch=True)
    page.wait_for_timeout(300)
    assert overflow(page)["scroll"] <= 390
    assert small_things(page) == {"text": [], "taps": []}
    assert page.errors == []
    page.close()
