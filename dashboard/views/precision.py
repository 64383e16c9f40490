"""The FP16 vs BF16 lesson: what each number format can store, and what it does to the model.

Six parts, top to bottom: the representable ranges and densities on a log scale; the formats
table; a bit explorer (type a value, see each format's bits, click a bit to flip it); the
model's own numbers (weights, hidden states, scores, logits) as histograms of log10|x| over
the fp16 and bf16 bands; the same model really run in fp16 and (emulated) bf16 by ONNX
Runtime, compared with fp32; and the masking lesson's fills in each format.

Both homes are built here from the same functions: the dashboard's :class:`PrecisionLesson`
and, at the bottom, the snapshot's :func:`snapshot`. Every figure comes from
:mod:`dashboard.lessons.precision` or the engine; the snapshot's bit explorer rounds in the page
with ``js/rounding.js`` (tested against ml_dtypes in tests/test_kernels_rounding.py).
"""

from __future__ import annotations

import html
import math
from typing import ClassVar

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    FactorRange,
    FixedTicker,
    HoverTool,
    Legend,
    LegendItem,
    Range1d,
    Select,
    TextInput,
)
from panel.custom import JSComponent

from dashboard.lessons import precision as P
from dashboard.lessons.attention import NAN_ROW
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import PlotStyle, styled_figure, title_over_axis
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import OptionSelect, css, text_pane
from models.runtime import EngineError

COLORS = {
    "fp32": "#4c78a8",
    "fp16": "#f58518",
    "bf16": "#54a24b",
    "fp8_e4m3": "#b279a2",
    "fp8_e5m2": "#9d755d",
}
# A bit's field and its colour in both homes: red sign, blue exponent, green mantissa.
FIELD_COLORS = {"sign": "#d43f3a", "exponent": "#1a73dd", "mantissa": "#5cb85c"}
ACTIVATIONS = {
    "hidden": "hidden states (this text)",
    "attn_scores": "attention scores q·k/√d (this text)",
    "logits": "logits (this text)",
}
ALL_WEIGHTS = "all weights"
RUN_FORMATS = ("fp16", "bf16")
BAND_ALPHA = {"subnormal": 0.1, "normal": 0.25}
SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def for_people(v: float) -> str:
    """A figure as people write it: six significant digits, and 3.40282 × 10³⁸ rather than
    Python's 3.40282e+38."""
    mant, e, exp = f"{v:.6g}".partition("e")
    return f"{mant} × 10{str(int(exp)).translate(SUPERSCRIPT)}" if e else mant


# (label, the cell of format n, its class): from numpy.finfo / ml_dtypes.finfo, except the
# decimal digits (computed) and the inf and NaN rows (read from the bit patterns), in words
def _info(key: str, show=str):
    return lambda n: show(getattr(P.format_info(n), key))


TABLE_ROWS = (
    ("bits", _info("bits"), "num"),
    ("exponent bits", _info("exponent_bits"), "num"),
    ("mantissa bits (stored)", _info("mantissa_bits"), "num"),
    ("exponent bias", _info("bias"), "num"),
    ("largest finite", _info("max", for_people), "num"),
    ("smallest normal", _info("smallest_normal", for_people), "num"),
    ("smallest subnormal", _info("smallest_subnormal", for_people), "num"),
    ("machine epsilon", _info("eps", for_people), "num"),
    ("decimal digits", _info("decimal_digits", "{:.2f}".format), "num"),
    ("±inf stored as", lambda n: P.special_encodings(n).inf, "words"),
    ("NaN stored as", lambda n: P.special_encodings(n).nan, "words"),
)
# The picture first (it fits a projector's screen under the tokens), then the numbers behind it.
SECTIONS = (
    "1. Range and density",
    "2. The formats",
    "3. Bits: type a value, click a bit to flip it",
    "4. The model's own numbers",
    "5. The same model run in fp16 and bf16",
    "6. Masked scores in fp16 and bf16",
)


def _short(name: str) -> str:
    return P.format_info(name).label.partition(" (")[0]


def _formats_caption() -> str:
    """Where the table's figures come from, and how each format tells inf from NaN."""
    sp = {n: P.special_encodings(n) for n in P.FORMATS}
    ieee = ("exponent all ones, mantissa 0", "exponent all ones, mantissa not 0")
    by_mantissa = [_short(n) for n in P.FORMATS if (sp[n].inf, sp[n].nan) == ieee]
    finite_top = "".join(
        f" {_short(n)} has {'no inf' if sp[n].inf == 'none' else 'inf'}, and its exponent "
        f"{'1' * P.format_info(n).exponent_bits} still holds normal values up to "
        f"{sp[n].top_max:g}: only mantissa {'1' * P.format_info(n).mantissa_bits} there is NaN."
        for n in P.FORMATS
        if sp[n].top_finite
    )
    return (
        "<p class='hint'>Bits, bias, range and epsilon come from numpy.finfo (fp32, fp16) "
        "and ml_dtypes.finfo (the others); the decimal digits are computed, (mantissa bits "
        "+ 1) · log10 2; the inf and NaN rows come from reading every bit pattern whose "
        "exponent is all ones, and casting inf and NaN to each format agrees. "
        f"{', '.join(by_mantissa[:-1])} and {by_mantissa[-1]} tell inf from NaN by the "
        f"mantissa: 0 is inf, anything else NaN.{finite_top} bf16 keeps fp32's 8 exponent "
        "bits (its range) and drops 16 mantissa bits; fp16 spends more bits on the mantissa "
        "and has a far smaller range.</p>"
    )


