"""The feed-forward network lesson: the activation functions, one token's real MLP activations,
and what each MLP design costs in parameters.

The activations come from the model's own named outputs (``mlp_up``, ``mlp_gate``,
``mlp_hidden``) through :func:`dashboard.lessons.ffn.activations`, which summarises every
(layer, token) once per reading; this module only picks the selected one and draws it. The
snapshot embeds those summaries (never the whole tensors) and ``js/ffn.js`` picks among them.
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import (
    BasicTickFormatter,
    ColorBar,
    ColumnDataSource,
    CustomJSTickFormatter,
    FixedTicker,
    HoverTool,
    Legend,
    LegendItem,
    LinearColorMapper,
    Range1d,
    Select,
)
from bokeh.transform import dodge

from dashboard.lessons import ffn as F
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import SCORE_PALETTE, PlotStyle, styled_figure
from dashboard.views.registry import LessonView, draws
from dashboard.views.sampling import fill
from dashboard.views.widgets import index_group, labelled, text_pane
from models.runtime import EngineError

ABOUT = (
    "<b>What you see:</b> the MLP of one layer at work on the selected token: its most active "
    "neurons (largest |h|), how many of its activations are near zero, and for a SwiGLU model "
    "(anatomy-llama) its gate, its up branch and their product; then the activation functions "
    "themselves (ReLU, GELU exact and tanh, SiLU, SwiGLU's gate) and what each MLP design costs "
    "at the same width. <b>Try:</b> pick another token (its chip, or the Token menu of a snapshot) "
    "or layer and watch the most active neurons change; switch the model between anatomy-gpt "
    "(GELU) and anatomy-llama (SwiGLU)."
)

COLORS = {"gate_act": "#54a24b", "up": "#4c78a8", "hidden": "#f58518"}
CURVE_COLORS = {"relu": "#9d755d", "gelu": "#4c78a8", "gelu_tanh": "#f58518", "silu": "#54a24b"}
# (width, height) of each figure, normal and classroom (a 1920x1080 projector)
SIZES = {
    False: {
        "neurons": (620, 300),
        "hist": (420, 300),
        "curves": (460, 320),
        "diff": (460, 220),
        "surface": (440, 380),
    },
    True: {
        "neurons": (1000, 400),
        "hist": (700, 380),
        "curves": (700, 440),
        "diff": (700, 300),
        "surface": (640, 560),
    },
}

# -- texts, filled in Python (the dashboard) and in the page (js/ffn.js) --------------------------
SUMMARY = (
    "<p>Token <b class='tok'>{token}</b> in layer {layer}: <b class='num'>{near}</b> of its "
    "{width} activations ({percent}%) are near zero, which here means |h| &lt; {threshold}. "
    "{off}</p>"
)
OFF = {
    "gelu": (
        "{count} ({percent}%) had a negative input: GELU maps those into [{low}, 0], where ReLU "
        "would give exactly 0. anatomy-gpt's MLP has no gate: h = GELU(up)."
    ),
    "swiglu": (
        "{count} ({percent}%) have a negative gate, which SiLU maps into [{low}, 0]: the gate "
        "nearly closes those neurons whatever their up value. h = SiLU(gate) · up."
    ),
}
CELL = "padding: 0.1em 0.8em 0.1em 0; text-align: right"
HEADS = {
    "gelu": ("neuron", "up (input)", "h = GELU(up)"),
    "swiglu": ("neuron", "gate", "SiLU(gate)", "up", "h"),
}
SLOTS = {"gelu": ("neuron", "up", "h"), "swiglu": ("neuron", "gate", "act", "up", "h")}
NEURONS_TITLE = "Layer {layer}: most active neurons"
SERIES = {
    "gelu": (("up", "up (GELU's input)"), ("hidden", "h = GELU(up)")),
    "swiglu": (("gate_act", "SiLU(gate)"), ("up", "up"), ("hidden", "h = SiLU(gate)·up")),
}


def design(config: dict) -> str:
    """The model's MLP: "gelu" or "swiglu"."""
    return "swiglu" if config.get("mlp") == "swiglu" else "gelu"


