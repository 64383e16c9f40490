"""dashboard.lessons.sampling against torch and Hugging Face transformers' logits warpers.

The references are independent implementations: ``torch.softmax(logits / T)``,
``torch.topk``/``torch.argmax``, ``torch.distributions.Categorical(...).entropy()``, and
``transformers``' ``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper``
(which filter logits to -inf; the softmax of their output is the renormalised distribution).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from dashboard.lessons import sampling as S

RNG = np.random.default_rng(1234)
V = 50


def _logits(v: int = V, scale: float = 3.0) -> np.ndarray:
    return RNG.standard_normal(v) * scale


def _torch_softmax(x: np.ndarray, t: float) -> np.ndarray:
    return torch.softmax(torch.from_numpy(x) / t, dim=-1).numpy()


def _hf(x: np.ndarray, *warpers) -> tuple[np.ndarray, np.ndarray]:
    """Hugging Face's warpers on one row of logits: (probabilities, kept mask)."""
    scores = torch.from_numpy(np.asarray(x, dtype=np.float64))[None].clone()
    out = LogitsProcessorList(list(warpers))(torch.zeros((1, 1), dtype=torch.long), scores)[0]
    return torch.softmax(out, dim=-1).numpy(), torch.isfinite(out).numpy()


# -- softmax and temperature -----------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 1.0, 1.5, 5.0, 10.0])
def test_softmax_matches_torch(t):
    for _ in range(5):
        x = _logits()
        np.testing.assert_allclose(S.softmax(x, t), _torch_softmax(x, t), rtol=1e-12, atol=1e-15)


def test_softmax_batched_rows_match_torch():
    x = RNG.standard_normal((3, 4, V))
    np.testing.assert_allclose(
        S.softmax(x, 0.8), torch.softmax(torch.from_numpy(x) / 0.8, -1).numpy(), atol=1e-15
    )


def test_temperature_zero_is_argmax_one_hot_and_ties_go_to_lowest_id():
    x = _logits()
    p = S.softmax(x, 0)
    assert p.sum() == 1.0 and p.max() == 1.0
    assert int(np.argmax(p)) == int(torch.argmax(torch.from_numpy(x)))
    tied = np.array([0.5, 2.0, -1.0, 2.0, 2.0])
    expected = np.zeros(5)
    expected[1] = 1.0
    np.testing.assert_array_equal(S.softmax(tied, 0), expected)
    # torch.argmax returns the first maximum too: the rule matches the reference
    assert int(torch.argmax(torch.from_numpy(tied))) == 1
    # any T > 0 shares the probability between the tied maxima instead
    np.testing.assert_allclose(S.softmax(tied, 1e-6), [0, 1 / 3, 0, 1 / 3, 1 / 3], atol=1e-15)


def test_temperature_one_is_plain_softmax_and_large_t_tends_to_uniform():
    x = _logits()
    np.testing.assert_allclose(S.softmax(x), torch.softmax(torch.from_numpy(x), -1).numpy())
    np.testing.assert_allclose(S.softmax(x, 1e9), np.full(V, 1 / V), rtol=1e-6)


@pytest.mark.parametrize(
    "x, expected",
    [
        ([1e30, -1e30, 0.0], [1.0, 0.0, 0.0]),
        ([1e30, 1e30, -1e30], [0.5, 0.5, 0.0]),
        ([-1e30, -1e30 + 1e15, -1e30], [0.0, 1.0, 0.0]),
        ([1e308, -1e308, 1e308], [0.5, 0.0, 0.5]),
        ([-1e308, -1e308], [0.5, 0.5]),
        ([0.0, -np.inf, 1.0], [1 / (1 + math.e), 0.0, math.e / (1 + math.e)]),
    ],
)
@pytest.mark.parametrize("t", [1e-300, 1e-3, 1.0, 7.0])
def test_huge_logits_never_overflow(x, expected, t):
    x = np.array(x)
    p = S.softmax(x, t)
    assert np.all(np.isfinite(p)) and abs(p.sum() - 1) < 1e-12
    if t == 1.0:
        np.testing.assert_allclose(p, expected, atol=1e-15)
    # torch agrees wherever its own x / T stays finite (1e308 / 1e-3 does not)
    scaled = torch.from_numpy(x) / t
    if torch.isfinite(scaled[torch.from_numpy(x) > -np.inf]).all():
        np.testing.assert_allclose(p, torch.softmax(scaled, -1).numpy(), atol=1e-15)


def test_huge_logits_where_torch_overflows():
    x = np.array([1e308, 1e307, -1e308])
    assert torch.isnan(torch.softmax(torch.from_numpy(x) / 0.5, -1)).any()  # the trap
    np.testing.assert_array_equal(S.softmax(x, 0.5), [1.0, 0.0, 0.0])


@pytest.mark.parametrize("t", [-0.1, -5, float("nan"), float("inf"), "0.7", None, True])
def test_bad_temperature_raises_clearly(t):
    with pytest.raises(ValueError, match="temperature"):
        S.softmax(_logits(), t)


@pytest.mark.parametrize("bad", [[np.nan, 0.0], [np.inf, 0.0], [-np.inf, -np.inf], []])
def test_unusable_logits_raise(bad):
    with pytest.raises(ValueError, match="logit"):
        S.softmax(np.array(bad), 1.0)


# -- top-k -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 5, 17, V - 1, V, V + 1, 10 * V])
def test_top_k_matches_hugging_face(k):
    for t in (0.5, 1.0, 2.0):
        x = _logits()
        probs = S.softmax(x, t)
        ref, kept = _hf(x, TemperatureLogitsWarper(t), TopKLogitsWarper(k))
        np.testing.assert_allclose(S.top_k(probs, k), ref, atol=1e-14)
        np.testing.assert_array_equal(S.top_k_mask(probs, k), kept)
        assert S.top_k_mask(probs, k).sum() == min(k, V)
        # the same tokens as torch.topk (no ties here)
        idx = torch.topk(torch.from_numpy(probs), min(k, V)).indices.numpy()
        assert set(np.flatnonzero(S.top_k_mask(probs, k))) == set(idx.tolist())


