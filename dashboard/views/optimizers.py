"""The "Adam vs AdamW" lesson: three optimisers racing on 2-D loss surfaces.

SGD with momentum, Adam with weight decay added to the gradient (L2) and AdamW with the
weights decayed directly, each stepped from the same start with the hyper-parameters the
student sets (torch's names), on an ill-conditioned bowl, Rosenbrock's valley or a saddle
between two valleys: their paths over the surface's contours, their loss per step, and for a
chosen step Adam's and AdamW's moments m and v, the bias corrections and the update. The runs
are :func:`dashboard.lessons.optim.race` (checked against torch.optim); the snapshot runs
js/optim.js, its twin, in the page.
"""

from __future__ import annotations

import html
import math
from typing import ClassVar

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, LinearColorMapper, Range1d, Select, Slider
from bokeh.palettes import Greys256

from dashboard.lessons import optim as O
from dashboard.views.offline import Context, callback, div, typed_fields
from dashboard.views.plots import PlotStyle, styled_figure
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import OptionSelect, labelled, text_pane

ABOUT = (
    "<b>What you see:</b> three optimisers stepped from the same start on a 2-D loss: SGD "
    "with momentum, Adam with weight decay added to the gradient (L2, torch's "
    "<code>Adam(weight_decay=…)</code>) and AdamW with the weights decayed directly "
    "(<code>AdamW</code>); their paths over the contours, their loss per step, and for one "
    "step Adam's moments m and v with the bias corrections. <b>Try:</b> give both Adams a "
    "weight decay of 1 and watch them part; raise the learning rate until SGD diverges; "
    "set β1 to 0 and see the path zig-zag."
)

KINDS = ("sgd", "adam", "adamw")
NAMES = {"sgd": "SGD + momentum", "adam": "Adam (L2)", "adamw": "AdamW"}
COLOURS = {"sgd": "#7f7f7f", "adam": "#1f77b4", "adamw": "#ff7f0e"}
# the hyper-parameters typed in: option name -> (label, parse as)
FIELDS = {
    "opt_lr": "learning rate",
    "opt_beta1": "β1",
    "opt_beta2": "β2",
    "opt_eps": "ε",
    "opt_decay": "weight decay",
    "opt_momentum": "momentum (SGD)",
}
MAX_STEPS = 500
GRID = 80  # the contour image's cells per side
BAD = "{field}: {value} is not a number; kept {kept}."
STEP_ROW = (
    "<tr><td>{name}</td><td class='num'>{m}</td><td class='num'>{v}</td>"
    "<td class='num'>{mhat}</td><td class='num'>{vhat}</td><td class='num'>{p}</td></tr>"
)
STEP_TABLE = (
    "<p>Step <b>{t}</b>: the bias corrections 1 − β1<sup>t</sup> = {bc1} and 1 − β2<sup>t</sup>"
    " = {bc2} divide the running means m and v (both start at 0, so early on they are too "
    "small by these factors).</p><div style='overflow-x:auto;max-width:100%'>"
    "<table class='optim-state'><tr><th></th><th>m</th><th>v</th>"
    "<th>m̂ = m / (1 − β1<sup>t</sup>)</th><th>v̂</th><th>parameters</th></tr>{rows}</table>"
    "</div>"
)
RESULT = "<p>{runs}</p>"
RESULT_RUN = "<b style='color:{colour}'>{name}</b>: {how}"
DIVERGED = "diverged at step {t} (stopped there)"
FINISHED = "loss {loss} after {steps} steps"


