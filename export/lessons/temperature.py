"""The temperature lesson, offline: the next-token distribution at a position, recomputed in
the browser (float64) from the embedded logits for any temperature, top-k and top-p, with the
rules of :mod:`dashboard.lessons.sampling` mirrored in ``js/temperature.js``."""

from __future__ import annotations

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d, Slider, TextInput

from dashboard.views.plots import next_token_title, styled_figure
from export.common import Context, callback, div

TOP_N = 20  # bars shown: the most likely tokens at T = 1
SLIDER_MAX = 5.0


def build(ctx: Context):
    s, style = ctx.selection, ctx.style
    t, v = ctx.forward.logits.shape
    logits = ColumnDataSource(
        data=dict(logits=np.ascontiguousarray(ctx.forward.logits, dtype=np.float32).ravel()),
        name="sampling-logits",
    )
    width = 420 if style.classroom else 300
    position = Slider(
        title="Position (predicts the token after it)",
        start=0,
        end=max(t - 1, 1),
        step=1,
        value=ctx.query,
        disabled=t == 1,
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
        value=f"{s.top_p:g}",
        width=width // 2 + 40,
        name="top-p-input",
        stylesheets=[ctx.stylesheet],
    )
    bars = ColumnDataSource(
        data=dict(x=[], tid=[], label=[], tempered=[], final=[], kept=[], color=[]),
        name="sampling-bars",
    )
    cuts = ColumnDataSource(data=dict(k=[s.top_k or 0], p=[float(s.top_p)]), name="sampling-cuts")
    w, h = style.bars
    fig = styled_figure(
        style,
        w + 120,
        h + 60,
        "",
        x_range=Range1d(-0.5, TOP_N - 0.5),
        y_range=Range1d(0, 1.05),
        name="sampling-figure",
    )
    fig.yaxis.axis_label = "probability"
    fig.xaxis.major_label_orientation = np.pi / 2
    fig.xaxis.ticker = FixedTicker(ticks=list(range(TOP_N)))
    fig.ygrid.visible = True
    fig.ygrid.grid_line_color = style.muted
    fig.ygrid.grid_line_alpha = 0.3
    drawn = fig.vbar(x="x", top="final", width=0.8, color="color", source=bars)
    fig.scatter(
        x="x",
        y="tempered",
        source=bars,
        marker="dash",
        size=30 if style.classroom else 16,
        line_width=3 if style.classroom else 2,
        color=style.accent,
    )
    fig.add_tools(
        HoverTool(
            renderers=[drawn],
            tooltips=[
                ("token", "@label"),
                ("id", "@tid"),
                ("sampled with", "@final{0.000000}"),
                ("softmax(x/T)", "@tempered{0.000000}"),
            ],
        )
    )
    summary = div(ctx, "", "summary", name="sampling-summary")
    error = div(ctx, "", "message", "error", name="sampling-error", visible=False)
    args = dict(
        logits=logits,
        T=t,
        V=v,
        N=min(TOP_N, v),
        position=position,
        temp=temp,
        k_input=k_input,
        p_input=p_input,
        bars=bars,
        cuts=cuts,
        fig=fig,
        axis=fig.xaxis[0],
        summary=summary,
        error=error,
        vocab=ctx.vocabulary(),
        labels=ctx.labels,
        next_titles=[next_token_title(label, style) for label in ctx.labels],
        kept_color="#6fa8dc" if style.classroom else "#4c78a8",
        cut_color=style.masked,
    )
    redraw = callback("temperature", "draw()", **args)
    for widget in (position, temp):
        widget.js_on_change("value", redraw)
    for widget in (k_input, p_input):
        widget.js_on_change("value", callback("temperature", "read_cuts(); draw()", **args))
    ctx.on_ready(callback("temperature", "read_cuts(); draw()", **args))
    explain = div(
        ctx,
        "Bars: the probability each of the most likely tokens is sampled with, after "
        "temperature, top-k and top-p (grey: cut). Dashes: softmax(logits / T) before the "
        "cuts. T = 0 is greedy: all the probability on the most likely token.",
        "caption",
        width=w,
    )
    return column(
        row(position, temp),
        row(k_input, p_input),
        error,
        summary,
        fig,
        explain,
    )
