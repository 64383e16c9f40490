"""The norms and the feed-forward network, step by step (dashboard/lessons/norms.py, ffn.py),
against torch, Hugging Face's Llama modules, published Llama widths, and the committed models'
own named outputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

from dashboard.lessons import ffn, norms
from models.runtime import STATIC_DIR, Engine

X = np.random.default_rng(0).normal(size=(5, 48)) * 3 + 1.5


def test_layer_norm_is_torchs_and_shows_its_steps():
    w, b = np.random.default_rng(1).normal(size=(2, 48))
    steps = norms.layer_norm(X, w, b, eps=1e-5)
    ln = torch.nn.LayerNorm(48, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        ln.weight.copy_(torch.from_numpy(w))
        ln.bias.copy_(torch.from_numpy(b))
        want = ln(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(steps.out, want, atol=1e-12)
    t = torch.from_numpy(X)
    np.testing.assert_allclose(steps.mean[..., 0], t.mean(-1).numpy(), atol=1e-12)
    np.testing.assert_allclose(steps.var[..., 0], t.var(-1, unbiased=False).numpy(), atol=1e-12)
    np.testing.assert_allclose(steps.normalised, F.layer_norm(t, (48,), eps=1e-5), atol=1e-12)


@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_rms_norm_is_torchs_and_hugging_faces(eps):
    w = np.random.default_rng(2).normal(size=48)
    steps = norms.rms_norm(X, w, eps=eps)
    rms = torch.nn.RMSNorm(48, eps=eps, dtype=torch.float64)  # eps pinned: torch's default differs
    hf = LlamaRMSNorm(48, eps=eps).double()
    with torch.no_grad():
        rms.weight.copy_(torch.from_numpy(w))
        hf.weight.copy_(torch.from_numpy(w))
        np.testing.assert_allclose(steps.out, rms(torch.from_numpy(X)).numpy(), atol=1e-12)
        # Hugging Face's computes in float32 whatever the input, as the model does
        np.testing.assert_allclose(steps.out, hf(torch.from_numpy(X)).numpy(), atol=2e-6)
    np.testing.assert_allclose(steps.mean_square[..., 0], (X**2).mean(-1), atol=1e-12)


@pytest.mark.parametrize("model", ["anatomy-gpt", "anatomy-llama"])
def test_the_norm_of_the_stream_is_what_the_models_first_block_computes(model):
    """The first block's queries, recomputed from the residual stream (the model's own
    ``hidden`` output), our norm with the model's weights, and its q projection, equal the
    model's own ``q`` (before RoPE for anatomy-llama)."""
    engine = Engine(STATIC_DIR)
    cfg, w = engine.config(model), engine.weights(model)
    ids = engine.tokenizer(model).encode("If the file does not exist, an exception is raised.")
    f = engine.run(model, ids, outputs="all")
    x = f.hidden[0].astype(np.float64)
    if cfg["norm"] == "rmsnorm":
        normed = norms.rms_norm(x, w["h.0.ln_1.weight"], eps=cfg["layer_norm_eps"]).out
        q_model = f.q_before_rope[0]
    else:
        normed = norms.layer_norm(
            x, w["h.0.ln_1.weight"], w["h.0.ln_1.bias"], eps=cfg["layer_norm_eps"]
        ).out
        q_model = f.q[0]
    C, H = cfg["n_embd"], cfg["n_head"]
    proj = normed @ w["h.0.attn.c_attn.weight"][:C].T.astype(np.float64)
    if "h.0.attn.c_attn.bias" in w:
        proj = proj + w["h.0.attn.c_attn.bias"][:C]
    q = proj.reshape(len(ids), H, C // H).transpose(1, 0, 2)
    np.testing.assert_allclose(q, q_model, atol=1e-4)


@pytest.mark.parametrize("mode", ["none", "tanh"])
def test_gelu_is_torchs_in_both_modes(mode):
    x = np.linspace(-8, 8, 401)
    want = F.gelu(torch.from_numpy(x), approximate=mode).numpy()
    np.testing.assert_allclose(ffn.gelu(x, mode), want, atol=1e-12)
    with pytest.raises(ValueError, match="approximate must be one of"):
        ffn.gelu(x, "fast")


def test_silu_and_relu_are_torchs_even_far_out():
    x = np.concatenate([np.linspace(-10, 10, 201), [-1000.0, 1000.0]])
    with np.errstate(over="raise"):
        got = ffn.silu(x)
    np.testing.assert_allclose(got, F.silu(torch.from_numpy(x)).numpy(), atol=1e-12)
    np.testing.assert_array_equal(ffn.relu(x), F.relu(torch.from_numpy(x)).numpy())


def test_swiglu_is_hugging_faces_llama_mlp():
    config = LlamaConfig(
        hidden_size=16, intermediate_size=40, num_attention_heads=4, hidden_act="silu"
    )
    torch.manual_seed(0)
    mlp = LlamaMLP(config).double()
    x = np.random.default_rng(3).normal(size=(7, 16))
    with torch.no_grad():
        want = mlp(torch.from_numpy(x)).numpy()
    got = ffn.swiglu(
        x,
        mlp.gate_proj.weight.detach().numpy(),
        mlp.up_proj.weight.detach().numpy(),
        mlp.down_proj.weight.detach().numpy(),
    )
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize(
    "d_model, multiple_of, multiplier, published",
    [
        (4096, 256, None, 11008),  # LLaMA 7B
        (5120, 256, None, 13824),  # LLaMA 13B
        (8192, 4096, 1.3, 28672),  # Llama 2 70B
        (4096, 1024, 1.3, 14336),  # Llama 3 8B
    ],
)
def test_swiglu_width_rule_gives_the_published_widths(d_model, multiple_of, multiplier, published):
    assert ffn.swiglu_hidden(d_model, multiple_of, multiplier) == published


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "type a few numbers"),
        ("1, two, 3", "'two' is not a number"),
        ("1 inf", "not a finite number"),
        ("1e39 2", "beyond float32's largest value"),
    ],
)
def test_a_typed_vector_that_cannot_be_used_says_why(text, words):
    with pytest.raises(ValueError, match=words):
        norms.parse_vector(text)


def test_a_typed_vector_and_a_constant_one():
    np.testing.assert_array_equal(norms.parse_vector("1, 2  3,4"), [1, 2, 3, 4])
    assert norms.constant_notice([1.0, 2.0], 1e-5) == ""
    notice = norms.constant_notice([3.0, 3.0, 3.0], 1e-5)
    assert "variance is 0" in notice and "1e-05" in notice
    np.testing.assert_array_equal(norms.layer_norm([3.0, 3.0, 3.0]).out, [0.0, 0.0, 0.0])
