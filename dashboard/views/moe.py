"""The "Mixture of experts" lesson: where anatomy-moe's router sends each token of your text.

Every layer's MLP of anatomy-moe is four SwiGLU experts and a router; each token runs through
the two its router rates highest. The lesson shows, for the text: the first choice of every
token in every layer; the selected layer's router probabilities with the two chosen outlined;
each expert's share of the layer's choices (beside its share on the validation split, from
the build); the chosen token's routing in words; and the load-balancing loss. Figures from
the model's named outputs (router_logits, experts, expert_weights) through
:mod:`dashboard.lessons.moe`; in the snapshot, js/moe.js slices what the page embeds.
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper, Range1d
from bokeh.palettes import Category10_10

from dashboard.lessons import moe as M
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import (
    PROB_PALETTE,
    PlotStyle,
    colour_bar,
    set_ticks,
    styled_figure,
    thinned_ticks,
    tick_label,
)
from dashboard.views.recipes import manifest_entries
from dashboard.views.registry import LessonView, draws
from dashboard.views.widgets import index_group, labelled, text_pane
from models.reading import read_text
from models.runtime import EngineError

ABOUT = (
    "<b>What you see:</b> anatomy-moe, whose every MLP is four experts and a router: for "
    "each token of your text, the expert its router rates highest in every layer; the "
    "selected layer's router probabilities, with the two experts the token runs through "
    "outlined; each expert's share of the layer's choices against the build's validation "
    "text; and the load-balancing loss that keeps the shares even. <b>Try:</b> click a token "
    "to read its routing; change the layer; find the tokens one expert takes."
)

OUTPUTS = ("router_logits", "experts", "expert_weights")
COLOURS = Category10_10
SIZE = {False: (300, 420), True: (440, 480)}  # width, height of the two token × column plots
TOKEN_TEXT = (
    "<p>In layer {layer}, <b>{token}</b>: the router gives {probs}. It runs through experts "
    "{first} and {second}, weighted {w1} and {w2} (their probabilities divided by their sum)."
    "</p>"
)
EXPERT_PROB = "e{e} {p}"


def moe_model(engine) -> str | None:
    """The first mixture-of-experts model in the manifest."""
    for name, entry in manifest_entries(engine).items():
        if entry.get("config", {}).get("mlp") == "moe":
            return name
    return None


def token_html(labels, probs, experts, weights, layer: int, token: int) -> str:
    """One token's routing in one layer, in words."""
    first, second = (int(e) for e in experts[layer, token, :2])
    w1, w2 = (float(w) for w in weights[layer, token, :2])
    parts = [EXPERT_PROB.format(e=e, p=f"{p:.3f}") for e, p in enumerate(probs[layer, token])]
    return TOKEN_TEXT.format(
        layer=layer,
        token=html.escape(labels[token]),
        probs=", ".join(parts),
        first=first,
        second=second,
        w1=f"{w1:.3f}",
        w2=f"{w2:.3f}",
    )


def model_html(engine, model: str) -> str:
    """The model's size, its losses beside a dense model's, and the build's balance loss."""
    entry = engine.entry(model)
    cfg, training = entry["config"], entry.get("training", {})
    text = (
        f"<p><b>{html.escape(model)}</b>: {cfg.get('n_expert', 4)} experts per MLP, top-"
        f"{cfg.get('expert_top_k', 2)}: {entry['n_params']:,} parameters, "
        f"{entry.get('n_active_params', entry['n_params']):,} of them used per token."
    )
    if "val_loss" in training:
        text += f" Validation loss {training['val_loss']:.3f}"
        dense = [
            (n, e["training"]["val_loss"])
            for n, e in manifest_entries(engine).items()
            if e.get("config", {}).get("mlp") == "swiglu" and "val_loss" in e.get("training", {})
        ]
        if dense:
            text += f" ({html.escape(dense[0][0])}, dense: {dense[0][1]:.3f})"
        text += "."
    if "val_balance_loss" in training:
        text += (
            f" Trained with the balance loss weighted {training['router_aux_loss_coef']}: "
            f"{training['val_balance_loss']:.3f} on the validation text at the end."
        )
    return text + "</p>"


def key_html(n_expert: int) -> str:
    """Which colour is which expert (the routes' cells and the shares' bars)."""
    swatch = "<span style='color:{c}'>■</span> {e}"
    keys = " ".join(swatch.format(c=COLOURS[e % 10], e=e) for e in range(n_expert))
    return f"<p>Experts: {keys}. Outlined in the router: the two each token runs through.</p>"


