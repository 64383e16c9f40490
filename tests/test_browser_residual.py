"""The residual-stream lesson in a real Chromium: in the dashboard, picking a token redraws the
norm's steps with that token's numbers and a constant typed vector gets the eps message; in the
snapshot, offline, the token, layer and norm buttons and the typed vector redraw the same texts
the dashboard writes for the same selection.

Oracles: numpy over the engine's own ``hidden`` output (the mean and variance of the stream a
norm reads, computed here), and the dashboard's view built on a session state with the same
settings (its numbers are tested against torch in test_lesson_residual.py)."""

from __future__ import annotations

import urllib.parse

import numpy as np
import pytest
from playwright.sync_api import expect

from dashboard.state import DEFAULT_TEXT, AnatomyState
from dashboard.views.residual import ResidualLesson
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_get, open_offline, record_errors, serve
from tests.browser_support import model_set as _set

pytestmark = pytest.mark.browser

READY = 'doc.get_model_by_name("residual-steps-text") != null'
TEXT = "If the file does not exist, an exception is raised."


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


def _stream(engine, model: str, text: str) -> np.ndarray:
    ids = engine.tokenizer(model).encode(text)
    return engine.run(model, ids).hidden.astype(np.float64)


# -- the dashboard ------------------------------------------------------------------------------
def test_picking_a_token_redraws_the_steps_and_a_constant_vector_says_what_eps_does(
    server, browser, engine
):
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    record_errors(page)
    query = urllib.parse.urlencode({"lesson": "residual", "layer": 2, "q": 4})
    page.goto(f"{server}?{query}")
    steps = page.locator("p.norm-dim").first
    steps.wait_for(timeout=30_000)
    hidden = _stream(engine, engine.default_model, DEFAULT_TEXT)
    for q in (4, 7):
        if q != 4:
            page.locator(f'.chip[data-index="{q}"]').click()
            page.wait_for_function(f"() => new URL(location.href).searchParams.get('q') === '{q}'")
        x = hidden[2, q]
        mean, var = x.mean(), ((x - x.mean()) ** 2).mean()
        steps_text = page.locator(".residual-steps-text").first
        expect(steps_text).to_contain_text(f"mean μ = {mean:.4g}", timeout=10_000)
        text = " ".join(steps_text.locator("li, p").all_inner_texts())
        assert f"mean μ = {mean:.4g}" in text and f"= {var:.4g}" in text, text
        assert f"dim 0: {x[0]:.4g} " in text
    box = page.locator(".residual-vector input").first
    box.fill("5, 5, 5, 5")
    box.press("Enter")
    notice = page.get_by_text("the variance is 0").first
    notice.wait_for(timeout=10_000)
    assert "eps = 1e-05" in notice.inner_text()
    page.wait_for_function(
        "() => new URL(location.href).searchParams.get('vector') === '5, 5, 5, 5'"
    )
    box.fill("5, five")
    box.press("Enter")
    page.get_by_text("'five' is not a number").first.wait_for(timeout=10_000)
    assert urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["vector"] == ["5, 5, 5, 5"]
    assert page.errors == []
    page.close()


# -- the snapshot -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "residual.html"
    export_snapshot(path, TEXT, lessons="residual", options=dict(layer=1))
    return path


@pytest.fixture(scope="module")
def page(browser, snapshot):
    page = open_offline(browser, snapshot, READY)
    page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('residual-steps-text').text !== ''"
    )
    yield page
    page.close()


def _dashboard(engine, model="anatomy-gpt", **selection) -> ResidualLesson:
    state = AnatomyState(engine=engine, lesson="residual", text=TEXT, model=model)
    state.param.update(**selection)
    return ResidualLesson(state=state)


def test_it_opens_on_the_dashboards_texts(page, engine):
    n = len(engine.tokenizer("anatomy-gpt").encode(TEXT))
    view = _dashboard(engine, layer=1, query=n - 1)
    assert model_get(page, "residual-token", "value") == str(n - 1)
    assert model_get(page, "residual-steps-text", "text") == view._steps_html.object
    assert model_get(page, "residual-token", "title") == "Token"
    assert model_get(page, "residual-typed", "text") == view._typed_html.object
    assert model_get(page, "residual-verdict", "text") == view._verdict.object
    assert page.errors == [] and page.requests == [page.url_]


@pytest.mark.parametrize(
    ("query", "layer", "site"), [(2, 0, "attn"), (5, 3, "attn"), (0, 1, "final")]
)
def test_token_layer_and_norm_redraw_offline_as_the_dashboard(page, engine, query, layer, site):
    _set(page, "residual-token", "value", str(query))
    _set(page, "residual-layer", "active", layer)
    _set(page, "residual-site", "active", ["attn", "final"].index(site))
    view = _dashboard(engine, layer=layer, query=query, norm_site=site)
    assert model_get(page, "residual-steps-text", "text") == view._steps_html.object
    got = page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('residual-steps-lines').data.out)"
    )
    np.testing.assert_allclose(got, view._steps.data["out"], rtol=0, atol=1e-12)
    y = page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('residual-norm-selected').data.y)"
    )
    x = _stream(engine, "anatomy-gpt", TEXT)[:, query]
    np.testing.assert_allclose([y[0], y[-1]], np.linalg.norm(x[[0, -1]], axis=-1), rtol=1e-12)
    token_text = page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('residual-token-text').text"
    )
    assert token_text == view._token.object
    assert page.errors == []


def test_a_typed_vector_offline_with_its_messages(page, engine):
    view = _dashboard(engine)
    for text in ("5, 5, 5, 5", "3e20, -1e20, 2", "0.5 -1 2 8 1 1 1 1 1 9"):
        _set(page, "residual-vector", "value", text)
        view.vector_input.value = text
        assert model_get(page, "residual-typed", "text") == view._typed_html.object, text
        assert model_get(page, "residual-notice", "text") == view._typed_notice.object
        assert model_get(page, "residual-notice", "visible") == view._typed_notice.visible
        assert model_get(page, "residual-error", "visible") is False
    good = model_get(page, "residual-typed", "text")
    for bad in ("", "1, x", "1e39", "nan"):
        _set(page, "residual-vector", "value", bad)
        view.vector_input.value = bad
        assert model_get(page, "residual-error", "visible") is True
        assert model_get(page, "residual-error", "text") == view._typed_error.object, bad
        assert model_get(page, "residual-typed", "text") == good  # the last good steps stay
    assert page.errors == []


def test_the_llama_snapshot_steps_through_rmsnorm(browser, engine, tmp_path):
    path = tmp_path / "llama.html"
    export_snapshot(path, TEXT, lessons="residual", model="anatomy-llama", options=dict(layer=2))
    page = open_offline(browser, path, READY)
    page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('residual-steps-text').text !== ''"
    )
    _set(page, "residual-token", "value", "3")
    view = _dashboard(engine, "anatomy-llama", layer=2, query=3)
    text = model_get(page, "residual-steps-text", "text")
    assert text == view._steps_html.object
    assert text.index("RMSNorm: anatomy-llama") < text.index("LayerNorm, what if")
    assert page.errors == []
    page.close()
