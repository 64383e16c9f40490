"""The "Next-token loss" lesson: what training minimises, on your text.

The inputs are the text, the targets the same text shifted by one; for every position, the
probability the model gave the true next token and its cross-entropy −ln p, all from one
forward pass (teacher forcing: the true previous tokens are the context, and the causal mask
keeps each position from its own target); the mean is the loss, e^loss the perplexity; the
most surprising tokens are named. From the model's logits through
:func:`dashboard.lessons.training.text_loss`; the snapshot swaps the precomputed texts.
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, HoverTool, Range1d

from dashboard.lessons import training as TR
from dashboard.views.offline import Context, callback, div
from dashboard.views.plots import PlotStyle, set_ticks, styled_figure, thinned_ticks, tick_label
from dashboard.views.registry import LessonView, draws
from dashboard.views.widgets import text_pane
from models.bpe import readable

ABOUT = (
    "<b>What you see:</b> next-token prediction on your text. The inputs are the text, the "
    "targets the same text shifted by one; for every position the probability the model gave "
    "the true next token and its cross-entropy −ln p, every one of them from a single forward "
    "pass (teacher forcing). Their mean is the loss training minimises; e to the loss is the "
    "perplexity. <b>Try:</b> click a bar to see what the model expected instead; type a "
    "sentence the corpus would never say and watch the loss climb."
)

TOP = 5
ONE_TOKEN = "A text of one token has no next token to predict: type a few more words."
SUMMARY = (
    "<p>{n} predictions, one per position but the last: mean loss <b>{loss}</b> nats, "
    "perplexity e<sup>{loss}</sup> = <b>{ppl}</b> (as unsure, on average, as a fair choice "
    "among that many tokens). All of them come from one forward pass: position t sees tokens "
    "0..t (the causal mask hides the rest) and is scored on token t + 1, so a whole block "
    "trains at once.</p>"
)
POSITION = (
    "<p>After <b class='tok'>{context}</b> (position {t}) the true next token is "
    "<b class='tok'>{target}</b>: p = {p}, loss −ln p = <b>{loss}</b> nats. The model's own "
    "top guesses: {guesses}.</p>"
)
LAST = (
    "<p>Position {t}, <b class='tok'>{context}</b>, is the last token: its next token is not in "
    "the text, so it has no target (the model's guesses are what sampling draws from).</p>"
)
GUESS = "<span class='tok'>{token}</span> {p}"
ROW = (
    "<tr><td class='num'>{t}</td><td class='tok'>{context}</td><td class='tok'>{target}</td>"
    "<td class='num'>{p}</td><td class='num'>{loss}</td><td class='tok'>{guess}</td></tr>"
)
TABLE = (
    "<p>The most surprising tokens:</p><table class='loss-surprising'><tr><th>t</th>"
    "<th>after</th><th>came</th><th>p</th><th>loss</th><th>the model expected</th></tr>"
    "{rows}</table>"
)


def guesses(logits_row: np.ndarray, vocab, k: int = TOP) -> list[tuple[str, float]]:
    """The model's ``k`` most probable next tokens at one position, with their probability."""
    lp = TR.log_softmax(logits_row)
    order = np.lexsort((np.arange(len(lp)), -lp))[:k]
    return [(vocab(int(i)), float(np.exp(lp[i]))) for i in order]


def position_html(logits, ids, labels, vocab, t: int) -> str:
    """What position ``t`` predicted, beside what came (HTML)."""
    guess = ", ".join(
        GUESS.format(token=html.escape(tok), p=f"{p:.3f}") for tok, p in guesses(logits[t], vocab)
    )
    if t >= len(ids) - 1:
        return LAST.format(t=t, context=html.escape(labels[t])) + f"<p>{guess}</p>"
    lp = TR.log_softmax(logits[t])
    target = int(ids[t + 1])
    return POSITION.format(
        context=html.escape(labels[t]),
        t=t,
        target=html.escape(labels[t + 1]),
        p=f"{np.exp(lp[target]):.4f}",
        loss=f"{-lp[target]:.3f}",
        guesses=guess,
    )


def summary_html(tl: TR.TextLoss) -> str:
    return SUMMARY.format(n=len(tl.losses), loss=f"{tl.mean:.3f}", ppl=f"{tl.perplexity:.1f}")


def table_html(tl: TR.TextLoss, logits, labels, vocab) -> str:
    rows = []
    for t in tl.surprising:
        (tok, p), *_ = guesses(logits[t], vocab, 1)
        rows.append(
            ROW.format(
                t=t,
                context=html.escape(labels[t]),
                target=html.escape(labels[t + 1]),
                p=f"{tl.probs[t]:.4f}",
                loss=f"{tl.losses[t]:.3f}",
                guess=f"{html.escape(tok)} ({p:.3f})",
            )
        )
    return TABLE.format(rows="".join(rows))