FORMATS_CAPTION = _formats_caption()
HIST_CAPTION = (
    "<p class='hint'>Shaded behind the bars: where fp16 (orange, lower half) and "
    "bf16 (green, upper half) can store a value; the paler strip at the left of "
    "each is its subnormals, with fewer significant bits.</p>"
)
RUNS_NOTE = (
    "<p class='hint'>The fp16 graph stores weights and activations in fp16; ONNX "
    "Runtime's CPU provider has fp16 kernels only for the ops not listed above, so "
    "those listed read fp16 values, compute in fp32 and round back to fp16. bf16 is "
    "emulated the same way around every op: this CPU provider has no bf16 arithmetic. "
    "The Casts were placed for the CPU provider's kernels: on CUDA the same graph still "
    "runs those ops in fp32 between them.</p>"
)
MASK_NOTE = (
    "<p class='hint'>fp16 cannot store −1e10 (its largest is "
    f"{P.format_info('fp16').max:g}): it becomes −inf, and in a row that is all −inf "
    f"{NAN_ROW}. −1e4 stays finite everywhere, so query 0's row, all masked, becomes a "
    "quiet uniform average.</p>"
)


def _num(v: float | None) -> str:
    """A value for the page: exact float64 repr (short for binary fractions), or a dash."""
    if v is None:
        return "—"
    return repr(float(v))


def _flags(f: P.BitFields) -> str:
    """What happened to the value: overflow, flush, subnormal, rounding, NaN, or nothing."""
    finite = math.isfinite(f.input) and math.isfinite(f.stored)
    flags = [
        ("overflow → " + ("NaN" if f.nan else "inf"), f.overflow),
        ("flushed to zero", f.flush_to_zero),
        ("subnormal", f.subnormal),
        ("rounded", finite and f.stored != f.input and not f.flush_to_zero),
        ("NaN", f.nan and not f.overflow),
    ]
    shown = [f"<span class='flag'>{name}</span>" for name, on in flags if on]
    return " ".join(shown) or "<span class='hint'>stored exactly</span>"


CELL = "padding: 0.15em 0.5em; text-align: left; vertical-align: top"
HEAD = "padding: 0.15em 0.5em; text-align: left; vertical-align: bottom"


def _header(label: str) -> str:
    """A format's column header: "FP32 (IEEE single)" as FP32 over IEEE single."""
    name, _, what = label.partition(" (")
    note = f"<br><span class='hint'>{html.escape(what.rstrip(')'))}</span>" if what else ""
    return f"<th style='{HEAD}'>{html.escape(name)}{note}</th>"


# A phone upright has no room for six columns: there each figure's row becomes a block, one
# line per format, named by its data-format.
NARROW_TABLE = (
    "<style>@media (max-width: 640px) {"
    " table.precision-formats tr:first-child { display: none; }"
    " table.precision-formats, table.precision-formats tbody, table.precision-formats tr,"
    " table.precision-formats td { display: block; }"
    " table.precision-formats td[data-format] { display: inline-block; }"
    " table.precision-formats td:first-child { font-weight: 600; padding-top: 0.5em !important; }"
    " table.precision-formats td[data-format]::before { content: attr(data-format) ': ';"
    " color: var(--anatomy-muted); } }</style>"
)


def formats_table() -> str:
    """The formats table (see :data:`TABLE_ROWS` for where each figure comes from) as HTML."""
    head = "".join(_header(P.format_info(n).label) for n in P.FORMATS)
    rows = "".join(
        f"<tr><td style='{CELL}'>{label}</td>"
        + "".join(
            f"<td class='{kind}' data-format='{_short(n)}' style='{CELL}'>{cell(n)}</td>"
            for n in P.FORMATS
        )
        + "</tr>"
        for label, cell, kind in TABLE_ROWS
    )
    return (
        f"{NARROW_TABLE}<table class='precision-formats' style='border-collapse: collapse'>"
        f"<tr><th style='{HEAD}'></th>{head}</tr>{rows}</table>"
    )


def bit_legend() -> str:
    """What the bits' colours mean (the colours both homes draw them in)."""
    keys = " ".join(
        f"<span class='bit-key bit-key-{k}'><span class='swatch' style='color: {c}'>■</span> "
        f"{k}</span>"
        for k, c in FIELD_COLORS.items()
    )
    return f"<p class='bit-legend'>{keys} · filled = 1, outlined = 0</p>"


def special_words(name: str) -> tuple[str, str, str]:
    """How format ``name``'s bit explorer explains inf, NaN, and a normal value whose
    exponent is all ones (empty where the format has none); ``js/precision.js`` gets them."""
    info, sp = P.format_info(name), P.special_encodings(name)
    top = (
        f" (exponent {'1' * info.exponent_bits} still holds normal values here: only mantissa "
        f"{'1' * info.mantissa_bits} is NaN)"
        if sp.top_finite
        else ""
    )
    return f"(inf: {sp.inf})", f"(NaN: {sp.nan})", top


def bit_info_html(value: float, name: str) -> str:
    """What format ``name`` stores for ``value``: the stored value and how its fields make it,
    its neighbours, the errors and flags (``js/precision.js`` writes the same text)."""
    f = P.bit_fields(value, name)
    below, above = P.neighbours(f.stored, name)
    inf, nan, top = special_words(name)
    if f.category in ("normal", "subnormal", "zero"):
        how = f"= (−1)<sup>{f.sign_int}</sup> · {f.significand!r} · 2<sup>{f.exponent_value}</sup>"
        if f.category != "normal":
            how += " (exponent field 0: no implicit leading 1)"
        elif f.exponent == "1" * len(f.exponent):
            how += top
    else:
        how = inf if f.category == "inf" else nan
    return (
        f"<p>stores <b class='num stored'>{_num(f.stored)}</b> {how}<br>"
        f"neighbours <span class='num below'>{_num(below)}</span> and "
        f"<span class='num above'>{_num(above)}</span> · abs error "
        f"<span class='num'>{f.abs_error:.3g}</span> · rel error "
        f"<span class='num'>{f.rel_error:.3g}</span> · {_flags(f)}</p>"
    )


