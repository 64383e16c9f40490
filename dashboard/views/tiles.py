"""The "FlashAttention's tiles" lesson: one head's attention computed a tile at a time.

For the selected layer and head, the model's own q, k and v; the query block that holds the
selected token; a stepper over its key blocks showing, for every row of the block, the
running maximum m, the running sum l and the output so far (rescaled each time a larger score
turns up), ending on the full softmax's result (the maximum difference is shown, and the
difference from the model's own probabilities times the values). Beside it the memory the
whole T × T matrix would take against one tile. Computed by
:func:`dashboard.lessons.tiles.tiled_attention`; in the snapshot by its twin in
``js/tiles.js`` over the q, k and v the Q/K/V lesson embeds.
"""

from __future__ import annotations

import html
from typing import ClassVar

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import Button, ColumnDataSource, RadioButtonGroup
from bokeh.transform import factor_cmap

from dashboard.lessons import tiles as TL
from dashboard.lessons.attention import heads_of, kv_head, mask_matrix
from dashboard.lessons.kvcache import human_bytes, load_benchmark
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import PROB_PALETTE, MatrixPlot, PlotStyle, RowMatrix
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import choice_group, head_controls, labelled, text_pane
from models.runtime import EngineError

ABOUT = (
    "<b>What you see:</b> one head's attention computed the way FlashAttention does it: a "
    "block of queries meets the keys one block at a time, and each row keeps only a running "
    "maximum m, a running sum l and its output so far, rescaled whenever a larger score "
    "turns up; the T × T matrix is never written. After the last key block the output is "
    "the full softmax's, to rounding. <b>Try:</b> step through the key blocks and watch m "
    "jump and l shrink; pick another token to move to its query block; make the blocks "
    "smaller and count the steps."
)

BLOCKS = (2, 4, 8, 16, 32)
OUTPUTS = ("q", "k", "v")
OUTPUT_SIZE = {False: (460, 300), True: (640, 400)}
MEMORY_TOKENS = (1024, 4096, 32768, 131072)

# Both homes fill these (the snapshot in its page, with py_fixed / py_exp).
STEP_TEXT = (
    "<p>Query block {qb} (rows {r0}–{r1}), key block {kb} of {nk} (keys {c0}–{c1}): step "
    "{step} of {nsteps}.{done}</p>"
)
DONE = (
    " All of this block's keys are in: its output equals the full softmax's within {full} "
    "and the model's own probabilities times the values within {model}."
)
ROW = "<tr><td class='tok'>{token}</td><td class='num'>{m}</td><td class='num'>{l}</td></tr>"
TABLE = "<table class='tiles-rows'><tr><th>query</th><th>m</th><th>l</th></tr>{rows}</table>"


class TilesOptions(Options):
    """The lesson's options (layer, head and the query token are the shared selection)."""

    url: ClassVar[dict[str, str]] = {"block_q": "bq", "block_k": "bk", "tile_step": "step"}

    block_q = param.Selector(default=8, objects=list(BLOCKS), doc="Query rows per block.")
    block_k = param.Selector(default=8, objects=list(BLOCKS), doc="Keys per block.")
    tile_step = param.Integer(default=0, bounds=(0, None), doc="Key blocks taken in, minus one.")


def memory_html(n_head: int) -> str:
    """The scores' bytes, whole matrix vs one tile per head, for a few context lengths."""
    rows = "".join(
        f"<tr><td class='num'>{t:,}</td>"
        f"<td class='num'>{human_bytes(TL.score_bytes(t, n_head, 2))}</td>"
        f"<td class='num'>{human_bytes(TL.score_bytes(t, n_head, 2, 128, 64))}</td></tr>"
        for t in MEMORY_TOKENS
    )
    return (
        f"<p>The scores of {n_head} heads in fp16: the whole T × T matrix per head, against "
        "one 128 × 64 tile per head with its rows' m and l (FlashAttention-2's default "
        "tile on an A100 is of that order):</p><table class='tiles-memory'><tr><th>T</th>"
        f"<th>whole</th><th>tiles</th></tr>{rows}</table>{measured_html(load_benchmark('tiles'))}"
    )


