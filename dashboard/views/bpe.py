"""The BPE lesson: how a byte-level tokenizer is learned, and how it splits the user's text.

Three panels: the training trace (merge table, a slider over the merge count k, the text
segmented after k merges, curves of vocabulary size and compression), the encode trace of the
text the model reads (pre-split, then every merge of every chunk, with a player), and a
verification badge (tiktoken from our rank file; the ``tokenizers`` library's own training).

Every number comes from :mod:`dashboard.lessons.bpe`; every piece of HTML (a table row, a token,
a caption, a step's text) from one module function below, used by both homes. The snapshot
calls the same functions with ``{{slots}}`` for what the slider changes and lets the page fill
them (escaped) from embedded arrays. Background work (training on the default corpus, on a
paste, the ``tokenizers`` comparison) runs through :mod:`dashboard.views.jobs`; the view only
polls it from a periodic callback, so the Tornado loop never waits.
"""

from __future__ import annotations

import hashlib
import html
import time
from concurrent.futures import Future
from functools import lru_cache
from pathlib import Path

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import Button, ColumnDataSource, CustomJS, InlineStyleSheet, Range1d, Slider, Span

from dashboard.lessons import bpe as B
from dashboard.views.jobs import Cancelled, Latest, Once
from dashboard.views.offline import Context, callback, div
from dashboard.views.plots import PlotStyle, styled_figure
from dashboard.views.registry import LessonView, draws
from dashboard.views.widgets import css, labelled
from models.bpe import Tokenizer, readable

SAMPLE_CHARS = 2000  # the segmented sample shows at most this much of the text
POLL_MS = 150
PASTE_WAIT_S = 0.5  # training on typed or pasted text starts this long after the last change
PLAY_MS = 350  # the encode player's pace
PLAY, PAUSE = "▶ Play", "❚❚ Pause"
TABLE_ROWS = 13  # merges listed around k
CUT_SHOWN = 20  # tokens past the model's cut still drawn (struck through) in a long chunk

BPE_CSS = """
.bpe-text { line-height: 2.1; font-size: var(--bpe-font, 15px); overflow-wrap: anywhere; }
.bpe-tok {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre;
  padding: 0.1em 0.12em; border-radius: 3px; unicode-bidi: isolate; cursor: default;
}
.bpe-tok.c0 { background: #dbeafe; border-bottom: 3px solid #3b82f6; }
.bpe-tok.c1 { background: #fde68a; border-bottom: 3px solid #d97706; }
.bpe-tok.byte { background: #eeeeee; border-bottom: 3px solid #9ca3af; }
.bpe-tok.new { outline: 3px solid #e11d48; }
.bpe-tok.cut { opacity: 0.35; text-decoration: line-through; }
.bpe-part {
  font-size: max(0.8em, 14px); margin: 0 0.3em 0 0.1em; padding: 0 0.2em; white-space: nowrap;
  border: 1px dashed #9ca3af; border-radius: 3px;
}
.bpe-chunk { margin-right: 0.45em; }
.bpe-chunk.active { background: #fff1f2; border-radius: 4px; }
.bpe-table { border-collapse: collapse; font-size: var(--bpe-font, 15px); }
.bpe-table th, .bpe-table td { padding: 0.15em 0.6em; border-bottom: 1px solid #d0d7de; }
.bpe-table td.num { text-align: right; }
.bpe-table tr.current { background: #ffedd5; font-weight: bold; }
.bpe-badge { padding: 0.3em 0.6em; border-radius: 4px; display: inline-block; margin: 2px 0; }
.bpe-badge.ok { background: #dcfce7; color: #14532d; }
.bpe-badge.bad { background: #fee2e2; color: #7f1d1d; }
.bpe-badge.info { background: #e0e7ff; color: #1e1b4b; }
"""
CLASSROOM_CSS = """
:host, .bpe-text { --bpe-font: 30px; }
.bpe-tok.c0 { background: #1e3a8a; color: #ffffff; border-bottom-color: #93c5fd; }
.bpe-tok.c1 { background: #78350f; color: #ffffff; border-bottom-color: #fcd34d; }
.bpe-tok.byte { background: #374151; color: #ffffff; }
.bpe-chunk.active { background: #4c0519; }
.bpe-table tr.current { background: #7c2d12; }
"""

ABOUT = (
    "<b>What you see:</b> how the byte-level tokenizer was learned, merge by merge, and how "
    "it splits your text: the merge table, your text after the first k merges, the "
    "vocabulary and compression curves, then your text's own encoding step by step, checked "
    "against tiktoken. <b>Try:</b> slide k to 0 (bytes) and back, step through the encoding "
    "of a word with an emoji or an accent, paste a text in another language to train on."
)
TRAINED_TITLE = "<h3>How the tokenizer was learned</h3>"
ENCODED_TITLE = "<h3>How your text is encoded</h3>"
VERIFY_TITLE = "<h3>Verification</h3>"
K_HINT = (
    "<p class='hint'>Training starts from the 256 single bytes and, again and again, "
    "merges the most frequent adjacent pair into a new token (ties: the smallest pair "
    "of ids). Drag the slider, or step it, to see your text split with only the "
    "first k merges.</p>"
)
PASTE_NOTE = (
    "<p class='hint'>This snapshot shows the tokenizer trained on the default corpus. "
    "Training on a text you paste needs the live dashboard (<code>make serve</code>).</p>"
)


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


# -- HTML shared by both homes ------------------------------------------------------------------
# Arguments that the snapshot's page fills in may be "{{slot}}" strings: html.escape leaves
# braces alone, and the page puts escaped values in their place (js/bpe.js, fill()).
def token_span(tid, classes: str, title: str, label: str) -> str:
    """One token: its id in ``data-id``, its hover text (``B.token_info``) and readable bytes."""
    return f"<span class='{classes}' data-id='{tid}' title='{_esc(title)}'>{_esc(label)}</span>"


def part_span(note: str) -> str:
    """After a token holding only part of a character: which one (``B.part_note``), on screen."""
    return f"<span class='bpe-part'>{_esc(note)}</span>" if note else ""


def token_kind(tid: int, j: int) -> str:
    """A token's colour class: grey for a single byte, else alternating by position."""
    return "byte" if tid < 256 else f"c{j % 2}"


def sample_html(k, n_tokens, n_bytes: int, bpt: str, more: str, spans: list[str]) -> str:
    """The text after k merges: a caption with the counts, then its tokens (``token_span``)."""
    caption = (
        f"<p>Your text{more} after <b class='num'>{k}</b> merges: <b class='num'>"
        f"{n_tokens}</b> tokens for {n_bytes} bytes ({bpt} bytes per token). Grey: "
        "single bytes; a dashed box names the character a token holds only part of; hover "
        "a token for its bytes, id and the merge that made it.</p>"
    )
    if not spans:
        return caption + "<p class='hint'>Type a text in the box on the left to see it split.</p>"
    return caption + f"<div class='bpe-text bpe-segments'>{''.join(spans)}</div>"


