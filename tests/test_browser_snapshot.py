"""The exported snapshot in a real Chromium, offline: every request is recorded and anything
but the file itself is aborted; the page's Bokeh document says what is drawn, and the
expected numbers come from the engine, torch, tiktoken, numpy and ml_dtypes, computed here.
"""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
import tiktoken
import torch
from tiktoken.load import load_tiktoken_bpe

from dashboard.lessons import sampling as S
from dashboard.state import DEFAULT_TEXT
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import JS_TITLE, model_data, open_offline
from tests.browser_support import model_get as _get
from tests.browser_support import model_set as _set

pytestmark = pytest.mark.browser

LONG_TEXT = "Return the value of the named attribute of object; if the attribute is missing, "
# the <b> and & must reach the page as text, never as markup
TEXT = DEFAULT_TEXT + " <b>x</b> & y"


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def forward(engine):
    model = engine.default_model
    return engine.run(model, engine.tokenizer(model).encode(TEXT))


def _open(browser, path, viewport=(1600, 1200)):
    """Open ``path`` offline, ready once the lessons' first draw has filled the bars."""
    ready = 'doc.get_model_by_name("sampling-bars")?.data.tid.length > 0'
    return open_offline(browser, path, ready, viewport)


def _image(page, name):
    got = page.evaluate(
        """(n) => Array.from(Bokeh.documents[0].get_model_by_name(n).data.image[0],
                             v => Number.isFinite(v) ? v : String(v))""",
        name,
    )
    t = int(round(len(got) ** 0.5))
    return np.array([float(v) if isinstance(v, str) else v for v in got]).reshape(t, t)


def _click_data(page, figure, x, y):
    """A real mouse click at data coordinates (x, y) of the named figure."""
    pos = page.evaluate(
        """([n, x, y]) => {
          const m = Bokeh.documents[0].get_model_by_name(n);
          for (const root of Object.values(Bokeh.index)) {
            let v = null;
            try { v = root.owner.get_one(m); } catch (e) { continue; }
            v.el.scrollIntoView({block: "center"});  // a click lands only inside the window
            const r = v.canvas_view.el.getBoundingClientRect();
            return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)];
          }
          return null;
        }""",
        [figure, x, y],
    )
    page.mouse.click(*pos)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "snapshot.html"
    export_snapshot(path, TEXT, options=dict(layer=0, head=0))
    return path


@pytest.fixture(scope="module")
def page(browser, snapshot):
    page = _open(browser, snapshot)
    yield page
    page.close()


def _tab(page, name):
    names = page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('lessons').tabs.map(t => t.name)"
    )
    _set(page, "lessons", "active", names.index(f"tab-{name}"))
    # a lesson is laid out the first time its tab opens: wait for its views
    page.wait_for_function(
        """() => { const t = Bokeh.documents[0].get_model_by_name('lessons');
                   return Bokeh.index.find_one(t.tabs[t.active].child) != null; }"""
    )
    page.wait_for_timeout(100)


def test_opens_offline_with_no_request_and_no_error(page):
    assert page.requests == [page.url_]  # the file itself, nothing else (not even a favicon)
    assert page.errors == []
    # the text is shown as text: the chips hold "<b>" literally, and no <b>x</b> was made
    chips = page.locator(".snap-header .chip").all_inner_texts()
    assert "·<" in chips and "b" in chips and ">" in chips
    assert page.locator(".snap-header b", has_text="x").count() == 0


def test_only_the_open_lesson_is_laid_out_until_its_tab_is_chosen(browser, snapshot):
    """The first render pays for one lesson (the render budget); the others are laid out the
    first time their tab opens, and then work like the first."""
    page = _open(browser, snapshot)
    laid_out = """(n) => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(n)) != null"""
    assert page.evaluate(laid_out, "heatmap")  # attention opens first
    assert not page.evaluate(laid_out, "mask-probs")
    assert not page.evaluate(laid_out, "precision-bits-figure")
    _tab(page, "mask")
    assert page.evaluate(laid_out, "mask-probs")
    _set(page, "mask-kind", "active", 1)  # no mask: every key allowed
    assert (_image(page, "mask-allowed-image") == 1).all()
    _tab(page, "attention")
    assert page.evaluate(laid_out, "heatmap") and page.evaluate(laid_out, "mask-probs")
    assert page.errors == []
    page.close()


