"""The temperature and sampling lesson: from the model's logits to the next token.

For the selected position: the next-token distribution as bars (the token the text actually
continues with highlighted), how temperature reshapes it (curves over T with a marker at the
current T), what top-k and top-p cut away (grey, hatched) and the renormalised rest, and a
seeded sampler that appends tokens to the text.

Thin by design: every number comes from :mod:`dashboard.lessons.sampling`. Temperature,
top-k and top-p only re-read ``state.forward.logits``; the model runs again only when a
sampled token changes the text.
"""

from __future__ import annotations

import html
import math
import re
from functools import lru_cache
from typing import ClassVar

import numpy as np
import panel as pn
import param
from bokeh.core.properties import value
from bokeh.layouts import column, row
from bokeh.models import (
    CDSView,
    ColumnDataSource,
    CustomJSTickFormatter,
    FixedTicker,
    GroupFilter,
    HoverTool,
    Legend,
    LegendItem,
    LogAxis,
    LogScale,
    RadioButtonGroup,
    Range1d,
    Slider,
    Span,
    TextInput,
)
from panel.custom import JSComponent

from dashboard.lessons import sampling as S
from dashboard.views.offline import Context, callback, div
from dashboard.views.plots import (
    PlotStyle,
    fast,
    next_token_title,
    style_axis,
    styled_figure,
    thinned_ticks,
)
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import css, labelled, text_pane, two_way
from models.bpe import Tokenizer, readable
from models.runtime import EngineError

SLIDER_MAX = 5.0
CURVE_TEMPERATURES = S.default_temperatures(SLIDER_MAX, 101)
CURVE_TOKENS = 5
LINE_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2")
LINE_COLORS_DARK = ("#6fa8dc", "#ffb000", "#7ee081", "#ff6b6b", "#d9a6ff")


@lru_cache(maxsize=8)
def _vocabulary(tokenizer: Tokenizer, size: int) -> tuple[str, ...]:
    """Readable text of every token id (the bars' labels), once per tokenizer."""
    out = []
    for i in range(size):
        try:
            out.append(readable(tokenizer.token_bytes(i)))
        except ValueError:
            out.append(f"<{i}>")
    return tuple(out)


NICE_SCALES = tuple(m * 10.0**e for e in range(-4, 0) for m in (1, 2, 5)) + (1.0,)


def nice_ceiling(x: float) -> float:
    """The smallest of 0.0001, 0.0002, 0.0005, …, 0.2, 0.5, 1 that is ≥ x (1 at most)."""
    return next((v for v in NICE_SCALES if v >= x), 1.0)


def _percent(p: float) -> str:
    """Short labels above the bars: whole percents, "<1%" below."""
    if p <= 0:
        return ""
    return f"{100 * p:.0f}%" if p >= 0.005 else "<1%"


def _prob(p: float) -> str:
    """A probability for the page: 4 decimals, or 2 significant digits when tiny."""
    return f"{p:.4f}" if p == 0 or p >= 1e-4 else f"{p:.1e}"


def _fmt_k(k: int | None) -> str:
    return "off" if k is None else str(k)


def _fmt_p(p: float) -> str:
    return f"{p:g}"


# The temperature slider's value as Python's f"{t:g}" writes it (the T box, the titles): its
# step is 0.05, but a typed T = 0.001 is shown as 0.001, not rounded to Bokeh's default "0".
G_FORMAT = """
const v = Number(tick);
if (!Number.isFinite(v) || v === 0) return String(v);
const e = Math.floor(Math.log10(Math.abs(Number(v.toPrecision(6)))));
if (e >= -4 && e < 6) return String(Number(v.toPrecision(6)));
const [m, x] = v.toExponential(5).split("e");
const n = Number(x);
return `${m.replace(/\\.?0+$/, "")}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
"""


def temperature_format() -> CustomJSTickFormatter:
    """A new formatter for a temperature slider's value (a Bokeh model lives in one page)."""
    return CustomJSTickFormatter(code=G_FORMAT)


def kept_color(style: PlotStyle) -> str:
    """The colour of a bar that top-k and top-p keep."""
    return "#6fa8dc" if style.classroom else "#4c78a8"


