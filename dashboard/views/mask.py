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
from dashboard.views.plots import MatrixPlot
from dashboard.views.registry import LESSONS, LessonView
from dashboard.views.widgets import choice_group, head_controls, labelled, text_pane, two_way

MASK_TITLES = {
    "causal": "Causal (GPT)",
    "none": "None (bidirectional)",
    "sliding": "Sliding window",
    "padding": "Padded batch",
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


class MaskLesson(LessonView):
    """Four matrices side by side for the selected head: mask, scores, masked scores, softmax."""

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        self._mask = MatrixPlot(style, style.small, kind="mask", name="mask-allowed")
        self._scores = MatrixPlot(style, style.small, kind="scores", name="mask-scores")
        self._masked = MatrixPlot(style, style.small, kind="scores", name="mask-masked")
        self._probs = MatrixPlot(style, style.small, kind="probs", name="mask-probs")
        for plot in (self._mask, self._scores, self._masked, self._probs):
            plot.on_tap(lambda q, k: s.param.update(query=q, key=k))
        kind = choice_group(s, "mask", {title: key for key, title in MASK_TITLES.items()})
        fill = choice_group(s, "fill", {"−∞": "-inf", "−10⁹": "-1e9"})
        self._window = two_way(
            pn.widgets.IntSlider(name="Window w", start=1, end=8, value=s.window, width=220),
            s,
            "window",
        )
        self._pad = two_way(
            pn.widgets.IntSlider(name="Padding p", start=0, end=8, value=s.pad, width=220),
            s,
            "pad",
        )
        self._explain = text_pane("", "explain")
        self._story = text_pane("", "explain")
        self._precision = pn.widgets.Button(
            name="Why fp16 needs care: the precision lesson →",
            button_type="light",
            visible="precision" in LESSONS,
        )
        self._precision.on_click(lambda _e: setattr(s, "lesson", "precision"))
        self._layout = pn.Column(
            pn.Row(
                head_controls(s),
                labelled("Mask", kind),
                labelled("Masked scores become", fill),
                self._window,
                self._pad,
                margin=0,
                css_classes=["controls"],
            ),
            self._explain,
            pn.FlexBox(
                *(
                    pn.pane.Bokeh(p.figure, margin=(5, 5))
                    for p in (self._mask, self._scores, self._masked, self._probs)
                ),
                gap="6px",
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
    def _draw(self) -> None:
        s = self.state
        self._window.visible = s.mask == "sliding"
        self._pad.visible = s.mask == "padding"
        self._explain.object = f"<p>{EXPLAIN[s.mask]}</p>"
        if s.forward is None:
            return
        n = len(s.ids)
        self._window.end = self._pad.end = max(n, 2)
        scaled = s.forward.attn_scores[s.layer, s.head].astype("float64")
        allowed = variant_mask(s.mask, n, window=s.window, pad=min(s.pad, n))
        masked, probs = restage(scaled, allowed, FILLS[s.fill])
        sel = (s.query, s.key)
        self._mask.update(allowed.astype(float), s.labels, sel, title="1. The mask (yellow: kept)")
        self._scores.update(scaled, s.labels, sel, title="2. Scores q·k/√d")
        self._masked.update(masked, s.labels, sel, allowed=allowed, title="3. After the mask")
        self._probs.update(probs, s.labels, sel, title="4. Softmax over each row")
        self._story.object = self._fill_story(scaled, allowed)

    @param.depends("state.query", "state.key", watch=True)
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
                "With −10⁹ the same rows quietly become a uniform average over the padding: "
                "finite, wrong, and invisible. Real models give such rows at least one key "
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