def bit_fields_of(name: str) -> list[str]:
    """The field of each bit of format ``name``, most significant (the sign) first."""
    info = P.format_info(name)
    return ["sign"] + ["exponent"] * info.exponent_bits + ["mantissa"] * info.mantissa_bits


class BitRow(JSComponent):
    """One format's row of the bit explorer: its name, its bits as buttons (filled = 1,
    outlined = 0) in their fields' colours, and what it stores for the value. A click sends
    the bit's index to ``on_flip(name, index)``.

    A new value changes two parameters, ``bits`` and ``info``, and the page rewrites the row in
    place. (A Panel button per bit made Bokeh lay the whole page out again for each changed
    label: about 3 s per typed value on two cores. An HTML pane re-sends its style sheets on
    its first update, which lays the page out again too.)"""

    fmt = param.String(doc="The format, for the row's CSS classes.")
    label = param.String(doc="The format's name, shown above the bits (text, not HTML).")
    fields = param.List(default=[], doc="Each bit's field, the sign first.")
    colors = param.List(default=[], doc="Each bit's colour.")
    cell = param.Integer(default=22, doc="A button's width in pixels.")
    bits = param.String(default="", doc="The pattern, the sign first.")
    info = param.String(default="", doc="What the format stores (our HTML: bit_info_html).")

    _esm = """
    export function render({ model }) {
      const row = document.createElement("div");
      row.className = `bit-row bit-row-${model.fmt}`;
      const label = document.createElement("div");
      label.className = "control-label";
      label.textContent = model.label;
      const bits = document.createElement("div");
      bits.className = `bits bit-${model.fmt}`;
      bits.style.setProperty("--cell", `${model.cell}px`);
      const buttons = model.fields.map((field, i) => {
        const cell = document.createElement("span");  // .bit-<format>-<i> button, as before
        cell.className = `bit-cell bit-${model.fmt}-${i}`;
        const b = document.createElement("button");
        b.className = "bit";
        b.style.setProperty("--c", model.colors[i]);
        b.title = `${field} bit ${i}: click to flip`;
        b.addEventListener("click", () => model.send_msg({ index: i }));
        cell.append(b);
        bits.append(cell);
        return b;
      });
      const info = document.createElement("div");
      info.className = `precision-info precision-info-${model.fmt}`;
      function draw() {
        buttons.forEach((b, i) => {
          const bit = model.bits[i] ?? "";
          b.textContent = bit;
          b.classList.toggle("solid", bit === "1");
        });
      }
      const say = () => { info.innerHTML = model.info; };  // numbers and our words only
      draw();
      say();
      model.on("bits", draw);
      model.on("info", say);
      row.append(label, bits, info);
      return row;
    }
    """

    _stylesheets: ClassVar[list[str]] = [
        """
        .bit-row .control-label { margin: 4px 0 0 0; }
        .bits { display: flex; flex-wrap: wrap; gap: 2px; }
        .bit {
          box-sizing: border-box; width: var(--cell); height: calc(var(--cell) + 6px);
          padding: 0; margin: 0; border: 1px solid var(--c); border-radius: 4px;
          background-color: transparent; color: var(--c); cursor: pointer;
          font-family: inherit; font-size: calc(var(--cell) * 0.6); line-height: 1;
        }
        .bit-cell { display: inline-flex; }
        .bit.solid { background-color: var(--c); color: #ffffff; }
        .bit:focus-visible { outline: 3px solid var(--c); outline-offset: 1px; }
        /* a finger needs a bigger target (the rule of the shell's PHONE_CSS): the row wraps */
        @media (pointer: coarse), (max-width: 800px), (max-height: 500px) {
          .bit { width: 40px; height: 40px; font-size: 16px; }
        }
        /* the same height whatever the value (two lines, a superscript or a fallback font's
           glyph making none of them taller): a row that changes height, by a fraction of a
           pixel even, makes Bokeh lay the whole page out again */
        .precision-info { margin: 0 5px; }
        .precision-info p { line-height: 1.4; min-height: calc(2.8em + 2px); }
        .precision-info sup { line-height: 0; }
        """
    ]

    def __init__(self, name: str, on_flip, classroom: bool, **params):
        fields = bit_fields_of(name)
        super().__init__(
            fmt=name,
            label=P.format_info(name).label,
            fields=fields,
            colors=[FIELD_COLORS[f] for f in fields],
            cell=34 if classroom else 22,
            stylesheets=[css()],  # the page's classes (.num, .hint) in the row's shadow root
            sizing_mode="stretch_width",
            margin=(0, 5),
            **params,
        )
        self._on_flip = on_flip  # a plain attribute: parameters are synced to the page

    def _handle_msg(self, msg) -> None:
        i = msg.get("index") if isinstance(msg, dict) else None
        if type(i) is int and 0 <= i < len(self.fields):
            self._on_flip(self.fmt, i)

    def show(self, value: float) -> None:
        self.param.update(
            bits=P.bit_fields(value, self.fmt).bits, info=bit_info_html(value, self.fmt)
        )


