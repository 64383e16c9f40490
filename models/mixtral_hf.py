"""Our mixture-of-experts model (models/gpt.py, ``mlp="moe"``) as Hugging Face's
``MixtralForCausalLM``: the oracle the MoE recipe is checked against (build and test time;
needs transformers, downloads nothing).

- ``mixtral_config(config)`` is the ``MixtralConfig`` of the same shape: experts, top-k and
  the load-balancing coefficient, RoPE base, RMSNorm eps, tied embeddings, no sliding window,
  no attention dropout, no router jitter; eager attention and the eager experts loop (the
  readable implementations, not the fused kernels);
- ``as_mixtral(model)`` builds that model and copies our weights into it.

Where the weights go. Our attention's one ``c_attn`` is Mixtral's q, k and v projections
stacked; our router is its ``mlp.gate``. transformers 5 stores a layer's experts as two 3-D
parameters, ``mlp.experts.gate_up_proj`` (E, 2·I, C): each expert's gate (Mixtral's w1, our
``c_gate``) then its up projection (w3, our ``c_fc``), and ``mlp.experts.down_proj`` (E, C, I)
(w2, our ``c_proj``). Older transformers kept a ModuleList of w1/w2/w3 per expert under
``block_sparse_moe``; that layout is refused with the version named rather than guessed at.
"""

from __future__ import annotations

import torch
import transformers
from transformers import MixtralConfig, MixtralForCausalLM

from models.gpt import GPT, GPTConfig


def mixtral_config(config: GPTConfig) -> MixtralConfig:
    """The ``MixtralConfig`` of a model of ``config``; ValueError for a config that Mixtral
    does not build (a dense MLP, LayerNorm, learned positions, biases, Post-LN)."""
    wanted = {
        "mlp": "moe",
        "norm": "rmsnorm",
        "positions": "rope",
        "bias": False,
        "qkv_bias": False,
        "norm_position": "pre",
    }
    if wrong := {k: getattr(config, k) for k, v in wanted.items() if getattr(config, k) != v}:
        raise ValueError(f"Mixtral has {wanted}; this config has {wrong}")
    return MixtralConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.n_embd,
        intermediate_size=config.hidden,  # each expert's width
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.kv_heads,
        head_dim=config.head_dim,
        hidden_act="silu",
        max_position_embeddings=config.block_size,
        rms_norm_eps=config.layer_norm_eps,
        rope_theta=config.rope_base,
        tie_word_embeddings=True,
        sliding_window=None,
        attention_dropout=0.0,
        num_local_experts=config.n_expert,
        num_experts_per_tok=config.expert_top_k,
        router_aux_loss_coef=config.router_aux_loss_coef,
        router_jitter_noise=0.0,
        attn_implementation="eager",
        experts_implementation="eager",
    )


def as_mixtral(model: GPT) -> MixtralForCausalLM:
    """A ``MixtralForCausalLM`` of ``model``'s shape holding ``model``'s weights, in eval mode."""
    c = model.config
    hf = MixtralForCausalLM(mixtral_config(c)).eval()
    kv = c.kv_heads * c.head_dim
    with torch.no_grad():
        hf.model.embed_tokens.weight.copy_(model.wte.weight)  # the LM head is tied to it
        hf.model.norm.weight.copy_(model.ln_f.weight)
        for ours, theirs in zip(model.h, hf.model.layers, strict=True):
            q, k, v = ours.attn.c_attn.weight.split([c.n_embd, kv, kv], dim=0)
            theirs.self_attn.q_proj.weight.copy_(q)
            theirs.self_attn.k_proj.weight.copy_(k)
            theirs.self_attn.v_proj.weight.copy_(v)
            theirs.self_attn.o_proj.weight.copy_(ours.attn.c_proj.weight)
            theirs.input_layernorm.weight.copy_(ours.ln_1.weight)
            theirs.post_attention_layernorm.weight.copy_(ours.ln_2.weight)
            experts = getattr(theirs.mlp, "experts", None)
            if not hasattr(experts, "gate_up_proj"):
                raise NotImplementedError(
                    f"transformers {transformers.__version__} does not store Mixtral's experts "
                    "as mlp.experts.gate_up_proj / down_proj (transformers 5's layout)"
                )
            theirs.mlp.gate.weight.copy_(ours.mlp.router.weight)
            for e, expert in enumerate(ours.mlp.experts):
                gate_up = torch.cat([expert.c_gate.weight, expert.c_fc.weight], dim=0)
                experts.gate_up_proj[e].copy_(gate_up)
                experts.down_proj[e].copy_(expert.c_proj.weight)
    if hf.lm_head.weight.data_ptr() != hf.model.embed_tokens.weight.data_ptr():
        raise AssertionError("MixtralForCausalLM did not tie its LM head to the embedding")
    return hf
