"""The "Mixed precision" lesson: the build's own gradients in fp16 at a loss scale, and in bf16.

For one model (the session's, if the build trained it) and one of the four recorded steps: a
histogram of the sampled gradients' binades, shifted by the loss scale 2**k and coloured by
what fp16 does to them (flushed to zero, subnormal, normal, overflow), the counts for the
chosen scale, and the whole gradient's counts as the build's torch casts found them at 1, 2**8
and 2**16 and in bf16. From :mod:`dashboard.lessons.mixed_precision` (checked against torch
casts); the snapshot swaps the texts it holds for every step and scale and shifts the bars.
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
    BoxAnnotation,
    ColumnDataSource,
    HoverTool,
    RadioButtonGroup,
    Range1d,
    Slider,
)

from dashboard.lessons import mixed_precision as M
from dashboard.lessons import training as TR
from dashboard.views.offline import Context, callback, div
from dashboard.views.plots import PlotStyle, styled_figure
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import choice_group, labelled, text_pane, two_way

ABOUT = (
    "<b>What you see:</b> real gradients from the build's own training, and what storing them "
    "in fp16 does: the smallest flush to zero, the next lose precision as subnormals. A loss "
    "scale 2<sup>k</sup> shifts them all up by k binades; too large a scale and the biggest "
    "overflow to infinity. bf16 keeps fp32's range and needs no scale. <b>Try:</b> raise the "
    "scale until nothing flushes, then until something overflows; compare the first step "
    "with the last."
)

MAX_SCALE = 30
X_RANGE = (-60, 22)  # binades drawn (log2 of |gradient| × scale)
FATE_COLORS = {
    "flushed": "#e45756",
    "subnormal": "#f58518",
    "normal": "#4c78a8",
    "overflow": "#b279a2",
}
FATE_WORDS = {
    "flushed": "flushed to zero",
    "subnormal": "subnormal (fewer significant bits)",
    "normal": "normal",
    "overflow": "overflowed to ±inf",
}
NONE = (
    "<p class='message error'>{model} was not trained by the build, so none of its gradients "
    "were saved: choose one of {trained}.</p>"
)


class MixedOptions(Options):
    """The recorded step shown, and the loss scale's exponent."""

    url: ClassVar[dict[str, str]] = {"mp_step": "mps", "mp_scale": "mpk"}
    mp_step = param.Integer(default=0, bounds=(0, 3), doc="Which recorded step (0..3).")
    mp_scale = param.Integer(default=0, bounds=(0, MAX_SCALE), doc="Loss scale 2**k: k.")


def fate_of_binade(e: np.ndarray, fmt: str = "fp16") -> list[str]:
    """The colour class of each scaled binade: where its values mostly go (the boundary
    binades are split exactly in the counts, not in the bars)."""
    f = M.boundaries(fmt)
    return [
        "flushed"
        if x < f["sub"] - 1
        else "subnormal"
        if x < f["tiny"]
        else "normal"
        if x <= f["top"]
        else "overflow"
        for x in e
    ]


def bars(b: M.Binades, k: int) -> dict:
    """The histogram's columns: every occupied binade, shifted by ``k``."""
    e = np.arange(M.LOW, M.HIGH + 1)
    keep = b.total > 0
    x = e[keep] + k
    fate = fate_of_binade(x)
    return dict(
        x=(x + 0.5).tolist(),
        top=b.total[keep].tolist(),
        color=[FATE_COLORS[f] for f in fate],
        fate=fate,
    )


def _pct(n: int, total: int) -> str:
    """A share in per cent: "none" for 0, never a non-zero share written as 0.00%."""
    if not n:
        return "none"
    pct = 100 * n / total
    return f"{pct:.2f}%" if pct >= 0.01 else "< 0.01%"