# -- figures shared by both homes ----------------------------------------------------------------
def range_plots(style: PlotStyle):
    """The positive range of each format (pale: subnormals) and its values per decade."""
    names = list(P.FORMATS)
    # side by side under the tokens on a 1920x1080 projector
    width, height = (690, 360) if style.classroom else (560, 250)
    bands = dict(y=[], left=[], right=[], color=[], alpha=[], what=[])
    for n in names:
        b = P.range_band(n)
        for lo, hi, alpha, what in (
            (b.smallest_subnormal, b.smallest_normal, 0.35, "subnormals"),
            (b.smallest_normal, b.max, 0.9, "normal numbers"),
        ):
            bands["y"].append(P.format_info(n).label)
            bands["left"].append(lo)
            bands["right"].append(hi)
            bands["color"].append(COLORS[n])
            bands["alpha"].append(alpha)
            bands["what"].append(f"{what}: {lo:.3g} … {hi:.3g}")
    labels = [P.format_info(n).label for n in names]
    src = ColumnDataSource(bands, name="precision-bands")
    r = styled_figure(
        style,
        width,
        height,
        "Range (pale: subnormals)",
        x_axis_type="log",
        y_range=FactorRange(*reversed(labels)),
        x_range=Range1d(1e-47, 1e40),
        name="precision-ranges",
    )
    title_over_axis(r)
    bars = r.hbar(
        y="y", left="left", right="right", height=0.6, color="color", fill_alpha="alpha", source=src
    )
    r.add_tools(HoverTool(renderers=[bars], tooltips=[("", "@y"), ("", "@what")]))
    r.xaxis.axis_label = "|x| (log scale)"
    d = styled_figure(
        style,
        width,
        height,
        "Values per decade",
        x_axis_type="log",
        y_axis_type="log",
        x_range=r.x_range,
        name="precision-density-figure",
    )
    dens = dict(fmt=[], xs=[], ys=[], color=[])
    for n in names:
        dn = P.density(n)
        keep = dn.counts > 0
        dens["fmt"].append(P.format_info(n).label)
        dens["xs"].append((10.0 ** (dn.decades[keep] + 0.5)).tolist())
        dens["ys"].append(dn.counts[keep].astype(float).tolist())
        dens["color"].append(COLORS[n])
    dsrc = ColumnDataSource(dens, name="precision-density")
    lines = d.multi_line(
        xs="xs", ys="ys", line_color="color", line_width=4 if style.classroom else 2, source=dsrc
    )
    d.add_tools(HoverTool(renderers=[lines], tooltips=[("format", "@fmt")]))
    d.xaxis.axis_label = "decade of |x|"
    d.yaxis.axis_label = "values in the decade"
    return r, d


def hist_figure(style: PlotStyle, bars: ColumnDataSource, bands: ColumnDataSource):
    """The histogram of log10|x|: ``bars`` (left, right, top) over ``bands`` (the formats')."""
    width, height = (1300, 460) if style.classroom else (900, 300)
    f = styled_figure(
        style,
        width,
        height,
        "",
        x_range=Range1d(-10, 6),
        y_range=Range1d(0, 1),
        name="precision-hist-figure",
    )
    f.quad(
        left="left",
        right="right",
        bottom="bottom",
        top="top",
        color="color",
        fill_alpha="alpha",
        line_alpha=0,
        source=bands,
    )
    r = f.quad(
        left="left",
        right="right",
        bottom=0,
        top="top",
        source=bars,
        fill_color=COLORS["fp32"],
        line_color=style.background,
    )
    f.add_tools(
        HoverTool(
            renderers=[r], tooltips=[("log10|x|", "@left{0.00} … @right{0.00}"), ("count", "@top")]
        )
    )
    f.xaxis.axis_label = "log10 |x|"
    f.yaxis.axis_label = "values"
    return f


def hist_columns(g: P.HistogramGeometry) -> tuple[dict, dict]:
    """The histogram's bars and bands as data-source columns."""
    h = g.histogram
    bars = dict(left=h.edges[:-1].tolist(), right=h.edges[1:].tolist(), top=h.counts.tolist())
    bands = dict(
        left=[b.left for b in g.bands],
        right=[b.right for b in g.bands],
        bottom=[b.bottom for b in g.bands],
        top=[b.top for b in g.bands],
        color=[COLORS[b.name] for b in g.bands],
        alpha=[BAND_ALPHA[b.kind] for b in g.bands],
        label=[f"{b.name} {b.kind}" for b in g.bands],
    )
    return bars, bands


def hist_title(size: int) -> str:
    """The histogram's title: short, so that a phone shows all of it (the picker above it
    names the tensor)."""
    return f"log10|x| of {size:,} values"


def counts_html(values, g: P.HistogramGeometry) -> str:
    """What storing ``values`` in fp16, bf16 and each fp8 does to them, as a table."""
    rows = []
    for n in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2"):
        c = P.overflow_counts(values, n)
        rows.append(
            f"<tr><td>{html.escape(P.format_info(n).label)}</td>"
            f"<td class='num overflow'>{c.overflow:,}</td>"
            f"<td class='num subnormal'>{c.subnormal:,}</td>"
            f"<td class='num flush'>{c.flush_to_zero:,}</td>"
            f"<td class='num'>{c.normal:,}</td></tr>"
        )
    h = g.histogram
    return (
        f"<p>{h.zeros:,} values are exactly 0 and {h.nonfinite:,} are not finite (no "
        "log). Stored in each format, the others would:</p>"
        "<table class='top'><tr><th>format</th><th>overflow</th><th>become subnormal"
        "</th><th>flush to zero</th><th>stay normal</th></tr>" + "".join(rows) + "</table>"
    )


