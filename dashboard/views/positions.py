"""The "Positions" lesson: sinusoidal, learned, RoPE and ALiBi, and past the trained length.

Five sections, one per idea: the sinusoidal table and what its dot product does with
distance; anatomy-gpt's own learned position vectors (their cosine similarities and a 2-D
PCA); RoPE as one pair of dimensions turning with the position, the frequency of every pair
for three bases, the relative property on anatomy-llama's real q and k, and the two memory
layouts; ALiBi's slope for any head count, its bias and the model's scores with it added as
a what-if; and the build's measured loss per position past the block. Every number comes from
:mod:`dashboard.lessons.positions`, the models' weights and named outputs, or the manifest.
In the snapshot ``js/positions.js`` turns the pair, computes the slopes and the what-if.
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
    HoverTool,
    LinearColorMapper,
    NumericInput,
    Range1d,
    Slider,
    Span,
)
from bokeh.palettes import Category10_3, Viridis256

from dashboard.lessons import positions as P
from dashboard.lessons import recipes as R
from dashboard.lessons.attention import head_stage, mask_matrix
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import (
    PROB_PALETTE,
    SCORE_PALETTE,
    MatrixPlot,
    PlotStyle,
    RowMatrix,
    styled_figure,
)
from dashboard.views.recipes import loss_figure, manifest_entries, positions_text
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import head_controls, labelled, text_pane, two_way
from models.reading import read_text
from models.runtime import EngineError

ABOUT = (
    "<b>What you see:</b> attention alone cannot tell where a token is, so a model adds the "
    "position somewhere: a fixed sinusoidal vector, a learned vector per position "
    "(anatomy-gpt's own), a rotation of every query and key (RoPE, anatomy-llama's), or a "
    "penalty on distant keys (ALiBi); and what the build measured past the trained length. "
    "<b>Try:</b> move the RoPE position and watch the pair turn (slow pairs barely move); "
    "type 6 or 12 heads for ALiBi and see the slopes for a head count that is not a power of "
    "two; pick a head and compare its scores with the ALiBi what-if."
)

N_POSITIONS = 128  # the sinusoidal table's rows, our models' block size
ROPE_MAX_POSITION = 255  # twice the block: where the build measured RoPE's loss
SHIFTS = (0, 1, 10, 100, 1000)
SIZE = {  # (width, height): normal, classroom
    "matrix": {False: (460, 420), True: (640, 560)},
    "line": {False: (460, 300), True: (640, 400)},
    "circle": {False: (360, 360), True: (480, 480)},
}
PAIR_COLORS = Category10_3


class PositionsOptions(Options):
    """The lesson's own options (layer, head, query and key are the shared selection)."""

    url: ClassVar[dict[str, str]] = {
        "rope_pair": "pair",
        "rope_position": "pos",
        "alibi_heads": "alibi",
    }

    rope_pair = param.Integer(default=0, bounds=(0, 63), doc="RoPE: the pair of dimensions.")
    rope_position = param.Integer(
        default=5, bounds=(0, ROPE_MAX_POSITION), doc="RoPE: the position the pair is turned to."
    )
    alibi_heads = param.Integer(default=12, bounds=(1, 64), doc="ALiBi: the number of heads.")


# -- texts, both homes ------------------------------------------------------------------------
def wavelength_text(d_model: int) -> str:
    """The shortest and longest wavelengths of the sinusoidal table."""
    w = P.wavelengths(d_model)
    return (
        f"<p class='hint'>Each pair of dimensions (2i, 2i + 1) is a sine and a cosine of "
        f"wavelength 2π·10000^(2i/d): from {w[0]:.2f} positions for pair 0 to "
        f"{w[-1]:,.0f} for pair {len(w) - 1} (d = {d_model}). Nearby positions get similar "
        "vectors, distant ones less similar ones: the dot product falls with distance.</p>"
    )


