"""The attention and mask lessons of a snapshot show what the dashboard shows: the four mask
panels with the dashboard's titles and story, and the all-heads grid tiled in the page.

Oracles: the engine's own forward pass, torch's softmax, and the dashboard's view built on a
session state with the same settings (the one definition both homes share)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dashboard.state import AnatomyState
from dashboard.views.mask import MaskLesson
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_set as _set
from tests.browser_support import open_offline

pytestmark = pytest.mark.browser

TEXT = "If the file does not exist, an exception is raised and the file is not created."


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory, engine):
    path = tmp_path_factory.mktemp("snap") / "mask.html"
    export_snapshot(path, TEXT, lessons="mask,attention", options=dict(layer=1, head=2))
    page = open_offline(browser, path, 'doc.get_model_by_name("mask-story").text.length > 0')
    yield page
    page.close()


def _model(page, name, expr):
    return page.evaluate(
        f"(n) => {{ const m = Bokeh.documents[0].get_model_by_name(n); {expr} }}", name
    )


def _image(page, name):
    got = _model(
        page, name, "return Array.from(m.data.image[0], v => Number.isFinite(v) ? v : String(v));"
    )
    t = int(round(len(got) ** 0.5))
    return np.array([float(v) if isinstance(v, str) else v for v in got]).reshape(t, t)


def _dashboard_story(engine, **settings) -> str:
    state = AnatomyState(engine=engine, text=TEXT)
    state.param.update(**settings)
    return MaskLesson(state=state)._story.object


def test_the_four_panels_and_titles_of_the_dashboard(page, engine):
    from dashboard.views.mask import TITLES

    titles = [
        _model(page, f"mask-{n}", "return m.title.text;")
        for n in ("allowed", "scores", "masked", "probs")
    ]
    assert titles == list(TITLES[False])
    f = engine.run(engine.default_model, engine.tokenizer(engine.default_model).encode(TEXT))
    np.testing.assert_allclose(_image(page, "mask-scores-image"), f.attn_scores[1, 2], atol=1e-6)
    assert page.errors == []


@pytest.mark.parametrize(
    ("kind", "pad", "fill"), [(0, 2, 0), (3, 3, 0), (3, 3, 1), (1, 2, 1)]
)  # causal; padded batch with −∞ and with −10⁹; no mask
def test_the_story_is_the_dashboards(page, engine, kind, pad, fill):
    kinds = ["causal", "none", "sliding", "padding"]
    _set(page, "mask-pad", "value", pad)
    _set(page, "mask-fill", "active", fill)
    _set(page, "mask-kind", "active", kind)
    got = _model(page, "mask-story", "return m.text;")
    want = _dashboard_story(
        engine, layer=1, head=2, mask=kinds[kind], pad=pad, fill=["-inf", "-1e9"][fill]
    )
    assert got == want
    # the softmax under the chosen mask, against torch
    f = engine.run(engine.default_model, engine.tokenizer(engine.default_model).encode(TEXT))
    scores = torch.from_numpy(f.attn_scores[1, 2].astype(np.float64))
    t = scores.shape[0]
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    allowed = {0: j <= i, 1: torch.ones(t, t, dtype=torch.bool), 3: (j <= i) & (j >= pad)}[kind]
    value = [float("-inf"), -1e9][fill]
    want_p = torch.softmax(scores.masked_fill(~allowed, value), -1).numpy()
    np.testing.assert_allclose(_image(page, "mask-probs-image"), want_p, atol=1e-6)
    assert page.errors == []


def test_the_grid_is_tiled_in_the_page_from_the_embedded_probabilities(page, engine):
    _set(page, "lessons", "active", 1)  # the attention tab
    img = page.evaluate(
        """() => {
          const fig = Bokeh.documents[0].get_model_by_name('grid');
          const r = fig.renderers.find(r => r.data_source.data.image);
          const a = r.data_source.data.image[0];
          return {shape: a.shape, values: Array.from(a, v => Number.isFinite(v) ? v : null)};
        }"""
    )
    f = engine.run(engine.default_model, engine.tokenizer(engine.default_model).encode(TEXT))
    n_layer, n_head, t, _ = f.attn_probs.shape
    gap = max(1, int(np.ceil(t / 6)))
    size = t + gap
    canvas = np.array([np.nan if v is None else v for v in img["values"]]).reshape(img["shape"])
    assert canvas.shape == (n_layer * size - gap, n_head * size - gap)
    for lay in range(n_layer):
        for h in range(n_head):
            tile = canvas[lay * size : lay * size + t, h * size : h * size + t]
            np.testing.assert_allclose(tile, f.attn_probs[lay, h], atol=1e-7)
    assert np.isnan(canvas[t : t + gap]).all()  # the gaps
    assert page.errors == []


@pytest.mark.parametrize(("layer", "query", "key"), [(0, 5, 2), (2, 16, 16), (3, 3, 9), (1, 0, 0)])
def test_the_attention_detail_is_the_dashboards_text(page, engine, layer, query, key):
    from dashboard.lessons.attention import query_detail
    from dashboard.views.attention import detail_html

    _set(page, "lessons", "active", 1)  # the attention tab
    page.evaluate(
        "([q, k]) => { Bokeh.documents[0].get_model_by_name('attention-pick').data ="
        " {query: [q], key: [k]}; }",
        [query, key],
    )
    _set(page, "attention-layer", "active", (layer + 1) % 4)  # any change redraws
    _set(page, "attention-layer", "active", layer)
    got = _model(page, "attention-detail", "return m.text;")
    model = engine.default_model
    f = engine.run(model, engine.tokenizer(model).encode(TEXT))
    state = AnatomyState(engine=engine, text=TEXT)
    d = query_detail(f.attn_scores[layer, 2], f.attn_probs[layer, 2], query, key)
    assert got == "".join(detail_html(state.labels, d, query, key))
    assert page.errors == []