def sample_more(text: str) -> str:
    """The caption's note when only the start of a long text is segmented."""
    return (
        f" (the first {SAMPLE_CHARS:,} characters of your text)" if len(text) > SAMPLE_CHARS else ""
    )


def sample_for(tok: Tokenizer, text: str, k: int, ranks: dict[bytes, int] | None = None) -> str:
    """``sample_html`` of ``text`` (its first ``SAMPLE_CHARS``) split by the first k merges."""
    shown = text[:SAMPLE_CHARS]
    segs = B.segment(tok, shown, k, ranks)
    data = B.clean_text(shown).encode("utf-8")
    n_bytes = len(data)
    notes = B.token_notes(tok, data, [s.id for s in segs])
    spans = [
        token_span(
            s.id, f"bpe-tok {token_kind(s.id, i)}", B.token_info(tok, s.id), readable(s.token)
        )
        + part_span(note)
        for i, (s, note) in enumerate(zip(segs, notes, strict=True))
    ]
    bpt = f"{B.compression(n_bytes, len(segs)):.2f}"
    return sample_html(k, len(segs), n_bytes, bpt, sample_more(text), spans)


def merge_row(k, rank, pair: str, token: str, count: str, current: bool, part: str = "") -> str:
    """One row of the merge table (``count`` already formatted, ``part`` a ``part_span``)."""
    mark = " class='current'" if current else ""
    return (
        f"<tr{mark}><td class='num'>{k}</td><td class='num'>{rank}</td><td class='tok'>"
        f"{_esc(pair)}</td><td class='tok'>{_esc(token)}{part}</td><td class='num'>{count}"
        "</td></tr>"
    )


def merge_table(body: str, first, last, n) -> str:
    """The merge table around k: its rows (``merge_row``) and which merges they are."""
    return (
        f"<table class='bpe-table'><thead><tr><th>k</th><th>id</th><th>pair merged</th>"
        f"<th>new token</th><th>count then</th></tr></thead><tbody>{body}</tbody>"
        f"</table><p class='hint'>Merges {first}–{last} of {n}; the "
        "highlighted one is the k-th, the last applied.</p>"
    )


NO_MERGES = "<p class='hint'>No merges: every chunk of the text is a single byte.</p>"


