"""The encoder-decoder lessons, on anatomy-translator (numbers in digits -> words).

Three lessons share one number, one layer and one head:

- **Encoder**: its self-attention over the digits, bidirectional (the mask is all ones);
- **Decoder**: its causal self-attention over the words, fed the true previous words
  (teacher forcing, as in training) or its own (free running, as in use);
- **Cross-attention**: for each word it writes, which digits it reads; a greedy decode shown
  step by step, and the translation judged against :func:`models.numbers.words`.

Everything comes from the ONNX graphs through :mod:`models.translation`. The snapshot cannot
run them, so it holds a few numbers (the chosen one among them) and swaps their data in the
page.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import ClassVar

import numpy as np
import panel as pn
import param
from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    RadioButtonGroup,
    Range1d,
    Select,
    Slider,
)

from dashboard.views.offline import Context, callback, div
from dashboard.views.plots import PROB_PALETTE, PlotStyle, colour_bar, styled_figure
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import choice_group, labelled, text_pane, two_way
from models import numbers as N
from models.runtime import EngineError
from models.translation import Forced, Translation, TranslatorRuntime, open_translator

DEFAULT_NUMBER = "1204"
ALL_STEPS = N.MAX_WORDS + 1  # the words and END: the most rows a decode has
EXAMPLES = ("1204", "42", "700010", "999999", "100000", "7", "0042")  # the snapshot's
PLACES = ("1", "10", "100", "1k", "10k", "100k")

ABOUT = {
    "encoder": (
        "<b>What you see:</b> the encoder of a small translator reading a number's digits. "
        "Every digit attends to every other, before and after it: an encoder's mask is all "
        "ones. A digit's meaning depends on how many digits follow it (the 2 of 1204 is "
        "hundreds), which only looking right can tell. <b>Try:</b> 42 and 420042; find a head "
        "that looks at the last digit."
    ),
    "decoder": (
        "<b>What you see:</b> the decoder writing the words, each position attending only to "
        "the words before it (a causal mask). In training it is fed the true previous words, "
        "all positions at once (teacher forcing); in use, its own, one pass per word (free "
        "running). <b>Try:</b> switch between the two; type 0042, which it never saw, and "
        "watch its own mistake being fed back."
    ),
    "cross": (
        "<b>What you see:</b> cross-attention: each word the decoder writes (a row) asks the "
        "encoder's digits (the columns) what to say. Queries come from the decoder, keys and "
        "values from the encoder. <b>Try:</b> step through the decode and watch which digit "
        "each word reads; 'thousand' reads the digits before the last three."
    ),
}
FEEDS = {"forced": "True words (teacher forcing)", "free": "Its own words (free running)"}
NO_TRANSLATOR = "<p class='message error'>This build has no translator: {error}</p>"


class TranslatorOptions(Options):
    """The number, layer, head, decode step and the decoder's feed, shared by the lessons."""

    url: ClassVar[dict[str, str]] = {
        "tr_number": "num",
        "tr_layer": "trl",
        "tr_head": "trh",
        "tr_step": "trs",
        "tr_feed": "trf",
    }
    tr_number = param.String(default=DEFAULT_NUMBER, doc="The number translated (digits).")
    tr_layer = param.Integer(default=0, bounds=(0, 7), doc="The translator's layer shown.")
    tr_head = param.Integer(default=0, bounds=(0, 15), doc="The translator's head shown.")
    tr_step = param.Integer(
        default=0, bounds=(0, ALL_STEPS), doc="Words of the decode shown (0: all of them)."
    )
    tr_feed = param.Selector(default="forced", objects=list(FEEDS), doc="What the decoder reads.")


# -- what the lessons show, as data (Python draws it; the snapshot holds it) -------------------
def digit_labels(digits: str) -> list[str]:
    """Each digit with its place: "2·100"."""
    n = len(digits)
    return [f"{d}·{PLACES[n - 1 - i]}" for i, d in enumerate(digits)]


