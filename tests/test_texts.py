"""Sentences that taught something false (issue #15), each checked against what is true."""

from __future__ import annotations

import numpy as np
import torch

from dashboard.lessons import sampling as S
from dashboard.lessons.attention import NAN_ROW
from dashboard.views import bpe, mask, precision


def test_longformer_is_not_a_last_w_window():
    text = mask.EXPLAIN["sliding"]
    assert "Mistral or Longformer" not in text
    assert "Longformer's window is symmetric" in text and "<i>w</i>/2 tokens on each side" in text


def test_one_explanation_of_the_nan_row_and_it_is_the_stable_softmaxs():
    # the softmax both lessons run subtracts the row's max: an all −inf row gives −inf − (−inf)
    row = torch.full((4,), float("-inf"), dtype=torch.float64)
    assert torch.isnan(row - row.max()).all() and torch.isnan(torch.softmax(row, -1)).all()
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.float64("-inf") - np.float64("-inf"))
    assert "−∞ − (−∞)" in NAN_ROW
    assert NAN_ROW in mask.STORY_EMPTY and NAN_ROW in precision.MASK_NOTE
    assert "0/0" not in mask.STORY_EMPTY


def test_top_p_drops_at_most_the_tail():
    text = S.PRESETS["Balanced"].explain
    assert "at most the last 10%" in text and "holds the last 10%" not in text
    # what top-p 0.9 really drops: at most 10% of the mass (less when a token straddles 0.9)
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    d = S.distribution(np.log(probs), 1.0, None, 0.9)
    assert d.tempered[~d.kept].sum() <= 0.1 + 1e-12


def test_cuda_is_not_promised_fp16_kernels_for_a_graph_cast_for_the_cpu():
    assert "every op would have fp16 kernels" not in precision.RUNS_NOTE
    assert "placed for the CPU provider" in precision.RUNS_NOTE


def test_the_merge_agreement_reads_in_english():
    assert bpe._same_prefix(1, 84) == "the first of 84 merges is identical"
    assert bpe._same_prefix(5, 84) == "the first 5 of 84 merges are identical"
    assert "first 0" not in bpe._same_prefix(0, 84)


def test_the_marked_bar_is_called_by_its_colour_in_both_themes():
    from dashboard.state import AnatomyState
    from dashboard.views.plots import plot_style
    from dashboard.views.sampling import SamplingLesson

    for classroom, colour in ((False, "orange"), (True, "yellow")):
        assert plot_style(classroom).accent_name == colour
        state = AnatomyState(text="If the file does not exist", classroom=classroom, query=2)
        text = SamplingLesson(state=state).summary.object
        assert f"({colour})" in text and "(orange)" not in text.replace(f"({colour})", "")


def test_entropy_is_given_in_bits_too_and_top_k_keeps_ties():
    from dashboard.state import AnatomyState
    from dashboard.views.sampling import HOW, SamplingLesson

    state = AnatomyState(text="If the file does not exist", query=2)
    view = SamplingLesson(state=state)
    d = view.distribution()
    assert f"{d.entropy / np.log(2):.3f} bits" in view.summary.object
    assert "any tied with the k-th" in HOW
    # which is what the lesson computes: a tie at the k-th is kept
    tied = S.distribution(np.array([2.0, 1.0, 1.0, 0.0]), 1.0, 2, 1.0)
    assert tied.n_kept == 3


def test_a_rounded_value_is_called_rounded_not_exact():
    import ml_dtypes

    cases = [  # value, format, what numpy / ml_dtypes store
        (0.1, "fp16", float(np.float16(0.1))),
        (1.00390625, "bf16", float(np.float32(1.00390625).astype(ml_dtypes.bfloat16))),
        (0.5, "fp16", 0.5),
        (float("inf"), "fp16", float("inf")),
        (float("-inf"), "bf16", float("-inf")),
    ]
    for value, fmt, stored in cases:
        text = precision.bit_info_html(value, fmt)
        rounded = stored != value
        assert ("<span class='flag'>rounded</span>" in text) == rounded, (value, fmt)
        assert ("stored exactly" in text) == (not rounded), (value, fmt)
        assert "exact range" not in text
