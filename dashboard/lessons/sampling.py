"""Temperature, top-k, top-p and sampling: how a next-token distribution becomes a token.

Numpy in, numpy out; no Panel, no torch. Every function takes one vocabulary row (shape
``(V,)``; :func:`softmax` and :func:`entropy` also accept ``(..., V)``) and works in float64.

The pipeline, in the order Hugging Face ``transformers`` applies its logits warpers
(``GenerationMixin._get_logits_processor``: ``TemperatureLogitsWarper``, then
``TopKLogitsWarper``, then ``TopPLogitsWarper``)::

    logits ──softmax(·/T)──► probs ──top_k──► renormalised ──top_p──► renormalised ──sample──► id

Hugging Face filters logits (setting cut tokens to -inf) and takes the softmax afterwards;
here the filters act on probabilities and renormalise, which is the same distribution.

Rules at the edges (each one tested):

- temperature 0 is greedy decoding: a one-hot on the argmax; tied maxima go to the lowest
  token id (``np.argmax``, and ``torch.argmax``, return the first maximum). Any temperature
  > 0, however small, shares the probability equally between tied maxima instead;
- huge logits (±1e30, ±1e308) never overflow: the maximum is subtracted before dividing by T;
  -inf logits (masked tokens) get probability 0; NaN or +inf logits raise ``ValueError``;
- ``top_k``: keeps every token whose probability is at least the k-th largest, so tokens tied
  with the k-th are all kept (exactly Hugging Face's ``TopKLogitsWarper``: ``scores <
  topk(scores, k).values[-1]`` are removed); k larger than the vocabulary keeps everything.
  In :func:`distribution` the cut is made on the logits, as Hugging Face does, so that
  probabilities that underflow to 0 at a tiny T do not tie at the cut;
- ``top_p`` (nucleus): walks the tokens from the most to the least likely and keeps the
  shortest run whose mass reaches p (mass ≥ p), plus any token tied with the last one kept;
  the most likely token is always kept, so p below its probability keeps just it (and its
  ties), and p = 1 keeps everything. Without ties this is Hugging Face's ``TopPLogitsWarper``.
  Keeping ties at both cuts makes the result independent of the order of the vocabulary.
  (Hugging Face sorts with ``torch.sort``, so which of several tied tokens it keeps at the
  cut depends on the sort, not on the probabilities.)
- ``sample`` inverts the cumulative distribution with one ``rng.random()`` per draw; a
  token of probability 0 is never drawn. Generation step i uses ``step_rng(seed, i)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.bpe import readable

TEMPERATURE_MAX = 10.0  # the state's bound; the slider goes to 5


# -- validation: each returns the value, or raises ValueError with a message for the page --------
def check_temperature(temperature) -> float:
    """``temperature`` as a float ≥ 0, or ``ValueError`` saying what is wrong."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise ValueError(f"temperature must be a number, not {temperature!r}")
    t = float(temperature)
    if math.isnan(t):
        raise ValueError("temperature must be a number ≥ 0, not NaN")
    if t < 0:
        raise ValueError(f"temperature must be ≥ 0 (0 means greedy), not {t:g}")
    if math.isinf(t):
        raise ValueError("temperature must be finite")
    return t


def check_top_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"top-k must be a whole number ≥ 1, not {k!r}")
    if k < 1:
        raise ValueError(f"top-k must be at least 1 (it keeps the k most likely tokens), not {k}")
    return int(k)


def check_top_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or math.isnan(float(p)):
        raise ValueError(f"top-p must be a number in (0, 1], not {p!r}")
    p = float(p)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top-p must lie in (0, 1] (1 keeps every token), not {p:g}")
    return p


def _number(text, what: str) -> float:
    if isinstance(text, numbers.Real) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip().replace(",", ".")
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"{what} must be a number, not {str(text)[:40]!r}") from None


def parse_temperature(text, maximum: float = TEMPERATURE_MAX) -> float:
    """A temperature typed by a person ("0.7", "0,7", 0.7) → float in [0, maximum], or
    ``ValueError`` with a message fit for the page."""
    t = check_temperature(_number(text, "temperature"))
    if t > maximum:
        raise ValueError(f"temperature must be at most {maximum:g}, not {t:g}")
    return t


def parse_top_k(text) -> int | None:
    """Typed top-k → int ≥ 1, or None for "off" (blank, "off", "none", "all")."""
    if text is None or str(text).strip().lower() in ("", "off", "none", "all"):
        return None
    value = _number(text, "top-k")
    if not value.is_integer():
        raise ValueError(f"top-k must be a whole number ≥ 1, not {str(text).strip()[:40]!r}")
    return check_top_k(int(value))


