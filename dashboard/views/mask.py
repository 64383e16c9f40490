"""The causal-mask lesson: the mask, the scores before and after it, and the softmax.

The variants (causal, bidirectional, sliding window, a padded batch) are computed by
:mod:`dashboard.lessons.attention` from the model's own scaled scores, so students see what
the same head would do under another mask, and why -inf and a large negative number differ.
"""

from __future__ import annotations

import panel as pn
import param

from dashboard.lessons.attention import fill_comparison, restage, variant_mask
from dashboard.state import FILLS
from dashboard.views.plots import MatrixPlot, score_range
from dashboard.views.registry import LESSONS, LessonView, when_shown
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
    "Mistral or Longformer: memory grows with <i>w</i>, not with the text.",
    "padding": "In a batch, a shorter sentence is padded to the length of the longest. Here the "
    "first <i>p</i> positions play the padding: no query may attend to them, so the padding "
    "queries are left with nothing at all to attend to.",
}


def explain_mask(kind: str, kept_color: str) -> str:
    """What the ``kind`` mask does, and the colour the mask matrix keeps a key in (HTML)."""
    kept = f"<b style='color:{kept_color}'>■</b>"
    return f"{EXPLAIN[kind]} In the mask, {kept} marks a key the query may look at."


class MaskLesson(LessonView):
    """Four matrices side by side for the selected head: mask, scores, masked scores, softmax."""

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        # In classroom mode the four sit in one row (to fit a projector): they share the first
        # one's y axis, and the raw scores share the colour bar of the masked ones.
        row = style.classroom
        self._mask = MatrixPlot(style, style.small, kind="mask", name="mask-allowed")
        self._scores = MatrixPlot(
            style, style.small, kind="scores", name="mask-scores", y_axis=not row, colorbar=not row
        )
        self._masked = MatrixPlot(
            style, style.small, kind="scores", name="mask-masked", y_axis=not row
        )
        self._probs = MatrixPlot(
            style, style.small, kind="probs", name="mask-probs", y_axis=not row
        )
        for plot in (self._mask, self._scores, self._masked, self._probs):
            plot.on_tap(lambda q, k: s.param.update(query=q, key=k))
            if row and plot is not self._mask:  # one axis title for the row
                plot.figure.xaxis.axis_label = None
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
    @when_shown
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
        self._probs.update(probs, s.labels, sel, title=titles[3])
        self._story.object = self._fill_story(scaled, allowed)

    @param.depends("state.query", "state.key", watch=True)
    @when_shown
    def _select(self) -> None:
        if self.state.forward is not None:
            for plot in (self._mask, self._scores, self._masked, self._probs):
                plot.select((self.state.query, self.state.key))

    def _fill_story(self, scaled, allowed) -> str:
        c = fill_comparison(scaled, allowed, FILLS["-1e9"])
        if c["empty_rows"]:
            rows = ", ".join(str(i) for i in c["empty_rows"])
            return (
                f"<p><b>Rows {rows}</b> have no key left. With −∞ their softmax is 0/0 = "
                "<b class='nan'>NaN</b> (pink), which then spreads through every later layer. "
                "With −10⁹ every score in those rows is the same −10⁹, so their softmax is a "
                "uniform average over all the keys, future ones included: finite, wrong, and "
                "invisible. Real models give such rows at least one key "
                "(or zero them afterwards).</p>"
            )
        return (
            "<p>Every query keeps at least one key, so −∞ and −10⁹ give the same softmax "
            f"(largest difference {c['max_abs_diff']:.1e}): exp(−10⁹ − max) underflows to 0 "
            "exactly. Try the padded batch to see where they part ways. In fp16 the largest "
            "finite number is 65 504, so −10⁹ itself overflows to −∞.</p>"
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout
