"""The number-format lesson, offline: a bit explorer. Type a value and see how fp32, fp16 and
bf16 store it (sign, exponent and mantissa bits), the stored value and the rounding error;
click a bit to flip it. ``js/precision.js`` rounds to nearest, ties to even, with subnormals
and overflow to ±inf, from the exact float64 (as :func:`dashboard.lessons.precision.round_to`).
"""

from __future__ import annotations

from bokeh.layouts import column
from bokeh.models import ColumnDataSource, FixedTicker, Range1d, TextInput

from dashboard.lessons.precision import format_info
from dashboard.views.plots import styled_figure
from export.common import Context, callback, div

FORMATS = ("fp32", "fp16", "bf16")
FIELD_COLORS = {"sign": "#d62728", "exponent": "#2ca02c", "mantissa": "#1f77b4"}


def build(ctx: Context):
    style = ctx.style
    infos = [format_info(n) for n in FORMATS]
    value = TextInput(
        title="Value (e.g. 0.1, 65504, 1e-8, -0, inf, 2^-24)",
        value=ctx.selection.value,
        width=520 if style.classroom else 360,
        name="precision-value",
        stylesheets=[ctx.stylesheet],
    )
    cell = 46 if style.classroom else 24
    width = 32 * cell + (220 if style.classroom else 110)
    fig = styled_figure(
        style,
        width,
        len(FORMATS) * cell * 2 + 80,
        "Click a bit to flip it",
        x_range=Range1d(-0.5, 31.5),
        y_range=Range1d(len(FORMATS) - 0.5, -0.5),
        name="precision-bits-figure",
    )
    fig.xaxis.visible = False
    fig.yaxis.ticker = FixedTicker(ticks=list(range(len(FORMATS))))
    fig.yaxis.major_label_overrides = {i: info.label for i, info in enumerate(infos)}
    bits = ColumnDataSource(
        data=dict(x=[], y=[], bit=[], color=[], fmt=[], index=[]), name="precision-bits"
    )
    fig.rect(x="x", y="y", width=0.9, height=0.6, color="color", source=bits, alpha=0.85)
    fig.text(
        x="x",
        y="y",
        text="bit",
        source=bits,
        text_align="center",
        text_baseline="middle",
        text_color="#ffffff",
        text_font_size=style.label,
    )
    formats = ColumnDataSource(
        data=dict(name=[], bits=[], stored=[], error=[], category=[]), name="precision-formats"
    )
    table = div(ctx, "", "precision-table", name="precision-table")
    error = div(ctx, "", "message", "error", name="precision-error", visible=False)
    args = dict(
        value=value,
        # plain lists: a dict argument arrives in the page as a Map, not an object
        names=[i.name for i in infos],
        titles=[i.label for i in infos],
        exponent_bits=[i.exponent_bits for i in infos],
        mantissa_bits=[i.mantissa_bits for i in infos],
        colors=[FIELD_COLORS[k] for k in ("sign", "exponent", "mantissa")],
        bits=bits,
        formats=formats,
        table=table,
        error=error,
    )
    redraw = callback("precision", "draw()", **args)
    value.js_on_change("value", redraw)
    fig.js_on_event("tap", callback("precision", "tap(cb_obj)", **args))
    ctx.on_ready(redraw)
    explain = div(
        ctx,
        "Each format stores a sign, an exponent (a power of two, biased) and a mantissa (the "
        "bits after the leading 1). A value between two representable ones is rounded to the "
        "nearest, ties to the one whose last bit is 0; too small becomes a subnormal or 0, "
        "too large becomes ∞. fp16 keeps more mantissa bits, bf16 keeps fp32's range.",
        "caption",
        width=width,
    )
    return column(value, error, fig, table, explain)