@lru_cache(maxsize=256)
def translation(runtime: TranslatorRuntime, digits: str) -> Translation:
    return runtime.translate(digits)


@lru_cache(maxsize=256)
def forced(runtime: TranslatorRuntime, digits: str) -> Forced:
    return runtime.teacher_forced(digits)


def verdict_html(t: Translation) -> str:
    """The translation, judged against the reference function."""
    got = html.escape(t.text) or "(nothing)"
    if t.correct:
        return f"<p class='tr-verdict'><b>{t.digits}</b> → <b>{got}</b> ✓ correct</p>"
    why = "" if t.finished else f" (it did not stop within {len(t.tokens)} words)"
    lead = (
        " It never saw a leading zero in training."
        if len(t.digits) > 1 and t.digits[0] == "0"
        else ""
    )
    return (
        f"<p class='tr-verdict'><b>{t.digits}</b> → <b>{got}</b> ✗ wrong{why}. The reference: "
        f"<b>{html.escape(t.reference)}</b>.{lead}</p>"
    )


def strongest(attn: np.ndarray, rows: list[str], cols: list[str], limit: int) -> str:
    """Each of the first ``limit`` rows' most attended column, as a list (HTML)."""
    items = "".join(
        f"<li><span class='tok'>{html.escape(rows[i])}</span> reads "
        f"<span class='tok'>{html.escape(cols[int(np.argmax(attn[i]))])}</span> "
        f"({attn[i].max():.2f})</li>"
        for i in range(min(limit, len(rows)))
    )
    return f"<ul class='tr-strongest'>{items}</ul>"


def encoder_html(t: Translation, layer: int, head: int) -> str:
    labels = digit_labels(t.digits)
    return (
        f"<p>Layer {layer}, head {head}: each digit's strongest key. No cell is masked: "
        "every query sees all the digits, before and after it (the <a href='?lesson=mask"
        "&mask=none'>mask lesson's \"none\"</a>; a decoder's is causal).</p>"
        + strongest(t.enc_attn[layer, head], labels, labels, len(labels))
    )


def decoder_rows(t: Translation, f: Forced, feed: str) -> tuple[list[str], list[str], np.ndarray]:
    """The decoder's fed tokens, what it wrote at each, and its self-attention (layer, head,
    T, T), for ``feed`` "forced" or "free"."""
    if feed == "forced":
        return list(f.inputs), list(f.predicted), f.self_attn
    return [N.START, *t.tokens[:-1]], list(t.tokens), t.self_attn


def decoder_html(t: Translation, f: Forced, feed: str) -> str:
    """A position-by-position table of what the decoder was fed and what it wrote (HTML)."""
    fed, wrote, _ = decoder_rows(t, f, feed)
    body = []
    for i, (a, b) in enumerate(zip(fed, wrote, strict=True)):
        if feed == "forced":
            want = f.targets[i]
            mark = "" if b == want else f" ✗ (true: {html.escape(want)})"
            p = f"{f.target_probs[i]:.3f}"
        else:
            mark, p = "", f"{t.probs[i]:.3f}"
        body.append(
            f"<tr><td class='num'>{i}</td><td class='tok'>{html.escape(a)}</td>"
            f"<td class='tok'>{html.escape(b)}{mark}</td><td class='num'>{p}</td></tr>"
        )
    if feed == "forced":
        head = "<th>fed (true)</th><th>its first choice</th><th>p(true next)</th>"
        text = (
            f"<p>Teacher forcing: the true words go in, all {len(fed)} positions in one pass; "
            f"the loss is the mean −log p(true next) = <b>{f.loss:.4f}</b> nats, what training "
            "minimised. A wrong first choice changes nothing downstream: the next position "
            "is fed the true word anyway.</p>"
        )
    else:
        head = "<th>fed (its own)</th><th>wrote</th><th>p</th>"
        text = (
            f"<p>Free running: each word it writes is fed back, one pass per word "
            f"({len(fed)} passes). A mistake stays in what it reads next.</p>"
        )
    table = (
        "<div style='overflow-x:auto;max-width:100%'><table class='run-table tr-table'>"
        f"<tr><th>pos.</th>{head}</tr>{''.join(body)}</table></div>"
    )
    return text + table