def pair_title(pair: int, position: int) -> str:
    return f"Pair {pair}, position {position}"


PAIR_TEXT = (
    "<p>Pair {pair} of d_head = {d} turns by θ = {theta} radians per position (a full turn "
    "every {wave} positions). At position {position} it has turned {angle} radians; over the "
    "block of {block} positions it makes {turns} turns.</p>"
)


def pair_text(pair: int, d_head: int, base: float, position: int, block: int) -> str:
    """What one RoPE pair does at one position (the page fills PAIR_TEXT alike)."""
    theta = float(P.rope_frequencies(d_head, base)[pair])
    return PAIR_TEXT.format(
        pair=pair,
        d=d_head,
        theta=f"{theta:.6g}",
        wave=f"{float(P.wavelengths(d_head, base)[pair]):.1f}",
        position=position,
        angle=f"{position * theta:.4f}",
        block=block,
        turns=f"{block * theta / (2 * np.pi):.3f}",
    )


def frequency_text(d_head: int, block: int) -> str:
    """The slowest pair's wavelength for each base, against the block size."""
    parts = []
    for label, base in P.ROPE_BASES.items():
        slowest = float(P.wavelengths(d_head, base)[-1])
        parts.append(f"base {label}: {slowest:,.0f} positions ({slowest / block:,.0f}× the block)")
    return (
        f"<p class='hint'>The slowest pair's wavelength (d_head = {d_head}): "
        + "; ".join(parts)
        + ". A larger base slows every pair but the first, so positions far apart still get "
        "distinct angles.</p>"
    )


def relative_html(model: str, q, k, m: int, n: int, base: float, layer: int, head: int) -> str:
    """The relative property on the model's real q and k: the same score at every shift."""
    scores = P.relative_scores(q, k, m, n, SHIFTS, base)
    rows = "".join(
        f"<tr><td class='num'>{s}</td><td class='num'>({m + s}, {n + s})</td>"
        f"<td class='num'>{v:.12f}</td></tr>"
        for s, v in zip(SHIFTS, scores, strict=True)
    )
    spread = float(scores.max() - scores.min())
    return (
        f"<p>{html.escape(model)}'s own q (query {m}) and k (key {n}) of layer {layer}, head "
        f"{head}, before the rotation, rotated as if they stood s positions later: the score "
        f"q·k/√d is the same (largest difference {spread:.1e}), because RoPE's dot product "
        "sees only the distance m − n.</p>"
        "<table class='positions-relative'><tr><th>shift s</th><th>(query, key)</th>"
        f"<th>score</th></tr>{rows}</table>"
    )


def layout_html(d_head: int) -> str:
    """The two memory layouts and the permutation between them."""
    perm = P.half_to_interleaved_permutation(d_head)
    shown = ", ".join(str(int(i)) for i in perm[:8])
    return (
        "<p>Two layouts of the same rotation: Hugging Face's <b>half-split</b> pairs dimension "
        f"i with i + {d_head // 2} (the first half rotates against the second); Meta's "
        "original code pairs <b>neighbours</b> (2i, 2i + 1). Reading a half-split vector in "
        f"the order [{shown}, …] puts each of its pairs side by side: rotating that "
        "interleaved gives the half-split rotation, read in the same order. So Meta's "
        "checkpoints are converted by permuting W_q's and W_k's rows this way; the scores "
        "do not change.</p>"
    )


RULE_POWER = "<p>{n} is a power of two: slope i is 2^(−8i/{n}).</p>"
RULE_OTHER = (
    "<p>{n} is not a power of two: the first {m} heads get the slopes for {m} heads, "
    "2^(−8i/{m}); the other {rest} take every other slope for {m2} heads (the 1st, 3rd, …), "
    "which fall between them.</p>"
)
SLOPES_TABLE = (
    "<table class='positions-slopes'><tr><th>head</th><th>slope</th><th>as a fraction</th>"
    "</tr>{rows}</table>"
)
SLOPE_ROW = (
    "<tr><td class='num'>{h}</td><td class='num'>{slope}</td><td class='num'>1/{inv}</td></tr>"
)