class OptimOptions(Options):
    url: ClassVar[dict[str, str]] = {
        "opt_surface": "surface",
        "opt_lr": "lr",
        "opt_beta1": "b1",
        "opt_beta2": "b2",
        "opt_eps": "eps",
        "opt_decay": "wd",
        "opt_momentum": "mom",
        "opt_steps": "steps",
        "opt_at": "at",
    }

    opt_surface = param.Selector(default="bowl", objects=list(O.SURFACES))
    opt_lr = param.Number(default=0.02, bounds=(0, None), inclusive_bounds=(False, True))
    opt_beta1 = param.Number(default=0.9, bounds=(0, 1), inclusive_bounds=(True, False))
    opt_beta2 = param.Number(default=0.999, bounds=(0, 1), inclusive_bounds=(True, False))
    opt_eps = param.Number(default=1e-8, bounds=(0, None), inclusive_bounds=(False, True))
    opt_decay = param.Number(default=0.1, bounds=(0, None))
    opt_momentum = param.Number(default=0.9, bounds=(0, 1), inclusive_bounds=(True, False))
    opt_steps = param.Integer(default=200, bounds=(1, MAX_STEPS))
    opt_at = param.Integer(default=10, bounds=(1, MAX_STEPS))


def hyper(values: dict) -> dict[str, dict]:
    """Each optimiser's torch keyword arguments from the lesson's options."""
    betas = (values["opt_beta1"], values["opt_beta2"])
    lr, wd = values["opt_lr"], values["opt_decay"]
    return {
        "sgd": dict(lr=lr, momentum=values["opt_momentum"], weight_decay=wd),
        "adam": dict(lr=lr, betas=betas, eps=values["opt_eps"], weight_decay=wd),
        "adamw": dict(lr=lr, betas=betas, eps=values["opt_eps"], weight_decay=wd),
    }


def races(values: dict) -> dict[str, O.Run]:
    h = hyper(values)
    return {k: O.race(values["opt_surface"], k, values["opt_steps"], **h[k]) for k in KINDS}


def contour(surface: str) -> np.ndarray:
    """log10(1 + loss − its minimum on the grid) over the surface's box: GRID × GRID, rows
    from the bottom (y0) up, as Bokeh's image draws them."""
    s = O.SURFACES[surface]
    x0, x1, y0, y1 = s.box
    xs = x0 + (np.arange(GRID) + 0.5) * (x1 - x0) / GRID
    ys = y0 + (np.arange(GRID) + 0.5) * (y1 - y0) / GRID
    z = np.array([[s.loss(np.array([x, y])) for x in xs] for y in ys])
    return np.log10(1 + z - z.min())


def fmt(x: float) -> str:
    """A number for the tables: 4 significant digits."""
    return f"{x:.4g}"


def result_html(runs: dict[str, O.Run], steps: int) -> str:
    parts = []
    for k in KINDS:
        r = runs[k]
        if r.diverged_at is not None:
            how = DIVERGED.format(t=r.diverged_at)
        else:
            how = FINISHED.format(loss=fmt(float(r.losses[-1])), steps=steps)
        parts.append(RESULT_RUN.format(colour=COLOURS[k], name=NAMES[k], how=how))
    return RESULT.format(runs="; ".join(parts))


def state_html(runs: dict[str, O.Run], betas: tuple[float, float], at: int) -> str:
    """Adam's and AdamW's state after step ``at`` (the last step taken if a run stopped)."""
    rows = []
    for k in ("adam", "adamw"):
        r = runs[k]
        if not r.states:
            continue
        t = min(at, len(r.states))
        st, p = r.states[t - 1], r.path[t]
        bc1, bc2 = O.bias_correction(betas, st.step)
        pair = lambda a: f"{fmt(a[0])}, {fmt(a[1])}"  # noqa: E731
        rows.append(
            STEP_ROW.format(
                name=NAMES[k],
                m=pair(st.exp_avg),
                v=pair(st.exp_avg_sq),
                mhat=pair(st.exp_avg / bc1),
                vhat=pair(st.exp_avg_sq / bc2),
                p=pair(p),
            )
        )
    bc1, bc2 = O.bias_correction(betas, at)
    return STEP_TABLE.format(t=at, bc1=fmt(bc1), bc2=fmt(bc2), rows="".join(rows))