def cross_items(t: Translation, layer: int, head: int) -> list[str]:
    """Each word of the decode, its probability, the runner-up and, in this head, the digit it
    reads most (HTML list items)."""
    labels = digit_labels(t.digits)
    return [
        f"<li><span class='tok'>{html.escape(t.tokens[i])}</span> "
        f"(p = {t.probs[i]:.3f}; next best <span class='tok'>"
        f"{html.escape(t.runner_up[i])}</span> {t.runner_up_probs[i]:.3f}) reads "
        f"<span class='tok'>{html.escape(labels[int(np.argmax(t.cross_attn[layer, head, i]))])}"
        "</span></li>"
        for i in range(len(t.tokens))
    ]


def cross_header(t: Translation, step: int) -> str:
    return (
        f"<p>Step {min(step, len(t.tokens))} of {len(t.tokens)}, greedy: each step runs the "
        "decoder on what it has written and keeps its most likely word, which reads (in this "
        "head) mostly:</p>"
    )


def cross_html(t: Translation, step: int, layer: int, head: int) -> str:
    """The decode up to ``step`` words: what it wrote and, in this head, what each read."""
    k = min(step, len(t.tokens))
    items = "".join(cross_items(t, layer, head)[:k])
    return cross_header(t, k) + f"<ol class='tr-steps'>{items}</ol>"


# -- the heatmap -------------------------------------------------------------------------------
class Heatmap:
    """Rows × columns of probabilities as one image; labels on both axes; rows may be
    revealed a few at a time (the decode's steps) within a fixed frame."""

    def __init__(self, style: PlotStyle, title: str, name: str, xlabel: str, ylabel: str):
        c = style.classroom
        side = style.matrix if c else 420
        self.source = ColumnDataSource(
            data=dict(image=[np.zeros((1, 1), np.float32)], x=[-0.5], y=[-0.5], dw=[1], dh=[1]),
            name=f"{name}-image",
        )
        fig = styled_figure(
            style,
            side + style.colorbar,
            side,
            title,
            name=name,
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(0.5, -0.5),  # flipped: the first row at the top
        )
        fig.xaxis.axis_label = xlabel
        fig.yaxis.axis_label = ylabel
        fig.xaxis.major_label_orientation = np.pi / 2
        mapper = LinearColorMapper(palette=PROB_PALETTE, low=0, high=1, nan_color=style.masked)
        r = fig.image(
            image="image", x="x", y="y", dw="dw", dh="dh", source=self.source, color_mapper=mapper
        )
        fig.add_tools(HoverTool(renderers=[r], tooltips=[("probability", "@image{0.000}")]))
        colour_bar(fig, mapper, style)
        for axis in (*fig.xaxis, *fig.yaxis):
            axis.ticker = FixedTicker(ticks=[])
        self.figure = fig

    def draw(self, matrix, rows: list[str], cols: list[str], shown=None, title=None) -> None:
        """Show ``matrix`` (rows × cols), its first ``shown`` rows (all by default), in a
        frame of every row."""
        n_rows, n_cols = len(rows), len(cols)
        shown = n_rows if shown is None else min(shown, n_rows)
        image = np.asarray(matrix, dtype=np.float32)[:shown]
        fig = self.figure
        fig.x_range.update(start=-0.5, end=n_cols - 0.5)
        fig.y_range.update(start=n_rows - 0.5, end=-0.5)
        fig.xaxis.ticker = FixedTicker(ticks=list(range(n_cols)))
        fig.yaxis.ticker = FixedTicker(ticks=list(range(n_rows)))
        fig.xaxis.major_label_overrides = dict(enumerate(cols))
        fig.yaxis.major_label_overrides = dict(enumerate(rows))
        if title is not None:
            fig.title.text = title
        self.source.data = dict(image=[image], x=[-0.5], y=[-0.5], dw=[n_cols], dh=[shown])


