"""The "residual stream and normalisation" lesson: the stream's norm, what each sublayer adds,
LayerNorm beside RMSNorm step by step, and the build's Pre-LN vs Post-LN measurement.

The numbers come from the model's named outputs (``hidden``, ``resid_mid``), its weights and
the build's record, through :mod:`dashboard.lessons.residual` and :mod:`dashboard.lessons.norms`;
this module draws them. The snapshot embeds the stream (``hidden``, shared with other lessons),
the norms' weights and the stream's norms and cosines computed here, and ``js/norms.js`` (the
norms' twin) with ``js/residual.js`` redraw the token, the layer, the norm and a typed vector.
"""

from __future__ import annotations

import html
from typing import ClassVar

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    FixedTicker,
    HoverTool,
    Legend,
    LegendItem,
    RadioButtonGroup,
    Range1d,
    Select,
    TextInput,
)

from dashboard.lessons import norms as N
from dashboard.lessons import residual as R
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import PlotStyle, add_legend, styled_figure
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import choice_group, index_group, labelled, text_pane
from models.runtime import EngineError

# figure sizes (width, height): normal, classroom (a projector)
SIZES = {
    "stream": {False: (720, 320), True: (1240, 430)},
    "small": {False: (460, 260), True: (640, 330)},
    "steps": {False: (720, 300), True: (1240, 400)},
    "loss": {False: (720, 320), True: (1000, 420)},
    "grads": {False: (460, 320), True: (640, 420)},
}
ATTN_COLOR, MLP_COLOR = "#4c78a8", "#f58518"
ORDER_COLORS = {"pre": "#54a24b", "post": "#e45756"}
SITE_LABELS = {"attn": "ln_1 of the layer", "final": "ln_f (after the last block)"}
PRESETS = ("1, 2, 3, 10", "5, 5, 5, 5", "0.001, -0.002, 0.003", "3e20, -1e20, 2")
FIRST_DIMS = 3  # dimensions of the model's vector written out (and its largest)
TYPED_DIMS = 8  # of a typed vector

SECTIONS = (
    "The residual stream: its norm, and what each sublayer adds",
    "LayerNorm and RMSNorm, step by step",
    "Your own vector",
    "Pre-LN vs Post-LN, measured by the build",
)
STREAM_CAPTION = (
    "<p class='caption'>Every block reads the stream through a norm and adds its attention's "
    "output, then its MLP's, back onto it (a Pre-LN block: x + attn(ln_1(x)), then "
    "+ mlp(ln_2(x))). The thick line is the selected token; the faint ones are the others. "
    "The bars are the selected token's: the norm of each sublayer's added vector, and its "
    "cosine with the stream it is added to (0: at right angles, −1: against it).</p>"
)
STEPS_CAPTION = (
    "<p class='caption'>Every dimension of the selected token's vector: the stream the norm "
    "reads, the model's own norm before its weight (normalised) and after, and the other norm "
    "with the same weight as a what-if. The numbers below are computed in float64 from the "
    "model's float32 stream.</p>"
)
TYPED_HINT = (
    "<p class='caption'>Numbers separated by commas or spaces; both norms with weight 1 "
    "(and β = 0), ε = {eps}. Try a constant vector, a tiny one, or one with a huge entry.</p>"
)

ABOUT = (
    "<b>What you see:</b> the residual stream of the text as the model read it: its norm per "
    "token after the embeddings and after every attention and MLP sublayer, and what each "
    "sublayer added (its norm, and its cosine with the stream); the model's own norm (the "
    "GPT's LayerNorm, the LLaMA's RMSNorm) applied step by step to the selected token's real "
    "vector, beside the other norm as a what-if, and to a vector you type; and the build's "
    "Pre-LN vs Post-LN training runs. <b>Try:</b> pick a token and a layer and follow the mean "
    "and the variance; type a constant vector to see what ε does; switch the model to see the "
    "other norm."
)


class ResidualOptions(Options):
    """The lesson's options (the layer and the token are the shared selection's)."""

    url: ClassVar[dict[str, str]] = {"norm_site": "norm", "typed_vector": "vector"}

    norm_site = param.Selector(default="attn", objects=list(R.SITES), doc="Norm stepped through.")
    # any text a student types (a link's too): a bad one is shown with its message, never raised
    typed_vector = param.String(default=PRESETS[0], doc="A typed vector.")


