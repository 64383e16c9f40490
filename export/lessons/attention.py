"""The attention lesson, offline: one head's heatmap at a stage, every head as a grid (click
a tile to select it), and the selected query's attention as bars.

Built from the dashboard's own plot classes; the callbacks in ``js/attention.js`` slice the
embedded (layer, head, query, key) arrays instead of asking a server.
"""

from __future__ import annotations

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, RadioButtonGroup

from dashboard.lessons.attention import head_stage, query_detail
from dashboard.state import STAGES
from dashboard.views.plots import (
    PROB_PALETTE,
    SCORE_PALETTE,
    BarPlot,
    HeadGrid,
    MatrixPlot,
    query_title,
)
from export.common import Context, callback, div


def index_buttons(ctx: Context, n: int, active: int, name: str) -> RadioButtonGroup:
    """Buttons 0..n-1 (a layer or head picker)."""
    return RadioButtonGroup(
        labels=[str(i) for i in range(n)],
        active=min(max(active, 0), n - 1),
        name=name,
        stylesheets=[ctx.stylesheet],
    )


def build(ctx: Context):
    s, style, f = ctx.selection, ctx.style, ctx.forward
    n_layer, n_head, t = f.attn_probs.shape[:3]
    layer = index_buttons(ctx, n_layer, s.layer, "attention-layer")
    head = index_buttons(ctx, n_head, s.head, "attention-head")
    stages = list(STAGES)
    stage = RadioButtonGroup(
        labels=list(STAGES.values()),
        active=stages.index(s.stage) if s.stage in stages else stages.index("probs"),
        name="attention-stage",
        stylesheets=[ctx.stylesheet],
    )
    q = ctx.query
    k = q if s.key is None else min(max(int(s.key), 0), q)
    l_, h_, st = layer.active, head.active, stages[stage.active]

    kind = "probs" if st == "probs" else "scores"
    heatmap = MatrixPlot(style, style.matrix, kind=kind, name="heatmap")
    scaled, probs = f.attn_scores[l_, h_], f.attn_probs[l_, h_]
    heatmap.update(
        head_stage(scaled, probs, st),
        ctx.labels,
        selected=(q, k),
        title=f"Layer {l_}, head {h_}: {STAGES[st]}",
    )
    grid = HeadGrid(style, style.grid, title="Every layer and head (click to select)")
    grid.update(f.attn_probs, ctx.labels, l_, h_)
    bars = BarPlot(style)
    bars.source.name = "attention-bars"
    d = query_detail(scaled, probs, q, k)
    bar_titles = [query_title(label, style) for label in ctx.labels]
    bars.update(d["row"], ctx.labels, k, bar_titles[q])
    picked = ColumnDataSource(data=dict(query=[q], key=[k]), name="attention-pick")
    detail = div(ctx, "", "detail", name="attention-detail")

    args = dict(
        data=ctx.attention_data(),
        L=n_layer,
        H=n_head,
        T=t,
        layer=layer,
        head=head,
        stage=stage,
        stages=stages,
        stage_labels=list(STAGES.values()),
        image=heatmap.source,
        labels=ctx.labels,
        bar_titles=bar_titles,
        mapper=heatmap.mapper,
        fig=heatmap.figure,
        selection=heatmap.selection,
        grid_sel=grid.selection,
        grid_meta=grid.meta,
        bars=bars.source,
        bars_fig=bars.figure,
        picked=picked,
        detail=detail,
        prob_palette=list(PROB_PALETTE),
        score_palette=list(SCORE_PALETTE),
        accent=style.accent,
        bar_color="#6fa8dc" if style.classroom else "#4c78a8",
    )
    redraw = callback("attention", "draw()", **args)
    for widget in (layer, head, stage):
        widget.js_on_change("active", redraw)
    heatmap.figure.js_on_event("tap", callback("attention", "tap_heatmap(cb_obj)", **args))
    grid.figure.js_on_event("tap", callback("attention", "tap_grid(cb_obj)", **args))
    ctx.on_ready(redraw)  # the first detail text comes from the same code as every later one

    caption = div(
        ctx,
        "Each tile is one head's attention probabilities (rows: queries, columns: keys). "
        "Click a tile to select that head; click a heatmap cell to pick a query and key.",
        "caption",
        width=grid.size,
    )
    controls = row(
        column(div(ctx, "<b>Layer</b>", "explain"), layer),
        column(div(ctx, "<b>Head</b>", "explain"), head),
        column(div(ctx, "<b>Stage</b>", "explain"), stage),
    )
    return column(
        controls,
        row(heatmap.figure, column(bars.figure, detail)),
        column(grid.figure, caption),
    )
