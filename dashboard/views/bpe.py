"""The BPE lesson: how a byte-level tokenizer is learned, and how it splits the user's text.

Three panels: the training trace (merge table, a slider over the merge count k, the sample
text segmented after k merges, curves of vocabulary size and compression), the encode trace of
the text the model reads (pre-split, then every merge of every chunk, with a player), and a
verification badge (tiktoken from our rank file; the ``tokenizers`` library's own training).

Thin by design: every number comes from :mod:`dashboard.lessons.bpe`. Training runs in
background threads (the default corpus once per process, shared by every session; pasted text
per session, cancelled by the next paste); a periodic callback on the session's event loop
picks up their progress and results, so the Tornado loop never waits for them.
"""

from __future__ import annotations

import hashlib
import html
import threading
from concurrent.futures import Future
from functools import lru_cache
from pathlib import Path

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, Range1d, Span

from dashboard.lessons import bpe as B
from dashboard.views.plots import styled_figure
from dashboard.views.registry import LessonView, when_shown
from dashboard.views.widgets import css, labelled
from models.bpe import Tokenizer, readable

SAMPLE_CHARS = 2000  # the segmented sample shows at most this much of the text
POLL_MS = 150
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


def _pane(html_text: str, *classes: str, classroom: bool = False, **params) -> pn.pane.HTML:
    """An HTML pane with the page's and this lesson's styles (panes have shadow roots)."""
    params.setdefault("margin", (5, 10))
    sheets = [css(), BPE_CSS] + ([CLASSROOM_CSS] if classroom else [])
    return pn.pane.HTML(html_text, css_classes=list(classes), stylesheets=sheets, **params)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


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


_HF: dict[tuple[str, int], Future] = {}
_HF_LOCK = threading.Lock()


def hf_comparison(trace: B.TrainingTrace) -> Future:
    """``tokenizers``' training compared with ``trace``: once per text and size, in a thread."""
    key = (trace.sha256, trace.requested)
    with _HF_LOCK:
        if key not in _HF:
            future: Future = Future()
            _HF[key] = future

            def run() -> None:
                try:
                    future.set_result(
                        B.compare_with_hf(trace.text, trace.merges, trace.requested, trace.pattern)
                    )
                except BaseException as err:  # noqa: BLE001 - shown in the page
                    future.set_exception(err)

            threading.Thread(target=run, name="bpe-hf", daemon=True).start()
        return _HF[key]


class _Cancelled(Exception):
    """Raised from the training progress callback when a newer paste replaced this one."""