def balance_html(logits, top_k: int) -> str:
    loss = M.balance_loss(logits, top_k)
    return (
        f"<p>The load-balancing loss of your text, every layer's tokens together: "
        f"<b>{loss:.3f}</b>. It is {top_k} when the experts share the choices evenly and "
        "grows as they pile onto a few (the number of experts × Σ share × mean probability, "
        "as Hugging Face's Mixtral computes it).</p>"
    )


def shares_of(experts: np.ndarray, n_expert: int) -> list[list[float]]:
    """Each layer's expert shares of the text's top-k choices."""
    return [M.expert_shares(experts[layer], n_expert).tolist() for layer in range(len(experts))]


class Figures:
    """The routes (every layer's first choice), the selected layer's router, the shares."""

    def __init__(self, style: PlotStyle, n_layer: int, n_expert: int):
        self.style = style
        c = style.classroom
        w, h = SIZE[c]
        self.routes = ColumnDataSource(
            data=dict(x=[], y=[], color=[], label=[], choice=[]), name="moe-routes"
        )
        fig = styled_figure(
            style,
            w,
            h,
            "First choices",
            name="moe-routes-fig",
            x_range=Range1d(-0.5, n_layer - 0.5),
            y_range=Range1d(0.5, -0.5),
        )
        r = fig.rect("x", "y", 0.95, 0.95, color="color", source=self.routes)
        fig.add_tools(HoverTool(renderers=[r], tooltips=[("token", "@label"), ("", "@choice")]))
        fig.xaxis.axis_label = "layer"
        set_ticks(fig.xaxis[0], list(range(n_layer)))
        self.routes_fig = fig
        self.router = ColumnDataSource(
            data=dict(x=[], y=[], p=[], line=[], label=[]), name="moe-router"
        )
        self.mapper = LinearColorMapper(palette=PROB_PALETTE, low=0, high=1)
        fig = styled_figure(
            style,
            w + style.colorbar,
            h,
            "",
            name="moe-router-fig",
            x_range=Range1d(-0.5, n_expert - 0.5),
            y_range=Range1d(0.5, -0.5),
        )
        r = fig.rect(
            "x",
            "y",
            0.9,
            0.9,
            source=self.router,
            fill_color={"field": "p", "transform": self.mapper},
            line_color="line",
            line_width=4 if c else 2,
        )
        fig.add_tools(
            HoverTool(renderers=[r], tooltips=[("token", "@label"), ("probability", "@p{0.000}")])
        )
        fig.xaxis.axis_label = "expert"
        set_ticks(fig.xaxis[0], list(range(n_expert)))
        colour_bar(fig, self.mapper, style)
        self.router_fig = fig
        # the selected token's row, outlined across both token × column plots
        self.selected = ColumnDataSource(data=dict(y=[0]), name="moe-selected")
        for fig, n in ((self.routes_fig, n_layer), (self.router_fig, n_expert)):
            fig.rect(
                x=(n - 1) / 2,
                y="y",
                width=n,
                height=1,
                source=self.selected,
                fill_alpha=0,
                line_color=style.accent,
                line_width=5 if c else 3,
            )
        self.shares = ColumnDataSource(
            data=dict(x=[], text=[], val=[], color=[]), name="moe-shares"
        )
        fig = styled_figure(
            style,
            640 if c else 420,
            360 if c else 260,
            "",
            name="moe-shares-fig",
            x_range=Range1d(-0.5, n_expert - 0.5),
            y_range=Range1d(0, 1),
        )
        fig.vbar(
            x="x",
            top="text",
            width=0.4,
            color="color",
            source=self.shares,
            legend_label="your text",
        )
        fig.scatter(
            "x",
            "val",
            size=16 if c else 10,
            marker="diamond",
            color=style.text,
            source=self.shares,
            legend_label="validation (build)",
        )
        fig.xaxis.axis_label = "expert"
        fig.yaxis.axis_label = "share of the choices"
        set_ticks(fig.xaxis[0], list(range(n_expert)))
        fig.legend.location = "top_right"
        fig.legend.label_text_font_size = style.tick
        fig.legend.background_fill_alpha = 0.0
        fig.legend.label_text_color = style.text
        self.shares_fig = fig

    def draw(self, labels, probs, experts, layer: int, token: int, shares, val_shares) -> None:
        """Every figure for the selected layer and token (``probs`` the router's, (L, T, E))."""
        n_layer, t, n_expert = probs.shape
        s = self.style
        cells = [(lay, i) for lay in range(n_layer) for i in range(t)]
        self.routes.data = dict(
            x=[lay for lay, _ in cells],
            y=[i for _, i in cells],
            color=[COLOURS[int(experts[lay, i, 0]) % 10] for lay, i in cells],
            label=[labels[i] for _, i in cells],
            choice=[
                f"layer {lay}: experts {int(experts[lay, i, 0])} and {int(experts[lay, i, 1])}"
                for lay, i in cells
            ],
        )
        chosen = {(i, int(e)) for i in range(t) for e in experts[layer, i]}
        grid = [(i, e) for i in range(t) for e in range(n_expert)]
        self.router.data = dict(
            x=[e for _, e in grid],
            y=[i for i, _ in grid],
            p=[float(probs[layer, i, e]) for i, e in grid],
            line=[s.text if (i, e) in chosen else None for i, e in grid],
            label=[labels[i] for i, _ in grid],
        )
        ticks = thinned_ticks(t, SIZE[s.classroom][1] - 120, s.px_per_label)
        for fig in (self.routes_fig, self.router_fig):
            set_ticks(fig.yaxis[0], ticks)
            fig.yaxis.major_label_overrides = {i: tick_label(labels[i], s) for i in ticks}
            fig.y_range.update(start=t - 0.5, end=-0.5)
        self.router_fig.title.text = f"Router, layer {layer}"
        self.shares.data = dict(
            x=list(range(n_expert)),
            text=list(shares[layer]),
            val=list(val_shares[layer]) if val_shares else [float("nan")] * n_expert,
            color=[COLOURS[e % 10] for e in range(n_expert)],
        )
        self.shares_fig.title.text = f"Shares, layer {layer}"
        self.select(token, t)

    def select(self, token: int, t: int) -> None:
        """Outline the selected token's row in the routes and the router."""
        self.selected.data = dict(y=[token])


