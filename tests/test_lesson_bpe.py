"""Tests of dashboard/lessons/bpe.py (and the view without a server) against independent
implementations: tiktoken (ids, compression), Hugging Face ``tokenizers`` (trained merges), a
naive merge replay written here, and the committed rank file."""

from __future__ import annotations

import html
import json
import re
import threading
from collections import Counter

import numpy as np
import pytest
import regex
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from dashboard.lessons import bpe as B
from dashboard.views.jobs import Cancelled
from models.bpe import DEFAULT_PATTERN, Tokenizer, readable
from models.runtime import STATIC_DIR

TEXTS = [
    "If the file does not exist, an exception is raised and the file is not created.",
    "a",
    "   \n\t  ",
    "😀 👩‍👩‍👧‍👦 🇫🇷 naïve café 日本語のテキスト مرحبا",
    "<b>bold</b> & <script>alert('x')</script> \"quotes\"",
    "def f(x):\n    return x ** 2  # 12345678\n",
    "nul\x00 esc\x1b[0m del\x7f",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
]


def _encoding(ranks: dict[bytes, int], name: str, pattern: str = DEFAULT_PATTERN):
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})


def _truncated(tok: Tokenizer, k: int) -> tiktoken.Encoding:
    """tiktoken from the single bytes and the first k merges of ``tok``."""
    ranks = {b: r for b, r in tok.ranks.items() if r < 256 + k}
    return _encoding(ranks, f"trunc-{k}", tok.pattern)


def _naive_segment(text: str, merges, k: int, pattern: str = DEFAULT_PATTERN) -> list[int]:
    """Reference: apply the first k merges one after another to every chunk, left to right."""
    out = []
    for chunk in regex.findall(pattern, text):
        ids = list(chunk.encode("utf-8"))
        for m in merges[:k]:
            merged, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == m.pair:
                    merged.append(m.rank)
                    i += 2
                else:
                    merged.append(ids[i])
                    i += 1
            ids = merged
        out.extend(ids)
    return out


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((STATIC_DIR / "manifest.json").read_text())


@pytest.fixture(scope="module")
def shipped(manifest) -> Tokenizer:
    return Tokenizer.load(STATIC_DIR, manifest["models"][0]["tokenizer"]["name"])


@pytest.fixture(scope="module")
def shipped_tiktoken(manifest) -> tiktoken.Encoding:
    spec = manifest["models"][0]["tokenizer"]
    path = STATIC_DIR / spec["rank_file"]
    import hashlib

    ranks = load_tiktoken_bpe(
        str(path), expected_hash=hashlib.sha256(path.read_bytes()).hexdigest()
    )
    return _encoding(ranks, "shipped", spec["pattern"])


@pytest.fixture(scope="module")
def corpus_text() -> str:
    return B.default_corpus_text()[0]


@pytest.fixture(scope="module")
def default_trace() -> B.TrainingTrace:
    return B.default_trace_future().result(timeout=180)


# -- the default corpus trace ---------------------------------------------------------------------
def test_default_corpus_is_the_one_the_shipped_tokenizer_saw(manifest):
    from models.corpus import stdlib_docstrings

    assert stdlib_docstrings().sha256 == manifest["models"][0]["corpus"]["sha256"]


def test_replaying_training_reproduces_the_committed_rank_file(default_trace, shipped):
    assert default_trace.n_merges == shipped.n_ordinary - 256 == 768
    assert Tokenizer.from_merges(default_trace.merges).ranks == shipped.ranks
    assert B.shipped_match(default_trace, shipped) == (768, 768)
    for key in ("read_corpus_s", "train_s", "replay_s"):
        assert default_trace.timings[key] > 0


def test_compression_curve_matches_tiktoken(default_trace, corpus_text, manifest):
    n_bytes = len(corpus_text.encode("utf-8"))
    assert default_trace.n_bytes == n_bytes
    for k in (0, 1, 7, 100, 400, 768):
        n = len(_truncated(default_trace.tokenizer, k).encode_ordinary(corpus_text))
        assert default_trace.n_tokens[k] == n, k
        assert default_trace.bytes_per_token[k] == pytest.approx(n_bytes / n)
    # the build encoded the same text with the full tokenizer
    assert default_trace.n_tokens[-1] == manifest["models"][0]["corpus"]["train_tokens"]
    np.testing.assert_array_equal(default_trace.vocab_size, 256 + np.arange(769))
    assert np.all(np.diff(default_trace.n_tokens) < 0)  # every merge saves at least one token