def runs_figure(style: PlotStyle, hidden: ColumnDataSource, probs: ColumnDataSource):
    """max |difference| from fp32 per layer: solid the hidden state, dashed the probabilities."""
    width, height = (900, 460) if style.classroom else (520, 300)
    f = styled_figure(
        style,
        width,
        height,
        "max |difference| from fp32, per layer",
        y_axis_type="log",
        name="precision-runs-figure",
    )
    lw = 4 if style.classroom else 2
    items = []
    for src, dash, what in (
        (hidden, "solid", "hidden state"),
        (probs, "dashed", "attention probs"),
    ):
        for n in RUN_FORMATS:
            r = f.line("layer", n, source=src, line_color=COLORS[n], line_dash=dash, line_width=lw)
            dots = f.scatter("layer", n, source=src, color=COLORS[n], size=3 * lw)
            items.append(LegendItem(label=f"{n} {what}", renderers=[r, dots]))
    f.add_layout(
        Legend(
            items=items,
            label_text_font_size=style.tick,
            label_text_color=style.text,
            background_fill_color=style.background,
            background_fill_alpha=0.7,
        ),
        "right",
    )
    f.xaxis.axis_label = "layer (hidden state 0: the embeddings)"
    return f


def runs_html(runs: list[P.VariantRun], labels: list[str]) -> str:
    """What each lower-precision run did, in words (``labels``: the tokens, for the flips)."""
    parts = []
    for r in runs:
        c = r.comparison
        if c is None:
            parts.append(f"<p class='message error'>{r.name}: {html.escape(r.error)}</p>")
            continue
        flips = ", ".join(html.escape(labels[i]) for i in c.flips[:12]) or "none"
        broken = f" · <span class='nan'>{c.nonfinite} inf/NaN values</span>" if c.nonfinite else ""
        parts.append(
            f"<p class='run-{r.name}'><b>{r.name}</b> on <b>{html.escape(r.provider)}</b>: "
            f"logits max error <b class='num logits-error'>{c.logits_max_diff:.3g}</b> "
            f"({100 * c.logits_max_rel:.2f}% of the largest logit) · top-1 next token "
            f"agrees at <b class='num agreement'>{100 * c.agreement:.1f}%</b> of "
            f"{len(c.top1)} positions · differs at: <span class='tok'>{flips}</span>{broken}"
            f"<br><span class='hint'>{html.escape(r.description)}. "
            f"Run in fp32 between Casts: {html.escape(', '.join(r.emulated_ops))}.</span></p>"
        )
    return "".join(parts) + RUNS_NOTE


def _rows(rows) -> str:
    """Which softmax rows are NaN, in words that cannot read as a count: "none", "row 0",
    "rows 0, 3"."""
    if len(rows) == 0:
        return "none"
    return ("row " if len(rows) == 1 else "rows ") + ", ".join(str(int(i)) for i in rows)


def mask_cells(scores) -> list[dict[str, str]]:
    """The masked-scores table's cells for one head's scores (T, T), one dict per (fill,
    format): each fill stored in each format, then the softmax computed in that format."""
    s = np.asarray(scores, dtype=np.float64)
    return [
        dict(
            fill=f"{c.fill:g}",
            name=c.name,
            stored=_num(c.stored_fill),
            overflowed="yes: −inf" if c.fill_became_inf else "no",
            nan="nan" if c.has_nan else "",
            rows=_rows(c.nan_rows),
            mass=f"{c.masked_mass:.3g}",
        )
        for c in P.mask_fill_demo(s, mask=P.padding_mask(s.shape[-1]))
    ]


def mask_html(cells: list[dict[str, str]], layer: int | str, head: int | str) -> str:
    """The masked-scores table of layer ``layer``, head ``head`` from its :func:`mask_cells`."""
    rows = "".join(
        f"<tr><td class='num'>{c['fill']}</td><td>{c['name']}</td>"
        f"<td class='num'>{c['stored']}</td><td>{c['overflowed']}</td>"
        f"<td class='{c['nan']}' style='white-space: nowrap'>{c['rows']}</td>"
        f"<td class='num'>{c['mass']}</td></tr>"
        for c in cells
    )
    return (
        f"<p>Layer {layer}, head {head}: its scores with the causal mask, and position 0 a "
        "padding token: key 0 masked for every query, so query 0 has no key left. Each fill "
        "stored in each format, then the softmax computed in that format:</p>"
        "<table class='top'><tr><th>fill</th><th>format</th><th>stored fill</th>"
        "<th>over&shy;flowed?</th><th>rows that are NaN</th><th>most weight on a masked key</th>"
        "</tr>" + rows + "</table>" + MASK_NOTE
    )


ABOUT = (
    "<b>What you see:</b> how fp32, fp16, bf16 and fp8 store a number (sign, exponent, "
    "mantissa), what range and density each has, where the model's own weights and "
    "activations fall in them, and the same model really run in fp16 and bf16. "
    "<b>Try:</b> type 0.1, 65504, 70000 and 1e-8, click bits to flip them, and compare how "
    "far the fp16 and bf16 runs drift from fp32."
)


class PrecisionOptions(Options):
    """The precision lesson's option: the bit explorer's value."""

    url: ClassVar[dict[str, str]] = {"value": "value"}

    value = param.Number(default=65504.0, doc="The value shown in the bit explorer.")