TITLES = {
    "encoder": "Encoder self-attention",
    "decoder": "Decoder self-attention",
    "cross": "Cross-attention",
}


def title(lesson: str, layer: int, head: int) -> str:
    return f"{TITLES[lesson]}, L{layer} H{head}"


def view_data(lesson: str, t: Translation, f: Forced, sel) -> tuple[list, dict, str]:
    """What a lesson draws for translation ``t``: (the heatmap's args, its title, the text)."""
    cfg_layers, cfg_heads = t.enc_attn.shape[:2]
    layer = min(sel.tr_layer, cfg_layers - 1)
    head = min(sel.tr_head, cfg_heads - 1)
    labels = digit_labels(t.digits)
    if lesson == "encoder":
        args = (t.enc_attn[layer, head], labels, labels, None)
        text = encoder_html(t, layer, head)
    elif lesson == "decoder":
        fed, _, attn = decoder_rows(t, f, sel.tr_feed)
        args = (attn[layer, head], fed, fed, None)
        text = decoder_html(t, f, sel.tr_feed)
    else:
        step = sel.tr_step or ALL_STEPS
        args = (t.cross_attn[layer, head], list(t.tokens), labels, step)
        text = cross_html(t, step, layer, head)
    return list(args), title(lesson, layer, head), text


AXES = {
    "encoder": ("key digit", "query digit"),
    "decoder": ("key (fed earlier)", "query (fed)"),
    "cross": ("digit read (encoder)", "word written (decoder)"),
}


# -- the dashboard -----------------------------------------------------------------------------
class TranslatorLesson(LessonView):
    """One of the three lessons (``lesson``); the number box, layer and head are shared."""

    lesson: ClassVar[str] = "encoder"
    error = param.String(default="", doc="Why the typed number was refused.")

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self._runtime, problem = None, ""
        try:
            self._runtime = open_translator(s.engine)
        except EngineError as err:
            problem = str(err)
        self._problem = text_pane(
            NO_TRANSLATOR.format(error=html.escape(problem)), visible=bool(problem)
        )
        self.number_input = pn.widgets.TextInput(
            label="A number (0 to 999,999)",
            value=s.tr_number,
            width=300 if self.style.classroom else 220,
            css_classes=["tr-number"],
        )
        self.number_input.param.watch(self._typed, "value")
        self._error = text_pane("", "message", "error", "tr-error", visible=False)
        self._verdict = text_pane("", "explain", "tr-verdict-pane", sizing_mode="stretch_width")
        self._text = text_pane("", "explain", f"tr-{self.lesson}-text", sizing_mode="stretch_width")
        xlabel, ylabel = AXES[self.lesson]
        self._heat = Heatmap(self.style, TITLES[self.lesson], f"tr-{self.lesson}", xlabel, ylabel)
        n_layer = n_head = 1
        if self._runtime is not None:
            c = self._runtime.entry["config"]
            n_layer = c["n_dec_layer"] if self.lesson != "encoder" else c["n_enc_layer"]
            n_head = c["n_head"]
        controls = [
            self.number_input,
            labelled("Layer", choice_group(s, "tr_layer", {str(i): i for i in range(n_layer)})),
            labelled("Head", choice_group(s, "tr_head", {str(i): i for i in range(n_head)})),
        ]
        if self.lesson == "decoder":
            feeds = {v: k for k, v in FEEDS.items()}
            group = choice_group(s, "tr_feed", feeds, css_classes=["tr-feed"])
            controls.append(labelled("Fed with", group))
        if self.lesson == "cross":
            self._step = pn.widgets.IntSlider(
                label="Words written",
                start=1,
                end=ALL_STEPS,
                value=s.tr_step or ALL_STEPS,
                width=300 if self.style.classroom else 220,
                css_classes=["tr-step"],
            )
            two_way(self._step, s, "tr_step")
            controls.append(self._step)
        self._last: str = DEFAULT_NUMBER
        self._layout = pn.Column(
            self._problem,
            pn.FlexBox(*controls, sizing_mode="stretch_width"),
            self._error,
            self._verdict,
            pn.FlexBox(
                pn.pane.Bokeh(self._heat.figure, margin=(5, 5)),
                self._text,
                sizing_mode="stretch_width",
            ),
            margin=0,
            sizing_mode="stretch_width",
        )
        if self._runtime is not None:
            self._typed()
            if self.error:  # a link's bad number: its message, over the default's view
                self._draw()

    def _typed(self, _event=None) -> None:
        """Read the box: a valid number becomes the state's; a bad one gets its message and
        the last valid view stays."""
        try:
            digits = N.parse(self.number_input.value)
        except ValueError as err:
            self.error = str(err)
            return
        self.error = ""
        self._last = digits
        if self.state.tr_number != self.number_input.value:
            self.state.tr_number = self.number_input.value
        self._draw()

    @param.depends("state.tr_number", watch=True)
    def _number_from_state(self) -> None:
        if self.number_input.value != self.state.tr_number:
            self.number_input.value = self.state.tr_number  # a link or another lesson set it

    @param.depends("error", watch=True)
    def _show_error(self) -> None:
        self._error.object = f"<p>{html.escape(self.error)}</p>"
        self._error.visible = bool(self.error)

    @param.depends("state.tr_layer", "state.tr_head", "state.tr_step", "state.tr_feed", watch=True)
    @draws
    def _draw(self) -> None:
        if self._runtime is None:
            return
        t = translation(self._runtime, self._last)
        f = forced(self._runtime, self._last)
        args, heading, text = view_data(self.lesson, t, f, self.state)
        self._heat.draw(*args, title=heading)
        self._text.object = text
        self._verdict.object = verdict_html(t)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