def parse_top_p(text) -> float:
    """Typed top-p → float in (0, 1]; blank or "off" means 1 (keep every token)."""
    if text is None or str(text).strip().lower() in ("", "off", "none"):
        return 1.0
    return check_top_p(_number(text, "top-p"))


def _row(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{what} must be one non-empty row of shape (vocab,), not {a.shape}")
    return a


def _probs(probs) -> np.ndarray:
    p = _row(probs, "probs")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("probs must be finite, ≥ 0 and not all 0")
    return p


# -- the pipeline ----------------------------------------------------------------------------------
def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) over the last axis; T = 0 gives the one-hot argmax (lowest id on
    ties). Never overflows; -inf logits get 0; NaN/+inf logits or a bad T raise ValueError."""
    t = check_temperature(temperature)
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError("logits must have at least one entry on the last axis")
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError("logits must be finite or -inf (NaN and +inf have no probability)")
    m = x.max(axis=-1, keepdims=True)
    if np.isneginf(m).any():
        raise ValueError("every logit is -inf: no token is possible")
    if t == 0.0:
        out = np.zeros_like(x)
        np.put_along_axis(out, np.argmax(x, axis=-1)[..., None], 1.0, axis=-1)
        return out
    with np.errstate(over="ignore", under="ignore"):
        # x - m ≤ 0 (or -inf, e.g. -1e308 - 1e308), so exp never overflows; dividing the
        # difference by a tiny T can only push it further towards -inf, i.e. exp → 0
        z = (x - m) / t
        e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def rank_order(values) -> np.ndarray:
    """Token ids from the most to the least likely; equal values in increasing id order."""
    v = _row(values, "values")
    return np.lexsort((np.arange(v.size), -v))


def _at_least_kth(values: np.ndarray, k: int) -> np.ndarray:
    k = check_top_k(k)
    if k >= values.size:
        return np.ones(values.size, dtype=bool)
    kth = np.partition(values, values.size - k)[values.size - k]  # the k-th largest value
    return values >= kth


def top_k_mask(probs, k: int) -> np.ndarray:
    """Tokens kept by top-k: probability ≥ the k-th largest (ties at the cut all kept)."""
    return _at_least_kth(_probs(probs), k)


def top_p_mask(probs, p: float) -> np.ndarray:
    """Tokens kept by nucleus (top-p) filtering; see the module docstring for the rule."""
    q = _probs(probs)
    p = check_top_p(p)
    if p >= 1.0:
        return np.ones(q.size, dtype=bool)
    q = q / q.sum()
    return q >= _nucleus_floor(q[rank_order(q)], p)


def _nucleus_floor(descending: np.ndarray, p: float) -> float:
    """The smallest probability top-p keeps, given the probabilities sorted high to low."""
    mass = np.cumsum(descending)
    # first position whose running mass reaches p; if rounding keeps it below p, keep all
    n = min(int(np.searchsorted(mass, p, side="left")) + 1, descending.size)
    return descending[n - 1]


def _renormalise(p: np.ndarray, keep: np.ndarray) -> np.ndarray:
    out = np.where(keep, p, 0.0)
    return out / out.sum()


def top_k(probs, k: int) -> np.ndarray:
    """``probs`` restricted to the top-k tokens and renormalised to sum to 1."""
    p = _probs(probs)
    return _renormalise(p, top_k_mask(p, k))


def top_p(probs, p: float) -> np.ndarray:
    """``probs`` restricted to the nucleus of mass ``p`` and renormalised to sum to 1."""
    q = _probs(probs)
    return _renormalise(q, top_p_mask(q, p))


def entropy(probs) -> np.ndarray | float:
    """Shannon entropy in nats over the last axis (0 · log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be finite and ≥ 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    h = np.maximum(terms.sum(axis=-1), 0.0)
    return float(h) if np.ndim(h) == 0 else h


def perplexity(probs) -> np.ndarray | float:
    """e^entropy: the effective number of equally likely choices (1 for a certain token,
    V for the uniform distribution over V tokens)."""
    h = entropy(probs)
    return float(np.exp(h)) if np.ndim(h) == 0 else np.exp(h)


def sample(probs, rng: np.random.Generator, size: int | None = None):
    """Draw token ids from ``probs`` (normalised here) by inverting the cumulative
    distribution with ``rng.random()``. A token of probability 0 is never drawn. Returns an
    int, or an int array of ``size`` draws."""
    p = _probs(probs)
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (np.random.default_rng(seed))")
    cdf = np.cumsum(p / p.sum())
    u = rng.random(size)
    idx = np.searchsorted(cdf, u * cdf[-1], side="right")
    # u·total can round up to total: fall back to the last token with any probability
    last = int(np.flatnonzero(p > 0)[-1])
    idx = np.minimum(idx, last)
    return int(idx) if size is None else idx.astype(np.int64)


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator for generation step ``step`` under ``seed``: the same seed, text and
    settings always give the same tokens, whether drawn one click at a time or N at once."""
    return np.random.default_rng([int(seed), int(step)])


# -- what the lesson shows -------------------------------------------------------------------------
@dataclass(frozen=True)
class Distribution:
    """One position's next-token distribution through the whole pipeline."""

    temperature: float
    top_k: int | None
    top_p: float
    tempered: np.ndarray  # softmax(logits / T), before any cut
    after_k: np.ndarray  # after top-k, renormalised
    final: np.ndarray  # after top-k then top-p, renormalised: what sample() draws from
    kept: np.ndarray  # bool: tokens that survive both cuts
    order: np.ndarray  # token ids by decreasing logit (ties: lower id first)
    rank: np.ndarray  # rank[id] = 1 for the most likely token

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())

    @property
    def entropy(self) -> float:
        return entropy(self.final)

    @property
    def perplexity(self) -> float:
        return perplexity(self.final)