def slopes_html(n_heads: int) -> str:
    """Every head's ALiBi slope and the rule for the head count (the page fills the same
    templates)."""
    slopes = P.alibi_slopes(n_heads)
    m = 2 ** int(np.floor(np.log2(n_heads)))
    if m == n_heads:
        rule = RULE_POWER.format(n=n_heads)
    else:
        rule = RULE_OTHER.format(n=n_heads, m=m, rest=n_heads - m, m2=2 * m)
    rows = "".join(
        SLOPE_ROW.format(h=h, slope=f"{s:.6g}", inv=f"{1 / s:.4g}") for h, s in enumerate(slopes)
    )
    return rule + SLOPES_TABLE.format(rows=rows)


def learned_entry(engine) -> tuple[str | None, np.ndarray | None]:
    """The first model in the manifest with learned positions, and its table."""
    for name, entry in manifest_entries(engine).items():
        if entry.get("config", {}).get("positions", "learned") == "learned":
            weights = engine.weights(name)
            if "wpe.weight" in weights:
                return name, np.asarray(weights["wpe.weight"], dtype=np.float64)
    return None, None


def rope_entry(engine) -> str | None:
    """The first model in the manifest with RoPE."""
    for name, entry in manifest_entries(engine).items():
        if entry.get("config", {}).get("positions") == "rope":
            return name
    return None


# -- figures, both homes ----------------------------------------------------------------------
def line_figure(style: PlotStyle, title: str, name: str, x_label: str, y_label: str, **kw):
    fig = styled_figure(style, *SIZE["line"][style.classroom], title, name=name, **kw)
    fig.xaxis.axis_label = x_label
    fig.yaxis.axis_label = y_label
    fig.ygrid.visible = True
    fig.ygrid.grid_line_alpha = 0.25
    return fig