def lowest(kind: str) -> tuple[float, float]:
    """Where GELU's or SiLU's curve is lowest, and its value there."""
    return F.lowest_point(F.gelu if kind == "gelu" else F.silu)


def off_template(kind: str) -> str:
    """The "switched off" sentence, its bound filled in (count and percent left for later)."""
    return fill(OFF[kind], {"low": f"{lowest(kind)[1]:.3f}"})


def summary_template(a: F.Activations) -> str:
    return fill(SUMMARY, {"width": a.width, "threshold": f"{a.threshold:g}"})


def row_template(kind: str) -> str:
    cells = "".join(f"<td class='num' style='{CELL}'>{{{s}}}</td>" for s in SLOTS[kind])
    return f"<tr>{cells}</tr>"


def table_template(kind: str) -> str:
    heads = "".join(f"<th style='{CELL}'>{h}</th>" for h in HEADS[kind])
    return f"<table class='ffn-neurons'><tr>{heads}</tr>{{rows}}</table>"


def summary_html(a: F.Activations, labels: list[str], layer: int, token: int) -> str:
    """What the selected (layer, token) has near zero and switched off (SUMMARY)."""
    kind = "swiglu" if a.swiglu else "gelu"
    near, neg = int(a.near[layer, token]), int(a.negative[layer, token])
    off = fill(off_template(kind), {"count": neg, "percent": f"{100 * neg / a.width:.1f}"})
    return fill(
        summary_template(a),
        {
            "token": html.escape(labels[token]),
            "layer": layer,
            "near": near,
            "percent": f"{100 * near / a.width:.1f}",
            "off": off,
        },
    )


def table_html(a: F.Activations, layer: int, token: int) -> str:
    """The most active neurons' stages, one row each (three decimals)."""
    kind = "swiglu" if a.swiglu else "gelu"
    rows = []
    for j in range(a.neurons.shape[-1]):
        values = {
            "neuron": int(a.neurons[layer, token, j]),
            "up": f"{float(a.up[layer, token, j]):.3f}",
            "h": f"{float(a.hidden[layer, token, j]):.3f}",
        }
        if a.swiglu:
            values["gate"] = f"{float(a.gate[layer, token, j]):.3f}"
            values["act"] = f"{float(a.gate_act[layer, token, j]):.3f}"
        rows.append(fill(row_template(kind), values))
    return fill(table_template(kind), {"rows": "".join(rows)})


def neuron_columns(a: F.Activations, layer: int, token: int) -> dict[str, list]:
    """The bars' data for the selected (layer, token): rank, neuron, and each stage's value."""
    k = a.neurons.shape[-1]
    cols = {
        "x": list(range(k)),
        "neuron": [int(n) for n in a.neurons[layer, token]],
        "up": [float(v) for v in a.up[layer, token]],
        "hidden": [float(v) for v in a.hidden[layer, token]],
    }
    if a.swiglu:
        cols["gate"] = [float(v) for v in a.gate[layer, token]]
        cols["gate_act"] = [float(v) for v in a.gate_act[layer, token]]
    return cols


def hist_columns(style: PlotStyle, counts=None, threshold: float = F.NEAR_ZERO) -> dict:
    """The histogram's bins (the near-zero ones in the accent colour) and ``counts``."""
    e = F.HIST_EDGES
    lo, hi = e[:-1], e[1:]
    near = (lo >= -threshold - 1e-9) & (hi <= threshold + 1e-9)
    base = "#6fa8dc" if style.classroom else "#4c78a8"
    return {
        "x": ((lo + hi) / 2).tolist(),
        "lo": lo.tolist(),
        "hi": hi.tolist(),
        "count": [0] * len(lo) if counts is None else [int(c) for c in counts],
        "color": [style.accent if n else base for n in near],
    }


# -- figures, the same in both homes ------------------------------------------------------------
def _legend(fig, style: PlotStyle, items: list, location: str = "top_right") -> None:
    """A legend in the frame's ``location``, or above the frame in a row ("above")."""
    outside = location == "above"
    legend = Legend(
        items=items,
        location="top_left" if outside else location,
        orientation="horizontal" if outside else "vertical",
        label_text_font_size=style.tick,
    )
    legend.background_fill_alpha = 0.6
    legend.background_fill_color = style.background
    legend.label_text_color = style.text
    legend.border_line_color = None
    legend.padding = 2
    legend.spacing = 8 if outside else 0
    fig.add_layout(legend, "above" if outside else "center")


