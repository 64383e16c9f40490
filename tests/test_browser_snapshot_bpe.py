"""The BPE lesson's snapshot in a real Chromium, offline (file://, every other request
aborted): the k slider splits the text as ``dashboard.lessons.bpe.segment`` says, the merge
table and the curves' marker follow k, the encode player's frames and step text are the
dashboard's own HTML, user text stays text, and the console stays clean.

Expected values come from ``B.segment`` (itself tested against tiktoken), the training trace's
merges read here, and tiktoken built from the committed rank file; the HTML the page builds
from its templates is compared, as the browser parses it, with what the dashboard's Python
functions give for the same k or step.
"""

from __future__ import annotations

import pytest
import tiktoken

from dashboard.lessons import bpe as B
from dashboard.state import DEFAULT_TEXT
from dashboard.views import bpe as V
from export.snapshot import export_snapshot
from models.bpe import readable
from models.runtime import STATIC_DIR, Engine
from tests.bpe_support import JS_BOXES, JS_PARTS, expected_parts
from tests.browser_support import js_kernel_page, model_data, open_offline
from tests.browser_support import model_get as _get
from tests.browser_support import model_set as _set

pytestmark = pytest.mark.browser

# HTML, quotes, characters whose bytes are split across tokens and a "{{slot}}" that must
# stay text
TEXT = DEFAULT_TEXT + " <b>x</b> & <img src=x onerror=alert(1)> 'q' {{k}} 😀 你好 café"
KS = (0, 1, 7, 50, 300, 767, 768)

JS_NORMAL = """(html) => { const t = document.createElement("template");
                          t.innerHTML = html; return t.innerHTML; }"""


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def trace():
    return B.default_trace_future().result(timeout=300)


@pytest.fixture(scope="module")
def steps(engine):
    tok = engine.tokenizer(engine.default_model)
    block = engine.config(engine.default_model)["block_size"]
    return B.encode_steps(tok, TEXT, block)


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    path = tmp_path_factory.mktemp("snap-bpe") / "bpe.html"
    export_snapshot(path, TEXT, lessons="bpe")
    page = open_offline(browser, path, 'doc.get_model_by_name("bpe-k")', (1600, 1400))
    url = page.url_
    page.locator(".bpe-sample .bpe-tok").first.wait_for()
    yield page
    assert page.requests == [url]
    page.close()


def _ids(page, selector: str) -> list[int]:
    return [int(x) for x in page.locator(selector).evaluate_all("e => e.map(x => x.dataset.id)")]


def _same_html(page, name: str, expected: str) -> None:
    """The Div's HTML, as the browser parses it, is the HTML the Python function gives."""
    got = page.evaluate(JS_NORMAL, _get(page, name, "text"))
    assert got == page.evaluate(JS_NORMAL, expected)


def test_moving_k_splits_the_text_as_segment_says(page, trace):
    tok = trace.tokenizer
    for k in KS:
        _set(page, "bpe-k", "value", k)
        expected = B.segment(tok, TEXT, k)
        assert _ids(page, ".bpe-sample .bpe-tok") == [s.id for s in expected], k
        shown = "".join(page.locator(".bpe-sample .bpe-tok").all_inner_texts())
        assert shown == "".join(readable(s.token) for s in expected)
        # the same caption and spans the dashboard draws for this k
        _same_html(page, "bpe-sample", V.sample_for(tok, TEXT, k))
    # and by the k - 1 / k + 1 buttons
    page.locator(".bk-btn", has_text="k + 1 ▶").click()
    assert _get(page, "bpe-k", "value") == 768  # at the end it stays
    for _ in range(2):
        page.locator(".bk-btn", has_text="◀ k − 1").click()
    assert _get(page, "bpe-k", "value") == 766
    assert _ids(page, ".bpe-sample .bpe-tok") == [s.id for s in B.segment(tok, TEXT, 766)]
    assert page.errors == []


