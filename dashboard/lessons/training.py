"""Next-token prediction's loss on a text: what training minimises. Pure numpy.

Training feeds a sequence in and asks, at every position, for the token that comes next: the
targets are the inputs shifted by one. One forward pass gives every position's logits at
once (the causal mask keeps each position from seeing its own target), so every position's
loss comes from that one pass with the true previous tokens as its context: teacher forcing,
and why a transformer trains on a whole block in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis (float64, stable)."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def token_losses(logits: np.ndarray, ids) -> np.ndarray:
    """The cross-entropy (nats) of each next token: for positions 0..T-2, −log p(ids[t+1] |
    ids[..t]) from ``logits`` (T, vocab). T − 1 values; none for a one-token text (it has no
    next token: ValueError)."""
    ids = np.asarray(ids)
    logits = np.asarray(logits)
    if logits.ndim != 2 or len(ids) != logits.shape[0]:
        raise ValueError(f"logits must be (T, vocab) for {len(ids)} ids, not {logits.shape}")
    if len(ids) < 2:
        raise ValueError("a text of one token has no next token to predict")
    lp = log_softmax(logits[:-1])
    return -lp[np.arange(len(ids) - 1), ids[1:]]


@dataclass(frozen=True)
class TextLoss:
    losses: np.ndarray  # (T - 1,) nats
    probs: np.ndarray  # (T - 1,) the probability given to the true next token
    mean: float  # the loss: the mean of ``losses``
    perplexity: float  # e^mean
    surprising: list[int]  # positions of the highest losses, highest first


def text_loss(logits: np.ndarray, ids, top: int = 3) -> TextLoss:
    """:func:`token_losses` with what the lesson shows of them."""
    losses = token_losses(logits, ids)
    mean = float(losses.mean())
    order = np.lexsort((np.arange(len(losses)), -losses))[:top]
    return TextLoss(losses, np.exp(-losses), mean, float(np.exp(mean)), [int(i) for i in order])
