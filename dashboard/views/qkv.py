"""The "Embeddings, Q, K and V" lesson: from a token to one attention score.

For the selected token: its embedding rows and their sum (the stream the first block reads)
and that block's norm of it; the selected layer's and head's Q, K and V for every token; the
model width split into heads and the heads' outputs concatenated back; and the selected
(query, key) pair's q·k as its elementwise products, whose sum over √d is the attention
lesson's score. The matrices are the model's own outputs (``hidden``, ``q``, ``k``, ``v``,
``attn_heads``, ``attn_scores``); :mod:`dashboard.lessons.qkv` does the steps between them.
In the snapshot ``js/qkv.js`` slices the embedded arrays and sums the products.
"""

from __future__ import annotations

import html

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource

from dashboard.lessons import qkv as Q
from dashboard.lessons.attention import heads_of, kv_head
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import PlotStyle, RowMatrix, SignedBars
from dashboard.views.registry import LessonView, draws
from dashboard.views.widgets import head_controls, text_pane
from models.runtime import EngineError

ABOUT = (
    "<b>What you see:</b> the way from a token to an attention score, in the model's own "
    "numbers: the token's embedding rows and their sum, the first block's norm of it, the "
    "queries, keys and values of one head for every token, the model width cut into heads "
    "and glued back, and one query–key pair's dot product term by term. <b>Try:</b> click a "
    "row of Q to pick the query and a row of K to pick the key, and check that the sum over "
    "√d is the attention lesson's score; switch heads and see Q change while, in the LLaMA "
    "model, heads that share a key/value head keep the same K and V."
)

OUTPUTS = ("q", "k", "v", "attn_heads")  # beside the core four (hidden, attn_scores)
# Sizes (width, height) in the normal and the classroom theme.
EMBED_SIZE = {False: (720, 230), True: (1100, 330)}
QKV_SIZE = {False: (250, 420), True: (440, 600)}
HEADS_SIZE = {False: (720, 200), True: (1100, 280)}
DOT_SIZE = {False: (520, 260), True: (700, 380)}

# Both homes fill these: the dashboard in Python (str.format), the snapshot in its page.
DOT = (
    "<p>Query <b class='tok'>{query}</b> · key <b class='tok'>{key}</b>, layer {layer}, "
    "head {head}: the sum of the {d} products is q·k = <b class='num'>{total}</b>; "
    "divided by √{d} = {scale} it is <b class='num'>{score}</b>. Scored so against every key "
    "it may see, through the softmax, this key gets the weight <b class='num'>{weight}</b>; "
    "the model's own attention probability for the pair: <b class='num'>{model}</b>, "
    "difference {diff}.{masked}</p>"
)
MASKED = " The causal mask then removes this pair (the key comes after the query)."
SHARED_KV = (
    " Query head {head} reads key/value head {kv}, which it shares with head{s} {others}: "
    "their K and V are the same."
)


def embed_rows(rope: bool) -> list[str]:
    """The embedding figure's row labels."""
    rows = ["token row wte[id]"] + ([] if rope else ["position row wpe[t]"])
    return rows + ["sum: the stream (hidden[0])", "after the block's norm (ln_1)"]


def shapes_html(config: dict, t: int) -> str:
    """The shapes table (HTML)."""
    rows = "".join(
        f"<tr><td>{html.escape(step)}</td><td class='num'>{html.escape(shape)}</td></tr>"
        for step, shape in Q.shapes(config, t)
    )
    return f"<table class='qkv-shapes'><tr><th>step</th><th>shape</th></tr>{rows}</table>"


def sharing_note(config: dict, head: int) -> str:
    """Which key/value head the query head reads, and who shares it (empty for MHA)."""
    n_head, n_kv = heads_of(config)
    if n_kv == n_head:
        return ""
    kv = kv_head(head, n_head, n_kv)
    others = [h for h in range(n_head) if kv_head(h, n_head, n_kv) == kv and h != head]
    return SHARED_KV.format(
        head=head, kv=kv, s="s" if len(others) > 1 else "", others=", ".join(map(str, others))
    )