def test_layer_and_head_change_the_heatmap(page, forward):
    _tab(page, "attention")
    np.testing.assert_array_equal(_image(page, "heatmap-image"), forward.attn_probs[0, 0])
    _set(page, "attention-layer", "active", 2)
    _set(page, "attention-head", "active", 3)
    np.testing.assert_array_equal(_image(page, "heatmap-image"), forward.attn_probs[2, 3])
    title = page.evaluate("() => Bokeh.documents[0].get_model_by_name('heatmap').title.text")
    assert title.startswith("Layer 2, head 3")
    # the stages: the scores (computed in the page from the embedded q and k: the model's to
    # float32 rounding), then the causal mask as -inf
    _set(page, "attention-stage", "active", 0)
    scores = forward.attn_scores[2, 3]
    np.testing.assert_allclose(_image(page, "heatmap-image"), scores, rtol=1e-6, atol=1e-5)
    _set(page, "attention-stage", "active", 1)
    masked = _image(page, "heatmap-image")
    t = scores.shape[0]
    upper = np.triu(np.ones((t, t), bool), 1)
    assert np.all(np.isneginf(masked[upper]))
    # ...whose softmax (torch, float64) is the probabilities the model gave
    soft = torch.softmax(torch.from_numpy(masked), -1).numpy()
    np.testing.assert_allclose(soft, forward.attn_probs[2, 3], atol=1e-6)
    _set(page, "attention-stage", "active", 2)
    assert page.errors == []


def test_a_click_on_the_grid_selects_that_head(page, forward):
    _tab(page, "attention")
    t = forward.attn_probs.shape[-1]
    gap = model_data(page, "grid-meta", "gap")[0]
    size = t + gap
    # the middle of the tile of layer 1, head 2
    _click_data(page, "grid", 2 * size + t / 2, 1 * size + t / 2)
    page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('attention-layer').active === 1"
    )
    assert _get(page, "attention-head", "active") == 2
    np.testing.assert_array_equal(_image(page, "heatmap-image"), forward.attn_probs[1, 2])
    # a click on a heatmap cell picks the query and key: bars show that query's row
    _click_data(page, "heatmap", 3, 5)
    page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('attention-pick').data.query[0] === 5"
    )
    np.testing.assert_allclose(
        model_data(page, "attention-bars", "top"), forward.attn_probs[1, 2, 5], atol=1e-7
    )
    assert page.errors == []


def _bars(page):
    return {c: model_data(page, "sampling-bars", c) for c in ("tid", "final", "tempered", "kept")}


def test_temperature_slider_recomputes_the_softmax(page, forward):
    _tab(page, "sampling")
    logits = torch.from_numpy(forward.logits[-1].astype(np.float64))
    before = _bars(page)
    top = torch.topk(logits, len(before["tid"])).indices.tolist()
    assert before["tid"] == top
    np.testing.assert_allclose(before["final"], torch.softmax(logits, -1)[top].numpy(), atol=1e-6)
    for t in (0.5, 2.35, 5.0):
        _set(page, "temperature-slider", "value", t)
        after = _bars(page)
        want = torch.softmax(logits / t, -1)[top].numpy()
        np.testing.assert_allclose(after["final"], want, atol=1e-6)
        np.testing.assert_allclose(after["tempered"], want, atol=1e-6)
    assert after["final"] != before["final"]
    _set(page, "temperature-slider", "value", 0)  # greedy: one-hot on the argmax
    assert _bars(page)["final"] == [1.0] + [0.0] * (len(top) - 1)
    # another position: the bars follow its logits
    _set(page, "temperature-slider", "value", 1)
    _set(page, "sampling-position", "value", 3)
    row = torch.from_numpy(forward.logits[3].astype(np.float64))
    got = _bars(page)
    np.testing.assert_allclose(got["final"], torch.softmax(row, -1)[got["tid"]].numpy(), atol=1e-6)
    _set(page, "sampling-position", "value", forward.logits.shape[0] - 1)
    assert page.errors == []