def test_default_trace_is_shared_and_computed_once(default_trace):
    first = B.default_trace_future()
    assert B.default_trace_future() is first and first.result() is default_trace


# -- segmentation after k merges ------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, 1, 5, 50, 300, 768])
def test_segment_matches_tiktoken_and_naive_replay(shipped, default_trace, corpus_text, k):
    texts = TEXTS + [corpus_text[5000:9000]]
    for text in texts:
        segs = B.segment(shipped, text, k)
        ids = [s.id for s in segs]
        assert ids == _truncated(shipped, k).encode_ordinary(text), (k, text[:30])
        assert ids == _naive_segment(text, default_trace.merges, k), (k, text[:30])
        assert b"".join(s.token for s in segs) == text.encode("utf-8")
        assert all(s.id < 256 + k for s in segs)


def test_segment_all_merges_is_encode(shipped):
    for text in TEXTS:
        assert [s.id for s in B.segment(shipped, text, 768)] == shipped.encode(text)


# -- training on pasted text ----------------------------------------------------------------------
def test_paste_limits():
    assert B.check_paste("")
    assert B.check_paste("x" * 100_000) == ""
    msg = B.check_paste("x" * 100_001)
    assert "100,001 bytes" in msg and "100 KB" in msg
    assert B.check_paste("é" * 50_001)  # 100,002 bytes: the limit is in bytes, not characters


