"""The feed-forward lesson in a real Chromium: in the dashboard, a token chip and a layer button
change the most active neurons to the engine's; in the snapshot, the layer buttons and the
token menu do the same offline, and its texts are the dashboard's.

Oracles: the engine's own ``mlp_hidden`` (and ``mlp_up``, ``mlp_gate``) run here, the top
neurons by torch.topk of |h|, and the dashboard's view built on a session state with the same
settings (for the texts the page fills in)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dashboard.lessons.ffn import TOP_K
from dashboard.state import DEFAULT_TEXT, AnatomyState
from dashboard.views.ffn import FfnLesson
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import (
    model_data,
    model_get,
    open_offline,
    overflow,
    record_errors,
    serve,
    small_things,
    wait_data,
)
from tests.browser_support import model_set as _set

pytestmark = pytest.mark.browser

TEXT = "If the file does not exist, an exception is raised."
READY = 'doc.get_model_by_name("ffn-summary") != null'


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def top_neurons(engine, model, text, layer, token) -> list[int]:
    f = engine.run(model, engine.tokenizer(model).encode(text), outputs=("mlp_hidden",))
    h = torch.from_numpy(f.mlp_hidden[layer, token]).abs()
    return torch.topk(h, TOP_K).indices.tolist()


# -- the dashboard ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


def test_a_chip_and_a_layer_button_change_the_neurons_in_the_dashboard(server, browser, engine):
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    record_errors(page)
    page.goto(f"{server}?lesson=ffn&q=2&layer=0")
    model = engine.default_model
    want = top_neurons(engine, model, DEFAULT_TEXT, 0, 2)
    wait_data(page, "ffn-bars", "neuron", f"(v) => v.join() === '{','.join(map(str, want))}'")
    page.locator('.chip[data-index="6"]').click()
    page.wait_for_function("() => new URL(location.href).searchParams.get('q') === '6'")
    want = top_neurons(engine, model, DEFAULT_TEXT, 0, 6)
    wait_data(page, "ffn-bars", "neuron", f"(v) => v.join() === '{','.join(map(str, want))}'")
    page.locator(".ffn-layer button", has_text="3").click()
    page.wait_for_function("() => new URL(location.href).searchParams.get('layer') === '3'")
    want = top_neurons(engine, model, DEFAULT_TEXT, 3, 6)
    wait_data(page, "ffn-bars", "neuron", f"(v) => v.join() === '{','.join(map(str, want))}'")
    f = engine.run(model, engine.tokenizer(model).encode(DEFAULT_TEXT), outputs=("mlp_hidden",))
    np.testing.assert_allclose(
        model_data(page, "ffn-bars", "hidden"), f.mlp_hidden[3, 6][want], rtol=1e-6
    )
    near = int((np.abs(f.mlp_hidden[3, 6]) < 0.1).sum())
    summary = page.get_by_text(f"of its {f.mlp_hidden.shape[-1]} activations").first
    assert summary.is_visible() and f"{near} of its" in summary.inner_text()
    assert page.errors == []
    page.close()


# -- the snapshot -------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["anatomy-gpt", "anatomy-llama"])
def snapshot(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / f"ffn-{request.param}.html"
    export_snapshot(path, TEXT, lessons="ffn", model=request.param, options=dict(layer=1))
    return request.param, path


@pytest.fixture(scope="module")
def page(browser, snapshot):
    page = open_offline(browser, snapshot[1], READY)
    yield page
    page.close()


def _dashboard(engine, model, layer, query) -> FfnLesson:
    state = AnatomyState(engine=engine, lesson="ffn", model=model, text=TEXT)
    view = FfnLesson(state=state)
    state.param.update(layer=layer, query=query)
    return view


def test_it_opens_on_the_chosen_layer_with_the_dashboards_texts(page, snapshot, engine):
    model, _ = snapshot
    last = len(engine.tokenizer(model).encode(TEXT)) - 1
    assert model_get(page, "ffn-layer", "active") == 1
    assert model_get(page, "ffn-token", "value") == str(last)
    view = _dashboard(engine, model, 1, last)
    assert model_get(page, "ffn-summary", "text") == view._summary.object
    assert model_get(page, "ffn-table", "text") == view._table.object
    assert model_get(page, "ffn-params", "text") == view._params.object
    assert page.errors == []


@pytest.mark.parametrize(("layer", "token"), [(3, 0), (0, 4), (2, 7), (1, 2)])
def test_the_layer_buttons_and_the_token_menu_redraw_offline(page, snapshot, engine, layer, token):
    model, _ = snapshot
    _set(page, "ffn-token", "value", str(token))
    _set(page, "ffn-layer", "active", layer)
    want = top_neurons(engine, model, TEXT, layer, token)
    ids = engine.tokenizer(model).encode(TEXT)
    f = engine.run(model, ids, outputs="all")
    bars = page.evaluate(
        "() => { const d = Bokeh.documents[0].get_model_by_name('ffn-bars').data;"
        " const a = (k) => d[k] ? Array.from(d[k]) : null;"
        " return {neuron: a('neuron'), hidden: a('hidden'), up: a('up'), gate: a('gate')}; }"
    )
    assert bars["neuron"] == want
    np.testing.assert_array_equal(bars["hidden"], f.mlp_hidden[layer, token][want])
    np.testing.assert_array_equal(bars["up"], f.mlp_up[layer, token][want])
    if model == "anatomy-llama":
        np.testing.assert_array_equal(bars["gate"], f.mlp_gate[layer, token][want])
        points = page.evaluate(
            "() => Array.from(Bokeh.documents[0].get_model_by_name('ffn-points').data.gate)"
        )
        np.testing.assert_array_equal(points, f.mlp_gate[layer, token][want])
    counts, _ = np.histogram(np.clip(f.mlp_hidden[layer, token], -2, 2), np.linspace(-2, 2, 41))
    got = page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('ffn-hist-bins').data.count)"
    )
    assert got == counts.tolist()
    view = _dashboard(engine, model, layer, token)
    assert model_get(page, "ffn-summary", "text") == view._summary.object
    assert model_get(page, "ffn-table", "text") == view._table.object
    title = page.evaluate("() => Bokeh.documents[0].get_model_by_name('ffn-neurons').title.text")
    assert title == f"Layer {layer}: most active neurons"
    assert page.errors == [] and page.requests == [page.url_]


def test_the_snapshot_fits_a_phone(browser, snapshot):
    page = open_offline(browser, snapshot[1], READY, viewport=(390, 844), touch=True)
    page.wait_for_timeout(300)
    assert overflow(page)["scroll"] <= 390
    assert small_things(page) == {"text": [], "taps": []}
    assert page.errors == []
    page.close()