class _PasteJob:
    """Training on pasted text in a thread; cancelled through its progress callback."""

    def __init__(self, text: str, vocab_size: int):
        self.text = text
        self.progress = (0, vocab_size - 256)
        self.cancelled = threading.Event()
        self.future: Future = Future()
        self._thread = threading.Thread(
            target=self._run, args=(vocab_size,), name="bpe-paste", daemon=True
        )
        self._thread.start()

    def _tick(self, done: int, total: int) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        self.progress = (done, total)

    def _run(self, vocab_size: int) -> None:
        try:
            self.future.set_result(B.train_trace(self.text, vocab_size, progress=self._tick))
        except BaseException as err:  # noqa: BLE001 - shown in the page (or dropped if cancelled)
            self.future.set_exception(err)

    def cancel(self) -> None:
        self.cancelled.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


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
        self._job: _PasteJob | None = None
        self._callback = None
        self._steps: B.EncodeSteps | None = None
        self._ranks_cache: tuple[Tokenizer | None, dict] = (None, {})

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
            placeholder="Paste any text here, then click outside the box to start…",
            rows=3,
            max_length=400_000,
            width=640 if classroom else 460,
            css_classes=["bpe-paste"],
        )
        self.progress = pn.indicators.Progress(
            value=0, max=100, width=320, visible=False, css_classes=["bpe-progress"]
        )
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
            width=700 if classroom else 520,
            css_classes=["bpe-merge-slider"],
        )
        self.prev_button = pn.widgets.Button(label="◀ k − 1", css_classes=["bpe-k-prev"])
        self.next_button = pn.widgets.Button(label="k + 1 ▶", css_classes=["bpe-k-next"])
        self.sample = _pane("", "bpe-sample", classroom=classroom, sizing_mode="stretch_width")

        # -- merge table and curves --
        self._rows: dict[str, list] = B.merge_rows([])
        self.table = _pane(
            "", "bpe-merges", classroom=classroom, width=620 if classroom else 480, margin=(5, 10)
        )
        w, h = (760, 300) if classroom else (460, 190)
        self.curve = ColumnDataSource(data=dict(k=[], bpt=[], vocab=[]), name="bpe-curve")
        self.marker = ColumnDataSource(data=dict(k=[], bpt=[], vocab=[]), name="bpe-marker")
        lw, size = (4, 16) if classroom else (2, 9)
        self.bpt_fig = styled_figure(
            style, w, h, "Compression of the training text", name="bpe-compression"
        )
        self.bpt_fig.xaxis.axis_label = "merges k"
        self.bpt_fig.yaxis.axis_label = "bytes per token"
        self.bpt_fig.line("k", "bpt", source=self.curve, line_width=lw, line_color="#4c78a8")
        self.bpt_fig.scatter("k", "bpt", source=self.marker, size=size, fill_color=style.accent)
        self.vocab_fig = styled_figure(style, w, h, "Vocabulary size", name="bpe-vocab")
        self.vocab_fig.xaxis.axis_label = "merges k"
        self.vocab_fig.yaxis.axis_label = "tokens"
        self.vocab_fig.line("k", "vocab", source=self.curve, line_width=lw, line_color="#54a24b")
        self.vocab_fig.scatter("k", "vocab", source=self.marker, size=size, fill_color=style.accent)
        self.spans = []
        for fig in (self.bpt_fig, self.vocab_fig):
            fig.x_range = Range1d(0, 1)
            span = Span(location=0, dimension="height", line_color=style.accent, line_width=lw)
            fig.add_layout(span)
            self.spans.append(span)

        # -- encode trace --
        self.player = pn.widgets.Player(
            label="Encode step",
            start=0,
            end=1,
            value=0,
            interval=350,
            loop_policy="once",
            show_loop_controls=False,
            width=560 if classroom else 420,
            css_classes=["bpe-player"],
        )
        self.step_text = _pane(
            "", "explain", "bpe-step", classroom=classroom, width=1000 if classroom else 640
        )
        self.trace_html = _pane("", "bpe-trace", classroom=classroom, sizing_mode="stretch_width")
        self.verify = _pane("", "explain", "bpe-verify", classroom=classroom)

        # -- wiring --
        self.source_buttons.param.watch(lambda e: setattr(self, "source", e.new), "value")
        self.paste.param.watch(self._pasted_event, "value")
        self.slider.param.watch(lambda e: setattr(self, "k", int(e.new)), "value")
        self.prev_button.on_click(lambda _e: self._nudge(-1))
        self.next_button.on_click(lambda _e: self._nudge(+1))
        self.player.param.watch(lambda e: setattr(self, "step", int(e.new)), "value")
        s.param.watch(self._text_changed, ["text", "model"])

        hint = (
            "<p class='hint'>Training starts from the 256 single bytes and, again and again, "
            "merges the most frequent adjacent pair into a new token (ties: the smallest pair "
            "of ids). Drag the slider, or step it, to see your text split with only the "
            "first k merges.</p>"
        )
        self._layout = pn.Column(
            _pane("<h3>How the tokenizer was learned</h3>", "detail", classroom=classroom),
            pn.Row(labelled("Train on", self.source_buttons), self.paste, margin=0),
            pn.Row(self.progress, self.status, margin=0, sizing_mode="stretch_width"),
            self.message,
            pn.Row(self.slider, self.prev_button, self.next_button, margin=0),
            _pane(hint, "caption", classroom=classroom),
            self.sample,
            pn.FlexBox(
                self.table,
                pn.Column(
                    pn.pane.Bokeh(self.bpt_fig, margin=(5, 5)),
                    pn.pane.Bokeh(self.vocab_fig, margin=(5, 5)),
                    margin=0,
                ),
                gap="10px",
                sizing_mode="stretch_width",
            ),
            _pane("<h3>How your text is encoded</h3>", "detail", classroom=classroom),
            pn.Row(self.player, self.step_text, margin=0),
            self.trace_html,
            _pane("<h3>Verification</h3>", "detail", classroom=classroom),
            self.verify,
            sizing_mode="stretch_width",
            margin=0,
        )
        self._start_default()
        self._text_changed()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    # -- background work ------------------------------------------------------------------------
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

    def _pasted_event(self, event) -> None:
        text = event.new or ""
        if self._job is not None:
            self._job.cancel()  # a new paste replaces the training in progress
            self._job = None
        problem = B.check_paste(text)
        if problem:
            self._show_message(problem + " The last trained tokenizer stays shown.")
            return
        self._show_message("")
        self._job = _PasteJob(text, B.DEFAULT_VOCAB)
        self.progress.param.update(value=0, visible=True)
        self.status.object = f"Training on the pasted text ({len(text.encode('utf-8')):,} bytes)…"
        self._ensure_polling()

    def start_training(self, text: str) -> None:
        """Train on ``text`` as if it had been pasted (tests, and the paste box)."""
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
            if self._job is not None:
                job = self._job
                if job.future.done():
                    self._job = None
                    self._take_pasted(job)
                else:
                    done, total = job.progress
                    self.progress.value = int(100 * done / max(total, 1))
                    pending = True
            hf = self._hf_future()
            if hf is not None and not hf.done():
                pending = True
            self._show_verification()
            self.progress.visible = self._default is None or self._job is not None
            if not pending:
                self._stop_polling()

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the background work is done, then poll (tests; never in a callback)."""
        B.default_trace_future().exception(timeout=timeout)
        if self._job is not None:
            self._job.join(timeout)
        if (hf := self._hf_future()) is not None:
            hf.exception(timeout=timeout)
        self.poll()
        if (hf := self._hf_future()) is not None:
            hf.exception(timeout=timeout)
            self.poll()

    def _take_pasted(self, job: _PasteJob) -> None:
        try:
            trace = job.future.result()
        except _Cancelled:
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
        rows = B.merge_rows(trace.merges)
        self._rows = rows
        ks = np.arange(n + 1)
        self.curve.data = dict(
            k=ks.tolist(), bpt=trace.bytes_per_token.tolist(), vocab=trace.vocab_size.tolist()
        )
        for fig in (self.bpt_fig, self.vocab_fig):
            fig.x_range.update(start=0, end=max(n, 1))
        self.trace = trace
        self.slider.param.update(end=max(n, 1), disabled=n == 0)
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
        self.status.object = (
            f"<p>{_esc(trace.source)}: {trace.n_bytes:,} bytes, {n} merges "
            f"({timing}).{_esc(stopped)}</p>"
        )
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
            self.table.object = self._table_html(k)
            self._draw_sample()

    def _table_html(self, k: int) -> str:
        """The merges around k (the last one applied highlighted), all text escaped."""
        rows, n = self._rows, len(self._rows["k"])
        if n == 0:
            return "<p class='hint'>No merges: every chunk of the text is a single byte.</p>"
        lo = min(max(k - 1 - TABLE_ROWS // 2, 0), max(n - TABLE_ROWS, 0))
        body = []
        for i in range(lo, min(lo + TABLE_ROWS, n)):
            mark = " class='current'" if i == k - 1 else ""
            body.append(
                f"<tr{mark}><td class='num'>{rows['k'][i]}</td><td class='num'>{rows['rank'][i]}"
                f"</td><td class='tok'>{_esc(rows['pair'][i])}</td><td class='tok'>"
                f"{_esc(rows['token'][i])}</td><td class='num'>{rows['count'][i]:,}</td></tr>"
            )
        return (
            f"<table class='bpe-table'><thead><tr><th>k</th><th>id</th><th>pair merged</th>"
            f"<th>new token</th><th>count then</th></tr></thead><tbody>{''.join(body)}</tbody>"
            f"</table><p class='hint'>Merges {lo + 1}–{min(lo + TABLE_ROWS, n)} of {n}; the "
            "highlighted one is the k-th, the last applied.</p>"
        )

    def _draw_sample(self) -> None:
        trace = self.trace
        if trace is None:
            return
        k = min(self.k, trace.n_merges)
        tok = trace.tokenizer
        text = self.state.text[:SAMPLE_CHARS]
        segs = B.segment(tok, text, k, self._ranks(tok))
        n_bytes = len(B.clean_text(text).encode("utf-8"))
        more = (
            f" (the first {SAMPLE_CHARS:,} characters of your text)"
            if len(self.state.text) > SAMPLE_CHARS
            else ""
        )
        if not segs:
            body = "<p class='hint'>Type a text in the box on the left to see it split.</p>"
        else:
            spans = []
            for i, seg in enumerate(segs):
                kind = "byte" if seg.id < 256 else f"c{i % 2}"
                spans.append(
                    f"<span class='bpe-tok {kind}' data-id='{seg.id}' "
                    f"title='{_esc(B.token_info(tok, seg.id))}'>{_esc(readable(seg.token))}</span>"
                )
            body = f"<div class='bpe-text bpe-segments'>{''.join(spans)}</div>"
        bpt = B.compression(n_bytes, len(segs))
        self.sample.object = (
            f"<p>Your text{more} after <b class='num'>{k}</b> merges: <b class='num'>"
            f"{len(segs)}</b> tokens for {n_bytes} bytes ({bpt:.2f} bytes per token). Grey: "
            "single bytes; hover a token for its bytes, id and the merge that made it.</p>" + body
        )

    # -- encode trace ---------------------------------------------------------------------------
    @when_shown
    def _text_changed(self, *_events) -> None:
        s = self.state
        if s.engine is None or s.model is None:
            return
        try:
            tok = s.engine.tokenizer(s.model)
        except Exception:  # noqa: BLE001 - the shell shows the engine's message
            return
        block = int(s.config.get("block_size", 0)) or None
        self._steps = B.encode_steps(tok, s.text, block)
        self._tiktoken_badge = self._check_tiktoken()
        n = self._steps.n_steps
        self.player.param.update(end=max(n, 1), value=n)
        if self.step == n:
            self._draw_step()
        self.step = n
        self._draw_sample()
        self._show_verification()

    @param.depends("step", watch=True)
    def _draw_step(self) -> None:
        st = self._steps
        if st is None:
            return
        s = self.state
        tok = s.engine.tokenizer(s.model)
        frame = st.frame(self.step)
        active = st.active(self.step)
        final = self.step >= st.n_steps
        parts_html = []
        index = 0  # token position in the final ids (the cut at the block size)
        for ci, (chunk, parts) in enumerate(zip(st.chunks, frame, strict=True)):
            new_at = None
            if active is not None and active[0] == ci and st.animated[ci]:
                new_at = chunk.steps[active[1]].position
            spans = []
            # a long chunk is encoded in one step: before it, show it as one grey run
            pending = not st.animated[ci] and (active is None or active[0] < ci)
            if pending and len(parts) > 1:
                shown = readable(chunk.text.encode("utf-8"))
                spans.append(
                    f"<span class='bpe-tok byte' title='{len(parts)} single bytes, encoded in "
                    f"one step: too long to animate'>{_esc(shown[:80])}"
                    f"{'…' if len(shown) > 80 else ''}</span>"
                )
                parts = ()
            for j, tid in enumerate(parts):
                if not st.animated[ci] and j >= (st.max_tokens or 0) + CUT_SHOWN:
                    spans.append(f"<span class='hint'> … {len(parts) - j} more tokens</span>")
                    break
                classes = ["bpe-tok", "byte" if tid < 256 else f"c{j % 2}"]
                if j == new_at:
                    classes.append("new")
                if final and st.max_tokens is not None and index >= st.max_tokens:
                    classes.append("cut")
                index += 1 if final else 0
                spans.append(
                    f"<span class='{' '.join(classes)}' data-id='{tid}' "
                    f"title='{_esc(B.token_info(tok, tid))}'>"
                    f"{_esc(readable(tok.token_bytes(tid)))}</span>"
                )
            chunk_class = "active" if active is not None and active[0] == ci else ""
            parts_html.append(f"<span class='bpe-chunk {chunk_class}'>{''.join(spans)}</span>")
        if not st.chunks:
            self.trace_html.object = "<p class='hint'>No text to encode.</p>"
        else:
            self.trace_html.object = f"<div class='bpe-text'>{''.join(parts_html)}</div>"
        self.step_text.object = self._describe(st, tok, active, final)

    def _describe(self, st: B.EncodeSteps, tok: Tokenizer, active, final: bool) -> str:
        n_chunks = len(st.chunks)
        if active is None:
            head = (
                f"<p>Step 0 of {st.n_steps}: the regex pre-split cuts the text into "
                f"<b class='num'>{n_chunks}</b> chunks (gaps); each starts as single bytes. "
                "Merges never cross a chunk.</p>"
            )
        else:
            ci, j = active
            chunk = st.chunks[ci]
            shown = readable(chunk.text.encode("utf-8"))[:60]
            where = f"chunk {ci + 1} of {n_chunks}, <span class='tok'>{_esc(shown)}</span>"
            if not st.animated[ci]:
                what = "encoded in one step (too long to animate)"
            else:
                m = chunk.steps[j]
                if m.whole_chunk:
                    what = f"the whole chunk is token {m.new}: tiktoken's shortcut takes it at once"
                else:
                    what = (
                        f"merge <span class='tok'>{_esc(readable(tok.token_bytes(m.left)))}</span>"
                        f" + <span class='tok'>{_esc(readable(tok.token_bytes(m.right)))}</span>"
                        f" → id {m.new} (the lowest-ranked pair present)"
                    )
            step_no = st.order.index(active) + 1
            head = f"<p>Step {step_no} of {st.n_steps}, {where}: {what}.</p>"
        tail = ""
        if final:
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
        return head + tail

    # -- verification ---------------------------------------------------------------------------
    def _show_verification(self) -> None:
        self.verify.object = self._tiktoken_badge + "<br>" + self._hf_badge()

    _tiktoken_badge = ""

    def _check_tiktoken(self) -> str:
        """The tiktoken badge for the current text (once per text change)."""
        s = self.state
        badges = []
        try:
            spec = s.engine.entry(s.model)["tokenizer"]
            path = Path(s.engine.static_dir) / spec["rank_file"]
            sha = _file_sha256(str(path), path.stat().st_mtime_ns)
            enc = _tiktoken(str(path), sha, spec["pattern"])
            text = B.clean_text(s.text)
            ours = s.engine.tokenizer(s.model).encode(text)
            theirs = enc.encode_ordinary(text)
            if ours == theirs:
                badges.append(
                    f"<span class='bpe-badge ok'>✔ tiktoken built from {_esc(path.name)} gives "
                    f"the same {len(ours)} ids for your text</span>"
                )
            else:
                first = next(
                    (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                    min(len(ours), len(theirs)),
                )
                badges.append(
                    f"<span class='bpe-badge bad'>✘ tiktoken differs from our encoder at token "
                    f"{first} ({len(theirs)} vs {len(ours)} ids)</span>"
                )
        except Exception as err:  # noqa: BLE001 - a broken file is reported, not raised
            badges.append(
                f"<span class='bpe-badge bad'>tiktoken check unavailable: {_esc(str(err))}</span>"
            )
        return "".join(badges)

    def _hf_badge(self) -> str:
        future = self._hf_future()
        if future is None:
            return (
                "<span class='bpe-badge info'>tokenizers comparison: waiting for training…</span>"
            )
        if not future.done():
            return (
                "<span class='bpe-badge info'>Training Hugging Face <i>tokenizers</i> on the "
                "same text for comparison…</span>"
            )
        try:
            c = future.result()
        except Exception as err:  # noqa: BLE001
            return (
                f"<span class='bpe-badge bad'>tokenizers comparison failed: {_esc(str(err))}</span>"
            )
        what = f"on the same text ({_esc(self.trace.source)}) and vocabulary size"
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
            f"the first {c.same_prefix} of {c.n_ours} merges are identical; {c.overlap} of its "
            f"{c.n_theirs} new tokens are also ours.{why}</span>"
        )

    def _show_message(self, text: str) -> None:
        self.message.object = _esc(text)
        self.message.visible = bool(text)