class EncoderLesson(TranslatorLesson):
    lesson: ClassVar[str] = "encoder"


class DecoderLesson(TranslatorLesson):
    lesson: ClassVar[str] = "decoder"


class CrossLesson(TranslatorLesson):
    lesson: ClassVar[str] = "cross"


# -- the snapshot ------------------------------------------------------------------------------
def _matrices(attn: np.ndarray) -> list:
    """(layer, head, rows, cols) -> nested lists rounded to 4 decimals (the page's copy)."""
    return np.round(attn.astype(np.float64), 4).tolist()


def snapshot_data(lesson: str, t: Translation, f: Forced) -> dict:
    """Everything the page needs to draw ``lesson`` for one number at any layer, head, feed
    and step: matrices, labels and the texts (HTML fragments the page only joins)."""
    labels = digit_labels(t.digits)
    L, H = t.enc_attn.shape[:2] if lesson == "encoder" else t.cross_attn.shape[:2]
    out: dict = {"verdict": verdict_html(t), "cols": labels}
    if lesson == "encoder":
        out.update(rows=labels, mats=_matrices(t.enc_attn))
        out["texts"] = [[encoder_html(t, layer, head) for head in range(H)] for layer in range(L)]
    elif lesson == "decoder":
        out["feeds"] = []
        for feed in FEEDS:
            fed, _, attn = decoder_rows(t, f, feed)
            text = decoder_html(t, f, feed)
            out["feeds"].append({"rows": fed, "mats": _matrices(attn), "text": text})
    else:
        out.update(rows=list(t.tokens), mats=_matrices(t.cross_attn))
        out["items"] = [[cross_items(t, layer, head) for head in range(H)] for layer in range(L)]
        out["headers"] = [cross_header(t, k) for k in range(1, len(t.tokens) + 1)]
    return out


def _buttons(ctx: Context, n: int, active: int, name: str) -> RadioButtonGroup:
    return RadioButtonGroup(
        labels=[str(i) for i in range(n)],
        active=min(active, n - 1),
        name=name,
        stylesheets=[ctx.stylesheet],
    )