class Figures:
    def __init__(self, style: PlotStyle):
        c = style.classroom
        self.style = style
        self.image = ColumnDataSource(
            data=dict(image=[np.zeros((GRID, GRID))], x=[0], y=[0], dw=[1], dh=[1]),
            name="optim-contour",
        )
        palette = list(reversed(Greys256))[40:200] if not c else list(Greys256)[20:140]
        self.mapper = LinearColorMapper(palette=palette)
        fig = styled_figure(
            style,
            640 if c else 480,
            480 if c else 360,
            "",
            name="optim-paths",
            x_range=Range1d(0, 1),
            y_range=Range1d(0, 1),
        )
        fig.image("image", "x", "y", "dw", "dh", source=self.image, color_mapper=self.mapper)
        self.paths = {}
        self.marks = {}
        for k in KINDS:
            src = ColumnDataSource(data=dict(x=[], y=[]), name=f"optim-path-{k}")
            fig.line(
                "x",
                "y",
                source=src,
                color=COLOURS[k],
                line_width=4 if c else 2.5,
                legend_label=NAMES[k],
            )
            mark = ColumnDataSource(data=dict(x=[], y=[]), name=f"optim-mark-{k}")
            fig.scatter(
                "x", "y", source=mark, color=COLOURS[k], size=16 if c else 10, line_color="#000000"
            )
            self.paths[k], self.marks[k] = src, mark
        self.minimum = ColumnDataSource(data=dict(x=[], y=[]), name="optim-minimum")
        fig.scatter(
            "x", "y", source=self.minimum, marker="star", size=22 if c else 14, color="#2ca02c"
        )
        for legend in fig.legend:
            legend.location = "top_left"
            legend.label_text_font_size = style.tick
            legend.background_fill_alpha = 0.6
        self.paths_fig = fig
        loss = styled_figure(
            style,
            640 if c else 460,
            360 if c else 260,
            "Loss per step",
            name="optim-loss",
            y_axis_type="log",
        )
        self.losses = {}
        for k in KINDS:
            src = ColumnDataSource(data=dict(x=[], y=[]), name=f"optim-loss-{k}")
            loss.line("x", "y", source=src, color=COLOURS[k], line_width=3 if c else 2)
            self.losses[k] = src
        loss.xaxis.axis_label = "step"
        loss.yaxis.axis_label = "loss − minimum + 1e-12"
        self.loss_fig = loss

    def draw(self, surface: str, runs: dict[str, O.Run], at: int) -> None:
        s = O.SURFACES[surface]
        x0, x1, y0, y1 = s.box
        self.image.data = dict(image=[contour(surface)], x=[x0], y=[y0], dw=[x1 - x0], dh=[y1 - y0])
        self.paths_fig.x_range.update(start=x0, end=x1)
        self.paths_fig.y_range.update(start=y0, end=y1)
        self.paths_fig.title.text = s.title
        self.minimum.data = dict(x=[s.minimum[0]], y=[s.minimum[1]])
        low = s.loss(np.array(s.minimum))
        for k, r in runs.items():
            # the path clipped to what the plot shows: a diverging run leaves the box
            self.paths[k].data = dict(x=r.path[:, 0].tolist(), y=r.path[:, 1].tolist())
            t = min(at, len(r.path) - 1)
            self.marks[k].data = dict(x=[float(r.path[t, 0])], y=[float(r.path[t, 1])])
            gap = np.maximum(r.losses - low, 0) + 1e-12
            self.losses[k].data = dict(x=list(range(len(gap))), y=gap.tolist())


# which of check_hyper's messages is each field's
CHECKED = {
    "opt_lr": "learning rate",
    "opt_beta1": "β1",
    "opt_beta2": "β2",
    "opt_eps": "ε",
    "opt_decay": "weight decay",
    "opt_momentum": "momentum",
}