def counts_html(name: str, rec: TR.RunRecord, i: int, k: int, b: M.Binades) -> str:
    """What fp16 at scale 2**k does to the sample of recorded step ``i`` (its binades ``b``),
    in words (HTML)."""
    n = b.n
    got = M.fates_from_binades(b, "fp16", k)
    bf = M.fates_from_binades(b, "bf16", 0)
    step = rec.grad_steps[i]
    items = "".join(
        f"<li><span style='color:{FATE_COLORS[f]}'>■</span> {FATE_WORDS[f]}: "
        f"<b>{_pct(got[f], n)}</b> ({got[f]:,})</li>"
        for f in ("flushed", "subnormal", "normal", "overflow")
    )
    lost = got["flushed"] + got["subnormal"]
    verdict = (
        "<b>Too large:</b> some gradients became infinite; a loss scaler (torch's GradScaler) "
        "would skip this step and halve the scale."
        if got["overflow"]
        else "Nothing overflowed." + (" Nothing was flushed either." if not got["flushed"] else "")
    )
    whole = rec.whole[i]
    return (
        f"<p>{html.escape(name)} at step {step} of {rec.steps} (gradient norm "
        f"{whole['norm']:.3f}): {n:,} of its {rec.grad_of:,} gradient values, sampled, times "
        f"2<sup>{k}</sup> = {2**k:,}, stored in fp16:</p><ul class='mixed-counts'>{items}</ul>"
        f"<p>{_pct(lost, n)} lose precision or vanish. {verdict} In bf16, with no scale: "
        f"{_pct(bf['flushed'] + bf['subnormal'], n)} do.</p>"
    )


def whole_html(rec: TR.RunRecord, i: int) -> str:
    """The whole gradient of recorded step ``i``, as the build's torch casts counted it (HTML)."""
    whole = rec.whole[i]
    rows = "".join(
        f"<tr><td>{label}</td>"
        + "".join(
            f"<td class='num'>{_pct(whole[key][f], rec.grad_of)}</td>"
            for f in ("flushed", "subnormal", "overflow")
        )
        + "</tr>"
        for key, label in (
            ("fp16@0", "fp16, scale 1"),
            ("fp16@8", "fp16, scale 2<sup>8</sup>"),
            ("fp16@16", "fp16, scale 2<sup>16</sup>"),
            ("bf16@0", "bf16, no scale"),
        )
    )
    return (
        f"<p>The whole gradient at step {rec.grad_steps[i]} ({rec.grad_of:,} values), cast by "
        "torch in the build:</p>"
        "<div style='overflow-x:auto;max-width:100%'><table class='run-table'><tr><th></th>"
        f"<th>flushed</th><th>subnormal</th><th>overflow</th></tr>{rows}</table></div>"
        "<p class='hint'>Why fp16 needs the scale and bf16 does not: "
        "<a href='?lesson=precision'>FP16 vs BF16</a>.</p>"
    )


class Figures:
    def __init__(self, style: PlotStyle):
        c = style.classroom
        self.source = ColumnDataSource(
            data=dict(x=[], top=[], color=[], fate=[]), name="mixed-bars"
        )
        fig = styled_figure(
            style,
            1100 if c else 760,
            420 if c else 300,
            "Gradients × 2^k, in fp16",
            name="mixed-hist",
            x_range=Range1d(*X_RANGE),
        )
        f = M.boundaries("fp16")
        for lo, hi, fate in (
            (None, f["sub"] - 1, "flushed"),
            (f["sub"] - 1, f["tiny"], "subnormal"),
            (f["top"] + 1, None, "overflow"),
        ):
            fig.add_layout(
                BoxAnnotation(
                    left=lo, right=hi, fill_color=FATE_COLORS[fate], fill_alpha=0.08, line_alpha=0
                )
            )
        r = fig.vbar(x="x", top="top", width=0.9, color="color", source=self.source)
        fig.add_tools(
            HoverTool(
                renderers=[r],
                tooltips=[("binade", "2^@x{0}"), ("values", "@top"), ("in fp16", "@fate")],
            )
        )
        fig.xaxis.axis_label = "log2 |gradient × 2^k|"
        fig.yaxis.axis_label = "values"
        self.figure = fig

    def draw(self, b: M.Binades, k: int) -> None:
        self.source.data = bars(b, k)


@lru_cache(maxsize=32)
def _binades(rec: TR.RunRecord, i: int) -> M.Binades:
    """Recorded step ``i``'s binades, counted once (a slider move only shifts them)."""
    return M.binade_counts(rec.grad_sample[i])


