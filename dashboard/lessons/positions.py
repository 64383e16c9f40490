"""Four ways to tell attention where a token is: sinusoidal, learned, rotary (RoPE) and ALiBi.

Numpy in, numpy out. Attention by itself is blind to order: permute the tokens and every
score moves with them. Each scheme adds position somewhere else:

- **sinusoidal** (Vaswani et al., 2017): a fixed vector per position, added to the token's
  embedding; pair i of dimensions is a sine and a cosine of wavelength 2π·base^(2i/d);
- **learned** (GPT-2): a trained vector per position, one row of ``wpe`` each, so a model has
  nothing for a position past its last row;
- **RoPE** (Su et al., 2021): each query and key is rotated, pair by pair, by its position
  times the pair's frequency, so q·k depends on the two positions only through their
  difference;
- **ALiBi** (Press et al., 2022): no vector at all; each head adds −slope·(distance) to its
  scores.

RoPE's angles are always computed in float64; the rotation then runs in the input's
precision (float32 in, float32 out, as the model does it; float64 in, float64 out, so the
relative property holds to float64 rounding). Everything else returns float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dashboard.lessons.attention import mask_matrix, softmax

Layout = Literal["half", "interleaved"]
LAYOUTS: tuple[str, ...] = ("half", "interleaved")
SINUSOIDAL_BASE = 10000.0  # "Attention Is All You Need", section 3.5
# RoPE bases in use: the RoFormer paper and LLaMA 1 and 2; LLaMA 3; Code Llama (longer context)
ROPE_BASES = {"10,000": 10000.0, "500,000": 500000.0, "1,000,000": 1000000.0}


# ---------------------------------------------------------------------------------------------
# checks shared by every function: a wrong number gets a sentence, not a numpy traceback


def _positive_int(value, name: str) -> int:
    try:
        whole = not isinstance(value, bool) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or int(value) <= 0:
        raise ValueError(f"{name} must be a positive whole number, not {value!r}")
    return int(value)


def _even_width(value, name: str, why: str) -> int:
    d = _positive_int(value, name)
    if d % 2:
        raise ValueError(f"{name} must be even ({why}), not {d}")
    return d


def _positive_base(base) -> float:
    b = float(base)
    if not math.isfinite(b) or b <= 0:
        raise ValueError(f"the base must be a positive number, not {base!r}")
    return b


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown RoPE layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return layout


# ---------------------------------------------------------------------------------------------
# sinusoidal


def wavelengths(d_model: int, base: float = SINUSOIDAL_BASE) -> np.ndarray:
    """The wavelength, in positions, of each pair i < d/2: 2π·base^(2i/d).

    The same numbers serve both fixed schemes: pair i of the sinusoidal table repeats every
    2π·base^(2i/d) positions, and RoPE's pair i turns once in 2π/θ_i, the same length. The
    fastest pair repeats every 2π ≈ 6.3 positions; the slowest every 2π·base^((d−2)/d)."""
    d = _even_width(d_model, "the width", "the dimensions go in pairs")
    base = _positive_base(base)
    return 2 * np.pi * base ** (np.arange(d // 2) * 2.0 / d)


def sinusoidal(n_positions: int, d_model: int, base: float = SINUSOIDAL_BASE) -> np.ndarray:
    """The (n_positions, d_model) sinusoidal table: PE[p, 2i] = sin(p / base^(2i/d)) and
    PE[p, 2i+1] = cos(p / base^(2i/d)). Row p is added to the embedding of the token at p."""
    n = _positive_int(n_positions, "the number of positions")
    d = _even_width(d_model, "the width", "each sine has its cosine beside it")
    base = _positive_base(base)
    angles = np.arange(n, dtype=np.float64)[:, None] / base ** (np.arange(d // 2) * 2.0 / d)
    table = np.empty((n, d), dtype=np.float64)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles)
    return table


def dot_by_distance(table: np.ndarray, start: int = 0) -> np.ndarray:
    """table[start] · table[start + Δ] for Δ = 0, 1, …, len(table) − 1 − start (index = Δ).

    For the sinusoidal table this is Σ_i cos(Δ/base^(2i/d)) whatever ``start`` is, since
    sin a·sin b + cos a·cos b = cos(a − b): the dot product knows the distance, not where the
    pair sits, and falls (not monotonically) as the distance grows. A learned table has no
    such promise; calling this with several starts shows it."""
    table = _table(table)
    start = int(start)
    if not 0 <= start < len(table):
        raise ValueError(f"start must be a row of the table, 0 to {len(table) - 1}, not {start}")
    return table[start:] @ table[start]


# ---------------------------------------------------------------------------------------------
# learned


def _table(table) -> np.ndarray:
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or 0 in table.shape:
        raise ValueError(f"a table of positions × dimensions, not shape {table.shape}")
    return table


def learned_rows(table: np.ndarray, positions) -> np.ndarray:
    """Rows ``positions`` of a learned position table (``wpe``), or a ValueError naming the
    limit: a learned model has no vector past its last row, so it cannot be asked."""
    table = np.asarray(table)
    positions = np.asarray(positions)
    if positions.size == 0:  # np.asarray([]) is float; an empty selection is still rows
        positions = positions.astype(np.int64)
    if not np.issubdtype(positions.dtype, np.integer):
        raise ValueError("positions are whole numbers (row indices of the table)")
    if positions.size and positions.min() < 0:
        raise ValueError(f"position {int(positions.min())} is negative; positions start at 0")
    if positions.size and positions.max() >= len(table):
        raise ValueError(
            f"position {int(positions.max())} is past the learned table: it has {len(table)} "
            f"rows (positions 0 to {len(table) - 1}), and nothing was learned for later ones"
        )
    return table[positions]


def cosine_similarity_matrix(table: np.ndarray) -> np.ndarray:
    """(N, N) cosine similarity of every pair of rows: rᵢ·rⱼ / (‖rᵢ‖‖rⱼ‖). A zero row has no
    direction, so it is refused rather than given a made-up 0."""
    table = _table(table)
    norms = np.linalg.norm(table, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"row {int(np.argmin(norms))} is all zeros: it has no direction")
    unit = table / norms[:, None]
    return unit @ unit.T


@dataclass(frozen=True)
class PCA2D:
    """The table's two principal components and each row's place on them."""

    coords: np.ndarray  # (N, 2): each row, centred, projected on the two components
    components: np.ndarray  # (2, D): unit directions, largest variance first
    explained_variance: np.ndarray  # (2,): variance along each (divided by N − 1, as np.cov)
    explained_ratio: np.ndarray  # (2,): the share of the table's total variance


def pca_2d(table: np.ndarray) -> PCA2D:
    """The rows of ``table`` (N, D) projected on their two directions of largest variance.

    Computed by SVD of the centred table. An SVD's singular vectors are defined up to sign,
    so the sign is fixed here to make the picture the same on every machine: each
    component's largest-magnitude entry is positive (the first such entry on a tie)."""
    table = _table(table)
    if min(table.shape) < 2:
        raise ValueError(f"a 2-D projection needs at least 2 rows and 2 columns, not {table.shape}")
    centred = table - table.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2].copy()
    biggest = np.argmax(np.abs(components), axis=1)
    components *= np.sign(components[np.arange(2), biggest])[:, None]
    variance = s**2 / (len(table) - 1)
    total = variance.sum()
    ratio = variance[:2] / total if total > 0 else np.zeros(2)
    return PCA2D(centred @ components.T, components, variance[:2], ratio)


