"""The sampling lesson's snapshot in a real Chromium, offline: the dashboard's panels (bars,
curves over T, entropy, summary, presets) redrawn in the page. Expected numbers come from
dashboard.lessons.sampling (tested against torch and Hugging Face) on the engine's logits,
token labels from tiktoken; the words from the dashboard view's own Python, run here."""

from __future__ import annotations

import html
import json

import numpy as np
import pytest
import tiktoken
import torch
from tiktoken.load import load_tiktoken_bpe

from dashboard.lessons import sampling as S
from dashboard.state import DEFAULT_TEXT, AnatomyState
from dashboard.views import sampling as V
from export.snapshot import export_snapshot
from models.bpe import readable
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_data, open_offline
from tests.browser_support import model_get as _get
from tests.browser_support import model_set as _set

pytestmark = pytest.mark.browser

TEXT = DEFAULT_TEXT + " <b>x</b> & y"  # the <b> and & reach the page as text, never markup
QUERY = 4  # "·not", followed by "·exist"


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def reading(engine):
    model = engine.default_model
    ids = engine.tokenizer(model).encode(TEXT)
    return ids, engine.run(model, ids).logits.astype(np.float64)


@pytest.fixture(scope="module")
def labels(engine):
    """Readable token text by id, from tiktoken built from the tokenizer's files."""
    spec = engine.entry(engine.default_model)["tokenizer"]
    meta = json.loads((STATIC_DIR / f"{spec['name']}.json").read_text())
    ranks = load_tiktoken_bpe(str(STATIC_DIR / f"{spec['name']}.tiktoken"))
    enc = tiktoken.Encoding("anatomy", pat_str=meta["pattern"], mergeable_ranks=ranks,
                            special_tokens={})  # fmt: skip
    return lambda i: readable(enc.decode_single_token_bytes(int(i)))


def _open(browser, path):
    """``path`` offline, once drawn."""
    ready = 'doc.get_model_by_name("sampling-curve-0")?.data.y.length > 0'
    return open_offline(browser, path, ready)


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "sampling.html"
    export_snapshot(path, TEXT, lessons="sampling", options={"query": QUERY})
    page = _open(browser, path)
    yield page
    page.close()


def _settle(page, t=1.0, k="", p="1", pos=QUERY):
    _set(page, "sampling-position", "value", pos)
    _set(page, "temperature-slider", "value", t)
    _set(page, "top-k-input", "value", k)
    _set(page, "top-p-input", "value", p)


def _curves(page):
    lines = [model_data(page, f"sampling-curve-{i}", "y") for i in range(V.CURVE_TOKENS)]
    return np.array(lines).T, model_data(page, "sampling-entropy", "y")


def test_opens_offline_fast_with_no_error(page):
    assert page.requests == [page.url_] and page.errors == []
    assert page.opened_in < 5  # the budget (1.5 s) is measured on the all-lessons page


@pytest.mark.parametrize(("k", "p"), [(None, 1.0), (3, 1.0), (None, 0.8), (10, 0.9)])
def test_curves_and_entropy_follow_the_cuts(page, reading, labels, k, p):
    _, logits = reading
    _settle(page, 1.0, "" if k is None else str(k), str(p))
    temps = model_data(page, "sampling-curve-0", "x")
    assert temps == S.default_temperatures(5.0, 101).tolist()
    want = S.temperature_curves(logits[QUERY], temps, 5, k, p)
    probs, h = _curves(page)
    np.testing.assert_allclose(probs, want.probs, atol=1e-12)
    np.testing.assert_allclose(h, want.entropy, atol=1e-12)
    legend = page.evaluate(
        """() => Bokeh.documents[0].get_model_by_name("sampling-curves")
                 .select({type: Bokeh.Models.get("LegendItem")}).map(i => i.label.value)"""
    )
    assert legend == [labels(i) for i in want.ids]
    plain = model_data(page, "sampling-entropy-plain", "y")
    if k is None and p == 1.0:
        assert plain == []  # the dotted "temperature alone" line only beside a cut
    else:
        np.testing.assert_allclose(plain, S.temperature_curves(logits[QUERY], temps, 1).entropy,
                                   atol=1e-12)  # fmt: skip
    # the entropy axis fits the highest curve, and the right axis reads e^H
    top = max(max(h), *(plain or [0])) * 1.08
    end = page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('sampling-entropy-figure').y_range.end"
    )
    assert end == pytest.approx(max(top, 0.5))