# -- what both homes show ---------------------------------------------------------------------
def g4(v: float) -> str:
    """A number for the page (4 significant digits; js/common.js py_g writes the same)."""
    return f"{v:.4g}"


def short_stage(name: str) -> str:
    """An axis tick of a stage or sublayer name."""
    return name.replace("embeddings", "emb").replace(": + ", " ").replace("attention", "attn")


def stream_lines(report: R.StreamReport | None) -> dict:
    """Every token's line of the stream chart (faint)."""
    if report is None:
        return dict(xs=[], ys=[])
    xs = list(range(report.norms.shape[0]))
    return dict(xs=[xs] * report.norms.shape[1], ys=[col.tolist() for col in report.norms.T])


def selected_line(report: R.StreamReport | None, t: int) -> dict:
    """The selected token's line of the stream chart."""
    if report is None:
        return dict(x=[], y=[])
    return dict(x=list(range(report.norms.shape[0])), y=report.norms[:, t].tolist())


def set_stage_ticks(fig, names: list[str]) -> None:
    """Name the x axis's ticks by stage (or sublayer)."""
    fig.xaxis.ticker = FixedTicker(ticks=list(range(len(names))))
    fig.xaxis.major_label_overrides = {i: short_stage(n) for i, n in enumerate(names)}


def stream_figure(style: PlotStyle, report: R.StreamReport | None, t: int):
    """The stream's norm at every stage: every token faint, token ``t`` thick. Returns the
    figure, every token's source and the selected token's (``residual-norm-selected``)."""
    w, h = SIZES["stream"][style.classroom]
    fig = styled_figure(style, w, h, "Norm of the stream, every token", name="residual-norms")
    fig.yaxis.axis_label = "‖stream‖"
    set_stage_ticks(fig, R.stage_names(report.n_layer if report else 0))
    fig.yaxis.ticker.desired_num_ticks = 4
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    lines = ColumnDataSource(data=stream_lines(report), name="residual-norm-lines")
    fig.multi_line("xs", "ys", source=lines, line_color=style.muted, line_alpha=0.35)
    selected = ColumnDataSource(data=selected_line(report, t), name="residual-norm-selected")
    lw = 5 if style.classroom else 3
    fig.line("x", "y", source=selected, line_width=lw, color=style.accent)
    dots = fig.scatter("x", "y", source=selected, size=lw + 5, color=style.accent)
    fig.add_tools(HoverTool(renderers=[dots], tooltips=[("‖stream‖", "@y{0.000}")]))
    return fig, lines, selected


def sublayer_columns(report: R.StreamReport, t: int) -> tuple[dict, dict]:
    """The selected token's bars: each sublayer's added norm, and its cosine."""
    names = R.sublayer_names(report.n_layer)
    colors = [ATTN_COLOR if "attention" in n else MLP_COLOR for n in names]
    x = list(range(len(names)))
    added = dict(x=x, top=report.added[:, t].tolist(), name=names, color=colors)
    cos = dict(x=x, top=report.cosines[:, t].tolist(), name=names, color=colors)
    return added, cos


def sublayer_figures(style: PlotStyle, report: R.StreamReport | None, t: int):
    """The two bar charts (``residual-added``, ``residual-cosine``) and their sources."""
    w, h = SIZES["small"][style.classroom]
    n_layer = report.n_layer if report else 0
    names = R.sublayer_names(n_layer)
    added, cos = sublayer_columns(report, t) if report else ({}, {})
    out = []
    for key, title, data, label in (
        ("added", "Norm of each addition", added, "‖added‖"),
        ("cosine", "Cosine with the stream", cos, "cosine"),
    ):
        src = ColumnDataSource(
            data=data or dict(x=[], top=[], name=[], color=[]), name=f"residual-{key}-bars"
        )
        fig = styled_figure(style, w, h, title, name=f"residual-{key}")
        fig.vbar(x="x", top="top", width=0.8, color="color", source=src)
        set_stage_ticks(fig, names)
        fig.xaxis.major_label_orientation = 0.8
        fig.yaxis.axis_label = label
        fig.yaxis.ticker.desired_num_ticks = 4
        fig.ygrid.visible = True
        fig.ygrid.grid_line_alpha = 0.25
        if key == "cosine":
            fig.y_range = Range1d(-1.05, 1.05)
        fig.add_tools(HoverTool(tooltips=[("", "@name"), (label, "@top{0.000}")]))
        out += [fig, src]
    return out