def dot_html(labels, layer, head, query, key, d: Q.DotProduct, weight: float, model_prob):
    """The selected pair's sum, score and attention weight beside the model's probability
    (HTML)."""
    return DOT.format(
        query=html.escape(labels[query]),
        key=html.escape(labels[key]),
        layer=layer,
        head=head,
        d=d.d_head,
        total=f"{d.total:.4f}",
        scale=f"{d.scale:.4f}",
        score=f"{d.score:.4f}",
        weight=f"{weight:.4f}",
        model=f"{model_prob:.4f}",
        diff=f"{abs(weight - model_prob):.1e}",
        masked=MASKED if key > query else "",
    )


def pair_html(labels, cfg, f, forward, layer, head, query, key, dp) -> str:
    """:func:`dot_html` of the pair, its weight computed from the model's q and k (both
    homes: the snapshot embeds no scores, so the check is against the probabilities)."""
    kv = kv_head(head, *heads_of(cfg))
    weight = Q.pair_weight(f.q[layer, head, query], f.k[layer, kv], query, key)
    model = float(forward.attn_probs[layer, head, query, key])
    return dot_html(labels, layer, head, query, key, dp, weight, model)


class Figures:
    """The lesson's figures, in both homes."""

    def __init__(self, style: PlotStyle):
        c = style.classroom
        self.embed = RowMatrix(style, *EMBED_SIZE[c], "Embedding", name="qkv-embed")
        self.q = RowMatrix(style, *QKV_SIZE[c], "Q", name="qkv-q", x_label="dimension of the head")
        self.k = RowMatrix(style, *QKV_SIZE[c], "K", name="qkv-k", x_label="dimension of the head")
        self.v = RowMatrix(style, *QKV_SIZE[c], "V", name="qkv-v", x_label="dimension of the head")
        self.heads = RowMatrix(style, *HEADS_SIZE[c], "Heads", name="qkv-heads")
        self.dot = SignedBars(
            style, *DOT_SIZE[c], "q × k, dimension by dimension", name="qkv-dot",
            x_label="dimension of the head", y_label="q[i] × k[i]",
        )  # fmt: skip

    def draw(self, labels, ids, config, weights, hidden0, f, layer, head, query, key):
        """Draw every figure for the selection from the model's weights, its outputs ``f``
        (q, k, v, attn_heads) and ``hidden0`` (the stream after the embeddings); returns the
        pair's dot product."""
        n_head, n_kv = heads_of(config)
        kv = kv_head(head, n_head, n_kv)
        t, d = f.q.shape[2], f.q.shape[3]
        e = Q.embed(weights, ids)
        rows = [e.token[query]] + ([] if e.position is None else [e.position[query]])
        normed = Q.block_input(hidden0, weights, config, 0)
        rows += [hidden0[query], normed[query]]
        label = labels[query]
        self.embed.update(
            np.stack(rows), embed_rows(e.position is None), title=f"Embedding of {label}"
        )
        self.q.update(f.q[layer, head], labels, [query], title=f"Q, head {head}: {t}×{d}")
        self.k.update(f.k[layer, kv], labels, [key], title=f"K, kv head {kv}: {t}×{d}")
        self.v.update(f.v[layer, kv], labels, [key], title=f"V, kv head {kv}: {t}×{d}")
        strip = np.stack([f.q[layer, :, query].ravel(), f.attn_heads[layer, :, query].ravel()])
        self.heads.update(
            strip,
            [f"q of {n_head} heads", "heads' outputs"],
            title=f"{label}: {n_head} heads × {d} = {n_head * d} wide",
            splits=[h * d - 0.5 for h in range(1, n_head)],
        )
        dp = Q.dot_product(f.q[layer, head, query], f.k[layer, kv, key])
        self.dot.update(dp.products)
        return dp


