"""The LLaMA recipe of models/gpt.py (RMSNorm, rotary positions, SwiGLU, grouped-query
attention, no biases) against Hugging Face's ``LlamaForCausalLM``, built from a config with
eager attention and given our weights: the same logits and attention probabilities."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from models.gpt import GPT, GPTConfig


def llama_recipe(n_kv_head: int, n_head: int = 4, n_embd: int = 32, **kw) -> GPTConfig:
    recipe = dict(
        vocab_size=97,
        block_size=48,
        n_layer=2,
        n_head=n_head,
        n_embd=n_embd,
        bias=False,
        norm="rmsnorm",
        positions="rope",
        mlp="swiglu",
        n_kv_head=n_kv_head,
    )
    return GPTConfig(**{**recipe, **kw})


def as_hf(model: GPT) -> LlamaForCausalLM:
    """A LlamaForCausalLM of the same shape, holding our model's weights."""
    c = model.config
    hf = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.n_embd,
            intermediate_size=c.hidden,
            num_hidden_layers=c.n_layer,
            num_attention_heads=c.n_head,
            num_key_value_heads=c.kv_heads,
            head_dim=c.head_dim,
            max_position_embeddings=c.block_size,
            rms_norm_eps=c.layer_norm_eps,
            rope_theta=c.rope_base,
            tie_word_embeddings=True,
            attention_bias=False,
            mlp_bias=False,
            attn_implementation="eager",
        )
    ).eval()
    kv = c.kv_heads * c.head_dim
    with torch.no_grad():
        hf.model.embed_tokens.weight.copy_(model.wte.weight)
        hf.model.norm.weight.copy_(model.ln_f.weight)
        for ours, theirs in zip(model.h, hf.model.layers, strict=True):
            q, k, v = ours.attn.c_attn.weight.split([c.n_embd, kv, kv], dim=0)
            theirs.self_attn.q_proj.weight.copy_(q)
            theirs.self_attn.k_proj.weight.copy_(k)
            theirs.self_attn.v_proj.weight.copy_(v)
            theirs.self_attn.o_proj.weight.copy_(ours.attn.c_proj.weight)
            theirs.input_layernorm.weight.copy_(ours.ln_1.weight)
            theirs.post_attention_layernorm.weight.copy_(ours.ln_2.weight)
            theirs.mlp.gate_proj.weight.copy_(ours.mlp.c_gate.weight)
            theirs.mlp.up_proj.weight.copy_(ours.mlp.c_fc.weight)
            theirs.mlp.down_proj.weight.copy_(ours.mlp.c_proj.weight)
    return hf


@pytest.mark.parametrize(
    "n_kv_head, n_head, n_embd",
    [(2, 4, 32), (1, 4, 32), (4, 4, 32), (1, 2, 20)],  # GQA, MQA, MHA, an odd-sized head
    ids=["gqa", "mqa", "mha", "head-10"],
)
def test_the_llama_recipe_is_hugging_faces_llama(n_kv_head, n_head, n_embd):
    torch.manual_seed(0)
    ours = GPT(llama_recipe(n_kv_head, n_head, n_embd)).eval()
    # weights away from the init's near-zero values, so every part matters
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf = as_hf(ours)
    ids = torch.randint(0, 97, (2, 48))
    with torch.no_grad():
        logits, scores, probs, hidden = ours(ids)
        out = hf(ids, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=0)
    theirs = torch.stack(out.attentions, 1)  # (B, L, H, T, T)
    torch.testing.assert_close(probs, theirs, atol=1e-4, rtol=0)
    # the residual stream entering each block is the same too (Hugging Face's last hidden
    # state is after the final norm, so it is left out)
    torch.testing.assert_close(
        hidden[:, :-1], torch.stack(out.hidden_states[:-1], 1), atol=1e-4, rtol=0
    )
    assert torch.isfinite(scores).all()


