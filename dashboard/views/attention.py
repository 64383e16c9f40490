"""The attention lesson: one head's heatmap, every head at a glance, one query in detail.

Thin by design: the matrices come from the model's own outputs (``attn_scores``,
``attn_probs``) through :mod:`dashboard.lessons.attention`; this module only wires them to
plots and the plots' clicks back to the shared state.
"""

from __future__ import annotations

import html
from typing import ClassVar

import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, RadioButtonGroup

from dashboard.lessons.attention import (
    STAGES,
    head_stage,
    heads_of,
    mask_matrix,
    query_detail,
    sharing_html,
)
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import (
    PROB_PALETTE,
    SCORE_PALETTE,
    BarPlot,
    HeadGrid,
    MatrixPlot,
    query_title,
)
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import choice_group, head_controls, labelled, text_pane

JS = ("scores", "attention")  # the scores' kernel, then the lesson's page code

ABOUT = (
    "<b>What you see:</b> how one attention head spreads each token's attention over the "
    "tokens before it: its scores q·k/√d, the scores after the causal mask, and the "
    "probabilities after the softmax; every head of every layer at a glance; the selected "
    "query's row as bars. <b>Try:</b> click a tile of the grid to pick a head, click a cell "
    "(or press ← →) to pick a query, and find a head that looks at the previous token."
)


# The selected pair and its query's most attended keys, in both homes: the dashboard fills
# the slots in Python (detail_html), the snapshot in its page (js/attention.js).
PAIR = (
    "<p>Query <b class='tok'>{query}</b> · key <b class='tok'>{key}</b>: "
    "q·k/√d = <b class='num'>{score}</b>, probability <b class='num'>{prob}</b>.{masked}</p>"
)
MASKED = " The causal mask removes this pair: it becomes −∞."
TOP = "<p>Most attended (entropy {entropy} bits):</p><table class='top'>{rows}</table>"
TOP_ROW = (
    "<tr><td class='tok'>{token}</td><td class='num'>{prob}</td>"
    "<td><div class='bar' style='width:{width}%'></div></td></tr>"
)
PICK_HINT = (  # the dashboard's only: the snapshot has no keyboard stepping
    "<p class='hint'>Click a cell of the heatmap to pick a query and key; "
    "← → step through the queries.</p>"
)


def stage_mask(stage: str, t: int):
    """The causal mask the model used, for the stages it applies to (``None`` for the scores
    before it): the heatmap draws the keys it removed in the masked colour."""
    return None if stage == "scaled" else mask_matrix("causal", t)


def detail_html(labels: list[str], d: dict, query: int, key: int) -> tuple[str, str]:
    """The pair's text and the most-attended table for ``query_detail``'s result ``d``."""
    pair = PAIR.format(
        query=html.escape(labels[query]),
        key=html.escape(labels[key]),
        score=f"{d['score']:.3f}",
        prob=f"{d['prob']:.3f}",
        masked="" if d["allowed"] else MASKED,
    )
    rows = "".join(
        TOP_ROW.format(token=html.escape(labels[j]), prob=f"{p:.3f}", width=f"{100 * p:.1f}")
        for j, p in d["top"]
    )
    return pair, TOP.format(entropy=f"{d['entropy']:.2f}", rows=rows)


class AttentionOptions(Options):
    """The attention lesson's own option (layer, head, query and key are shared)."""

    url: ClassVar[dict[str, str]] = {"stage": "stage"}

    stage = param.Selector(default="probs", objects=list(STAGES), doc="Heatmap stage.")