# ---------------------------------------------------------------------------------------------
# RoPE


def rope_frequencies(d_head: int, base: float = 10000.0) -> np.ndarray:
    """θ_i = base^(−2i/d) for each pair i < d/2, in radians per position: pair 0 turns one
    radian a position, the last pair turns slowest."""
    d = _even_width(d_head, "RoPE's head size", "it rotates pairs of dimensions")
    base = _positive_base(base)
    return base ** (-np.arange(d // 2) * 2.0 / d)


def rope_turns(n_positions: int, d_head: int, base: float = 10000.0) -> np.ndarray:
    """How many full turns each pair makes across ``n_positions`` positions, n·θ_i/2π. A
    pair with fewer than one turn never repeats an angle inside the block: it is what a
    larger base (500,000, 1,000,000) buys for long contexts."""
    n = _positive_int(n_positions, "the number of positions")
    return n * rope_frequencies(d_head, base) / (2 * np.pi)


def rope_angles(positions, d_head: int, base: float = 10000.0) -> np.ndarray:
    """(…, T, d/2) float64 angles position × θ_i, the rotation of each pair at each position."""
    positions = np.asarray(positions, dtype=np.float64)
    return positions[..., None] * rope_frequencies(d_head, base)


def apply_rope(x, positions, base: float = 10000.0, layout: Layout = "half") -> np.ndarray:
    """Rotate every pair of ``x`` (…, T, d) by position × θ_i.

    ``layout`` says which dimensions form a pair:
    - ``"half"``: i and i + d/2 (Hugging Face's Llama, and our model's ``rotate``);
    - ``"interleaved"``: 2i and 2i + 1 (Meta's original code, the pair read as one complex
      number).
    ``positions`` (T,) or broadcastable to x's leading shape; any numbers, not only 0..T−1
    (a KV cache's next token is at position T). The angles and their cos and sin are computed
    in float64, then the rotation in x's precision: float32 gives what the model computes,
    float64 keeps the relative property to float64 rounding."""
    layout = _check_layout(layout)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.ndim < 2:
        raise ValueError(f"RoPE rotates a (…, T, d_head) array, not shape {x.shape}")
    positions = np.asarray(positions)
    if positions.ndim == 0 or positions.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{x.shape[-2]} tokens need {x.shape[-2]} positions, not shape {positions.shape}"
        )
    angles = rope_angles(positions, x.shape[-1], base)
    cos, sin = np.cos(angles).astype(x.dtype), np.sin(angles).astype(x.dtype)
    out = np.empty(np.broadcast_shapes(x.shape, angles.shape[:-1] + (x.shape[-1],)), x.dtype)
    if layout == "half":
        h = x.shape[-1] // 2
        a, b = x[..., :h], x[..., h:]
        out[..., :h] = a * cos - b * sin
        out[..., h:] = b * cos + a * sin
    else:
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = b * cos + a * sin
    return out


def rotate_pair(pair, positions, theta: float) -> np.ndarray:
    """One pair of dimensions (2,) as a 2-D vector, rotated by position × θ for each of
    ``positions``: (T, 2), the point the lesson's slider moves around its circle."""
    pair = np.asarray(pair, dtype=np.float64)
    if pair.shape != (2,):
        raise ValueError(f"one pair is two numbers, not shape {pair.shape}")
    angles = np.atleast_1d(np.asarray(positions, dtype=np.float64)) * float(theta)
    c, s = np.cos(angles), np.sin(angles)
    return np.stack([pair[0] * c - pair[1] * s, pair[0] * s + pair[1] * c], axis=-1)


def half_to_interleaved_permutation(d_head: int) -> np.ndarray:
    """``perm`` with perm[2i] = i and perm[2i + 1] = i + d/2: reading a half-layout vector
    as ``x[..., perm]`` puts each half-layout pair (i, i + d/2) side by side at (2i, 2i + 1).
    So, for any x and positions,

        apply_rope(x[..., perm], layout="interleaved") == apply_rope(x, layout="half")[..., perm]

    and, the other way, with ``inv = np.argsort(perm)``
    (``interleaved_to_half_permutation``): apply_rope(y[..., inv], layout="half") ==
    apply_rope(y, layout="interleaved")[..., inv]. A dot product does not care about the order
    of dimensions, so both layouts give the same scores once W_q's and W_k's output rows are
    permuted this way: that is how Meta's checkpoints are converted for Hugging Face."""
    d = _even_width(d_head, "RoPE's head size", "it rotates pairs of dimensions")
    return np.stack([np.arange(d // 2), np.arange(d // 2) + d // 2], axis=-1).reshape(d)


def interleaved_to_half_permutation(d_head: int) -> np.ndarray:
    """The inverse of ``half_to_interleaved_permutation``: inv[i] = 2i, inv[i + d/2] = 2i + 1."""
    return np.argsort(half_to_interleaved_permutation(d_head))


def rope_score(q, k, m, n, base: float = 10000.0, layout: Layout = "half", scale=None):
    """The score of query ``q`` (d,) at position m against key ``k`` (d,) at position n,
    after rotating both: rot(q, m) · rot(k, n) · scale (default 1/√d, as the model's
    ``attn_scores``). m and n may be arrays (broadcast together); float64 throughout."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if q.ndim != 1 or q.shape != k.shape:
        raise ValueError(f"a query and a key of one head, not shapes {q.shape} and {k.shape}")
    m, n = np.broadcast_arrays(np.asarray(m, dtype=np.float64), np.asarray(n, dtype=np.float64))
    shape = m.shape
    m, n = m.reshape(-1), n.reshape(-1)  # one row per (m, n) pair: apply_rope's (T, d)
    qr = apply_rope(np.broadcast_to(q, m.shape + q.shape), m, base, layout)
    kr = apply_rope(np.broadcast_to(k, n.shape + k.shape), n, base, layout)
    scale = 1.0 / math.sqrt(len(q)) if scale is None else float(scale)
    return (np.sum(qr * kr, axis=-1) * scale).reshape(shape)


def relative_scores(q, k, m, n, shifts, base: float = 10000.0, layout: Layout = "half"):
    """The score of (q at m + s, k at n + s) for each shift s in ``shifts``: all equal, since
    RoPE turns q by mθ and k by nθ and their dot product sees only the difference (m − n)θ.
    Returns one score per shift (float64), each q·k/√d as the model's ``attn_scores``."""
    shifts = np.asarray(shifts, dtype=np.float64)
    return rope_score(q, k, m + shifts, n + shifts, base, layout)


# ---------------------------------------------------------------------------------------------
# ALiBi


def _slopes_power_of_2(n: int) -> np.ndarray:
    # 2^(−8/n), its square, …, its n-th power: a geometric sequence from 2^(−8/n) to 2^(−8)
    return 2.0 ** (-8.0 * np.arange(1, n + 1) / n)


def alibi_slopes(n_heads: int) -> np.ndarray:
    """Each head's ALiBi slope (Press et al.), as their code and Hugging Face's Bloom have it.

    For a power of two n: 2^(−8i/n) for i = 1..n (8 heads: 1/2, 1/4, …, 1/256). Otherwise,
    with m the largest power of two below n: the m slopes for m heads, then, from the slopes
    for 2m heads, every other one starting with the first (i = 1, 3, 5, … of 2m: they fall
    between the ones already taken), as many as the n − m heads left. So 6 heads get
    1/4, 1/16, 1/64, 1/256 then 1/2, 1/8. Not 2^(−8i/n) with n = 6: the paper's rule is for
    powers of two, and this is its authors' extension."""
    n = _positive_int(n_heads, "the number of heads")
    m = 2 ** math.floor(math.log2(n))
    if m == n:
        return _slopes_power_of_2(n)
    return np.concatenate([_slopes_power_of_2(m), _slopes_power_of_2(2 * m)[0::2][: n - m]])


def alibi_bias(n_heads: int, t: int) -> np.ndarray:
    """(n_heads, T, T): −slope_h·(i − j) for query i and key j, the head's penalty for
    looking j − i tokens back (0 for itself, −slope for its neighbour, …).

    Above the diagonal (j > i, the future) the same line is continued, +slope·(j − i), rather
    than cut to −∞ or 0: the causal mask discards those entries anyway, and this way each row
    is Bloom's (and the ALiBi code's) slope·j minus a constant slope·i, which a softmax
    ignores, masked or not."""
    slopes = alibi_slopes(n_heads)
    t = _positive_int(t, "the number of tokens")
    back = np.arange(t)[None, :] - np.arange(t)[:, None]  # j − i: −(i − j), and +0 on the diagonal
    return slopes[:, None, None] * back


@dataclass(frozen=True)
class AlibiWhatIf:
    """A model's scores with ALiBi added, as a what-if (the model was not trained with it)."""

    bias: np.ndarray  # (H, T, T) alibi_bias
    biased: np.ndarray  # scores + bias, the future masked to −inf
    probs: np.ndarray  # softmax over keys of ``biased``


def alibi_what_if(scores) -> AlibiWhatIf:
    """Scores (H, T, T) (q·k/√d before the mask, the model's ``attn_scores`` of one layer)
    plus each head's ALiBi bias, under the causal mask, and their softmax."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[1] != scores.shape[2]:
        raise ValueError(f"scores of heads × queries × keys, not shape {scores.shape}")
    bias = alibi_bias(scores.shape[0], scores.shape[1])
    biased = np.where(mask_matrix("causal", scores.shape[1]), scores + bias, -np.inf)
    return AlibiWhatIf(bias, biased, softmax(biased, axis=-1))