def token_html(report: R.StreamReport, labels: list[str], t: int) -> str:
    """The selected token's stream in a sentence (js/residual.js token_html writes the same)."""
    names = R.sublayer_names(report.n_layer)
    big = int(np.argmax(report.added[:, t]))
    return (
        f"<p>Token <b class='tok'>{html.escape(labels[t])}</b>: the stream's norm is "
        f"{g4(report.norms[0, t])} after the embeddings and {g4(report.norms[-1, t])} after "
        f"the last block. The largest addition is layer {names[big]} (norm "
        f"{g4(report.added[big, t])}, cosine {g4(report.cosines[big, t])} with the stream it "
        "joins).</p>"
    )


def norm_titles(model: str, spec: R.NormSpec) -> dict[str, str]:
    """Each norm's title for the model's vector: its own, and the other as a what-if."""
    name, key = html.escape(model), html.escape(spec.key)
    if spec.kind == "layernorm":
        return {
            "layernorm": f"LayerNorm: {name}'s own {key} (its trained γ and β)",
            "rmsnorm": "RMSNorm, what if: the same γ as its weight, no mean, no β",
        }
    return {
        "rmsnorm": f"RMSNorm: {name}'s own {key} (its trained weight)",
        "layernorm": "LayerNorm, what if: the same weight as γ, no β",
    }


def typed_titles(eps: float) -> dict[str, str]:
    """Each norm's title for a typed vector (no model's weights)."""
    return {
        "layernorm": f"LayerNorm (γ = 1, β = 0, ε = {eps:g})",
        "rmsnorm": f"RMSNorm (weight 1, ε = {eps:g})",
    }


def layer_norm_html(b: R.BothNorms, title: str, weight, bias, dims: list[int]) -> str:
    """LayerNorm's steps on ``b.x`` (js/residual.js layer_norm_html writes the same)."""
    s, eps = b.layer, f"{b.eps:g}"
    mean, var, std = float(s.mean[0]), float(s.var[0]), float(s.std[0])
    steps = [
        f"<li>mean μ = {g4(mean)}</li>",
        f"<li>variance σ² = mean of (x − μ)² = {g4(var)}</li>",
        f"<li>divide x − μ by √(σ² + ε) = √({g4(var)} + {eps}) = {g4(std)}</li>",
    ]
    if weight is not None:
        steps.append("<li>multiply by γ</li>")
    if bias is not None:
        steps.append("<li>add β</li>")
    lines = []
    for i in dims:
        x, n = float(b.x[i]), float(s.normalised[i])
        line = f"dim {i}: {g4(x)} − {g4(mean)} = {g4(x - mean)} → ÷ {g4(std)} = {g4(n)}"
        if weight is not None:
            line += f" → × {g4(weight[i])} = {g4(n * weight[i])}"
        if bias is not None:
            line += f" → + {g4(bias[i])} = {g4(float(s.out[i]))}"
        lines.append(f"<p class='norm-dim'>{line}</p>")
    return _norm_block(title, steps, lines, b.x, s.out)


def rms_norm_html(b: R.BothNorms, title: str, weight, dims: list[int]) -> str:
    """RMSNorm's steps on ``b.x`` (js/residual.js rms_norm_html writes the same)."""
    s, eps = b.rms, f"{b.eps:g}"
    ms, rms = float(s.mean_square[0]), float(s.rms[0])
    steps = [
        f"<li>mean square = mean of x² = {g4(ms)}</li>",
        f"<li>divide x by √(mean square + ε) = √({g4(ms)} + {eps}) = {g4(rms)}</li>",
    ]
    if weight is not None:
        steps.append("<li>multiply by the weight</li>")
    lines = []
    for i in dims:
        x, n = float(b.x[i]), float(s.normalised[i])
        line = f"dim {i}: {g4(x)} ÷ {g4(rms)} = {g4(n)}"
        if weight is not None:
            line += f" → × {g4(weight[i])} = {g4(float(s.out[i]))}"
        lines.append(f"<p class='norm-dim'>{line}</p>")
    return _norm_block(title, steps, lines, b.x, s.out)


def _norm_block(title: str, steps: list[str], lines: list[str], x, out) -> str:
    size = (
        f"<p class='norm-dim'>‖x‖ = {g4(float(np.linalg.norm(x)))} → ‖output‖ = "
        f"{g4(float(np.linalg.norm(out)))} ({len(x)} dimensions)</p>"
    )
    return (
        f"<div class='norm-block'><p><b>{title}</b></p><ol>{''.join(steps)}</ol>"
        f"{''.join(lines)}{size}</div>"
    )