# -- the lesson's words, once: both homes fill the same templates ----------------------------------
# {name} placeholders; the dashboard fills them with fill() below, the snapshot's page with the
# fill() of js/sampling.js. A summary is SUMMARY with its fragments put in first ({note}: "",
# greedy or past; {continues}: end or next; {never}: "" or never), then the numbers.
SUMMARY = (
    "<p>Entropy <b class='num'>{entropy}</b> nats ({bits} bits, the attention lesson's "
    "unit) · effective number of choices "
    "e<sup>H</sup> = <b class='num'>{choices}</b>.{note}</p>"
    "<p>top-k {k} and top-p {p} keep <b class='num'>{n_kept}</b> of {V} tokens, which held "
    "<b class='num'>{kept_mass}%</b> of the probability before renormalising (grey, hatched: "
    "cut away).</p>{continues}"
    "<p class='hint'>Pale bar and line: after temperature; solid: what is sampled from. "
    "Changing T, "
    "top-k or top-p reuses the model's cached logits.</p>"
)
FRAGMENTS = {
    "": "",
    "greedy": " T = 0 is greedy: the top token gets it all.",
    "past": (
        " T = {T} is past the slider and the curves (they stop at {max}; the markers wait at "
        "the edge)."
    ),
    "end": "<p>This is the end of the text: press <b>Sample next token</b> to choose one.</p>",
    "end_offline": (
        "<p>This is the end of the text: the live dashboard samples the next token (see "
        "<b>Generate</b>).</p>"
    ),
    "next": (
        "<p>The text continues with <b class='tok'>{token}</b> ({colour}): rank "
        "<b class='num'>{rank}</b>, probability <b class='num'>{prob}</b> with these "
        "settings{never}; <b class='num'>{tempered}</b> after temperature alone.</p>"
    ),
    "never": " (cut away: these settings can never pick it)",
}
PRESET_TEXT = "<p><b>{name}</b>: {explain}</p>"
CUSTOM_TEXT = (
    "<p>Custom: T = {T}, top-k {k}, top-p {p}. Pick a preset to see a common setting explained.</p>"
)
HOW = (
    "<p class='hint'>Temperature divides the logits before the softmax (0: always the top "
    "token). <b>top-k</b> keeps the k most likely tokens (and any tied with the k-th); "
    "<b>top-p</b> keeps the most likely "
    "tokens until their probability adds up to p. They apply in this order, temperature → "
    "top-k → top-p, as in Hugging Face transformers; what is left is renormalised to sum to "
    "1.</p>"
)
GENERATE_HINT = (
    "<p class='hint'>Samples the token after the <b>end</b> of the text with the settings "
    "above, appends it and runs the model again. Step <i>i</i> draws with seed (seed, "
    "<i>i</i>): the same seed, text and settings give the same tokens.</p>"
)
GENERATE_OFFLINE = (
    "<h3>Generate</h3><p class='hint'>Sampling a token and appending it to the text runs the "
    "model again, which this page cannot do: generation needs the live dashboard. Run "
    "<code>make serve</code> and open this lesson there.</p>"
)
# A typed value that is refused: why, and the value the plots still use (the box keeps the
# text, to be corrected).
STILL_USING = "{error}; still using {name} = {value}."
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def fill(template: str, values: dict) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced (others left as they are);
    one pass, so text put in is never read for placeholders again."""
    return PLACEHOLDER.sub(lambda m: str(values.get(m[1], m[0])), template)


def summary_html(
    d: S.Distribution, vocab, chosen: int | None, live: bool = True, colour: str = "orange"
) -> str:
    """The text under the bars for distribution ``d``; ``chosen``: the token the text
    continues with (None at its end). ``live``: the dashboard (else the snapshot's wording);
    ``colour``: the name of the colour its bar is drawn in (the style's accent)."""
    note = "greedy" if d.temperature == 0 else "past" if d.temperature > SLIDER_MAX else ""
    if chosen is None:
        continues, never = ("end" if live else "end_offline"), ""
    else:
        continues, never = "next", "" if d.kept[chosen] else "never"
    values = dict(
        entropy=f"{d.entropy:.3f}",
        bits=f"{d.entropy / math.log(2):.3f}",
        choices=f"{d.perplexity:.2f}",
        T=f"{d.temperature:g}",
        max=f"{SLIDER_MAX:g}",
        k=_fmt_k(d.top_k),
        p=_fmt_p(d.top_p),
        n_kept=d.n_kept,
        V=d.final.size,
        kept_mass=f"{100 * d.tempered[d.kept].sum():.1f}",
    )
    if chosen is not None:
        values.update(
            token=html.escape(vocab[chosen]),
            colour=colour,
            rank=int(d.rank[chosen]),
            prob=_prob(d.final[chosen]),
            tempered=_prob(d.tempered[chosen]),
        )
    text = fill(SUMMARY, {"note": FRAGMENTS[note], "continues": FRAGMENTS[continues]})
    return fill(fill(text, {"never": FRAGMENTS[never]}), values)


def matching_preset(temperature: float, k: int | None, p: float) -> str:
    """The preset with exactly these settings, else "Custom"."""
    for name, preset in S.PRESETS.items():
        if (preset.temperature, preset.top_k, preset.top_p) == (temperature, k, p):
            return name
    return "Custom"


def preset_html(temperature: float, k: int | None, p: float) -> str:
    """The text beside the presets: the matching preset explained, or the custom settings."""
    name = matching_preset(temperature, k, p)
    if name in S.PRESETS:
        return fill(PRESET_TEXT, dict(name=name, explain=html.escape(S.PRESETS[name].explain)))
    return fill(CUSTOM_TEXT, dict(T=f"{temperature:g}", k=_fmt_k(k), p=_fmt_p(p)))


class Words(JSComponent):
    """A text that follows the settings (the summary under the bars, the preset's words):
    ``object``, our HTML with any user text escaped, written into the page in place.

    In place of an HTML pane: Panel re-sends an HTML pane's style sheets with its first new
    text, and the page then styles and lays itself out again (a fresh page's first slider move
    took 140-400 ms, the next ones 40); here a new text is one changed parameter."""

    object = param.String(default="", doc="The HTML shown (ours; user text escaped).")

    _esm = """
    export function render({ model }) {
      const box = document.createElement("div");
      const show = () => { box.innerHTML = model.object; };
      show();
      model.on("object", show);
      return box;
    }
    """

    def __init__(self, *classes: str, **params):
        params.setdefault("margin", (5, 10))  # as text_pane's
        super().__init__(css_classes=list(classes), stylesheets=[css()], **params)


class NextTokenBars:
    """The top-N next tokens: a pale bar at the probability after temperature, a solid bar
    at the renormalised probability after top-k and top-p; cut tokens grey and hatched."""

    def __init__(self, style: PlotStyle):
        self.style = style
        width, height = style.bars
        self.source = ColumnDataSource(
            data=dict(
                x=[],
                label=[],
                tid=[],
                rank=[],
                tempered=[],
                final=[],
                color=[],
                hatch=[],
                kept=[],
                chosen=[],
                tick=[],
                top=[],
                pct=[],
            ),
            name="sampling-bars",
        )
        fig = styled_figure(
            style,
            width,
            height,
            "",
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(0, 1.05),
            name="sampling-bars-figure",
        )
        fig.yaxis.axis_label = "probability"
        fig.xaxis.major_label_orientation = np.pi / 3
        self.ticker = FixedTicker(ticks=[])
        fig.xaxis.ticker = self.ticker
        fig.ygrid.visible = True
        fig.ygrid.grid_line_color = style.muted
        fig.ygrid.grid_line_alpha = 0.3
        ghost = fig.vbar(
            x="x",
            top="tempered",
            width=0.8,
            source=self.source,
            fill_color=style.masked,
            fill_alpha=0.6,
            line_color=style.muted,
        )
        # the hatching of the cut bars: one pattern for the glyph, drawn where the "hatch"
        # column says "/" (a pattern per bar, read from that column, made Bokeh draw a new
        # pattern canvas for every bar at every redraw: ~4 ms of a slider move's 40 in the page)
        fig.vbar(
            x="x",
            top="tempered",
            width=0.8,
            source=self.source,
            view=CDSView(filter=GroupFilter(column_name="hatch", group="/")),
            fill_alpha=0,
            line_color=None,
            hatch_pattern="/",
            hatch_color=style.muted,
            hatch_alpha=0.8,
            name="sampling-cut-hatch",
        )
        solid = fig.vbar(
            x="x", top="final", width=0.55, color="color", source=self.source, line_color=None
        )
        # the probability after temperature as a line across the bar: seen also where the
        # pale bar and the solid one have the same height (nothing was cut)
        fig.rect(
            x="x",
            y="tempered",
            width=0.8,
            height=4 if style.classroom else 2,
            height_units="screen",
            source=self.source,
            fill_color=style.text,
            line_color=None,
            name="sampling-tempered-mark",
        )
        fig.text(
            x="x",
            y="top",
            text="pct",
            source=self.source,
            text_align="center",
            text_baseline="bottom",
            text_font_size="17px" if style.classroom else "10px",
            text_color=style.text,
            y_offset=-2,
        )
        self.chosen = ColumnDataSource(data=dict(x=[], y=[]), name="sampling-chosen")
        fig.scatter(
            "x",
            "y",
            source=self.chosen,
            marker="triangle",
            size=22 if style.classroom else 14,
            fill_color=style.accent,
            line_color=style.text,
        )
        fig.add_tools(
            HoverTool(
                renderers=[ghost, solid],
                tooltips=[
                    ("token", "@label"),
                    ("id", "@tid"),
                    ("rank", "@rank"),
                    ("after temperature", "@tempered{0.0000}"),
                    ("after top-k/top-p", "@final{0.0000}"),
                ],
            )
        )
        self.figure = fig

    @fast
    def update(self, rows: dict, title: str) -> None:
        n = len(rows["x"])
        heights = [max(a, b) for a, b in zip(rows["tempered"], rows["final"], strict=True)]
        rows = dict(
            rows,
            top=heights,
            pct=[_percent(p) for p in rows["final"]],
        )
        # a "nice" scale that fits the tallest bar, so a flat distribution stays readable;
        # it moves in steps (1, 0.5, 0.2, 0.1, ...) rather than with every slider tick
        # (15% headroom above it for the percentages)
        self.figure.y_range.update(start=0, end=1.15 * nice_ceiling(max(heights, default=1)))
        ticks = thinned_ticks(n, self.style.bars[0] - 80, self.style.px_per_label)
        # update the existing ticker: a new model created inside a browser event's callback
        # fails with "_pending_writes should be non-None" (Bokeh's document lock)
        self.ticker.ticks = ticks
        self.figure.xaxis.major_label_overrides = {i: rows["tick"][i] for i in ticks}
        chosen = [x for x, c in zip(rows["x"], rows["chosen"], strict=True) if c]
        if list(self.chosen.data["x"]) != chosen:  # the same marker: nothing to send
            self.chosen.data = dict(x=chosen, y=[0.0] * len(chosen))
        self.figure.x_range.update(start=-0.5, end=n - 0.5)
        self.figure.title.text = title
        self.source.data = rows


class TemperatureCurves:
    """Probabilities of the top tokens over temperature, and the entropy with the effective
    number of choices on a second (log) axis that reads the same curve: log e^H = H."""

    def __init__(self, style: PlotStyle):
        self.style = style
        width, height = style.bars
        colors = LINE_COLORS_DARK if style.classroom else LINE_COLORS
        self.lines = [
            ColumnDataSource(data=dict(x=[], y=[]), name=f"sampling-curve-{i}")
            for i in range(CURVE_TOKENS)
        ]
        self.marker = ColumnDataSource(data=dict(x=[], y=[], color=[]), name="sampling-marker")
        self.h_line = ColumnDataSource(data=dict(x=[], y=[]), name="sampling-entropy")
        self.h_plain = ColumnDataSource(data=dict(x=[], y=[]), name="sampling-entropy-plain")
        self.h_marker = ColumnDataSource(data=dict(x=[], y=[]), name="sampling-entropy-marker")
        lw = 4 if style.classroom else 2
        size = 16 if style.classroom else 9

        p = styled_figure(
            style,
            width,
            height,
            "Top tokens' probability vs T",
            x_range=Range1d(0, SLIDER_MAX),
            y_range=Range1d(0, 1.02),
            name="sampling-curves",
        )
        p.xaxis.axis_label = "temperature T"
        p.yaxis.axis_label = "probability"
        renderers = [
            p.line("x", "y", source=src, line_color=c, line_width=lw)
            for src, c in zip(self.lines, colors, strict=True)
        ]
        self.legend = Legend(
            items=[LegendItem(label=value(""), renderers=[r]) for r in renderers],
            label_text_font_size=style.tick,
            label_text_color=style.text,
            background_fill_color=style.background,
            background_fill_alpha=0.7,
            border_line_color=None,
        )
        p.add_layout(self.legend, "right")
        p.scatter(
            "x",
            "y",
            source=self.marker,
            size=size,
            fill_color="color",
            line_color=style.text,
            line_width=2,
        )
        self.span = Span(
            location=1.0,
            dimension="height",
            line_color=style.accent,
            line_width=lw,
            line_dash="dashed",
        )
        p.add_layout(self.span)

        h = styled_figure(
            style,
            width,
            height,
            "Entropy and effective choices vs T",
            x_range=p.x_range,
            y_range=Range1d(0, 1),
            name="sampling-entropy-figure",
        )
        h.xaxis.axis_label = "temperature T"
        h.yaxis.axis_label = "entropy H (nats)"
        h.extra_y_ranges = {"choices": Range1d(1, np.e)}
        h.extra_y_scales = {"choices": LogScale()}
        right = LogAxis(y_range_name="choices", axis_label="choices e^H")
        style_axis(right, style)
        h.add_layout(right, "right")
        plain = h.line(
            "x", "y", source=self.h_plain, line_color=style.muted, line_width=lw, line_dash="dotted"
        )
        cut = h.line("x", "y", source=self.h_line, line_color=colors[0], line_width=lw)
        # the dotted curve is drawn only while top-k or top-p cut something
        self.h_legend = Legend(
            items=[
                LegendItem(label=value("sampled from"), renderers=[cut]),
                LegendItem(label=value("T alone (no cuts)"), renderers=[plain], visible=False),
            ],
            location="top_left",
            label_text_font_size=style.tick,
            label_text_color=style.text,
            background_fill_color=style.background,
            background_fill_alpha=0.7,
            border_line_color=None,
        )
        h.add_layout(self.h_legend)
        h.scatter(
            "x",
            "y",
            source=self.h_marker,
            size=size,
            fill_color=style.accent,
            line_color=style.text,
            line_width=2,
        )
        self.h_span = Span(
            location=1.0,
            dimension="height",
            line_color=style.accent,
            line_width=lw,
            line_dash="dashed",
        )
        h.add_layout(self.h_span)
        self.figure, self.entropy_figure = p, h

    @fast
    def update(self, curves: S.Curves, labels: list[str], plain: S.Curves | None) -> None:
        x = curves.temperatures.tolist()
        for i, src in enumerate(self.lines):
            if i < curves.probs.shape[1]:
                src.data = dict(x=x, y=curves.probs[:, i].tolist())
                self.legend.items[i].label = value(labels[i])
                self.legend.items[i].visible = True
            else:
                src.data = dict(x=[], y=[])
                self.legend.items[i].visible = False
        self.h_line.data = dict(x=x, y=curves.entropy.tolist())
        self.h_plain.data = (
            dict(x=x, y=plain.entropy.tolist()) if plain is not None else dict(x=[], y=[])
        )
        self.h_legend.items[1].visible = plain is not None
        top = max(float(curves.entropy.max()), 0.0)
        if plain is not None:
            top = max(top, float(plain.entropy.max()))
        top = max(top * 1.08, 0.5)
        self.entropy_figure.y_range.update(start=0, end=top)
        self.entropy_figure.extra_y_ranges["choices"].update(start=1.0, end=float(np.exp(top)))

    def mark(self, temperature: float, probs: list[float], h: float) -> None:
        colors = LINE_COLORS_DARK if self.style.classroom else LINE_COLORS
        shown = min(temperature, SLIDER_MAX)
        self.span.location = self.h_span.location = shown
        self.marker.data = dict(
            x=[shown] * len(probs), y=list(probs), color=list(colors[: len(probs)])
        )
        self.h_marker.data = dict(x=[shown], y=[h])


ABOUT = (
    "<b>What you see:</b> the model's distribution over the next token at the selected "
    "position, and how temperature, top-k and top-p reshape it before one token is drawn; "
    "curves of the top tokens' probabilities and of the entropy as T changes. "
    "<b>Try:</b> drag T towards 0 (greedy) and past 1, set top-k to 1, pick a preset, then "
    "sample a few tokens with a fixed seed."
)


class SamplingOptions(Options):
    """The sampling lesson's options."""

    url: ClassVar[dict[str, str]] = {"temperature": "temperature", "top_k": "topk", "top_p": "topp"}

    temperature = param.Number(default=1.0, bounds=(0.0, 10.0), doc="Sampling temperature.")
    top_k = param.Integer(
        default=None, allow_None=True, bounds=(1, None), doc="Keep the k likeliest (None: off)."
    )
    top_p = param.Number(
        default=1.0, bounds=(0.0, 1.0), inclusive_bounds=(False, True), doc="Nucleus (1: off)."
    )


class SamplingLesson(LessonView):
    """Temperature, top-k, top-p and sampling for the selected position's next token."""

    top_k = param.Integer(default=None, allow_None=True, bounds=(1, None), doc="None: off.")
    top_p = param.Number(default=1.0, bounds=(0.0, 1.0), inclusive_bounds=(False, True))
    top_n = param.Integer(default=12, bounds=(2, 40), doc="Bars shown.")
    seed = param.Integer(default=0, doc="Seed of the sampler.")
    n_generate = param.Integer(default=5, bounds=(1, 50), doc="Tokens per 'generate'.")
    steps = param.List(default=[], doc="The tokens sampled so far (dicts).")
    errors = param.Dict(default={}, doc="Bad input, per control.")

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        self._generating = False
        self._syncing = False
        self._applying = False
        self.bars = NextTokenBars(style)
        self.curves = TemperatureCurves(style)
        width = 300 if style.classroom else 220
        self.slider = pn.widgets.FloatSlider(
            css_classes=["temperature-slider"],
            label="Temperature T",
            start=0.0,
            end=SLIDER_MAX,
            step=0.05,
            value=min(s.temperature, SLIDER_MAX),
            width=width + 80,
            tooltips=False,  # the label shows the value; a tooltip would cover it
            format=temperature_format(),
        )
        self.t_input = pn.widgets.TextInput(
            css_classes=["temperature-input"],
            label="…or type T",
            value=f"{s.temperature:g}",
            width=width // 2 + 20,
        )
        self.k_input = pn.widgets.TextInput(
            css_classes=["top-k-input"],
            label="top-k",
            value="",
            placeholder="off (blank)",
            width=width // 2 + 40,
        )
        self.p_input = pn.widgets.TextInput(
            css_classes=["top-p-input"],
            label="top-p",
            value="1",
            placeholder="1 = off",
            width=width // 2 + 40,
        )
        self.presets = pn.widgets.RadioButtonGroup(
            options=list(S.PRESETS) + ["Custom"],
            value=self._matching_preset(),
            color="primary",
            variant="outline",
        )
        self.seed_input = pn.widgets.IntInput(
            css_classes=["seed-input"], label="Seed", value=self.seed, width=width // 2
        )
        self.n_input = pn.widgets.IntInput(
            css_classes=["n-input"],
            label="N tokens",
            value=self.n_generate,
            start=1,
            end=50,
            width=width // 2,
        )
        self.sample_button = pn.widgets.Button(
            label="Sample next token", color="primary", css_classes=["sample-next"]
        )
        self.generate_button = pn.widgets.Button(
            label="Generate N tokens",
            color="primary",
            variant="outline",
            css_classes=["generate-n"],
        )
        self.clear_button = pn.widgets.Button(label="Clear the list", color="light")
        self.message = text_pane("", "message", "error", visible=False)
        self.summary = Words("explain", "sampling-summary")
        self.preset_text = Words("explain", "preset-explain", width=700 if style.classroom else 480)
        self.step_table = text_pane("", "explain", "sampling-steps")

        self.slider.param.watch(self._from_slider, "value")
        self.t_input.param.watch(self._from_t_input, "value")
        self.k_input.param.watch(self._from_k_input, "value")
        self.p_input.param.watch(self._from_p_input, "value")
        self.presets.param.watch(self._from_preset, "value")
        self.seed_input.param.watch(lambda e: setattr(self, "seed", int(e.new or 0)), "value")
        self.n_input.param.watch(self._from_n_input, "value")
        self.sample_button.on_click(lambda _e: self.sample_next())
        self.generate_button.on_click(lambda _e: self.generate())
        self.clear_button.on_click(lambda _e: setattr(self, "steps", []))
        # top-k and top-p live in the shared state (and so in the URL); the view keeps its own
        # copies, which its inputs, presets and plots already use
        self.param.update(top_k=s.top_k, top_p=s.top_p)
        two_way(self, s, "top_k", prop="top_k")
        two_way(self, s, "top_p", prop="top_p")
        s.param.watch(self._temperature_to_widgets, "temperature")
        s.param.watch(self._text_edited, "text")

        # the explanation sits under the bars, so the controls stay short and the bars fit a
        # 1920x1080 projector in classroom mode
        # Rows wrap (FlexBox) where the window is too narrow; on a phone nothing is wider than
        # the page (PHONE_CSS in dashboard/app.py) and the figures scale down to its width.
        how = text_pane(HOW, "caption", width=style.bars[0])
        controls = pn.FlexBox(
            pn.Column(
                self.slider,
                pn.Row(self.t_input, self.k_input, self.p_input, margin=0),
                margin=0,
            ),
            labelled("Presets", pn.Column(self.presets, self.preset_text, margin=0)),
            margin=0,
            css_classes=["controls"],
            sizing_mode="stretch_width",
        )
        generate = pn.Column(
            text_pane("<h3>Generate</h3>", "detail", margin=(0, 10)),
            pn.FlexBox(self.seed_input, self.n_input, margin=0),
            pn.FlexBox(self.sample_button, self.generate_button, self.clear_button, margin=0),
            text_pane(GENERATE_HINT, "caption", sizing_mode="stretch_width"),
            self.step_table,
            width=600 if style.classroom else 480,
            margin=0,
            css_classes=["detail"],
        )
        self._layout = pn.Column(
            controls,
            self.message,
            pn.FlexBox(
                pn.Column(
                    pn.pane.Bokeh(self.bars.figure, margin=(5, 5)),
                    self.summary,
                    how,
                    width=style.bars[0] + 10,
                    margin=0,
                ),
                # beside the bars: Generate on a projector's screen, the curves below them
                generate,
                pn.FlexBox(
                    pn.pane.Bokeh(self.curves.figure, margin=(5, 5)),
                    pn.pane.Bokeh(self.curves.entropy_figure, margin=(5, 5)),
                    margin=0,
                ),
                gap="10px",
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
            margin=0,
        )
        self._draw_curves()
        self._draw()
        self._show_steps()
        self._show_preset()

    # -- inputs -----------------------------------------------------------------------------------
    def _set_error(self, field: str, text: str) -> None:
        errors = dict(self.errors)
        if text:
            errors[field] = text
        else:
            errors.pop(field, None)
        self.errors = errors

    @param.depends("errors", watch=True)
    def _show_errors(self) -> None:
        self.message.object = "<br>".join(html.escape(e) for e in self.errors.values())
        self.message.visible = bool(self.errors)

    def _from_slider(self, event) -> None:
        if self._syncing:
            return
        self._set_error("temperature", "")
        self.state.temperature = float(event.new)

    def _typed(self, field: str, parse, text, name: str, in_use: str, apply) -> None:
        """Typed input: ``apply(parse(text))``, or show the parse error with the value still
        in use (``name`` = ``in_use``) and change nothing."""
        if self._syncing:
            return
        try:
            value = parse(text)
        except ValueError as err:
            self._set_error(field, fill(STILL_USING, dict(error=err, name=name, value=in_use)))
            return
        self._set_error(field, "")
        apply(value)

    def _from_t_input(self, event) -> None:
        self._typed(
            "temperature",
            lambda text: S.parse_temperature(text, self.state.param.temperature.bounds[1]),
            event.new,
            "T",
            f"{self.state.temperature:g}",
            lambda t: setattr(self.state, "temperature", t),
        )

    def _temperature_to_widgets(self, event) -> None:
        self._syncing = True
        try:
            self.slider.value = min(float(event.new), SLIDER_MAX)
            if _parsed(S.parse_temperature, self.t_input.value) != event.new:
                self.t_input.value = f"{event.new:g}"
                self._set_error("temperature", "")
        finally:
            self._syncing = False

    def _from_k_input(self, event) -> None:
        self._typed(
            "top_k",
            S.parse_top_k,
            event.new,
            "top-k",
            _fmt_k(self.top_k),
            lambda k: setattr(self, "top_k", k),
        )

    def _from_p_input(self, event) -> None:
        self._typed(
            "top_p",
            S.parse_top_p,
            event.new,
            "top-p",
            _fmt_p(self.top_p),
            lambda p: setattr(self, "top_p", p),
        )

    def _from_n_input(self, event) -> None:
        if event.new is None or not 1 <= int(event.new) <= 50:
            self._set_error("n", "N must be a whole number from 1 to 50.")
            return
        self._set_error("n", "")
        self.n_generate = int(event.new)

    @param.depends("top_k", "top_p", watch=True)
    def _filters_to_widgets(self) -> None:
        """Programmatic changes (presets, tests) show up in the boxes, replacing bad input."""
        self._syncing = True
        try:
            if _parsed(S.parse_top_k, self.k_input.value) != self.top_k:
                self.k_input.value = "" if self.top_k is None else str(self.top_k)
                self._set_error("top_k", "")
            if _parsed(S.parse_top_p, self.p_input.value) != self.top_p:
                self.p_input.value = _fmt_p(self.top_p)
                self._set_error("top_p", "")
        finally:
            self._syncing = False

    def apply_preset(self, name: str) -> None:
        """Set temperature, top-k and top-p to a preset's values (bad input forgotten)."""
        preset = S.PRESETS[name]
        self.errors = {}
        # one update of the preset buttons at the end: an intermediate "Custom" sent while
        # the browser's own click is processed would stay on screen
        self._applying = True
        try:
            self.param.update(top_k=preset.top_k, top_p=preset.top_p)
            self.state.temperature = preset.temperature
        finally:
            self._applying = False
        self._show_preset()

    def _from_preset(self, event) -> None:
        if self._syncing or event.new not in S.PRESETS:
            return
        self.apply_preset(event.new)

    def _matching_preset(self) -> str:
        return matching_preset(self.state.temperature, self.top_k, self.top_p)

    @param.depends("state.temperature", "top_k", "top_p", watch=True)
    def _show_preset(self) -> None:
        if self._applying:
            return
        name = self._matching_preset()
        self._syncing = True
        try:
            self.presets.value = name
        finally:
            self._syncing = False
        self.preset_text.object = preset_html(self.state.temperature, self.top_k, self.top_p)

    # -- drawing ----------------------------------------------------------------------------------
    def _labels(self) -> tuple[str, ...]:
        s = self.state
        logits = s.forward.logits
        return _vocabulary(s.engine.tokenizer(s.model), logits.shape[-1])

    def _row(self) -> np.ndarray:
        s = self.state
        q = min(s.query, s.forward.logits.shape[0] - 1)
        return s.forward.logits[q]

    def chosen(self) -> int | None:
        """The token that follows the selected position in the text (None at the end)."""
        s = self.state
        return s.ids[s.query + 1] if s.query + 1 < len(s.ids) else None

    def distribution(self) -> S.Distribution:
        return S.distribution(self._row(), self.state.temperature, self.top_k, self.top_p)

    @param.depends(
        "state.forward", "state.query", "state.temperature", "top_k", "top_p", "top_n", watch=True
    )
    @draws
    def _draw(self) -> None:
        s = self.state
        if s.forward is None:
            return
        d = self.distribution()
        vocab = self._labels()
        chosen = self.chosen()
        ids = list(d.order[: self.top_n])
        if chosen is not None and chosen not in ids:
            ids.append(int(chosen))
        kept = kept_color(self.style)
        rows = dict(
            x=list(range(len(ids))),
            label=[vocab[i] for i in ids],
            tick=[vocab[i] if d.rank[i] <= self.top_n else f"{vocab[i]} #{d.rank[i]}" for i in ids],
            tid=[int(i) for i in ids],
            rank=[int(d.rank[i]) for i in ids],
            tempered=[float(d.tempered[i]) for i in ids],
            final=[float(d.final[i]) for i in ids],
            color=[
                self.style.accent if i == chosen else (kept if d.kept[i] else self.style.masked)
                for i in ids
            ],
            hatch=[" " if d.kept[i] else "/" for i in ids],
            kept=[bool(d.kept[i]) for i in ids],
            chosen=[bool(i == chosen) for i in ids],
        )
        q = min(s.query, len(s.tokens) - 1)
        self.bars.update(rows, next_token_title(s.labels[q], self.style, f"{s.temperature:g}"))
        self._summary(d, vocab, chosen)
        # the curves' tokens are d.order[:5] too (whichever of _draw/_draw_curves runs first)
        probs = [float(d.final[i]) for i in d.order[:CURVE_TOKENS]]
        self.curves.mark(s.temperature, probs, d.entropy)

    @param.depends("state.forward", "state.query", "top_k", "top_p", watch=True)
    @draws
    def _draw_curves(self) -> None:
        s = self.state
        if s.forward is None:
            return
        row = self._row()
        c = S.temperature_curves(row, CURVE_TEMPERATURES, CURVE_TOKENS, self.top_k, self.top_p)
        plain = None
        if self.top_k is not None or self.top_p < 1.0:
            plain = S.temperature_curves(row, CURVE_TEMPERATURES, 1)
        vocab = self._labels()
        self.curves.update(c, [vocab[i] for i in c.ids], plain)

    def _summary(self, d: S.Distribution, vocab, chosen: int | None) -> None:
        self.summary.object = summary_html(d, vocab, chosen, colour=self.style.accent_name)

    # -- generation -------------------------------------------------------------------------------
    def _text_edited(self, _event) -> None:
        if not self._generating and self.steps:
            self.steps = []  # a list of steps only describes the text it produced

    def sample_next(self) -> dict | None:
        """Sample one token after the end of the text, append it, re-run the model. Returns
        the step, or None (with a message) when there is nothing to sample from."""
        steps = self.generate(1)
        return steps[0] if steps else None

    def generate(self, n: int | None = None) -> list[dict]:
        """Sample ``n`` (default: the N box) tokens one after another, as ``n`` clicks of
        "Sample next token" would, then show the text once. After the first token the model
        reads only the newest one, through the KV cache (``Engine.next_logits``); a step
        whose text re-tokenises differently reads the whole text again."""
        s = self.state
        n = self.n_generate if n is None else n
        if s.forward is None:
            self._set_error("generate", "Type some text first.")
            return []
        block = int(s.config.get("block_size", 0))
        tokenizer = s.engine.tokenizer(s.model)
        ids, text, records = list(s.ids), s.text, []
        n_rows = s.forward.logits.shape[0]  # fewer than the ids when the reading was cut
        self._set_error("generate", "")
        for _ in range(n):
            if full := S.context_full(len(ids), n_rows, block):
                self._set_error("generate", full)
                break
            try:  # the first token's distribution is the one on screen
                row = s.engine.next_logits(s.model, ids) if records else s.forward.logits[-1]
            except EngineError as err:
                self._set_error("generate", str(err))
                break
            index = len(self.steps) + len(records)
            g = S.next_token(
                row[None], 1, s.temperature, self.top_k, self.top_p, self.seed, index, tokenizer
            )
            text += g.piece
            after = tokenizer.encode(text)
            records.append(S.step_record(g, S.retokenised(ids, g.token_id, after)))
            before, ids, n_rows = ids, after, len(after)
        if not records:
            return []
        self._generating = True
        try:
            s.text = text
        finally:
            self._generating = False
        self.steps = [*self.steps, *records]
        if s.status == "ok":
            s.query = min(len(before) - 1, len(s.ids) - 1)
        return records

    @param.depends("steps", watch=True)
    def _show_steps(self) -> None:
        if not self.steps:
            self.step_table.object = "<p class='hint'>No tokens sampled yet.</p>"
            return
        rows = "".join(
            f"<tr><td class='num'>{r['step']}</td>"
            f"<td class='tok'>{html.escape(r['token'])}{'*' if r['retokenised'] else ''}</td>"
            f"<td class='num'>{_prob(r['prob'])}</td><td class='num'>{r['rank']}</td>"
            f"<td class='num'>{r['temperature']:g} / {_fmt_k(r['top_k'])} / "
            f"{_fmt_p(r['top_p'])}</td></tr>"
            for r in self.steps
        )
        note = ""
        if any(r["retokenised"] for r in self.steps):
            note = (
                "<p class='hint'>* The tokenizer reads the longer text with different tokens "
                "than the ones sampled (BPE merges across the join).</p>"
            )
        self.step_table.object = (
            "<table class='top sampling-steps'><tr><th>#</th><th>token</th><th>p</th>"
            "<th>rank</th><th>T / k / p</th></tr>"
            f"{rows}</table>{note}"
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


_BAD = object()


def _parsed(parse, text):
    """``parse(text)``, or a marker that equals nothing when the text is not valid."""
    try:
        return parse(text)
    except ValueError:
        return _BAD


# -- the snapshot ---------------------------------------------------------------------------------
# The same panels, built by the same classes, redrawn in the page from the embedded logits
# (float32, positions × vocabulary) by js/sampling.js with the kernel of js/softmax.js. Only
# generation, which runs the model again, stays in the live dashboard: a note says so.
JS_FILES = ("softmax", "sampling")  # the kernel, then the lesson's page code


def _logits(ctx: Context) -> ColumnDataSource:
    """The model's logits, flattened (position, token), float32: embedded once per page."""
    if "logits" not in ctx.shared:
        flat = np.ascontiguousarray(ctx.forward.logits, dtype=np.float32).ravel()
        ctx.shared["logits"] = ColumnDataSource(data=dict(logits=flat), name="sampling-logits")
    return ctx.shared["logits"]


def snapshot(ctx: Context):
    """The lesson in the snapshot: the dashboard's controls, bars, curves, texts and presets."""
    s, style = ctx.selection, ctx.style
    n_pos, v = ctx.forward.logits.shape
    width = 420 if style.classroom else 300
    position = Slider(
        title="Position (predicts the token after it)",
        start=0,
        end=max(n_pos - 1, 1),
        step=1,
        value=ctx.query,
        disabled=n_pos == 1,
        width=width + 120,
        name="sampling-position",
        stylesheets=[ctx.stylesheet],
    )
    temp = Slider(
        title="Temperature T",
        start=0.0,
        end=SLIDER_MAX,
        step=0.05,
        value=min(max(float(s.temperature), 0.0), SLIDER_MAX),
        format=temperature_format(),
        width=width + 120,
        name="temperature-slider",
        stylesheets=[ctx.stylesheet],
    )
    k_input = TextInput(
        title="top-k (blank: off)",
        value="" if s.top_k is None else str(s.top_k),
        width=width // 2 + 40,
        name="top-k-input",
        stylesheets=[ctx.stylesheet],
    )
    p_input = TextInput(
        title="top-p (1: off)",
        value=_fmt_p(s.top_p),
        width=width // 2 + 40,
        name="top-p-input",
        stylesheets=[ctx.stylesheet],
    )
    names = [*S.PRESETS, "Custom"]
    presets = RadioButtonGroup(
        labels=names,
        active=names.index(matching_preset(temp.value, s.top_k, s.top_p)),
        name="sampling-presets",
        stylesheets=[ctx.stylesheet],
    )
    preset_text = div(ctx, "", "explain", "preset-explain", name="sampling-preset-text")
    cuts = ColumnDataSource(data=dict(k=[s.top_k or 0], p=[float(s.top_p)]), name="sampling-cuts")
    # as wide as the bars (as in the dashboard), so the curves sit beside them
    summary = div(ctx, "", "explain", "sampling-summary", name="sampling-summary",
                  width=style.bars[0])  # fmt: skip
    error = div(ctx, "", "message", "error", name="sampling-error", visible=False)
    bars, curves = NextTokenBars(style), TemperatureCurves(style)
    entropy = curves.entropy_figure
    args = dict(
        logits=_logits(ctx),
        T=n_pos,
        V=v,
        ids=list(ctx.ids),
        vocab=ctx.vocabulary(),
        position=position,
        temp=temp,
        k_input=k_input,
        p_input=p_input,
        cuts=cuts,
        error=error,
        # the bars (NextTokenBars.update)
        bars=bars.source,
        marker_chosen=bars.chosen,
        bars_fig=bars.figure,
        ticker=bars.ticker,
        axis=bars.figure.xaxis[0],
        top_n=SamplingLesson.top_n,
        bar_px=style.bars[0] - 80,
        per_label=style.px_per_label,
        nice=list(NICE_SCALES),
        titles=[next_token_title(label, style) for label in ctx.labels],
        kept_color=kept_color(style),
        cut_color=style.masked,
        accent=style.accent,
        # the curves (TemperatureCurves.update and .mark)
        temps=CURVE_TEMPERATURES.tolist(),
        curve_n=CURVE_TOKENS,
        lines=curves.lines,
        items=list(curves.legend.items),
        plain_item=curves.h_legend.items[1],
        marker=curves.marker,
        span=curves.span,
        h_line=curves.h_line,
        h_plain=curves.h_plain,
        h_marker=curves.h_marker,
        h_span=curves.h_span,
        h_range=entropy.y_range,
        choices=entropy.extra_y_ranges["choices"],
        colors=list(LINE_COLORS_DARK if style.classroom else LINE_COLORS),
        slider_max=SLIDER_MAX,
        # the words
        summary=summary,
        parts=SUMMARY,
        fragments={k: fill(v, {"colour": style.accent_name}) for k, v in FRAGMENTS.items()},
        presets=presets,
        preset_text=preset_text,
        preset_names=list(S.PRESETS),
        preset_values=[[p.temperature, p.top_k, p.top_p] for p in S.PRESETS.values()],
        preset_explain=[html.escape(p.explain) for p in S.PRESETS.values()],
        preset_text_template=PRESET_TEXT,
        still_using=STILL_USING,
        custom_text_template=CUSTOM_TEXT,
    )
    # one callback for every control: the page embeds its code once
    redraw = callback(JS_FILES, "on_change(cb_obj)", **args)
    for widget in (position, temp, k_input, p_input):
        widget.js_on_change("value", redraw)
    presets.js_on_change("active", redraw)
    ctx.on_ready(redraw)

    controls = row(
        column(position, temp, row(k_input, p_input)),
        column(div(ctx, "<b>Presets</b>", "explain"), presets, preset_text),
    )
    generate = div(ctx, GENERATE_OFFLINE, "detail", name="sampling-generate-note", width=480)
    return column(
        controls,
        error,
        row(
            column(bars.figure, summary, div(ctx, HOW, "caption", width=style.bars[0])),
            column(curves.figure, entropy),
            generate,
        ),
    )