def table_window(k: int, n: int) -> tuple[int, int]:
    """The rows (lo, hi) shown around merge k: the k-th centred, clamped to the table."""
    lo = min(max(k - 1 - TABLE_ROWS // 2, 0), max(n - TABLE_ROWS, 0))
    return lo, min(lo + TABLE_ROWS, n)


def table_for(rows: dict[str, list], k: int) -> str:
    """The merge table around merge k (``B.merge_rows`` columns), the k-th highlighted."""
    n = len(rows["k"])
    if n == 0:
        return NO_MERGES
    lo, hi = table_window(k, n)
    body = "".join(
        merge_row(rows["k"][i], rows["rank"][i], rows["pair"][i], rows["token"][i],
                  f"{rows['count'][i]:,}", i == k - 1, part_span(rows["note"][i]))
        for i in range(lo, hi)
    )  # fmt: skip
    return merge_table(body, lo + 1, hi, n)


def status_html(trace: B.TrainingTrace) -> str:
    """What was trained on, how much, and how long each stage took."""
    n = trace.n_merges
    stopped = (
        f" Training stopped early after {n} merges: no pair was left to merge."
        if n < trace.requested - 256
        else ""
    )
    names = {"read_corpus_s": "read in", "train_s": "trained in", "replay_s": "curves in"}
    timing = ", ".join(
        f"{label} {trace.timings[key]:.2f} s"
        for key, label in names.items()
        if key in trace.timings
    )
    return (
        f"<p>{_esc(trace.source)}: {trace.n_bytes:,} bytes, {n} merges "
        f"({timing}).{_esc(stopped)}</p>"
    )


def curve_figures(style: PlotStyle, curve: ColumnDataSource, marker: ColumnDataSource):
    """The compression and vocabulary-size curves over k, each with a marker and a line at k:
    (compression figure, vocabulary figure, the two spans)."""
    # two beside each other on a 1920x1080 projector, under the slider that moves their marker
    w, h = (680, 280) if style.classroom else (460, 190)
    lw, size = (4, 16) if style.classroom else (2, 9)
    bpt = styled_figure(style, w, h, "Compression of the training text", name="bpe-compression")
    bpt.xaxis.axis_label = "merges k"
    bpt.yaxis.axis_label = "bytes per token"
    bpt.line("k", "bpt", source=curve, line_width=lw, line_color="#4c78a8")
    bpt.scatter("k", "bpt", source=marker, size=size, fill_color=style.accent)
    vocab = styled_figure(style, w, h, "Vocabulary size", name="bpe-vocab")
    vocab.xaxis.axis_label = "merges k"
    vocab.yaxis.axis_label = "tokens"
    vocab.line("k", "vocab", source=curve, line_width=lw, line_color="#54a24b")
    vocab.scatter("k", "vocab", source=marker, size=size, fill_color=style.accent)
    spans = []
    for fig in (bpt, vocab):
        fig.x_range = Range1d(0, 1)
        span = Span(location=0, dimension="height", line_color=style.accent, line_width=lw,
                    name=f"{fig.name}-k")  # fmt: skip
        fig.add_layout(span)
        spans.append(span)
    return bpt, vocab, spans


# -- the encode trace's HTML --------------------------------------------------------------------
def pending_span(chunk_text: str, n_parts: int) -> str:
    """A long chunk before its one step: its bytes as one grey run."""
    shown = readable(chunk_text.encode("utf-8"))
    return (
        f"<span class='bpe-tok byte' title='{n_parts} single bytes, encoded in "
        f"one step: too long to animate'>{_esc(shown[:80])}"
        f"{'…' if len(shown) > 80 else ''}</span>"
    )


def more_span(n_more) -> str:
    return f"<span class='hint'> … {n_more} more tokens</span>"


def chunk_html(spans: list[str], active: bool) -> str:
    return f"<span class='bpe-chunk {'active' if active else ''}'>{''.join(spans)}</span>"


def trace_html(chunks: list[str]) -> str:
    """The whole frame: every chunk's tokens (``chunk_html``)."""
    if not chunks:
        return "<p class='hint'>No text to encode.</p>"
    return f"<div class='bpe-text'>{''.join(chunks)}</div>"


def frame_html(st: B.EncodeSteps, tok: Tokenizer, step: int) -> str:
    """``trace_html`` of frame ``step``: the chunk just merged highlighted (js/bpe.js twins it)."""
    frame = st.frame(step)
    active = st.active(step)
    final = step >= st.n_steps
    chunks = []
    index = 0  # token position in the final ids (the cut at the block size)
    for ci, (chunk, parts) in enumerate(zip(st.chunks, frame, strict=True)):
        notes = B.token_notes(tok, chunk.text.encode("utf-8"), parts)
        new_at = None
        if active is not None and active[0] == ci and st.animated[ci]:
            new_at = chunk.steps[active[1]].position
        spans = []
        # a long chunk is encoded in one step: before it, show it as one grey run
        pending = not st.animated[ci] and (active is None or active[0] < ci)
        if pending and len(parts) > 1:
            spans.append(pending_span(chunk.text, len(parts)))
            parts = ()
        for j, tid in enumerate(parts):
            if not st.animated[ci] and j >= (st.max_tokens or 0) + CUT_SHOWN:
                spans.append(more_span(len(parts) - j))
                break
            classes = ["bpe-tok", token_kind(tid, j)]
            if j == new_at:
                classes.append("new")
            if final and st.max_tokens is not None and index >= st.max_tokens:
                classes.append("cut")
            index += 1 if final else 0
            spans.append(
                token_span(
                    tid, " ".join(classes), B.token_info(tok, tid), readable(tok.token_bytes(tid))
                )
                + part_span(notes[j])
            )
        chunks.append(chunk_html(spans, active is not None and active[0] == ci))
    return trace_html(chunks)


def step_zero(n_steps: int, n_chunks: int) -> str:
    return (
        f"<p>Step 0 of {n_steps}: the regex pre-split cuts the text into "
        f"<b class='num'>{n_chunks}</b> chunks (gaps); each starts as single bytes. "
        "Merges never cross a chunk.</p>"
    )


def step_head(step_no, n_steps: int, chunk_no, n_chunks: int, shown: str, what: str) -> str:
    """Step s's sentence: where (the chunk, ``shown`` escaped here) and ``what`` (HTML)."""
    where = f"chunk {chunk_no} of {n_chunks}, <span class='tok'>{_esc(shown)}</span>"
    return f"<p>Step {step_no} of {n_steps}, {where}: {what}.</p>"


WHAT_LONG = "encoded in one step (too long to animate)"


def what_whole(new) -> str:
    return f"the whole chunk is token {new}: tiktoken's shortcut takes it at once"


def what_merge(left: str, right: str, new) -> str:
    return (
        f"merge <span class='tok'>{_esc(left)}</span> + <span class='tok'>{_esc(right)}</span>"
        f" → id {new} (the lowest-ranked pair present)"
    )


def chunk_shown(chunk_text: str) -> str:
    return readable(chunk_text.encode("utf-8"))[:60]


def step_note(note: str) -> str:
    """After a merge's sentence: what it does to a character (``B.merge_note``), if anything."""
    return f"; {_esc(note)}" if note else ""


def step_what(st: B.EncodeSteps, tok: Tokenizer, ci: int, j: int, s: int) -> str:
    if not st.animated[ci]:
        return WHAT_LONG
    m = st.chunks[ci].steps[j]
    if m.whole_chunk:
        return what_whole(m.new)
    left, right = (readable(tok.token_bytes(i)) for i in (m.left, m.right))
    return what_merge(left, right, m.new) + step_note(st.step_note(tok, s))


def final_tail(st: B.EncodeSteps) -> str:
    """Under the last step: the final ids, and where the model's cut falls."""
    tail = (
        # "num", not "tok": a long list of ids must wrap
        f"<p>Final ids ({len(st.ids)}): <span class='num'>"
        f"{_esc(' '.join(map(str, st.ids[:200])))}{' …' if len(st.ids) > 200 else ''}"
        "</span> — the tokens the attention lesson shows.</p>"
    )
    if st.truncated:
        tail += (
            f"<p class='hint'>The whole text is {st.n_total} tokens; the model reads "
            f"the first {st.max_tokens}, so the trace stops there (struck-through "
            "tokens are past the cut).</p>"
        )
    return tail


def describe(st: B.EncodeSteps, tok: Tokenizer, step: int) -> str:
    """The text under the encode player at frame ``step``."""
    active = st.active(step)
    if active is None:
        head = step_zero(st.n_steps, len(st.chunks))
    else:
        ci, j = active
        s = st.order.index(active) + 1
        head = step_head(
            s, st.n_steps, ci + 1, len(st.chunks), chunk_shown(st.chunks[ci].text),
            step_what(st, tok, ci, j, s),
        )  # fmt: skip
    return head + (final_tail(st) if step >= st.n_steps else "")


# -- verification ---------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _tiktoken(rank_path: str, sha256: str, pattern: str):
    """tiktoken built from our rank file (validated against its sha256, so a stale copy in
    tiktoken's cache is never used)."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(rank_path, expected_hash=sha256)
    return tiktoken.Encoding(
        name=f"anatomy-{sha256[:8]}", pat_str=pattern, mergeable_ranks=ranks, special_tokens={}
    )


@lru_cache(maxsize=8)
def _file_sha256(path: str, _mtime_ns: int) -> str:
    """sha256 of a file, recomputed when its modification time changes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tiktoken_badge(static: Path, spec: dict, tok: Tokenizer, text: str) -> str:
    """Does tiktoken, built from the rank file the manifest's tokenizer ``spec`` names,
    encode ``text`` as ``tok`` does? A badge saying so (or what is broken)."""
    try:
        path = Path(static) / spec["rank_file"]
        sha = _file_sha256(str(path), path.stat().st_mtime_ns)
        enc = _tiktoken(str(path), sha, spec["pattern"])
        text = B.clean_text(text)
        ours = tok.encode(text)
        theirs = enc.encode_ordinary(text)
    except Exception as err:  # noqa: BLE001 - a broken file is reported, not raised
        return f"<span class='bpe-badge bad'>tiktoken check unavailable: {_esc(err)}</span>"
    if ours == theirs:
        return (
            f"<span class='bpe-badge ok'>✔ tiktoken built from {_esc(path.name)} gives "
            f"the same {len(ours)} ids for your text</span>"
        )
    first = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
        min(len(ours), len(theirs)),
    )
    return (
        f"<span class='bpe-badge bad'>✘ tiktoken differs from our encoder at token "
        f"{first} ({len(theirs)} vs {len(ours)} ids)</span>"
    )


_HF = Once("bpe-hf")


def hf_comparison(trace: B.TrainingTrace) -> Future:
    """``tokenizers``' training compared with ``trace``: once per text and size, in a thread."""
    return _HF.get(
        (trace.sha256, trace.requested),
        lambda: B.compare_with_hf(trace.text, trace.merges, trace.requested, trace.pattern),
    )


def hf_badge(future: Future | None, source: str) -> str:
    """The ``tokenizers`` comparison's badge: waiting, running, failed, or what it found."""
    if future is None:
        return "<span class='bpe-badge info'>tokenizers comparison: waiting for training…</span>"
    if not future.done():
        return (
            "<span class='bpe-badge info'>Training Hugging Face <i>tokenizers</i> on the "
            "same text for comparison…</span>"
        )
    try:
        c = future.result()
    except Exception as err:  # noqa: BLE001
        return f"<span class='bpe-badge bad'>tokenizers comparison failed: {_esc(err)}</span>"
    what = f"on the same text ({_esc(source)}) and vocabulary size"
    if c.identical:
        return (
            f"<span class='bpe-badge ok'>✔ Hugging Face <i>tokenizers</i>, trained {what}, "
            f"learns the same {c.n_ours} merges in the same order.</span>"
        )
    why = ""
    if c.ours is not None:
        counts = (
            f"both pairs occur {c.ours_count} times there: a tie"
            if c.tie
            else f"counts {c.ours_count} (ours) and {c.theirs_count} (theirs), by our rules"
        )
        why = (
            f" At merge {c.same_prefix + 1} we take <span class='tok'>"
            f"{_esc(readable(c.ours))}</span> and it takes <span class='tok'>"
            f"{_esc(readable(c.theirs))}</span> ({counts})."
        )
        if c.tie:
            why += (
                " Between equal counts we take the smallest pair of token ids; tokenizers "
                "orders ties its own way, so from the first tie on the two may merge in a "
                "different order."
            )
    return (
        f"<span class='bpe-badge info'>Hugging Face <i>tokenizers</i>, trained {what}: "
        f"{_same_prefix(c.same_prefix, c.n_ours)}; {c.overlap} of its "
        f"{c.n_theirs} new tokens are also ours.{why}</span>"
    )


def _same_prefix(same: int, n: int) -> str:
    """ "the first 5 of 84 merges are identical", in good English for 0 and 1 too."""
    if same == 0:
        return f"already their first merges differ (of {n})"
    if same == 1:
        return f"the first of {n} merges is identical"
    return f"the first {same} of {n} merges are identical"


# -- the dashboard --------------------------------------------------------------------------------
def _pane(html_text: str, *classes: str, classroom: bool = False, **params) -> pn.pane.HTML:
    """An HTML pane with the page's and this lesson's styles (panes have shadow roots)."""
    params.setdefault("margin", (5, 10))
    sheets = [css(), BPE_CSS] + ([CLASSROOM_CSS] if classroom else [])
    return pn.pane.HTML(html_text, css_classes=list(classes), stylesheets=sheets, **params)


class BpeLesson(LessonView):
    """The BPE tokenizer lesson: training trace, encode trace, verification."""

    k = param.Integer(default=0, bounds=(0, None), doc="Merges applied (training trace).")
    step = param.Integer(default=0, bounds=(0, None), doc="Frame of the encode trace.")
    source = param.Selector(default="default", objects=["default", "pasted"])
    trace = param.Parameter(default=None, doc="The shown B.TrainingTrace (None while training).")

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        classroom = style.classroom
        self._default: B.TrainingTrace | None = None
        self._pasted: B.TrainingTrace | None = None
        self._paste = Latest()  # training on pasted text: a new paste cancels the last
        self._callback = None
        self._steps: B.EncodeSteps | None = None
        self._ranks_cache: tuple[Tokenizer | None, dict] = (None, {})
        self._tiktoken_badge = ""

        # -- training controls --
        self.source_buttons = pn.widgets.RadioButtonGroup(
            options={"Default corpus": "default", "Pasted text": "pasted"},
            value="default",
            color="primary",
            variant="outline",
            css_classes=["bpe-source"],
        )
        self.paste = pn.widgets.TextAreaInput(
            label="Paste text to train on (≤ 100 KB)",
            placeholder="Paste or type any text here: training starts when you stop typing…",
            rows=3,
            max_length=400_000,
            sizing_mode="stretch_width",
            max_width=640 if classroom else 460,
            css_classes=["bpe-paste"],
        )
        self._paste_text = ""  # the text of the training pending, running or done
        self._paste_due: float | None = None  # when the pending training starts
        self.progress = pn.indicators.Progress(
            value=0, max=100, sizing_mode="stretch_width", max_width=320, visible=False,
            css_classes=["bpe-progress"],
        )  # fmt: skip
        self.status = _pane(
            "", "explain", "bpe-status", classroom=classroom, sizing_mode="stretch_width"
        )
        self.message = _pane("", "message", "error", "bpe-message", classroom=classroom)
        self.message.visible = False
        self.slider = pn.widgets.IntSlider(
            label="Merges applied k",
            start=0,
            end=1,
            value=0,
            sizing_mode="stretch_width",
            max_width=700 if classroom else 520,
            css_classes=["bpe-merge-slider"],
        )
        self.prev_button = pn.widgets.Button(label="◀ k − 1", css_classes=["bpe-k-prev"])
        self.next_button = pn.widgets.Button(label="k + 1 ▶", css_classes=["bpe-k-next"])
        self.sample = _pane("", "bpe-sample", classroom=classroom, sizing_mode="stretch_width")

        # -- merge table and curves --
        self._rows: dict[str, list] = B.merge_rows([])
        self.table = _pane(
            "", "bpe-merges", classroom=classroom, sizing_mode="stretch_width",
            max_width=700 if classroom else 480, styles={"overflow-x": "auto"},
        )  # fmt: skip
        self.curve = ColumnDataSource(data=dict(k=[], bpt=[], vocab=[]), name="bpe-curve")
        self.marker = ColumnDataSource(data=dict(k=[], bpt=[], vocab=[]), name="bpe-marker")
        self.bpt_fig, self.vocab_fig, self.spans = curve_figures(style, self.curve, self.marker)

        # -- encode trace: a slider and buttons labelled in words (a projector shows no hover) --
        self.player = pn.widgets.IntSlider(
            label="Encode step",
            start=0,
            end=1,
            value=0,
            sizing_mode="stretch_width",
            max_width=700 if classroom else 520,
            css_classes=["bpe-player"],
        )
        self.play_buttons = {
            what: pn.widgets.Button(label=label, css_classes=[f"bpe-{what}"])
            for what, label in (("first", "|◀ First"), ("back", "◀ Back"), ("play", PLAY),
                                ("next", "Next ▶"), ("last", "Last ▶|"))
        }  # fmt: skip
        self._player_callback = None
        self.step_text = _pane(
            "", "explain", "bpe-step", classroom=classroom, sizing_mode="stretch_width"
        )
        self.trace_html = _pane("", "bpe-trace", classroom=classroom, sizing_mode="stretch_width")
        self.verify = _pane("", "explain", "bpe-verify", classroom=classroom)

        # -- wiring --
        self.source_buttons.param.watch(lambda e: setattr(self, "source", e.new), "value")
        # typing or pasting starts training after a pause; leaving the box, at once
        self.paste.param.watch(lambda e: self._paste_changed(e.new or ""), "value_input")
        self.paste.param.watch(lambda e: self._paste_changed(e.new or "", now=True), "value")
        self.slider.param.watch(lambda e: setattr(self, "k", int(e.new)), "value")
        self.prev_button.on_click(lambda _e: self._nudge(-1))
        self.next_button.on_click(lambda _e: self._nudge(+1))
        self.player.param.watch(lambda e: setattr(self, "step", int(e.new)), "value")
        b = self.play_buttons
        b["first"].on_click(lambda _e: self._go_to(0))
        b["back"].on_click(lambda _e: self._go_to(self.player.value - 1))
        b["next"].on_click(lambda _e: self._go_to(self.player.value + 1))
        b["last"].on_click(lambda _e: self._go_to(self.player.end))
        b["play"].on_click(lambda _e: self._toggle_play())
        s.param.watch(self._text_changed, ["text", "model"])

        self._layout = pn.Column(
            _pane(TRAINED_TITLE, "detail", classroom=classroom),
            pn.FlexBox(
                labelled("Train on", self.source_buttons),
                self.paste,
                margin=0,
                sizing_mode="stretch_width",
            ),
            pn.FlexBox(
                self.progress,
                self.status,
                margin=0,
                align_items="center",
                sizing_mode="stretch_width",
            ),
            self.message,
            pn.FlexBox(
                self.slider,
                self.prev_button,
                self.next_button,
                margin=0,
                align_items="center",
                sizing_mode="stretch_width",
            ),
            pn.FlexBox(
                pn.pane.Bokeh(self.bpt_fig, margin=(5, 5)),
                pn.pane.Bokeh(self.vocab_fig, margin=(5, 5)),
                gap="10px",
                margin=0,
                sizing_mode="stretch_width",
            ),
            _pane(K_HINT, "caption", classroom=classroom),
            self.sample,
            self.table,
            _pane(ENCODED_TITLE, "detail", classroom=classroom),
            pn.FlexBox(self.player, margin=0, sizing_mode="stretch_width"),
            pn.FlexBox(
                *self.play_buttons.values(),
                margin=0,
                sizing_mode="stretch_width",
                css_classes=["bpe-player-buttons"],
            ),
            self.step_text,
            self.trace_html,
            _pane(VERIFY_TITLE, "detail", classroom=classroom),
            self.verify,
            sizing_mode="stretch_width",
            margin=0,
        )
        self._start_default()
        self._text_changed()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    # -- background work: wiring and polling only (the work is in jobs and lessons) -----------
    def _start_default(self) -> None:
        future = B.default_trace_future()
        if future.done():
            self._take_default(future)
        else:
            self.status.object = "Reading the standard library's docstrings and training…"
            self.progress.visible = True
            self._ensure_polling()

    def _take_default(self, future: Future) -> None:
        try:
            self._default = future.result()
        except Exception as err:  # noqa: BLE001 - the page says what failed
            self._show_message(f"Training on the default corpus failed: {err}")
            return
        if self.source == "default":
            self._show_trace(self._default)

    def _paste_changed(self, text: str, now: bool = False) -> None:
        """The paste box changed: cancel the training pending or running for its last text and
        train on this one after ``PASTE_WAIT_S`` (the typing may go on), or ``now``."""
        if text != self._paste_text:
            self._paste.cancel()  # a new text replaces the training in progress
            self._paste_text = text
            self._paste_due = time.monotonic() + PASTE_WAIT_S
            self.status.object = "Training starts when you stop typing…"
            self._ensure_polling()
        if now and self._paste_due is not None:
            self._start_paste()

    def _start_paste(self) -> None:
        self._paste_due = None
        text = self._paste_text
        problem = B.check_paste(text)
        if problem:
            self._show_message(problem + " The last trained tokenizer stays shown.")
            self.status.object = status_html(self.trace) if self.trace is not None else ""
            return
        self._show_message("")
        # B.train_trace is looked up when the job runs (tests slow it down)
        self._paste.start(
            lambda progress: B.train_trace(text, B.DEFAULT_VOCAB, progress=progress),
            total=B.DEFAULT_VOCAB - 256,
            name="bpe-paste",
        )
        self.progress.param.update(value=0, visible=True)
        self.status.object = f"Training on the pasted text ({len(text.encode('utf-8')):,} bytes)…"
        self._ensure_polling()

    def start_training(self, text: str) -> None:
        """Train on ``text`` now, as if it had been pasted and the box left (tests)."""
        self.paste.value = text

    def _ensure_polling(self) -> None:
        if self._callback is None and pn.state.curdoc is not None:
            try:
                self._callback = pn.state.add_periodic_callback(self.poll, period=POLL_MS)
            except Exception:  # noqa: BLE001 - no server session (tests): they call poll()
                self._callback = None

    def _stop_polling(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def poll(self) -> None:
        """Pick up progress and results of the background work (runs on the event loop)."""
        with pn.io.hold():
            pending = False
            if self._default is None:
                future = B.default_trace_future()
                if future.done():
                    self._take_default(future)
                else:
                    done, total = B.DEFAULT_PROGRESS
                    self.progress.value = int(100 * done / max(total, 1))
                    pending = True
            if self._paste_due is not None:
                if time.monotonic() >= self._paste_due:
                    self._start_paste()
                else:
                    pending = True
            if (job := self._paste.take()) is not None:
                self._take_pasted(job.future)
            elif self._paste.job is not None:
                self.progress.value = int(100 * self._paste.job.fraction)
                pending = True
            hf = self._hf_future()
            if hf is not None and not hf.done():
                pending = True
            self._show_verification()
            self.progress.visible = self._default is None or self._paste.job is not None
            if not pending:
                self._stop_polling()

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the background work is done, then poll (tests; never in a callback)."""
        B.default_trace_future().exception(timeout=timeout)
        if self._paste.job is not None:
            self._paste.job.join(timeout)
        if (hf := self._hf_future()) is not None:
            hf.exception(timeout=timeout)
        self.poll()
        if (hf := self._hf_future()) is not None:
            hf.exception(timeout=timeout)
            self.poll()

    def _take_pasted(self, future: Future) -> None:
        try:
            trace = future.result()
        except Cancelled:  # replaced by a newer paste
            return
        except Exception as err:  # noqa: BLE001 - the page says what failed
            self._show_message(f"Training failed: {err}. The last trained tokenizer stays shown.")
            return
        self._pasted = trace
        self.status.object = ""
        if self.source != "pasted":
            self.source = "pasted"
        else:
            self._show_trace(trace)

    def _hf_future(self) -> Future | None:
        return None if self.trace is None else hf_comparison(self.trace)

    # -- training trace -------------------------------------------------------------------------
    @param.depends("source", watch=True)
    def _source_changed(self) -> None:
        if self.source_buttons.value != self.source:
            self.source_buttons.value = self.source
        trace = self._default if self.source == "default" else self._pasted
        if trace is None:
            self.status.object = (
                "Paste a text in the box to train on it." if self.source == "pasted" else ""
            )
            return
        self._show_trace(trace)

    def _show_trace(self, trace: B.TrainingTrace) -> None:
        # held: Bokeh sources and ranges change in a browser event's callback too
        with pn.io.hold():
            self._show_trace_now(trace)

    def _show_trace_now(self, trace: B.TrainingTrace) -> None:
        n = trace.n_merges
        self._rows = B.merge_rows(trace.merges, text=trace.text)
        ks = np.arange(n + 1)
        self.curve.data = dict(
            k=ks.tolist(), bpt=trace.bytes_per_token.tolist(), vocab=trace.vocab_size.tolist()
        )
        for fig in (self.bpt_fig, self.vocab_fig):
            fig.x_range.update(start=0, end=max(n, 1))
        self.trace = trace
        self.slider.param.update(end=max(n, 1), disabled=n == 0)
        self.status.object = status_html(trace)
        k = min(self.k, n) if self.k else n
        if self.k == k:
            self._draw_k()
        self.k = k
        self._ensure_polling()
        self._show_verification()

    def _nudge(self, delta: int) -> None:
        if self.trace is not None:
            self.k = min(max(self.k + delta, 0), self.trace.n_merges)

    def _ranks(self, tok: Tokenizer) -> dict[bytes, int]:
        if self._ranks_cache[0] is not tok:  # a copy of the ranks once per tokenizer
            self._ranks_cache = (tok, tok.ranks)
        return self._ranks_cache[1]

    @param.depends("k", watch=True)
    def _draw_k(self) -> None:
        trace = self.trace
        if trace is None:
            return
        k = min(self.k, trace.n_merges)
        with pn.io.hold():
            if self.slider.value != k:
                self.slider.value = k
            for span in self.spans:
                span.location = k
            self.marker.data = dict(
                k=[k], bpt=[float(trace.bytes_per_token[k])], vocab=[int(256 + k)]
            )
            self.table.object = table_for(self._rows, k)
            self._draw_sample()

    def _draw_sample(self) -> None:
        trace = self.trace
        if trace is None:
            return
        tok = trace.tokenizer
        k = min(self.k, trace.n_merges)
        self.sample.object = sample_for(tok, self.state.text, k, self._ranks(tok))

    # -- encode trace ---------------------------------------------------------------------------
    @draws
    def _text_changed(self, *_events) -> None:
        s = self.state
        if s.engine is None or s.model is None:
            return
        try:
            tok = s.engine.tokenizer(s.model)
            spec = s.engine.entry(s.model)["tokenizer"]
        except Exception:  # noqa: BLE001 - the shell shows the engine's message
            return
        block = int(s.config.get("block_size", 0)) or None
        self._steps = B.encode_steps(tok, s.text, block)
        self._tiktoken_badge = tiktoken_badge(Path(s.engine.static_dir), spec, tok, s.text)
        n = self._steps.n_steps
        self._stop_playing()
        # the player's range follows the text: its end is the new number of steps
        self.player.param.update(end=max(n, 1), value=n)
        if self.step == n:
            self._draw_step()
        self.step = n
        self._draw_sample()
        self._show_verification()

    # -- the encode player: its buttons move the slider; playing steps it from the server --
    def _go_to(self, step: int) -> None:
        self._stop_playing()
        self.player.value = min(max(int(step), self.player.start), self.player.end)

    def _toggle_play(self) -> None:
        if self._player_callback is not None:
            self._stop_playing()
            return
        if self.player.value >= self.player.end:  # at the end, play starts again from 0
            self.player.value = self.player.start
        try:
            self._player_callback = pn.state.add_periodic_callback(self._play_tick, PLAY_MS)
        except Exception:  # noqa: BLE001 - no server session: nothing to play in
            return
        self.play_buttons["play"].label = PAUSE

    def _play_tick(self) -> None:
        if self.player.value >= self.player.end:
            self._stop_playing()
        else:
            self.player.value += 1

    def _stop_playing(self) -> None:
        if self._player_callback is not None:
            self._player_callback.stop()
            self._player_callback = None
        self.play_buttons["play"].label = PLAY

    @param.depends("step", watch=True)
    def _draw_step(self) -> None:
        st = self._steps
        if st is None:
            return
        s = self.state
        tok = s.engine.tokenizer(s.model)
        self.trace_html.object = frame_html(st, tok, self.step)
        self.step_text.object = describe(st, tok, self.step)

    # -- verification ---------------------------------------------------------------------------
    def _show_verification(self) -> None:
        source = self.trace.source if self.trace is not None else ""
        self.verify.object = self._tiktoken_badge + "<br>" + hf_badge(self._hf_future(), source)

    def _show_message(self, text: str) -> None:
        self.message.object = _esc(text)
        self.message.visible = bool(text)


# -- the snapshot ---------------------------------------------------------------------------------
# The same three panels, built by the functions above. What the sliders change is filled in by
# js/bpe.js from embedded arrays: the default corpus's trace (curves, merges), the distinct
# segmentations of the text as k grows (as runs of tokens, each alive over a range of them) and
# the encode trace's states per chunk. The first state (k = all merges, the last encode step) is
# the Python-rendered HTML itself; the page only redraws when a slider moves.
def _slot(name: str) -> str:
    return "{{" + name + "}}"


def _sheet(ctx: Context) -> InlineStyleSheet:
    """The lesson's style sheet, one model shared by every Div of the lesson."""
    if "bpe-css" not in ctx.shared:
        extra = CLASSROOM_CSS if ctx.style.classroom else ""
        ctx.shared["bpe-css"] = InlineStyleSheet(css=BPE_CSS + extra)
    return ctx.shared["bpe-css"]


def _div(ctx: Context, html_text: str, *classes: str, name: str | None = None, **kw):
    d = div(ctx, html_text, *classes, name=name, **kw)
    d.stylesheets = [*d.stylesheets, _sheet(ctx)]
    return d


def _ids_of(tok: Tokenizer, ctx: Context) -> str:
    """``"model"`` when ``tok`` is the model's tokenizer (same ranks): its labels are shared."""
    return "model" if tok is ctx.tokenizer or tok.ranks == ctx.tokenizer.ranks else "trained"


def _labels(
    ctx: Context, tok: Tokenizer, used: set[int]
) -> tuple[ColumnDataSource, ColumnDataSource]:
    """(readable labels, hover texts and byte lengths) of ``tok``'s tokens; hover texts only
    for ``used`` ids (the rest ""), one source per tokenizer, each embedded once."""
    key = _ids_of(tok, ctx)
    if key == "model":
        labels = ctx.vocabulary()
    else:
        names = [readable(tok.token_bytes(i)) for i in range(tok.vocab_size)]
        labels = ctx.shared.setdefault(
            "bpe-trained-vocab", ColumnDataSource(data=dict(label=names), name="bpe-trained-vocab")
        )
    name = f"bpe-titles-{key}"
    if name not in ctx.shared:
        nbytes = [len(tok.token_bytes(i)) for i in range(tok.vocab_size)]
        ctx.shared[name] = ColumnDataSource(
            data=dict(title=[""] * tok.vocab_size, nbytes=np.array(nbytes, dtype=np.int32)),
            name=name,
        )
    titles = ctx.shared[name]
    column_ = list(titles.data["title"])
    for i in used:
        column_[i] = B.token_info(tok, i)
    titles.data = dict(title=column_, nbytes=titles.data["nbytes"])
    return labels, titles


def segmentation_runs(tok: Tokenizer, text: str, n_merges: int) -> tuple[dict, dict]:
    """The distinct segmentations of ``text`` as k goes 0..``n_merges`` (``B.segment``):
    ``k`` (the first k of each), ``n`` (its tokens), ``bpt`` (bytes per token, as shown); and
    the tokens as runs: ``start`` (byte offset), ``id``, and the segmentations ``first`` to
    ``last`` that hold it, with ``note`` (``B.part_note``). Segmentation s is the runs with
    first <= s <= last, by start."""
    ranks = tok.ranks
    data = B.clean_text(text).encode("utf-8")
    n_bytes = len(data)
    segs: dict[str, list] = {"k": [], "n": [], "bpt": []}
    runs: list[list[int]] = []
    alive: dict[tuple[int, int, int], list[int]] = {}
    previous = None
    for k in range(n_merges + 1):
        parts = B.segment(tok, text, k, ranks)
        ids = tuple(p.id for p in parts)
        if ids == previous:
            continue
        previous, si = ids, len(segs["k"])
        segs["k"].append(k)
        segs["n"].append(len(ids))
        segs["bpt"].append(f"{B.compression(n_bytes, len(ids)):.2f}")
        now, start = {}, 0
        for p in parts:
            key = (start, len(p.token), p.id)
            run = alive.get(key)
            if run is None:
                run = [start, p.id, si, si]
                runs.append(run)
            run[3] = si
            now[key] = run
            start += len(p.token)
        alive = now
    runs.sort(key=lambda r: (r[0], r[2]))
    cols = {name: np.array([r[i] for r in runs], dtype=np.int32)
            for i, name in enumerate(("start", "id", "first", "last"))}  # fmt: skip
    cols["note"] = [B.part_note(data, r[0], r[0] + len(tok.token_bytes(r[1]))) for r in runs]
    return segs, cols


def _training_panel(ctx: Context, trace: B.TrainingTrace) -> tuple[Slider, dict, list]:
    """(the k slider, the callback's arguments, the panel's rows)."""
    tok, n, classroom = trace.tokenizer, trace.n_merges, ctx.style.classroom
    text = ctx.text[:SAMPLE_CHARS]
    segs, runs = segmentation_runs(tok, text, n)
    labels, titles = _labels(ctx, tok, {int(i) for i in runs["id"]})
    rows = B.merge_rows(trace.merges, text=trace.text)
    curve = ColumnDataSource(
        data=dict(
            k=np.arange(n + 1, dtype=np.int32),
            bpt=trace.bytes_per_token.astype(np.float32),
            vocab=trace.vocab_size.astype(np.int32),
        ),
        name="bpe-curve",
    )
    marker = ColumnDataSource(
        data=dict(k=[n], bpt=[float(curve.data["bpt"][n])], vocab=[256 + n]), name="bpe-marker"
    )
    bpt_fig, vocab_fig, spans = curve_figures(ctx.style, curve, marker)
    for fig, span in zip((bpt_fig, vocab_fig), spans, strict=True):
        fig.x_range.update(start=0, end=max(n, 1))
        span.location = n
    merges = ColumnDataSource(
        data=dict(
            rank=np.array(rows["rank"], dtype=np.int32),
            left=np.array([m.pair[0] for m in trace.merges], dtype=np.int32),
            right=np.array([m.pair[1] for m in trace.merges], dtype=np.int32),
            count=np.array(rows["count"], dtype=np.int32),
            note=rows["note"],
        ),
        name="bpe-merge-rows",
    )
    seg = ColumnDataSource(data=segs, name="bpe-segmentations")
    run = ColumnDataSource(data=runs, name="bpe-runs")
    slider = _step_slider(ctx, "Merges applied k", n, "bpe-k")
    sample = _div(ctx, sample_for(tok, ctx.text, n), "bpe-sample", name="bpe-sample")
    table = _div(ctx, table_for(rows, n), "bpe-merges", name="bpe-merges",
                 sizing_mode="stretch_width", max_width=700 if classroom else 480,
                 styles={"overflow-x": "auto"})  # fmt: skip
    templates = dict(
        span=token_span(_slot("id"), _slot("cls"), _slot("title"), _slot("label")),
        sample=sample_html(_slot("k"), _slot("n"), len(B.clean_text(text).encode("utf-8")),
                           _slot("bpt"), sample_more(ctx.text), [_slot("spans")]),
        row=merge_row(*map(_slot, ("k", "rank", "pair", "token", "count")), current=False,
                      part=_slot("part")),
        row_current=merge_row(*map(_slot, ("k", "rank", "pair", "token", "count")),
                              current=True, part=_slot("part")),
        part=part_span(_slot("note")),
        table=merge_table(_slot("rows"), _slot("first"), _slot("last"), _slot("n")),
        no_merges=NO_MERGES,
    )  # fmt: skip
    args = dict(
        kslider=slider, curve=curve, marker=marker, spans=spans, merges=merges, seg=seg,
        runs=run, klabels=labels, ktitles=titles, table=table, sample=sample, T=templates,
        rows_shown=TABLE_ROWS,
    )  # fmt: skip
    return (
        slider,
        args,
        [
            _div(ctx, TRAINED_TITLE, "detail"),
            _div(ctx, PASTE_NOTE, "explain", "bpe-paste-note", name="bpe-paste-note"),
            _div(ctx, status_html(trace), "explain", "bpe-status", name="bpe-status"),
            row(slider, *_steppers(ctx, slider, "bpe-k", "k"), sizing_mode="stretch_width"),
            row(bpt_fig, vocab_fig, sizing_mode="stretch_width"),
            _div(ctx, K_HINT, "caption"),
            sample,
            table,
        ],
    )


def _step_slider(ctx: Context, title: str, n: int, name: str) -> Slider:
    """A slider over steps 0..n, at the last one (disabled when there is no step), as wide as
    the dashboard's at most."""
    return Slider(
        title=title,
        start=0,
        end=max(n, 1),
        step=1,
        value=n,
        disabled=n == 0,
        sizing_mode="stretch_width",
        max_width=700 if ctx.style.classroom else 520,
        name=name,
        stylesheets=[ctx.stylesheet],
    )


def _steppers(ctx: Context, slider: Slider, name: str, what: str) -> list[Button]:
    """◀ and ▶ buttons moving ``slider`` by one (its own callback then redraws)."""
    out = []
    for label, delta, side in ((f"◀ {what} − 1", -1, "prev"), (f"{what} + 1 ▶", 1, "next")):
        b = Button(label=label, name=f"{name}-{side}", stylesheets=[ctx.stylesheet])
        code = "s.value = Math.min(Math.max(s.value + d, s.start), s.end);"
        b.js_on_click(CustomJS(args=dict(s=slider, d=delta), code=code))
        out.append(b)
    return out


def encode_notes(st: B.EncodeSteps, tok: Tokenizer) -> dict[str, list]:
    """Every token the encode trace draws that holds only part of a character: its ``chunk``,
    ``start`` (byte offset in the chunk), ``length`` (bytes) and ``note`` (``B.part_note``)."""
    found: dict[tuple[int, int, int], str] = {}
    for ci, (chunk, states) in enumerate(zip(st.chunks, st.states, strict=True)):
        data = chunk.text.encode("utf-8")
        for si, parts in enumerate(states):
            if not st.animated[ci] and si == 0:
                continue  # a long chunk before its step is one grey run
            if not st.animated[ci]:
                parts = parts[: (st.max_tokens or 0) + CUT_SHOWN]
            start = 0
            for tid, note in zip(parts, B.token_notes(tok, data, parts), strict=True):
                n = len(tok.token_bytes(tid))
                if note:
                    found[(ci, start, n)] = note
                start += n
    keys = sorted(found)
    return dict(
        chunk=[c for c, _, _ in keys], start=[a for _, a, _ in keys],
        length=[n for _, _, n in keys], note=[found[k] for k in keys],
    )  # fmt: skip


def encode_data(st: B.EncodeSteps, tok: Tokenizer) -> dict:
    """What js/bpe.js draws the encode trace from: the steps' and chunks' columns, the notes
    of tokens holding part of a character (``encode_notes``), the templates and limits."""
    n = st.n_steps
    order = np.array(st.order, dtype=np.int32).reshape(-1, 2)
    moves = [st.chunks[ci].steps[j] if st.animated[ci] else None for ci, j in st.order]
    steps = dict(
        chunk=order[:, 0],
        j=order[:, 1],
        left=np.array([m.left if m else -1 for m in moves], dtype=np.int32),
        right=np.array([m.right if m else -1 for m in moves], dtype=np.int32),
        new=np.array([m.new if m else -1 for m in moves], dtype=np.int32),
        position=np.array([m.position if m else -1 for m in moves], dtype=np.int32),
        whole=np.array([bool(m and m.whole_chunk) for m in moves], dtype=bool),
        note=[st.step_note(tok, s) for s in range(1, n + 1)],
    )
    chunks = dict(
        states=[[list(p) for p in s] for s in st.states],
        animated=list(st.animated),
        shown=[chunk_shown(c.text) for c in st.chunks],
        pending=[
            "" if a else pending_span(c.text, len(s[0]))
            for c, s, a in zip(st.chunks, st.states, st.animated, strict=True)
        ],
    )
    templates = dict(
        span=token_span(_slot("id"), _slot("cls"), _slot("title"), _slot("label")),
        part=part_span(_slot("note")),
        more=more_span(_slot("n")),
        chunk=chunk_html([_slot("spans")], active=False),
        chunk_active=chunk_html([_slot("spans")], active=True),
        trace=trace_html([_slot("chunks")]),
        no_text=trace_html([]),
        zero=step_zero(n, len(st.chunks)),
        head=step_head(_slot("step"), n, _slot("chunk"), len(st.chunks), _slot("shown"),
                       _slot("what")),
        merge=what_merge(_slot("left"), _slot("right"), _slot("new")),
        step_note=step_note(_slot("note")),
        whole=what_whole(_slot("new")),
        long=WHAT_LONG,
        tail=final_tail(st),
    )  # fmt: skip
    return dict(
        steps=steps, chunks=chunks, pnotes=encode_notes(st, tok), T=templates,
        cut_shown=CUT_SHOWN, max_tokens=st.max_tokens if st.max_tokens is not None else -1,
    )  # fmt: skip


def _encode_panel(ctx: Context) -> tuple[Slider, dict, list]:
    """(the step slider, the callback's arguments, the panel's rows)."""
    tok = ctx.tokenizer
    block = int(ctx.config.get("block_size", 0)) or None
    st = B.encode_steps(tok, ctx.text, block)
    n = st.n_steps
    labels, titles = _labels(ctx, tok, {i for s in st.states for p in s for i in p})
    data = encode_data(st, tok)
    sources = {
        key: ColumnDataSource(data=data[key], name=name)
        for key, name in (("steps", "bpe-encode-steps"), ("chunks", "bpe-chunks"),
                          ("pnotes", "bpe-part-notes"))
    }  # fmt: skip
    final = [i for parts in st.frame(n) for i in parts]
    segments = ColumnDataSource(data=dict(id=final), name="bpe-segments")
    slider = _step_slider(ctx, "Encode step", n, "bpe-step")
    text = _div(ctx, describe(st, tok, n), "explain", "bpe-step", name="bpe-step-text")
    trace = _div(ctx, frame_html(st, tok, n), "bpe-trace", name="bpe-trace")
    args = dict(
        data, **sources, sslider=slider, slabels=labels, stitles=titles, segments=segments,
        trace=trace, text=text,
    )  # fmt: skip
    return (
        slider,
        args,
        [
            _div(ctx, ENCODED_TITLE, "detail"),
            row(slider, *_steppers(ctx, slider, "bpe-step", "step"), sizing_mode="stretch_width"),
            text,
            trace,
        ],
    )


def _rank_file(ctx: Context) -> tuple[Path, dict] | None:
    """(static folder, the manifest's tokenizer record) of the snapshot's model, or None."""
    try:
        return Path(ctx.engine.static_dir), ctx.engine.entry(ctx.model)["tokenizer"]
    except Exception:  # noqa: BLE001 - the badge says the check is unavailable
        return None


def snapshot(ctx: Context):
    """The lesson offline: the training trace of the default corpus with its k slider, the
    encode trace with its step slider, and the checks made at export time."""
    kslider, kargs = None, {}
    try:
        trace = B.default_trace_future().result(timeout=600)
        kslider, kargs, trained = _training_panel(ctx, trace)
        hf = hf_comparison(trace)
        hf.exception(timeout=600)  # ~1.5 s, once per process
        hf_text = hf_badge(hf, trace.source)
    except Exception as err:  # noqa: BLE001 - the page says what failed
        msg = f"Training on the default corpus failed: {err}"
        error = _div(ctx, f"<p>{_esc(msg)}</p>", "message", "error", name="bpe-message")
        trained = [_div(ctx, TRAINED_TITLE, "detail"), error]
        hf_text = hf_badge(None, "")
    sslider, sargs, encoded = _encode_panel(ctx)
    # one callback for both sliders: the lesson's JS is embedded once
    args = {**kargs, **sargs, "kslider": kslider, "T": kargs.get("T", {}) | sargs["T"]}
    redraw = callback("bpe", "cb_obj === kslider ? draw_k() : draw_step()", **args)
    for slider in (kslider, sslider):
        if slider is not None:
            slider.js_on_change("value", redraw)
    found = _rank_file(ctx)
    if found is None:
        tk = "<span class='bpe-badge bad'>tiktoken check unavailable: no tokenizer record</span>"
    else:
        tk = tiktoken_badge(found[0], found[1], ctx.tokenizer, ctx.text)
    verify = _div(ctx, tk + "<br>" + hf_text, "explain", "bpe-verify", name="bpe-verify")
    return column(
        *trained, *encoded, _div(ctx, VERIFY_TITLE, "detail"), verify,
        sizing_mode="stretch_width",
    )  # fmt: skip
