"""The "GPT and LLaMA, measured" lesson: what the build measured on its two recipes.

A table of each recipe and its figures (parameters, losses, KV cache) and a chart of the loss
at each position of held-out text, the RoPE model's line going on past the trained length.
Every number is read from the manifest by :mod:`dashboard.lessons.recipes`; nothing here runs a
model, so both homes draw the same figures from the same records. The snapshot embeds the
loss per position and ``js/recipes.js`` buckets it as ``bucket_columns`` does.
"""

from __future__ import annotations

import html
from typing import ClassVar

import panel as pn
import param
from bokeh.layouts import column
from bokeh.models import (
    ColumnDataSource,
    HoverTool,
    Label,
    Legend,
    LegendItem,
    RadioButtonGroup,
    Span,
)

from dashboard.lessons import recipes as R
from dashboard.views.offline import Context, callback, div
from dashboard.views.plots import PlotStyle, styled_figure
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import choice_group, labelled, text_pane

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d")
SIZE = {False: (720, 400), True: (1240, 470)}  # the chart, normal and classroom (a projector)
CHART_TITLE = "Loss per position, held-out text"
CAPTION = (
    "<p class='hint'>Each point is the mean next-token loss over {width} position{s} of "
    "held-out text (the last bucket may be shorter); lower is better. The dashed line is the "
    "trained length: every model saw {block} positions at a time in training.</p>"
)

ABOUT = (
    "<b>What you see:</b> the GPT-2 recipe and the LLaMA recipe, trained by the build on the "
    "same text for the same steps with the same seed, side by side: their parts, size, "
    "validation loss against a unigram baseline, and KV cache per token; then their loss at "
    "each position of held-out text, the RoPE model's line going on past the length it was "
    "trained on. <b>Try:</b> average over 1 position to see the noise, then 32 to see the "
    "trend; compare the two lines just after position 0 and past the dashed line."
)


class RecipesOptions(Options):
    """The recipes lesson's options."""

    url: ClassVar[dict[str, str]] = {"bucket": "bucket"}

    bucket = param.Selector(
        default=16, objects=list(R.BUCKET_WIDTHS), doc="Positions averaged into one point."
    )


# -- what both homes show ---------------------------------------------------------------------
def manifest_entries(engine) -> dict[str, dict]:
    """Every model's manifest record, in the manifest's order."""
    return {} if engine is None else {n: engine.entry(n) for n in engine.model_names}


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n >= 1024 else f"{n:,} B"


# (row label, the cell of a RecipeRow): the table's rows, one column per model
TABLE_ROWS = (
    ("norm", lambda r: r.norm),
    ("positions", lambda r: r.positions),
    ("MLP", lambda r: r.mlp),
    ("query heads / key-value heads", lambda r: f"{r.n_head} / {r.n_kv_head}"),
    ("biases", lambda r: "yes" if r.bias else "no"),
    ("parameters", lambda r: f"{r.n_params:,}"),
    ("validation loss (nats)", lambda r: f"{r.val_loss:.3f}"),
    ("unigram baseline (nats)", lambda r: f"{r.unigram:.3f}"),
    ("below unigram", lambda r: f"{100 * r.below_unigram:.1f}%"),
    (
        "KV cache per token",
        lambda r: f"{r.kv_bytes_per_token:,} B" + ("" if r.kv_measured else " (from config)"),
    ),
    ("KV cache per full block", lambda r: f"{_kib(r.kv_bytes_per_block)} ({r.block_size} tokens)"),
    ("training time", lambda r: "—" if r.seconds is None else f"{r.seconds:,.0f} s"),
)
CELL = "padding: 0.15em 0.6em 0.15em 0; text-align: left; vertical-align: top"


def recipes_table(rows: list[R.RecipeRow], best: str | None) -> str:
    """The table as HTML: a row per figure, a column per model; the lower validation loss in
    bold (class ``best``)."""
    if not rows:
        return "<p>No model in the manifest has a training record to show.</p>"
    head = "".join(f"<th style='{CELL}'>{html.escape(r.model)}</th>" for r in rows)
    body = []
    for label, cell in TABLE_ROWS:
        cells = []
        for r in rows:
            mark = label.startswith("validation") and r.model == best
            attrs = " class='best'" if mark else ""
            text = f"<b>{cell(r)}</b>" if mark else cell(r)
            cells.append(
                f"<td{attrs} data-model='{html.escape(r.model)}' style='{CELL}'>{text}</td>"
            )
        body.append(f"<tr><td style='{CELL}'>{label}</td>{''.join(cells)}</tr>")
    return (
        "<table class='recipes-table' style='border-collapse: collapse'>"
        f"<tr><th style='{CELL}'></th>{head}</tr>{''.join(body)}</table>"
    )


def comparison_text(rows: list[R.RecipeRow], cmp: R.Comparison | None) -> str:
    """Which model reached the lower validation loss, by how much, worded as measured."""
    if cmp is None:
        return "<p>Only one trained model is in the manifest: there is nothing to compare.</p>"
    by = {r.model: r for r in rows}
    best, other = by[cmp.best], by[cmp.other]
    how = (
        f"both trained on the same text for {best.steps} steps with seed {best.seed}"
        if cmp.same_run
        else "trained with different steps or seeds, so not a like-for-like comparison"
    )
    return (
        f"<p>Measured on our models: <b>{html.escape(cmp.best)}</b> ({best.norm}, "
        f"{best.positions}, {best.mlp}) reached the lower validation loss, {best.val_loss:.3f} "
        f"nats against {html.escape(cmp.other)}'s {other.val_loss:.3f}: "
        f"<b>{cmp.nats:.3f} nats ({cmp.percent:.1f}%) lower</b>, {how}. One small run of "
        "each on one corpus: a measurement of these two models, not a general law.</p>"
    )


def positions_text(lines: list[R.PositionLoss]) -> str:
    """What each model's loss did at and past its trained length (the manifest's means)."""
    parts = []
    for p in lines:
        name, last = html.escape(p.model), p.block_size - 1
        if not p.rope:
            parts.append(
                f"<b>{name}</b> has learned positions: one trained vector for each of positions "
                f"0–{last}, so it cannot be asked past position {last} (there is no position "
                f"vector for position {p.block_size}). Its mean loss inside the block was "
                f"{p.mean_inside:.3f} nats."
            )
        elif p.mean_past is None:
            parts.append(
                f"<b>{name}</b> (RoPE) was measured inside its block only: mean loss "
                f"{p.mean_inside:.3f} nats."
            )
        else:
            change = p.mean_past - p.mean_inside
            word = "higher" if change > 0 else "lower"
            parts.append(
                f"<b>{name}</b> (RoPE) rotates queries and keys by their position, so it can be "
                f"run past its block: its mean loss was {p.mean_inside:.3f} nats inside the "
                f"trained length and {p.mean_past:.3f} past it, {abs(change):.3f} nats "
                f"({100 * abs(change) / p.mean_inside:.1f}%) {word}."
            )
    if not parts:
        return "<p>No model in the manifest has a loss-per-position record.</p>"
    windows = max(p.windows for p in lines)
    return f"<p>{' '.join(parts)} Measured over {windows} windows of held-out text.</p>"


def skipped_text(skipped: list[str]) -> str:
    """Which models are left out, and why (brought-in models have no build records)."""
    if not skipped:
        return ""
    names = ", ".join(html.escape(n) for n in skipped)
    return (
        f"<p class='hint'>Left out of the table and chart: {names}, which the build did not "
        "train here (no training or loss-per-position record in the manifest).</p>"
    )


def caption(width: int, block: int) -> str:
    return CAPTION.format(width=width, s="" if width == 1 else "s", block=block)


def bucketed(lines: list[R.PositionLoss], width: int) -> dict[str, dict]:
    """Each model's line at bucket width ``width``: the data of its source."""
    return {
        p.model: {**R.bucket_columns(p.loss, width), "model": [p.model] * -(-len(p.loss) // width)}
        for p in lines
    }


def label_height(data: dict[str, dict]) -> float:
    """The highest point of the lines (the top of the auto-ranged frame), for the label."""
    return max((max(d["loss"]) for d in data.values() if d["loss"]), default=0.0)


def loss_figure(style: PlotStyle, lines: list[R.PositionLoss], width: int, prefix: str = "recipes"):
    """The chart, in both homes: one line per model, the trained length as a dashed line.
    Returns the figure and each model's source (name ``<prefix>-line-<model>``; the
    positions lesson draws it too, under its own prefix)."""
    w, h = SIZE[style.classroom]
    fig = styled_figure(
        style, w, h, CHART_TITLE, name=f"{prefix}-loss", x_axis_label="position in the window"
    )
    fig.yaxis.axis_label = "loss (nats)"
    # few ticks: on a phone the chart scales down to a third of its height and more crowd
    fig.yaxis.ticker.desired_num_ticks = 4
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    data = bucketed(lines, width)
    sources, items = {}, []
    for i, p in enumerate(lines):
        src = ColumnDataSource(data=data[p.model], name=f"{prefix}-line-{p.model}")
        color = COLORS[i % len(COLORS)]
        lw = 4 if style.classroom else 2
        r = fig.line("x", "loss", source=src, line_width=lw, color=color)
        dots = fig.scatter("x", "loss", source=src, size=lw + 3, color=color)
        items.append(LegendItem(label=p.model, renderers=[r, dots]))
        sources[p.model] = src
    if lines:
        block = lines[0].block_size
        # between position block-1 (the last trained) and block (the first past it)
        fig.add_layout(
            Span(
                location=block - 0.5,
                dimension="height",
                line_dash="dashed",
                line_color=style.muted,
                line_width=2,
                name=f"{prefix}-block",
            )
        )
        # at the top of the frame (label_height), where no line is just past the block: the
        # learned-position line has ended and the RoPE one has not yet climbed
        fig.add_layout(
            Label(
                x=block + 1,
                y=label_height(data),
                text_baseline="top",
                text="trained length",
                text_color=style.muted,
                text_font_size=style.tick,
                name=f"{prefix}-block-label",
            )
        )
        fig.x_range.start, fig.x_range.end = -1, max(len(p.loss) for p in lines)
    legend = Legend(items=items, location="top_left", label_text_font_size=style.tick)
    legend.background_fill_alpha = 0.6
    legend.background_fill_color = style.background
    legend.label_text_color = style.text
    legend.border_line_color = None
    fig.add_layout(legend)
    fig.add_tools(
        HoverTool(
            renderers=[r for it in items for r in it.renderers[1:]],
            tooltips=[("", "@model"), ("positions", "@first–@last"), ("loss", "@loss{0.000}")],
        )
    )
    return fig, sources


def lesson_texts(engine) -> dict[str, object]:
    """Everything the lesson shows that does not depend on the bucket width."""
    entries = manifest_entries(engine)
    rows, skipped_rows = R.recipe_rows(entries)
    lines, skipped_lines = R.position_losses(entries)
    cmp = R.compare(rows)
    skipped = [n for n in entries if n in skipped_rows or n in skipped_lines]
    return {
        "rows": rows,
        "lines": lines,
        "table": recipes_table(rows, cmp.best if cmp else None),
        "comparison": comparison_text(rows, cmp),
        "positions": positions_text(lines),
        "skipped": skipped_text(skipped),
        "block": lines[0].block_size if lines else (rows[0].block_size if rows else 0),
    }


class RecipesLesson(LessonView):
    """The two recipes' table and their loss per position, from the manifest."""

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self._t = lesson_texts(s.engine)
        self._fig, self._sources = loss_figure(self.style, self._t["lines"], s.bucket)
        buttons = choice_group(
            s, "bucket", {str(w): w for w in R.BUCKET_WIDTHS}, css_classes=["recipes-bucket"]
        )
        self._caption = text_pane("", "explain")
        self._positions = text_pane(self._t["positions"], "explain")
        self._table = text_pane(self._t["table"], "recipes-table-pane")
        self._layout = pn.Column(
            pn.FlexBox(
                labelled("Average over (positions)", buttons),
                margin=0,
                css_classes=["controls"],
                sizing_mode="stretch_width",
            ),
            pn.pane.Bokeh(self._fig, margin=(5, 5)),
            self._caption,
            self._positions,
            text_pane(self._t["comparison"], "explain"),
            self._table,
            text_pane(self._t["skipped"], "explain", visible=bool(self._t["skipped"])),
            sizing_mode="stretch_width",
            margin=0,
        )
        self._draw()

    @param.depends("state.bucket", watch=True)
    @draws
    def _draw(self) -> None:
        width = self.state.bucket
        data = bucketed(self._t["lines"], width)
        for name, columns in data.items():
            self._sources[name].data = columns
        if label := self._fig.select_one({"name": "recipes-block-label"}):
            label.y = label_height(data)
        self._caption.object = caption(width, self._t["block"])

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------
# The same table, texts and chart; each model's loss per position is embedded and
# ``js/recipes.js`` buckets it when a width button is pressed (bucket_columns, in JS).


def snapshot(ctx: Context):
    t = lesson_texts(ctx.engine)
    widths = list(R.BUCKET_WIDTHS)
    chosen = ctx.selection.bucket if ctx.selection.bucket in widths else RecipesOptions.bucket
    buttons = RadioButtonGroup(
        labels=[str(w) for w in widths],
        active=widths.index(chosen),
        name="recipes-bucket",
        stylesheets=[ctx.stylesheet],
    )
    fig, sources = loss_figure(ctx.style, t["lines"], chosen)
    cap = div(ctx, caption(chosen, t["block"]), "explain", name="recipes-caption")
    redraw = callback(
        "recipes",
        "draw()",
        buttons=buttons,
        widths=widths,
        sources=list(sources.values()),
        # each model's loss per position; js/recipes.js buckets it (a few KB, not every width)
        losses=[[float(x) for x in p.loss] for p in t["lines"]],
        names=[p.model for p in t["lines"]],
        caption=cap,
        template=CAPTION,
        block=t["block"],
        label=fig.select_one({"name": "recipes-block-label"}),
        heights=[label_height(bucketed(t["lines"], w)) for w in widths],
    )
    buttons.js_on_change("active", redraw)
    return column(
        div(ctx, "<b>Average over (positions)</b>", "explain"),
        buttons,
        fig,
        cap,
        div(ctx, t["positions"], "explain", name="recipes-positions"),
        div(ctx, t["comparison"], "explain", name="recipes-comparison"),
        div(ctx, t["table"], "explain", name="recipes-table"),
        *([div(ctx, t["skipped"], "explain", name="recipes-skipped")] if t["skipped"] else []),
    )
