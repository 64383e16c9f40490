"""From token to attention score: embeddings, the block's input, Q, K, V and the heads.

Numpy in, numpy out. The model's own outputs (``hidden``, ``q``, ``k``, ``v``,
``attn_heads``, ``attn_scores``) are what the lesson draws; these functions show the steps
between them: the two embedding rows and their sum, the first norm, the split of the model
width into heads and back, and one query-key dot product as its elementwise products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dashboard.lessons.attention import heads_of, softmax
from dashboard.lessons.norms import layer_norm, rms_norm

ROPE_NOTE = (
    "No position vector: this model uses RoPE, which rotates each query and key by its "
    "position inside attention instead of adding a vector here."
)


@dataclass(frozen=True)
class Embedding:
    """The embedding rows of a text: ``token`` (T, C) = wte[ids]; ``position`` (T, C) =
    wpe[0..T) or None (a RoPE model has no position vector); ``total`` = their sum, the
    residual stream the first block reads (the model's ``hidden[0]``)."""

    token: np.ndarray
    position: np.ndarray | None
    total: np.ndarray


def embed(weights: dict[str, np.ndarray], ids) -> Embedding:
    """The token rows of ``ids`` and, for a model with learned positions (``wpe.weight``),
    the position rows 0..T−1 and their sum; float32, as the model adds them."""
    ids = np.asarray(ids, dtype=np.int64)
    token = np.asarray(weights["wte.weight"], dtype=np.float32)[ids]
    if "wpe.weight" not in weights:
        return Embedding(token, None, token)
    position = np.asarray(weights["wpe.weight"], dtype=np.float32)[: len(ids)]
    return Embedding(token, position, token + position)


def block_input(x: np.ndarray, weights: dict[str, np.ndarray], config: dict, layer: int = 0):
    """What block ``layer``'s attention reads: its first norm (``ln_1``) of the stream ``x``
    (T, C), LayerNorm or RMSNorm as the config says, with the model's weights; float64."""
    eps = float(config.get("layer_norm_eps", 1e-5))
    weight = weights[f"h.{layer}.ln_1.weight"]
    if config.get("norm", "layernorm") == "rmsnorm":
        return rms_norm(x, weight, eps=eps).out
    return layer_norm(x, weight, weights.get(f"h.{layer}.ln_1.bias"), eps=eps).out


def split_heads(x: np.ndarray, n_head: int) -> np.ndarray:
    """(T, n_head·d) → (n_head, T, d): head h gets columns h·d .. (h+1)·d − 1."""
    t, width = x.shape
    if width % n_head:
        raise ValueError(f"a width of {width} does not split into {n_head} equal heads")
    return x.reshape(t, n_head, width // n_head).transpose(1, 0, 2)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(n_head, T, d) → (T, n_head·d): the heads' outputs side by side again."""
    h, t, d = x.shape
    return x.transpose(1, 0, 2).reshape(t, h * d)


@dataclass(frozen=True)
class DotProduct:
    """One query-key pair's score, q·k/√d, as its terms."""

    products: np.ndarray  # q[i] * k[i] for every dimension of the head
    total: float  # their sum, q·k
    scale: float  # √d
    score: float  # total / scale

    @property
    def d_head(self) -> int:
        return len(self.products)


def dot_product(q: np.ndarray, k: np.ndarray) -> DotProduct:
    """q·k/√d of one query vector and one key vector (float64)."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if q.shape != k.shape or q.ndim != 1:
        raise ValueError(f"a query and a key of one head, not shapes {q.shape} and {k.shape}")
    products = q * k
    total = float(products.sum())
    scale = math.sqrt(len(q))
    return DotProduct(products, total, scale, total / scale)


def pair_weight(q_row: np.ndarray, k: np.ndarray, query: int, key: int) -> float:
    """The attention weight of ``key`` for query ``query`` from its scores against every key
    it may see (``k`` is one K/V head's keys, T × d): the causal softmax of q·k/√d over keys
    0..query (float64); 0 for a key after the query, which the mask removes."""
    if key > query:
        return 0.0
    q = np.asarray(q_row, dtype=np.float64)
    scores = np.asarray(k[: query + 1], dtype=np.float64) @ q / math.sqrt(len(q))
    return float(softmax(scores)[key])


def head_output(probs_row: np.ndarray, v: np.ndarray) -> np.ndarray:
    """One query's output of one head: its attention probabilities (T,) over the values
    (T, d), a weighted sum of value rows (float64). The model's ``attn_heads``."""
    return np.asarray(probs_row, dtype=np.float64) @ np.asarray(v, dtype=np.float64)


def shapes(config: dict, t: int) -> list[tuple[str, str]]:
    """Each step from ids to the block's output with its real shape, for ``t`` tokens."""
    n_head, n_kv = heads_of(config)
    c = int(config["n_embd"])
    d = c // n_head
    learned = config.get("positions", "learned") != "rope"
    kv = f"{n_kv} × {t} × {d}" + (
        f" (shared by {n_head // n_kv} query heads each)" if n_kv < n_head else ""
    )
    rows = [
        ("token ids", f"{t}"),
        ("token embeddings wte[ids]", f"{t} × {c}"),
    ]
    if learned:
        rows.append(("+ position embeddings wpe[0..T)", f"{t} × {c}"))
    rows += [
        ("the block's norm (ln_1)", f"{t} × {c}"),
        (f"Q = x·W_q, split into {n_head} heads", f"{t} × {c} → {n_head} × {t} × {d}"),
        ("K = x·W_k, V = x·W_v", f"{t} × {n_kv * d} → {kv}"),
    ]
    if not learned:
        rows.append(("RoPE rotates each q and k by its position", f"{n_head} × {t} × {d}"))
    rows += [
        ("scores Q·Kᵀ/√d per head", f"{n_head} × {t} × {t}"),
        ("softmax (causal) · V per head", f"{n_head} × {t} × {d}"),
        ("heads concatenated", f"{t} × {n_head * d}"),
        ("output projection W_o, added to the stream", f"{t} × {c}"),
    ]
    return rows