class MoeLesson(LessonView):
    """Routing of the session's text through the manifest's mixture-of-experts model."""

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self._model = moe_model(s.engine)
        self._message = text_pane(
            "", "message", "error", visible=False, sizing_mode="stretch_width"
        )
        self._reading, self._text_read = None, None
        if self._model is None:
            self._message.object = (
                "<p>No mixture-of-experts model in the manifest: <code>make build</code> "
                "trains anatomy-moe.</p>"
            )
            self._message.visible = True
            self._layout = pn.Column(self._message, sizing_mode="stretch_width")
            return
        cfg = s.engine.config(self._model)
        self._cfg = cfg
        self._f = Figures(self.style, int(cfg["n_layer"]), int(cfg.get("n_expert", 4)))
        tap = lambda ev: self._tap(ev.y)  # noqa: E731
        self._f.routes_fig.on_event("tap", tap)
        self._f.router_fig.on_event("tap", tap)
        self._token = text_pane("", "explain", "moe-token", sizing_mode="stretch_width")
        self._balance = text_pane("", "explain", "moe-balance", sizing_mode="stretch_width")
        self._about_model = text_pane(model_html(s.engine, self._model), "explain")
        self._key = text_pane(key_html(int(cfg.get("n_expert", 4))), "explain", "moe-key")
        layer_pick = index_group(s, "layer", "n_layer")
        layer_pick.css_classes = ["moe-layer"]
        self._layout = pn.Column(
            self._message,
            pn.FlexBox(labelled("Layer", layer_pick), self._key, sizing_mode="stretch_width"),
            pn.FlexBox(
                pn.pane.Bokeh(self._f.routes_fig, margin=(5, 5)),
                pn.pane.Bokeh(self._f.router_fig, margin=(5, 5)),
                pn.Column(
                    pn.pane.Bokeh(self._f.shares_fig, margin=(5, 5)),
                    self._token,
                    self._balance,
                    self._about_model,
                    width=SIZE[self.style.classroom][0] + 200,
                ),
                sizing_mode="stretch_width",
            ),
            margin=0,
            sizing_mode="stretch_width",
        )
        self._draw()

    def _read(self):
        """The model's routing of the session's text: (labels, probs, experts, weights)."""
        s = self.state
        if self._reading is None or self._text_read != s.text:
            reading = read_text(s.engine, self._model, s.text)
            if not reading.ok:
                raise EngineError(reading.message)
            s.engine.require(self._model, OUTPUTS)
            f = s.engine.run(self._model, reading.ids, outputs=OUTPUTS)
            self._reading = (
                reading.labels,
                M.router_probs(f.router_logits),
                f.experts,
                f.expert_weights,
                f.router_logits,
            )
            self._text_read = s.text
        return self._reading

    def _tap(self, y) -> None:
        if y is None or self._reading is None:
            return
        i = int(round(y))
        if 0 <= i < len(self._reading[0]):
            self.state.query = i

    @param.depends("state.forward", "state.layer", "state.query", watch=True)
    @draws
    def _draw(self) -> None:
        s = self.state
        if self._model is None or s.forward is None:
            return
        try:
            labels, probs, experts, weights, logits = self._read()
        except EngineError as err:
            self._message.object = f"<p>{html.escape(str(err))}</p>"
            self._message.visible = True
            return
        self._message.visible = False
        layer = min(s.layer, probs.shape[0] - 1)
        token = min(s.query, len(labels) - 1)
        n_expert = probs.shape[-1]
        val = s.engine.entry(self._model).get("training", {}).get("expert_share")
        self._f.draw(labels, probs, experts, layer, token, shares_of(experts, n_expert), val)
        self._token.object = token_html(labels, probs, experts, weights, layer, token)
        self._balance.object = balance_html(logits, int(self._cfg.get("expert_top_k", 2)))

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------------------------
# The same figures. The page embeds the router's probabilities, the chosen experts and their
# weights (a few kilobytes); js/moe.js redraws the router and the shares for a layer and the
# token text for a tap.


