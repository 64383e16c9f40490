"""The calculator for real models, against Hugging Face's own classes and torch's measurements.

Parameter counts: every preset built on the meta device (no weights, no download) and counted
by ``parameters()``; memory: the bytes of real tensors (a model's ``past_key_values``, Adam's
state after a step); FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over real forwards.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig, AutoModelForCausalLM

from dashboard.lessons import scale
from models.runtime import STATIC_DIR

# the size each preset's name claims (Mixtral's as Mistral announced it): the exact count is
# Hugging Face's, this only catches a preset that is the wrong model altogether
NOMINAL = {
    "GPT-2 small": 124e6,
    "GPT-2 medium": 355e6,
    "GPT-2 large": 774e6,
    "GPT-2 XL": 1.5e9,
    "Llama 2 7B": 7e9,
    "Llama 2 13B": 13e9,
    "Llama 2 70B": 70e9,
    "Llama 3 8B": 8e9,
    "Mistral 7B v0.1": 7e9,
    "Mixtral 8x7B": 46.7e9,
    "Qwen2 0.5B": 0.5e9,
}


def _hf_config(config: dict):
    return AutoConfig.for_model(**config)


def _meta_model(config: dict) -> torch.nn.Module:
    """The Hugging Face model of ``config`` with every tensor on the meta device: shapes
    only, so a 70B model costs nothing."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(_hf_config(config))


def _real_model(config: dict, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        _hf_config(config), attn_implementation="eager", experts_implementation="eager"
    )
    return model.to(dtype).eval()


def _component(name: str) -> str:
    """Which part of the model a Hugging Face parameter name belongs to (both naming schemes:
    GPT-2's transformer.h.i.attn / .mlp / ln_*, LLaMA's model.layers.i.self_attn / .mlp /
    *_layernorm)."""
    if name.startswith("lm_head."):
        return "lm_head"
    if name.endswith(("wte.weight", "embed_tokens.weight")):
        return "embeddings"
    if name.endswith("wpe.weight"):
        return "position_embeddings"
    if ".attn." in name or ".self_attn." in name:
        return "attention"
    if ".mlp.gate." in name:  # Mixtral's router: one logit per expert
        return "router"
    if ".mlp.experts." in name:
        return "experts"
    if ".mlp." in name:
        return "mlp"
    if "ln_" in name or "layernorm" in name or name.endswith("norm.weight"):
        return "norms"
    raise AssertionError(f"unexpected parameter {name}")


def _hf_counts(model: torch.nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():  # a tied matrix is listed once, under wte
        counts[_component(name)] = counts.get(_component(name), 0) + p.numel()
    return counts


TINY = {
    "gpt2": {
        "model_type": "gpt2",
        "vocab_size": 97,
        "n_positions": 32,
        "n_embd": 48,
        "n_layer": 2,
        "n_head": 4,
    },
    "llama": {
        "model_type": "llama",
        "vocab_size": 97,
        "hidden_size": 64,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": False,
    },
    "mistral": {
        "model_type": "mistral",
        "vocab_size": 97,
        "hidden_size": 64,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 1,  # multi-query attention
        "tie_word_embeddings": False,
    },
    "mixtral": {
        "model_type": "mixtral",
        "vocab_size": 97,
        "hidden_size": 64,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "tie_word_embeddings": False,
    },
    "qwen2": {
        "model_type": "qwen2",
        "vocab_size": 97,
        "hidden_size": 64,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    },
}


# ---------------------------------------------------------------------------------------------
# parameters


@pytest.mark.parametrize("name", list(scale.PRESETS))
def test_every_preset_counts_exactly_what_hugging_face_builds(name):
    config = scale.PRESETS[name]
    model = _meta_model(config)
    counts = scale.count_params(config)
    total = sum(p.numel() for p in model.parameters())
    assert counts["total"] == total
    assert abs(total / NOMINAL[name] - 1) < 0.05
    hf = _hf_counts(model)
    ours = {k: v for k, v in counts.items() if k != "total" and v}
    assert ours == hf
    # a tied head is the embedding's own tensor: counted once, as lm_head = 0
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert (counts["lm_head"] == 0) == tied


@pytest.mark.parametrize(
    "change",
    [
        {"attention_bias": True},
        {"mlp_bias": True},
        {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True},
        {"head_dim": 24},  # 4 heads of 24 on a width of 64: q projects to 96
        {"num_key_value_heads": None},  # left out: one K/V head per query head
        {"tie_word_embeddings": None},  # left out: LLaMA's default, untied
    ],
)
def test_the_llama_switches_and_defaults_count_as_hugging_face_builds_them(change):
    config = {**TINY["llama"], **change}
    config = {k: v for k, v in config.items() if v is not None}
    model = _meta_model(config)
    assert scale.count_params(config)["total"] == sum(p.numel() for p in model.parameters())
    counts = scale.count_params(config)
    assert {k: v for k, v in counts.items() if k != "total" and v} == _hf_counts(model)


@pytest.mark.parametrize("change", [{}, {"tie_word_embeddings": False}, {"n_inner": 100}])
def test_gpt2_untied_and_a_custom_mlp_width_count_as_hugging_face_builds_them(change):
    config = {**TINY["gpt2"], **change}
    model = _meta_model(config)
    counts = scale.count_params(config)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert {k: v for k, v in counts.items() if k != "total" and v} == _hf_counts(model)


def _manifest_models() -> dict[str, dict]:
    manifest = json.loads((STATIC_DIR / "manifest.json").read_text())
    return {m["name"]: m for m in manifest["models"]}


OUR_CLASSES = {"anatomy-gpt": "gpt2", "anatomy-llama": "llama", "anatomy-moe": "mixtral"}


@pytest.mark.parametrize("name", list(OUR_CLASSES))
def test_our_models_count_their_manifest_n_params(name):
    entry = _manifest_models()[name]
    config = scale.our_preset(entry["config"])
    assert config["model_type"] == OUR_CLASSES[name]
    assert scale.count_params(config)["total"] == entry["n_params"]
    # and Hugging Face's class of the same recipe has that many parameters too. Buffers (a
    # causal mask, RoPE's inverse frequencies) are not parameters in either model.
    model = _meta_model(config)
    assert sum(p.numel() for p in model.parameters()) == entry["n_params"]
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_our_llama_recipe_with_q_k_v_biases_only_is_qwen2_and_counts_as_it():
    base = _manifest_models()["anatomy-llama"]["config"]
    config = scale.our_preset({**base, "qkv_bias": True})
    assert config["model_type"] == "qwen2"
    model = _meta_model(config)
    assert scale.count_params(config)["total"] == sum(p.numel() for p in model.parameters())
    with_all = scale.our_preset({**base, "bias": True})
    model = _meta_model(with_all)
    assert scale.count_params(with_all)["total"] == sum(p.numel() for p in model.parameters())


def test_recipes_no_hugging_face_class_builds_are_refused():
    base = _manifest_models()["anatomy-gpt"]["config"]
    with pytest.raises(ValueError, match="mixes the GPT and LLaMA recipes"):
        scale.our_preset({**base, "positions": "rope"})
    with pytest.raises(ValueError, match="always has biases"):
        scale.our_preset({**base, "bias": False})
    llama = _manifest_models()["anatomy-llama"]["config"]
    with pytest.raises(ValueError, match="Mixtral has no biases"):
        scale.our_preset({**llama, "mlp": "moe", "bias": True})


def test_an_unknown_model_type_is_named():
    with pytest.raises(ValueError, match="'bert'"):
        scale.count_params({**TINY["llama"], "model_type": "bert"})


# ---------------------------------------------------------------------------------------------
# memory


def _cache_bytes(cache) -> int:
    """Bytes of every key and value tensor a Hugging Face DynamicCache holds."""
    return sum(
        t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
    )


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "mistral"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_kv_cache_holds_as_many_bytes_as_a_real_past_key_values(model_type, dtype):
    config = TINY[model_type]
    model = _real_model(config, dtype)
    batch, tokens = 3, 5
    ids = torch.randint(0, config["vocab_size"], (batch, tokens))
    with torch.no_grad():
        out = model(ids, use_cache=True)
        measured = _cache_bytes(out.cache)
        size = torch.empty((), dtype=dtype).element_size()
        assert scale.kv_cache_bytes(config, tokens, batch, size) == measured
        # one decoding step adds one position's keys and values
        out = model(ids[:, :1], cache=out.cache, use_cache=True)
    assert scale.kv_cache_bytes(config, tokens + 1, batch, size) == _cache_bytes(out.cache)


def test_the_kv_cache_refuses_negative_sizes():
    for args in ((-1,), (4, -2), (4, 1, 0), (4, 1, "2"), (2.5,)):
        with pytest.raises(ValueError):
            scale.kv_cache_bytes(TINY["llama"], *args)


FORMATS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.int8}