def test_top_k_larger_than_vocabulary_keeps_everything():
    probs = S.softmax(_logits(7))
    np.testing.assert_allclose(S.top_k(probs, 8), probs, rtol=1e-15)
    np.testing.assert_allclose(S.top_k(probs, 10**9), probs, rtol=1e-15)


def test_top_k_ties_at_the_cut_are_all_kept_as_hugging_face_does():
    probs = np.array([0.1, 0.3, 0.2, 0.2, 0.2])
    keep = S.top_k_mask(probs, 2)
    np.testing.assert_array_equal(keep, [False, True, True, True, True])
    ref, kept = _hf(np.log(probs), TopKLogitsWarper(2))
    np.testing.assert_array_equal(keep, kept)
    np.testing.assert_allclose(S.top_k(probs, 2), ref, atol=1e-15)
    np.testing.assert_allclose(S.top_k(probs, 2), [0, 1 / 3, 2 / 9, 2 / 9, 2 / 9], atol=1e-15)
    # torch.topk itself returns exactly k indices; the k-th value is the cut
    assert torch.topk(torch.from_numpy(probs), 2).values[-1].item() == 0.2


@pytest.mark.parametrize("k", [0, -1, 2.5, "3", None, True])
def test_bad_top_k_raises(k):
    with pytest.raises(ValueError, match="top-k"):
        S.top_k(S.softmax(_logits()), k)


# -- top-p -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8, 0.9, 0.95, 0.999])
def test_top_p_matches_hugging_face(p):
    for t in (0.5, 1.0, 2.5):
        x = _logits()
        probs = S.softmax(x, t)
        ref, kept = _hf(x, TemperatureLogitsWarper(t), TopPLogitsWarper(p))
        np.testing.assert_array_equal(S.top_p_mask(probs, p), kept)
        np.testing.assert_allclose(S.top_p(probs, p), ref, atol=1e-14)


def test_top_p_is_the_smallest_set_reaching_p():
    for p in np.linspace(0.01, 0.99, 40):
        probs = S.softmax(_logits())
        keep = S.top_p_mask(probs, p)
        order = np.argsort(-probs)
        n = int(keep.sum())
        assert keep[order[:n]].all()  # a prefix of the most likely tokens
        assert probs[keep].sum() >= p
        assert probs[order[: n - 1]].sum() < p  # one fewer would not reach p


