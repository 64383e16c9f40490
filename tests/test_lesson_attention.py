"""dashboard.lessons.attention against torch and against the model's own attention."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dashboard.lessons.attention import (
    attention_stages,
    entropy_bits,
    mask_matrix,
    restage,
    softmax,
    top_attended,
)

RNG = np.random.default_rng(0)


def _qkv(B=2, H=3, T=9, d=8):
    return (RNG.standard_normal((B, H, T, d)) for _ in range(3))


def _sdpa(q, k, v, **kw):
    t = [torch.from_numpy(a) for a in (q, k, v)]
    return F.scaled_dot_product_attention(*t, **kw).numpy()


def test_causal_matches_sdpa():
    q, k, v = _qkv()
    s = attention_stages(q, k, v, mask="causal")
    np.testing.assert_allclose(s["out"], _sdpa(q, k, v, is_causal=True), atol=1e-12)
    np.testing.assert_allclose(s["scaled"], s["scores"] / np.sqrt(8))


def test_no_mask_matches_sdpa():
    q, k, v = _qkv()
    for mask in (None, "none"):
        s = attention_stages(q, k, v, mask=mask)
        np.testing.assert_allclose(s["out"], _sdpa(q, k, v), atol=1e-12)
        assert np.isfinite(s["masked"]).all()


def test_sliding_window_matches_sdpa_with_boolean_mask():
    q, k, v = _qkv(T=12)
    allowed = mask_matrix("sliding", 12, window=3)
    assert allowed.sum(1).tolist() == [1, 2] + [3] * 10
    s = attention_stages(q, k, v, mask="sliding", window=3)
    ref = _sdpa(q, k, v, attn_mask=torch.from_numpy(allowed))
    np.testing.assert_allclose(s["out"], ref, atol=1e-12)


def test_boolean_array_mask_and_custom_scale():
    q, k, v = _qkv(T=6)
    allowed = RNG.random((6, 6)) < 0.6
    allowed[np.arange(6), np.arange(6)] = True  # no empty rows
    s = attention_stages(q, k, v, mask=allowed, scale=0.3)
    ref = _sdpa(q, k, v, attn_mask=torch.from_numpy(allowed), scale=0.3)
    np.testing.assert_allclose(s["out"], ref, atol=1e-12)


def test_cross_attention_lengths():
    q = RNG.standard_normal((4, 8))
    k, v = RNG.standard_normal((7, 8)), RNG.standard_normal((7, 5))
    s = attention_stages(q, k, v, mask="causal")
    assert s["probs"].shape == (4, 7) and s["out"].shape == (4, 5)
    ref = _sdpa(q[None], k[None], v[None], attn_mask=torch.from_numpy(mask_matrix("causal", 4, 7)))
    np.testing.assert_allclose(s["out"], ref[0], atol=1e-12)


def test_padding_mask_for_a_padded_batch():
    valid = np.array([[True] * 5, [True] * 3 + [False] * 2])
    allowed = mask_matrix("padding", 5, valid=valid)
    assert allowed.shape == (2, 5, 5)
    assert not allowed[1, :, 3:].any(), "padding keys are never attended"
    np.testing.assert_array_equal(allowed[0], mask_matrix("causal", 5))
    scores = RNG.standard_normal((2, 5, 5))
    _, probs = restage(scores, allowed)
    ref = torch.softmax(
        torch.from_numpy(scores).masked_fill(~torch.from_numpy(allowed), -torch.inf), -1
    )
    np.testing.assert_allclose(probs, ref.numpy(), atol=1e-12)


def test_fully_masked_row_is_nan_with_inf_but_uniform_with_large_negative():
    scores = RNG.standard_normal((3, 3))
    allowed = np.array([[False, False, False], [True, True, False], [True, True, True]])
    _, probs_inf = restage(scores, allowed, fill=-np.inf)
    ref = torch.softmax(
        torch.from_numpy(scores).masked_fill(~torch.from_numpy(allowed), -torch.inf), -1
    )
    assert np.isnan(probs_inf[0]).all() and torch.isnan(ref[0]).all()
    _, probs_big = restage(scores, allowed, fill=-1e9)
    np.testing.assert_allclose(probs_big[0], 1 / 3)
    np.testing.assert_allclose(probs_big[1:], probs_inf[1:])


def test_matches_the_models_own_attention():
    from models.gpt import GPT, GPTConfig

    torch.manual_seed(3)
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    model = GPT(cfg).eval()
    ids = torch.randint(50, (1, 10))
    with torch.no_grad():
        _, scores, probs, hidden = model(ids)
        attn = model.h[1].attn
        q, k, v = attn.c_attn(model.h[1].ln_1(hidden[:, 1])).split(16, dim=2)
    heads = [t.view(1, 10, 2, 8).transpose(1, 2).numpy() for t in (q, k, v)]
    s = attention_stages(*heads, mask="causal")
    np.testing.assert_allclose(s["scaled"], scores[:, 1].numpy(), atol=1e-5)
    np.testing.assert_allclose(s["probs"], probs[:, 1].numpy(), atol=1e-6)
    _, again = restage(scores[0, 1].numpy(), mask_matrix("causal", 10))
    np.testing.assert_allclose(again, probs[0, 1].numpy(), atol=1e-6)


def test_softmax_handles_huge_values():
    x = np.array([1e308, 1e308, -1e308])
    np.testing.assert_allclose(softmax(x), [0.5, 0.5, 0.0])


def test_top_attended_and_entropy():
    row = np.array([0.1, 0.4, 0.1, 0.4, 0.0])
    assert top_attended(row, 3) == [(1, 0.4), (3, 0.4), (0, 0.1)]
    assert top_attended(row, 10)[-1] == (2, 0.1), "zero-probability keys are left out"
    assert entropy_bits(np.array([1.0, 0, 0])) == 0
    # shown as "0.00", never "-0.00", also when float32 rounding puts the row a hair above 1
    assert f"{entropy_bits(np.array([1.0, 0, 0])):.2f}" == "0.00"
    assert f"{entropy_bits(np.array([1.0000001], dtype=np.float32)):.2f}" == "0.00"
    assert entropy_bits(np.full(4, 0.25)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "sliding", "t_query": 4}, "window"),
        ({"kind": "padding", "t_query": 4}, "valid"),
        ({"kind": "diagonal", "t_query": 4}, "unknown mask"),
        ({"kind": "padding", "t_query": 4, "valid": np.ones(3, bool)}, "3 keys"),
    ],
)
def test_mask_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mask_matrix(**kwargs)


@pytest.mark.parametrize("n_head, n_kv", [(4, 4), (4, 2), (4, 1), (8, 2), (6, 3)])
def test_kv_head_is_hugging_faces_repeat_kv(n_head, n_kv):
    """Which key/value head each query head reads, against transformers' repeat_kv (what
    LlamaAttention does before its scores): key/value head j is filled with the value j."""
    from transformers.models.llama.modeling_llama import repeat_kv

    from dashboard.lessons.attention import kv_groups, kv_head

    marked = torch.arange(n_kv, dtype=torch.float32).view(1, n_kv, 1, 1).expand(1, n_kv, 3, 2)
    read = repeat_kv(marked, n_head // n_kv)[0, :, 0, 0].long().tolist()
    assert [kv_head(h, n_head, n_kv) for h in range(n_head)] == read
    assert kv_groups(n_head, n_kv) == [
        [h for h in range(n_head) if read[h] == j] for j in range(n_kv)
    ]


def test_sharing_sentence_names_every_group():
    from dashboard.lessons.attention import kv_head, sharing_html

    assert "Multi-head attention" in sharing_html(4, 4, 2)
    text = sharing_html(4, 2, 3)
    assert text.startswith("<b>Grouped-query attention:</b>")
    assert "heads 0 and 1 read K/V head 0; heads 2 and 3 read K/V head 1" in text
    assert text.endswith("Head 3 reads K/V head 1 with head 2.")
    assert "Multi-query attention" in sharing_html(4, 1)
    with pytest.raises(ValueError, match="evenly"):
        kv_head(0, 4, 3)