def neurons_figure(style: PlotStyle, kind: str, source: ColumnDataSource, k: int):
    """A group of bars per neuron (ranked by |h|): each stage of the MLP for it."""
    w, h = SIZES[style.classroom]["neurons"]
    fig = styled_figure(
        style,
        w,
        h,
        fill(NEURONS_TITLE, {"layer": 0}),
        name="ffn-neurons",
        x_range=Range1d(-0.6, k - 0.4),
        x_axis_label="neuron (most active first)",
    )
    fig.yaxis.axis_label = "value"
    fig.yaxis.ticker.desired_num_ticks = 4
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    fig.xaxis.ticker = FixedTicker(ticks=list(range(k)))
    fig.xaxis.formatter = CustomJSTickFormatter(
        args=dict(src=source),
        code="const n = src.data.neuron[Math.round(tick)]; return n == null ? '' : String(n);",
    )
    series = SERIES[kind]
    width = 0.8 / len(series)
    items, bars = [], []
    for i, (col, label) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        r = fig.vbar(
            x=dodge("x", offset), top=col, width=width * 0.95, source=source, color=COLORS[col]
        )
        items.append(LegendItem(label=label, renderers=[r]))
        bars.append(r)
    _legend(fig, style, items, "above")  # in the frame it would hide the bars
    tips = [("neuron", "@neuron")] + [(label, f"@{col}{{0.000}}") for col, label in series]
    fig.add_tools(HoverTool(renderers=bars[-1:], tooltips=tips))
    return fig


def hist_figure(style: PlotStyle, source: ColumnDataSource, width: int):
    """The token's activations h in bins of 0.1, the near-zero bins in the accent colour."""
    w, h = SIZES[style.classroom]["hist"]
    fig = styled_figure(
        style,
        w,
        h,
        f"All {width} activations h",
        name="ffn-hist",
        x_range=Range1d(F.HIST_EDGES[0], F.HIST_EDGES[-1]),
        x_axis_label="h (the end bins hold the tails)",
    )
    fig.yaxis.axis_label = "neurons"
    fig.yaxis.ticker.desired_num_ticks = 4
    step = float(F.HIST_EDGES[1] - F.HIST_EDGES[0])
    r = fig.vbar(x="x", top="count", width=step * 0.9, color="color", source=source)
    fig.add_tools(
        HoverTool(renderers=[r], tooltips=[("h from", "@lo{0.0} to @hi{0.0}"), ("", "@count")])
    )
    return fig


def curves_figure(style: PlotStyle):
    """ReLU, GELU (exact, and its tanh approximation dashed over it) and SiLU."""
    w, h = SIZES[style.classroom]["curves"]
    c = F.activation_curves()
    src = ColumnDataSource(
        {k: np.asarray(v, dtype=np.float32) for k, v in c.items() if k != "gelu_diff"},
        name="ffn-curves-data",
    )
    fig = styled_figure(style, w, h, "Activation functions", name="ffn-curves", x_axis_label="x")
    fig.ygrid.visible = fig.xgrid.visible = True
    fig.grid.grid_line_alpha = 0.25
    lw = 4 if style.classroom else 2
    items = []
    for col, label, dash in (
        ("relu", "ReLU", "solid"),
        ("gelu", "GELU", "solid"),
        ("gelu_tanh", "GELU (tanh)", "dashed"),
        ("silu", "SiLU", "solid"),
    ):
        r = fig.line("x", col, source=src, line_width=lw, color=CURVE_COLORS[col], line_dash=dash)
        items.append(LegendItem(label=label, renderers=[r]))
    _legend(fig, style, items, "top_left")
    return fig