@pytest.mark.parametrize(
    "t, k, p", [(1.0, "3", "1"), (0.8, "", "0.5"), (1.5, "10", "0.9"), (0.0, "5", "0.3")]
)
def test_top_k_and_top_p_cut_as_the_python_lesson(page, forward, t, k, p):
    _tab(page, "sampling")
    _set(page, "temperature-slider", "value", t)
    _set(page, "top-k-input", "value", k)
    _set(page, "top-p-input", "value", p)
    got = _bars(page)
    want = S.distribution(forward.logits[-1], t, S.parse_top_k(k), S.parse_top_p(p))
    ids = got["tid"]
    assert got["kept"] == want.kept[ids].tolist()
    np.testing.assert_allclose(got["final"], want.final[ids], atol=1e-9)
    assert _get(page, "sampling-error", "visible") is False


def test_bad_cut_shows_a_message_and_keeps_the_bars(page):
    _tab(page, "sampling")
    _set(page, "top-k-input", "value", "")
    _set(page, "top-p-input", "value", "1")
    before = _bars(page)
    _set(page, "top-p-input", "value", "1.5")
    assert _get(page, "sampling-error", "visible") is True
    assert "(0, 1]" in _get(page, "sampling-error", "text")
    assert _bars(page) == before
    _set(page, "top-k-input", "value", "two")
    assert "top-k" in _get(page, "sampling-error", "text")
    _set(page, "top-k-input", "value", "")
    _set(page, "top-p-input", "value", "1")
    assert _get(page, "sampling-error", "visible") is False
    assert page.errors == []


def _tiktoken(engine):
    model = engine.default_model
    spec = engine.entry(model)["tokenizer"]
    meta = json.loads((STATIC_DIR / f"{spec['name']}.json").read_text())
    ranks = load_tiktoken_bpe(str(STATIC_DIR / f"{spec['name']}.tiktoken"))
    return tiktoken.Encoding(
        "anatomy", pat_str=meta["pattern"], mergeable_ranks=ranks, special_tokens={}
    )