class Figures:
    """Every figure of the lesson."""

    def __init__(self, style: PlotStyle, d_model: int, learned: np.ndarray | None):
        self.style = style
        c = style.classroom
        lw = 4 if c else 2
        table = P.sinusoidal(N_POSITIONS, d_model)
        self.sinusoid = RowMatrix(
            style,
            *SIZE["matrix"][c],
            f"Sinusoidal: {N_POSITIONS} positions × {d_model}",
            name="positions-sinusoid",
        )
        self.sinusoid.figure.yaxis.axis_label = "position"
        self.sinusoid.update(table, [str(p) for p in range(N_POSITIONS)])
        dots = P.dot_by_distance(table)
        self.distance = line_figure(
            style,
            "Dot product of position 0 and Δ",
            "positions-distance",
            "distance Δ",
            "p₀ · p_Δ",
        )
        self.distance.line(np.arange(len(dots)), dots, line_width=lw, color=style.accent)
        waves = P.wavelengths(d_model)
        self.sin_waves = line_figure(
            style,
            "Sinusoidal wavelengths",
            "positions-sin-waves",
            "pair i (dimensions 2i, 2i + 1)",
            "wavelength (positions)",
            y_axis_type="log",
        )
        self.sin_waves.line(np.arange(len(waves)), waves, line_width=lw, color=style.accent)
        self.sin_waves.add_tools(
            HoverTool(tooltips=[("pair", "@x"), ("wavelength", "@y{0,0.0}")], mode="vline")
        )
        self.learned = self.pca = None
        if learned is not None:
            cos = P.cosine_similarity_matrix(learned)
            n = len(learned)
            self.learned = RowMatrix(
                style,
                *SIZE["matrix"][c],
                "Learned: cosine of every pair",
                name="positions-learned",
                x_label="position",
            )
            self.learned.figure.yaxis.axis_label = "position"
            self.learned.update(cos, [str(p) for p in range(n)])
            pca = P.pca_2d(learned)
            self.pca = styled_figure(
                style, *SIZE["circle"][c], "Learned: 2-D PCA", name="positions-pca"
            )
            self.pca.xaxis.axis_label = f"PC 1 ({100 * pca.explained_ratio[0]:.0f}%)"
            self.pca.yaxis.axis_label = f"PC 2 ({100 * pca.explained_ratio[1]:.0f}%)"
            src = ColumnDataSource(
                data=dict(x=pca.coords[:, 0], y=pca.coords[:, 1], position=np.arange(n)),
                name="positions-pca-points",
            )
            mapper = LinearColorMapper(palette=Viridis256, low=0, high=n - 1)
            dots = self.pca.scatter(
                "x",
                "y",
                source=src,
                size=7 if c else 5,
                color={"field": "position", "transform": mapper},
            )
            self.pca.add_tools(HoverTool(renderers=[dots], tooltips=[("position", "@position")]))
        # RoPE: one pair turning; the frequency of every pair for three bases
        self.circle = styled_figure(
            style,
            *SIZE["circle"][c],
            "",
            name="positions-rope-pair",
            x_range=Range1d(-1.2, 1.2),
            y_range=Range1d(-1.2, 1.2),
        )
        self.path = ColumnDataSource(data=dict(x=[], y=[]), name="positions-rope-path")
        self.arrow = ColumnDataSource(
            data=dict(x0=[0.0], y0=[0.0], x1=[1.0], y1=[0.0]), name="positions-rope-arrow"
        )
        self.circle.scatter("x", "y", source=self.path, size=3, color=style.muted, alpha=0.6)
        self.circle.segment(
            "x0", "y0", "x1", "y1", source=self.arrow, line_width=lw + 1, color=style.accent
        )
        self.circle.xaxis.axis_label = "dimension i"
        self.circle.yaxis.axis_label = "dimension i + d/2"
        self.waves = line_figure(
            style,
            "RoPE: wavelength of each pair",
            "positions-rope-waves",
            "pair i",
            "wavelength (positions)",
            y_axis_type="log",
        )
        self.waves.add_layout(
            Span(
                location=N_POSITIONS,
                dimension="width",
                line_dash="dashed",
                line_color=style.muted,
                line_width=2,
            )
        )

    def draw_waves(self, d_head: int) -> None:
        lw = 4 if self.style.classroom else 2
        for (label, base), color in zip(P.ROPE_BASES.items(), PAIR_COLORS, strict=True):
            w = P.wavelengths(d_head, base)
            self.waves.line(
                np.arange(len(w)), w, line_width=lw, color=color, legend_label=f"base {label}"
            )
        self.waves.legend.location = "top_left"
        self.waves.legend.background_fill_alpha = 0.5

    def draw_pair(self, pair: int, position: int, d_head: int, base: float) -> None:
        theta = float(P.rope_frequencies(d_head, base)[pair])
        path = P.rotate_pair([1.0, 0.0], np.arange(ROPE_MAX_POSITION + 1), theta)
        at = P.rotate_pair([1.0, 0.0], [position], theta)[0]
        self.path.data = dict(x=path[:, 0], y=path[:, 1])
        self.arrow.data = dict(x0=[0.0], y0=[0.0], x1=[float(at[0])], y1=[float(at[1])])
        self.circle.title.text = pair_title(pair, position)


def alibi_figures(style: PlotStyle) -> tuple[MatrixPlot, MatrixPlot]:
    """The selected head's ALiBi bias, and the model's scores with it as probabilities."""
    side = style.small
    bias = MatrixPlot(style, side, kind="scores", name="positions-alibi-bias")
    probs = MatrixPlot(style, side, kind="probs", name="positions-alibi-probs")
    return bias, probs