def _snapshot(ctx: Context, lesson: str):
    try:
        runtime = open_translator(ctx.engine)
    except EngineError as err:
        return column(div(ctx, NO_TRANSLATOR.format(error=html.escape(str(err)))))
    sel = ctx.selection
    refused = ""
    try:
        chosen = N.parse(sel.tr_number)
    except ValueError as err:
        chosen, refused = DEFAULT_NUMBER, f"{err} This page shows {DEFAULT_NUMBER} instead."
    held = [chosen, *(e for e in EXAMPLES if e != chosen)]
    c = runtime.entry["config"]
    n_layer = c["n_enc_layer"] if lesson == "encoder" else c["n_dec_layer"]
    layer0, head0 = min(sel.tr_layer, n_layer - 1), min(sel.tr_head, c["n_head"] - 1)
    heat = Heatmap(ctx.style, TITLES[lesson], f"tr-{lesson}", *AXES[lesson])
    t, f = translation(runtime, chosen), forced(runtime, chosen)
    pick = _Pick(layer0, head0, sel.tr_step, sel.tr_feed)
    args, heading, text0 = view_data(lesson, t, f, pick)
    heat.draw(*args, title=heading)
    data = [snapshot_data(lesson, translation(runtime, d), forced(runtime, d)) for d in held]
    number = Select(
        title="A number (this page holds these)",
        options=held,
        value=chosen,
        name=f"tr-{lesson}-number",
        width=260,
        stylesheets=[ctx.stylesheet],
    )
    widgets = {
        "number": number,
        "layer": _buttons(ctx, n_layer, layer0, f"tr-{lesson}-layer"),
        "head": _buttons(ctx, c["n_head"], head0, f"tr-{lesson}-head"),
    }
    controls = [
        number,
        div(ctx, "Layer", "control-label"),
        widgets["layer"],
        div(ctx, "Head", "control-label"),
        widgets["head"],
    ]
    if lesson == "decoder":
        widgets["feed"] = RadioButtonGroup(
            labels=list(FEEDS.values()),
            active=list(FEEDS).index(sel.tr_feed),
            name=f"tr-{lesson}-feed",
            stylesheets=[ctx.stylesheet],
        )
        controls += [div(ctx, "Fed with", "control-label"), widgets["feed"]]
    if lesson == "cross":
        widgets["step"] = Slider(
            start=1,
            end=ALL_STEPS,
            step=1,
            value=sel.tr_step or ALL_STEPS,
            title="Words written",
            name=f"tr-{lesson}-step",
            width=260,
            stylesheets=[ctx.stylesheet],
        )
        controls.append(widgets["step"])
    verdict = div(ctx, verdict_html(t), "explain", name=f"tr-{lesson}-verdict")
    text = div(ctx, text0, "explain", f"tr-{lesson}-text", name=f"tr-{lesson}-text")
    draw = callback(
        "translator",
        "draw()",
        data=data,
        titles=TITLES[lesson],
        verdict=verdict,
        text=text,
        fig=heat.figure,
        source=heat.source,
        **widgets,
    )
    for name, w in widgets.items():
        w.js_on_change("value" if name in ("number", "step") else "active", draw)
    message = [div(ctx, f"<p>{html.escape(refused)}</p>", "message", "error")] if refused else []
    return column(*message, *controls, verdict, heat.figure, text)


class _Pick:
    """A selection for :func:`view_data` (what the snapshot starts on)."""

    def __init__(self, layer: int, head: int, step: int, feed: str):
        self.tr_layer, self.tr_head, self.tr_step, self.tr_feed = layer, head, step, feed


def snapshot_encoder(ctx: Context):
    return _snapshot(ctx, "encoder")


def snapshot_decoder(ctx: Context):
    return _snapshot(ctx, "decoder")


def snapshot_cross(ctx: Context):
    return _snapshot(ctx, "cross")
