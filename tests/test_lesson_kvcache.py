"""The K/V sharing and cache arithmetic: each way of sharing against the bytes of a real
Hugging Face ``past_key_values`` with that many key/value heads, our model's per-token cache
against the one its decode graph measured in the build, the heads' distances against a plain
loop, and the byte formatting against hand-worked values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dashboard.lessons import kvcache as KV
from dashboard.lessons import scale
from models.runtime import STATIC_DIR, Engine


@pytest.mark.parametrize(
    ("n_head", "own", "want"),
    [
        (4, 2, {"mha": 4, "gqa": 2, "mqa": 1}),
        (4, None, {"mha": 4, "gqa": 2, "mqa": 1}),
        (12, None, {"mha": 12, "gqa": 6, "mqa": 1}),
        (64, 8, {"mha": 64, "gqa": 8, "mqa": 1}),
        (14, 2, {"mha": 14, "gqa": 2, "mqa": 1}),
        (3, None, {"mha": 3, "mqa": 1}),  # no count groups 3 heads but one or all
        (1, None, {"mha": 1}),
    ],
)
def test_sharing_choices(n_head, own, want):
    assert KV.sharing_choices(n_head, own) == want
    for kind, k in want.items():
        assert KV.sharing_kind(n_head, k) == kind.upper()


def test_sharing_refuses_uneven_groups():
    with pytest.raises(ValueError, match="evenly"):
        KV.sharing_kind(4, 3)
    with pytest.raises(ValueError, match="one key/value head per query head"):
        KV.with_kv_heads(scale.PRESETS["GPT-2 small"], 1)


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_each_sharing_costs_what_a_real_past_key_values_holds(n_kv):
    from transformers import LlamaConfig, LlamaForCausalLM

    base = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "tie_word_embeddings": False}  # fmt: skip
    cfg = KV.with_kv_heads(base, n_kv)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k != "model_type"}))
    model = model.eval().to(torch.float16)
    tokens = 5
    with torch.no_grad():
        out = model(torch.arange(tokens)[None], use_cache=True)
    held = sum(t.numel() * t.element_size()
               for layer in out.cache.layers for t in (layer.keys, layer.values))  # fmt: skip
    assert held == tokens * KV.cache_per_token(cfg, bytes_per_value=2)
    assert held == tokens * KV.cache_per_token(base, n_kv, bytes_per_value=2)


def test_our_models_per_token_cache_is_what_their_decode_graph_measured():
    engine = Engine(STATIC_DIR)
    for name in engine.model_names:
        entry = engine.entry(name)
        measured = entry.get("decode", {}).get("cache_bytes_per_token")
        if measured is None:
            continue
        hf = scale.our_preset(entry["config"])
        assert KV.cache_per_token(hf, bytes_per_value=4) == measured, name


def test_head_distances_are_the_mean_total_variation_of_the_rows():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 6, 6))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    got = KV.head_distances(probs)
    for a in range(3):
        for b in range(3):
            rows = [sum(abs(probs[a, i, j] - probs[b, i, j]) for j in range(6)) / 2
                    for i in range(6)]  # fmt: skip
            assert got[a, b] == pytest.approx(sum(rows) / 6, abs=1e-12)
    assert np.all(np.diag(got) == 0)


def test_group_distances_split_pairs_by_their_kv_head():
    d = np.array([[0, 1, 5, 6], [1, 0, 7, 8], [5, 7, 0, 2], [6, 8, 2, 0]], dtype=float)
    same, other = KV.group_distances(d, 2)  # groups {0, 1} and {2, 3}
    assert same == pytest.approx((1 + 2) / 2)
    assert other == pytest.approx((5 + 6 + 7 + 8) / 4)
    same, other = KV.group_distances(d, 1)  # MQA: every pair shares
    assert np.isnan(other) and same == pytest.approx((1 + 5 + 6 + 7 + 8 + 2) / 6)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1,023 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (10 * 1024, "10.0 KiB"),
        (512 * 1024, "512 KiB"),
        (1023 * 1024, "1,023 KiB"),
        (1024**2 - 1, "1.00 MiB"),  # 1023.999 KiB rounds up into the next unit
        (2**34, "16.0 GiB"),
        (int(12.56 * 2**30), "12.6 GiB"),
        (3 * 2**50, "3.00 PiB"),
        (2000 * 2**50, "2,000 PiB"),  # past the last unit the number grows
    ],
)
def test_human_bytes(n, text):
    assert KV.human_bytes(n) == text


def test_human_bytes_refuses_negative_counts():
    with pytest.raises(ValueError, match="negative"):
        KV.human_bytes(-1)


def test_benchmark_results_are_read_or_none(tmp_path):
    assert KV.load_benchmark("nothing-here", tmp_path) is None
    (tmp_path / "broken.json").write_text("{")
    assert KV.load_benchmark("broken", tmp_path) is None
    (tmp_path / "ok.json").write_text(json.dumps({"rows": [1]}))
    assert KV.load_benchmark("ok", tmp_path) == {"rows": [1]}