def distribution(
    logits, temperature: float = 1.0, k: int | None = None, p: float = 1.0
) -> Distribution:
    """Temperature → top-k → top-p on one row of logits (the Hugging Face order).

    Top-k is decided on the logits, as Hugging Face does: for T > 0 dividing by T keeps their
    order, and unlike probabilities that underflow to 0 they never tie by accident (at T = 0
    or a tiny T, k tokens stay "kept" even though all but the top have probability 0)."""
    x = _row(logits, "logits")
    tempered = softmax(x, temperature)
    k_keep = np.ones(x.size, dtype=bool) if k is None else _at_least_kth(x, k)
    after_k = _renormalise(tempered, k_keep)
    p_keep = top_p_mask(after_k, p)
    final = _renormalise(after_k, p_keep)
    order = rank_order(x)
    rank = np.empty(x.size, dtype=np.int64)
    rank[order] = np.arange(1, x.size + 1)
    return Distribution(
        temperature=check_temperature(temperature),
        top_k=None if k is None else check_top_k(k),
        top_p=check_top_p(p),
        tempered=tempered,
        after_k=after_k,
        final=final,
        kept=k_keep & p_keep,
        order=order,
        rank=rank,
    )


@dataclass(frozen=True)
class Curves:
    temperatures: np.ndarray  # (n_T,)
    ids: np.ndarray  # (top_n,) token ids, most likely first
    probs: np.ndarray  # (n_T, top_n) sampling probability of each of those tokens
    entropy: np.ndarray  # (n_T,) nats, of the sampling distribution
    perplexity: np.ndarray  # (n_T,) effective number of choices, e^entropy


def temperature_curves(
    logits,
    temperatures: Sequence[float],
    top_n: int = 5,
    k: int | None = None,
    p: float = 1.0,
) -> Curves:
    """For each temperature: the probabilities of the ``top_n`` most likely tokens, the
    entropy and the effective number of choices of the distribution sampled from (after
    top-k and top-p, when given)."""
    x = _row(logits, "logits")
    temps = np.asarray([check_temperature(t) for t in temperatures], dtype=np.float64)
    p = check_top_p(p)
    top_n = max(1, int(top_n))
    # Sort once: dividing by T > 0 keeps the order, so every row below stays sorted high to
    # low and needs no sort of its own (the same pipeline as distribution(), sorted).
    order = rank_order(x)
    xs = x[order]
    k_keep = np.ones(x.size, dtype=bool) if k is None else _at_least_kth(xs, k)
    probs = np.empty((temps.size, min(top_n, x.size)))
    h = np.empty(temps.size)
    for i, t in enumerate(temps):
        q = _renormalise(softmax(xs, t), k_keep)
        if p < 1.0:
            q = _renormalise(q, q >= _nucleus_floor(q, p))
        probs[i] = q[:top_n]
        h[i] = entropy(q)
    return Curves(temps, order[:top_n], probs, h, np.exp(h))