@pytest.mark.parametrize("name", list(scale.PRESETS))
def test_weight_bytes_are_the_parameters_in_each_format(name):
    config = scale.PRESETS[name]
    params = list(_meta_model(config).parameters())
    for fmt, dtype in FORMATS.items():
        want = sum(p.numel() * torch.empty((), dtype=dtype).element_size() for p in params)
        assert scale.weight_bytes(config, fmt) == want
    # int4: two parameters per byte, an odd one out still takes a byte
    assert scale.weight_bytes(config, "int4") == -(-sum(p.numel() for p in params) // 2)
    with pytest.raises(ValueError, match="fp8"):
        scale.weight_bytes(config, "fp8")


def _state_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _adam_moment_bytes(optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    # Adam also keeps a scalar step count per tensor: not per parameter, left out
    states = optimizer.state.values()
    return (
        _state_bytes(s["exp_avg"] for s in states),
        _state_bytes(s["exp_avg_sq"] for s in states),
    )


def _one_step(model: torch.nn.Module, vocab: int) -> None:
    ids = torch.randint(0, vocab, (2, 6))
    model(ids, labels=ids).loss.backward()


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "mixtral"])
def test_fp32_training_state_is_what_adam_keeps_after_a_step(model_type):
    config = TINY[model_type]
    model = _real_model(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _one_step(model, config["vocab_size"])
    optimizer.step()
    m, v = _adam_moment_bytes(optimizer)
    got = scale.training_bytes(config, mixed_precision=False)
    assert got["weights"] == _state_bytes(model.parameters())
    assert got["gradients"] == _state_bytes(p.grad for p in model.parameters())
    assert (got["master_weights"], got["adam_m"], got["adam_v"]) == (0, m, v)
    assert got["total"] == got["weights"] + got["gradients"] + m + v


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_mixed_precision_state_is_bf16_weights_and_grads_and_fp32_master_and_moments(model_type):
    """The mixed-precision recipe built by hand: a bf16 copy runs forward and backward, the
    optimizer updates fp32 master weights from its gradients."""
    config = TINY[model_type]
    model = _real_model(config, torch.bfloat16).train()
    master = [p.detach().float().requires_grad_() for p in model.parameters()]
    optimizer = torch.optim.Adam(master, lr=1e-3)
    _one_step(model, config["vocab_size"])
    for p, low in zip(master, model.parameters(), strict=True):
        p.grad = low.grad.float()
    optimizer.step()
    m, v = _adam_moment_bytes(optimizer)
    got = scale.training_bytes(config, mixed_precision=True)
    assert got["weights"] == _state_bytes(model.parameters())
    assert got["gradients"] == _state_bytes(p.grad for p in model.parameters())
    assert got["master_weights"] == _state_bytes(master)
    assert (got["adam_m"], got["adam_v"]) == (m, v)
    # both recipes keep 16 bytes per parameter (the ZeRO paper's 2 + 2 + 12)
    n = scale.count_params(config)["total"]
    assert got["total"] == scale.training_bytes(config, False)["total"] == 16 * n


# ---------------------------------------------------------------------------------------------
# FLOPs


def _flops(model, ids, **kwargs) -> tuple[int, int, object]:
    """(weight matmul FLOPs, attention matmul FLOPs, output) of one forward, as torch's
    FlopCounterMode counts them (2 per multiply-add). Projections run as mm/addmm; attention's
    q·kᵀ and probs·v as bmm inside each layer's attention module."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(ids, **kwargs)
    counts = counter.get_flop_counts()
    linear = sum(counts["Global"].get(op, 0) for op in (torch.ops.aten.mm, torch.ops.aten.addmm))
    attention = sum(
        ops.get(torch.ops.aten.bmm, 0)
        for module, ops in counts.items()
        if module.endswith((".attn", ".self_attn"))
    )
    return linear, attention, out


@pytest.mark.parametrize("model_type", list(TINY))
def test_flops_per_token_without_context_are_the_weight_matmuls_torch_counts(model_type):
    config = TINY[model_type]
    model = _real_model(config)
    linear, _, _ = _flops(model, torch.tensor([[7]]))
    assert scale.flops_per_token(config) == linear
    # and per token of a longer text: the projections cost the same for every token
    linear, _, _ = _flops(model, torch.tensor([[7, 3, 11, 2]]))
    if model_type != "mixtral":  # routing may send the four tokens to different experts
        assert 4 * scale.flops_per_token(config) == linear


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "mixtral"])
def test_the_attention_term_is_half_of_what_the_last_token_of_a_window_costs(model_type):
    """Decoding one token after ``keys − 1`` cached ones, torch counts 4·layers·keys·d_attn in
    the attention (two products of 2 FLOPs per multiply-add). Averaged over a causal window of
    that length a token meets about half as many keys: Kaplan's 2·layers·n_ctx·d_attn."""
    config = TINY[model_type]
    model = _real_model(config)
    keys = 9
    prompt = torch.randint(0, config["vocab_size"], (1, keys - 1))
    with torch.no_grad():
        cache = model(prompt, use_cache=True).cache
    _, attention, _ = _flops(model, torch.tensor([[5]]), cache=cache, use_cache=True)
    layers = config.get("num_hidden_layers", config.get("n_layer"))
    d_attn = config.get("hidden_size", config.get("n_embd"))
    assert attention == 4 * layers * keys * d_attn  # torch's count, read independently
    term = scale.flops_per_token(config, keys) - scale.flops_per_token(config)
    assert term == attention // 2


@pytest.mark.parametrize("name", list(scale.PRESETS))
def test_the_2n_term_of_every_preset_is_its_matrices_with_only_the_active_experts(name):
    """2 × the weight matrices of the Hugging Face model, the embedding table taken as the LM
    head (it is multiplied once, looked up once), position tables, biases and norms left out,
    each expert counted at top_k / experts."""
    config = scale.PRESETS[name]
    model = _meta_model(config)
    weights = 0
    for pname, p in model.named_parameters():
        if pname.endswith("wpe.weight") or p.dim() < 2:
            continue
        if ".experts." in pname:
            weights += p.numel() * config["num_experts_per_tok"] // config["num_local_experts"]
        else:
            weights += p.numel()
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        weights -= model.get_input_embeddings().weight.numel()  # untied: the lookup is free
    assert scale.flops_per_token(config) == 2 * weights
    assert scale.flops_per_token(config, 1000) > scale.flops_per_token(config)


def test_flops_per_token_refuses_a_negative_context():
    with pytest.raises(ValueError, match="context"):
        scale.flops_per_token(TINY["llama"], -1)


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"hidden_size": None}, "hidden_size", "empty"),
        ({"hidden_size": ""}, "hidden_size", "empty"),
        ({"num_hidden_layers": -2}, "num_hidden_layers", "positive"),
        ({"num_hidden_layers": 0}, "num_hidden_layers", "positive"),
        ({"intermediate_size": 80.5}, "intermediate_size", "whole number"),
        ({"vocab_size": "lots"}, "vocab_size", "whole number"),
        ({"num_attention_heads": True}, "num_attention_heads", "whole number"),
        ({"num_attention_heads": 6}, "num_attention_heads", "do not divide hidden_size"),
        ({"num_key_value_heads": 3}, "num_key_value_heads", "do not divide"),
        ({"num_key_value_heads": -1}, "num_key_value_heads", "positive"),
        ({"head_dim": 0}, "head_dim", "positive"),
        ({"tie_word_embeddings": "no"}, "tie_word_embeddings", "true or false"),
    ],
)
def test_every_bad_llama_field_gets_its_message(change, field, words):
    config = {**TINY["llama"], **change}
    messages = scale.validate(config)
    assert len(messages) == 1
    assert messages[0].startswith(f"{field}:") and words in messages[0]
    with pytest.raises(ValueError, match=field):
        scale.count_params(config)


