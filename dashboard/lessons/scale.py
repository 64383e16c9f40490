"""A calculator for real models: parameters, memory and FLOPs from a published config.json.

Pure Python in, integers out. A configuration is a dict with the keys of a Hugging Face
``config.json`` as the published files spell them (``hidden_size``, ``num_key_value_heads``,
... for the LLaMA family; ``n_embd``, ``n_layer``, ... for GPT-2), so a student can paste one in
or start from a preset and edit any field. From it:

- ``count_params``: every weight matrix, bias and norm vector, by component;
- ``weight_bytes``: those parameters stored in fp32, fp16, bf16, int8 or int4;
- ``kv_cache_bytes``: what decoding keeps per token: one key and one value vector per layer and
  key/value head (grouped-query attention shrinks it by sharing K/V heads);
- ``training_bytes``: weights, gradients and Adam's two moments, with and without mixed
  precision;
- ``flops_per_token``: the forward pass's matrix multiplications, Kaplan et al.'s 2N + the
  attention term.

The counts follow Hugging Face's model classes (``GPT2LMHeadModel``, ``LlamaForCausalLM``,
``MistralForCausalLM``, ``MixtralForCausalLM``, ``Qwen2ForCausalLM``) exactly; the tests build
each preset on the meta device and compare integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GPT2 = "gpt2"
# LLaMA and its descendants: RMSNorm, rotary positions (no position table), a SwiGLU MLP of
# three matrices, separate q/k/v/o projections with possibly fewer key/value heads.
LLAMA_FAMILY = ("llama", "mistral", "mixtral", "qwen2")
MODEL_TYPES = (GPT2, *LLAMA_FAMILY)

# Published configurations, keys and values as in each model's config.json on the Hugging Face
# Hub (the fields that shape the model; token ids, dtypes and dropout rates left out). Where a
# file leaves a key out, Hugging Face's default applies: GPT-2 ties its LM head to the token
# embedding, the LLaMA family does not unless it says so.
SOURCES = {
    "GPT-2 small": "openai-community/gpt2",
    "GPT-2 medium": "openai-community/gpt2-medium",
    "GPT-2 large": "openai-community/gpt2-large",
    "GPT-2 XL": "openai-community/gpt2-xl",
    "Llama 2 7B": "meta-llama/Llama-2-7b-hf",
    "Llama 2 13B": "meta-llama/Llama-2-13b-hf",
    "Llama 2 70B": "meta-llama/Llama-2-70b-hf",
    "Llama 3 8B": "meta-llama/Meta-Llama-3-8B",
    "Mistral 7B v0.1": "mistralai/Mistral-7B-v0.1",
    "Mixtral 8x7B": "mistralai/Mixtral-8x7B-v0.1",
    "Qwen2 0.5B": "Qwen/Qwen2-0.5B",
}


def _gpt2(n_embd: int, n_layer: int, n_head: int) -> dict:
    return {
        "model_type": "gpt2",
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_ctx": 1024,
        "n_embd": n_embd,
        "n_layer": n_layer,
        "n_head": n_head,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-05,
    }


def _llama2(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int) -> dict:
    return {
        "model_type": "llama",
        "vocab_size": 32000,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-05,
        "tie_word_embeddings": False,
    }


PRESETS: dict[str, dict] = {
    "GPT-2 small": _gpt2(768, 12, 12),
    "GPT-2 medium": _gpt2(1024, 24, 16),
    "GPT-2 large": _gpt2(1280, 36, 20),
    "GPT-2 XL": _gpt2(1600, 48, 25),
    "Llama 2 7B": _llama2(4096, 11008, 32, 32, 32),
    "Llama 2 13B": _llama2(5120, 13824, 40, 40, 40),
    # the 70B is the Llama 2 that uses grouped-query attention: 64 query heads, 8 K/V heads
    "Llama 2 70B": _llama2(8192, 28672, 80, 64, 8),
    "Llama 3 8B": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 8192,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "attention_bias": False,
        "tie_word_embeddings": False,
    },
    "Mistral 7B v0.1": {
        "model_type": "mistral",
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 32768,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "sliding_window": 4096,
        "tie_word_embeddings": False,
    },
    "Mixtral 8x7B": {
        "model_type": "mixtral",
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "max_position_embeddings": 32768,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "router_aux_loss_coef": 0.02,
        "tie_word_embeddings": False,
    },
    # Qwen2's q, k and v projections always carry biases (its o projection none); the config
    # has no key for it, the model class hard-codes it.
    "Qwen2 0.5B": {
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_position_embeddings": 131072,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "use_sliding_window": False,
        "max_window_layers": 24,
        "tie_word_embeddings": True,
    },
}

# Bytes per stored parameter. int4 packs two parameters into a byte.
BYTES_PER_PARAM: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 0.5}


# ---------------------------------------------------------------------------------------------
# checking a config: every bad field gets a sentence naming it, never a traceback

_REQUIRED = {
    GPT2: ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions"),
    "llama": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    ),
}
_REQUIRED["mistral"] = _REQUIRED["qwen2"] = _REQUIRED["llama"]
_REQUIRED["mixtral"] = (*_REQUIRED["llama"], "num_local_experts", "num_experts_per_tok")
# whole numbers that may be left out (or null): Hugging Face then derives them
_OPTIONAL = {
    GPT2: ("n_inner",),
    "llama": ("num_key_value_heads", "head_dim", "max_position_embeddings"),
}
_OPTIONAL["mistral"] = _OPTIONAL["qwen2"] = _OPTIONAL["mixtral"] = _OPTIONAL["llama"]
_FLAGS = ("tie_word_embeddings", "attention_bias", "mlp_bias")


def fields(model_type: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """What a person may edit in a config of ``model_type``: its required whole-number fields,
    those that may be left empty (Hugging Face then derives them) and the true/false switches
    that the counts read (the bias switches are LLaMA's own; Mistral, Mixtral and Qwen2 ignore
    them). ValueError for an unknown ``model_type``."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type: {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    optional = _OPTIONAL[GPT2 if model_type == GPT2 else "llama"]
    switches = _FLAGS if model_type == "llama" else ("tie_word_embeddings",)
    return _REQUIRED[model_type], optional, switches


def switches(config: dict) -> dict[str, bool]:
    """The value each of the config's switches (``fields``) takes in the counts, Hugging
    Face's default where the config leaves it out: GPT-2 ties its LM head to the token
    embedding unless told not to, the LLaMA family does not unless told to; no biases."""
    model_type = config.get("model_type")
    out = {}
    for name in fields(model_type)[2]:
        if name == "tie_word_embeddings" and model_type == GPT2:
            out[name] = config.get(name, True) is not False
        else:
            out[name] = config.get(name) is True
    return out


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def whole(value) -> int | None:
    """``value`` as an int if it is a whole number (12 or 12.0), else None. A bool is not a
    count, though Python treats it as one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _field(config: dict, name: str, messages: list[str], required: bool) -> int | None:
    """Check one count field, appending the reason it is bad; its int value if it is good."""
    if name not in config or _empty(config[name]):
        if required:
            messages.append(f"{name}: {'missing' if name not in config else 'empty'}")
        return None
    value = config[name]
    number = whole(value)
    if number is None:
        messages.append(f"{name}: must be a whole number, not {value!r}")
    elif number <= 0:
        messages.append(f"{name}: must be positive, not {number}")
    else:
        return number
    return None


def validate(config: dict) -> list[str]:
    """Every problem with ``config``, one message per bad field, each starting with the field's
    name: missing or empty, not a whole number, zero or negative, attention heads that do not
    divide the width, key/value heads that do not divide the query heads, more experts per token
    than experts. An empty list means every function here accepts it."""
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        return [f"model_type: {model_type!r} is not one of {', '.join(MODEL_TYPES)}"]
    messages: list[str] = []
    values = {name: _field(config, name, messages, True) for name in _REQUIRED[model_type]}
    optional = _OPTIONAL[GPT2 if model_type == GPT2 else "llama"]
    values.update({name: _field(config, name, messages, False) for name in optional})
    for name in _FLAGS:
        if name in config and config[name] is not None and not isinstance(config[name], bool):
            messages.append(f"{name}: must be true or false, not {config[name]!r}")

    if model_type == GPT2:
        width, heads = values["n_embd"], values["n_head"]
        if width and heads and width % heads:
            messages.append(f"n_head: {heads} heads do not divide n_embd = {width}")
        return messages

    width, heads = values["hidden_size"], values["num_attention_heads"]
    # an explicit head_dim frees the heads from the width (q projects to heads·head_dim)
    if width and heads and values["head_dim"] is None and width % heads:
        messages.append(f"num_attention_heads: {heads} heads do not divide hidden_size = {width}")
    kv_heads = values["num_key_value_heads"]
    if heads and kv_heads and heads % kv_heads:
        messages.append(
            f"num_key_value_heads: {kv_heads} key/value heads do not divide "
            f"num_attention_heads = {heads}"
        )
    if model_type == "mixtral":
        experts, active = values["num_local_experts"], values["num_experts_per_tok"]
        if experts and active and active > experts:
            messages.append(
                f"num_experts_per_tok: {active} is more than num_local_experts = {experts}"
            )
    return messages


# ---------------------------------------------------------------------------------------------
# one shape for every family, read from the family's own key names


@dataclass(frozen=True)
class Shape:
    """The numbers that size a decoder, whatever the family calls them."""

    model_type: str
    vocab: int
    width: int  # d_model: hidden_size / n_embd
    layers: int
    heads: int  # query heads
    kv_heads: int  # key/value heads (= heads for multi-head attention)
    head_dim: int
    ffn: int  # the MLP's inner width (one expert's, for a mixture of experts)
    positions: int  # rows of a learned position table; 0 for rotary positions
    tied: bool  # LM head shares the token embedding's matrix
    experts: int = 1  # experts per MLP (1: a dense MLP)
    active_experts: int = 1  # experts each token passes through

    @property
    def d_attn(self) -> int:
        """Width of the concatenated query heads (Kaplan et al.'s d_attn)."""
        return self.heads * self.head_dim


def shape_of(config: dict) -> Shape:
    """The config's shape, after ``validate``; ValueError with every message if it fails."""
    messages = validate(config)
    if messages:
        raise ValueError("; ".join(messages))

    def field(name: str, default: int | None = None) -> int:
        value = config.get(name)
        return default if _empty(value) else whole(value)

    if config["model_type"] == GPT2:
        width, heads = field("n_embd"), field("n_head")
        return Shape(
            GPT2,
            vocab=field("vocab_size"),
            width=width,
            layers=field("n_layer"),
            heads=heads,
            kv_heads=heads,
            head_dim=width // heads,
            ffn=field("n_inner", 4 * width),  # GPT-2's MLP is 4× the width unless n_inner says
            positions=field("n_positions"),
            tied=config.get("tie_word_embeddings", True) is not False,
        )
    width, heads = field("hidden_size"), field("num_attention_heads")
    moe = config["model_type"] == "mixtral"
    return Shape(
        config["model_type"],
        vocab=field("vocab_size"),
        width=width,
        layers=field("num_hidden_layers"),
        heads=heads,
        kv_heads=field("num_key_value_heads", heads),
        head_dim=field("head_dim", width // heads),
        ffn=field("intermediate_size"),
        positions=0,
        tied=config.get("tie_word_embeddings") is True,
        experts=field("num_local_experts") if moe else 1,
        active_experts=field("num_experts_per_tok") if moe else 1,
    )


# ---------------------------------------------------------------------------------------------
# parameters


def count_params(config: dict) -> dict[str, int]:
    """Parameters by component, summed over the layers, and their ``total``.

    Components: ``embeddings`` (the token table), ``position_embeddings`` (GPT-2's learned
    table; rotary models have none), ``attention`` (q, k, v and output projections with their
    biases), ``mlp`` (dense models) or ``experts`` and ``router`` (Mixtral), ``norms`` (each
    block's two and the final one; LayerNorm has a weight and a bias, RMSNorm a weight), and
    ``lm_head``, 0 when it is tied to the token embedding: a shared matrix is one set of
    parameters (as ``torch.nn.Module.parameters()`` counts it). ValueError for a config that
    ``validate`` rejects, an unknown ``model_type`` among them."""
    s = shape_of(config)
    c, q, kv = s.width, s.d_attn, s.kv_heads * s.head_dim
    counts = {"embeddings": s.vocab * c}
    if s.model_type == GPT2:
        counts["position_embeddings"] = s.positions * c
        # c_attn projects to q, k, v at once (3C outputs), c_proj back; every Conv1D has a bias
        attention = (c * 3 * c + 3 * c) + (c * c + c)
        mlp = (c * s.ffn + s.ffn) + (s.ffn * c + c)
        norm = 2 * c  # LayerNorm: weight and bias
        counts["attention"] = s.layers * attention
        counts["mlp"] = s.layers * mlp
    else:
        attention = c * q + 2 * c * kv + q * c  # q, k, v (kv heads only), o
        if s.model_type == "qwen2":
            attention += q + 2 * kv  # Qwen2: biases on q, k and v, none on o
        elif s.model_type == "llama" and config.get("attention_bias") is True:
            attention += q + 2 * kv + c  # LLaMA's attention_bias: on all four
        counts["attention"] = s.layers * attention
        # SwiGLU: gate and up (C -> ffn), down (ffn -> C)
        mlp = 3 * c * s.ffn
        if s.model_type == "llama" and config.get("mlp_bias") is True:
            mlp += 2 * s.ffn + c
        if s.model_type == "mixtral":
            counts["experts"] = s.layers * s.experts * mlp
            counts["router"] = s.layers * s.experts * c  # one logit per expert, no bias
        else:
            counts["mlp"] = s.layers * mlp
        norm = c  # RMSNorm: a weight only
    counts["norms"] = (2 * s.layers + 1) * norm
    counts["lm_head"] = 0 if s.tied else c * s.vocab  # no bias in any of these families
    counts["total"] = sum(counts.values())
    return counts


def weight_bytes(config: dict, fmt: str) -> int:
    """Bytes to store every parameter in ``fmt``: fp32 (4 per parameter), fp16 or bf16 (2),
    int8 (1) or int4 (½, rounded up to whole bytes). The integer formats here are the bare
    values: real int8/int4 schemes (bitsandbytes, GPTQ, AWQ, GGUF) also store a scale, often a
    zero point, per row or per group of weights (a few percent more) and often keep the
    embeddings and norms in 16 bits."""
    if fmt not in BYTES_PER_PARAM:
        raise ValueError(f"fmt must be one of {', '.join(BYTES_PER_PARAM)}, not {fmt!r}")
    return math.ceil(count_params(config)["total"] * BYTES_PER_PARAM[fmt])


def kv_cache_bytes(config: dict, tokens: int, batch: int = 1, bytes_per_value: float = 2) -> int:
    """Bytes of the KV cache after ``tokens`` positions for ``batch`` sequences:
    2 (a key and a value) × layers × key/value heads × head_dim × tokens × batch ×
    ``bytes_per_value`` (2 for fp16/bf16). Grouped-query attention stores only the key/value
    heads, so Llama 2 70B's 8 K/V heads for 64 query heads keep 1/8 of multi-head attention's
    cache. Every position is counted: a sliding-window model (Mistral 7B v0.1's
    ``sliding_window``) may drop positions older than its window, which this does not do."""
    for name, value in (("tokens", tokens), ("batch", batch)):
        if whole(value) is None or value < 0:
            raise ValueError(f"{name} must be a whole number ≥ 0, not {value!r}")
    if isinstance(bytes_per_value, bool) or not isinstance(bytes_per_value, (int, float)):
        raise ValueError(f"bytes_per_value must be a number, not {bytes_per_value!r}")
    if not bytes_per_value > 0:
        raise ValueError(f"bytes_per_value must be positive, not {bytes_per_value!r}")
    s = shape_of(config)
    values = 2 * s.layers * s.kv_heads * s.head_dim * int(tokens) * int(batch)
    return math.ceil(values * bytes_per_value)


def training_bytes(config: dict, mixed_precision: bool) -> dict[str, int]:
    """Memory of the model's state while training with Adam, by part, and the ``total``.

    - fp32: weights, gradients, Adam's first and second moments, 4 bytes each per parameter:
      16 bytes per parameter.
    - mixed precision (Micikevicius et al., 2018; the accounting of the ZeRO paper, Rajbhandari
      et al., 2020): fp16/bf16 weights and gradients (2 + 2) for the forward and backward
      passes, plus an fp32 master copy of the weights and Adam's two fp32 moments (4 + 4 + 4)
      for the update: also 16 bytes per parameter.

    Mixed precision does not shrink this state; what it saves is activation memory and time,
    which these figures exclude (activations depend on batch, context and checkpointing)."""
    n = count_params(config)["total"]
    if mixed_precision:
        parts = {"weights": 2 * n, "gradients": 2 * n, "master_weights": 4 * n}
    else:
        parts = {"weights": 4 * n, "gradients": 4 * n, "master_weights": 0}
    parts.update(adam_m=4 * n, adam_v=4 * n)
    parts["total"] = sum(parts.values())
    return parts


# ---------------------------------------------------------------------------------------------
# compute


def matmul_weights_per_token(config: dict) -> int:
    """Entries of the weight matrices one token is multiplied by in a forward pass: the
    attention projections, the MLP (for a mixture of experts, the router and only the
    ``num_experts_per_tok`` experts the token is sent to) and the LM head. The embedding tables
    are looked up, not multiplied (a tied LM head is multiplied as the LM head); biases and
    norms are additions, left out."""
    s = shape_of(config)
    c, q, kv = s.width, s.d_attn, s.kv_heads * s.head_dim
    if s.model_type == GPT2:
        per_layer = c * 3 * c + c * c + 2 * c * s.ffn
    else:
        per_layer = c * q + 2 * c * kv + q * c + s.active_experts * 3 * c * s.ffn
        if s.experts > 1:
            per_layer += s.experts * c
    return s.layers * per_layer + c * s.vocab


def flops_per_token(config: dict, context: int = 0) -> int:
    """Forward FLOPs per token, Kaplan et al. (2020, table 1): C ≈ 2N + 2·n_layer·n_ctx·d_attn.

    - 2N: each weight a token is multiplied by costs one multiply and one add
      (``matmul_weights_per_token``; for a mixture of experts only the active experts count,
      which is why Mixtral 8x7B runs at the cost of a ~13B dense model). Kaplan's N leaves out
      the LM head; here it is in, since it is a real matrix product every token pays.
    - 2·n_layer·n_ctx·d_attn: scores q·k and the weighted sum of values. A token that meets k
      keys costs 2·k·d_attn FLOPs for each of the two per layer; under the causal mask the
      tokens of a window of ``context`` meet context/2 keys on average, which gives this term.
      Training costs about 3× the forward pass (the backward pass is two matrix products per
      forward one)."""
    if whole(context) is None or context < 0:
        raise ValueError(f"context must be a whole number ≥ 0, not {context!r}")
    s = shape_of(config)
    return 2 * matmul_weights_per_token(config) + 2 * s.layers * int(context) * s.d_attn


# ---------------------------------------------------------------------------------------------
# our own models


def _swiglu_width(n_embd: int, multiple_of: int) -> int:
    """LLaMA's rule for the SwiGLU width (as models/gpt.py applies it): 2/3 of 4·C, rounded up
    to a multiple of ``multiple_of``, so three matrices hold about as much as GELU's two."""
    width = int(2 * 4 * n_embd / 3)
    return multiple_of * -(-width // multiple_of)


def our_preset(manifest_config: dict) -> dict:
    """Our model's config (``static/manifest.json``: ``n_embd``, ``n_layer``, ``norm``, ...) as
    the Hugging Face config of the class with the same weights: the GPT recipe (LayerNorm,
    learned positions, GELU, biases) as ``gpt2``; the LLaMA recipe (RMSNorm, RoPE, SwiGLU) as
    ``llama``, or ``qwen2`` when only q, k and v carry biases; with a mixture of experts for
    its MLP (``mlp="moe"``) as ``mixtral``. Our LM head is always tied to the
    token embedding. ValueError for a mix of the two recipes, which no Hugging Face class
    builds."""
    m = manifest_config
    n_embd, n_head = m["n_embd"], m["n_head"]
    recipe = (m.get("norm", "layernorm"), m.get("positions", "learned"), m.get("mlp", "gelu"))
    if recipe == ("layernorm", "learned", "gelu"):
        if not m.get("bias", True):
            raise ValueError("GPT-2 always has biases; a bias-free GPT has no Hugging Face class")
        approximate = m.get("gelu_approximate", "none")
        return {
            "model_type": "gpt2",
            "vocab_size": m["vocab_size"],
            "n_positions": m["block_size"],
            "n_embd": n_embd,
            "n_layer": m["n_layer"],
            "n_head": n_head,
            "n_inner": m.get("mlp_hidden"),  # None: 4·n_embd, in both
            "activation_function": "gelu_new" if approximate == "tanh" else "gelu",
            "layer_norm_epsilon": m.get("layer_norm_eps", 1e-5),
            "tie_word_embeddings": True,
        }
    if recipe in (("rmsnorm", "rope", "swiglu"), ("rmsnorm", "rope", "moe")):
        bias, qkv_bias = bool(m.get("bias")), bool(m.get("qkv_bias"))
        hidden = m.get("mlp_hidden") or _swiglu_width(n_embd, m.get("multiple_of", 32))
        config = {
            "model_type": "qwen2" if qkv_bias and not bias else "llama",
            "vocab_size": m["vocab_size"],
            "hidden_size": n_embd,
            "intermediate_size": hidden,
            "num_hidden_layers": m["n_layer"],
            "num_attention_heads": n_head,
            "num_key_value_heads": m.get("n_kv_head") or n_head,
            "head_dim": n_embd // n_head,
            "max_position_embeddings": m["block_size"],
            "hidden_act": "silu",
            "rms_norm_eps": m.get("layer_norm_eps", 1e-5),
            "rope_theta": m.get("rope_base", 10000.0),
            "tie_word_embeddings": True,
        }
        if recipe[2] == "moe":  # a mixture of SwiGLU experts in every block: Mixtral
            if bias or qkv_bias:
                raise ValueError(
                    "Mixtral has no biases; a mixture of experts with them has no "
                    "Hugging Face class"
                )
            config.update(
                model_type="mixtral",
                num_local_experts=m.get("n_expert", 4),
                num_experts_per_tok=m.get("expert_top_k", 2),
                router_aux_loss_coef=m.get("router_aux_loss_coef", 0.01),
            )
        elif config["model_type"] == "llama":
            # our ``bias`` puts biases on every linear layer: LLaMA's two switches together
            config.update(attention_bias=bias, mlp_bias=bias)
        return config
    raise ValueError(
        f"norm={recipe[0]!r}, positions={recipe[1]!r}, mlp={recipe[2]!r} mixes the GPT and "
        "LLaMA recipes; no Hugging Face class builds it"
    )
