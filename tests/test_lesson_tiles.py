"""Attention tile by tile (dashboard/lessons/tiles.py) against torch's scaled_dot_product_attention,
and its running max, sum and output against the scores written out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dashboard.lessons import tiles

RNG = np.random.default_rng(7)


def _qkv(h=4, kv=4, t=23, d=8, s=None):
    s = t if s is None else s
    return RNG.normal(size=(h, t, d)), RNG.normal(size=(kv, s, d)), RNG.normal(size=(kv, s, d))


def _sdpa(q, k, v, causal, gqa=False):
    q, k, v = (torch.from_numpy(x) for x in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa).numpy()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("blocks", [(1, 1), (7, 5), (23, 23), (4, 16), (16, 4)])
def test_the_tiles_give_torchs_attention(causal, blocks):
    q, k, v = _qkv()
    out, _ = tiles.tiled_attention(q, k, v, *blocks, causal=causal)
    np.testing.assert_allclose(out, _sdpa(q, k, v, causal), atol=1e-12)
    np.testing.assert_allclose(tiles.full_attention(q, k, v, causal), out, atol=1e-12)


def test_grouped_heads_and_a_single_head():
    q, k, v = _qkv(h=6, kv=2)
    out, _ = tiles.tiled_attention(q, k, v, 5, 3)
    np.testing.assert_allclose(out, _sdpa(q, k, v, True, gqa=True), atol=1e-12)
    one, _ = tiles.tiled_attention(q[0], k[0], v[0], 4, 4)
    assert one.shape == q[0].shape
    np.testing.assert_allclose(one, out[0], atol=1e-12)  # head 0 reads K/V head 0


def test_every_step_holds_the_running_max_sum_and_output_of_the_keys_seen():
    q, k, v = _qkv(h=2, kv=2, t=13, d=4)
    out, steps = tiles.tiled_attention(q, k, v, 5, 4, causal=True)
    scores = np.einsum("hid,hjd->hij", q, k) / 2.0  # √4
    scores[:, np.triu_indices(13, 1)[0], np.triu_indices(13, 1)[1]] = -np.inf
    for st in steps:
        (r0, r1), (_, c1) = st.rows, st.keys
        seen = scores[:, r0:r1, :c1]  # every key block up to this one
        m = seen.max(axis=-1)
        np.testing.assert_allclose(st.m, m, atol=1e-12)
        e = np.exp(seen - m[..., None])
        np.testing.assert_allclose(st.l, e.sum(axis=-1), atol=1e-12)
        np.testing.assert_allclose(
            st.output, (e / e.sum(-1, keepdims=True)) @ v[:, :c1], atol=1e-12
        )
    # the last step of each query block is that block's final output
    for qi in {s.query_block for s in steps}:
        last = [s for s in steps if s.query_block == qi][-1]
        np.testing.assert_allclose(last.output, out[:, last.rows[0] : last.rows[1]], atol=1e-12)


def test_the_causal_mask_skips_the_key_blocks_in_the_future():
    q, k, v = _qkv(t=12)
    _, causal = tiles.tiled_attention(q, k, v, 4, 4, causal=True)
    _, full = tiles.tiled_attention(q, k, v, 4, 4, causal=False)
    assert [(s.query_block, s.key_block) for s in causal] == [
        (0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)
    ]  # fmt: skip
    assert len(full) == 9
    assert tiles.tiled_attention(q, k, v, 4, 4, steps=False)[1] == []


def test_bad_block_sizes_and_shapes_are_refused():
    q, k, v = _qkv(t=10)
    for bad in (0, 11, -1, 2.5):
        with pytest.raises(ValueError, match="block size must be a whole number from 1 to 10"):
            tiles.tiled_attention(q, k, v, bad, 2)
        with pytest.raises(ValueError, match="key block size"):
            tiles.tiled_attention(q, k, v, 2, bad)
    with pytest.raises(ValueError, match="cannot share 3 key/value heads"):
        tiles.tiled_attention(q, *_qkv(h=3, kv=3, t=10)[1:], 2, 2)
    with pytest.raises(ValueError, match="as many keys as queries"):
        tiles.tiled_attention(q, *_qkv(t=10, s=12)[1:], 2, 2)
    with pytest.raises(ValueError, match="must be \\(T, d\\) or \\(heads, T, d\\)"):
        tiles.tiled_attention(q[None], k, v, 2, 2)


def test_score_bytes():
    # 32 heads × 4096² scores in fp16, against one 128 × 64 tile per head plus m and l
    assert tiles.score_bytes(4096, 32, 2) == 32 * 4096 * 4096 * 2 == 1_073_741_824
    assert tiles.score_bytes(4096, 32, 2, 128, 64) == 32 * (128 * 64 + 256) * 2