def test_missing_fields_are_named_and_whole_floats_are_accepted():
    config = copy.deepcopy(TINY["mixtral"])
    del config["num_local_experts"], config["vocab_size"]
    messages = scale.validate(config)
    assert sorted(messages) == ["num_local_experts: missing", "vocab_size: missing"]
    assert scale.validate({**TINY["mixtral"], "num_experts_per_tok": 5}) == [
        "num_experts_per_tok: 5 is more than num_local_experts = 4"
    ]
    assert scale.validate({**TINY["llama"], "hidden_size": 64.0}) == []
    assert scale.count_params({**TINY["llama"], "hidden_size": 64.0}) == scale.count_params(
        TINY["llama"]
    )
    assert scale.validate({**TINY["llama"], "hidden_size": 60, "head_dim": 16}) == []


def test_gpt2_fields_get_their_messages_and_every_preset_is_valid():
    assert scale.validate({**TINY["gpt2"], "n_head": 5}) == [
        "n_head: 5 heads do not divide n_embd = 48"
    ]
    assert scale.validate({**TINY["gpt2"], "n_layer": -1}) == ["n_layer: must be positive, not -1"]
    assert scale.validate({**TINY["gpt2"], "n_positions": None}) == ["n_positions: empty"]
    assert scale.validate({"model_type": None}) == [
        f"model_type: None is not one of {', '.join(scale.MODEL_TYPES)}"
    ]
    for config in scale.PRESETS.values():
        assert scale.validate(config) == []


def test_several_bad_fields_each_get_a_message():
    config = {**TINY["llama"], "hidden_size": -64, "vocab_size": 1.5, "num_key_value_heads": 3}
    fields = sorted(m.split(":")[0] for m in scale.validate(config))
    assert fields == ["hidden_size", "num_key_value_heads", "vocab_size"]