@pytest.mark.parametrize(
    "text",
    [
        "a",
        " ",
        "\n\n\t ",
        "x" * 100_000,  # 100 KB of one repeated character
        " " * 100_000,  # whitespace only
        "😀🎉😀 éé 日本 🇫🇷" * 30,  # multi-byte characters split across tokens
        "The quick brown fox jumps over the lazy dog. " * 50,
    ],
)
def test_train_trace_bad_and_odd_input(text):
    trace = B.train_trace(text, 1024)
    tok = trace.tokenizer
    assert trace.n_bytes == len(text.encode("utf-8"))
    assert trace.n_tokens[0] == trace.n_bytes
    for k in sorted({0, trace.n_merges // 2, trace.n_merges}):
        assert trace.n_tokens[k] == len(_truncated(tok, k).encode_ordinary(text))
    # every merge's token is shown readably: hex escapes for partial UTF-8, never raw bytes
    rows = B.merge_rows(trace.merges)
    assert rows["k"] == list(range(1, trace.n_merges + 1))
    for m, pair, token in zip(trace.merges, rows["pair"], rows["token"], strict=True):
        assert token == readable(m.token)
        a, b = (readable(tok.token_bytes(i)) for i in m.pair)
        assert pair == f"{a}  +  {b}"
        try:
            m.token.decode("utf-8")
        except UnicodeDecodeError:
            assert re.search(r"\\x[0-9a-f]{2}", token)


def test_single_character_has_no_merge_and_empty_text_is_refused():
    trace = B.train_trace("a", 1024)
    assert trace.n_merges == 0 and list(trace.n_tokens) == [1]
    assert list(trace.bytes_per_token) == [1.0]
    with pytest.raises(ValueError, match="empty"):
        B.train_trace("", 1024)


def test_repeated_character_stops_early_and_compresses():
    trace = B.train_trace("x" * 100_000, 1024)
    assert 0 < trace.n_merges < 768  # runs out of pairs long before 1024 tokens
    assert trace.n_tokens[-1] == 1  # the whole run became one token
    assert trace.bytes_per_token[-1] == 100_000


def test_training_can_be_cancelled_through_progress():
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        B.train_trace("hello world " * 100 + "abc def ghi " * 50, 1024, progress=progress)
    assert seen == [0, 1, 2, 3]


def test_counts_in_the_table_are_the_counts_then(default_trace, corpus_text):
    # recount the pairs independently after k merges: the merged pair had the top count
    text = corpus_text[:30_000]
    trace = B.train_trace(text, 300)
    for k in (0, 10, 43):
        ids_by_chunk = Counter(regex.findall(DEFAULT_PATTERN, text))
        counts: Counter = Counter()
        for chunk, n in ids_by_chunk.items():
            ids = _naive_segment(chunk, trace.merges, k)
            for pair in zip(ids, ids[1:], strict=False):
                counts[pair] += n
        m = trace.merges[k]
        assert counts[m.pair] == m.count == max(counts.values())


# -- Hugging Face tokenizers ----------------------------------------------------------------------
def _first_tie(text: str, merges) -> int:
    """How many of ``merges`` were chosen without a tie for the top count (recounted here)."""
    chunks = Counter(regex.findall(DEFAULT_PATTERN, text))
    for k in range(len(merges)):
        counts: Counter = Counter()
        for chunk, n in chunks.items():
            ids = _naive_segment(chunk, merges, k)
            for pair in zip(ids, ids[1:], strict=False):
                counts[pair] += n
        top = counts.most_common(2)
        if len(top) == 2 and top[0][1] == top[1][1]:
            return k
    return len(merges)


def test_tokenizers_learns_the_same_merges_without_ties(corpus_text):
    text = corpus_text[:20_000]
    merges = B.train_trace(text, 256 + 60).merges
    untied = _first_tie(text, merges)
    assert untied >= 10  # enough merges before the first tie to mean something
    ours = B.train_trace(text, 256 + untied).merges
    c = B.compare_with_hf(text, ours, 256 + untied)
    assert c.identical, c
    assert B.hf_train_merges(text, 256 + untied) == [m.token for m in ours]


def test_tokenizers_comparison_reports_the_first_difference(corpus_text):
    text = corpus_text[:20_000]
    trace = B.train_trace(text, 512)
    c = B.compare_with_hf(text, trace.merges, 512)
    theirs = B.hf_train_merges(text, 512)
    ours = [m.token for m in trace.merges]
    assert c.n_ours == len(ours) and c.n_theirs == len(theirs)
    assert c.overlap == len(set(ours) & set(theirs))
    assert ours[: c.same_prefix] == theirs[: c.same_prefix]
    if not c.identical:
        assert ours[c.same_prefix] != theirs[c.same_prefix]
        assert (c.ours, c.theirs) == (ours[c.same_prefix], theirs[c.same_prefix])
        # their pair's count, recounted independently on our vocabulary at that moment
        ranks = {bytes([i]): i for i in range(256)}
        ranks.update({m.token: m.rank for m in trace.merges[: c.same_prefix]})
        counts: Counter = Counter()
        for chunk, n in Counter(regex.findall(DEFAULT_PATTERN, text)).items():
            ids = _naive_segment(chunk, trace.merges, c.same_prefix)
            for a, b in zip(ids, ids[1:], strict=False):
                counts[(a, b)] += n
        toks = {r: b for b, r in ranks.items()}
        theirs_count = sum(n for (a, b), n in counts.items() if toks[a] + toks[b] == c.theirs)
        assert c.theirs_count == theirs_count
        assert c.ours_count == counts[trace.merges[c.same_prefix].pair]


# -- encode trace ---------------------------------------------------------------------------------
def _frame_bytes(tok: Tokenizer, steps: B.EncodeSteps, s: int) -> bytes:
    return b"".join(tok.token_bytes(i) for parts in steps.frame(s) for i in parts)


@pytest.mark.parametrize("text", TEXTS + ["x" * 5000, " " * 3000 + "y", "word " * 400])
def test_encode_steps_end_in_the_ids_tiktoken_gives(shipped, shipped_tiktoken, text):
    steps = B.encode_steps(shipped, text, 128)
    expected = shipped_tiktoken.encode_ordinary(text)
    assert steps.ids == expected[:128]
    assert steps.n_total == len(expected)
    assert steps.truncated == (len(expected) > 128)
    traced = "".join(c.text for c in steps.chunks)
    assert text.startswith(traced)
    # frame 0 is the pre-split into single bytes; every frame keeps the same bytes
    assert [len(p) for p in steps.frame(0)] == [len(c.text.encode()) for c in steps.chunks]
    for s in range(steps.n_steps + 1):
        assert _frame_bytes(shipped, steps, s) == traced.encode("utf-8")
    # each animated step joins two neighbours into the token of their bytes
    for s in range(1, steps.n_steps + 1):
        ci, j = steps.active(s)
        before, after = steps.frame(s - 1)[ci], steps.frame(s)[ci]
        if steps.animated[ci] and not steps.chunks[ci].steps[j].whole_chunk:
            assert len(after) == len(before) - 1
            m = steps.chunks[ci].steps[j]
            assert shipped.token_bytes(m.new) == shipped.token_bytes(m.left) + shipped.token_bytes(
                m.right
            )
    final = [i for parts in steps.frame(steps.n_steps) for i in parts]
    assert final[:128] == steps.ids


def test_long_chunk_is_encoded_in_one_step(shipped, shipped_tiktoken):
    text = "x" * 5000
    steps = B.encode_steps(shipped, text, 128)
    assert steps.animated == (False,) and steps.n_steps == 1
    assert steps.ids == shipped_tiktoken.encode_ordinary(text)[:128]


def test_token_info_names_bytes_id_and_merge(shipped):
    tid = shipped.encode(" the")[0]
    a, b = shipped.merge_of(tid)
    info = B.token_info(shipped, tid)
    assert f"id {tid}" in info and "20 74 68 65" in info
    assert f"{readable(shipped.token_bytes(a))} + {readable(shipped.token_bytes(b))}" in info
    assert "single byte" in B.token_info(shipped, 0xF0) and "f0" in B.token_info(shipped, 0xF0)


# -- characters split across tokens ---------------------------------------------------------------
SPLIT_TEXTS = [
    "你好",
    "é",
    "a😀b",
    "naïve café 日本語 👩‍👩‍👧‍👦 🇫🇷 مرحبا",
    "\x85x\u0300y",
    "plain ascii",
]


def _char_ranges(text: str) -> list[tuple[str, int, int]]:
    """Every character of ``text`` with its byte range, from str.encode alone."""
    out, pos = [], 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        out.append((ch, pos, pos + n))
        pos += n
    return out


def _named(ch: str) -> str:
    return f"{readable(ch.encode('utf-8'))} ({ch.encode('utf-8').hex(' ')})"


def _expected_part(text: str, start: int, end: int) -> str:
    """The characters that bytes [start, end) overlap without holding them whole."""
    split = [
        ch for ch, a, b in _char_ranges(text) if a < end and b > start and (a < start or b > end)
    ]
    return "part of " + " and ".join(map(_named, split)) if split else ""


def test_part_note_names_the_character_the_bytes_belong_to():
    data = "你".encode()
    assert data == b"\xe4\xbd\xa0"
    assert B.part_note(data, 0, 2) == "part of 你 (e4 bd a0)"
    assert B.part_note(data, 2, 3) == "part of 你 (e4 bd a0)"
    assert B.part_note(data, 0, 3) == ""
    pair = "你好".encode()  # e4 bd a0 e5 a5 bd
    assert B.part_note(pair, 2, 4) == "part of 你 (e4 bd a0) and 好 (e5 a5 bd)"
    for text in SPLIT_TEXTS:
        data = text.encode("utf-8")
        for start in range(len(data)):
            for end in range(start + 1, len(data) + 1):
                assert B.part_note(data, start, end) == _expected_part(text, start, end), (
                    text, start, end,
                )  # fmt: skip


def test_merge_note_says_what_the_merge_does_to_characters():
    data = "你好".encode()
    assert B.merge_note(data, 0, 2, 3) == "they make 你 (e4 bd a0) whole"
    assert B.merge_note(data, 0, 1, 2) == "the new token is part of 你 (e4 bd a0)"
    assert B.merge_note(data, 2, 3, 4) == "the new token is part of 你 (e4 bd a0) and 好 (e5 a5 bd)"
    assert B.merge_note(data, 0, 3, 6) == ""  # two whole characters joined
    for text in SPLIT_TEXTS:
        data = text.encode("utf-8")
        ranges = _char_ranges(text)
        for start in range(len(data)):
            for end in range(start + 2, len(data) + 1):
                for mid in range(start + 1, end):
                    made = [ch for ch, a, b in ranges if start <= a and b <= end and a < mid < b]
                    want = []
                    if made:
                        want.append(f"they make {' and '.join(map(_named, made))} whole")
                    if part := _expected_part(text, start, end):
                        want.append(f"the new token is {part}")
                    assert B.merge_note(data, start, mid, end) == "; ".join(want)


def test_merge_notes_name_a_character_of_the_training_text():
    text = "你好世界，这是一个测试。 naïve café 😀 " * 30
    trace = B.train_trace(text, 320)
    notes = B.merge_notes(trace.merges, trace.text)
    data = text.encode("utf-8")
    assert len(notes) == trace.n_merges
    partial = 0
    for m, note in zip(trace.merges, notes, strict=True):
        try:
            m.token.decode("utf-8")
        except UnicodeDecodeError:  # only part of a character: an example from the text
            partial += 1
            at = data.find(m.token)
            assert note == "e.g. " + _expected_part(text, at, at + len(m.token)) != "e.g. "
        else:
            assert note == ""
    assert partial > 0
    rows = B.merge_rows(trace.merges, text=trace.text)
    assert rows["note"] == notes


# -- the view without a server --------------------------------------------------------------------
@pytest.fixture()
def view():
    from dashboard.state import AnatomyState
    from dashboard.views import LESSONS
    from dashboard.views.bpe import BpeLesson

    state = AnatomyState(lessons=list(LESSONS), lesson="bpe")
    v = BpeLesson(state=state)
    v.wait()
    return v


def test_view_shows_the_default_trace_and_the_badges(view, shipped_tiktoken):
    assert view.trace is not None and view.trace.n_merges == 768
    assert view.curve.data["k"] == list(range(769))
    assert "<td class='num'>768</td>" in view.table.object  # k = 768: the last merge listed
    assert "✔ tiktoken" in view.verify.object
    assert "tokenizers" in view.verify.object
    view.k = 5
    ids = [int(i) for i in re.findall(r"data-id='(\d+)'", view.sample.object)]
    assert ids == _truncated(view.trace.tokenizer, 5).encode_ordinary(view.state.text)
    final = re.findall(r"class='bpe-tok[^']*' data-id='(\d+)'", view.trace_html.object)
    assert [int(i) for i in final] == view.state.ids


def test_view_escapes_html_and_reports_truncation(view):
    view.state.text = "<b>x</b> & 'q' " * 60
    for pane in (view.trace_html, view.sample):
        # with our own tags removed, what is left is the text itself, escaped
        shown = html.unescape(re.sub(r"<[^>]+>", "", pane.object[pane.object.index("<div") :]))
        assert shown.startswith(readable(view.state.text[:40].encode()))
        assert "<b>" not in pane.object
    cut = re.findall(r"class='bpe-tok[^']*cut[^']*' data-id", view.trace_html.object)
    kept = re.findall(r"class='bpe-tok(?![^']*cut)[^']*' data-id='(\d+)'", view.trace_html.object)
    assert [int(i) for i in kept] == view.state.ids and len(kept) == 128
    assert "model reads the first 128" in view.step_text.object
    # tokens of the last traced chunk past the cut are struck through, not hidden
    assert len(cut) == sum(len(c.ids) for c in view._steps.chunks) - 128
    view.state.text = "x" * 5000
    cut = re.findall(r"class='bpe-tok[^']*cut[^']*' data-id", view.trace_html.object)
    kept = re.findall(r"class='bpe-tok(?![^']*cut)[^']*' data-id='(\d+)'", view.trace_html.object)
    assert [int(i) for i in kept] == view.state.ids and len(cut) == 20
    assert "4852 more tokens" in view.trace_html.object


def test_view_refuses_too_much_text_and_keeps_the_trace(view):
    before = view.trace
    view.start_training("y" * 100_001)
    assert view.message.visible and "100 KB" in view.message.object
    view.wait()
    assert view.trace is before


def gate_training(monkeypatch):
    """Make the view's training wait at each progress step until the returned event is set,
    so that a test can change the text while a training is in progress; also returns the
    real training function."""
    from dashboard.views import bpe as V

    release = threading.Event()
    real = B.train_trace

    def slow(text, vocab_size, progress=None, **kw):
        def gated(done, total):
            release.wait(10)
            progress(done, total)

        return real(text, vocab_size, progress=gated, **kw)

    monkeypatch.setattr(V.B, "train_trace", slow)
    return release, real


def test_new_paste_cancels_the_training_in_progress(view, monkeypatch):

    release, real = gate_training(monkeypatch)
    view.start_training("first text " * 20)
    first = view._paste.job
    view.start_training("second, different text " * 20)
    assert first.cancelled.is_set()
    release.set()
    first.join(10)
    with pytest.raises(Cancelled):
        first.future.result()
    view.wait()
    assert view.source == "pasted"
    assert view.trace.sha256 == real("second, different text " * 20, 1024).sha256


def test_player_range_follows_the_text(view, shipped):
    first = view.player.end
    assert first == view._steps.n_steps == view.player.value
    view.state.text = "A much longer sentence, with naïve words and 😀, to encode. " * 3
    n = B.encode_steps(shipped, view.state.text, 128).n_steps
    assert n != first
    assert view.player.end == n and view.player.value == n and view.step == n
    assert "Final ids" in view.step_text.object


SPLIT_SENTENCE = "你好 café 😀 naïve"
TOKEN_AND_PART = re.compile(
    r"<span class='bpe-tok[^']*' data-id='(\d+)'[^>]*>[^<]*</span>"
    r"(?:<span class='bpe-part'>([^<]*)</span>)?"
)


def _notes_shown(pane_html: str) -> list[tuple[int, str]]:
    return [(int(i), html.unescape(n)) for i, n in TOKEN_AND_PART.findall(pane_html)]


def _expected_notes(tok: Tokenizer, text: str, ids: list[int]) -> list[tuple[int, str]]:
    out, pos = [], 0
    for i in ids:
        n = len(tok.token_bytes(i))
        out.append((i, _expected_part(text, pos, pos + n)))
        pos += n
    return out


def test_view_says_which_character_split_bytes_belong_to(view, shipped, shipped_tiktoken):
    view.state.text = SPLIT_SENTENCE
    ids = shipped_tiktoken.encode_ordinary(SPLIT_SENTENCE)
    final = _notes_shown(view.trace_html.object)
    assert final == _expected_notes(shipped, SPLIT_SENTENCE, ids)
    assert any(n == "part of 你 (e4 bd a0)" for _, n in final)
    assert any(n == "part of 😀 (f0 9f 98 80)" for _, n in final)
    for k in (0, 768):
        view.k = k
        segs = (
            shipped_tiktoken.encode_ordinary(SPLIT_SENTENCE) if k else list(SPLIT_SENTENCE.encode())
        )
        assert _notes_shown(view.sample.object) == _expected_notes(
            view.trace.tokenizer, SPLIT_SENTENCE, segs
        )
    # frame 0: every byte a token, each byte of a multi-byte character names it
    view.step = 0
    zero = _notes_shown(view.trace_html.object)
    assert zero == _expected_notes(shipped, SPLIT_SENTENCE, list(SPLIT_SENTENCE.encode()))
    assert zero[0] == (0xE4, "part of 你 (e4 bd a0)")


def test_view_merge_table_names_a_character_for_a_split_token(view):
    text = "你好世界，这是一个测试。 " * 30
    view.start_training(text)
    view.wait()
    assert view.source == "pasted"
    data = text.encode("utf-8")
    shown = 0
    for k, m in enumerate(view.trace.merges, 1):
        try:
            m.token.decode("utf-8")
            continue
        except UnicodeDecodeError:
            pass
        view.k = k
        at = data.find(m.token)
        note = "e.g. " + _expected_part(text, at, at + len(m.token))
        row = re.search(r"<tr class='current'>.*?</tr>", view.table.object).group()
        assert f"<span class='bpe-part'>{html.escape(note)}</span>" in row
        shown += 1
    assert shown > 0


def test_step_text_says_what_a_merge_does_to_a_character():
    from dashboard.views import bpe as V

    # a tokenizer that merges the bytes of ï and 你 (the shipped one keeps them single bytes)
    tok = B.train_trace("你好 naïve 你 " * 40, 300).tokenizer
    text = "naïve 你好"
    st = B.encode_steps(tok, text)
    data, ranges = text.encode("utf-8"), _char_ranges(text)
    kinds = set()
    for s in range(1, st.n_steps + 1):
        ci, j = st.active(s)
        m = st.chunks[ci].steps[j]
        got = html.unescape(V.describe(st, tok, s))
        if m.whole_chunk:
            assert "part of" not in got and "they make" not in got
            continue
        start = len(text[: st.chunks[ci].start].encode("utf-8"))
        start += sum(len(tok.token_bytes(i)) for i in st.states[ci][j][: m.position])
        mid = start + len(tok.token_bytes(m.left))
        end = mid + len(tok.token_bytes(m.right))
        assert tok.token_bytes(m.new) == data[start:end]
        made = [ch for ch, a, b in ranges if start <= a and b <= end and a < mid < b]
        part = _expected_part(text, start, end)
        if made:
            kinds.add("whole")
            assert f"they make {' and '.join(map(_named, made))} whole" in got, got
        if part:
            kinds.add("part")
            assert f"the new token is {part}" in got, got
        if not made and not part:
            assert "part of" not in got and "they make" not in got, got
    assert kinds == {"whole", "part"}


def test_typing_in_the_paste_box_trains_after_a_pause_and_a_change_cancels(view, monkeypatch):
    import time

    from dashboard.views import bpe as V

    release, real = gate_training(monkeypatch)
    assert 0.3 <= V.PASTE_WAIT_S <= 0.7
    view.paste.value_input = "first text " * 20  # typed: no focus lost
    view.poll()
    assert view._paste.job is None  # not at once: the typing may go on
    time.sleep(V.PASTE_WAIT_S + 0.1)
    view.poll()
    first = view._paste.job
    assert first is not None and not first.cancelled.is_set()
    view.paste.value_input = "second text " * 20  # the next change cancels the running one
    assert first.cancelled.is_set() and view._paste.job is None
    view.paste.value_input = "third, different text " * 20  # and replaces the pending one
    time.sleep(V.PASTE_WAIT_S + 0.1)
    view.poll()
    third = view._paste.job
    assert third is not None and third is not first
    view.paste.value = "third, different text " * 20  # the box loses focus: nothing new
    assert view._paste.job is third
    release.set()
    view.wait()
    assert view.source == "pasted"
    assert view.trace.sha256 == real("third, different text " * 20, 1024).sha256
    with pytest.raises(Cancelled):
        first.future.result(timeout=10)


# -- the snapshot's data ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", [TEXTS[0], TEXTS[3], TEXTS[4], TEXTS[7]])
def test_segmentation_runs_give_every_k_as_segment_does(default_trace, text):
    from dashboard.views.bpe import segmentation_runs

    tok = default_trace.tokenizer
    segs, runs = segmentation_runs(tok, text, 768)
    assert segs["k"][0] == 0 and segs["k"] == sorted(set(segs["k"]))
    n_bytes = len(text.encode("utf-8"))
    for k in range(769):
        s = max(i for i, first in enumerate(segs["k"]) if first <= k)
        chosen = [
            int(i)
            for i, a, b in zip(runs["id"], runs["first"], runs["last"], strict=True)
            if a <= s <= b
        ]
        expected = _truncated(tok, k).encode_ordinary(text)
        assert chosen == expected == [p.id for p in B.segment(tok, text, k)], k
        assert segs["n"][s] == len(expected)
        assert segs["bpt"][s] == f"{n_bytes / len(expected):.2f}"