def test_merge_slider_replays_the_encoding(page, engine):
    _tab(page, "bpe")
    enc = _tiktoken(engine)
    n = _get(page, "bpe-step", "end")
    assert model_data(page, "bpe-segments", "id") == enc.encode_ordinary(TEXT)
    _set(page, "bpe-step", "value", 0)  # no merge: one token per UTF-8 byte
    single = [enc.encode_single_token(bytes([b])) for b in TEXT.encode("utf-8")]
    assert model_data(page, "bpe-segments", "id") == single
    lengths = []
    for k in (n // 4, n // 2, n - 1, n):
        _set(page, "bpe-step", "value", k)
        ids = model_data(page, "bpe-segments", "id")
        # every intermediate segmentation still spells the text
        assert b"".join(enc.decode_single_token_bytes(i) for i in ids) == TEXT.encode()
        lengths.append(len(ids))
    assert lengths == sorted(lengths, reverse=True) and lengths[0] < len(single)
    assert model_data(page, "bpe-segments", "id") == enc.encode_ordinary(TEXT)
    assert page.errors == []


# Values around every edge: ties (to even, both ways), subnormals, the largest finite values
# and just past them (overflow to inf), signed zero, infinities. Each is exact in float32, so
# ml_dtypes' float32-based bf16 cast is a single rounding too.
PRECISION_VALUES = [
    0.1, 1 / 3, -2.5, 1.0, 1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8,
    1 + 2**-8 + 2**-20, 2**-24, 2**-25, 3 * 2**-25, 2**-14 - 2**-24, 5e-8, 65504.0, 65519.0,
    65520.0, 1e5, 2**-126, 2**-133, 2**-149, 2**-150, 3 * 2**-150, 1e-45, 1e-40,
    3.3895313892515355e38, 3.4e38, 3.4028234663852886e38, 1e39, -0.0, 0.0,
    float("inf"), float("-inf"), 123456.789, -7.0e-3,
]  # fmt: skip


def _bits(value, dtype, uint):
    return format(int(np.array([value]).astype(dtype).view(uint)[0]), f"0{8 * uint().nbytes}b")


def test_bit_explorer_rounds_like_numpy_and_ml_dtypes(page):
    _tab(page, "precision")
    got = page.evaluate(
        """async (values) => {
          const doc = Bokeh.documents[0];
          const box = doc.get_model_by_name("precision-value");
          const f = doc.get_model_by_name("precision-formats");
          const out = [];
          for (const v of values) {
            box.value = v;
            await new Promise((r) => setTimeout(r, 0)); // CustomJS callbacks run async
            out.push([Array.from(f.data.bits), Array.from(f.data.stored, String)]);
          }
          return out;
        }""",
        [repr(float(v)) for v in PRECISION_VALUES],
    )
    for v, (bits, stored) in zip(PRECISION_VALUES, got, strict=True):
        with np.errstate(over="ignore"):
            want = [
                _bits(v, np.float32, np.uint32),
                _bits(v, np.float16, np.uint16),  # numpy: float64 -> float16, one rounding
                _bits(np.float32(v), ml_dtypes.bfloat16, np.uint16),
                _bits(np.float32(v), ml_dtypes.float8_e4m3fn, np.uint8),
                _bits(np.float32(v), ml_dtypes.float8_e5m2, np.uint8),
            ]
        assert bits == want, v
        dtypes = (np.float32, np.float16, ml_dtypes.bfloat16)
        dtypes += (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2)
        for s, w, dt in zip(stored, want, dtypes, strict=True):
            uint = {4: np.uint32, 2: np.uint16, 1: np.uint8}[np.dtype(dt).itemsize]
            with np.errstate(invalid="ignore"):
                value = np.array([int(w, 2)], dtype=uint).view(dt).astype(np.float64)[0]
            assert float(s) == value or (np.isnan(value) and s == "NaN"), (v, s, value)
    assert page.errors == []


def test_bit_explorer_flips_a_clicked_bit_and_refuses_bad_input(page):
    _tab(page, "precision")
    _set(page, "precision-value", "value", "1")
    # fp16 (row 1): bit 1 is the exponent's top bit: 1.0 = 0 01111 0… becomes 0 11111 0… = inf
    _click_data(page, "precision-bits-figure", 1, 1)
    page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('precision-value').value === 'inf'"
    )
    # fp32 (row 0): the sign bit (after a pause, so the two clicks are not a double click)
    _set(page, "precision-value", "value", "0.1")
    page.wait_for_timeout(600)
    _click_data(page, "precision-bits-figure", 0, 0)
    page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('precision-value').value.startsWith('-0.1')"
    )
    assert float(_get(page, "precision-value", "value")) == float(np.float32(-0.1))
    before = model_data(page, "precision-formats", "bits")
    _set(page, "precision-value", "value", "ten")
    assert _get(page, "precision-error", "visible") is True
    assert "not a number" in _get(page, "precision-error", "text")
    assert model_data(page, "precision-formats", "bits") == before
    assert page.errors == []


def test_mask_variants_recompute_the_softmax(page, forward):
    _tab(page, "mask")
    _set(page, "mask-layer", "active", 1)
    _set(page, "mask-head", "active", 1)
    scores = torch.from_numpy(forward.attn_scores[1, 1].astype(np.float64))
    t = scores.shape[0]
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    cases = {
        0: j <= i,  # causal
        1: torch.ones(t, t, dtype=torch.bool),  # none
        2: (j <= i) & (j > i - 4),  # sliding window of 4
    }
    _set(page, "mask-window", "value", 4)
    for kind, allowed in cases.items():
        _set(page, "mask-kind", "active", kind)
        want = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1).numpy()
        np.testing.assert_allclose(_image(page, "mask-probs-image"), want, atol=1e-6)
        assert (_image(page, "mask-allowed-image") == allowed.numpy()).all()
    # padding 3 with -inf: the first 3 rows have no key left, so they are NaN
    _set(page, "mask-pad", "value", 3)
    _set(page, "mask-kind", "active", 3)
    probs = _image(page, "mask-probs-image")
    assert np.isnan(probs[:3]).all() and not np.isnan(probs[3:]).any()
    assert "have no key left" in _get(page, "mask-story", "text")
    assert page.errors == []