class QkvLesson(LessonView):
    """Embeddings, Q, K, V and the heads for the selected token, layer and head."""

    def __init__(self, **params):
        super().__init__(**params)
        s, c = self.state, self.style.classroom
        self._f = Figures(self.style)
        self._f.q.on_tap(lambda i: s.param.update(query=i))
        self._f.k.on_tap(lambda j: s.param.update(key=j))
        self._message = text_pane(
            "", "message", "error", visible=False, sizing_mode="stretch_width"
        )
        self._embed_note = text_pane("", "caption", "qkv-embed-note", sizing_mode="stretch_width")
        self._shapes = text_pane("", "qkv-shapes-box", width=420 if not c else 620)
        self._dot_text = text_pane("", "pair", "qkv-dot-text", sizing_mode="stretch_width")
        self._share = text_pane("", "caption", "qkv-share", sizing_mode="stretch_width")
        f = self._f
        self._layout = pn.Column(
            self._message,
            pn.FlexBox(head_controls(s), margin=0, sizing_mode="stretch_width"),
            pn.FlexBox(
                pn.Column(
                    pn.pane.Bokeh(f.embed.figure),
                    self._embed_note,
                    margin=0,
                    width=EMBED_SIZE[c][0] + 10,
                ),  # fmt: skip
                self._shapes,
                gap="10px",
                sizing_mode="stretch_width",
            ),
            pn.FlexBox(
                pn.pane.Bokeh(f.q.figure),
                pn.pane.Bokeh(f.k.figure),
                pn.pane.Bokeh(f.v.figure),
                gap="10px",
                sizing_mode="stretch_width",
            ),  # fmt: skip
            self._share,
            pn.FlexBox(
                pn.Column(pn.pane.Bokeh(f.heads.figure), margin=0, width=HEADS_SIZE[c][0] + 10),
                pn.Column(
                    pn.pane.Bokeh(f.dot.figure), self._dot_text, margin=0, width=DOT_SIZE[c][0] + 10
                ),  # fmt: skip
                gap="10px",
                sizing_mode="stretch_width",
            ),
            margin=0,
            sizing_mode="stretch_width",
        )
        self._draw()

    @param.depends(
        "state.forward", "state.layer", "state.head", "state.query", "state.key", watch=True
    )
    @draws
    def _draw(self) -> None:
        s = self.state
        if s.forward is None:
            return
        try:
            f = s.outputs(*OUTPUTS)
            weights = s.engine.weights(s.model)
        except EngineError as err:
            self._message.object = f"<p>{html.escape(str(err))}</p>"
            self._message.visible = True
            return
        self._message.visible = False
        cfg = s.config
        layer = min(s.layer, cfg["n_layer"] - 1)
        head = min(s.head, cfg["n_head"] - 1)
        query, key = min(s.query, s.n_tokens - 1), min(s.key, s.n_tokens - 1)
        hidden0 = s.forward.hidden[0]
        dp = self._f.draw(s.labels, s.ids, cfg, weights, hidden0, f, layer, head, query, key)
        self._dot_text.object = pair_html(s.labels, cfg, f, s.forward, layer, head, query, key, dp)
        self._embed_note.object = embed_note(cfg)
        self._shapes.object = shapes_html(cfg, s.n_tokens)
        self._share.object = share_caption(cfg, head)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


def embed_note(config: dict) -> str:
    """Under the embedding figure: what is added to the token row (or that nothing is)."""
    if config.get("positions", "learned") == "rope":
        return f"<p class='hint'>{Q.ROPE_NOTE}</p>"
    return (
        "<p class='hint'>The token row and the position row are added: their sum is the "
        "residual stream every block reads from and writes to. The first block's norm "
        "rescales it before Q, K and V are made from it.</p>"
    )


def share_caption(config: dict, head: int) -> str:
    """Under Q, K and V: where K and V come from, and which heads share them."""
    return (
        "<p class='hint'>Each row is one token; click a row of Q to pick the query, a row of "
        f"K to pick the key.{sharing_note(config, head)}</p>"
    )


