"""A Hugging Face Llama checkpoint as our module's LLaMA recipe (models/gpt.py).

``config_from_llama(raw)`` reads a ``config.json`` dict (model_type llama or mistral) and
refuses, naming the setting, what the module cannot represent; ``load_llama(model, state)``
fills our module from a ``LlamaForCausalLM`` state dict: q, k and v go into one projection,
gate and up into the SwiGLU's two input layers.
"""

from __future__ import annotations

from typing import Any

import torch

from models.gpt import GPT, GPTConfig

MODEL_TYPES = ("llama", "mistral")


def config_from_llama(raw: dict, source: str = "config.json") -> GPTConfig:
    """Our ``GPTConfig`` for a Llama-family config dict; ValueError names what we refuse."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source} must hold a JSON object, got {type(raw).__name__}")
    if raw.get("model_type") not in MODEL_TYPES:
        raise ValueError(
            f"{source}: model_type is {raw.get('model_type')!r}; "
            f"this importer reads {', '.join(MODEL_TYPES)}"
        )

    def refuse(key: str, why: str) -> None:
        raise ValueError(f"{source}: {key}={raw.get(key)!r} is not supported; {why}")

    # transformers 5 writes rope_parameters {rope_type, rope_theta, ...}; older configs
    # rope_theta and rope_scaling
    rope = raw.get("rope_parameters") or {}
    if raw.get("rope_scaling") not in (None, {}):
        refuse("rope_scaling", "our rotary positions are unscaled (rope_scaling: null)")
    if rope.get("rope_type", "default") != "default":
        refuse("rope_parameters", "our rotary positions are unscaled (rope_type 'default')")
    theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
    if not raw.get("tie_word_embeddings", False):
        refuse("tie_word_embeddings", "our LM head is the token embedding (tied)")
    for key in ("attention_bias", "mlp_bias"):
        if raw.get(key):
            refuse(key, "the LLaMA recipe has no biases")
    if raw.get("hidden_act", "silu") != "silu":
        refuse("hidden_act", "our SwiGLU gates with SiLU")
    if raw.get("sliding_window") not in (None, 0):
        refuse("sliding_window", "our attention is causal over the whole block")
    n_embd, n_head = _int(raw, "hidden_size", source), _int(raw, "num_attention_heads", source)
    head_dim = raw.get("head_dim") or n_embd // n_head
    if head_dim * n_head != n_embd:
        refuse("head_dim", "our heads split hidden_size evenly (head_dim × heads = hidden_size)")
    eps: Any = raw.get("rms_norm_eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        refuse("rms_norm_eps", "it must be a small positive number")
    return GPTConfig(
        vocab_size=_int(raw, "vocab_size", source),
        block_size=_int(raw, "max_position_embeddings", source),
        n_layer=_int(raw, "num_hidden_layers", source),
        n_head=n_head,
        n_embd=n_embd,
        bias=False,
        layer_norm_eps=float(eps),
        norm="rmsnorm",
        positions="rope",
        rope_base=float(theta),
        mlp="swiglu",
        n_kv_head=_int(raw, "num_key_value_heads", source, default=n_head),
        mlp_hidden=_int(raw, "intermediate_size", source),
    )


def _int(raw: dict, key: str, source: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{source}: {key} must be a positive integer, got {value!r}")
    return value


def load_llama(model: GPT, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Fill ``model`` (built by ``config_from_llama``) from a LlamaForCausalLM state dict,
    strictly: a missing, extra or wrongly shaped tensor is a ValueError naming it."""
    state = {k.removeprefix("model."): v for k, v in state.items()}
    ours: dict[str, torch.Tensor] = {
        "wte.weight": state.pop("embed_tokens.weight", None),
        "ln_f.weight": state.pop("norm.weight", None),
    }
    head = state.pop("lm_head.weight", None)
    for i in range(model.config.n_layer):
        p, h = f"layers.{i}.", f"h.{i}."

        def take(name: str, p: str = p) -> torch.Tensor | None:
            return state.pop(p + name, None)

        qkv = [take(f"self_attn.{x}_proj.weight") for x in "qkv"]
        ours[h + "attn.c_attn.weight"] = None if None in qkv else torch.cat(qkv, 0)
        ours[h + "attn.c_proj.weight"] = take("self_attn.o_proj.weight")
        ours[h + "ln_1.weight"] = take("input_layernorm.weight")
        ours[h + "ln_2.weight"] = take("post_attention_layernorm.weight")
        ours[h + "mlp.c_gate.weight"] = take("mlp.gate_proj.weight")
        ours[h + "mlp.c_fc.weight"] = take("mlp.up_proj.weight")
        ours[h + "mlp.c_proj.weight"] = take("mlp.down_proj.weight")
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    if missing := sorted(k for k, v in ours.items() if v is None):
        raise ValueError(f"{source}: missing the tensors for {', '.join(missing[:8])}")
    if state:
        raise ValueError(
            f"{source}: tensors our module has no place for: {', '.join(sorted(state)[:8])}"
        )
    if head is not None and not torch.equal(head, ours["wte.weight"]):
        raise ValueError(f"{source}: lm_head.weight differs from the embedding (untied)")
    ours["lm_head.weight"] = ours["wte.weight"]
    shapes = model.state_dict()
    if wrong := [k for k, v in ours.items() if v.shape != shapes[k].shape]:
        raise ValueError(f"{source}: wrong shape for {', '.join(wrong[:8])}")
    with torch.no_grad():
        model.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
