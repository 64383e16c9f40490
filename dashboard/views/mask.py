"""The causal-mask lesson: the mask, the scores before and after it, and the softmax.

The variants (causal, bidirectional, sliding window, a padded batch) are computed by
:mod:`dashboard.lessons.attention` from the model's own scaled scores, so students see what
the same head would do under another mask, and why -inf and a large negative number differ.
"""

from __future__ import annotations

from typing import ClassVar

import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import RadioButtonGroup, Slider

from dashboard.lessons.attention import (
    FILLS,
    MASK_KINDS,
    NAN_ROW,
    fill_comparison,
    restage,
    variant_mask,
)
from dashboard.views.offline import Context, callback, div, index_buttons
from dashboard.views.plots import MatrixPlot, score_range
from dashboard.views.registry import LESSONS, LessonView, Options, draws
from dashboard.views.widgets import choice_group, head_controls, labelled, text_pane, two_way

MASK_TITLES = {
    "causal": "Causal (GPT)",
    "none": "None (bidirectional)",
    "sliding": "Sliding window",
    "padding": "Padded batch",
}

# Normal and classroom titles: the classroom's narrow matrices get short ones. The mask's
# colours are told in the text above the plots (a title long enough to say them is cut).
TITLES = {
    False: (
        "1. The mask",
        "2. Scores q·k/√d",
        "3. After the mask",
        "4. Softmax over each row",
    ),
    True: ("1. Mask", "2. Scores", "3. Masked", "4. Softmax"),
}

EXPLAIN = {
    "causal": "A decoder predicts the next token, so query <i>i</i> may only look at keys "
    "0…<i>i</i>: everything above the diagonal is removed before the softmax.",
    "none": "An encoder (BERT) lets every token see every other token. This model was trained "
    "causally, so these are probabilities it never produced.",
    "sliding": "Each query sees only the last <i>w</i> tokens (itself included), as in "
    "Mistral: memory grows with <i>w</i>, not with the text. (Longformer's window is "
    "symmetric instead, <i>w</i>/2 tokens on each side plus a few global tokens: an "
    "encoder's window.)",
    "padding": "In a batch, a shorter sentence is padded to the length of the longest. Here the "
    "first <i>p</i> positions play the padding: no query may attend to them, so the padding "
    "queries are left with nothing at all to attend to.",
}


def mask_plots(style) -> dict[str, MatrixPlot]:
    """The lesson's four matrices, in both homes: the mask, the raw scores, the masked scores
    and the softmax. In classroom mode they sit in one row (to fit a projector): they share
    the first one's y axis and one x axis title, and the raw scores share the colour bar of
    the masked ones. A short text has every row and column labelled (the story names rows)."""
    row = style.classroom
    small = dict(style=style, size=style.small, label_all=True)
    plots = {
        "allowed": MatrixPlot(**small, kind="mask", name="mask-allowed"),
        "scores": MatrixPlot(
            **small, kind="scores", name="mask-scores", y_axis=not row, colorbar=not row
        ),
        "masked": MatrixPlot(**small, kind="scores", name="mask-masked", y_axis=not row),
        "probs": MatrixPlot(**small, kind="probs", name="mask-probs", y_axis=not row),
    }
    if row:
        for plot in list(plots.values())[1:]:
            plot.figure.xaxis.axis_label = None
    for plot in plots.values():  # side by side: one label font for the four
        plot.label_peers = list(plots.values())
    return plots


# What −∞ and −10⁹ do, in both homes: {rows} and {diff} are filled in by the caller (the
# dashboard in Python, the snapshot in its page).
STORY_EMPTY = (
    f"<p><b>Rows {{rows}}</b> have no key left. With −∞ {NAN_ROW} (pink), which then "
    "spreads through every later layer. "
    "With −10⁹ every score in those rows is the same −10⁹, so their softmax is a "
    "uniform average over all the keys, future ones included: finite, wrong, and "
    "invisible. Real models give such rows at least one key "
    "(or zero them afterwards).</p>"
)
STORY_FULL = (
    "<p>Every query keeps at least one key, so −∞ and −10⁹ give the same softmax "
    "(largest difference {diff}): exp(−10⁹ − max) underflows to 0 "
    "exactly. Try the padded batch to see where they part ways. In fp16 the largest "
    "finite number is 65 504, so −10⁹ itself overflows to −∞.</p>"
)


