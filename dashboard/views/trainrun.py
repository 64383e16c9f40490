"""The "The training run" lesson: the build's own record of every model it trained.

Per step: the training loss (and its 50-step mean, what the progress bar showed), the learning
rate (warm-up, then cosine), the gradient norm before clipping (with the clip) and the norm of
all the weights; the validation loss every few steps. Every model of the manifest that the build
trained, side by side; a tap on a legend entry hides that model. From the records through
:func:`dashboard.lessons.training.read_run`; the snapshot holds the same figures.
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, HoverTool, LegendItem, Span

from dashboard.lessons import training as TR
from dashboard.views.offline import Context, div
from dashboard.views.plots import PlotStyle, add_legend, styled_figure
from dashboard.views.registry import LessonView
from dashboard.views.widgets import text_pane

ABOUT = (
    "<b>What you see:</b> how the build trained each model, from the record it wrote while "
    "training: the loss at every step and on held-out text every few steps, the learning-rate "
    "schedule, the gradient's norm before clipping and the size of the weights. <b>Try:</b> "
    "find where the warm-up ends; compare where each model's validation loss stops falling; "
    "tap a model in a legend to hide it."
)

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#9d755d")
SIZES = {
    "loss": {False: (760, 320), True: (1100, 440)},
    "small": {False: (760, 220), True: (1100, 300)},
}
NONE = (
    "<p class='message error'>No model of this manifest was trained by the build, so there is "
    "no training run to draw.</p>"
)
ROW = (
    "<tr><td class='tok'>{name}</td><td class='num'>{val_start}</td><td class='num'>{val_end}"
    "</td><td class='num'>{best}</td><td class='num'>{train}</td><td class='num'>{clipped}</td>"
    "<td class='num'>{grad}</td><td class='num'>{weights}</td></tr>"
)
TABLE = (
    "<div style='overflow-x:auto;max-width:100%'><table class='run-table'><tr><th>model</th>"
    "<th>val. loss, start</th><th>end</th><th>lowest (step)</th><th>train loss (last {smooth})"
    "</th><th>steps clipped</th><th>median ‖g‖</th><th>‖weights‖</th></tr>{rows}</table></div>"
)


def records(engine) -> tuple[dict[str, TR.RunRecord], list[str]]:
    """Every manifest model's run record, and a line for each model that has none (why)."""
    out, missing = {}, []
    for name in engine.model_names:
        try:
            out[name] = TR.read_run(engine.static_dir, engine.entry(name))
        except ValueError as err:
            missing.append(str(err))
    return out, missing


def setting_html(recs: dict[str, TR.RunRecord], missing: list[str]) -> str:
    """The runs' shared schedule and the table of their figures (HTML)."""
    if not recs:
        return NONE + "".join(f"<p class='hint'>{html.escape(m)}</p>" for m in missing)
    first = next(iter(recs.values()))
    every = np.diff(first.val_steps)
    every = int(every[0]) if len(every) else first.steps
    rows = []
    for name, rec in recs.items():
        s = TR.run_summary(rec)
        rows.append(
            ROW.format(
                name=html.escape(name),
                val_start=f"{s.val_start:.3f}",
                val_end=f"{s.val_end:.3f}",
                best=f"{s.best_val:.3f} ({s.best_step})",
                train=f"{s.train_end:.3f}",
                clipped=f"{s.clipped} of {rec.steps}",
                grad=f"{s.grad_median:.3f}",
                weights=f"{s.weight_start:.1f} → {s.weight_end:.1f}",
            )
        )
    text = (
        f"<p>Each model: {first.steps} steps of AdamW, the learning rate rising linearly for "
        f"{first.warmup_steps} steps and then falling along a cosine; gradients clipped to norm "
        f"{first.grad_clip:g}. Validation loss: on the held-out text, every "
        f"{every} steps. Losses in nats.</p>"
    )
    table = TABLE.format(smooth=TR.SMOOTH, rows="".join(rows))
    hints = "".join(f"<p class='hint'>{html.escape(m)}</p>" for m in missing)
    return text + table + hints


def _figure(style: PlotStyle, size: str, title: str, name: str, ylabel: str, **kw):
    w, h = SIZES[size][style.classroom]
    fig = styled_figure(style, w, h, title, name=name, **kw)
    fig.xaxis.axis_label = "step"
    fig.yaxis.axis_label = ylabel
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    fig.yaxis.ticker.desired_num_ticks = 4
    return fig


def figures(style: PlotStyle, recs: dict[str, TR.RunRecord]) -> list:
    """The four figures: loss, learning rate, gradient norm, weight norm."""
    lw = 3 if style.classroom else 1.5
    loss = _figure(style, "loss", "Training and validation loss", "run-loss", "loss (nats)")
    lr = _figure(style, "small", "Learning rate", "run-lr", "learning rate")
    grad = _figure(
        style, "small", "Gradient norm before clipping", "run-grad", "‖gradient‖", y_axis_type="log"
    )
    weights = _figure(style, "small", "Norm of all the weights", "run-weights", "‖weights‖")
    items = {f: [] for f in ("loss", "lr", "grad", "weights")}
    hovers = {f: [] for f in items}
    for i, (name, rec) in enumerate(recs.items()):
        color = COLORS[i % len(COLORS)]
        steps = np.arange(rec.steps)
        f32 = np.float32  # what a figure needs, at half the snapshot's bytes
        src = ColumnDataSource(
            data=dict(
                step=steps.astype(np.int32),
                loss=rec.loss.astype(f32),
                mean=TR.smooth(rec.loss, TR.SMOOTH).astype(f32),
                lr=rec.lr.astype(f32),
                grad=rec.grad_norm.astype(f32),
                weights=rec.weight_norm.astype(f32),
            ),
            name=f"run-steps-{name}",
        )
        val = ColumnDataSource(
            data=dict(step=rec.val_steps.astype(np.int32), val=rec.val_loss.astype(f32)),
            name=f"run-val-{name}",
        )
        raw = loss.line(
            "step", "loss", source=src, color=color, alpha=0.18, line_width=1, name=name
        )
        mean = loss.line("step", "mean", source=src, color=color, line_width=lw, name=name)
        vline = loss.line("step", "val", source=val, color=color, line_width=lw, line_dash="dashed")
        vdots = loss.scatter("step", "val", source=val, color=color, size=lw + 4, name=name)
        items["loss"].append(LegendItem(label=name, renderers=[raw, mean, vline, vdots]))
        hovers["loss"] += [mean, vdots]
        for fig, key, field in (
            (lr, "lr", "lr"),
            (grad, "grad", "grad"),
            (weights, "weights", "weights"),
        ):
            r = fig.line("step", field, source=src, color=color, line_width=lw, name=name)
            items[key].append(LegendItem(label=name, renderers=[r]))
            hovers[key].append(r)
    loss.add_tools(
        HoverTool(
            renderers=hovers["loss"],
            tooltips=[
                ("", "$name"),
                ("step", "@step"),
                ("train (mean)", "@mean{0.000}"),
                ("validation", "@val{0.000}"),
            ],
        )
    )
    for fig, key, label, fmt in (
        (lr, "lr", "learning rate", "@lr{0.00000}"),
        (grad, "grad", "‖gradient‖", "@grad{0.000}"),
        (weights, "weights", "‖weights‖", "@weights{0.00}"),
    ):
        fig.add_tools(
            HoverTool(
                renderers=hovers[key], tooltips=[("", "$name"), ("step", "@step"), (label, fmt)]
            )
        )
    if recs:
        clip = next(iter(recs.values())).grad_clip
        grad.add_layout(
            Span(
                location=clip,
                dimension="width",
                line_dash="dotted",
                line_color=style.muted,
                line_width=2,
            )
        )
    add_legend(loss, style, items["loss"], "top_right", click_hides=True)
    add_legend(lr, style, items["lr"], "top_right", click_hides=True)
    add_legend(grad, style, items["grad"], "top_right", click_hides=True)
    add_legend(weights, style, items["weights"], "bottom_right", click_hides=True)
    return [loss, lr, grad, weights]


CAPTION = (
    "<p class='hint'>Faint: the loss of each step's batch of 32 windows (noisy: each batch is "
    "different). Solid: the mean of the last 50 steps. Dashed, with dots: the whole held-out "
    "text. The dotted line in the gradient figure is the clip: above it, the step was scaled "
    "down to norm 1.</p>"
)


class TrainRunLesson(LessonView):
    """The build's records, drawn; nothing here depends on the text."""

    def __init__(self, **params):
        super().__init__(**params)
        recs, missing = records(self.state.engine)
        self._figures = figures(self.style, recs)
        loss, *small = self._figures
        self._layout = pn.Column(
            pn.pane.Bokeh(loss, margin=(5, 5)),
            text_pane(CAPTION, "explain", "run-caption", sizing_mode="stretch_width"),
            text_pane(
                setting_html(recs, missing), "explain", "run-setting", sizing_mode="stretch_width"
            ),
            *(pn.pane.Bokeh(f, margin=(5, 5)) for f in small),
            margin=0,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


def snapshot(ctx: Context):
    recs, missing = records(ctx.engine)
    loss, *small = figures(ctx.style, recs)
    return column(
        loss,
        div(ctx, CAPTION, "explain", "run-caption"),
        div(ctx, setting_html(recs, missing), "explain", "run-setting"),
        *small,
    )