class AttentionLesson(LessonView):
    """Heatmap of the selected layer and head at the selected stage; tap a cell for details;
    tap a tile of the all-heads grid to select that head."""

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        self._heatmap = MatrixPlot(style, style.matrix, kind="probs", name="heatmap")
        self._heatmap.on_tap(self._select_pair)
        self._grid = HeadGrid(style, style.grid, title="Every head (click one)")
        self._grid.on_tap(lambda layer, head: s.param.update(layer=layer, head=head))
        self._bars = BarPlot(style)
        self._pair = text_pane("", "pair", sizing_mode="stretch_width")
        self._top = text_pane("", "top-attended", sizing_mode="stretch_width")
        self._sharing = text_pane(
            "", "caption", "kv-sharing", margin=(0, 10), sizing_mode="stretch_width"
        )
        stage = choice_group(s, "stage", {label: key for key, label in STAGES.items()})
        # the heatmap and the grid side by side on a laptop and a projector, the detail below
        width = style.matrix + style.colorbar + 10
        # stretch_width (what its children ask for) within the column's width; a fixed width
        # here too would only make Panel warn and turn it into this min_width
        self._controls = pn.FlexBox(
            head_controls(s), labelled("Stage", stage), margin=0, sizing_mode="stretch_width"
        )
        self._layout = pn.FlexBox(
            pn.Column(
                self._controls,
                pn.pane.Bokeh(self._heatmap.figure, margin=(5, 5)),
                margin=0,
                width=width,  # on a phone, the page's width (PHONE_CSS): the figures scale
            ),
            pn.Column(
                pn.pane.Bokeh(self._grid.figure, margin=(5, 5)),
                text_pane(
                    "Each tile is one head's attention probabilities (rows: queries, "
                    "columns: keys). Heads in the same layer read the same input in "
                    "different ways.",
                    "caption",
                    margin=(0, 10),
                    sizing_mode="stretch_width",
                ),
                self._sharing,
                margin=0,
                width=self._grid.size + 10,
            ),
            pn.Column(
                text_pane("<h3>The selected query</h3>", "detail", margin=(0, 10)),
                pn.pane.Bokeh(self._bars.figure, margin=(5, 5)),
                self._pair,
                self._top,
                margin=0,
                width=style.detail[0] + 20,  # fixed: long text wraps instead of widening it
                css_classes=["detail"],
            ),
            gap="10px",
            sizing_mode="stretch_width",
        )
        self._draw()
        self._draw_grid()

    def _select_pair(self, query: int, key: int) -> None:
        self.state.param.update(query=query, key=key)

    def _matrices(self):
        f, s = self.state.forward, self.state
        return f.attn_scores[s.layer, s.head], f.attn_probs[s.layer, s.head]

    @param.depends("state.forward", "state.layer", "state.head", "state.stage", watch=True)
    @draws
    def _draw(self) -> None:
        s = self.state
        if s.forward is None:
            return
        scaled, probs = self._matrices()
        self._heatmap.kind = "probs" if s.stage == "probs" else "scores"
        self._heatmap.update(
            head_stage(scaled, probs, s.stage),
            s.labels,
            selected=(s.query, s.key),
            allowed=stage_mask(s.stage, len(probs)),
            title=f"Layer {s.layer}, head {s.head}: {STAGES[s.stage]}",
        )
        self._grid.select(s.layer, s.head)
        self._sharing.object = sharing_html(*heads_of(s.config), s.head)
        self._detail()

    @param.depends("state.forward", watch=True)
    @draws
    def _draw_grid(self) -> None:
        s = self.state
        if s.forward is not None:
            probs = s.forward.attn_probs
            causal = mask_matrix("causal", probs.shape[-1])
            self._grid.update(probs, s.labels, s.layer, s.head, allowed=causal)

    @param.depends("state.query", "state.key", watch=True)
    @draws
    def _select(self) -> None:
        s = self.state
        if s.forward is not None:
            self._heatmap.select((s.query, s.key))
            self._detail()

    def _detail(self) -> None:
        s = self.state
        scaled, probs = self._matrices()
        d = query_detail(scaled, probs, s.query, s.key)
        labels = s.labels
        self._bars.update(d["row"], labels, s.key, query_title(labels[s.query], self.style))
        pair, top = detail_html(labels, d, s.query, s.key)
        self._pair.object = pair + PICK_HINT
        self._top.object = top

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------
# The attention lesson, offline: one head's heatmap at a stage, every head as a grid (click
# a tile to select it), and the selected query's attention as bars.
#
# Built from the dashboard's own plot classes; the callbacks in ``js/attention.js`` slice the
# embedded (layer, head, query, key) arrays instead of asking a server.
#


