"""Attention, stage by stage, and the masks that shape it. Numpy in, numpy out.

The dashboard draws the model's own ``attn_scores`` (q·k/√d before the mask); these
functions re-derive what happens after them under other masks, so the mask lesson can show
causal, bidirectional, sliding-window and padding variants of the same scores.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

MaskKind = Literal["causal", "none", "sliding", "padding"]
MASK_KINDS: tuple[str, ...] = ("causal", "none", "sliding", "padding")
STAGES = {"scaled": "scaled scores q·k/√d", "masked": "masked scores", "probs": "probabilities"}
FILLS = {"-inf": float("-inf"), "-1e9": -1e9}  # what a masked score becomes
# Why a row with every key masked by −∞ becomes NaN, in the stable softmax run here (and by
# torch): it subtracts the row's largest score first, and that is −∞ too. Said once for the
# mask and precision lessons.
NAN_ROW = (
    "the stable softmax subtracts the row's largest score, itself −∞, and −∞ − (−∞) = "
    "<b class='nan'>NaN</b>"
)


def heads_of(config: dict) -> tuple[int, int]:
    """(query heads, key/value heads) of a model config dict: n_kv_head None (and configs
    older than it, which lack it) means one per query head."""
    n_head = int(config["n_head"])
    return n_head, int(config.get("n_kv_head") or n_head)


def kv_head(head: int, n_head: int, n_kv_head: int) -> int:
    """The key/value head that query ``head`` reads. Grouped-query attention gives each
    key/value head ``n_head / n_kv_head`` consecutive query heads (Hugging Face's repeat_kv
    and our model's repeat_interleave): 1 key/value head is multi-query attention, one per
    query head is ordinary multi-head attention."""
    if n_kv_head < 1 or n_head % n_kv_head:
        raise ValueError(f"{n_head} query heads cannot share {n_kv_head} key/value heads evenly")
    if not 0 <= head < n_head:
        raise ValueError(f"head must lie in [0, {n_head}), not {head}")
    return head // (n_head // n_kv_head)


def kv_groups(n_head: int, n_kv_head: int) -> list[list[int]]:
    """For each key/value head, the query heads that read it."""
    groups: list[list[int]] = [[] for _ in range(n_kv_head)]
    for h in range(n_head):
        groups[kv_head(h, n_head, n_kv_head)].append(h)
    return groups


def sharing_html(n_head: int, n_kv_head: int, head: int | None = None) -> str:
    """One sentence: which query heads share which key/value head (and ``head``'s group)."""
    groups = kv_groups(n_head, n_kv_head)
    if n_kv_head == n_head:
        return (
            f"<b>Multi-head attention:</b> each of the {n_head} query heads has its own keys "
            "and values."
        )
    kind = "Multi-query" if n_kv_head == 1 else "Grouped-query"

    def names(g: list[int]) -> str:
        words = [str(h) for h in g]
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

    parts = "; ".join(f"heads {names(g)} read K/V head {j}" for j, g in enumerate(groups))
    text = (
        f"<b>{kind} attention:</b> {n_head} query heads share {n_kv_head} key/value "
        f"head{'s' if n_kv_head > 1 else ''}: {parts}. The KV cache holds the keys and "
        f"values of {n_kv_head} head{'s' if n_kv_head > 1 else ''}, not {n_head}."
    )
    if head is not None:
        j = kv_head(head, n_head, n_kv_head)
        others = [h for h in groups[j] if h != head]
        if others:
            text += f" Head {head} reads K/V head {j} with head{'s' if len(others) > 1 else ''} "
            text += names(others) + "."
    return text


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax. A row that is entirely -inf gives NaN, as in torch:
    there is nothing to attend to, and pretending otherwise would hide the bug."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    # -1e308 - 1e308 overflows to -inf, whose exp is the right answer: 0
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x - m)
        return e / e.sum(axis=axis, keepdims=True)


def mask_matrix(
    kind: MaskKind | None,
    t_query: int,
    t_key: int | None = None,
    window: int | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean matrix, True where query i may attend to key j.

    - ``causal``: j <= i (keys aligned to the end when t_key > t_query, as with a KV cache);
    - ``none`` / None: every key (an encoder's bidirectional attention);
    - ``sliding``: causal and within the last ``window`` keys, i - window < j <= i;
    - ``padding``: causal, and key j is a real token (``valid``: bool per key, or
      (batch, t_key) for a padded batch, which returns (batch, t_query, t_key)).
    """
    t_key = t_query if t_key is None else t_key
    i = np.arange(t_query)[:, None] + (t_key - t_query)
    j = np.arange(t_key)[None, :]
    if kind in (None, "none"):
        return np.ones((t_query, t_key), dtype=bool)
    causal = j <= i
    if kind == "causal":
        return causal
    if kind == "sliding":
        if window is None or int(window) < 1:
            raise ValueError("a sliding-window mask needs a window of at least 1 token")
        return causal & (j > i - int(window))
    if kind == "padding":
        if valid is None:
            raise ValueError("a padding mask needs `valid`: which keys are real tokens")
        valid = np.asarray(valid, dtype=bool)
        if valid.shape[-1] != t_key:
            raise ValueError(f"`valid` has {valid.shape[-1]} keys, expected {t_key}")
        return causal & valid[..., None, :]
    raise ValueError(f"unknown mask {kind!r}; choose one of {', '.join(MASK_KINDS)}")


def apply_mask(scores: np.ndarray, allowed: np.ndarray, fill: float = -np.inf) -> np.ndarray:
    """Scores with disallowed positions replaced by ``fill`` (-inf, or a large negative)."""
    return np.where(allowed, scores, fill)


def attention_stages(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: MaskKind | np.ndarray | None = "causal",
    window: int | None = None,
    scale: float | None = None,
    fill: float = -np.inf,
) -> dict[str, np.ndarray]:
    """Every stage of scaled dot-product attention.

    ``q`` (..., Tq, d), ``k`` (..., Tk, d), ``v`` (..., Tk, dv). ``mask`` is a kind
    (``causal``, ``none``/None, ``sliding`` with ``window``) or a boolean array broadcastable
    to (..., Tq, Tk), True where attention is allowed. Returns ``scores`` = q·kᵀ,
    ``scaled`` = scores·scale (default 1/√d), ``masked``, ``probs`` = softmax over keys, and
    ``out`` = probs·v.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k differ in head size: {q.shape[-1]} vs {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v differ in length: {k.shape[-2]} vs {v.shape[-2]}")
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = q @ np.swapaxes(k, -1, -2)
    scaled = scores * scale
    if isinstance(mask, np.ndarray):
        allowed = mask.astype(bool)
    elif mask == "padding":
        raise ValueError("pass a padding mask as a boolean array (see mask_matrix)")
    else:
        allowed = mask_matrix(mask, q.shape[-2], k.shape[-2], window=window)
    masked = apply_mask(scaled, allowed, fill)
    probs = softmax(masked, axis=-1)
    return {"scores": scores, "scaled": scaled, "masked": masked, "probs": probs, "out": probs @ v}


def restage(scaled: np.ndarray, allowed: np.ndarray, fill: float = -np.inf):
    """The model's scaled scores under another mask: (masked, probs)."""
    masked = apply_mask(scaled, allowed, fill)
    return masked, softmax(masked, axis=-1)


def top_attended(row: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` keys a query attends to most: (key index, probability), highest first.
    Ties go to the earlier key, so the order is stable."""
    row = np.nan_to_num(np.asarray(row, dtype=np.float64), nan=-1.0)
    order = np.lexsort((np.arange(len(row)), -row))[: max(0, k)]
    return [(int(j), float(row[j])) for j in order if row[j] > 0]


def entropy_bits(row: np.ndarray) -> float:
    """How spread out one query's attention is, in bits (0 = all on one key)."""
    p = np.asarray(row, dtype=np.float64)
    p = p[p > 0]
    # never "-0.00": a one-hot row (or one a rounding error above 1) has entropy +0
    return max(0.0, float(-(p * np.log2(p)).sum()))


# -- what the dashboard shows ---------------------------------------------------------------------
STAGE_NAMES: tuple[str, ...] = ("scaled", "masked", "probs")


def head_stage(scaled: np.ndarray, probs: np.ndarray, stage: str) -> np.ndarray:
    """One head's matrix at ``stage``, from the model's own outputs for a causal decoder.

    ``scaled`` is the model's ``attn_scores`` (q·k/√d before the mask) and ``probs`` its
    ``attn_probs``; ``masked`` re-applies the causal mask the model used, with -inf.
    """
    if stage == "scaled":
        return np.asarray(scaled, dtype=np.float64)
    if stage == "masked":
        t_query, t_key = np.shape(scaled)[-2:]
        return apply_mask(
            np.asarray(scaled, dtype=np.float64), mask_matrix("causal", t_query, t_key)
        )
    if stage == "probs":
        return np.asarray(probs, dtype=np.float64)
    raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGE_NAMES)}")


def variant_mask(kind: MaskKind | None, t: int, window: int | None = None, pad: int = 0):
    """The mask lesson's variants for a sequence of ``t`` tokens.

    ``padding`` treats the first ``pad`` positions as left padding (a shorter sentence lined
    up with a longer one in its batch): keys there are masked for every query, so the padding
    queries themselves have nothing left to attend to.
    """
    if kind == "padding":
        valid = np.arange(t) >= max(0, int(pad))
        return mask_matrix("padding", t, valid=valid)
    return mask_matrix(kind, t, window=window)


def fill_comparison(scaled: np.ndarray, allowed: np.ndarray, big: float = -1e9) -> dict:
    """What filling masked scores with -inf instead of a large negative number changes.

    Returns ``empty_rows``: queries with no allowed key; ``nan_rows``: rows whose softmax is
    NaN with -inf (0/0); ``uniform_rows``: rows that become a uniform distribution over the
    masked keys with ``big`` (finite garbage instead of a visible NaN); ``max_abs_diff``: the
    largest |difference| between the two softmaxes on every other row (0 when ``big`` is
    negative enough for exp to underflow).
    """
    scaled = np.asarray(scaled, dtype=np.float64)
    allowed = np.broadcast_to(np.asarray(allowed, dtype=bool), scaled.shape)
    _, p_inf = restage(scaled, allowed, -np.inf)
    _, p_big = restage(scaled, allowed, big)
    empty = ~allowed.any(axis=-1)
    nan_rows = np.isnan(p_inf).any(axis=-1)
    n_keys = scaled.shape[-1]
    uniform = empty & np.isclose(p_big, 1.0 / n_keys).all(axis=-1)
    rest = ~empty
    diff = float(np.abs(p_inf[rest] - p_big[rest]).max()) if rest.any() else 0.0
    return {
        "empty_rows": [int(i) for i in np.flatnonzero(empty)],
        "nan_rows": [int(i) for i in np.flatnonzero(nan_rows)],
        "uniform_rows": [int(i) for i in np.flatnonzero(uniform)],
        "max_abs_diff": diff,
        "probs_inf": p_inf,
        "probs_big": p_big,
    }


def query_detail(scaled: np.ndarray, probs: np.ndarray, query: int, key: int, k: int = 5):
    """What the side panel says about query ``query`` and key ``key`` of one head.

    ``scaled`` and ``probs`` are (T, T). Returns the query's probability ``row``, the
    ``score`` q·k/√d of the pair (before the mask), whether the causal mask ``allowed`` it,
    its ``prob``, the ``top`` attended keys and the row's ``entropy`` in bits.
    """
    scaled = np.asarray(scaled, dtype=np.float64)
    row = np.asarray(probs, dtype=np.float64)[query]
    return {
        "row": row,
        "score": float(scaled[query, key]),
        "allowed": bool(key <= query),
        "prob": float(row[key]),
        "top": top_attended(row, k),
        "entropy": entropy_bits(row),
    }