def measured_html(result: dict | None) -> str:
    """The tiles benchmark's peak memory, whole matrix against tiles, as measured."""
    if not result:
        return (
            "<p class='hint'>The peak memory of whole against tiled attention is measured by "
            "<code>make bench</code> (benchmarks/bench_tiles.py); it has not been run here.</p>"
        )
    peak, b = result["peak_bytes"], result["block"]
    return (
        f"<p class='hint'>Measured in numpy (benchmarks/bench_tiles.py): causal attention of one "
        f"head at T = {result['t']:,}, d = {result['d']} peaks at "
        f"{human_bytes(peak['full'])} whole and {human_bytes(peak['tiled'])} in {b} × {b} tiles "
        f"({peak['full'] / peak['tiled']:.0f}× less).</p>"
    )


def tile_rects(t: int, bq: int, bk: int, qb: int, kb: int) -> dict[str, list]:
    """The rectangles over the heatmap: the current tile, and the key blocks already taken."""
    r0, r1 = qb * bq, min((qb + 1) * bq, t)
    x, y, w, h, color = [], [], [], [], []
    for j in range(kb + 1):
        c0, c1 = j * bk, min((j + 1) * bk, t)
        x.append((c0 + c1 - 1) / 2)
        y.append((r0 + r1 - 1) / 2)
        w.append(c1 - c0)
        h.append(r1 - r0)
        color.append("current" if j == kb else "done")
    return dict(x=x, y=y, w=w, h=h, kind=color)


class Figures:
    def __init__(self, style: PlotStyle):
        self.style = style
        self.probs = MatrixPlot(style, style.matrix, kind="probs", name="tiles-probs")
        self.rects = ColumnDataSource(data=tile_rects(1, 1, 1, 0, 0), name="tiles-rects")
        self.probs.figure.rect(
            "x",
            "y",
            "w",
            "h",
            source=self.rects,
            fill_alpha=0,
            line_width=4 if style.classroom else 2,
            line_color=factor_cmap("kind", [style.accent, style.muted], ["current", "done"]),
        )
        self.output = RowMatrix(
            style,
            *OUTPUT_SIZE[style.classroom],
            "Output so far",
            name="tiles-output",
            x_label="dimension of the head",
        )


def block_steps(f, config, layer: int, head: int, query: int, bq: int, bk: int):
    """The query block holding ``query`` and its steps (TileStep list)."""
    n_head, n_kv = heads_of(config)
    kv = kv_head(head, n_head, n_kv)
    t = f.q.shape[2]
    bq, bk = min(bq, t), min(bk, t)
    out, steps = TL.tiled_attention(f.q[layer, head], f.k[layer, kv], f.v[layer, kv], bq, bk)
    qb = query // bq
    return out, [s for s in steps if s.query_block == qb], qb, bq, bk


def step_html(labels, step, nsteps, index, full_diff, model_diff, nk) -> str:
    r0, r1 = step.rows
    c0, c1 = step.keys
    done = (
        DONE.format(full=f"{full_diff:.1e}", model=f"{model_diff:.1e}")
        if index == nsteps - 1
        else ""
    )
    rows = "".join(
        ROW.format(
            token=html.escape(labels[r0 + i]), m=f"{step.m[0, i]:.4f}", l=f"{step.l[0, i]:.4f}"
        )
        for i in range(r1 - r0)
    )
    text = STEP_TEXT.format(
        qb=step.query_block,
        r0=r0,
        r1=r1 - 1,
        kb=step.key_block,
        nk=nk,
        c0=c0,
        c1=c1 - 1,
        step=index + 1,
        nsteps=nsteps,
        done=done,
    )
    return text + TABLE.format(rows=rows)


