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


@pytest.mark.parametrize(("classroom", "n"), [(False, 32), (False, 17), (True, 32)])
def test_every_row_and_column_of_a_short_text_is_labelled(browser, tmp_path, engine, classroom, n):
    """Up to 32 tokens each of the four matrices names every row and column, and at the
    figures' size Bokeh paints every label, none overlapping its neighbour."""
    from tests.matrix_support import SHORT_TEXT, assert_every_token_labelled, text_of

    path = tmp_path / "short.html"
    export_snapshot(path, text_of(engine, SHORT_TEXT, n), lessons="mask", classroom=classroom)
    size = (1920, 1080) if classroom else (1600, 1200)
    page = open_offline(browser, path, 'doc.get_model_by_name("mask-story").text.length > 0', size)
    page.wait_for_timeout(300)
    for name in ("mask-allowed", "mask-scores", "mask-masked", "mask-probs"):
        assert_every_token_labelled(page, name, n)
    assert page.errors == []
    page.close()


@pytest.fixture(scope="module")
def tiny_page(browser, tmp_path_factory, engine):
    """The mask lesson on a 128-token text whose layer 2, head 1 gives many allowed keys a
    probability far below 1e-12."""
    from tests.matrix_support import TINY_TEXT, text_of

    path = tmp_path_factory.mktemp("snap") / "tiny.html"
    text = text_of(engine, TINY_TEXT, 128)
    export_snapshot(path, text, lessons="mask", options=dict(layer=2, head=1))
    page = open_offline(browser, path, 'doc.get_model_by_name("mask-story").text.length > 0')
    page.text = text
    yield page
    page.close()


@pytest.mark.parametrize(
    ("kind", "pad", "fill"), [(0, 2, 0), (2, 2, 0), (3, 3, 0), (3, 3, 1)]
)  # causal; sliding window; padded batch with −∞ and with −10⁹
def test_the_softmax_paints_exactly_the_removed_keys_masked(tiny_page, engine, kind, pad, fill):
    """In the softmax, a key the mask removed is painted in the masked colour and every key
    it keeps in the palette, however tiny its probability; a row with no key left shows what
    its fill gives instead (NaN with −∞, a uniform row with −10⁹)."""
    from dashboard.views.plots import NORMAL, PROB_PALETTE
    from tests.matrix_support import drawn_colours, painted

    page = tiny_page
    _set(page, "mask-window", "value", 3)
    _set(page, "mask-pad", "value", pad)
    _set(page, "mask-fill", "active", fill)
    _set(page, "mask-kind", "active", kind)
    colours = drawn_colours(page, "mask-probs")
    t = colours.shape[0]
    i, j = np.indices((t, t))
    allowed = {0: j <= i, 2: (j <= i) & (j > i - 3), 3: (j <= i) & (j >= pad)}[kind]
    keeps_a_key = allowed.any(1)[:, None]
    np.testing.assert_array_equal(painted(colours, NORMAL.masked), ~allowed & keeps_a_key)
    if kind == 0:  # the tiniest probabilities (torch's softmax) take the palette's lowest colour
        model = engine.default_model
        f = engine.run(model, engine.tokenizer(model).encode(page.text))
        scores = torch.from_numpy(f.attn_scores[2, 1].astype(np.float64))
        want = torch.softmax(scores.masked_fill(~torch.from_numpy(allowed), -np.inf), -1).numpy()
        tiny = allowed & (want < 1e-12)
        assert tiny.sum() > 50
        assert painted(colours, PROB_PALETTE[0])[tiny].all()
    if kind == 3:
        empty = np.broadcast_to(~keeps_a_key, (t, t))
        assert painted(colours, NORMAL.nan)[empty].all() == (fill == 0)
    assert page.errors == []