def explain_mask(kind: str, kept_color: str) -> str:
    """What the ``kind`` mask does, and the colour the mask matrix keeps a key in (HTML)."""
    kept = f"<b style='color:{kept_color}'>■</b>"
    return f"{EXPLAIN[kind]} In the mask, {kept} marks a key the query may look at."


ABOUT = (
    "<b>What you see:</b> the selected head's scores under a mask, step by step: which keys "
    "each query may see, the raw scores, the scores after masking, and the softmax. The "
    "variants are recomputed from the model's own scores. <b>Try:</b> switch to no mask (an "
    "encoder) or a sliding window, then a padded batch with the fill −∞ vs −10⁹, and watch "
    "the rows with no key left."
)


class MaskOptions(Options):
    """The mask lesson's options."""

    url: ClassVar[dict[str, str]] = {
        "mask": "mask",
        "window": "window",
        "pad": "pad",
        "fill": "fill",
    }

    mask = param.Selector(default="causal", objects=list(MASK_KINDS), doc="Mask variant.")
    window = param.Integer(default=3, bounds=(1, None), doc="Sliding-window width in tokens.")
    pad = param.Integer(default=2, bounds=(0, None), doc="Padding tokens before the text.")
    fill = param.Selector(default="-inf", objects=list(FILLS), doc="Value for masked scores.")


class MaskLesson(LessonView):
    """Four matrices side by side for the selected head: mask, scores, masked scores, softmax."""

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        row = style.classroom
        plots = mask_plots(style)
        self._mask, self._scores, self._masked, self._probs = plots.values()
        for plot in plots.values():
            plot.on_tap(lambda q, k: s.param.update(query=q, key=k))
        kind = choice_group(s, "mask", {title: key for key, title in MASK_TITLES.items()})
        fill = choice_group(s, "fill", {"−∞": "-inf", "−10⁹": "-1e9"})
        self._window = two_way(
            pn.widgets.IntSlider(label="Window w", start=1, end=8, value=s.window, width=220),
            s,
            "window",
        )
        self._pad = two_way(
            pn.widgets.IntSlider(label="Padding p", start=0, end=8, value=s.pad, width=220),
            s,
            "pad",
        )
        self._explain = text_pane("", "explain")
        self._story = text_pane("", "explain")
        self._precision = pn.widgets.Button(
            label="Why fp16 needs care: the precision lesson →",
            color="light",
            visible="precision" in LESSONS,
        )
        self._precision.on_click(lambda _e: setattr(s, "lesson", "precision"))
        self._layout = pn.Column(
            pn.FlexBox(
                head_controls(s),
                labelled("Mask", kind),
                labelled("Masked scores become", fill),
                self._window,
                self._pad,
                margin=0,
                css_classes=["controls"],
                sizing_mode="stretch_width",
            ),
            self._explain,
            pn.FlexBox(
                *(
                    pn.pane.Bokeh(p.figure, margin=(5, 5))
                    for p in (self._mask, self._scores, self._masked, self._probs)
                ),
                gap="6px",
                flex_wrap="nowrap" if row else "wrap",
            ),
            self._story,
            self._precision,
            sizing_mode="stretch_width",
            margin=0,
        )
        self._draw()

    @param.depends(
        "state.forward",
        "state.layer",
        "state.head",
        "state.mask",
        "state.window",
        "state.pad",
        "state.fill",
        watch=True,
    )
    @draws
    def _draw(self) -> None:
        s = self.state
        self._window.visible = s.mask == "sliding"
        self._pad.visible = s.mask == "padding"
        self._explain.object = f"<p>{explain_mask(s.mask, self.style.accent)}</p>"
        if s.forward is None:
            return
        n = len(s.ids)
        self._window.end = self._pad.end = max(n, 2)
        scaled = s.forward.attn_scores[s.layer, s.head].astype("float64")
        allowed = variant_mask(s.mask, n, window=s.window, pad=min(s.pad, n))
        masked, probs = restage(scaled, allowed, FILLS[s.fill])
        sel = (s.query, s.key)
        if self.style.classroom:  # one colour bar (on the masked scores) for both
            self._scores.score_range = score_range(masked, allowed)
        titles = TITLES[self.style.classroom]
        self._mask.update(allowed.astype(float), s.labels, sel, title=titles[0])
        self._scores.update(scaled, s.labels, sel, title=titles[1])
        self._masked.update(masked, s.labels, sel, allowed=allowed, title=titles[2])
        self._probs.update(probs, s.labels, sel, allowed=allowed, title=titles[3])
        self._story.object = self._fill_story(scaled, allowed)

    @param.depends("state.query", "state.key", watch=True)
    @draws
    def _select(self) -> None:
        if self.state.forward is not None:
            for plot in (self._mask, self._scores, self._masked, self._probs):
                plot.select((self.state.query, self.state.key))

    def _fill_story(self, scaled, allowed) -> str:
        c = fill_comparison(scaled, allowed, FILLS["-1e9"])
        if c["empty_rows"]:
            return STORY_EMPTY.format(rows=", ".join(str(i) for i in c["empty_rows"]))
        return STORY_FULL.format(diff=f"{c['max_abs_diff']:.1e}")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------