def diff_figure(style: PlotStyle):
    """The tanh approximation's error, tanh − exact."""
    w, h = SIZES[style.classroom]["diff"]
    c = F.activation_curves()
    src = ColumnDataSource(
        {"x": c["x"].astype(np.float32), "diff": c["gelu_diff"].astype(np.float32)},
        name="ffn-diff-data",
    )
    fig = styled_figure(style, w, h, "GELU: tanh form − exact", name="ffn-diff", x_axis_label="x")
    fig.yaxis.ticker.desired_num_ticks = 4
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    fig.yaxis.formatter = BasicTickFormatter(use_scientific=False)  # 0.0004, not 4.000e-4
    fig.line("x", "diff", source=src, line_width=4 if style.classroom else 2, color="#f58518")
    return fig


def surface_figure(style: PlotStyle, points: ColumnDataSource):
    """SiLU(gate) · up over gate and up, and the selected token's most active neurons on it
    (a SwiGLU model's: ``points`` is empty for GELU)."""
    w, h = SIZES[style.classroom]["surface"]
    ax = F.SURFACE_AXIS
    lo, hi = float(ax[0]), float(ax[-1])
    step = float(ax[1] - ax[0])
    fig = styled_figure(
        style,
        w,
        h,
        "SwiGLU: h = SiLU(gate) · up",
        name="ffn-surface",
        x_range=Range1d(lo - step / 2, hi + step / 2),
        y_range=Range1d(lo - step / 2, hi + step / 2),
        x_axis_label="gate",
        y_axis_label="up",
    )
    surface = F.swiglu_surface(ax, ax)
    top = float(np.abs(surface).max())
    mapper = LinearColorMapper(palette=list(SCORE_PALETTE), low=-top, high=top)
    fig.image(
        image=[surface.astype(np.float32)],
        x=lo - step / 2,
        y=lo - step / 2,
        dw=hi - lo + step,
        dh=hi - lo + step,
        color_mapper=mapper,
    )
    dots = fig.scatter(
        "gate",
        "up",
        source=points,
        size=12 if style.classroom else 8,
        fill_color=style.accent,
        line_color=style.text,
        line_width=1.5,
    )
    fig.add_tools(
        HoverTool(
            renderers=[dots],
            tooltips=[("neuron", "@neuron"), ("gate", "@gate{0.000}"), ("up", "@up{0.000}")],
        )
    )
    bar = ColorBar(color_mapper=mapper, width=12 if style.classroom else 8)
    bar.major_label_text_font_size = style.tick
    bar.major_label_text_color = style.text
    bar.background_fill_color = style.background
    fig.add_layout(bar, "right")
    return fig


def point_columns(a: F.Activations | None, layer: int, token: int) -> dict[str, list]:
    """The selected token's most active neurons at (gate, up), for a SwiGLU model."""
    if a is None or not a.swiglu:
        return {"gate": [], "up": [], "neuron": []}
    cols = neuron_columns(a, layer, token)
    return {"gate": cols["gate"], "up": cols["up"], "neuron": cols["neuron"]}


# -- the static texts ---------------------------------------------------------------------------
def curves_caption() -> str:
    gx, gv = lowest("gelu")
    sx, sv = lowest("silu")
    c = F.activation_curves()
    at, gap = F.largest_gap(c["x"], c["gelu_diff"])
    return (
        "<p class='hint'>ReLU cuts every negative input to exactly 0. GELU (x·Φ(x), Φ the "
        f"normal distribution's CDF) dips to {gv:.3f} at x = {gx:.3f}; SiLU (x·sigmoid(x)) to "
        f"{sv:.3f} at x = {sx:.3f}: both let a little of a negative input through. GPT-2 "
        "computed GELU with a tanh formula; on this grid (step 0.05) the two differ by at "
        f"most {abs(gap):.1e}, at x = {at:.2f}.</p>"
    )


def surface_caption(kind: str, model: str) -> str:
    start = (
        "<p class='hint'>A SwiGLU MLP computes two projections of the token, gate and up, and "
        "multiplies SiLU(gate) by up: where gate is negative the product stays near 0 whatever "
        "up is. "
    )
    if kind == "swiglu":
        return start + (
            f"The dots are {html.escape(model)}'s most active neurons for the selected token "
            "(points beyond ±4 lie off the map).</p>"
        )
    return start + (
        f"{html.escape(model)} has no gate (its MLP is GELU(up)), so no neuron of it is "
        "drawn here: choose anatomy-llama to see its neurons on this surface.</p>"
    )