def snapshot(ctx: Context):
    s, style, engine = ctx.selection, ctx.style, ctx.engine
    model = moe_model(engine)
    if model is None:
        return column(
            div(
                ctx,
                "<p>No mixture-of-experts model in the manifest: "
                "<code>make build</code> trains anatomy-moe.</p>",
                "message",
                "error",
            )
        )
    reading = read_text(engine, model, ctx.text)
    if not reading.ok:
        raise EngineError(reading.message)
    engine.require(model, OUTPUTS)
    f = engine.run(model, reading.ids, outputs=OUTPUTS)
    cfg = engine.config(model)
    probs, experts, weights = M.router_probs(f.router_logits), f.experts, f.expert_weights
    n_layer, t, n_expert = probs.shape
    labels = reading.labels
    figs = Figures(style, n_layer, n_expert)
    layer = index_buttons(ctx, n_layer, s.layer, "moe-layer")
    token = min(ctx.query, t - 1)
    shares = shares_of(experts, n_expert)
    val = engine.entry(model).get("training", {}).get("expert_share")
    figs.draw(labels, probs, experts, layer.active, token, shares, val)
    token_div = div(
        ctx,
        token_html(labels, probs, experts, weights, layer.active, token),
        "explain",
        "moe-token",
        name="moe-token",
    )
    state = ColumnDataSource(data=dict(token=[token]), name="moe-state")
    flat = lambda a: np.ascontiguousarray(a, dtype=np.float32).ravel().tolist()  # noqa: E731
    data = ColumnDataSource(data=dict(probs=flat(probs)), name="moe-probs")
    args = dict(
        probs=data,
        experts=np.asarray(experts).ravel().tolist(),
        weights=flat(weights),
        L=n_layer,
        T=t,
        E=n_expert,
        K=int(experts.shape[-1]),
        layer=layer,
        state=state,
        labels=labels,
        shares=shares,
        val=val,
        router=figs.router,
        router_fig=figs.router_fig,
        selected=figs.selected,
        share_src=figs.shares,
        share_fig=figs.shares_fig,
        routes_fig=figs.routes_fig,
        text=token_div,
        token_t=TOKEN_TEXT,
        prob_t=EXPERT_PROB,
        outline=style.text,
        colours=list(COLOURS),
    )
    layer.js_on_change("active", callback("moe", "draw()", **args))
    for fig in (figs.routes_fig, figs.router_fig):
        for event in ("tap", "doubletap"):
            fig.js_on_event(event, callback("moe", "tap(cb_obj)", **args))
    return column(
        row(
            column(div(ctx, "<b>Layer</b>", "explain"), layer),
            div(ctx, key_html(n_expert), "explain", "moe-key"),
        ),
        row(
            figs.routes_fig,
            figs.router_fig,
            column(
                figs.shares_fig,
                token_div,
                div(
                    ctx,
                    balance_html(f.router_logits, int(cfg.get("expert_top_k", 2))),
                    "explain",
                    "moe-balance",
                ),
                div(ctx, model_html(engine, model), "explain"),
            ),
        ),
    )