def test_markers_follow_the_temperature_and_the_position(page, reading):
    _, logits = reading
    for pos, t, k, p in [(QUERY, 2.35, "", "1"), (QUERY, 0.5, "4", "0.9"), (2, 0.0, "", "1")]:
        _settle(page, t, k, p, pos)
        d = S.distribution(logits[pos], t, S.parse_top_k(k), S.parse_top_p(p))
        assert model_data(page, "sampling-marker", "x") == [t] * 5
        np.testing.assert_allclose(
            model_data(page, "sampling-marker", "y"), d.final[d.order[:5]], atol=1e-12
        )
        assert model_data(page, "sampling-entropy-marker", "y")[0] == pytest.approx(
            d.entropy, abs=1e-12
        )
        curves = S.temperature_curves(
            logits[pos], S.default_temperatures(), 5, S.parse_top_k(k), S.parse_top_p(p)
        )
        np.testing.assert_allclose(_curves(page)[0][:, 0], curves.probs[:, 0], atol=1e-12)
    assert page.errors == []


SETTINGS = [
    (QUERY, 1.0, None, 1.0),
    (QUERY, 0.7, None, 0.9),
    (QUERY, 0.0, 5, 1.0),  # greedy: the note in the summary
    (2, 1.5, 1, 1.0),  # the text's next token is cut away: "can never pick it"
    (None, 1.2, 50, 0.98),  # the last position: the end of the text
]


@pytest.mark.parametrize(("pos", "t", "k", "p"), SETTINGS)
def test_bars_and_words_are_the_dashboards(page, engine, reading, pos, t, k, p):
    """The same bars, title, summary and preset text as the dashboard's view shows."""
    ids, logits = reading
    pos = len(ids) - 1 if pos is None else pos
    _settle(page, t, "" if k is None else str(k), f"{p:g}", pos)
    state = AnatomyState(engine=engine, text=TEXT, query=pos, temperature=t, top_k=k, top_p=p)
    view = V.SamplingLesson(state=state)
    want = view.bars.source.data
    got = {c: model_data(page, "sampling-bars", c) for c in want}
    for c in ("tid", "label", "tick", "rank", "kept", "chosen", "color", "hatch", "pct", "x"):
        assert got[c] == list(want[c]), c
    for c in ("tempered", "final", "top"):
        np.testing.assert_allclose(got[c], want[c], atol=1e-12)
    # the numbers themselves, from the lesson's function on the logits
    d = S.distribution(logits[pos], t, k, p)
    np.testing.assert_allclose(got["final"], d.final[got["tid"]], atol=1e-12)
    fig = "() => { const f = Bokeh.documents[0].get_model_by_name('sampling-bars-figure');" \
          " return [f.title.text, f.y_range.end, f.x_range.end]; }"  # fmt: skip
    title, y_end, x_end = page.evaluate(fig)
    assert [title, y_end, x_end] == pytest.approx(
        [view.bars.figure.title.text, view.bars.figure.y_range.end, view.bars.figure.x_range.end]
    )
    assert model_data(page, "sampling-chosen", "x") == list(view.bars.chosen.data["x"])
    # the summary: the dashboard's words (with the snapshot's end-of-text line), same numbers
    summary = _get(page, "sampling-summary", "text")
    vocab = view._labels()
    chosen = ids[pos + 1] if pos + 1 < len(ids) else None
    assert html.unescape(summary) == html.unescape(V.summary_html(d, vocab, chosen, live=False))
    if t == 0:
        assert "T = 0 is greedy" in summary
    if chosen is not None and not d.kept[chosen]:
        assert "can never pick it" in summary
    if chosen is None:
        assert "live dashboard" in summary
    assert _get(page, "sampling-preset-text", "text") == view.preset_text.object
    assert page.errors == []


