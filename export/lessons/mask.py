"""The causal-mask lesson, offline: the selected head's scores under another mask (causal,
none, sliding window, a left-padded batch), the masked scores and the softmax, recomputed in
``js/mask.js`` from the model's own scaled scores (the rules of
:func:`dashboard.lessons.attention.variant_mask` and :func:`~.restage`)."""

from __future__ import annotations

from bokeh.layouts import column, row
from bokeh.models import RadioButtonGroup, Slider

from dashboard.lessons.attention import MASK_KINDS, restage, variant_mask
from dashboard.state import FILLS
from dashboard.views.mask import MASK_TITLES, explain_mask
from dashboard.views.plots import MatrixPlot
from export.common import Context, callback, div
from export.lessons.attention import index_buttons


def build(ctx: Context):
    s, style, f = ctx.selection, ctx.style, ctx.forward
    n_layer, n_head, t = f.attn_probs.shape[:3]
    layer = index_buttons(ctx, n_layer, s.layer, "mask-layer")
    head = index_buttons(ctx, n_head, s.head, "mask-head")
    kinds = list(MASK_KINDS)
    kind = RadioButtonGroup(
        labels=[MASK_TITLES[k] for k in kinds],
        active=kinds.index(s.mask) if s.mask in kinds else 0,
        name="mask-kind",
        stylesheets=[ctx.stylesheet],
    )
    fills = list(FILLS)
    fill = RadioButtonGroup(
        labels=["−∞", "−10⁹"],
        active=fills.index(s.fill) if s.fill in fills else 0,
        name="mask-fill",
        stylesheets=[ctx.stylesheet],
    )
    end = max(t, 2)
    win = Slider(
        title="Window w",
        start=1,
        end=end,
        step=1,
        value=min(max(s.window, 1), end),
        name="mask-window",
        width=260,
        stylesheets=[ctx.stylesheet],
    )
    pad = Slider(
        title="Padding p",
        start=0,
        end=end,
        step=1,
        value=min(max(s.pad, 0), end),
        name="mask-pad",
        width=260,
        stylesheets=[ctx.stylesheet],
    )
    plots = {
        "allowed": MatrixPlot(style, style.small, kind="mask", name="mask-allowed"),
        "masked": MatrixPlot(style, style.small, kind="scores", name="mask-masked"),
        "probs": MatrixPlot(style, style.small, kind="probs", name="mask-probs"),
    }
    # a first picture from the Python functions; the page redraws it at once with the same rules
    scaled = f.attn_scores[layer.active, head.active].astype("float64")
    allowed = variant_mask(kinds[kind.active], t, window=win.value, pad=min(pad.value, t))
    masked, probs = restage(scaled, allowed, FILLS[fills[fill.active]])
    sel = (ctx.query, ctx.query)
    plots["allowed"].update(allowed.astype(float), ctx.labels, sel, title="1. The mask")
    plots["masked"].update(masked, ctx.labels, sel, allowed=allowed, title="2. After the mask")
    plots["probs"].update(probs, ctx.labels, sel, title="3. Softmax over each row")
    explain = div(ctx, "", "explain", name="mask-explain")
    story = div(ctx, "", "explain", name="mask-story")
    args = dict(
        data=ctx.attention_data(),
        L=n_layer,
        H=n_head,
        T=t,
        layer=layer,
        head=head,
        kind=kind,
        kinds=kinds,
        fill=fill,
        fills=[FILLS[k] if k != "-inf" else None for k in fills],  # JSON has no -Infinity
        win=win,
        pad=pad,
        allowed_src=plots["allowed"].source,
        masked_src=plots["masked"].source,
        masked_mapper=plots["masked"].mapper,
        probs_src=plots["probs"].source,
        explain=explain,
        story=story,
        texts=[explain_mask(k, style.accent) for k in kinds],
    )
    redraw = callback("mask", "draw()", **args)
    for widget in (layer, head, kind, fill):
        widget.js_on_change("active", redraw)
    for widget in (win, pad):
        widget.js_on_change("value", redraw)
    ctx.on_ready(redraw)
    return column(
        row(
            column(div(ctx, "<b>Layer</b>", "explain"), layer),
            column(div(ctx, "<b>Head</b>", "explain"), head),
            column(div(ctx, "<b>Mask</b>", "explain"), kind),
            column(div(ctx, "<b>Masked scores become</b>", "explain"), fill),
        ),
        row(win, pad),
        explain,
        row(*(p.figure for p in plots.values())),
        story,
    )
