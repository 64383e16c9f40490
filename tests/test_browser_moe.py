"""The mixture-of-experts lesson in the dashboard's view and in a real Chromium offline.

The routing drawn is the model's own (its router_logits, experts and expert_weights outputs)
and our route() of its logits gives the same experts and weights; the snapshot's page draws
the same router, shares and token text as the Python view."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from dashboard.lessons import moe as M
from dashboard.state import AnatomyState
from dashboard.views import moe as V
from export.snapshot import export_snapshot
from models.reading import read_text
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_get, model_set, open_offline
from tests.test_browser_views import cell_point

TEXT = "Return the value of the named attribute of object. If the attribute does not exist"


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def routing(engine):
    model = V.moe_model(engine)
    assert model == "anatomy-moe"  # the build trains it
    reading = read_text(engine, model, TEXT)
    f = engine.run(model, reading.ids, outputs=V.OUTPUTS)
    return model, reading.labels, f


def test_our_routing_of_the_models_logits_is_the_models(routing, engine):
    model, _, f = routing
    cfg = engine.config(model)
    experts, weights = M.route(f.router_logits, cfg["expert_top_k"])
    np.testing.assert_array_equal(experts, f.experts)
    np.testing.assert_allclose(weights, f.expert_weights, atol=1e-6)
    assert f.router_logits.shape[-1] == cfg["n_expert"] == 4 and experts.shape[-1] == 2


def test_the_view_draws_the_models_routing(engine, routing):
    model, labels, f = routing
    state = AnatomyState(engine=engine, lesson="moe", text=TEXT)
    state.param.update(layer=2, query=7)
    view = V.MoeLesson(state=state)
    probs = M.router_probs(f.router_logits)
    t, n_expert = probs.shape[1:]
    router = view._f.router.data
    np.testing.assert_allclose(np.reshape(router["p"], (t, n_expert)), probs[2], atol=1e-12)
    outlined = {(y, x) for x, y, line in zip(router["x"], router["y"], router["line"],
                                            strict=True) if line}  # fmt: skip
    assert outlined == {(i, int(e)) for i in range(t) for e in f.experts[2, i]}
    first = np.reshape(view._f.routes.data["color"], (f.experts.shape[0], t))
    assert all(
        first[lay, i] == V.COLOURS[f.experts[lay, i, 0]] for lay in range(4) for i in range(t)
    )
    shares = view._f.shares.data["text"]
    counts = np.bincount(f.experts[2].ravel(), minlength=n_expert)
    np.testing.assert_allclose(shares, counts / counts.sum())
    e1, e2 = f.experts[2, 7]
    assert f"runs through experts {e1} and {e2}" in view._token.object
    assert f"weighted {f.expert_weights[2, 7, 0]:.3f}" in view._token.object
    assert f"<b>{M.balance_loss(f.router_logits, 2):.3f}</b>" in view._balance.object
    entry = engine.entry(model)
    assert f"{entry['n_active_params']:,} of them used per token" in view._about_model.object
    state.query = 3
    assert view._f.selected.data["y"] == [3]


def test_without_a_mixture_of_experts_model_the_lesson_says_so(engine, monkeypatch):
    monkeypatch.setattr(V, "moe_model", lambda _engine: None)
    view = V.MoeLesson(state=AnatomyState(engine=engine, lesson="moe", text=TEXT))
    assert view._message.visible and "make build" in view._message.object


@pytest.mark.browser
def test_the_snapshot_redraws_the_routing_in_the_page(browser, engine, routing, tmp_path):
    model, labels, f = routing
    path = tmp_path / "moe.html"
    export_snapshot(path, TEXT, lessons="moe", options=dict(layer=0))
    page = open_offline(browser, path, 'doc.get_model_by_name("moe-token") != null')
    assert page.requests == [page.url_] and page.errors == []
    probs = M.router_probs(f.router_logits)
    for layer in (3, 1):
        model_set(page, "moe-layer", "active", layer)
        got = page.evaluate(
            "() => Array.from(Bokeh.documents[0].get_model_by_name('moe-router').data.p)"
        )
        np.testing.assert_allclose(np.reshape(got, probs[layer].shape), probs[layer], atol=1e-6)
        shares = page.evaluate(
            "() => Array.from(Bokeh.documents[0].get_model_by_name('moe-shares').data.text)"
        )
        np.testing.assert_allclose(shares, M.expert_shares(f.experts[layer], 4))
        title = "() => Bokeh.documents[0].get_model_by_name('moe-router-fig').title.text"
        assert page.evaluate(title) == f"Router, layer {layer}"
    x, y = cell_point(page, "moe-router-fig", 1, 9)
    page.mouse.click(x, y)
    expect(page.locator(".moe-token")).to_contain_text(f"In layer 1, {labels[9]}")
    embedded = probs.astype(np.float32)  # what the page holds
    want = V.token_html(labels, embedded, f.experts, f.expert_weights, 1, 9)
    assert model_get(page, "moe-token", "text") == want
    assert page.errors == []
    page.close()