def test_the_recipes_differ_where_they_should():
    gpt = GPT(GPTConfig(vocab_size=97, block_size=16, n_layer=1, n_head=4, n_embd=32))
    llama = GPT(llama_recipe(2))
    names = {n for n, _ in gpt.named_parameters()}
    lnames = {n for n, _ in llama.named_parameters()}
    assert "wpe.weight" in names and "wpe.weight" not in lnames  # rotary: no position table
    assert not any(n.endswith(".bias") for n in lnames)
    assert "h.0.mlp.c_gate.weight" in lnames and "h.0.mlp.c_gate.weight" not in names
    # grouped-query attention: q is n_embd wide, k and v n_kv_head·head_dim each
    assert llama.h[0].attn.c_attn.weight.shape == (32 + 2 * 2 * 8, 32)
    # LLaMA's SwiGLU width: 2/3 of 4·C, rounded up to a multiple of 32
    assert llama.config.hidden == 32 * math.ceil(int(2 * 4 * 32 / 3) / 32) == 96


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(norm="batchnorm"), "norm must be one of"),
        (dict(n_kv_head=3), "multiple of n_kv_head"),
        (dict(n_embd=36, n_head=4, n_kv_head=1), "even head size"),
    ],
)
def test_a_config_it_cannot_build_is_refused_with_its_setting(bad, words):
    with pytest.raises(ValueError, match=words):
        llama_recipe(**{"n_kv_head": 2, **bad})


@pytest.mark.parametrize("n_kv_head", [2, 1], ids=["gqa", "mqa"])
def test_the_llama_recipe_exports_to_onnx_with_its_outputs(tmp_path, n_kv_head):
    """The same export as anatomy-gpt's: ONNX Runtime gives torch's named outputs within the
    build's tolerance at T = 1, half the block and the whole block, the rotation's own
    (q and k before RoPE) and SwiGLU's gate among them."""
    from models.export import PARITY_TOLERANCE, export_onnx, parity

    torch.manual_seed(0)
    model = GPT(llama_recipe(n_kv_head)).eval()
    worst = parity(model, export_onnx(model, tmp_path / "llama.onnx"))
    assert {"logits", "attn_scores", "attn_probs", "hidden"} < set(worst)
    assert {"q_before_rope", "k_before_rope", "mlp_gate"} < set(worst)
    assert max(worst.values()) <= PARITY_TOLERANCE, worst


def tiny_llama(n_kv_head: int, **kw) -> LlamaForCausalLM:
    """A random Llama checkpoint the test makes (no download), tied embeddings."""
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=89,
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=n_kv_head,
        max_position_embeddings=40,
        rms_norm_eps=1e-6,
        rope_theta=500.0,
        tie_word_embeddings=True,
        attn_implementation="eager",
        **kw,
    )
    hf = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return hf


@pytest.mark.parametrize("n_kv_head", [2, 1, 4], ids=["gqa", "mqa", "mha"])
def test_a_llama_checkpoint_converted_into_our_module_is_the_same_model(n_kv_head):
    from models.llama_hf import config_from_llama, load_llama

    hf = tiny_llama(n_kv_head)
    ours = GPT(config_from_llama(hf.config.to_dict())).eval()
    load_llama(ours, hf.state_dict())
    ids = torch.randint(0, 89, (2, 40))
    with torch.no_grad():
        logits, _scores, probs, _hidden = ours(ids)
        out = hf(ids, output_attentions=True)
    torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(probs, torch.stack(out.attentions, 1), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_scaling"),
        (dict(rope_parameters={"rope_type": "linear", "factor": 2.0}), "rope_parameters"),
        (dict(tie_word_embeddings=False), "tie_word_embeddings"),
        (dict(attention_bias=True), "attention_bias"),
        (dict(hidden_act="gelu"), "hidden_act"),
        (dict(model_type="mamba"), "model_type"),
    ],
)
def test_a_llama_setting_our_module_cannot_represent_is_named(change, words):
    from models.llama_hf import config_from_llama

    raw = {**tiny_llama(2).config.to_dict(), **change}
    with pytest.raises(ValueError, match=words):
        config_from_llama(raw)