def _table(heads: tuple[str, ...], rows: list[tuple]) -> str:
    first = CELL.replace("right", "left")  # the row's label
    th = "".join(f"<th style='{CELL if i else first}'>{h}</th>" for i, h in enumerate(heads))
    body = "".join(
        f"<tr><td style='{first}'>{r[0]}</td>"
        + "".join(f"<td style='{CELL}'>{c}</td>" for c in r[1:])
        + "</tr>"
        for r in rows
    )
    return f"<table class='ffn-params'><tr>{th}</tr>{body}</table>"


def params_html(config: dict, model: str, weights: dict | None) -> str:
    """Each MLP design's weights at this model's width d, LLaMA's width rule, and what the
    model's weights file holds."""
    d = int(config["n_embd"])
    multiple = int(config.get("multiple_of") or 256)
    kind, width = design(config), F.mlp_width(config)
    rows = F.width_rows(d, multiple, width, kind)
    name = html.escape(model)
    table = _table(
        ("design", "width h", "weights", "× GELU's"),
        [
            (
                r.label.replace("this model", name),
                f"{r.width:,}",
                f"{r.params:,}",
                f"{r.ratio:.3f}",
            )  # fmt: skip
            for r in rows
        ],
    )
    rule = F.swiglu_hidden(d, multiple)
    own = rows[-1]
    if kind == "swiglu" and width != rule:
        why = (
            f"{name} uses h = {width:,}, not the rule's {rule:,}: the build chose the width "
            "that brings its whole parameter count nearest to anatomy-gpt's (its grouped "
            "key/value heads have fewer weights to make up for)."
        )
    elif kind == "swiglu":
        why = f"{name} uses the rule's width, h = {width:,}."
    else:
        why = f"{name} is a GELU MLP of width h = 4·d = {width:,}."
    counted = ""
    if weights is not None:
        n = F.mlp_params_in(weights, 0)
        extra = n - own.params
        counted = f" Its weights file holds {n:,} parameters in each layer's MLP" + (
            f" ({own.params:,} weights and {extra:,} biases)." if extra else "."
        )
    text = (
        f"<p>Per layer, at this model's width d = {d}: GELU's two matrices hold 2·d·h weights, "
        "SwiGLU's three 3·d·h, so at the same h SwiGLU costs 1.5 times as much. LLaMA's rule "
        "takes h = ⅔ · 4·d (rounded up to a multiple) so that its three matrices hold about "
        f"what GELU's two hold at 4·d. {why}{counted}</p>"
    )
    published = _table(
        ("model", "d", "rule's h", "published h", "SwiGLU ÷ GELU at 4·d"),
        [
            (n, f"{dm:,}", f"{F.swiglu_hidden(dm, m, mult):,}", f"{pub:,}",
             f"{F.mlp_params(dm, pub, 'swiglu') / F.mlp_params(dm, 4 * dm, 'gelu'):.3f}")
            for n, dm, m, mult, pub in F.PUBLISHED
        ],
    )  # fmt: skip
    note = (
        "<p class='hint'>The rule against the published LLaMA widths (each model's released "
        "config): LLaMA 1 rounds to a multiple of 256; Llama 2 70B and Llama 3 also multiply by "
        "1.3 and round to 4096 and 1024.</p>"
    )
    return table + text + published + note


# -- the dashboard ------------------------------------------------------------------------------
def needed(config: dict) -> tuple[str, ...]:
    """The named outputs the lesson reads for a model of ``config``."""
    gate = ("mlp_gate",) if design(config) == "swiglu" else ()
    return ("mlp_up", "mlp_hidden", *gate)


def read_activations(outputs) -> F.Activations:
    """The lesson's summary of a forward pass with the MLP outputs."""
    return F.activations(outputs.mlp_up, outputs.mlp_hidden, getattr(outputs, "mlp_gate", None))