# The causal-mask lesson, offline: the selected head's scores under another mask (causal,
# none, sliding window, a left-padded batch), the masked scores and the softmax, recomputed in
# ``js/mask.js`` from the model's own scaled scores (the rules of
# :func:`dashboard.lessons.attention.variant_mask` and :func:`~.restage`).


def snapshot(ctx: Context):
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
    plots = mask_plots(style)
    # a first picture from the Python functions; the page redraws it at once with the same rules
    scaled = f.attn_scores[layer.active, head.active].astype("float64")
    allowed = variant_mask(kinds[kind.active], t, window=win.value, pad=min(pad.value, t))
    masked, probs = restage(scaled, allowed, FILLS[fills[fill.active]])
    sel = (ctx.query, ctx.key)
    titles = TITLES[style.classroom]
    if style.classroom:  # one colour bar (on the masked scores) for both
        plots["scores"].score_range = score_range(masked, allowed)
    plots["allowed"].update(allowed.astype(float), ctx.labels, sel, title=titles[0])
    plots["scores"].update(scaled, ctx.labels, sel, title=titles[1])
    plots["masked"].update(masked, ctx.labels, sel, allowed=allowed, title=titles[2])
    plots["probs"].update(probs, ctx.labels, sel, allowed=allowed, title=titles[3])
    explain = div(ctx, "", "explain", name="mask-explain")
    story = div(ctx, "", "explain", name="mask-story")
    args = dict(
        data=ctx.attention_data(),
        **ctx.scores_args(),
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
        probs_removed=plots["probs"].removed,
        explain=explain,
        story=story,
        texts=[explain_mask(k, style.accent) for k in kinds],
        story_empty=STORY_EMPTY,
        story_full=STORY_FULL,
        scores_src=plots["scores"].source,
        scores_mapper=plots["scores"].mapper,
        shared_bar=style.classroom,
    )
    redraw = callback(("scores", "mask"), "draw()", **args)
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
        row(*(p.figure for p in plots.values()))
        if style.classroom
        else column(
            row(plots["allowed"].figure, plots["scores"].figure),
            row(plots["masked"].figure, plots["probs"].figure),
        ),
        story,
    )