def field_message(name: str, text: str, values: dict) -> str:
    """What is wrong with ``text`` typed into field ``name`` ("" if nothing), the other
    fields at ``values``."""
    value = parse_number(text)
    kept = repr(values[name])
    if value is None:
        shown = f"“{str(text).strip()}”" if str(text).strip() else "nothing"
        return BAD.format(field=FIELDS[name], value=shown, kept=kept)
    v = {**values, name: value}
    problems = O.check_hyper(
        v["opt_lr"],
        (v["opt_beta1"], v["opt_beta2"]),
        v["opt_eps"],
        v["opt_decay"],
        v["opt_momentum"],
    )
    mine = [p for p in problems if p.startswith(CHECKED[name])]
    return f"{mine[0]}; kept {kept}." if mine else ""


def parse_number(text: str) -> float | None:
    """A number typed in, or None."""
    raw = str(text).strip().replace("_", "")
    if not raw.isascii():  # float() reads other scripts' digits; the page does not
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class OptimLesson(LessonView):
    """The race, redrawn for every change of surface, hyper-parameter or step."""

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self._f = Figures(self.style)
        surface = OptionSelect(
            options={O.SURFACES[n].title: n for n in O.SURFACES},
            value=s.opt_surface,
            width=240,
            css_classes=["optim-surface"],
        )
        surface.param.watch(lambda e: setattr(s, "opt_surface", e.new), "value")
        self._inputs, self._messages = {}, {}
        for name in FIELDS:
            box = pn.widgets.TextInput(
                value=repr(getattr(s, name)),
                width=120,
                css_classes=[f"{name.replace('_', '-')}-input"],
            )
            box.param.watch(lambda e, n=name: self._typed(n, e.new), "value")
            self._inputs[name] = box
            self._messages[name] = text_pane("", "message", "error", visible=False, width=220)
        self._steps = pn.widgets.IntSlider(
            label="steps", start=1, end=MAX_STEPS, value=s.opt_steps, width=260
        )
        self._steps.param.watch(lambda e: setattr(s, "opt_steps", e.new), "value_throttled")
        self._at = pn.widgets.IntSlider(
            label="inspect step", start=1, end=MAX_STEPS, value=s.opt_at, width=260
        )
        self._at.param.watch(lambda e: setattr(s, "opt_at", e.new), "value_throttled")
        self._summary = text_pane(
            "", "message", "error", "optim-errors", visible=False, sizing_mode="stretch_width"
        )
        self._result = text_pane("", "explain", "optim-result", sizing_mode="stretch_width")
        self._state_text = text_pane("", "explain", "optim-state", sizing_mode="stretch_width")
        fields = [
            pn.Column(labelled(label, self._inputs[n]), self._messages[n], margin=0)
            for n, label in FIELDS.items()
        ]
        self._layout = pn.Column(
            pn.FlexBox(labelled("Surface", surface), *fields, sizing_mode="stretch_width"),
            pn.FlexBox(self._steps, self._at, sizing_mode="stretch_width"),
            self._summary,
            pn.FlexBox(
                pn.pane.Bokeh(self._f.paths_fig, margin=(5, 5)),
                pn.Column(pn.pane.Bokeh(self._f.loss_fig, margin=(5, 5)), self._result, margin=0),
                sizing_mode="stretch_width",
            ),
            self._state_text,
            margin=0,
            sizing_mode="stretch_width",
        )
        self._draw()

    def _typed(self, name: str, text: str) -> None:
        """A field typed in: its value if a number in range, else its message beside it (the
        last valid run stays)."""
        message = field_message(name, text, {**self._values()})
        box = self._messages[name]
        box.object, box.visible = f"<p>{html.escape(message)}</p>", bool(message)
        if not message:
            setattr(self.state, name, parse_number(text))

    def _values(self) -> dict:
        return {n: getattr(self.state, n) for n in OptimOptions.url}

    @param.depends(*(f"state.{n}" for n in OptimOptions.url), watch=True)
    @draws
    def _draw(self) -> None:
        v = self._values()
        runs = races(v)
        at = min(v["opt_at"], v["opt_steps"])
        self._f.draw(v["opt_surface"], runs, at)
        self._result.object = result_html(runs, v["opt_steps"])
        self._state_text.object = state_html(runs, (v["opt_beta1"], v["opt_beta2"]), at)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------------------------