def test_a_preset_click_sets_t_k_and_p(page, reading):
    _, logits = reading
    _settle(page, 1.0, "", "1")
    names = _get(page, "sampling-presets", "labels")
    assert names == [*S.PRESETS, "Custom"]
    assert names[_get(page, "sampling-presets", "active")] == "Pure sampling"
    for name, preset in S.PRESETS.items():
        page.get_by_role("button", name=name, exact=True).click()
        assert _get(page, "temperature-slider", "value") == preset.temperature
        k_box = "" if preset.top_k is None else str(preset.top_k)
        assert _get(page, "top-k-input", "value") == k_box
        assert float(_get(page, "top-p-input", "value")) == preset.top_p
        assert model_data(page, "sampling-cuts", "k") == [preset.top_k or 0]
        assert model_data(page, "sampling-cuts", "p") == [preset.top_p]
        assert names[_get(page, "sampling-presets", "active")] == name
        assert html.escape(preset.explain) in _get(page, "sampling-preset-text", "text")
        d = S.distribution(logits[QUERY], preset.temperature, preset.top_k, preset.top_p)
        tid = model_data(page, "sampling-bars", "tid")
        assert model_data(page, "sampling-bars", "kept") == d.kept[tid].tolist()
        np.testing.assert_allclose(model_data(page, "sampling-bars", "final"), d.final[tid],
                                   atol=1e-12)  # fmt: skip
    _set(page, "temperature-slider", "value", 2.0)  # any other setting is "Custom"
    assert names[_get(page, "sampling-presets", "active")] == "Custom"
    assert "Custom: T = 2, top-k off, top-p 1" in _get(page, "sampling-preset-text", "text")
    assert page.errors == []


def test_generation_is_named_as_needing_the_live_dashboard(page):
    assert "make serve" in _get(page, "sampling-generate-note", "text")
    note = page.get_by_text("generation needs the live dashboard")
    assert note.is_visible() and "make serve" in note.inner_text()
    assert page.get_by_role("button", name="Sample next token").count() == 0


def test_token_text_is_escaped_in_the_summary(page, reading):
    ids, _ = reading
    pos = next(i for i in range(len(ids) - 1) if "<" in model_vocab(page, ids[i + 1]))
    _settle(page, 1.0, "", "1", pos)
    summary = _get(page, "sampling-summary", "text")
    assert "&lt;" in summary and "<b>x" not in summary and "<b class='tok'>" in summary
    assert page.errors == []


def model_vocab(page, i):
    return page.evaluate(
        "(i) => Bokeh.documents[0].get_model_by_name('vocab').data.label[i]", int(i)
    )


def test_a_change_redraws_within_a_few_frames(page):
    _settle(page)
    times = page.evaluate(
        """() => {
          const s = Bokeh.documents[0].get_model_by_name("temperature-slider"), out = [];
          for (const t of [0.5, 1.5, 2.5, 3.5, 4.5]) {
            const t0 = performance.now(); s.value = t; out.push(performance.now() - t0);
          }
          return out;
        }"""
    )
    assert sorted(times)[2] < 100, times  # ms, median: bars, 101-point curves, texts


def _torch_probs(logits, pos, t):
    return torch.softmax(torch.from_numpy(logits[pos]) / t, -1).numpy()


JS_SLIDER_LABEL = """
() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name("temperature-slider"))
        .title_el.textContent
"""


def test_the_slider_shows_the_temperature_in_use(page):
    """A snapshot exported at T = 0.001 (typed in the dashboard) reads 0.001, not 0."""
    for t, shown in ((0.001, "0.001"), (2.35, "2.35"), (1e-5, "1e-05"), (1.0, "1")):
        _settle(page, t)
        assert page.evaluate(JS_SLIDER_LABEL) == f"Temperature T: {shown}"
    assert page.errors == []