def test_the_merge_table_shows_the_kth_merge(page, trace):
    tok = trace.tokenizer
    rows = B.merge_rows(trace.merges, text=trace.text)
    for k in (1, 5, 400, 768):
        _set(page, "bpe-k", "value", k)
        cells = page.locator(".bpe-merges tr.current td").all_inner_texts()
        m = trace.merges[k - 1]
        a, b = (readable(tok.token_bytes(i)) for i in m.pair)
        assert cells == [str(k), str(m.rank), f"{a}  +  {b}", readable(m.token), f"{m.count:,}"]
        _same_html(page, "bpe-merges", V.table_for(rows, k))
    _set(page, "bpe-k", "value", 0)
    assert page.locator(".bpe-merges tr.current").count() == 0
    assert page.errors == []


def test_the_curves_marker_moves_with_k(page, trace):
    for k in (0, 100, 768):
        _set(page, "bpe-k", "value", k)
        assert model_data(page, "bpe-marker", "k") == [k]
        assert model_data(page, "bpe-marker", "vocab") == [256 + k]
        assert model_data(page, "bpe-marker", "bpt")[0] == pytest.approx(
            trace.n_bytes / trace.n_tokens[k], rel=1e-6
        )
        assert _get(page, "bpe-compression-k", "location") == k
        assert _get(page, "bpe-vocab-k", "location") == k
    assert page.errors == []


def test_the_paste_note_and_the_checks_made_at_export(page, trace):
    note = page.locator(".bpe-paste-note p")
    assert "live dashboard (make serve)" in note.inner_text() and "paste" in note.inner_text()
    verify = " ".join(page.locator(".bpe-verify .bpe-badge").all_inner_texts())
    assert "✔ tiktoken built from anatomy-gpt-bpe.tiktoken gives the same" in verify
    assert "Hugging Face tokenizers, trained on the same text" in verify
    assert f"{trace.n_bytes:,} bytes, 768 merges" in page.locator(".bpe-status p").inner_text()