def snapshot(ctx: Context):
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
    k = ctx.key
    l_, h_, st = layer.active, head.active, stages[stage.active]

    kind = "probs" if st == "probs" else "scores"
    heatmap = MatrixPlot(style, style.matrix, kind=kind, name="heatmap")
    scaled, probs = f.attn_scores[l_, h_], f.attn_probs[l_, h_]
    heatmap.update(
        head_stage(scaled, probs, st),
        ctx.labels,
        selected=(q, k),
        allowed=stage_mask(st, t),
        title=f"Layer {l_}, head {h_}: {STAGES[st]}",
    )
    grid = HeadGrid(style, style.grid, title="Every head (click one)")
    grid.update(f.attn_probs, ctx.labels, l_, h_, tiles=False)
    bars = BarPlot(style)
    bars.source.name = "attention-bars"
    d = query_detail(scaled, probs, q, k)
    bar_titles = [query_title(label, style) for label in ctx.labels]
    bars.update(d["row"], ctx.labels, k, bar_titles[q])
    picked = ColumnDataSource(data=dict(query=[q], key=[k]), name="attention-pick")
    detail = div(ctx, "", "detail", name="attention-detail")

    args = dict(
        data=ctx.attention_data(),
        **ctx.scores_args(),
        L=n_layer,
        H=n_head,
        T=t,
        layer=layer,
        head=head,
        stage=stage,
        stages=stages,
        stage_labels=list(STAGES.values()),
        image=heatmap.source,
        removed=heatmap.removed,
        labels=ctx.labels,
        bar_titles=bar_titles,
        mapper=heatmap.mapper,
        fig=heatmap.figure,
        selection=heatmap.selection,
        grid_sel=grid.selection,
        grid_meta=grid.meta,
        grid_src=grid.source,
        grid_removed=grid.removed,
        bars=bars.source,
        bars_fig=bars.figure,
        picked=picked,
        detail=detail,
        prob_palette=list(PROB_PALETTE),
        score_palette=list(SCORE_PALETTE),
        accent=style.accent,
        pair_t=PAIR,
        masked_t=MASKED,
        top_t=TOP,
        row_t=TOP_ROW,
        bar_color="#6fa8dc" if style.classroom else "#4c78a8",
    )
    redraw = callback(JS, "draw()", **args)
    for widget in (layer, head, stage):
        widget.js_on_change("active", redraw)
    heatmap.figure.js_on_event("tap", callback(JS, "tap_heatmap(cb_obj)", **args))
    grid.figure.js_on_event("tap", callback(JS, "tap_grid(cb_obj)", **args))
    ctx.on_ready(callback(JS, "draw_grid(); draw()", **args))  # the first detail text
    # comes from the same code as every later one

    caption = div(
        ctx,
        "Each tile is one head's attention probabilities (rows: queries, columns: keys). "
        "Click a tile to select that head; click a heatmap cell to pick a query and key.",
        "caption",
        width=grid.size,
    )
    sharing = div(
        ctx,
        sharing_html(*heads_of(ctx.config)),
        "caption",
        "kv-sharing",
        name="kv-sharing",
        width=grid.size,
    )
    controls = row(
        column(div(ctx, "<b>Layer</b>", "explain"), layer),
        column(div(ctx, "<b>Head</b>", "explain"), head),
        column(div(ctx, "<b>Stage</b>", "explain"), stage),
    )
    return column(
        controls,
        row(
            heatmap.figure, column(grid.figure, caption, sharing)
        ),  # as the dashboard: the detail below
        column(bars.figure, detail),
    )