# The same figures and texts; js/optim.js (optim.race's twin, with the three surfaces) runs the
# races in the page for every change, and draws the contours there too.


def page_surfaces() -> dict:
    """What the page needs of each surface (its functions are written in js/optim.js)."""
    return {
        n: dict(title=s.title, start=list(s.start), minimum=list(s.minimum), box=list(s.box))
        for n, s in O.SURFACES.items()
    }


def snapshot(ctx: Context):
    s, style = ctx.selection, ctx.style
    values = {n: getattr(s, n) for n in OptimOptions.url}
    runs = races(values)
    at = min(values["opt_at"], values["opt_steps"])
    figs = Figures(style)
    figs.draw(values["opt_surface"], runs, at)
    figs.image.data = {**figs.image.data, "image": [np.zeros((GRID, GRID))]}  # drawn in the page
    names = list(O.SURFACES)
    surface = Select(
        options=[(n, O.SURFACES[n].title) for n in names],
        value=values["opt_surface"],
        name="optim-surface",
        css_classes=["optim-surface"],
        width=240,
        stylesheets=[ctx.stylesheet],
    )
    inputs, messages = typed_fields(ctx, {n: repr(values[n]) for n in FIELDS}, 120, 220)
    steps = Slider(
        start=1,
        end=MAX_STEPS,
        step=1,
        value=values["opt_steps"],
        title="steps",
        name="optim-steps",
        width=260,
        stylesheets=[ctx.stylesheet],
    )
    inspect = Slider(
        start=1,
        end=MAX_STEPS,
        step=1,
        value=values["opt_at"],
        title="inspect step",
        name="optim-at",
        width=260,
        stylesheets=[ctx.stylesheet],
    )
    result = div(
        ctx, result_html(runs, values["opt_steps"]), "explain", "optim-result", name="optim-result"
    )
    state = div(
        ctx,
        state_html(runs, (values["opt_beta1"], values["opt_beta2"]), at),
        "explain",
        "optim-state",
        name="optim-state",
    )
    kept = ColumnDataSource(data={n: [values[n]] for n in FIELDS}, name="optim-kept")
    args = dict(
        surface=surface,
        inputs=inputs,
        messages=messages,
        steps=steps,
        inspect=inspect,
        kept=kept,
        surfaces=page_surfaces(),
        fields=FIELDS,
        checked=CHECKED,
        paths={k: figs.paths[k] for k in KINDS},
        marks={k: figs.marks[k] for k in KINDS},
        losses={k: figs.losses[k] for k in KINDS},
        image=figs.image,
        mapper=figs.mapper,
        minimum=figs.minimum,
        fig=figs.paths_fig,
        result=result,
        state=state,
        grid=GRID,
        bound=O.BOUND,
        names=NAMES,
        colours=COLOURS,
        bad_t=BAD,
        row_t=STEP_ROW,
        table_t=STEP_TABLE,
        result_t=RESULT,
        run_t=RESULT_RUN,
        diverged_t=DIVERGED,
        finished_t=FINISHED,
    )
    redraw = callback("optim", "draw()", **args)
    surface.js_on_change("value", redraw)
    for box in inputs.values():
        box.js_on_change("value", redraw)
    steps.js_on_change("value_throttled", redraw)
    inspect.js_on_change("value_throttled", redraw)
    ctx.on_ready(callback("optim", "draw_contour()", **args))
    caption = lambda text: div(ctx, f"<b>{html.escape(text)}</b>", "explain")  # noqa: E731
    return column(
        row(
            column(caption("Surface"), surface),
            *(column(caption(label), inputs[n], messages[n]) for n, label in FIELDS.items()),
        ),
        row(steps, inspect),
        row(figs.paths_fig, column(figs.loss_fig, result)),
        state,
    )