def draw_alibi(bias_plot, probs_plot, scores, labels, head, query, key) -> None:
    """Both ALiBi matrices for head ``head`` of one layer's ``scores`` (H, T, T)."""
    what_if = P.alibi_what_if(scores)
    t = scores.shape[-1]
    causal = mask_matrix("causal", t)
    slope = float(P.alibi_slopes(scores.shape[0])[head])
    bias_plot.update(
        np.where(causal, what_if.bias[head], -np.inf),
        labels,
        selected=(query, key),
        allowed=causal,
        title=f"Head {head}: bias −{slope:.4g}·(i − j)",
    )
    probs_plot.update(
        head_stage(what_if.biased[head], what_if.probs[head], "probs"),
        labels,
        selected=(query, key),
        allowed=causal,
        title=f"Head {head}: softmax with ALiBi",
    )


def alibi_caption(n_head: int) -> str:
    return (
        "<p class='hint'>A what-if: our models were trained without ALiBi. Each of the model's "
        f"{n_head} heads gets its slope for {n_head} heads, and −slope × the distance back is "
        "added to its real scores q·k/√d before the causal softmax: a steep head looks mostly "
        "at recent tokens. Compare with the attention lesson's probabilities.</p>"
    )


def learned_caption(model: str | None, n: int) -> str:
    if model is None:
        return "<p class='hint'>No model in the manifest has learned positions.</p>"
    return (
        f"<p class='hint'>{html.escape(model)}'s position embeddings, one trained vector for "
        f"each of positions 0–{n - 1}: neighbours end up similar. It has no vector for "
        f"position {n}, so it cannot read a longer text (the dashboard cuts it).</p>"
    )


def past_lines(engine) -> list[R.PositionLoss]:
    lines, _ = R.position_losses(manifest_entries(engine))
    return lines


SECTION = "<h3>{}</h3>"