def default_temperatures(maximum: float = 5.0, n: int = 101) -> np.ndarray:
    """The temperature grid of the curves: 0, 0.05, …, 5."""
    return np.linspace(0.0, maximum, n)


@dataclass(frozen=True)
class Step:
    """One generated token: what was drawn, with which probability and rank."""

    token_id: int
    prob: float  # probability in the distribution it was drawn from
    rank: int  # 1 = the model's most likely token


def sample_step(
    logits, temperature: float, k: int | None, p: float, rng: np.random.Generator
) -> Step:
    """Draw the next token from one row of logits through the whole pipeline."""
    d = distribution(logits, temperature, k, p)
    tok = sample(d.final, rng)
    return Step(tok, float(d.final[tok]), int(d.rank[tok]))


@dataclass(frozen=True)
class Preset:
    temperature: float
    top_k: int | None
    top_p: float
    explain: str


PRESETS: dict[str, Preset] = {
    "Greedy": Preset(
        0.0,
        None,
        1.0,
        "Temperature 0: always the single most likely token. Repeatable, the same text every "
        "time, and prone to loops (“the cat the cat …”).",
    ),
    "Balanced": Preset(
        0.7,
        None,
        0.9,
        "Temperature 0.7 sharpens the distribution, then top-p 0.9 keeps the likeliest "
        "tokens until they hold 90% of the mass, dropping at most the last 10%: varied but "
        "sensible text; a common chat setting.",
    ),
    "Creative": Preset(
        1.2,
        50,
        0.98,
        "Temperature 1.2 flattens the distribution so rarer tokens get a real chance; top-k 50 "
        "and top-p 0.98 still cut the very unlikely ones. Surprising, sometimes nonsense.",
    ),
    "Pure sampling": Preset(
        1.0,
        None,
        1.0,
        "Temperature 1, no cuts: exactly the model's own distribution. Every token can appear, "
        "even one in ten thousand.",
    ),
}


# -- generation: one token after the end of the text ---------------------------------------------
def context_full(n_ids: int, n_rows: int, block_size: int) -> str:
    """Why no token can be appended to a text of ``n_ids`` tokens (whose forward pass has
    ``n_rows`` rows of logits, fewer when the reading truncated it), or "" when one can."""
    if n_ids >= block_size or n_rows < n_ids:
        return (
            f"The text already fills the model's context of {block_size} tokens: shorten it "
            "to generate more."
        )
    return ""


@dataclass(frozen=True)
class Generated:
    """One token sampled after the end of a text, and what to append to the text."""

    step: int  # 1 for the first token sampled after the text was typed
    token_id: int
    token: str  # readable token text (for the page)
    piece: str  # the token's bytes decoded (invalid UTF-8 replaced): what the text grows by
    prob: float  # its probability in the distribution it was drawn from
    rank: int  # 1 = the model's most likely token
    temperature: float
    top_k: int | None
    top_p: float


def next_token(
    logits,
    n_ids: int,
    temperature: float,
    k: int | None,
    p: float,
    seed: int,
    index: int,
    tokenizer,
) -> Generated:
    """Sample the token after the last of ``n_ids`` tokens (row ``n_ids - 1`` of ``logits``,
    shape ``(T, V)``) as generation step ``index`` (0-based) under ``seed``; ``tokenizer``
    (a ``models.bpe.Tokenizer``) gives its bytes."""
    step = sample_step(logits[n_ids - 1], temperature, k, p, step_rng(seed, index))
    raw = tokenizer.token_bytes(step.token_id)
    return Generated(
        step=index + 1,
        token_id=step.token_id,
        token=readable(raw),
        piece=raw.decode("utf-8", errors="replace"),
        prob=step.prob,
        rank=step.rank,
        temperature=check_temperature(temperature),
        top_k=None if k is None else check_top_k(k),
        top_p=check_top_p(p),
    )


def retokenised(before: Sequence[int], token_id: int, after: Sequence[int]) -> bool:
    """True when the longer text does not read as the old tokens plus the sampled one (BPE
    merges across the join, or invalid UTF-8 was replaced)."""
    return list(after) != [*before, int(token_id)]


def step_record(g: Generated, retokenised: bool) -> dict:
    """The row of the lesson's list of sampled tokens for ``g``."""
    return dict(
        step=g.step,
        token_id=g.token_id,
        token=g.token,
        prob=g.prob,
        rank=g.rank,
        temperature=g.temperature,
        top_k=g.top_k,
        top_p=g.top_p,
        retokenised=bool(retokenised),
    )