class FfnLesson(LessonView):
    """One layer's MLP on the selected token (the shared layer and query), the activation
    curves and the parameter table."""

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        self._acts: F.Activations | None = None
        self._read_of = None  # the forward pass self._acts summarises
        self._kind = ""
        self._bars = ColumnDataSource(neuron_columns_empty(), name="ffn-bars")
        self._hist = ColumnDataSource(hist_columns(style), name="ffn-hist-bins")
        self._points = ColumnDataSource(point_columns(None, 0, 0), name="ffn-points")
        self._neurons_pane = pn.pane.Bokeh(margin=(5, 5))
        self._hist_fig = hist_figure(style, self._hist, 0)
        self._error = text_pane("", "message", "error", visible=False)
        self._summary = text_pane("", "explain", "ffn-summary")
        self._table = text_pane("", "explain", "ffn-table")
        self._surface_caption = text_pane("", "explain")
        self._params = text_pane("", "explain", "ffn-params")
        layer = index_group(s, "layer", "n_layer")
        layer.css_classes = ["ffn-layer"]
        self._body = pn.Column(
            self._summary,
            pn.FlexBox(
                self._neurons_pane,
                pn.pane.Bokeh(self._hist_fig, margin=(5, 5)),
                gap="10px",
                sizing_mode="stretch_width",
            ),
            self._table,
            text_pane("<h3>The activation functions</h3>", "explain"),
            pn.FlexBox(
                pn.Column(
                    pn.pane.Bokeh(curves_figure(style), margin=(5, 5)),
                    pn.pane.Bokeh(diff_figure(style), margin=(5, 5)),
                    text_pane(curves_caption(), "explain"),
                    margin=0,
                    width=SIZES[style.classroom]["curves"][0] + 20,
                ),
                pn.Column(
                    pn.pane.Bokeh(surface_figure(style, self._points), margin=(5, 5)),
                    self._surface_caption,
                    margin=0,
                    width=SIZES[style.classroom]["surface"][0] + 20,
                ),
                gap="10px",
                sizing_mode="stretch_width",
            ),
            text_pane("<h3>Parameters at the same width</h3>", "explain"),
            self._params,
            sizing_mode="stretch_width",
            margin=0,
        )
        self._layout = pn.Column(
            pn.FlexBox(labelled("Layer", layer), margin=0, sizing_mode="stretch_width"),
            self._error,
            self._body,
            sizing_mode="stretch_width",
            margin=0,
        )
        self._draw()

    def _read(self) -> None:
        """Summarise the reading's MLP outputs (once per forward pass), or say why not."""
        s = self.state
        self._read_of = s.forward
        self._acts = None
        try:
            cfg = s.config
            self._acts = read_activations(s.outputs(*needed(cfg)))
        except EngineError as err:
            self._error.object = f"<p>{html.escape(str(err))}</p>"
            self._error.visible, self._body.visible = True, False
            return
        self._error.visible, self._body.visible = False, True
        kind = "swiglu" if self._acts.swiglu else "gelu"
        if kind != self._kind:  # a model of the other design: its own bars
            self._kind = kind
            self._bars.data = neuron_columns(self._acts, 0, 0)
            k = self._acts.neurons.shape[-1]
            self._neurons_pane.object = neurons_figure(self.style, kind, self._bars, k)
        self._hist_fig.title.text = f"All {self._acts.width} activations h"
        self._surface_caption.object = surface_caption(kind, s.model)
        try:
            weights = s.engine.weights(s.model)
        except EngineError:
            weights = None
        self._params.object = params_html(cfg, s.model, weights)

    @param.depends("state.forward", "state.layer", "state.query", watch=True)
    @draws
    def _draw(self) -> None:
        s = self.state
        if s.forward is None:
            return
        if s.forward is not self._read_of:
            self._read()
        a = self._acts
        if a is None:
            return
        layer = min(s.layer, a.near.shape[0] - 1)
        token = min(s.query, a.near.shape[1] - 1)
        self._bars.data = neuron_columns(a, layer, token)
        self._points.data = point_columns(a, layer, token)
        self._hist.patch({"count": [(slice(None), [int(c) for c in a.counts[layer, token]])]})
        self._neurons_pane.object.title.text = fill(NEURONS_TITLE, {"layer": layer})
        self._summary.object = summary_html(a, s.labels, layer, token)
        self._table.object = table_html(a, layer, token)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