def test_truncated_text_says_so(browser, tmp_path, engine):
    text = LONG_TEXT * 12
    n = len(engine.tokenizer(engine.default_model).encode(text))
    assert n > 128
    path = export_snapshot(tmp_path / "long.html", text, lessons="temperature")
    page = _open(browser, path)
    notice = page.locator(".snap-header .notice")
    assert f"{n} tokens long" in notice.inner_text() and "first 128" in notice.inner_text()
    assert _get(page, "sampling-position", "end") == 127
    assert page.requests == [page.url_] and page.errors == []
    page.close()


def _font_px(page, selector):
    return page.locator(selector).first.evaluate("el => parseFloat(getComputedStyle(el).fontSize)")


def test_classroom_renders_large_text(browser, tmp_path, snapshot):
    # query 8 is the text's longest token, "·exception": its title still fits its plot. Twelve
    # tokens: every other one labelled, "8: ·excepti…" among them, leaves titles the least room
    text = "If the file does not exist, an exception is raised."
    path = export_snapshot(tmp_path / "classroom.html", text, classroom=True, options=dict(query=8))
    page = _open(browser, path)
    title = page.evaluate(JS_TITLE, "detail-bars-figure")
    assert "exception" in title["text"] or "excep" in title["text"], title
    assert title["width"] <= title["room"], title
    normal = _open(browser, snapshot)
    for selector in (".snap-info", ".bk-tab", ".explain"):
        assert _font_px(page, selector) >= 2 * _font_px(normal, selector), selector
    axis = "(n) => Bokeh.documents[0].get_model_by_name(n).left[0].major_label_text_font_size"
    assert float(page.evaluate(axis, "heatmap")[:-2]) >= 2 * float(
        normal.evaluate(axis, "heatmap")[:-2]
    )
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(0, 0, 0)"
    # the mask lesson's narrow matrices: their titles fit too, in both themes
    for p in (page, normal):
        _tab(p, "mask")
        for name in ("mask-allowed", "mask-masked", "mask-probs"):
            title = p.evaluate(JS_TITLE, name)
            assert title["width"] <= title["room"], (name, title)
    assert page.requests == [page.url_] and page.errors == []
    page.close()
    normal.close()


def test_dashboard_button_downloads_the_current_state(browser, tmp_path, forward):
    from tests.browser_support import serve, wait_ready

    with serve() as (url, _proc):
        dash = browser.new_page(viewport={"width": 1600, "height": 1200})
        dash.goto(f"{url}?lesson=sampling&layer=2&head=1&q=4&stage=scaled&temperature=0.5")
        wait_ready(dash, "sampling-bars")
        k_box = dash.locator(".top-k-input input")  # the sampling view's own top-k
        k_box.fill("3")
        k_box.press("Enter")
        dash.wait_for_function(
            """() => Bokeh.documents.map(d => d.get_model_by_name("sampling-bars"))
                 .find(x => x).data.kept.filter(Boolean).length === 3"""
        )
        with dash.expect_download(timeout=60_000) as info:
            dash.get_by_role("button", name="Export snapshot").click()
        download = info.value
        assert download.suggested_filename == "anatomy-snapshot.html"
        path = tmp_path / "from-dashboard.html"
        download.save_as(path)
        dash.close()
    page = _open(browser, path)
    assert page.requests == [page.url_] and page.errors == []
    tabs = page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('lessons').tabs.map(t => t.name)"
    )
    assert tabs[_get(page, "lessons", "active")] == "tab-sampling"
    assert _get(page, "attention-layer", "active") == 2 and _get(page, "mask-head", "active") == 1
    assert _get(page, "top-k-input", "value") == "3"
    assert _bars(page)["kept"].count(True) == 3
    assert _get(page, "attention-stage", "active") == 0  # scaled scores
    assert _get(page, "temperature-slider", "value") == 0.5
    assert _get(page, "sampling-position", "value") == 4
    engine = Engine(STATIC_DIR)
    ids = engine.tokenizer(engine.default_model).encode(DEFAULT_TEXT)
    want = engine.run(engine.default_model, ids).attn_scores[2, 1]
    np.testing.assert_allclose(_image(page, "heatmap-image"), want, rtol=1e-6, atol=1e-5)
    page.close()