def both_html(b: R.BothNorms, titles: dict[str, str], spec: R.NormSpec | None, dims) -> str:
    """Both norms' steps, the model's own first."""
    w = None if spec is None else spec.weight
    bias = None if spec is None else spec.bias
    parts = {
        "layernorm": layer_norm_html(b, titles["layernorm"], w, bias, dims),
        "rmsnorm": rms_norm_html(b, titles["rmsnorm"], w, dims),
    }
    first = b.own or "layernorm"
    return parts[first] + parts["rmsnorm" if first == "layernorm" else "layernorm"]


def steps_columns(b: R.BothNorms) -> dict:
    """The steps chart's data: every dimension's input, the own norm's normalised vector and
    output, and the other norm's output."""
    own = b.layer if b.own == "layernorm" else b.rms
    other = b.rms if b.own == "layernorm" else b.layer
    return dict(
        dim=list(range(len(b.x))),
        x=b.x.tolist(),
        normalised=own.normalised.tolist(),
        out=own.out.tolist(),
        other=other.out.tolist(),
    )


STEP_COLUMNS = ("x", "normalised", "out", "other")


def steps_labels(model_norm: str) -> list[str]:
    """The steps chart's legend, for a model whose norm is ``model_norm``."""
    own = R.NORM_NAMES[model_norm]
    other = R.NORM_NAMES["rmsnorm" if model_norm == "layernorm" else "layernorm"]
    return ["stream (input)", f"{own}, before its weight", f"{own} output", f"{other} (what if)"]


def steps_figure(style: PlotStyle, model_norm: str):
    """The steps chart (``residual-steps``) and its source (``residual-steps-lines``)."""
    w, h = SIZES["steps"][style.classroom]
    fig = styled_figure(style, w, h, "The norm's steps, every dimension", name="residual-steps")
    fig.xaxis.axis_label = "dimension"
    fig.yaxis.ticker.desired_num_ticks = 4
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    src = ColumnDataSource(
        data=dict(dim=[], x=[], normalised=[], out=[], other=[]), name="residual-steps-lines"
    )
    lw = 3 if style.classroom else 1.5
    items = []
    colors = (style.muted, ATTN_COLOR, style.accent, MLP_COLOR)
    for col, label, color in zip(STEP_COLUMNS, steps_labels(model_norm), colors, strict=True):
        dash = "dashed" if col == "other" else "solid"
        r = fig.line("dim", col, source=src, color=color, line_width=lw, line_dash=dash)
        items.append(LegendItem(label=label, renderers=[r]))
    legend = Legend(items=items, location="top_left", label_text_font_size=style.tick)
    legend.background_fill_alpha = 0.6
    legend.background_fill_color = style.background
    legend.label_text_color = style.text
    legend.border_line_color = None
    legend.click_policy = "hide"
    fig.add_layout(legend)
    return fig, src


def loss_figure(style: PlotStyle, rec: R.NormPosition | None):
    """Both orders' training loss at every step (``residual-loss``)."""
    w, h = SIZES["loss"][style.classroom]
    fig = styled_figure(style, w, h, "Pre-LN vs Post-LN: training loss", name="residual-loss")
    fig.xaxis.axis_label = "step"
    fig.yaxis.axis_label = "loss (nats)"
    fig.yaxis.ticker.desired_num_ticks = 4
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    items = []
    for order, run in (rec.runs if rec else {}).items():
        src = ColumnDataSource(
            data=dict(step=list(range(len(run.loss))), loss=run.loss.tolist()),
            name=f"residual-loss-{order}",
        )
        lw = 3 if style.classroom else 1.5
        r = fig.line("step", "loss", source=src, color=ORDER_COLORS[order], line_width=lw)
        items.append(LegendItem(label=R.ORDERS[order], renderers=[r]))
    add_legend(fig, style, items, "top_right")
    return fig


def log_ticks(rec: R.NormPosition) -> list[float]:
    """Powers of ten, and three times them, spanning the gradient norms (a log axis)."""
    g = np.concatenate([r.init_block_grad_norms for r in rec.runs.values()])
    g = g[np.isfinite(g) & (g > 0)]
    if not g.size:
        return [1.0]
    lo, hi = int(np.floor(np.log10(g.min()))), int(np.ceil(np.log10(g.max())))
    return [float(f"{m}e{e}") for e in range(lo, hi + 1) for m in (1, 3)]