@pytest.mark.parametrize(
    ("box", "good", "bad", "words"),
    [
        ("top-k-input", "3", "abc", "still using top-k = 3."),
        ("top-k-input", "3", "0", "still using top-k = 3."),
        ("top-p-input", "0.9", "2", "still using top-p = 0.9."),
        ("top-p-input", "0.9", "abc", "still using top-p = 0.9."),
    ],
)
def test_a_refused_cut_says_which_value_is_in_use(page, reading, box, good, bad, words):
    _, logits = reading
    k, p = (3, 1.0) if box == "top-k-input" else (None, 0.9)
    _settle(page, 1.0, "" if k is None else str(k), str(p))
    _set(page, box, "value", good)
    assert _get(page, "sampling-error", "visible") is False
    before = model_data(page, "sampling-bars", "final")
    _set(page, box, "value", bad)
    assert _get(page, "sampling-error", "visible") is True
    assert words in html.unescape(_get(page, "sampling-error", "text"))
    assert _get(page, box, "value") == bad  # left there to be corrected
    assert model_data(page, "sampling-bars", "final") == before
    # the bars are those of the value in use: torch's softmax, cut and renormalised
    probs = _torch_probs(logits, QUERY, 1.0)
    order = np.argsort(-probs, kind="stable")
    keep = np.zeros(probs.size, bool)
    if k is not None:
        keep[order[:k]] = True
    else:
        keep[order[: int(np.searchsorted(np.cumsum(probs[order]), p)) + 1]] = True
    want = np.where(keep, probs, 0) / probs[keep].sum()
    tid = model_data(page, "sampling-bars", "tid")
    np.testing.assert_allclose(before, want[tid], atol=1e-9)
    _settle(page)
    assert _get(page, "sampling-error", "visible") is False
    assert page.errors == []


JS_ENTROPY_LEGEND = """
() => Bokeh.documents[0].get_model_by_name("sampling-entropy-figure")
        .select({type: Bokeh.Models.get("LegendItem")})
        .map(i => [i.label.value, i.visible, i.renderers[0].data_source.name])
"""


def test_the_entropy_legend_shows_the_dotted_curve_only_beside_a_cut(page):
    for k, p, cut in (("", "1", False), ("3", "1", True), ("", "0.8", True), ("", "1", False)):
        _settle(page, 1.0, k, p)
        assert page.evaluate(JS_ENTROPY_LEGEND) == [
            ["sampled from", True, "sampling-entropy"],
            ["T alone (no cuts)", cut, "sampling-entropy-plain"],
        ], (k, p)
    assert page.errors == []


JS_MARK = """
() => { const r = Bokeh.documents[0].get_model_by_name("sampling-tempered-mark");
        return [r.glyph.type, r.glyph.y.field, r.data_source.name]; }
"""


def test_a_line_marks_the_probability_after_temperature_on_every_bar(page, reading):
    _, logits = reading
    assert page.evaluate(JS_MARK) == ["Rect", "tempered", "sampling-bars"]
    for pos, t, k in ((QUERY, 1.0, ""), (QUERY, 1.6, "3"), (2, 0.4, "")):
        _settle(page, t, k, "1", pos)
        tid = model_data(page, "sampling-bars", "tid")
        tempered = model_data(page, "sampling-bars", "tempered")
        np.testing.assert_allclose(tempered, _torch_probs(logits, pos, t)[tid], atol=1e-9)
        if not k:  # nothing cut: the line is what shows the pale bar under the solid one
            np.testing.assert_allclose(model_data(page, "sampling-bars", "final"), tempered,
                                       atol=1e-12)  # fmt: skip
    assert page.errors == []


JS_HATCHED = """
() => Bokeh.documents[0].get_model_by_name("sampling-bars-figure").renderers
  .filter(r => r.glyph.hatch_pattern !== undefined && (r.glyph.hatch_pattern.field !== undefined
               || !["", " ", null].includes(r.glyph.hatch_pattern.value)))
  .map(r => [r.glyph.hatch_pattern.field !== undefined ? {field: r.glyph.hatch_pattern.field}
             : {value: r.glyph.hatch_pattern.value}, Array.from(r.view.indices.ones())])
"""


def test_the_cut_bars_and_only_they_are_hatched_with_one_pattern(page):
    """One pattern for the glyph: a pattern per bar, read from a column, made Bokeh draw a new
    pattern canvas for every bar at every redraw (a slider move's slowest part after the
    plots themselves)."""
    for k, p in (("3", "1"), ("", "0.8"), ("", "1")):
        _settle(page, 1.0, k, p)
        cut = [i for i, kept in enumerate(model_data(page, "sampling-bars", "kept")) if not kept]
        hatched = page.evaluate(JS_HATCHED)
        assert [pattern for pattern, _ in hatched] == [{"value": "/"}], hatched
        assert hatched[0][1] == cut, (k, p)
    assert page.errors == []