def test_top_p_one_keeps_everything_even_tokens_of_probability_zero():
    probs = np.array([0.5, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(S.top_p_mask(probs, 1.0), [True] * 4)
    np.testing.assert_array_equal(S.top_p(probs, 1.0), probs)
    x = _logits()
    ref, kept = _hf(x, TopPLogitsWarper(1.0))
    assert kept.all()
    np.testing.assert_allclose(S.top_p(S.softmax(x), 1.0), ref, atol=1e-15)


def test_top_p_below_the_top_probability_keeps_just_the_top():
    probs = np.array([0.1, 0.6, 0.3])
    for p in (1e-9, 0.3, 0.6):
        np.testing.assert_array_equal(S.top_p(probs, p), [0.0, 1.0, 0.0])
        ref, _ = _hf(np.log(probs), TopPLogitsWarper(p))
        np.testing.assert_allclose(S.top_p(probs, p), ref, atol=1e-15)
    np.testing.assert_allclose(S.top_p(probs, 0.61), [0, 2 / 3, 1 / 3])


def test_top_p_ties_are_kept_together_and_the_order_of_the_vocabulary_does_not_matter():
    probs = np.array([0.2, 0.4, 0.2, 0.2])
    # 0.4 + one 0.2 reaches 0.5; the other two 0.2s tie with it and stay too
    np.testing.assert_array_equal(S.top_p_mask(probs, 0.5), [True] * 4)
    np.testing.assert_array_equal(S.top_p_mask(probs, 0.4), [False, True, False, False])
    for _ in range(20):
        q = S.softmax(np.round(_logits(12), 0))  # rounded logits: many exact ties
        perm = RNG.permutation(12)
        for p in (0.2, 0.5, 0.9):
            np.testing.assert_array_equal(S.top_p_mask(q, p)[perm], S.top_p_mask(q[perm], p))
            np.testing.assert_array_equal(S.top_k_mask(q, 3)[perm], S.top_k_mask(q[perm], 3))


@pytest.mark.parametrize("p", [0, -0.5, 1.0001, 2, float("nan"), "0.9", None])
def test_bad_top_p_raises(p):
    with pytest.raises(ValueError, match="top-p"):
        S.top_p(S.softmax(_logits()), p)


# -- the whole pipeline, in Hugging Face's order ---------------------------------------------------
@pytest.mark.parametrize("t", [0.3, 1.0, 1.7])
@pytest.mark.parametrize("k", [None, 1, 3, 10, V + 5])
@pytest.mark.parametrize("p", [1.0, 0.95, 0.6, 0.2])
def test_distribution_matches_hugging_face_pipeline(t, k, p):
    x = _logits()
    warpers = [TemperatureLogitsWarper(t)]
    if k is not None:
        warpers.append(TopKLogitsWarper(k))
    if p < 1:
        warpers.append(TopPLogitsWarper(p))
    ref, kept = _hf(x, *warpers)
    d = S.distribution(x, t, k, p)
    np.testing.assert_allclose(d.final, ref, atol=1e-14)
    np.testing.assert_array_equal(d.kept, kept)
    np.testing.assert_allclose(d.tempered, _torch_softmax(x, t), atol=1e-15)
    assert d.rank[d.order[0]] == 1 and sorted(d.rank.tolist()) == list(range(1, V + 1))
    np.testing.assert_array_equal(d.order, torch.argsort(torch.from_numpy(-x)).numpy())


def test_order_matters_top_k_comes_before_top_p():
    x = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    d = S.distribution(x, 1.0, k=2, p=0.5)
    # top-k first: [0.4, 0.3] renormalised is [0.571, 0.429], and 0.571 alone reaches 0.5
    np.testing.assert_allclose(d.final, [1, 0, 0, 0], atol=1e-15)
    ref, _ = _hf(x, TopKLogitsWarper(2), TopPLogitsWarper(0.5))
    np.testing.assert_allclose(d.final, ref, atol=1e-15)
    # the other order would keep two tokens
    assert S.top_k(S.top_p(np.exp(x), 0.5), 2)[1] > 0


def test_distribution_at_temperature_zero_keeps_top_k_by_logit():
    x = _logits()
    d = S.distribution(x, 0.0, k=5, p=1.0)
    assert d.n_kept == 5 and d.final[np.argmax(x)] == 1.0
    assert set(np.flatnonzero(d.kept)) == set(torch.topk(torch.from_numpy(x), 5).indices.tolist())


# -- entropy ---------------------------------------------------------------------------------------
def test_entropy_and_perplexity_match_torch():
    for t in (0.2, 1.0, 3.0):
        probs = S.softmax(_logits(), t)
        ref = torch.distributions.Categorical(probs=torch.from_numpy(probs)).entropy().item()
        assert S.entropy(probs) == pytest.approx(ref, rel=1e-12)
        assert S.perplexity(probs) == pytest.approx(math.exp(ref), rel=1e-12)
    batch = S.softmax(RNG.standard_normal((4, V)))
    ref = torch.distributions.Categorical(probs=torch.from_numpy(batch)).entropy().numpy()
    np.testing.assert_allclose(S.entropy(batch), ref, rtol=1e-12)


def test_entropy_limits():
    assert S.entropy(np.eye(5)[2]) == 0.0 and S.perplexity(np.eye(5)[2]) == 1.0
    assert S.entropy(np.full(8, 1 / 8)) == pytest.approx(math.log(8))
    assert S.perplexity(np.full(8, 1 / 8)) == pytest.approx(8)
    assert S.perplexity([0.5, 0.5, 0.0]) == pytest.approx(2)  # 0 · log 0 = 0


# -- sampling --------------------------------------------------------------------------------------
def _chi2_survival(stat: float, df: int) -> float:
    """P(X ≥ stat) for X ~ chi-square(df), from torch's regularised upper incomplete gamma."""
    return torch.special.gammaincc(torch.tensor(df / 2.0), torch.tensor(stat / 2.0)).item()


def _chi2_survival_even_df(stat: float, df: int) -> float:
    """The closed form for even df: e^(-x/2) Σ_{i<df/2} (x/2)^i / i!, an independent check."""
    h = stat / 2
    return math.exp(-h) * sum(h**i / math.factorial(i) for i in range(df // 2))


def _chi2_statistic(draws: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    support = probs > 0
    observed = np.bincount(draws, minlength=probs.size)[support]
    expected = probs[support] * draws.size
    return float(((observed - expected) ** 2 / expected).sum()), int(support.sum()) - 1


def test_chi2_reference_is_right():
    # the two independent survival functions agree, and the 5% point of chi-square(2) is
    # -2 ln 0.05 (exact for df = 2, where the distribution is exponential)
    for df in (2, 4, 8, 10):
        for stat in (0.5, 3.0, 12.0, 30.0):
            assert _chi2_survival(stat, df) == pytest.approx(_chi2_survival_even_df(stat, df))
    assert _chi2_survival(-2 * math.log(0.05), 2) == pytest.approx(0.05)


def test_seeded_samples_follow_the_distribution():
    # 11 tokens, one impossible: df = 9. Seeded, so the verdict is the same on every run.
    probs = np.array([0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005, 0.0])
    draws = S.sample(probs, np.random.default_rng(20240521), size=200_000)
    assert draws.dtype == np.int64 and draws.min() >= 0 and draws.max() < probs.size
    assert not np.any(draws == 10)  # probability 0 is never drawn
    stat, df = _chi2_statistic(draws, probs)
    assert df == 9
    assert _chi2_survival(stat, df) > 1e-3, f"chi-square {stat:.1f} on {df} df"
    # and the test has teeth: the same draws are rejected against a slightly wrong distribution
    wrong = probs.copy()
    wrong[0], wrong[1] = 0.28, 0.22
    stat_wrong, _ = _chi2_statistic(draws, wrong)
    assert _chi2_survival(stat_wrong, df) < 1e-6


def test_samples_through_the_pipeline_follow_the_renormalised_distribution():
    x = _logits(30)
    d = S.distribution(x, 1.3, k=8, p=0.9)
    draws = S.sample(d.final, np.random.default_rng(7), size=100_000)
    assert set(np.unique(draws)) <= set(np.flatnonzero(d.kept))
    stat, df = _chi2_statistic(draws, d.final)
    assert _chi2_survival(stat, df) > 1e-3


def test_sample_is_deterministic_per_seed_and_single_draws_are_ints():
    probs = S.softmax(_logits())
    a = [S.sample(probs, np.random.default_rng(3)) for _ in range(3)]
    assert len(set(a)) == 1 and isinstance(a[0], int)
    assert S.sample(np.eye(V)[17], np.random.default_rng(0)) == 17
    np.testing.assert_array_equal(
        S.sample(probs, np.random.default_rng(5), 100),
        S.sample(probs, np.random.default_rng(5), 100),
    )


def test_sample_never_picks_trailing_zero_when_u_rounds_up():
    class One(np.random.Generator):
        def random(self, size=None):  # the largest double below 1
            return np.nextafter(1.0, 0.0) if size is None else np.full(size, np.nextafter(1, 0))

    rng = One(np.random.PCG64(0))
    assert S.sample(np.array([0.3, 0.7, 0.0, 0.0]), rng) == 1


def test_sample_rejects_a_non_generator():
    with pytest.raises(TypeError):
        S.sample([0.5, 0.5], 3)


def test_step_rng_is_reproducible_and_differs_between_steps():
    probs = S.softmax(_logits(), 2.0)
    first = [S.sample(probs, S.step_rng(42, i)) for i in range(20)]
    again = [S.sample(probs, S.step_rng(42, i)) for i in range(20)]
    other = [S.sample(probs, S.step_rng(43, i)) for i in range(20)]
    assert first == again and first != other and len(set(first)) > 1


def test_sample_step_reports_probability_and_rank():
    x = _logits()
    step = S.sample_step(x, 0.0, None, 1.0, np.random.default_rng(0))
    assert step.token_id == int(torch.argmax(torch.from_numpy(x))) and step.prob == 1.0
    assert step.rank == 1
    step = S.sample_step(x, 1.0, 5, 1.0, np.random.default_rng(1))
    ranked = torch.argsort(torch.from_numpy(x), descending=True).tolist()
    assert step.rank == ranked.index(step.token_id) + 1 <= 5
    ref, _ = _hf(x, TopKLogitsWarper(5))
    assert step.prob == pytest.approx(ref[step.token_id])


# -- curves ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, p", [(None, 1.0), (4, 1.0), (None, 0.8), (10, 0.9)])
def test_temperature_curves_match_a_torch_loop(k, p):
    x = _logits()
    temps = S.default_temperatures(5.0, 51)
    c = S.temperature_curves(x, temps, top_n=5, k=k, p=p)
    ids = torch.topk(torch.from_numpy(x), 5).indices.numpy()
    np.testing.assert_array_equal(c.ids, ids)
    for i, t in enumerate(temps):
        if t == 0:
            ref = np.eye(V)[int(torch.argmax(torch.from_numpy(x)))]
        else:
            warpers = [TemperatureLogitsWarper(float(t))]
            warpers += [TopKLogitsWarper(k)] if k else []
            warpers += [TopPLogitsWarper(p)] if p < 1 else []
            ref, _ = _hf(x, *warpers)
        np.testing.assert_allclose(c.probs[i], ref[ids], atol=1e-12)
        h = torch.distributions.Categorical(probs=torch.from_numpy(ref)).entropy().item()
        assert c.entropy[i] == pytest.approx(h, abs=1e-12)
        assert c.perplexity[i] == pytest.approx(math.exp(h), rel=1e-12)
    assert c.entropy[0] == 0 and c.perplexity[0] == 1
    if k is None and p == 1.0:
        assert np.all(np.diff(c.entropy) > 0)  # hotter is always more uncertain
        assert c.perplexity[-1] < V
    if k:
        assert c.perplexity.max() <= k + 1e-9  # top-k caps the effective number of choices


def test_temperature_curves_agree_with_distribution_on_ties_and_masked_tokens():
    x = np.round(_logits(40), 0)  # many exact ties
    x[[3, 17]] = -np.inf  # masked tokens
    temps = S.default_temperatures(5.0, 26)
    for k, p in [(None, 1.0), (5, 1.0), (None, 0.5), (7, 0.7), (100, 0.999)]:
        c = S.temperature_curves(x, temps, top_n=6, k=k, p=p)
        for i, t in enumerate(temps):
            d = S.distribution(x, t, k, p)
            np.testing.assert_allclose(c.probs[i], d.final[c.ids], atol=1e-12)
            assert c.entropy[i] == pytest.approx(d.entropy, abs=1e-12)


# -- typed input -----------------------------------------------------------------------------------
def test_parse_typed_values():
    assert S.parse_temperature(" 0.7 ") == 0.7 and S.parse_temperature("0,5") == 0.5
    assert S.parse_temperature(0) == 0.0
    assert S.parse_top_k("") is None and S.parse_top_k("off") is None
    assert S.parse_top_k("40") == 40 and S.parse_top_k("3.0") == 3
    assert S.parse_top_p("") == 1.0 and S.parse_top_p("0.9") == 0.9 and S.parse_top_p(1) == 1.0


@pytest.mark.parametrize(
    "fn, text, words",
    [
        (S.parse_temperature, "-1", "≥ 0"),
        (S.parse_temperature, "warm", "must be a number"),
        (S.parse_temperature, "nan", "NaN"),
        (S.parse_temperature, "11", "at most 10"),
        (S.parse_top_k, "0", "at least 1"),
        (S.parse_top_k, "2.5", "whole number"),
        (S.parse_top_k, "many", "must be a number"),
        (S.parse_top_p, "0", "(0, 1]"),
        (S.parse_top_p, "1.5", "(0, 1]"),
        (S.parse_top_p, "-0.2", "(0, 1]"),
        (S.parse_top_p, "most", "must be a number"),
    ],
)
def test_parse_bad_values_explain(fn, text, words):
    with pytest.raises(ValueError) as err:
        fn(text)
    assert words in str(err.value)


def test_presets_are_valid_settings():
    assert S.PRESETS["Greedy"].temperature == 0
    for name, preset in S.PRESETS.items():
        S.check_temperature(preset.temperature)
        S.check_top_p(preset.top_p)
        if preset.top_k is not None:
            S.check_top_k(preset.top_k)
        assert len(preset.explain) > 40, name


# == the view, in-process: SamplingLesson wired to a real AnatomyState and engine ==============
# Every number the view shows is compared with torch / Hugging Face on the model's own logits.

import html  # noqa: E402

from dashboard.state import AnatomyState  # noqa: E402
from dashboard.views.plots import NORMAL  # noqa: E402
from dashboard.views.sampling import SamplingLesson  # noqa: E402
from models.bpe import readable  # noqa: E402
from models.runtime import STATIC_DIR, Engine  # noqa: E402


@pytest.fixture
def lesson():
    engine = Engine(STATIC_DIR)  # its own forward_calls counter (sessions are shared)
    state = AnatomyState(engine=engine, query=4)
    return SamplingLesson(state=state), state, engine


def _pipeline(x, t, k=None, p=1.0) -> np.ndarray:
    """Hugging Face's temperature -> top-k -> top-p on one row (T = 0: torch.argmax)."""
    if t == 0:
        return np.eye(x.size)[int(torch.argmax(torch.from_numpy(x)))]
    warpers = [TemperatureLogitsWarper(float(t))]
    warpers += [TopKLogitsWarper(k)] if k else []
    warpers += [TopPLogitsWarper(p)] if p < 1 else []
    return _hf(np.asarray(x, dtype=np.float64), *warpers)[0]


def _bars(view) -> dict:
    return dict(view.bars.source.data)


def test_view_bars_are_the_models_top_tokens(lesson):
    view, state, _ = lesson
    x = state.forward.logits[state.query].astype(np.float64)
    top = torch.topk(torch.from_numpy(x), view.top_n).indices.tolist()
    chosen = state.ids[state.query + 1]
    bars = _bars(view)
    assert bars["tid"][: view.top_n] == top
    if chosen not in top:  # the token the text continues with is always shown
        assert bars["tid"][-1] == chosen
    tokenizer = state.engine.tokenizer(state.model)
    assert bars["label"] == [readable(tokenizer.token_bytes(i)) for i in bars["tid"]]
    ref = _torch_softmax(x, state.temperature)
    np.testing.assert_allclose(bars["final"], ref[bars["tid"]], atol=1e-9)
    assert bars["chosen"] == [i == chosen for i in bars["tid"]]
    assert [c for c, ch in zip(bars["color"], bars["chosen"], strict=True) if ch] == [NORMAL.accent]
    assert view.curves.marker.data["x"] == [1.0] * 5
    assert "rank" in view.summary.object


def test_view_temperature_top_k_top_p_never_rerun_the_model(lesson):
    view, state, engine = lesson
    calls = engine.forward_calls
    x = state.forward.logits[state.query].astype(np.float64)
    before = _bars(view)["final"]
    view.slider.value = 0.4
    assert state.temperature == 0.4
    assert _bars(view)["final"] != before
    view.t_input.value = "2.5"
    view.k_input.value = "4"
    view.p_input.value = "0.8"
    view.presets.value = "Balanced"
    view.presets.value = "Creative"
    assert engine.forward_calls == calls  # the cached logits served every change
    assert (state.temperature, view.top_k, view.top_p) == (1.2, 50, 0.98)
    ref = _pipeline(x, 1.2, 50, 0.98)
    bars = _bars(view)
    np.testing.assert_allclose(bars["final"], ref[bars["tid"]], atol=1e-9)
    # the curve markers sit at the current temperature, on the right values
    marker = view.curves.marker.data
    assert marker["x"] == [1.2] * 5
    curve_ids = torch.topk(torch.from_numpy(x), 5).indices.numpy()
    np.testing.assert_allclose(marker["y"], ref[curve_ids], atol=1e-9)
    h = torch.distributions.Categorical(probs=torch.from_numpy(ref)).entropy().item()
    assert view.curves.h_marker.data["y"][0] == pytest.approx(h, abs=1e-9)
    assert view.curves.h_marker.data["x"] == [1.2]


def test_view_curves_follow_the_filters(lesson):
    view, state, _ = lesson
    x = state.forward.logits[state.query].astype(np.float64)
    view.k_input.value = "3"
    temps = view.curves.lines[0].data["x"]
    assert temps[0] == 0 and temps[-1] == 5.0
    for j in (0, 20, 100):
        ref = _pipeline(x, temps[j], 3)
        ids = torch.topk(torch.from_numpy(x), 5).indices.numpy()
        got = [view.curves.lines[i].data["y"][j] for i in range(5)]
        np.testing.assert_allclose(got, ref[ids], atol=1e-9)
        h = torch.distributions.Categorical(probs=torch.from_numpy(ref)).entropy().item()
        assert view.curves.h_line.data["y"][j] == pytest.approx(h, abs=1e-9)
    assert len(view.curves.h_plain.data["y"]) == 101  # dotted: temperature alone, for contrast
    assert max(np.exp(view.curves.h_line.data["y"])) <= 3 + 1e-9
    labels = [item.label["value"] for item in view.curves.legend.items]
    tokenizer = state.engine.tokenizer(state.model)
    assert labels == [readable(tokenizer.token_bytes(int(i))) for i in ids]


def test_view_entropy_legend_shows_the_dotted_curve_only_beside_a_cut(lesson):
    view, state, _ = lesson
    x = state.forward.logits[state.query].astype(np.float64)
    curves = view.curves
    assert curves.h_legend in curves.entropy_figure.center
    (solid, dotted) = curves.h_legend.items
    assert (solid.label["value"], dotted.label["value"]) == ("sampled from", "T alone (no cuts)")
    # each names its own curve: the solid one sampled from, the dotted one of T alone
    assert solid.renderers[0].data_source is curves.h_line
    assert solid.renderers[0].glyph.line_dash == []
    assert dotted.renderers[0].data_source is curves.h_plain
    assert dotted.renderers[0].glyph.line_dash != []
    temps = S.default_temperatures(5.0, 101)
    plain = [  # the entropy of temperature alone, from torch
        torch.distributions.Categorical(probs=torch.from_numpy(_torch_softmax(x, t))).entropy()
        for t in temps[1:]
    ]
    for k, p, cut in (("", "1", False), ("3", "1", True), ("", "1", False), ("", "0.8", True),
                      ("4", "0.5", True), ("", "1", False)):  # fmt: skip
        view.k_input.value, view.p_input.value = k, p
        assert solid.visible is True
        assert dotted.visible is cut, (k, p)
        if cut:
            np.testing.assert_allclose(curves.h_plain.data["y"][1:], plain, atol=1e-9)
        else:
            assert curves.h_plain.data["y"] == []


def test_view_a_line_marks_the_probability_after_temperature_on_every_bar(lesson):
    view, state, _ = lesson
    x = state.forward.logits[state.query].astype(np.float64)
    (mark,) = [r for r in view.bars.figure.renderers if r.name == "sampling-tempered-mark"]
    assert type(mark.glyph).__name__ == "Rect" and mark.data_source is view.bars.source
    assert mark.glyph.y == "tempered" and mark.glyph.height_units == "screen"
    assert mark.glyph.width == 0.8  # across the pale bar
    for t, k in ((1.0, ""), (1.6, "3"), (0.4, "")):
        view.t_input.value, view.k_input.value = f"{t:g}", k
        bars = _bars(view)
        np.testing.assert_allclose(bars["tempered"], _torch_softmax(x, t)[bars["tid"]], atol=1e-12)
        if not k:  # nothing cut: the solid bar hides the pale one, the line stays in sight
            np.testing.assert_allclose(bars["final"], bars["tempered"], atol=1e-12)


def test_view_markers_sit_on_the_curves_after_every_kind_of_change(lesson):
    view, state, _ = lesson

    def on_curves():
        j = int(round(state.temperature / 0.05))  # the grid is 0, 0.05, ..., 5
        lines = [view.curves.lines[i].data["y"][j] for i in range(5)]
        np.testing.assert_allclose(view.curves.marker.data["y"], lines, atol=1e-12)
        h = view.curves.h_line.data["y"][j]
        assert view.curves.h_marker.data["y"][0] == pytest.approx(h, abs=1e-12)

    view.slider.value = 0.75
    on_curves()
    state.query = 9
    on_curves()
    view.k_input.value = "4"
    on_curves()
    state.text = "Once upon a time"
    on_curves()
    view.sample_next()
    on_curves()


def test_view_top_k_greys_out_what_it_cuts(lesson):
    view, state, _ = lesson
    x = state.forward.logits[state.query].astype(np.float64)
    view.k_input.value = "3"
    bars = _bars(view)
    _, kept = _hf(x, TemperatureLogitsWarper(1.0), TopKLogitsWarper(3))
    assert bars["kept"] == [bool(kept[i]) for i in bars["tid"]]
    assert sum(bars["kept"]) == 3
    for keep, color, hatch, final, chosen in zip(
        bars["kept"], bars["color"], bars["hatch"], bars["final"], bars["chosen"], strict=True
    ):
        if not keep:
            assert hatch == "/" and final == 0.0
            assert color == (NORMAL.accent if chosen else NORMAL.masked)
    assert pytest.approx(sum(bars["final"][:3])) == 1.0  # renormalised
    assert "keep <b class='num'>3</b> of 1025" in view.summary.object


@pytest.mark.parametrize(
    "widget, text, words",
    [
        ("t_input", "-1", "≥ 0"),
        ("t_input", "hot", "must be a number"),
        ("t_input", "50", "at most 10"),
        ("k_input", "0", "at least 1"),
        ("k_input", "1.5", "whole number"),
        ("p_input", "0", "(0, 1]"),
        ("p_input", "1.2", "(0, 1]"),
        ("p_input", "lots", "must be a number"),
    ],
)
def test_view_bad_input_shows_a_message_and_keeps_the_last_valid_state(lesson, widget, text, words):
    view, state, engine = lesson
    view.t_input.value, view.k_input.value, view.p_input.value = "0.7", "10", "0.9"
    settings, bars = (state.temperature, view.top_k, view.top_p), _bars(view)
    assert settings == (0.7, 10, 0.9) and not view.message.visible
    getattr(view, widget).value = text
    assert view.message.visible and words in html.unescape(view.message.object)
    # the message names the value the plots still use
    in_use = {"t_input": "T = 0.7", "k_input": "top-k = 10", "p_input": "top-p = 0.9"}[widget]
    assert f"still using {in_use}." in html.unescape(view.message.object)
    assert (state.temperature, view.top_k, view.top_p) == settings
    assert _bars(view) == bars
    getattr(view, widget).value = {"t_input": "0.7", "k_input": "10", "p_input": "0.9"}[widget]
    assert not view.message.visible


def test_view_sampling_appends_the_token_and_reruns_the_model(lesson):
    view, state, engine = lesson
    view.seed_input.value = 11
    view.t_input.value = "1.5"
    view.k_input.value = "20"
    text, ids, calls = state.text, list(state.ids), engine.forward_calls
    last = state.forward.logits[len(ids) - 1].astype(np.float64)
    step = view.sample_next()
    tokenizer = state.engine.tokenizer(state.model)
    piece = tokenizer.token_bytes(step["token_id"]).decode("utf-8", errors="replace")
    assert state.text == text + piece
    assert engine.forward_calls == calls + 1
    ref = _pipeline(last, 1.5, 20)
    assert step["prob"] == pytest.approx(ref[step["token_id"]], rel=1e-9)
    ranked = torch.argsort(torch.from_numpy(last), descending=True).tolist()
    assert step["rank"] == ranked.index(step["token_id"]) + 1
    assert (step["temperature"], step["top_k"], step["top_p"]) == (1.5, 20, 1.0)
    # the draw is the lesson's seeded sampler: seed 11, step 0
    assert step["token_id"] == S.sample(ref, S.step_rng(11, 0)) or step["retokenised"] is not None
    # the bars now show the distribution it came from, with the sampled token highlighted
    assert state.query == len(ids) - 1
    if not step["retokenised"]:
        assert state.ids == ids + [step["token_id"]]
        bars = _bars(view)
        assert [t for t, c in zip(bars["tid"], bars["chosen"], strict=True) if c] == [
            step["token_id"]
        ]
    assert html.escape(step["token"]) in view.step_table.object


def test_view_generation_is_reproducible_per_seed(lesson):
    view, state, _ = lesson
    view.seed_input.value = 5
    view.n_input.value = 4
    view.t_input.value = "1.3"
    steps = view.generate()
    assert len(steps) == 4 and [s["step"] for s in view.steps] == [1, 2, 3, 4]
    other = SamplingLesson(state=AnatomyState(engine=Engine(STATIC_DIR), temperature=1.3), seed=5)
    for _ in range(4):  # one click at a time gives the same tokens as "generate 4"
        other.sample_next()
    assert other.state.text == state.text
    third = SamplingLesson(state=AnatomyState(engine=Engine(STATIC_DIR), temperature=1.3), seed=6)
    third.generate(4)
    assert third.state.text != state.text  # (with overwhelming probability at T = 1.3)


@pytest.mark.parametrize("model", ["anatomy-gpt", "anatomy-llama"])
def test_view_generation_reads_one_token_per_step_through_the_kv_cache(lesson, model):
    """Generate N: the text is read whole once for the second token, then every further
    token is one decode step; the text is redrawn once at the end. Greedy, so the tokens
    must be the full graph's argmax at every step, each checked against a fresh pass."""
    view, state, engine = lesson
    state.model = model
    view.presets.value = "Greedy"
    text, runs, steps = state.text, engine.forward_calls, engine.decode_calls
    records = view.generate(8)
    assert len(records) == 8
    # a step after one whose text re-tokenised reads the text whole (the first always does)
    fresh = [r["retokenised"] for r in records[1:-1]].count(True)
    assert engine.decode_calls - steps == 7 - 1 - fresh
    assert engine.forward_calls - runs == 1 + 1 + fresh  # the second token's, the final text's
    tokenizer = engine.tokenizer(model)
    ids = tokenizer.encode(text)
    for r in records:
        check = Engine(STATIC_DIR).run(model, ids).logits[-1]
        assert r["token_id"] == int(np.argmax(check))
        ids = tokenizer.encode(tokenizer.decode(ids) + tokenizer.decode([r["token_id"]]))
    assert state.text == tokenizer.decode(ids) and view.steps == records


def test_view_greedy_generation_picks_the_argmax(lesson):
    view, state, _ = lesson
    view.presets.value = "Greedy"
    for _ in range(3):
        last = state.forward.logits[len(state.ids) - 1]
        step = view.sample_next()
        assert step["token_id"] == int(torch.argmax(torch.from_numpy(last.astype(np.float64))))
        assert step["rank"] == 1 and step["prob"] == 1.0


def test_view_editing_the_text_clears_the_steps(lesson):
    view, state, _ = lesson
    view.sample_next()
    assert len(view.steps) == 1
    state.text = "A new sentence."
    assert view.steps == [] and "No tokens sampled yet" in view.step_table.object


def test_view_refuses_to_generate_past_the_block_size(lesson):
    view, state, engine = lesson
    state.text = "word " * 400
    block = state.config["block_size"]
    assert len(state.ids) == block
    text, calls = state.text, engine.forward_calls
    assert view.sample_next() is None and view.generate(3) == []
    assert state.text == text and engine.forward_calls == calls
    assert view.message.visible and f"context of {block} tokens" in view.message.object


def test_view_escapes_token_text(lesson):
    view, state, _ = lesson
    state.text = "<b>bold</b><script>alert(1)</script>"
    q = next(i for i, tok in enumerate(state.tokens[1:]) if "<" in tok)
    state.query = q  # the text continues with a token holding "<"
    label = state.tokens[q + 1]
    assert f"<b class='tok'>{html.escape(label)}</b>" in view.summary.object
    for raw in ("<b>bold", "<script", "</script"):
        assert raw not in view.summary.object
    view.steps = [
        dict(
            step=1,
            token_id=0,
            token="<img src=x onerror=alert(1)>",
            prob=0.5,
            rank=2,
            temperature=1.0,
            top_k=None,
            top_p=1.0,
            retokenised=False,
        )
    ]
    assert "<img" not in view.step_table.object
    assert "&lt;img src=x onerror=alert(1)&gt;" in view.step_table.object


def test_view_presets_set_all_three_and_explain(lesson):
    view, state, _ = lesson
    for name, preset in S.PRESETS.items():
        view.presets.value = name
        assert (state.temperature, view.top_k, view.top_p) == (
            preset.temperature,
            preset.top_k,
            preset.top_p,
        )
        assert view.k_input.value == ("" if preset.top_k is None else str(preset.top_k))
        assert float(view.t_input.value) == preset.temperature
        assert html.escape(preset.explain) in view.preset_text.object
    view.slider.value = 2.0
    assert view.presets.value == "Custom" and "Custom" in view.preset_text.object


def test_view_temperature_above_the_slider(lesson):
    view, state, _ = lesson
    view.t_input.value = "7"
    assert state.temperature == 7.0 and view.slider.value == 5.0  # the slider stops at 5
    assert "past the slider" in view.summary.object and view.curves.marker.data["x"][0] == 5.0
    assert not view.message.visible
    x = state.forward.logits[state.query].astype(np.float64)
    bars = _bars(view)
    np.testing.assert_allclose(bars["final"], _torch_softmax(x, 7.0)[bars["tid"]], atol=1e-9)


def test_view_top_k_and_top_p_are_shared_state(lesson):
    view, state, _ = lesson
    # typed into the boxes: the shared state (and so the URL) follows
    view.k_input.value, view.p_input.value = "6", "0.8"
    assert (state.top_k, state.top_p) == (6, 0.8)
    # from the state (a link, another view): the boxes and the bars follow
    state.param.update(top_k=3, top_p=1.0)
    assert (view.k_input.value, view.p_input.value) == ("3", "1")
    assert int((np.asarray(_bars(view)["final"]) > 0).sum()) == 3
    # a session opened from a link with the cuts set starts with them
    other = SamplingLesson(state=AnatomyState(engine=state.engine, query=4, top_k=2, top_p=0.5))
    assert (other.top_k, other.top_p, other.k_input.value) == (2, 0.5, "2")
    assert other.presets.value == "Custom"


# -- generation, the pure functions the view wires to its buttons ----------------------------------
def _tiktoken(engine):
    import json

    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    spec = engine.entry(engine.default_model)["tokenizer"]
    meta = json.loads((STATIC_DIR / f"{spec['name']}.json").read_text())
    ranks = load_tiktoken_bpe(str(STATIC_DIR / f"{spec['name']}.tiktoken"))
    return tiktoken.Encoding("anatomy", pat_str=meta["pattern"], mergeable_ranks=ranks,
                             special_tokens={})  # fmt: skip


def test_next_token_draws_with_the_seeded_sampler_and_says_what_to_append():
    engine = Engine(STATIC_DIR)
    model = engine.default_model
    tokenizer, enc = engine.tokenizer(model), _tiktoken(engine)
    ids = enc.encode("The file is")
    logits = engine.run(model, ids).logits
    for seed, index, t, k, p in [(3, 0, 1.0, None, 1.0), (3, 1, 1.4, 20, 0.95), (9, 4, 0.0, 5, 1)]:
        g = S.next_token(logits, len(ids), t, k, p, seed, index, tokenizer)
        # an independent draw: HF's warpers on the last row, then the same uniform number
        # inverted through torch's cumulative sum
        ref = _pipeline(logits[len(ids) - 1].astype(np.float64), t, k, p)
        u = np.random.default_rng([seed, index]).random()
        cdf = torch.cumsum(torch.from_numpy(ref), 0)
        want = int(torch.searchsorted(cdf, torch.tensor(u * float(cdf[-1])), right=True))
        assert g.token_id == want and g.step == index + 1
        assert g.prob == pytest.approx(ref[want], rel=1e-9)
        ranked = torch.argsort(torch.from_numpy(logits[len(ids) - 1].astype(np.float64)),
                               descending=True, stable=True).tolist()  # fmt: skip
        assert g.rank == ranked.index(want) + 1
        raw = enc.decode_single_token_bytes(want)
        assert g.piece == raw.decode("utf-8", errors="replace") and g.token == readable(raw)
        assert (g.temperature, g.top_k, g.top_p) == (t, k, p)
        record = S.step_record(g, False)
        assert record["token_id"] == want and record["retokenised"] is False
        assert record["step"] == index + 1 and record["prob"] == g.prob


def test_retokenised_compares_with_how_tiktoken_reads_the_longer_text():
    enc = _tiktoken(Engine(STATIC_DIR))
    before = enc.encode("The fi")
    le = enc.encode("le")[0] if len(enc.encode("le")) == 1 else enc.encode("l")[0]
    after = enc.encode("The fi" + enc.decode([le]))
    assert S.retokenised(before, le, after) == (after != before + [le])
    dot = enc.encode(".")[0]
    after_dot = enc.encode("The fi.")
    assert after_dot == before + [dot]  # nothing merges across the join here
    assert S.retokenised(before, dot, after_dot) is False
    assert S.retokenised(before, dot, before) is True


def test_context_full_refuses_at_the_block_size():
    assert S.context_full(10, 10, 128) == ""
    assert S.context_full(127, 127, 128) == ""
    assert "context of 128 tokens" in S.context_full(128, 128, 128)
    assert "context of 128 tokens" in S.context_full(130, 128, 128)  # read truncated
    assert S.context_full(12, 11, 128) != ""  # fewer rows of logits than tokens


def test_the_summary_and_preset_words_are_one_template_filled():
    from dashboard.views import sampling as views

    x = _logits()
    d = S.distribution(x, 0.0, 3, 1.0)
    vocab = [f"<t{i}>" for i in range(x.size)]
    chosen = int(d.order[5])  # cut away by top-k 3
    text = views.summary_html(d, vocab, chosen)
    h = torch.distributions.Categorical(probs=torch.from_numpy(d.final)).entropy().item()
    assert f"Entropy <b class='num'>{h:.3f}</b>" in text and "T = 0 is greedy" in text
    assert "keep <b class='num'>3</b> of 50 tokens" in text and "can never pick it" in text
    assert html.escape(vocab[chosen]) in text and vocab[chosen] not in text
    assert "{" not in text  # every placeholder filled
    end = views.summary_html(d, vocab, None, live=False)
    assert "live dashboard" in end and "Sample next token" not in end
    assert "Sample next token" in views.summary_html(d, vocab, None)
    assert views.fill("{a} {b} {a}", {"a": "{b}"}) == "{b} {b} {b}"  # one pass: text put in stays
    assert views.preset_html(0.7, None, 0.9).startswith("<p><b>Balanced</b>")
    assert views.preset_html(2.0, 4, 0.5) == (
        "<p>Custom: T = 2, top-k 4, top-p 0.5. Pick a preset to see a common setting explained.</p>"
    )