def grads_figure(style: PlotStyle, rec: R.NormPosition | None):
    """Each block's gradient norm at initialisation, both orders, on a log axis."""
    w, h = SIZES["grads"][style.classroom]
    fig = styled_figure(
        style,
        w,
        h,
        "Gradient norm at init",
        name="residual-init-grads",
        y_axis_type="log",
    )
    fig.xaxis.axis_label = "block"
    fig.yaxis.axis_label = "‖gradient‖"
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    items = []
    for order, run in (rec.runs if rec else {}).items():
        g = run.init_block_grad_norms
        src = ColumnDataSource(
            data=dict(block=list(range(len(g))), norm=g.tolist()), name=f"residual-grads-{order}"
        )
        lw = 3 if style.classroom else 2
        r = fig.line("block", "norm", source=src, color=ORDER_COLORS[order], line_width=lw)
        d = fig.scatter("block", "norm", source=src, color=ORDER_COLORS[order], size=lw + 6)
        items.append(LegendItem(label=R.ORDERS[order], renderers=[r, d]))
    if rec:
        fig.xaxis.ticker = FixedTicker(ticks=list(range(rec.n_layer)))
        fig.yaxis.ticker = FixedTicker(ticks=log_ticks(rec))
    fig.add_tools(HoverTool(tooltips=[("block", "@block"), ("‖gradient‖", "@norm{0.0000}")]))
    add_legend(fig, style, items, "center_right")
    return fig


def verdict_html(rec: R.NormPosition, v: R.Verdict, unigram: float | None) -> str:
    """The measurement in words, every figure from the record (and the manifest's unigram
    baseline, where given)."""
    b, w = R.ORDERS[v.better], R.ORDERS[v.worse]
    runs = rec.runs
    setting = (
        f"<p>The build trained the same {rec.n_layer}-block model (width {rec.n_embd}) in both "
        f"orders, from the same initial weights and data (seed {rec.seed}), for {rec.steps} "
        f"steps at learning rate {rec.lr:g} with {rec.warmup_steps} warm-up steps.</p>"
    )
    if v.diverged:
        said = " and ".join(R.ORDERS[o] for o in v.diverged)
        div_text = f"<b>{said} diverged</b>: its loss stopped being a finite number. "
    else:
        div_text = "Neither run diverged (every loss stayed finite). "
    parts = [div_text]
    if v.worse not in v.diverged:
        parts.append(
            f"<b>{w} trained slower</b>: its validation loss was {runs[v.worse].val_loss:.3f} "
            f"nats against {b}'s {runs[v.better].val_loss:.3f}, {v.gap:.3f} nats higher. "
        )
        if v.caught_up is not None:
            parts.append(
                f"{b}'s training loss (the mean of {R.SMOOTH} steps) was already down to "
                f"{w}'s final {v.final_smoothed[v.worse]:.3f} at step {v.caught_up} of "
                f"{rec.steps}. "
            )
    if unigram is not None and v.below_unigram:
        above = [R.ORDERS[o] for o, below in v.below_unigram.items() if not below]
        if above:
            parts.append(
                f"{' and '.join(above)} ended above the unigram baseline ({unigram:.3f} nats, "
                "what predicting each token by its frequency alone scores on this corpus "
                "and tokenizer): it had not yet learned more than token frequencies. "
            )
    grads = " ".join(
        f"{R.ORDERS[o]}'s blocks had gradient norms from {lo:.3g} to {hi:.3g}."
        for o, (lo, hi) in v.init_range.items()
    )
    parts.append(f"At initialisation, on the first batch: {grads}")
    for o, ratio in v.init_first_over_rest.items():
        if ratio >= 2:
            parts.append(
                f" {R.ORDERS[o]}'s first block got {ratio:.0f}× the gradient of any later block."
            )
    return (
        setting
        + f"<p>{''.join(parts)}</p>"
        + "<p class='hint'>One small run of each on one corpus: a measurement of these two "
        "models, not a general law.</p>"
    )


def record_texts(engine, model: str) -> tuple[R.NormPosition | None, str]:
    """The build's record and its text (or why there is none)."""
    try:
        rec = R.read_norm_position(engine.static_dir, engine.manifest)
    except ValueError as err:
        return None, f"<p class='message error'>{html.escape(str(err))}</p>"
    unigram = (engine.entry(model).get("training") or {}).get("unigram_entropy")
    return rec, verdict_html(rec, R.verdict(rec, unigram), unigram)