class Figures:
    def __init__(self, style: PlotStyle):
        c = style.classroom
        self.style = style
        self.source = ColumnDataSource(
            data=dict(x=[], top=[], color=[], label=[], p=[]), name="loss-bars"
        )
        fig = styled_figure(
            style,
            1000 if c else 760,
            420 if c else 300,
            "Loss per position",
            name="loss-figure",
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(0, 1),
        )
        bars = fig.vbar(x="x", top="top", width=0.8, color="color", source=self.source)
        fig.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[("", "@label"), ("p", "@p{0.0000}"), ("loss", "@top{0.000}")],
            )
        )
        fig.xaxis.axis_label = "position: predicting the token after it"
        fig.yaxis.axis_label = "−ln p (nats)"
        fig.xaxis.major_label_orientation = np.pi / 2
        self.selected = ColumnDataSource(data=dict(x=[0]), name="loss-selected")
        fig.vbar(
            x="x",
            top=1e9,
            width=0.95,
            source=self.selected,
            fill_alpha=0.12,
            color=style.accent,
            line_alpha=0,
        )
        self.figure = fig

    def draw(self, tl: TR.TextLoss, labels, t: int) -> None:
        s = self.style
        n = len(tl.losses)
        hot = set(tl.surprising)
        base = "#6fa8dc" if s.classroom else "#4c78a8"
        self.source.data = dict(
            x=list(range(n)),
            top=tl.losses.tolist(),
            color=[s.accent if i in hot else base for i in range(n)],
            label=[f"{labels[i]} → {labels[i + 1]}" for i in range(n)],
            p=tl.probs.tolist(),
        )
        ticks = thinned_ticks(n, self.figure.width - 100, s.px_per_label)
        set_ticks(self.figure.xaxis[0], ticks)
        self.figure.xaxis.major_label_overrides = {i: tick_label(labels[i], s) for i in ticks}
        self.figure.x_range.update(start=-0.5, end=n - 0.5)
        self.figure.y_range.update(start=0, end=1.1 * float(tl.losses.max()))
        self.selected.data = dict(x=[min(t, n - 1)])


def vocab_of(tokenizer):
    return lambda i: readable(tokenizer.token_bytes(i))


class LossLesson(LessonView):
    """The session's text scored as training scores it."""

    def __init__(self, **params):
        super().__init__(**params)
        self._f = Figures(self.style)
        self._f.figure.on_event("tap", lambda ev: self._tap(ev.x))
        self._message = text_pane(
            "", "message", "error", "loss-message", visible=False, sizing_mode="stretch_width"
        )
        self._summary = text_pane("", "explain", "loss-summary", sizing_mode="stretch_width")
        self._position = text_pane("", "explain", "loss-position", sizing_mode="stretch_width")
        self._table = text_pane("", "explain", "loss-table", width=560)
        self._layout = pn.Column(
            self._message,
            self._summary,
            pn.pane.Bokeh(self._f.figure, margin=(5, 5)),
            self._position,
            self._table,
            margin=0,
            sizing_mode="stretch_width",
        )
        self._n = 0
        self._draw()

    def _tap(self, x) -> None:
        if x is None:
            return
        i = int(round(x))
        if 0 <= i < self._n:
            self.state.query = i

    @param.depends("state.forward", "state.query", watch=True)
    @draws
    def _draw(self) -> None:
        s = self.state
        if s.forward is None:
            return
        if s.n_tokens < 2:
            self._message.object, self._message.visible = f"<p>{ONE_TOKEN}</p>", True
            return
        self._message.visible = False
        logits, ids = s.forward.logits, s.ids
        tl = TR.text_loss(logits, ids)
        self._n = len(tl.losses)
        t = min(s.query, s.n_tokens - 1)
        vocab = vocab_of(s.engine.tokenizer(s.model))
        self._f.draw(tl, s.labels, t)
        self._summary.object = summary_html(tl)
        self._position.object = position_html(logits, ids, s.labels, vocab, t)
        self._table.object = table_html(tl, logits, s.labels, vocab)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------------------------
# The same figure and texts; every position's text is written here, the page swaps them.


def snapshot(ctx: Context):
    if ctx.n_tokens < 2:
        return column(div(ctx, f"<p>{ONE_TOKEN}</p>", "message", "error"))
    logits, ids, labels = ctx.forward.logits, ctx.ids, ctx.labels
    tl = TR.text_loss(logits, ids)
    vocab = vocab_of(ctx.tokenizer)
    figs = Figures(ctx.style)
    t = ctx.query
    figs.draw(tl, labels, t)
    texts = [position_html(logits, ids, labels, vocab, i) for i in range(len(ids))]
    position = div(ctx, texts[t], "explain", "loss-position", name="loss-position")
    pick = callback(
        "loss", "tap(cb_obj)", texts=texts, text=position, selected=figs.selected, n=len(tl.losses)
    )
    for event in ("tap", "doubletap"):  # two quick clicks on two bars are two picks
        figs.figure.js_on_event(event, pick)
    return column(
        div(ctx, summary_html(tl), "explain", "loss-summary"),
        figs.figure,
        position,
        div(ctx, table_html(tl, logits, labels, vocab), "explain", "loss-table", width=560),
    )