# -- the snapshot ------------------------------------------------------------------------------
# The same figures, drawn once here and redrawn in the page by ``js/qkv.js`` from the embedded
# outputs (q, k, v, the attention data and the stream shared with other lessons); the heads'
# outputs are the probabilities over the values, summed in the page as qkv.head_output does.


def snapshot(ctx: Context):
    s, style = ctx.selection, ctx.style
    f = ctx.outputs(*OUTPUTS)
    cfg, weights = ctx.config, ctx.engine.weights(ctx.model)
    n_layer, n_head, t, d = f.q.shape
    n_kv, c = f.k.shape[1], ctx.forward.hidden.shape[-1]
    layer = index_buttons(ctx, n_layer, s.layer, "qkv-layer")
    head = index_buttons(ctx, n_head, s.head, "qkv-head")
    query, key = ctx.query, ctx.key
    figs = Figures(style)
    hidden0 = ctx.forward.hidden[0]
    dp = figs.draw(
        ctx.labels, ctx.ids, cfg, weights, hidden0, f, layer.active, head.active, query, key
    )
    dot_text = div(
        ctx,
        pair_html(ctx.labels, cfg, f, ctx.forward, layer.active, head.active, query, key, dp),
        "pair",
        "qkv-dot-text",
        name="qkv-dot-text",
    )
    share = div(ctx, share_caption(cfg, head.active), "caption", "qkv-share", name="qkv-share")
    e = Q.embed(weights, ctx.ids)
    flat = lambda a: np.ascontiguousarray(a, dtype=np.float32).ravel()  # noqa: E731
    embed = ColumnDataSource(
        data=dict(
            token=flat(e.token),
            position=flat(e.token * 0 if e.position is None else e.position),
            normed=flat(Q.block_input(hidden0, weights, cfg, 0)),
        ),
        name="qkv-embed-data",
    )
    picked = ColumnDataSource(data=dict(query=[query], key=[key]), name="qkv-pick")

    def matrix(m: RowMatrix) -> dict:
        return dict(source=m.source, mapper=m.mapper, selection=m.selection, figure=m.figure)

    args = dict(
        q=ctx.output_data("q"),
        k=ctx.output_data("k"),
        v=ctx.output_data("v"),
        attention=ctx.attention_data(),
        embed=embed,
        hidden=ctx.output_data("hidden"),  # the stream, shared: hidden[0] is its first T × C
        has_position=e.position is not None,
        L=n_layer, H=n_head, KV=n_kv, T=t, d=d, C=c,
        layer=layer,
        head=head,
        picked=picked,
        labels=ctx.labels,
        figs={name: matrix(getattr(figs, name)) for name in ("embed", "q", "k", "v", "heads")},
        dot_fig=figs.dot.figure,
        dot_bars=figs.dot.source,
        colors=list(figs.dot.colors()),
        dot_text=dot_text,
        dot_t=DOT,
        masked_t=MASKED,
        share=share,
        share_texts=[share_caption(cfg, h) for h in range(n_head)],
    )  # fmt: skip
    redraw = callback("qkv", "draw()", **args)
    for widget in (layer, head):
        widget.js_on_change("active", redraw)
    for fig, which in ((figs.q.figure, "query"), (figs.k.figure, "key")):
        pick = callback("qkv", f"tap_row(cb_obj, '{which}')", **args)
        for event in ("tap", "doubletap"):  # two quick clicks on two rows are two picks
            fig.js_on_event(event, pick)
    controls = row(
        column(div(ctx, "<b>Layer</b>", "explain"), layer),
        column(div(ctx, "<b>Head</b>", "explain"), head),
    )
    width = EMBED_SIZE[style.classroom][0]
    return column(
        controls,
        row(
            column(figs.embed.figure, div(ctx, embed_note(cfg), "caption", width=width)),
            div(ctx, shapes_html(cfg, t), "qkv-shapes-box", width=420),
        ),
        row(figs.q.figure, figs.k.figure, figs.v.figure),
        share,
        row(figs.heads.figure, column(figs.dot.figure, dot_text)),
    )