class ResidualLesson(LessonView):
    """The stream, the norms step by step, a typed vector, and Pre-LN vs Post-LN."""

    error = param.String(default="", doc="Why the typed vector was refused.")

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        self._norm_kind = s.config.get("norm", "layernorm")
        self._stream_fig, self._lines, self._selected = stream_figure(style, None, 0)
        self._added_fig, self._added, self._cos_fig, self._cos = sublayer_figures(style, None, 0)
        self._stream_error = text_pane("", "message", "error", visible=False)
        self._token = text_pane("", "explain", "residual-token")
        self._steps_fig, self._steps = steps_figure(style, self._norm_kind)
        self._steps_html = text_pane("", "explain", "residual-steps-text")
        self._steps_error = text_pane("", "message", "error", visible=False)
        self.vector_input = pn.widgets.TextInput(
            label="Type a vector",
            value=str(s.typed_vector),
            width=360 if style.classroom else 260,
            css_classes=["residual-vector"],
        )
        self.vector_input.param.watch(self._typed, "value")
        self._typed_hint = text_pane("", "caption")
        self._typed_error = text_pane("", "message", "error", "residual-error", visible=False)
        self._typed_notice = text_pane("", "notice", "residual-notice", visible=False)
        self._typed_html = text_pane("", "explain", "residual-typed")
        rec, verdict = record_texts(s.engine, s.model)
        self._verdict = text_pane(verdict, "explain", "residual-verdict")
        self._loss_fig, self._grads_fig = loss_figure(style, rec), grads_figure(style, rec)

        def h(i: int) -> pn.pane.HTML:
            return text_pane(f"<h3>{SECTIONS[i]}</h3>", "explain", margin=(12, 10, 0, 10))

        sites = choice_group(
            s, "norm_site", {SITE_LABELS[k]: k for k in R.SITES}, css_classes=["residual-site"]
        )
        self._layout = pn.Column(
            h(0),
            self._stream_error,
            pn.pane.Bokeh(self._stream_fig, margin=(5, 5)),
            self._token,
            pn.FlexBox(
                pn.pane.Bokeh(self._added_fig, margin=(5, 5)),
                pn.pane.Bokeh(self._cos_fig, margin=(5, 5)),
                gap="6px",
                sizing_mode="stretch_width",
            ),
            text_pane(STREAM_CAPTION, "caption"),
            h(1),
            pn.FlexBox(
                labelled("Layer", index_group(s, "layer", "n_layer")),
                labelled("Norm", sites),
                margin=0,
                css_classes=["controls"],
                sizing_mode="stretch_width",
            ),
            self._steps_error,
            pn.pane.Bokeh(self._steps_fig, margin=(5, 5)),
            text_pane(STEPS_CAPTION, "caption"),
            self._steps_html,
            h(2),
            self.vector_input,
            self._typed_hint,
            self._typed_error,
            self._typed_notice,
            self._typed_html,
            h(3),
            pn.FlexBox(
                pn.pane.Bokeh(self._loss_fig, margin=(5, 5)),
                pn.pane.Bokeh(self._grads_fig, margin=(5, 5)),
                gap="6px",
                sizing_mode="stretch_width",
            ),
            self._verdict,
            sizing_mode="stretch_width",
            margin=0,
        )
        self._draw_stream()
        self._draw_steps()
        self._typed()

    # -- the stream ----------------------------------------------------------------------------
    def _report(self) -> R.StreamReport:
        """The stream's report for this text (EngineError: the model file lacks resid_mid)."""
        s = self.state
        f = s.outputs("hidden", "resid_mid")
        return R.stream_report(f.hidden, f.resid_mid)

    @param.depends("state.forward", "state.query", watch=True)
    @draws
    def _draw_stream(self) -> None:
        s = self.state
        if s.forward is None:
            return
        try:
            report = self._report()
        except EngineError as err:
            self._stream_error.object = f"<p>{html.escape(str(err))}</p>"
            self._stream_error.visible = True
            for fig in (self._stream_fig, self._added_fig, self._cos_fig):
                fig.visible = False
            self._token.object = ""
            return
        self._stream_error.visible = False
        for fig in (self._stream_fig, self._added_fig, self._cos_fig):
            fig.visible = True
        t = min(s.query, len(s.ids) - 1)
        self._lines.data = stream_lines(report)
        self._selected.data = selected_line(report, t)
        set_stage_ticks(self._stream_fig, R.stage_names(report.n_layer))
        added, cos = sublayer_columns(report, t)
        self._added.data, self._cos.data = added, cos
        for fig in (self._added_fig, self._cos_fig):
            set_stage_ticks(fig, R.sublayer_names(report.n_layer))
        self._token.object = token_html(report, s.labels, t)

    # -- the norms, step by step ---------------------------------------------------------------
    @param.depends("state.forward", "state.query", "state.layer", "state.norm_site", watch=True)
    @draws
    def _draw_steps(self) -> None:
        s = self.state
        if s.forward is None:
            return
        try:
            spec = R.norm_spec(s.config, s.engine.weights(s.model), s.norm_site, s.layer)
        except (EngineError, KeyError, ValueError) as err:
            self._steps_error.object = f"<p>{html.escape(str(err))}</p>"
            self._steps_error.visible = True
            return
        self._steps_error.visible = False
        t = min(s.query, len(s.ids) - 1)
        x = R.norm_input(s.forward.hidden, s.norm_site, s.layer)[t]
        b = R.both_norms(x, spec)
        self._steps.data = steps_columns(b)
        if spec.kind != self._norm_kind:  # another model: its own norm's legend
            self._norm_kind = spec.kind
            legend = self._steps_fig.select_one(Legend)
            for item, label in zip(legend.items, steps_labels(spec.kind), strict=True):
                item.label = label
        dims = R.shown_dims(x, FIRST_DIMS)
        self._steps_html.object = both_html(b, norm_titles(s.model, spec), spec, dims)

    # -- the typed vector ----------------------------------------------------------------------
    def _eps(self) -> float:
        return float(self.state.config.get("layer_norm_eps", N.LAYER_NORM_EPS))

    def _typed(self, event=None) -> None:
        """Parse the box's text: its steps, or its message (the last good steps stay)."""
        text = self.vector_input.value
        try:
            x = N.parse_vector(text)
        except ValueError as err:
            self.error = str(err)
            return
        self.error = ""
        if self.state.typed_vector != text:
            self.state.typed_vector = text
        self._draw_typed(x)

    @param.depends("state.typed_vector", watch=True)
    def _vector_from_state(self) -> None:
        if self.vector_input.value != self.state.typed_vector:
            self.vector_input.value = str(self.state.typed_vector)  # a link set it

    @param.depends("state.model", watch=True)
    def _model_changed(self) -> None:
        self._typed()

    @param.depends("error", watch=True)
    def _show_error(self) -> None:
        self._typed_error.object = f"<p>{html.escape(self.error)}</p>"
        self._typed_error.visible = bool(self.error)

    @draws
    def _draw_typed(self, x: np.ndarray) -> None:
        eps = self._eps()
        self._typed_hint.object = TYPED_HINT.format(eps=f"{eps:g}")
        notices = R.typed_notices(x, eps)
        self._typed_notice.object = "".join(f"<p>{html.escape(n)}</p>" for n in notices)
        self._typed_notice.visible = bool(notices)
        b = R.both_norms(x, eps=eps)
        self._typed_html.object = both_html(b, typed_titles(eps), None, R.shown_dims(x, TYPED_DIMS))

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------
# The same figures and texts. Embedded: the stream (``hidden``, shared), each norm's weights,
# and the stream's norms and cosines at every stage; js/residual.js redraws the token, the
# layer, the norm and a typed vector with js/norms.js (the norms' twin).