class PrecisionLesson(LessonView):
    """Number formats, the model's numbers in them, and the model run in fp16 and bf16."""

    tensor = param.Selector(default="hidden", objects=list(ACTIVATIONS), doc="Histogram source.")
    error = param.String(default="", doc="Why the typed value was refused.")

    def __init__(self, **params):
        super().__init__(**params)
        style = self.style
        self.param.tensor.objects = self._tensor_names()

        # -- bit explorer ----------------------------------------------------------------------
        self.value_input = pn.widgets.TextInput(
            label="Type a value",
            value=typed_form(self.state.value),
            placeholder="e.g. 65504, 1e-8, -0, inf, nan, 0x1p-24, 2^-24",
            width=320 if style.classroom else 240,
            css_classes=["precision-value"],
        )
        self.value_input.param.watch(self._typed, "value")
        self.error_pane = text_pane("", "message", "error", "precision-error", visible=False)
        self.rows = {n: BitRow(n, self.flip, style.classroom) for n in P.FORMATS}

        # -- ranges and density ----------------------------------------------------------------
        self.ranges_figure, self.density_figure = range_plots(style)

        # -- the model's numbers ---------------------------------------------------------------
        self.tensor_select = OptionSelect(
            label="Tensor",
            options=list(self.param.tensor.objects),
            value=self.tensor,
            width=380 if style.classroom else 300,
            css_classes=["precision-tensor"],
        )
        self.tensor_select.param.watch(lambda e: setattr(self, "tensor", e.new), "value")
        self.hist_source = ColumnDataSource(
            data=dict(left=[], right=[], top=[]), name="precision-hist"
        )
        self.band_source = ColumnDataSource(
            data=dict(left=[], right=[], bottom=[], top=[], color=[], alpha=[], label=[]),
            name="precision-hist-bands",
        )
        self.hist_figure = hist_figure(style, self.hist_source, self.band_source)
        self.counts = text_pane("", "precision-counts")

        # -- real runs -------------------------------------------------------------------------
        empty = dict(layer=[], fp16=[], bf16=[])
        self.run_hidden = ColumnDataSource(data=dict(empty), name="precision-run-hidden")
        self.run_probs = ColumnDataSource(data=dict(empty), name="precision-run-probs")
        self.runs_figure = runs_figure(style, self.run_hidden, self.run_probs)
        self.runs_text = text_pane("", "precision-runs")
        self.mask_text = text_pane("", "precision-mask")

        def h(i: int) -> pn.pane.HTML:
            return text_pane(f"<h3>{SECTIONS[i]}</h3>", "explain", margin=(12, 10, 0, 10))

        self._layout = pn.Column(
            h(0),
            pn.FlexBox(
                pn.pane.Bokeh(self.ranges_figure, margin=(5, 5)),
                pn.pane.Bokeh(self.density_figure, margin=(5, 5)),
                gap="6px",
            ),
            h(1),
            text_pane(formats_table(), "explain"),
            text_pane(FORMATS_CAPTION, "caption"),
            h(2),
            pn.Row(self.value_input, self.error_pane, margin=0),
            text_pane(bit_legend(), "bit-legend-pane", margin=(0, 10)),
            *self.rows.values(),
            h(3),
            self.tensor_select,
            pn.pane.Bokeh(self.hist_figure, margin=(5, 5)),
            text_pane(HIST_CAPTION, "caption"),
            self.counts,
            h(4),
            pn.FlexBox(pn.pane.Bokeh(self.runs_figure, margin=(5, 5)), self.runs_text, gap="6px"),
            h(5),
            self.mask_text,
            sizing_mode="stretch_width",
            margin=0,
        )
        self._show_value()
        self._draw_histogram()
        self._draw_runs()

    # -- bit explorer ------------------------------------------------------------------------------
    def _typed(self, event) -> None:
        try:
            value = P.parse_value(event.new)
        except ValueError as err:
            self.error = str(err)  # the last good value stays on show
            return
        self.error = ""
        if not same_float(value, self.state.value):
            self.state.value = value

    def flip(self, name: str, index: int) -> None:
        """Flip bit ``index`` of ``name``'s pattern for the current value."""
        self.error = ""
        self.state.value = P.flip_bit(self.state.value, name, index)

    @param.depends("error", watch=True)
    def _show_error(self) -> None:
        self.error_pane.object = f"<p>{html.escape(self.error)}</p>"
        self.error_pane.visible = bool(self.error)

    @param.depends("state.value", watch=True)
    @draws
    def _show_value(self) -> None:
        if not same_float(_parsed_value(self.value_input.value), self.state.value):
            self.value_input.value = typed_form(self.state.value)  # a link or a flip set it
        for r in self.rows.values():
            r.show(self.state.value)

    # -- the model's numbers -----------------------------------------------------------------------
    def _tensor_names(self) -> list[str]:
        """The histogram's choices: this text's activations, then the model's weights."""
        s = self.state
        try:
            weights = list(s.engine.weights(s.model)) if s.engine is not None else []
        except EngineError:
            weights = []  # the histogram says why when "all weights" is chosen
        return [*ACTIVATIONS, ALL_WEIGHTS, *weights]

    @param.depends("state.model", watch=True)
    def _model_changed(self) -> None:
        names = self._tensor_names()
        self.param.tensor.objects = names
        self.tensor_select.options = names
        if self.tensor not in names:
            self.tensor = "hidden"

    def _tensor_values(self) -> np.ndarray | None:
        s = self.state
        if self.tensor in ACTIVATIONS:
            if s.forward is None:
                return None
            return np.asarray(getattr(s.forward, self.tensor))
        weights = s.engine.weights(s.model)
        if self.tensor == ALL_WEIGHTS:
            return all_weights(weights)
        return np.asarray(weights[self.tensor])

    @param.depends("tensor", "state.forward", watch=True)
    @draws
    def _draw_histogram(self) -> None:
        self.tensor_select.value = self.tensor
        try:
            values = self._tensor_values()
        except (EngineError, KeyError) as err:
            self.counts.object = f"<p class='message error'>{html.escape(str(err))}</p>"
            return
        if values is None:
            return
        g = P.histogram_geometry(values)
        self.hist_source.data, self.band_source.data = hist_columns(g)
        self.hist_figure.x_range.update(start=g.lo, end=g.hi)
        self.hist_figure.y_range.update(start=0, end=g.top)
        self.hist_figure.title.text = hist_title(g.size)
        self.counts.object = counts_html(values, g)

    # -- real runs ---------------------------------------------------------------------------------
    @param.depends("state.forward", watch=True)
    @draws
    def _draw_runs(self) -> None:
        s = self.state
        if s.forward is None or s.engine is None:
            return
        runs = P.run_variants(s.engine, s.model, s.forward, RUN_FORMATS)
        n_layer = int(s.forward.attn_probs.shape[0])
        self.run_hidden.data, self.run_probs.data = P.run_curves(runs, n_layer)
        self.runs_text.object = runs_html(runs, s.labels)
        self._draw_mask()

    @param.depends("state.layer", "state.head", watch=True)
    @draws
    def _draw_mask(self) -> None:
        s = self.state
        if s.forward is None:
            return
        cells = mask_cells(s.forward.attn_scores[s.layer, s.head])
        self.mask_text.object = mask_html(cells, s.layer, s.head)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