def trained(engine) -> list[str]:
    return [m for m in engine.model_names if "run" in engine.entry(m)]


class MixedLesson(LessonView):
    """The session model's recorded gradients at a chosen step and loss scale."""

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self._f = Figures(self.style)
        self._message = text_pane("", "message", "error", "mixed-message", visible=False)
        self._text = text_pane("", "explain", "mixed-text", sizing_mode="stretch_width")
        self._whole = text_pane("", "explain", "mixed-whole", sizing_mode="stretch_width")
        steps = choice_group(
            s, "mp_step", {str(i): i for i in range(4)}, css_classes=["mixed-step"]
        )
        self._scale = pn.widgets.IntSlider(
            label="Loss scale 2^k: k",
            start=0,
            end=MAX_SCALE,
            value=s.mp_scale,
            sizing_mode="stretch_width",
            max_width=520,
            css_classes=["mixed-scale"],
        )
        two_way(self._scale, s, "mp_scale")
        self._layout = pn.Column(
            self._message,
            pn.Row(labelled("Recorded step", steps), self._scale, sizing_mode="stretch_width"),
            pn.pane.Bokeh(self._f.figure, margin=(5, 5)),
            self._text,
            self._whole,
            margin=0,
            sizing_mode="stretch_width",
        )
        self._draw()

    @param.depends("state.model", "state.mp_step", "state.mp_scale", watch=True)
    @draws
    def _draw(self) -> None:
        s = self.state
        names = trained(s.engine)
        if s.model not in names:
            self._message.object = NONE.format(
                model=html.escape(s.model), trained=", ".join(names) or "none"
            )
            self._message.visible = True
            return
        self._message.visible = False
        rec = TR.read_run(s.engine.static_dir, s.engine.entry(s.model))
        i = min(s.mp_step, len(rec.grad_steps) - 1)
        b = _binades(rec, i)
        self._f.draw(b, s.mp_scale)
        self._text.object = counts_html(s.model, rec, i, s.mp_scale, b)
        self._whole.object = whole_html(rec, i)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


def snapshot(ctx: Context):
    names = trained(ctx.engine)
    if ctx.model not in names:
        return column(
            div(
                ctx,
                NONE.format(model=html.escape(ctx.model), trained=", ".join(names)),
                "message",
                "error",
            )
        )
    rec = TR.read_run(ctx.engine.static_dir, ctx.engine.entry(ctx.model))
    sel = ctx.selection
    i, k = min(sel.mp_step, len(rec.grad_steps) - 1), sel.mp_scale
    figs = Figures(ctx.style)
    binades = [_binades(rec, j) for j in range(len(rec.grad_steps))]
    figs.draw(binades[i], k)
    texts = [
        [counts_html(ctx.model, rec, j, q, binades[j]) for q in range(MAX_SCALE + 1)]
        for j in range(len(binades))
    ]
    every = [bars(b, 0) for b in binades]  # at scale 1; the page shifts and recolours them
    f = M.boundaries("fp16")
    tables = [whole_html(rec, j) for j in range(len(binades))]
    text = div(ctx, texts[i][k], "explain", "mixed-text", name="mixed-text")
    whole = div(ctx, tables[i], "explain", "mixed-whole", name="mixed-whole")
    steps = RadioButtonGroup(
        labels=[str(j) for j in range(len(binades))],
        active=i,
        name="mixed-step",
        stylesheets=[ctx.stylesheet],
    )
    scale = Slider(
        start=0,
        end=MAX_SCALE,
        step=1,
        value=k,
        title="Loss scale 2^k: k",
        name="mixed-scale",
        width=320,
        stylesheets=[ctx.stylesheet],
    )
    args = dict(
        texts=texts,
        tables=tables,
        whole=whole,
        every=every,
        text=text,
        steps=steps,
        scale=scale,
        source=figs.source,
        colors=FATE_COLORS,
        bounds=f,
    )
    draw = callback("mixed", "draw()", **args)
    steps.js_on_change("active", draw)
    scale.js_on_change("value", draw)
    return column(steps, scale, figs.figure, text, whole)
