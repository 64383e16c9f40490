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
from tests.browser_support import model_data, open_offline
from tests.browser_support import model_get as _get
from tests.browser_support import model_set as _set

pytestmark = pytest.mark.browser

# HTML, quotes, an emoji (bytes split across tokens) and a "{{slot}}" that must stay text
TEXT = DEFAULT_TEXT + " <b>x</b> & <img src=x onerror=alert(1)> 'q' {{k}} 😀"
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
    rows = B.merge_rows(trace.merges)
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