class PositionsLesson(LessonView):
    """Sinusoidal, learned, RoPE and ALiBi positions, and the loss past the block."""

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        self._learned_model, table = learned_entry(s.engine)
        self._f = Figures(style, int(s.config["n_embd"]), table)
        self._rope_model = rope_entry(s.engine)
        d_head = self._d_head()
        self._f.draw_waves(d_head)
        self._bias, self._probs = alibi_figures(style)
        lines = past_lines(s.engine)
        self._past, _ = loss_figure(style, lines, 16, prefix="positions")
        pair = pn.widgets.IntSlider(
            start=0,
            end=d_head // 2 - 1,
            value=min(s.rope_pair, d_head // 2 - 1),
            css_classes=["positions-pair"],
        )
        position = pn.widgets.IntSlider(
            start=0,
            end=ROPE_MAX_POSITION,
            value=s.rope_position,
            css_classes=["positions-pos"],
        )
        heads = pn.widgets.IntInput(
            start=1,
            end=64,
            value=s.alibi_heads,
            css_classes=["positions-alibi-heads"],
            width=140,
        )
        # the pair: state -> slider through _draw_pair, which keeps it within the head's pairs
        pair.param.watch(lambda e: setattr(s, "rope_pair", e.new), "value")
        for widget, name in (
            (position, "rope_position"),
            (heads, "alibi_heads"),
        ):
            two_way(widget, s, name)
        self._pair_text = text_pane(
            "", "explain", "positions-pair-text", sizing_mode="stretch_width"
        )
        self._relative = text_pane(
            "", "explain", "positions-relative-box", sizing_mode="stretch_width"
        )
        self._slopes = text_pane("", "explain", "positions-slopes-box", width=420)
        self._message = text_pane(
            "", "message", "error", visible=False, sizing_mode="stretch_width"
        )
        f = self._f
        bokeh = lambda fig: pn.pane.Bokeh(fig, margin=(5, 5))  # noqa: E731
        learned = [bokeh(f.learned.figure), bokeh(f.pca)] if f.learned is not None else []
        self._layout = pn.Column(
            self._message,
            text_pane(SECTION.format("Sinusoidal"), "detail"),
            pn.FlexBox(
                bokeh(f.sinusoid.figure),
                bokeh(f.distance),
                bokeh(f.sin_waves),
                sizing_mode="stretch_width",
            ),
            text_pane(
                wavelength_text(int(s.config["n_embd"])), "explain", sizing_mode="stretch_width"
            ),
            text_pane(SECTION.format("Learned"), "detail"),
            pn.FlexBox(*learned, sizing_mode="stretch_width"),
            text_pane(
                learned_caption(self._learned_model, 0 if table is None else len(table)),
                "explain",
                sizing_mode="stretch_width",
            ),
            text_pane(SECTION.format("RoPE"), "detail"),
            pn.FlexBox(
                labelled("Pair of dimensions", pair),
                labelled("Position", position),
                sizing_mode="stretch_width",
            ),
            pn.FlexBox(bokeh(f.circle), bokeh(f.waves), sizing_mode="stretch_width"),
            self._pair_text,
            text_pane(frequency_text(d_head, N_POSITIONS), "explain", sizing_mode="stretch_width"),
            pn.FlexBox(head_controls(s), sizing_mode="stretch_width"),
            self._relative,
            text_pane(layout_html(d_head), "explain", sizing_mode="stretch_width"),
            text_pane(SECTION.format("ALiBi"), "detail"),
            pn.FlexBox(
                pn.Column(labelled("Heads", heads), self._slopes, margin=0),
                bokeh(self._bias.figure),
                bokeh(self._probs.figure),
                sizing_mode="stretch_width",
            ),
            text_pane(
                alibi_caption(int(s.config["n_head"])), "explain", sizing_mode="stretch_width"
            ),
            text_pane(SECTION.format("Past the trained length"), "detail"),
            bokeh(self._past),
            text_pane(positions_text(lines), "explain", sizing_mode="stretch_width"),
            margin=0,
            sizing_mode="stretch_width",
        )
        self._pair_widget = pair
        self._draw_pair()
        self._draw_slopes()
        self._draw_reading()

    def _d_head(self) -> int:
        cfg = self.state.engine.config(self._rope_model) if self._rope_model else self.state.config
        return int(cfg["n_embd"]) // int(cfg["n_head"])

    def _base(self) -> float:
        if self._rope_model is None:
            return 10000.0
        return float(self.state.engine.config(self._rope_model).get("rope_base", 10000.0))

    @param.depends("state.rope_pair", "state.rope_position", watch=True)
    @draws
    def _draw_pair(self) -> None:
        s, d = self.state, self._d_head()
        pair = min(s.rope_pair, d // 2 - 1)  # a link's pair past the head's: its last one
        self._pair_widget.value = pair
        self._f.draw_pair(pair, s.rope_position, d, self._base())
        self._pair_text.object = pair_text(pair, d, self._base(), s.rope_position, N_POSITIONS)

    @param.depends("state.alibi_heads", watch=True)
    @draws
    def _draw_slopes(self) -> None:
        self._slopes.object = slopes_html(self.state.alibi_heads)

    @param.depends(
        "state.forward", "state.layer", "state.head", "state.query", "state.key", watch=True
    )
    @draws
    def _draw_reading(self) -> None:
        s = self.state
        if s.forward is None:
            return
        layer, head = min(s.layer, s.config["n_layer"] - 1), min(s.head, s.config["n_head"] - 1)
        query, key = min(s.query, s.n_tokens - 1), min(s.key, s.n_tokens - 1)
        draw_alibi(
            self._bias, self._probs, s.forward.attn_scores[layer], s.labels, head, query, key
        )
        try:
            self._relative.object = self._relative_html(layer, head, query, key)
            self._message.visible = False
        except EngineError as err:
            self._message.object = f"<p>{html.escape(str(err))}</p>"
            self._message.visible = True

    def _relative_html(self, layer: int, head: int, query: int, key: int) -> str:
        s, model = self.state, self._rope_model
        if model is None:
            return "<p>No RoPE model in the manifest: nothing to rotate.</p>"
        return rope_reading_html(s.engine, model, s.text, layer, head, query, key)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


def rope_reading_html(engine, model: str, text: str, layer: int, head: int, query: int, key: int):
    """The relative property on ``model``'s unrotated q and k of ``text`` (its own reading:
    the selected model may be another one)."""
    r = read_text(engine, model, text)
    if not r.ok:
        return f"<p>{html.escape(r.message)}</p>"
    engine.require(model, ("q_before_rope", "k_before_rope"))
    f = engine.run(model, r.ids, outputs=("q_before_rope", "k_before_rope"))
    cfg = engine.config(model)
    n_head, n_kv = int(cfg["n_head"]), int(cfg.get("n_kv_head") or cfg["n_head"])
    layer, head = min(layer, cfg["n_layer"] - 1), min(head, n_head - 1)
    query, key = min(query, len(r.ids) - 1), min(key, len(r.ids) - 1)
    kv = head // (n_head // n_kv)
    if key == query and query > 0:  # the same position twice says nothing about distance
        key = max(query - 5, 0)
    q = f.q_before_rope[layer, head, query]
    k = f.k_before_rope[layer, kv, key]
    return relative_html(model, q, k, query, key, float(cfg.get("rope_base", 10000.0)), layer, head)


# -- the snapshot ------------------------------------------------------------------------------
# The same figures and texts. In the page (js/positions.js): the pair's turn from the pair's θ,
# the slopes for a typed head count, and the ALiBi what-if of a chosen layer and head from the
# model's scores embedded for the attention lesson (the same data source).


def snapshot(ctx: Context):
    s, style, engine = ctx.selection, ctx.style, ctx.engine
    learned_model, table = learned_entry(engine)
    rope_model = rope_entry(engine)
    cfg = engine.config(rope_model) if rope_model else ctx.config
    d_head = int(cfg["n_embd"]) // int(cfg["n_head"])
    base = float(cfg.get("rope_base", 10000.0))
    figs = Figures(style, int(ctx.config["n_embd"]), table)
    figs.draw_waves(d_head)
    pair_i = min(s.rope_pair, d_head // 2 - 1)
    figs.draw_pair(pair_i, s.rope_position, d_head, base)
    pair = Slider(
        start=0,
        end=d_head // 2 - 1,
        value=pair_i,
        step=1,
        title="Pair of dimensions",
        name="positions-pair",
        stylesheets=[ctx.stylesheet],
    )
    position = Slider(
        start=0,
        end=ROPE_MAX_POSITION,
        value=s.rope_position,
        step=1,
        title="Position",
        name="positions-pos",
        stylesheets=[ctx.stylesheet],
    )
    pair_box = div(
        ctx,
        pair_text(pair_i, d_head, base, s.rope_position, N_POSITIONS),
        "explain",
        "positions-pair-text",
        name="positions-pair-text",
    )
    pair_args = dict(
        pair=pair,
        position=position,
        thetas=[float(t) for t in P.rope_frequencies(d_head, base)],
        waves=[float(w) for w in P.wavelengths(d_head, base)],
        path=figs.path,
        arrow=figs.arrow,
        circle=figs.circle,
        box=pair_box,
        template=PAIR_TEXT,
        d=d_head,
        block=N_POSITIONS,
        last=ROPE_MAX_POSITION,
    )
    turn = callback("positions", "draw_pair()", **pair_args)
    pair.js_on_change("value", turn)
    position.js_on_change("value", turn)
    # ALiBi: the slopes for a typed head count; the what-if on the model's scores
    heads = NumericInput(
        low=1,
        high=64,
        mode="int",
        value=s.alibi_heads,
        title="Heads",
        width=140,
        name="positions-alibi-heads",
        stylesheets=[ctx.stylesheet],
    )
    slopes_box = div(
        ctx,
        slopes_html(s.alibi_heads),
        "explain",
        "positions-slopes-box",
        name="positions-slopes-box",
        width=420,
    )
    heads.js_on_change(
        "value",
        callback(
            "positions",
            "draw_slopes()",
            heads=heads,
            box=slopes_box,
            power_t=RULE_POWER,
            other_t=RULE_OTHER,
            table_t=SLOPES_TABLE,
            row_t=SLOPE_ROW,
        ),
    )
    f = ctx.forward
    n_layer, n_head, t = f.attn_scores.shape[:3]
    layer = index_buttons(ctx, n_layer, s.layer, "positions-layer")
    head = index_buttons(ctx, n_head, s.head, "positions-head")
    bias, probs = alibi_figures(style)
    draw_alibi(
        bias, probs, f.attn_scores[layer.active], ctx.labels, head.active, ctx.query, ctx.key
    )
    what_if = callback(
        ("scores", "positions"),
        "draw_alibi()",
        data=ctx.attention_data(),
        **ctx.scores_args(),
        layer=layer,
        head=head,
        L=n_layer,
        H=n_head,
        T=t,
        bias=plot_args(bias),
        probs=plot_args(probs),
        prob_palette=list(PROB_PALETTE),
        score_palette=list(SCORE_PALETTE),
    )
    layer.js_on_change("active", what_if)
    head.js_on_change("active", what_if)
    try:
        relative = (
            rope_reading_html(
                engine, rope_model, ctx.text, layer.active, head.active, ctx.query, ctx.key
            )
            if rope_model
            else ("<p>No RoPE model in the manifest: nothing to rotate.</p>")
        )
    except EngineError as err:
        relative = f"<p>{html.escape(str(err))}</p>"
    # the sinusoidal table is computed in the page (js/positions.js, positions.sinusoidal's
    # twin) rather than embedded: 64 KB less per snapshot
    sin = figs.sinusoid
    n_embd = int(ctx.config["n_embd"])
    sin.source.data = dict(
        image=[np.zeros((1, 1), np.float32)], x=[-0.5], y=[-0.5], dw=[n_embd], dh=[N_POSITIONS]
    )
    ctx.on_ready(
        callback(
            "positions",
            "draw_sinusoid()",
            image=sin.source,
            mapper=sin.mapper,
            n=N_POSITIONS,
            d=n_embd,
            base=P.SINUSOIDAL_BASE,
        )
    )
    lines = past_lines(engine)
    past, _ = loss_figure(style, lines, 16, prefix="positions")
    section = lambda title: div(ctx, SECTION.format(title), "detail")  # noqa: E731
    explain = lambda text, name=None: div(ctx, text, "explain", name=name)  # noqa: E731
    learned = [figs.learned.figure, figs.pca] if figs.learned is not None else []
    return column(
        section("Sinusoidal"),
        row(figs.sinusoid.figure, figs.distance, figs.sin_waves),
        explain(wavelength_text(int(ctx.config["n_embd"]))),
        section("Learned"),
        row(*learned),
        explain(learned_caption(learned_model, 0 if table is None else len(table))),
        section("RoPE"),
        row(pair, position),
        row(figs.circle, figs.waves),
        pair_box,
        explain(frequency_text(d_head, N_POSITIONS)),
        explain(
            relative + "<p class='hint'>In this snapshot the table is for the layer and "
            "head it was exported with.</p>",
            "positions-relative-box",
        ),
        explain(layout_html(d_head)),
        section("ALiBi"),
        row(column(heads, slopes_box), column(row(layer, head), row(bias.figure, probs.figure))),
        explain(alibi_caption(n_head)),
        section("Past the trained length"),
        past,
        explain(positions_text(lines)),
    )


def plot_args(m: MatrixPlot) -> dict:
    """What the page needs of a MatrixPlot to redraw it (js/positions.js show_matrix)."""
    return dict(image=m.source, removed=m.removed, mapper=m.mapper, fig=m.figure)