TYPED_K = ["3", " 3 ", "3.0", "1_0", "0x10", "two", "0", "-1", "2.5", "inf", "nan", "off", ""]
TYPED_P = ["0,5", "0.5", " 1 ", "1e-1", "0", "1.5", "-0.2", "nan", "inf", "abc", "off", ""]


def _python_parse(parse, text):
    try:
        return parse(text)
    except ValueError:
        return "error"


def test_typed_cuts_are_read_as_the_python_lesson_reads_them(page):
    _tab(page, "sampling")
    for box, parse, values in (
        ("top-k-input", S.parse_top_k, TYPED_K),
        ("top-p-input", S.parse_top_p, TYPED_P),
    ):
        for text in values:
            _set(page, "top-k-input", "value", "")
            _set(page, "top-p-input", "value", "1")
            _set(page, box, "value", text)
            want = _python_parse(parse, text)
            if want == "error":
                assert _get(page, "sampling-error", "visible") is True, (box, text)
                continue
            assert _get(page, "sampling-error", "visible") is False, (box, text)
            got = model_data(page, "sampling-cuts", "k" if box == "top-k-input" else "p")[0]
            assert got == (0 if want is None else want), (box, text)
    _set(page, "top-k-input", "value", "")
    _set(page, "top-p-input", "value", "1")
    assert page.errors == []


TYPED_VALUES = [
    "0.1", " 65504 ", "1e-8", "-0", "inf", "-Infinity", "nan", "∞", "−2.5", "2^-24", "-2**15",
    "2^(-3)", "1_000", "0x1p-24", "0x1.8p1", "-0x.4", "1e400", "1e-400", "abc", "", "2^2000",
    "0.0e0", "+7", ".5",
]  # fmt: skip


def test_typed_values_are_read_as_the_python_lesson_reads_them(page):
    from dashboard.lessons.precision import parse_value

    _tab(page, "precision")
    for text in TYPED_VALUES:
        _set(page, "precision-value", "value", "1")
        _set(page, "precision-value", "value", text)
        want = _python_parse(parse_value, text)
        error = _get(page, "precision-error", "visible")
        if want == "error":
            assert error is True, text
            continue
        assert error is False, text
        got = model_data(page, "precision-formats", "bits")[0]  # fp32, exact for these
        assert got == _bits(want, np.float32, np.uint32), text
    assert page.errors == []


def test_only_the_causal_mask_is_painted_in_the_masked_colour(browser, tmp_path, engine):
    """A 128-token text whose layer 2, head 1 gives many allowed keys a probability far below
    1e-12: in the heatmap and in every tile of the grid, the cells painted in the masked colour
    are exactly the ones above the diagonal; the tiny ones take the palette's lowest colour."""
    from dashboard.views.plots import NORMAL, PROB_PALETTE
    from tests.matrix_support import TINY_TEXT, drawn_colours, grid_painted, painted, text_of

    text = text_of(engine, TINY_TEXT, 128)
    f = engine.run(engine.default_model, engine.tokenizer(engine.default_model).encode(text))
    n_layer, n_head, t, _ = f.attn_probs.shape
    above = np.triu(np.ones((t, t), bool), 1)
    tiny = (f.attn_probs[2, 1] < 1e-12) & ~above
    assert tiny.sum() > 50  # the case that went grey
    path = tmp_path / "long.html"
    export_snapshot(path, text, lessons="attention", options=dict(layer=2, head=1))
    tiled = 'doc.get_model_by_name("grid").renderers[0].data_source.data.image[0].length > 1'
    page = open_offline(browser, path, tiled)
    heat = drawn_colours(page, "heatmap")
    np.testing.assert_array_equal(painted(heat, NORMAL.masked), above)
    assert painted(heat, PROB_PALETTE[0])[tiny].all()
    # another head and back: the page redraws the same way
    _set(page, "attention-head", "active", 0)
    _set(page, "attention-head", "active", 1)
    np.testing.assert_array_equal(painted(drawn_colours(page, "heatmap"), NORMAL.masked), above)
    grid = drawn_colours(page, "grid")
    want = grid_painted(page, above, n_layer, n_head)
    np.testing.assert_array_equal(painted(grid, NORMAL.masked), want)
    assert page.errors == []
    page.close()