def all_weights(weights: dict) -> np.ndarray:
    """Every weight of the model in one float64 vector."""
    return np.concatenate([np.asarray(w, np.float64).ravel() for w in weights.values()])


def typed_form(v: float) -> str:
    """A value as the text box shows it: exact (repr), with no needless ".0"."""
    text = repr(float(v))
    return text.removesuffix(".0")


def _parsed_value(text: str) -> float:
    try:
        return P.parse_value(text)
    except ValueError:
        return math.nan


def same_float(a: float, b: float) -> bool:
    """Equal as stored: NaN equals NaN, and −0 differs from +0."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


# -- the snapshot ----------------------------------------------------------------------------------
# The same six panels, built by the functions above. In the page: the bit explorer rounds with
# js/rounding.js; the tensor picker, layer and head buttons choose among tables and histograms
# computed here. One CustomJS serves every control (embedded once, it dispatches on cb_obj).
LIVE_ONLY = (
    "<p class='hint'>Each weight tensor on its own, and the runs of a text you type, need the "
    "live dashboard (<code>panel serve panel_serve.py</code>): this page holds this text's "
    "activations and all the weights together.</p>"
)


def _bit_explorer(ctx: Context, args: dict) -> list:
    style = ctx.style
    infos = [P.format_info(n) for n in P.FORMATS]
    value = TextInput(
        title="Type a value",
        value=typed_form(ctx.selection.value),
        placeholder="e.g. 65504, 1e-8, -0, inf, nan, 0x1p-24, 2^-24",
        width=320 if style.classroom else 240,
        name="precision-value",
        stylesheets=[ctx.stylesheet],
    )
    cell = 34 if style.classroom else 22
    width = 32 * cell + (260 if style.classroom else 150)
    fig = styled_figure(
        style,
        width,
        len(infos) * (cell + 10) + 40,
        "Click a bit to flip it",
        x_range=Range1d(-0.5, 31.5),
        y_range=Range1d(len(infos) - 0.5, -0.5),
        name="precision-bits-figure",
    )
    fig.xaxis.visible = False
    fig.yaxis.ticker = FixedTicker(ticks=list(range(len(infos))))
    fig.yaxis.major_label_overrides = {i: info.label for i, info in enumerate(infos)}
    bits = ColumnDataSource(
        data=dict(x=[], y=[], bit=[], color=[], alpha=[], text_color=[], fmt=[], index=[]),
        name="precision-bits",
    )
    # as the dashboard's buttons: a 1 is filled with its field's colour, a 0 is outlined
    fig.rect(
        x="x",
        y="y",
        width=0.9,
        height=0.8,
        fill_color="color",
        fill_alpha="alpha",
        line_color="color",
        line_width=2,
        source=bits,
    )
    fig.text(
        x="x",
        y="y",
        text="bit",
        source=bits,
        text_align="center",
        text_baseline="middle",
        text_color="text_color",
        text_font_size=style.label,
    )
    args.update(
        value=value,
        bits=bits,
        formats=ColumnDataSource(data=dict(name=[], bits=[], stored=[]), name="precision-formats"),
        info=div(ctx, "", "precision-info", name="precision-info"),
        error=div(ctx, "", "message", "error", name="precision-error", visible=False),
        # plain lists: a dict argument arrives in the page as a Map, not an object
        names=list(P.FORMATS),
        titles=[i.label for i in infos],
        field_colors=[FIELD_COLORS[k] for k in ("sign", "exponent", "mantissa")],
        specials=[list(special_words(n)) for n in P.FORMATS],
    )
    args["bits_figure"] = fig  # for its tap event
    legend = div(ctx, bit_legend(), "bit-legend-pane", name="precision-legend")
    return [row(value, args["error"]), legend, fig, args["info"]]


def _histograms(ctx: Context, args: dict) -> list:
    """Section 4: each activation tensor's histogram (and all the weights'), chosen in the page."""
    f = ctx.forward
    tensors = {n: np.asarray(getattr(f, n)) for n in ACTIVATIONS}
    engine = ctx.engine
    note = LIVE_ONLY
    if engine is not None:
        try:
            tensors[ALL_WEIGHTS] = all_weights(engine.weights(ctx.model))
        except EngineError as err:
            note = f"<p class='message error'>{html.escape(str(err))}</p>" + LIVE_ONLY
    table = dict(name=[], title=[], lo=[], hi=[], ymax=[], counts=[], bars=[], bands=[])
    for name, values in tensors.items():
        g = P.histogram_geometry(values)
        bars, bands = hist_columns(g)
        for k, v in (
            ("name", name),
            ("title", hist_title(g.size)),
            ("lo", g.lo),
            ("hi", g.hi),
            ("ymax", g.top),
            ("counts", counts_html(values, g)),
            ("bars", bars["top"]),  # the bins: from lo to hi in HISTOGRAM_STEP
            ("bands", [bands[c] for c in ("left", "right", "bottom", "top")]),
        ):
            table[k].append(v)
    first_bars, first_bands = hist_columns(P.histogram_geometry(tensors["hidden"]))
    hist = ColumnDataSource(first_bars, name="precision-hist")
    bands = ColumnDataSource(first_bands, name="precision-hist-bands")
    figure = hist_figure(ctx.style, hist, bands)
    picker = Select(
        title="Tensor",
        options=list(tensors),
        value="hidden",
        width=380 if ctx.style.classroom else 300,
        name="precision-tensor",
        stylesheets=[ctx.stylesheet],
    )
    args.update(
        picker=picker,
        hist=hist,
        hist_bands=bands,
        hist_figure=figure,
        tensors=ColumnDataSource(table, name="precision-tensors"),
        step=P.HISTOGRAM_STEP,
        counts=div(ctx, "", "precision-counts", name="precision-counts"),
    )
    return [picker, figure, div(ctx, HIST_CAPTION, "caption"), args["counts"], div(ctx, note)]


def _runs(ctx: Context) -> list:
    """Section 5, computed at export: the engine has the fp16 and bf16 variants."""
    engine = ctx.engine
    if engine is None:
        return [div(ctx, "<p class='hint'>The fp16 and bf16 runs need the model's variants, "
                    "which this export could not open: run the live dashboard.</p>")]  # fmt: skip
    runs = P.run_variants(engine, ctx.model, ctx.forward, RUN_FORMATS)
    hidden, probs = P.run_curves(runs, int(ctx.forward.attn_probs.shape[0]))
    fig = runs_figure(
        ctx.style,
        ColumnDataSource(hidden, name="precision-run-hidden"),
        ColumnDataSource(probs, name="precision-run-probs"),
    )
    text = div(ctx, runs_html(runs, ctx.labels), "precision-runs", name="precision-runs")
    return [row(fig, text)]


# what changes from head to head in the masked-scores table (the rest is the same for all)
MASK_VARYING = ("nan", "rows", "mass")


def _masks(ctx: Context, args: dict) -> list:
    """Section 6: every layer and head's table, chosen in the page. Embedded as one template
    (:func:`mask_html` with @-placeholders) and, per head, the cells that vary (~100 bytes)."""
    scores = np.asarray(ctx.forward.attn_scores, dtype=np.float64)
    n_layer, n_head = scores.shape[:2]
    cells = [mask_cells(scores[i, j]) for i in range(n_layer) for j in range(n_head)]
    # fill, format, stored fill and overflow depend on the fill and the format only
    holes = [{**c, **{k: f"@{k}{n}@" for k in MASK_VARYING}} for n, c in enumerate(cells[0])]
    layer = index_buttons(ctx, n_layer, ctx.selection.layer, "precision-layer")
    head = index_buttons(ctx, n_head, ctx.selection.head, "precision-head")
    args.update(
        layer=layer,
        head=head,
        mask_template=mask_html(holes, "@layer@", "@head@"),
        # per head, flattened: cell n's varying values
        mask_cells=[[c[k] for c in head_cells for k in MASK_VARYING] for head_cells in cells],
        mask_varying=list(MASK_VARYING),
        n_head=int(n_head),
        mask=div(ctx, "", "precision-mask", name="precision-mask"),
    )
    return [row(div(ctx, "layer", width=60), layer, div(ctx, "head", width=60), head), args["mask"]]


def snapshot(ctx: Context):
    """The lesson's snapshot form: the dashboard's six panels, interactive in the page."""

    def h(i: int):
        return div(ctx, f"<h3>{SECTIONS[i]}</h3>", "explain")

    args: dict = {}
    parts = [
        h(0),
        row(*range_plots(ctx.style)),
        h(1),
        div(ctx, formats_table(), "explain", name="precision-formats-table"),
        div(ctx, FORMATS_CAPTION, "caption"),
        h(2),
        *_bit_explorer(ctx, args),
        h(3),
        *_histograms(ctx, args),
        h(4),
        *_runs(ctx),
        h(5),
        *_masks(ctx, args),
    ]
    cb = callback(("rounding", "precision"), "dispatch(cb_obj)", **args)
    args["value"].js_on_change("value", cb)
    args["bits_figure"].js_on_event("tap", cb)
    args["picker"].js_on_change("value", cb)
    for buttons in (args["layer"], args["head"]):
        buttons.js_on_change("active", cb)
    ctx.on_ready(cb)
    return column(*parts, sizing_mode="stretch_width")
