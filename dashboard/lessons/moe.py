"""Mixture-of-experts routing: the arithmetic of the "Mixture of experts" lesson. Pure numpy.

In a mixture-of-experts MLP a router (one linear layer) gives every token a logit per expert;
the softmax of those is the router's probabilities, the ``top_k`` most probable experts run
on the token, and their outputs are summed with the chosen probabilities renormalised to sum
to 1 (Mixtral's routing). Left alone, training tends to send most tokens to a few experts, so
a load-balancing loss (Switch Transformer's, as Hugging Face computes it) is added: the
number of experts times Σ_e f_e · P_e, where f_e is the share of the top-k assignments that
go to expert e and P_e its mean router probability. With every expert used evenly it is
``top_k``; the more the routing piles onto a few, the larger.
"""

from __future__ import annotations

import numpy as np

from dashboard.lessons.attention import softmax


def router_probs(logits: np.ndarray) -> np.ndarray:
    """The router's probabilities: the softmax of its logits over the experts (last axis)."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1)


def route(logits: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each token's ``top_k`` experts, most probable first (ties to the lower id, as
    ``torch.topk`` on CPU gives them), and their probabilities renormalised to sum to 1."""
    probs = router_probs(logits)
    if not 1 <= top_k <= probs.shape[-1]:
        raise ValueError(f"top_k must lie in [1, {probs.shape[-1]}], not {top_k}")
    # a stable sort of -p keeps equal probabilities in id order
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :top_k]
    top = np.take_along_axis(probs, order, axis=-1)
    return order, top / top.sum(axis=-1, keepdims=True)


def expert_counts(experts: np.ndarray, n_expert: int) -> np.ndarray:
    """How many top-k assignments each expert got, over every token (and rank) of
    ``experts`` (any shape ending in top_k)."""
    return np.bincount(np.asarray(experts).ravel(), minlength=n_expert)[:n_expert]


def expert_shares(experts: np.ndarray, n_expert: int) -> np.ndarray:
    """Each expert's share of the top-k assignments (sums to 1; 1/n_expert each when even)."""
    counts = expert_counts(experts, n_expert)
    return counts / max(int(counts.sum()), 1)


def balance_loss(logits: np.ndarray, top_k: int) -> float:
    """The load-balancing loss of router logits (layers, tokens, experts), every layer's
    tokens pooled as Hugging Face's ``load_balancing_loss_func`` pools them: n_expert ·
    Σ_e f_e · P_e, f_e the top-k assignments to e per token, P_e its mean probability."""
    logits = np.asarray(logits, dtype=np.float64)
    n_expert = logits.shape[-1]
    flat = logits.reshape(-1, n_expert)
    experts, _ = route(flat, top_k)
    f = expert_counts(experts, n_expert) / len(flat)
    p = router_probs(flat).mean(axis=0)
    return float(n_expert * np.sum(f * p))
