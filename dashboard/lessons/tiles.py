"""Attention tile by tile, with the online softmax (FlashAttention's idea). Numpy in, numpy out.

The full softmax needs a query's scores against every key before it can divide by their sum,
so plain attention writes the whole T × T matrix. FlashAttention never does: it takes the
keys a block at a time and keeps, for each query row, the running maximum m, the running sum
l of exp(score − m) and the unnormalised output; when a later block raises the maximum, what
was summed so far is rescaled by exp(m_old − m_new). After the last block, output / l is the
softmax's result exactly (to rounding). Memory: one block_q × block_k tile of scores at a
time instead of T × T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileStep:
    """The running state of one query block after one more key block (every head)."""

    query_block: int  # index of the query block
    key_block: int  # index of the key block just taken in
    rows: tuple[int, int]  # the query positions [start, end)
    keys: tuple[int, int]  # the key positions [start, end)
    m: np.ndarray  # (heads, rows) running maximum of the scores seen so far
    l: np.ndarray  # noqa: E741 (the paper's name) (heads, rows) running sum of exp(s − m)
    output: np.ndarray  # (heads, rows, d) the output so far, divided by l: softmax over the
    # keys seen so far, times their values


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _heads(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return x[None]
    if x.ndim != 3:
        raise ValueError(f"{name} must be (T, d) or (heads, T, d), not shape {x.shape}")
    return x


def _block_size(size, t: int, name: str) -> int:
    if isinstance(size, bool) or int(size) != size or not 1 <= int(size) <= t:
        raise ValueError(f"{name} must be a whole number from 1 to {t} (the sequence), not {size}")
    return int(size)


def tiled_attention(q, k, v, block_q: int, block_k: int, causal: bool = True, steps: bool = True):
    """softmax(q·kᵀ/√d [causal]) · v computed tile by tile with the online softmax.

    q: (T, d) or (heads, T, d); k and v: (S, d) or (kv_heads, S, d), kv_heads dividing heads
    (grouped-query attention: consecutive query heads share a key/value head). Returns
    ``(output, steps)``: the output shaped like q, and, unless ``steps`` is False, a
    :class:`TileStep` per (query block, key block) visited, in order. Under the causal mask a
    key block wholly after a query block's last row is skipped: FlashAttention's saving."""
    squeeze = np.asarray(q).ndim == 2
    q, k, v = _heads(q, "q"), _heads(k, "k"), _heads(v, "v")
    h, t, d = q.shape
    if k.shape != v.shape or k.shape[-1] != d:
        raise ValueError(f"k and v must match each other and q's width: {k.shape}, {v.shape}")
    if h % k.shape[0]:
        raise ValueError(f"{h} query heads cannot share {k.shape[0]} key/value heads evenly")
    if causal and k.shape[1] != t:
        raise ValueError("the causal mask needs as many keys as queries")
    k = np.repeat(k, h // k.shape[0], axis=0)
    v = np.repeat(v, h // v.shape[0], axis=0)
    s_len = k.shape[1]
    block_q = _block_size(block_q, t, "the query block size")
    block_k = _block_size(block_k, s_len, "the key block size")
    scale = 1.0 / math.sqrt(d)
    out = np.empty_like(q)
    record: list[TileStep] = []
    for qi, (r0, r1) in enumerate(_blocks(t, block_q)):
        m = np.full((h, r1 - r0), -np.inf)
        l_sum = np.zeros((h, r1 - r0))
        acc = np.zeros((h, r1 - r0, d))
        for ki, (c0, c1) in enumerate(_blocks(s_len, block_k)):
            if causal and c0 > r1 - 1:
                break  # every key of this block, and of the later ones, is in the future
            s = np.einsum("hid,hjd->hij", q[:, r0:r1], k[:, c0:c1]) * scale
            if causal:
                future = np.arange(c0, c1)[None, :] > np.arange(r0, r1)[:, None]
                s = np.where(future[None], -np.inf, s)
            m_new = np.maximum(m, s.max(axis=-1))
            p = np.exp(s - m_new[..., None])
            alpha = np.exp(m - m_new)  # what the sums so far are worth under the new maximum
            l_sum = alpha * l_sum + p.sum(axis=-1)
            acc = alpha[..., None] * acc + np.einsum("hij,hjd->hid", p, v[:, c0:c1])
            m = m_new
            if steps:
                record.append(
                    TileStep(
                        qi, ki, (r0, r1), (c0, c1), m.copy(), l_sum.copy(), acc / l_sum[..., None]
                    )  # fmt: skip
                )
        out[:, r0:r1] = acc / l_sum[..., None]
    return (out[0] if squeeze else out), record


def full_attention(q, k, v, causal: bool = True) -> np.ndarray:
    """The same attention the plain way: the whole T × T matrix of scores at once (what the
    tiles avoid writing). Shapes as :func:`tiled_attention`; float64."""
    squeeze = np.asarray(q).ndim == 2
    q, k, v = _heads(q, "q"), _heads(k, "k"), _heads(v, "v")
    k = np.repeat(k, q.shape[0] // k.shape[0], axis=0)
    v = np.repeat(v, q.shape[0] // v.shape[0], axis=0)
    s = np.einsum("hid,hjd->hij", q, k) / math.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.triu(np.ones(s.shape[-2:], dtype=bool), 1)[None], -np.inf, s)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    out = np.einsum("hij,hjd->hid", p / p.sum(axis=-1, keepdims=True), v)
    return out[0] if squeeze else out


def score_bytes(t: int, heads: int, bytes_per_value: int, block_q: int | None = None,
                block_k: int | None = None) -> int:  # fmt: skip
    """Bytes of attention scores held at once: the full heads × T × T matrix, or (with block
    sizes) one block_q × block_k tile per head plus each row's running m and l."""
    if block_q is None or block_k is None:
        return heads * t * t * bytes_per_value
    return heads * (block_q * block_k + 2 * block_q) * bytes_per_value