def draw_step(figs: Figures, f, forward, config, labels, layer, head, query, bq, bk, index):
    """Draw the step ``index`` of the query block holding ``query`` (both homes); returns the
    step's text (HTML) and the block's number of steps."""
    _, steps, qb, bq, bk = block_steps(f, config, layer, head, query, bq, bk)
    index = min(index, len(steps) - 1)
    step = steps[index]
    t = len(labels)
    n_head, n_kv = heads_of(config)
    kv = kv_head(head, n_head, n_kv)
    full = TL.full_attention(f.q[layer, head], f.k[layer, kv], f.v[layer, kv])
    r0, r1 = step.rows
    rows = f"rows {r0}–{r1 - 1}"
    figs.probs.update(
        forward.attn_probs[layer, head],
        labels,
        (query, query),
        allowed=mask_matrix("causal", t),
        title=f"Layer {layer}, head {head}: {len(steps)} tiles",
    )
    figs.rects.data = tile_rects(t, bq, bk, qb, step.key_block)
    figs.output.update(step.output[0], labels[r0:r1], title=f"Output so far, {rows}")
    full_diff = float(np.abs(step.output[0] - full[r0:r1]).max())
    model = forward.attn_probs[layer, head, r0:r1].astype(np.float64) @ f.v[layer, kv]
    model_diff = float(np.abs(step.output[0] - model).max())
    text = step_html(labels, step, len(steps), index, full_diff, model_diff, -(-t // bk))
    return text, len(steps)


class TilesLesson(LessonView):
    """The tiled attention of the selected head, step by step."""

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self._f = Figures(self.style)
        self._f.probs.on_tap(lambda i, j: s.param.update(query=i, tile_step=0))
        blocks = {str(b): b for b in BLOCKS}
        back = pn.widgets.Button(label="◀ Back", css_classes=["tiles-back"])
        nxt = pn.widgets.Button(label="Next ▶", css_classes=["tiles-next"])
        self._steps = 1  # the query block's steps, as last drawn
        back.on_click(lambda _e: s.param.update(tile_step=max(self._at() - 1, 0)))
        nxt.on_click(lambda _e: s.param.update(tile_step=min(self._at() + 1, self._steps - 1)))
        self._text = text_pane("", "explain", "tiles-step", sizing_mode="stretch_width")
        self._message = text_pane(
            "", "message", "error", visible=False, sizing_mode="stretch_width"
        )
        self._memory = text_pane(memory_html(int(s.config["n_head"])), "explain", width=420)
        self._layout = pn.Column(
            self._message,
            pn.FlexBox(
                head_controls(s),
                labelled(
                    "Query block", choice_group(s, "block_q", blocks, css_classes=["tiles-bq"])
                ),
                labelled("Key block", choice_group(s, "block_k", blocks, css_classes=["tiles-bk"])),
                labelled("Key blocks", pn.Row(back, nxt, margin=0)),
                sizing_mode="stretch_width",
            ),
            pn.FlexBox(
                pn.pane.Bokeh(self._f.probs.figure, margin=(5, 5)),
                pn.Column(
                    pn.pane.Bokeh(self._f.output.figure, margin=(5, 5)),
                    self._text,
                    margin=0,
                    width=OUTPUT_SIZE[self.style.classroom][0] + 20,
                ),
                self._memory,
                sizing_mode="stretch_width",
            ),
            margin=0,
            sizing_mode="stretch_width",
        )
        self._draw()

    @param.depends(
        "state.forward",
        "state.layer",
        "state.head",
        "state.query",
        "state.block_q",
        "state.block_k",
        "state.tile_step",
        watch=True,
    )
    @draws
    def _draw(self) -> None:
        s = self.state
        if s.forward is None:
            return
        try:
            f = s.outputs(*OUTPUTS)
        except EngineError as err:  # an old model file without q, k, v
            self._message.object = f"<p>{html.escape(str(err))}</p>"
            self._message.visible = True
            return
        self._message.visible = False
        layer, head = min(s.layer, s.config["n_layer"] - 1), min(s.head, s.config["n_head"] - 1)
        query = min(s.query, s.n_tokens - 1)
        self._text.object, self._steps = draw_step(
            self._f,
            f,
            s.forward,
            s.config,
            s.labels,
            layer,
            head,
            query,
            s.block_q,
            s.block_k,
            s.tile_step,
        )

    def _at(self) -> int:
        """The step shown (a link's step past the block's last shows the last)."""
        return min(self.state.tile_step, self._steps - 1)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------------------------
# The same figures; js/tiles.js steps the online softmax over the embedded q, k and v (shared
# with the Q/K/V lesson), as tiles.tiled_attention does, and slices the shared probabilities.


def snapshot(ctx: Context):
    s, style = ctx.selection, ctx.style
    f = ctx.outputs(*OUTPUTS)
    cfg = ctx.config
    n_layer, n_head, t, d = f.q.shape
    n_kv = f.k.shape[1]
    layer = index_buttons(ctx, n_layer, s.layer, "tiles-layer")
    head = index_buttons(ctx, n_head, s.head, "tiles-head")
    labels = [str(b) for b in BLOCKS]
    bq = RadioButtonGroup(
        labels=labels, active=BLOCKS.index(s.block_q), name="tiles-bq", stylesheets=[ctx.stylesheet]
    )
    bk = RadioButtonGroup(
        labels=labels, active=BLOCKS.index(s.block_k), name="tiles-bk", stylesheets=[ctx.stylesheet]
    )
    back = Button(label="◀ Back", name="tiles-back", stylesheets=[ctx.stylesheet])
    nxt = Button(label="Next ▶", name="tiles-next", stylesheets=[ctx.stylesheet])
    figs = Figures(style)
    query = ctx.query
    index = s.tile_step
    html_text, _ = draw_step(
        figs,
        f,
        ctx.forward,
        cfg,
        ctx.labels,
        layer.active,
        head.active,
        query,
        s.block_q,
        s.block_k,
        index,
    )
    text = div(ctx, html_text, "explain", "tiles-step", name="tiles-step")
    state = ColumnDataSource(data=dict(query=[query], step=[index]), name="tiles-state")
    args = dict(
        q=ctx.output_data("q"),
        k=ctx.output_data("k"),
        v=ctx.output_data("v"),
        attention=ctx.attention_data(),
        L=n_layer,
        H=n_head,
        KV=n_kv,
        T=t,
        d=d,
        blocks=list(BLOCKS),
        layer=layer,
        head=head,
        bq=bq,
        bk=bk,
        state=state,
        labels=ctx.labels,
        image=figs.probs.source,
        removed=figs.probs.removed,
        fig=figs.probs.figure,
        rects=figs.rects,
        out_source=figs.output.source,
        out_mapper=figs.output.mapper,
        out_fig=figs.output.figure,
        out_labels=figs.output.labels,
        text=text,
        step_t=STEP_TEXT,
        done_t=DONE,
        row_t=ROW,
        table_t=TABLE,
        prob_palette=list(PROB_PALETTE),
    )
    for widget in (layer, head, bq, bk):
        widget.js_on_change(
            "active",
            callback("tiles", "state.data = {query: state.data.query, step: [0]}; draw()", **args),
        )
    back.js_on_event("button_click", callback("tiles", "move(-1)", **args))
    nxt.js_on_event("button_click", callback("tiles", "move(1)", **args))
    figs.probs.figure.js_on_event("tap", callback("tiles", "tap(cb_obj)", **args))
    caption = lambda title: column(div(ctx, f"<b>{title}</b>", "explain"))  # noqa: E731
    return column(
        row(
            column(caption("Layer"), layer),
            column(caption("Head"), head),
            column(caption("Query block"), bq),
            column(caption("Key block"), bk),
            column(caption("Key blocks"), row(back, nxt)),
        ),
        row(
            figs.probs.figure,
            column(figs.output.figure, text),
            div(ctx, memory_html(n_head), "explain", width=420),
        ),
    )
