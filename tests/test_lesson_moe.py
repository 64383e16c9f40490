"""Mixture-of-experts routing against Hugging Face's Mixtral: the router (MixtralTopKRouter)
on the same weights and tokens, and the load-balancing loss (load_balancing_loss_func)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dashboard.lessons import moe


def test_routing_is_mixtrals_router():
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralTopKRouter

    cfg = MixtralConfig(hidden_size=16, num_local_experts=4, num_experts_per_tok=2)
    torch.manual_seed(0)
    router = MixtralTopKRouter(cfg)
    torch.nn.init.normal_(router.weight)
    x = torch.randn(50, 16)
    with torch.no_grad():
        logits, weights, index = router(x)
    experts, ours = moe.route(logits.numpy(), 2)
    np.testing.assert_array_equal(experts, index.numpy())
    np.testing.assert_allclose(ours, weights.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-12)
    probs = moe.router_probs(logits.numpy())
    np.testing.assert_allclose(probs, torch.softmax(logits.double(), -1).numpy(), atol=1e-12)


@pytest.mark.parametrize(
    ("layers", "tokens", "n_expert", "top_k"), [(4, 30, 4, 2), (2, 7, 8, 2), (3, 11, 4, 1)]
)
def test_the_balance_loss_is_hugging_faces(layers, tokens, n_expert, top_k):
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    rng = np.random.default_rng(layers * tokens)
    logits = rng.normal(size=(layers, tokens, n_expert)) * 2
    want = load_balancing_loss_func(
        tuple(torch.from_numpy(layer).float() for layer in logits), n_expert, top_k
    )
    assert moe.balance_loss(logits, top_k) == pytest.approx(float(want), abs=1e-5)


def test_even_routing_costs_top_k_and_piled_routing_more():
    n_expert, top_k = 4, 2
    # every token's router equally unsure: each expert gets its share, P_e = 1/4
    pairs = [(a, b) for a in range(4) for b in range(4) if a != b]
    even = np.zeros((1, len(pairs), n_expert))
    for t, (a, b) in enumerate(pairs):
        even[0, t, [a, b]] = 1e-3 * np.array([2, 1])
    assert moe.balance_loss(even, top_k) == pytest.approx(top_k, abs=1e-3)
    piled = np.zeros((1, 12, n_expert))
    piled[..., 0], piled[..., 1] = 5.0, 4.0  # every token to experts 0 and 1
    assert moe.balance_loss(piled, top_k) > 3.5


def test_shares_count_every_assignment():
    experts = np.array([[[0, 1], [0, 2]], [[3, 0], [0, 1]]])
    np.testing.assert_array_equal(moe.expert_counts(experts, 4), [4, 2, 1, 1])
    np.testing.assert_allclose(moe.expert_shares(experts, 4), [0.5, 0.25, 0.125, 0.125])
    with pytest.raises(ValueError, match="top_k"):
        moe.route(np.zeros((2, 4)), 5)
