"""The model's attention stages, checked against torch's own attention and by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.gpt import GPT, GPTConfig

CFG = GPTConfig(vocab_size=97, block_size=24, n_layer=3, n_head=4, n_embd=32)


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CFG).eval()


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(CFG.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1))


def test_output_shapes(model, ids):
    logits, scores, probs, hidden = model(ids)
    B, T = ids.shape
    assert logits.shape == (B, T, CFG.vocab_size)
    assert scores.shape == probs.shape == (B, CFG.n_layer, CFG.n_head, T, T)
    assert hidden.shape == (B, CFG.n_layer + 1, T, CFG.n_embd)


def test_probs_are_causal_softmax_rows(model, ids):
    _, scores, probs, _ = model(ids)
    T = ids.shape[1]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    assert torch.all(probs[..., future] == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
    # softmax of the scores restricted to the past, computed independently
    expected = F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    torch.testing.assert_close(probs, expected)


def test_scores_are_scaled_dot_products(model, ids):
    """attn_scores of layer 0 equal q·k/√d from the layer's own weights, before the mask."""
    _, scores, _, hidden = model(ids)
    block = model.h[0]
    q, k, _ = block.attn.c_attn(block.ln_1(hidden[:, 0])).split(CFG.n_embd, dim=2)
    d = CFG.n_embd // CFG.n_head
    q = q.view(*q.shape[:2], CFG.n_head, d).transpose(1, 2)
    k = k.view(*k.shape[:2], CFG.n_head, d).transpose(1, 2)
    expected = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(d)
    torch.testing.assert_close(scores[:, 0], expected)
    assert torch.isfinite(scores).all(), "scores are reported before the -inf mask"


def test_attention_output_matches_sdpa(model, ids):
    """Our explicit attention equals torch's fused scaled_dot_product_attention."""
    attn = model.h[1].attn
    x = torch.randn(2, 11, CFG.n_embd, generator=torch.Generator().manual_seed(2))
    ours, _ = attn(x)
    q, k, v = attn.c_attn(x).split(CFG.n_embd, dim=2)
    d = CFG.n_embd // CFG.n_head
    q, k, v = (t.view(2, 11, CFG.n_head, d).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = attn.c_proj(y.transpose(1, 2).reshape(2, 11, CFG.n_embd))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_hidden_is_residual_stream(model, ids):
    logits, _, _, hidden = model(ids)
    T = ids.shape[1]
    torch.testing.assert_close(hidden[:, 0], model.wte(ids) + model.wpe(torch.arange(T)))
    torch.testing.assert_close(logits, model.lm_head(model.ln_f(hidden[:, -1])))


def test_weights_tied_and_counted_once(model):
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
    distinct = {p.data_ptr(): p.numel() for p in model.parameters()}
    assert model.num_params() == sum(distinct.values())


def test_prefix_invariance(model, ids):
    """Causality end to end: the first t positions' outputs ignore later tokens."""
    full = model(ids)[0]
    prefix = model(ids[:, :5])[0]
    torch.testing.assert_close(full[:, :5], prefix, atol=1e-5, rtol=1e-5)


def test_generate_is_greedy(model, ids):
    out = model.generate(ids[:1, :4], 3)
    assert out.shape == (1, 7)
    step1 = model(out[:, :4])[0][0, -1].argmax()
    assert out[0, 4] == step1