def neuron_columns_empty() -> dict[str, list]:
    return {k: [] for k in ("x", "neuron", "up", "hidden", "gate", "gate_act")}


# -- the snapshot ------------------------------------------------------------------------------
# The same figures and texts; every (layer, token)'s summary is embedded (the most active
# neurons' stages, the near-zero and switched-off counts, the histogram) and ``js/ffn.js``
# picks the selected one when a layer button or the token menu changes.


def _ints(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a).ravel()
    return a.astype(np.uint16 if a.size == 0 or a.max() < 65536 else np.int32)


def snapshot(ctx: Context):
    style, cfg = ctx.style, ctx.config
    a = read_activations(ctx.outputs(*needed(cfg)))
    kind = "swiglu" if a.swiglu else "gelu"
    n_layer, t, k = a.neurons.shape
    layer = index_buttons(ctx, n_layer, ctx.selection.layer, "ffn-layer")
    q = ctx.query
    token = Select(
        title="Token",
        options=[(str(i), label) for i, label in enumerate(ctx.labels)],
        value=str(q),
        name="ffn-token",
        width=380 if style.classroom else 260,
        stylesheets=[ctx.stylesheet],
    )
    l_ = layer.active
    bars = ColumnDataSource(neuron_columns(a, l_, q), name="ffn-bars")
    hist = ColumnDataSource(hist_columns(style, a.counts[l_, q]), name="ffn-hist-bins")
    points = ColumnDataSource(point_columns(a, l_, q), name="ffn-points")
    neurons = neurons_figure(style, kind, bars, k)
    neurons.title.text = fill(NEURONS_TITLE, {"layer": l_})
    top = {"neurons": _ints(a.neurons), "hidden": a.hidden.ravel(), "up": a.up.ravel()}
    if a.swiglu:
        top.update(gate=a.gate.ravel(), gate_act=a.gate_act.ravel())
    summary = div(ctx, summary_html(a, ctx.labels, l_, q), "explain", name="ffn-summary")
    table = div(ctx, table_html(a, l_, q), "explain", name="ffn-table")
    redraw = callback(
        "ffn",
        "draw()",
        layer=layer,
        token=token,
        L=n_layer,
        T=t,
        K=k,
        B=len(F.HIST_EDGES) - 1,
        swiglu=a.swiglu,
        top=ColumnDataSource(top, name="ffn-top"),
        stats=ColumnDataSource(
            {"near": _ints(a.near), "negative": _ints(a.negative)}, name="ffn-stats"
        ),
        counts=ColumnDataSource({"counts": _ints(a.counts)}, name="ffn-counts"),
        bars=bars,
        hist=hist,
        points=points,
        fig=neurons,
        summary=summary,
        table=table,
        labels=ctx.labels,
        width=a.width,
        title_t=NEURONS_TITLE,
        summary_t=summary_template(a),
        off_t=off_template(kind),
        table_t=table_template(kind),
        row_t=row_template(kind),
    )
    layer.js_on_change("active", redraw)
    token.js_on_change("value", redraw)
    curves_w = SIZES[style.classroom]["curves"][0]
    surface_w = SIZES[style.classroom]["surface"][0]
    return column(
        row(column(div(ctx, "<b>Layer</b>", "explain"), layer), token),
        summary,
        row(neurons, hist_figure(style, hist, a.width)),
        table,
        div(ctx, "<h3>The activation functions</h3>", "explain"),
        row(
            column(
                curves_figure(style),
                diff_figure(style),
                div(ctx, curves_caption(), "explain", width=curves_w),
            ),
            column(
                surface_figure(style, points),
                div(ctx, surface_caption(kind, ctx.model), "explain", width=surface_w),
            ),
        ),
        div(ctx, "<h3>Parameters at the same width</h3>", "explain"),
        div(ctx, params_html(cfg, ctx.model, _weights(ctx)), "explain", name="ffn-params"),
    )


def _weights(ctx: Context) -> dict | None:
    try:
        return ctx.engine.weights(ctx.model)
    except EngineError:
        return None