def test_encode_steps_are_the_dashboards_frames(page, engine, steps):
    tok = engine.tokenizer(engine.default_model)
    n = steps.n_steps
    assert _get(page, "bpe-step", "end") == n
    ranks = tiktoken.Encoding(
        "t", pat_str=tok.pattern, mergeable_ranks=tok.ranks, special_tokens={}
    )
    for s in (0, 1, 2, n // 2, n - 1, n):
        _set(page, "bpe-step", "value", s)
        _same_html(page, "bpe-step-text", V.describe(steps, tok, s))
        _same_html(page, "bpe-trace", V.frame_html(steps, tok, s))
        ids = [i for parts in steps.frame(s) for i in parts]
        assert model_data(page, "bpe-segments", "id") == ids
    assert model_data(page, "bpe-segments", "id") == ranks.encode_ordinary(TEXT)
    assert f"Final ids ({len(steps.ids)})" in " ".join(
        page.locator(".bpe-step p").all_inner_texts()
    )
    _set(page, "bpe-step", "value", 1)
    assert page.locator(".bpe-trace .bpe-tok.new").count() == 1
    assert "Step 1 of" in " ".join(page.locator(".bpe-step p").all_inner_texts())
    assert page.errors == []


def test_html_in_the_text_stays_text(page, trace):
    for k in (768, 40):  # the Python-drawn first state, then the page's own
        _set(page, "bpe-k", "value", k)
        for where in (".bpe-sample .bpe-segments", ".bpe-trace .bpe-text"):
            box = page.locator(where)
            assert box.locator("b, img, script").count() == 0
            assert "<b>x</b>" in box.inner_text() and "{{k}}" in box.inner_text()
    _set(page, "bpe-step", "value", 3)
    assert page.locator(".bpe-trace .bpe-text img").count() == 0
    assert page.dialogs == [] and page.errors == []


def test_split_characters_are_named_beside_their_bytes(page, engine, trace, steps):
    tok = engine.tokenizer(engine.default_model)
    for k in (0, 768, 3):  # the Python-drawn state, then the page's own
        _set(page, "bpe-k", "value", k)
        shown = [trace.tokenizer.token_bytes(i) for i in _ids(page, ".bpe-sample .bpe-tok")]
        assert b"".join(shown) == TEXT.encode("utf-8")
        want = expected_parts(TEXT, shown)
        assert "part of 你 (e4 bd a0)" in want and "part of é (c3 a9)" in want
        assert page.locator(".bpe-sample .bpe-tok").evaluate_all(JS_PARTS) == want, k
    for s in (steps.n_steps, 0, steps.n_steps - 1):
        _set(page, "bpe-step", "value", s)
        shown = [tok.token_bytes(i) for i in _ids(page, ".bpe-trace .bpe-tok")]
        want = expected_parts(TEXT, shown)
        assert "part of 😀 (f0 9f 98 80)" in want
        assert page.locator(".bpe-trace .bpe-tok").evaluate_all(JS_PARTS) == want, s
    assert page.errors == []


def test_classroom_step_text_final_ids_and_steppers_fit_1920x1080(browser, tmp_path):
    text = (DEFAULT_TEXT + " ") * 5 + "😀 你好"
    path = tmp_path / "bpe-classroom.html"
    export_snapshot(path, text, lessons="bpe", classroom=True)
    page = open_offline(browser, path, 'doc.get_model_by_name("bpe-step")', (1920, 1080))
    page.locator(".bpe-step").first.scroll_into_view_if_needed()
    n = _get(page, "bpe-step", "end")
    for s in (n, 1):
        _set(page, "bpe-step", "value", s)
        for selector in (".bpe-step", ".bpe-trace"):
            for box in page.locator(selector).first.evaluate(JS_BOXES):
                assert box["right"] <= box["room"] + 0.5, (selector, s, box)
                assert box["cw"] == 0 or box["sw"] <= box["cw"], (selector, s, box)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1920
    for label in ("◀ step − 1", "step + 1 ▶", "◀ k − 1", "k + 1 ▶"):
        box = page.locator(".bk-btn", has_text=label).bounding_box()
        assert box["height"] >= 40 and box["x"] + box["width"] <= 1920, (label, box)
    assert page.errors == []
    page.close()


JS_SET_UP = """
(a) => {
  window.T = a.T; window.cut_shown = a.cut_shown; window.max_tokens = a.max_tokens;
  window.steps = {data: a.steps}; window.chunks = {data: a.chunks};
  window.pnotes = {data: a.pnotes}; window.slabels = {data: {label: a.labels}};
  window.stitles = {data: {title: a.titles, nbytes: a.nbytes}};
  window.sslider = {value: 0}; window.trace = {text: ""}; window.text = {text: ""};
  window.segments = {data: {}};
}
"""


def test_the_pages_frames_name_split_characters_as_the_dashboard_does(browser):
    """js/bpe.js's draw_step against the dashboard's frame_html and describe, for a tokenizer
    that merges the bytes of a character (the shipped one never does)."""
    tok = B.train_trace("你好 naïve 你 " * 40, 300).tokenizer
    text = "naïve 你好 😀 <b>"
    st = B.encode_steps(tok, text)
    data = V.encode_data(st, tok)
    plain = {
        key: {c: (v.tolist() if hasattr(v, "tolist") else v) for c, v in data[key].items()}
        for key in ("steps", "chunks", "pnotes")
    }
    ids = range(tok.vocab_size)
    page = js_kernel_page(browser, "bpe")
    page.evaluate(JS_SET_UP, {
        **plain, "T": data["T"], "cut_shown": data["cut_shown"],
        "max_tokens": data["max_tokens"], "labels": [readable(tok.token_bytes(i)) for i in ids],
        "titles": [B.token_info(tok, i) for i in ids],
        "nbytes": [len(tok.token_bytes(i)) for i in ids],
    })  # fmt: skip
    notes = set()
    for s in range(st.n_steps + 1):
        got = page.evaluate(
            "(s) => { sslider.value = s; draw_step(); return [trace.text, text.text]; }", s
        )
        want = (V.frame_html(st, tok, s), V.describe(st, tok, s))
        for g, w in zip(got, want, strict=True):
            assert page.evaluate(JS_NORMAL, g) == page.evaluate(JS_NORMAL, w), s
        notes.update(n for n in ("they make", "the new token is part of") if n in got[1])
        if s == 0:  # every byte a token: each of 你's three names it
            assert got[0].count("part of 你 (e4 bd a0)") == 3
    assert notes == {"they make", "the new token is part of"}  # both kinds of step note
    page.close()