def snapshot(ctx: Context):
    s, style, cfg = ctx.selection, ctx.style, ctx.config
    f = ctx.outputs("hidden", "resid_mid")  # EngineError: no resid_mid (the tab says so)
    report = R.stream_report(f.hidden, f.resid_mid)
    n_layer, t_len, d = f.hidden.shape[0] - 1, f.hidden.shape[1], f.hidden.shape[2]
    t = ctx.query
    layer_i = min(max(int(s.layer), 0), n_layer - 1)
    site = s.norm_site if s.norm_site in R.SITES else ResidualOptions.norm_site
    weights = ctx.engine.weights(ctx.model)
    specs = [R.norm_spec(cfg, weights, "attn", i) for i in range(n_layer)]
    specs.append(R.norm_spec(cfg, weights, "final", 0))
    kind = specs[0].kind
    eps = specs[0].eps

    token = Select(
        title="Token",
        value=str(t),
        options=[(str(i), label) for i, label in enumerate(ctx.labels)],
        name="residual-token",
        stylesheets=[ctx.stylesheet],
    )
    layer = index_buttons(ctx, n_layer, layer_i, "residual-layer")
    sites = list(R.SITES)
    site_buttons = RadioButtonGroup(
        labels=[SITE_LABELS[k] for k in sites],
        active=sites.index(site),
        name="residual-site",
        stylesheets=[ctx.stylesheet],
    )
    vector = TextInput(
        title="Type a vector",
        value=str(s.typed_vector),
        width=360 if style.classroom else 260,
        name="residual-vector",
        stylesheets=[ctx.stylesheet],
    )

    stream_fig, _lines, selected = stream_figure(style, report, t)
    added_fig, added, cos_fig, cos = sublayer_figures(style, report, t)
    steps_fig, steps = steps_figure(style, kind)
    rec, verdict = record_texts(ctx.engine, ctx.model)
    token_div = div(ctx, token_html(report, ctx.labels, t), "explain", name="residual-token-text")
    steps_div = div(ctx, "", "explain", name="residual-steps-text")
    typed_hint = div(ctx, TYPED_HINT.format(eps=f"{eps:g}"), "caption", name="residual-hint")
    typed_error = div(ctx, "", "message", "error", name="residual-error", visible=False)
    typed_notice = div(ctx, "", "notice", name="residual-notice", visible=False)
    typed_div = div(ctx, "", "explain", name="residual-typed")

    titles = [norm_titles(ctx.model, sp) for sp in specs]
    args = dict(
        hidden=ctx.output_data("hidden"),
        stream=ColumnDataSource(
            data=dict(norms=report.norms.ravel()), name="residual-stream-norms"
        ),
        subl=ColumnDataSource(
            data=dict(added=report.added.ravel(), cosines=report.cosines.ravel()),
            name="residual-sublayers",
        ),
        weights=ColumnDataSource(
            data=dict(
                weight=np.concatenate([sp.weight for sp in specs]).astype(np.float32),
                bias=np.concatenate(
                    [sp.bias if sp.bias is not None else np.zeros(d) for sp in specs]
                ).astype(np.float32),
            ),
            name="residual-weights",
        ),
        has_bias=specs[0].bias is not None,
        kind=kind,
        eps=eps,
        L=n_layer,
        T=t_len,
        D=d,
        labels=ctx.labels,
        stage_names=R.stage_names(n_layer),
        sublayer_names=R.sublayer_names(n_layer),
        attn_color=ATTN_COLOR,
        mlp_color=MLP_COLOR,
        own_titles=[tt[kind] for tt in titles],
        other_titles=[tt["rmsnorm" if kind == "layernorm" else "layernorm"] for tt in titles],
        typed_titles=typed_titles(eps),
        first_dims=FIRST_DIMS,
        typed_dims=TYPED_DIMS,
        sites=sites,
        token=token,
        layer=layer,
        site=site_buttons,
        vector=vector,
        selected=selected,
        added=added,
        cos=cos,
        steps=steps,
        token_div=token_div,
        steps_div=steps_div,
        typed_error=typed_error,
        typed_notice=typed_notice,
        typed_div=typed_div,
    )
    # the typed titles as a list (a dict argument arrives in the page as a Map)
    args["typed_titles"] = [args["typed_titles"]["layernorm"], args["typed_titles"]["rmsnorm"]]
    cb = callback(("norms", "residual"), "dispatch(cb_obj)", **args)
    token.js_on_change("value", cb)
    layer.js_on_change("active", cb)
    site_buttons.js_on_change("active", cb)
    vector.js_on_change("value", cb)
    ctx.on_ready(cb)

    def h(i: int):
        return div(ctx, f"<h3>{SECTIONS[i]}</h3>", "explain")

    return column(
        h(0),
        token,
        stream_fig,
        token_div,
        row(added_fig, cos_fig),
        div(ctx, STREAM_CAPTION, "caption"),
        h(1),
        row(
            column(div(ctx, "<b>Layer</b>", "explain"), layer),
            column(div(ctx, "<b>Norm</b>", "explain"), site_buttons),
        ),
        steps_fig,
        div(ctx, STEPS_CAPTION, "caption"),
        steps_div,
        h(2),
        vector,
        typed_hint,
        typed_error,
        typed_notice,
        typed_div,
        h(3),
        row(loss_figure(style, rec), grads_figure(style, rec)),
        div(ctx, verdict, "explain", name="residual-verdict"),
        sizing_mode="stretch_width",
    )
