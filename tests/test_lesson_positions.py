"""The positions lesson's pure computations, against torch, Hugging Face's Llama, Llama 4 and
Bloom, the ALiBi authors' slope code, and anatomy-llama's and anatomy-gpt's own numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.llama.modeling_llama import (
    LlamaConfig,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)
from transformers.models.llama4.modeling_llama4 import apply_rotary_emb as llama4_rotary_emb

from dashboard.lessons import positions as P
from models.gpt import rope_tables, rotate
from models.runtime import STATIC_DIR, Engine

TEXT = "Return the value of the named attribute of object, or the default if it is missing."


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def llama(engine):
    ids = engine.tokenizer("anatomy-llama").encode(TEXT)
    return engine.run("anatomy-llama", ids, outputs="all"), engine.config("anatomy-llama")


@pytest.fixture(scope="module")
def wpe(engine):
    return np.array(engine.weights("anatomy-gpt")["wpe.weight"])


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# sinusoidal


def _torch_sinusoidal(n: int, d: int, base: float) -> torch.Tensor:
    """The PyTorch tutorial's (and the Annotated Transformer's) form: exp of −log(base)·2i/d."""
    position = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(base) / d))
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


@pytest.mark.parametrize(("n", "d", "base"), [(128, 128, 10000.0), (50, 6, 100.0), (1, 2, 10.0)])
def test_the_sinusoidal_table_is_the_papers_formula(n, d, base):
    got = P.sinusoidal(n, d, base)
    assert got.shape == (n, d) and got.dtype == np.float64
    np.testing.assert_allclose(got, _torch_sinusoidal(n, d, base).numpy(), rtol=0, atol=1e-12)


def test_each_pair_is_a_sine_and_cosine_of_its_wavelength():
    n, d, base = 200, 16, 10000.0
    table = P.sinusoidal(n, d, base)
    lam = P.wavelengths(d, base)
    assert lam.shape == (d // 2,)
    p = torch.arange(n, dtype=torch.float64)[:, None]
    lam_t = torch.from_numpy(lam)[None, :]
    np.testing.assert_allclose(table[:, 0::2], torch.sin(2 * math.pi * p / lam_t), atol=1e-12)
    np.testing.assert_allclose(table[:, 1::2], torch.cos(2 * math.pi * p / lam_t), atol=1e-12)
    # the fastest pair repeats every 2π positions, the slowest every 2π·base^((d−2)/d)
    assert lam[0] == pytest.approx(2 * math.pi)
    assert lam[-1] == pytest.approx(2 * math.pi * base ** ((d - 2) / d))


def test_the_sinusoidal_dot_product_depends_on_the_distance_only():
    n, d, base = 128, 64, 10000.0
    table = P.sinusoidal(n, d, base)
    omega = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(base) / d))
    for start in (0, 17, 100):
        got = P.dot_by_distance(table, start)
        delta = torch.arange(n - start, dtype=torch.float64)[:, None]
        closed = torch.cos(delta * omega).sum(-1)  # Σ_i cos(Δ·ω_i)
        assert got.shape == (n - start,)
        np.testing.assert_allclose(got, closed.numpy(), atol=1e-10)
    assert P.dot_by_distance(table)[0] == pytest.approx(d / 2)  # sin² + cos² per pair


def test_dot_by_distance_of_the_learned_table_is_its_gram_matrixs_diagonals(wpe):
    gram = torch.from_numpy(wpe.astype(np.float64)) @ torch.from_numpy(wpe.astype(np.float64)).T
    for start in (0, 5, 127):
        want = [float(torch.diagonal(gram, offset=delta)[start]) for delta in range(128 - start)]
        np.testing.assert_allclose(P.dot_by_distance(wpe, start), want, rtol=1e-12, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# learned


def test_learned_rows_are_the_embedding_lookup_and_stop_at_the_table(wpe):
    pos = [0, 3, 127, 3]
    want = torch.nn.functional.embedding(torch.tensor(pos), torch.from_numpy(wpe))
    np.testing.assert_array_equal(P.learned_rows(wpe, pos), want.numpy())
    with pytest.raises(
        ValueError, match=r"position 128 is past .* 128 rows \(positions 0 to 127\)"
    ):
        P.learned_rows(wpe, [5, 128])
    with pytest.raises(ValueError, match="position -1 is negative"):
        P.learned_rows(wpe, [-1])
    with pytest.raises(ValueError, match="whole numbers"):
        P.learned_rows(wpe, [1.5])
    assert P.learned_rows(wpe, []).shape == (0, 128)


def test_the_cosine_matrix_is_torchs_cosine_similarity(wpe):
    got = P.cosine_similarity_matrix(wpe)
    t = torch.from_numpy(wpe.astype(np.float64))
    want = torch.nn.functional.cosine_similarity(t[:, None, :], t[None, :, :], dim=-1)
    assert got.shape == (128, 128)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-12)
    np.testing.assert_allclose(np.diag(got), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        P.cosine_similarity_matrix(np.array([[1.0, 2.0], [0.0, 0.0]]))


def _eig_pca(table: np.ndarray):
    """PCA the textbook way: eigenvectors of the covariance matrix, largest eigenvalue first."""
    cov = np.cov(table, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order], np.trace(cov)


@pytest.mark.parametrize("which", ["wpe", "random"])
def test_pca_is_the_covariance_matrixs_top_eigenvectors(wpe, which):
    spread = np.array([5, 3, 1, 1, 0.5, 0.2, 0.1])  # distinct variances: a well-posed PCA
    table = wpe.astype(np.float64) if which == "wpe" else _rng(1).normal(size=(40, 7)) * spread
    got = P.pca_2d(table)
    values, vectors, total = _eig_pca(table)
    assert got.coords.shape == (len(table), 2) and got.components.shape == (2, table.shape[1])
    np.testing.assert_allclose(got.explained_variance, values[:2], rtol=1e-10)
    np.testing.assert_allclose(got.explained_ratio, values[:2] / total, rtol=1e-10)
    for c in range(2):
        v = vectors[:, c] * np.sign(vectors[:, c] @ got.components[c])  # eigh's sign is its own
        np.testing.assert_allclose(got.components[c], v, atol=1e-9)
        coords = (table - table.mean(axis=0)) @ v
        np.testing.assert_allclose(got.coords[:, c], coords, atol=1e-9)
    # and against torch's own PCA (full rank, so its randomised range finder is exact)
    _, s, _ = torch.pca_lowrank(torch.from_numpy(table), q=min(table.shape), center=True)
    np.testing.assert_allclose(got.explained_variance, (s[:2] ** 2 / (len(table) - 1)).numpy())


def test_the_pca_sign_is_fixed_by_each_components_largest_entry(wpe):
    got = P.pca_2d(wpe)
    for c in got.components:
        assert c[np.argmax(np.abs(c))] > 0
    # −table has the same directions; only the projection flips, and the rule undoes SVD's sign
    flipped = P.pca_2d(-wpe.astype(np.float64))
    np.testing.assert_allclose(flipped.components, got.components, atol=1e-9)
    np.testing.assert_allclose(flipped.coords, -got.coords, atol=1e-9)
    with pytest.raises(ValueError, match="at least 2 rows and 2 columns"):
        P.pca_2d(np.ones((1, 5)))


# ---------------------------------------------------------------------------------------------
# RoPE: frequencies and the half-split layout against Hugging Face's Llama


def _hf_rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Hugging Face's Llama: LlamaRotaryEmbedding's cos/sin, then apply_rotary_pos_emb."""
    h, d = x.shape[1], x.shape[-1]
    cfg = LlamaConfig(
        hidden_size=h * d,
        num_attention_heads=h,
        head_dim=d,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": base},
    )
    cos, sin = LlamaRotaryEmbedding(cfg)(x, positions[None])
    out, _ = apply_rotary_pos_emb(x, x, cos, sin)
    return out


@pytest.mark.parametrize(("d", "base"), [(32, 10000.0), (64, 500000.0), (8, 1000000.0)])
def test_rope_frequencies_are_llamas_inv_freq(d, base):
    cfg = LlamaConfig(
        hidden_size=4 * d,
        num_attention_heads=4,
        head_dim=d,
        rope_parameters={"rope_type": "default", "rope_theta": base},
    )
    got = P.rope_frequencies(d, base)
    assert got.shape == (d // 2,) and got.dtype == np.float64
    np.testing.assert_allclose(got, LlamaRotaryEmbedding(cfg).inv_freq.numpy(), rtol=1e-6)
    # RoPE's pair i turns once in 2π/θ_i positions: the sinusoidal wavelengths
    np.testing.assert_allclose(2 * np.pi / got, P.wavelengths(d, base), rtol=1e-14)


def test_a_larger_base_slows_the_slowest_pair_past_the_block():
    d, block = 32, 128
    turns = {b: P.rope_turns(block, d, b) for b in P.ROPE_BASES.values()}
    for base, t in turns.items():
        inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        np.testing.assert_allclose(t, (block * inv_freq / (2 * math.pi)).numpy(), rtol=1e-14)
        assert t[0] == pytest.approx(block / (2 * math.pi))  # pair 0: one radian a position
    slowest = [turns[b][-1] for b in sorted(turns)]
    assert slowest == sorted(slowest, reverse=True) and slowest[0] < 1


@pytest.mark.parametrize("base", [10000.0, 500000.0])
def test_half_layout_is_hugging_faces_apply_rotary_pos_emb(base):
    x = torch.from_numpy(_rng(2).normal(size=(1, 3, 64, 32)))
    for positions in (torch.arange(64), torch.arange(40, 104)):
        want = _hf_rope(x, positions, base)
        got = P.apply_rope(x.numpy(), positions.numpy(), base, layout="half")
        assert got.dtype == np.float64 and got.shape == x.shape
        # HF computes its angles in float32 (position · inv_freq up to ~100 rad): ~1e-5 apart
        np.testing.assert_allclose(got, want.numpy(), atol=5e-5)


def test_half_layout_is_our_models_rope_tables_and_rotate():
    x = torch.from_numpy(_rng(3).normal(size=(4, 20, 16)).astype(np.float32))
    cos, sin = rope_tables(20, 16, 10000.0)
    want = rotate(x, cos, sin).numpy()
    got = P.apply_rope(x.numpy(), np.arange(20), 10000.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_anatomy_llamas_q_and_k_are_apply_rope_of_their_unrotated_ones(llama):
    f, cfg = llama
    assert cfg["positions"] == "rope" and cfg["rope_base"] == 10000.0
    t = f.q.shape[-2]
    for layer in range(cfg["n_layer"]):
        for before, after in ((f.q_before_rope, f.q), (f.k_before_rope, f.k)):
            got = P.apply_rope(before[layer], np.arange(t), cfg["rope_base"])
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, after[layer], atol=1e-5)
    # the model's layout is the half split: read as interleaved pairs, it is far off
    wrong = P.apply_rope(f.q_before_rope[0], np.arange(t), layout="interleaved")
    assert np.abs(wrong - f.q[0]).max() > 1e-2


def test_apply_rope_keeps_the_inputs_precision():
    x = _rng(4).normal(size=(5, 8))
    assert P.apply_rope(x, np.arange(5)).dtype == np.float64
    assert P.apply_rope(x.astype(np.float32), np.arange(5)).dtype == np.float32
    assert P.apply_rope(np.ones((5, 8), dtype=np.int64), np.arange(5)).dtype == np.float64
    # position 0 is no rotation at all; a rotation keeps each pair's length
    np.testing.assert_array_equal(P.apply_rope(x, np.zeros(5)), x)
    out = P.apply_rope(x, np.arange(5) * 37.0)
    np.testing.assert_allclose(out[:, :4] ** 2 + out[:, 4:] ** 2, x[:, :4] ** 2 + x[:, 4:] ** 2)


def test_one_pair_turns_by_position_times_frequency():
    theta = 0.3
    pos = np.arange(10)
    got = P.rotate_pair([1.5, -0.5], pos, theta)
    a = torch.tensor(pos * theta, dtype=torch.float64)
    rot = torch.stack(
        [torch.stack([a.cos(), -a.sin()], -1), torch.stack([a.sin(), a.cos()], -1)], 1
    )
    want = rot @ torch.tensor([1.5, -0.5], dtype=torch.float64)  # (T, 2, 2) @ (2,)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-15)
    # it is pair i of apply_rope with d_head = 2 and θ = 1
    np.testing.assert_allclose(
        P.rotate_pair([1.5, -0.5], pos, 1.0), P.apply_rope(np.tile([1.5, -0.5], (10, 1)), pos)
    )


# ---------------------------------------------------------------------------------------------
# RoPE: the interleaved layout (Meta's) and the permutation between the two


def _meta_rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Meta's llama ``apply_rotary_emb``: pairs (2i, 2i+1) as complex numbers times
    polar(1, position·θ_i) (``precompute_freqs_cis``), here in float64 / complex128."""
    d = x.shape[-1]
    freqs = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64)[: d // 2] / d))
    freqs_cis = torch.polar(
        torch.ones(len(positions), d // 2, dtype=torch.float64),
        torch.outer(positions.double(), freqs),
    )
    x_ = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(x_ * freqs_cis).flatten(-2)


@pytest.mark.parametrize(("d", "base"), [(32, 10000.0), (2, 10000.0), (64, 1000000.0)])
def test_interleaved_layout_is_metas_complex_multiplication(d, base):
    x = torch.from_numpy(_rng(5).normal(size=(2, 3, 50, d)))
    positions = torch.arange(7, 57)
    got = P.apply_rope(x.numpy(), positions.numpy(), base, layout="interleaved")
    np.testing.assert_allclose(got, _meta_rope(x, positions, base).numpy(), atol=1e-12)


def test_interleaved_layout_is_hugging_faces_llama4_apply_rotary_emb():
    d, base, t = 16, 500000.0, 30
    x = torch.from_numpy(_rng(6).normal(size=(1, t, 2, d)).astype(np.float32))  # (B, T, H, d)
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float) / d))
    freqs = torch.arange(t)[None, :, None].float() * inv_freq  # Llama4TextRotaryEmbedding
    freqs_cis = torch.polar(torch.ones_like(freqs), freqs)
    want, _ = llama4_rotary_emb(x, x, freqs_cis)
    got = P.apply_rope(x.numpy().transpose(0, 2, 1, 3), np.arange(t), base, "interleaved")
    np.testing.assert_allclose(got.transpose(0, 2, 1, 3), want.numpy(), atol=1e-5)


@pytest.mark.parametrize("d", [2, 8, 32])
def test_the_layouts_are_equal_after_the_permutation(d):
    perm = P.half_to_interleaved_permutation(d)
    inv = P.interleaved_to_half_permutation(d)
    x = _rng(7).normal(size=(3, 40, d))
    pos = np.arange(40) + 3
    half = P.apply_rope(x, pos, layout="half")
    inter = P.apply_rope(x[..., perm], pos, layout="interleaved")
    np.testing.assert_allclose(inter, half[..., perm], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        P.apply_rope(x[..., inv], pos),
        P.apply_rope(x, pos, layout="interleaved")[..., inv],
        rtol=0,
        atol=1e-15,
    )
    assert sorted(perm) == list(range(d)) and list(perm[inv]) == list(range(d))
    # and against Meta's complex form: the interleaved rotation of x[perm] is HF's of x, moved
    want = _meta_rope(torch.from_numpy(x[..., perm]), torch.from_numpy(pos), 10000.0)
    np.testing.assert_allclose(half[..., perm], want.numpy(), atol=1e-12)


def test_the_permutation_is_hugging_faces_checkpoint_conversion():
    """convert_llama_weights_to_hf's ``permute`` reorders W_q's and W_k's output rows from
    Meta's interleaved pairs to the half split: w.view(heads, d/2, 2, dim).transpose(1, 2)."""
    heads, d = 3, 8
    rows = torch.arange(heads * d)[:, None]  # row r of W holds its own index
    converted = rows.view(heads, d // 2, 2, 1).transpose(1, 2).reshape(heads * d)
    inv = P.interleaved_to_half_permutation(d)
    np.testing.assert_array_equal(converted[:d].numpy(), inv)
    np.testing.assert_array_equal(converted[d : 2 * d].numpy(), inv + d)
    # scores are the same in either layout once q and k are both permuted
    q, k = _rng(8).normal(size=(2, 10, d))
    pos = np.arange(10)
    s_half = P.apply_rope(q, pos) @ P.apply_rope(k, pos).T
    perm = P.half_to_interleaved_permutation(d)
    s_inter = (
        P.apply_rope(q[:, perm], pos, layout="interleaved")
        @ P.apply_rope(k[:, perm], pos, layout="interleaved").T
    )
    np.testing.assert_allclose(s_inter, s_half, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# RoPE: the relative property on the model's real q and k


def _complex_score(q: np.ndarray, k: np.ndarray, distance: float, base: float) -> float:
    """Re Σ_i z_q·conj(z_k)·e^{i(m−n)θ_i} / √d with pair i = (i, i + d/2) as z = a + ib: the
    score written in terms of the distance alone."""
    d = len(q)
    zq = torch.complex(torch.from_numpy(q[: d // 2]), torch.from_numpy(q[d // 2 :]))
    zk = torch.complex(torch.from_numpy(k[: d // 2]), torch.from_numpy(k[d // 2 :]))
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    phase = torch.polar(torch.ones_like(theta), distance * theta)
    return float((zq * zk.conj() * phase).sum().real) / math.sqrt(d)


def test_the_score_depends_on_the_distance_only_on_the_models_q_and_k(llama):
    f, cfg = llama
    base, n_rep = cfg["rope_base"], cfg["n_head"] // cfg["n_kv_head"]
    shifts = np.array([0, 1, 5, 37, 128, 500, 1000])
    t = f.q.shape[-2]
    for layer, head, m, n in [(0, 0, t - 1, 0), (1, 3, 7, 7), (3, 2, 4, 11), (2, 1, t - 1, 3)]:
        q = f.q_before_rope[layer, head, m].astype(np.float64)
        k = f.k_before_rope[layer, head // n_rep, n].astype(np.float64)
        got = P.relative_scores(q, k, m, n, shifts, base)
        want = _complex_score(q, k, m - n, base)
        assert got.shape == shifts.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        # shift 0 is the model's own score (the causal part of it)
        if n <= m:
            assert got[0] == pytest.approx(float(f.attn_scores[layer, head, m, n]), abs=1e-5)
        assert P.rope_score(q, k, m, n, base) == pytest.approx(got[0], abs=1e-13)


def test_rope_score_broadcasts_over_positions():
    q, k = _rng(9).normal(size=(2, 16))
    m = np.arange(6)[:, None]
    n = np.arange(4)[None, :]
    got = P.rope_score(q, k, m, n)
    assert got.shape == (6, 4)
    for i in range(6):
        for j in range(4):
            assert got[i, j] == pytest.approx(_complex_score(q, k, i - j, 10000.0), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# ALiBi


def _press_slopes(n: int) -> list[float]:
    """The ALiBi authors' get_slopes (ofirpress/attention_with_linear_biases, fairseq)."""

    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return (
        get_slopes_power_of_2(closest_power_of_2)
        + _press_slopes(2 * closest_power_of_2)[0::2][: n - closest_power_of_2]
    )


def _bloom_slopes(n: int) -> torch.Tensor:
    # build_alibi_tensor with no padding is slope_h · j; its column j = 1 is the slopes
    return build_alibi_tensor(torch.ones(1, 4), n, torch.float32)[:, 0, 1]


@pytest.mark.parametrize("n", range(1, 17))
def test_alibi_slopes_are_blooms_and_the_authors(n):
    got = P.alibi_slopes(n)
    assert got.shape == (n,) and got.dtype == np.float64
    bloom = _bloom_slopes(n).numpy()
    if n <= 8:  # every slope is a power of two, exact in float32 too
        np.testing.assert_array_equal(got.astype(np.float32), bloom)
    else:  # 2^(−1/2) and its odd powers: Bloom's float32 pow is a few ulps off
        np.testing.assert_allclose(got, bloom, rtol=2e-6)
    np.testing.assert_allclose(got, _press_slopes(n), rtol=1e-14)


def test_alibi_slopes_past_16_heads_follow_the_authors_code():
    for n in (20, 24, 32, 48, 64, 96):
        np.testing.assert_allclose(P.alibi_slopes(n), _press_slopes(n), rtol=1e-14)


def test_alibi_slopes_for_head_counts_that_are_not_powers_of_two():
    """The rule worked by hand: the m = 4 (resp. 8) slopes, then odd powers from 2m."""
    np.testing.assert_array_equal(P.alibi_slopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8])
    twelve = [2.0**-i for i in range(1, 9)] + [2.0 ** (-k / 2) for k in (1, 3, 5, 7)]
    np.testing.assert_allclose(P.alibi_slopes(12), twelve, rtol=1e-15)
    np.testing.assert_array_equal(P.alibi_slopes(1), [1 / 256])


@pytest.mark.parametrize("n", [1, 4, 6, 12, 16])
def test_alibi_bias_softmax_is_blooms(n):
    t = 9
    bias = P.alibi_bias(n, t)
    assert bias.shape == (n, t, t)
    slopes = torch.from_numpy(P.alibi_slopes(n))
    i, j = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    np.testing.assert_allclose(bias, (-slopes[:, None, None] * (i - j)).numpy(), atol=0)
    bloom = build_alibi_tensor(torch.ones(1, t), n, torch.float64)  # (n, 1, t): slope · j
    tol = 0 if n <= 8 else 1e-5
    # the two differ by a constant per row (−slope·i): check it, then that softmax ignores it
    diff = bias - bloom.numpy()
    np.testing.assert_allclose(np.ptp(diff, axis=-1), 0, atol=tol + 1e-15)
    scores = torch.from_numpy(_rng(10).normal(size=(n, t, t)))
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    want = torch.softmax((scores + bloom).masked_fill(~causal, float("-inf")), dim=-1)
    got = P.alibi_what_if(scores.numpy())
    np.testing.assert_allclose(got.probs, want.numpy(), atol=tol + 1e-15)
    np.testing.assert_array_equal(got.bias, bias)
    assert np.all(np.isneginf(got.biased[:, ~causal.numpy()]))
    # unmasked too: the j > i entries continue the same line, so whole rows agree
    unmasked = torch.softmax(scores + bloom, dim=-1).numpy()
    np.testing.assert_allclose(
        torch.softmax(scores + torch.from_numpy(bias), -1).numpy(), unmasked, atol=tol + 1e-15
    )


def test_the_alibi_what_if_on_the_models_own_scores(engine):
    ids = engine.tokenizer("anatomy-gpt").encode(TEXT)
    f = engine.run("anatomy-gpt", ids, outputs="all")
    scores = f.attn_scores[2].astype(np.float64)  # (H, T, T), before the mask
    got = P.alibi_what_if(scores)
    h, t = scores.shape[:2]
    bloom = build_alibi_tensor(torch.ones(1, t), h, torch.float64)
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    want = torch.softmax((torch.from_numpy(scores) + bloom).masked_fill(~causal, -math.inf), -1)
    np.testing.assert_allclose(got.probs, want.numpy(), atol=1e-12)
    # the bias only lowers far-back keys, so the last query leans further toward recent ones
    plain = f.attn_probs[2][:, -1]
    recent = np.arange(t) >= t - 4
    assert np.all(got.probs[:, -1, recent].sum(-1) >= plain[:, recent].sum(-1) - 1e-6)


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: P.rope_frequencies(31), "RoPE's head size must be even .* not 31"),
        (lambda: P.apply_rope(np.ones((4, 7)), np.arange(4)), "must be even .* not 7"),
        (lambda: P.half_to_interleaved_permutation(9), "must be even .* not 9"),
        (lambda: P.rope_frequencies(0), "head size must be a positive whole number, not 0"),
        (lambda: P.rope_frequencies(32, base=0), "base must be a positive number, not 0"),
        (lambda: P.rope_frequencies(32, base=-5.0), "base must be a positive number"),
        (lambda: P.sinusoidal(10, 8, base=0.0), "base must be a positive number"),
        (lambda: P.wavelengths(8, base=float("nan")), "base must be a positive number"),
        (lambda: P.sinusoidal(0, 8), "number of positions must be a positive whole number"),
        (lambda: P.sinusoidal(-3, 8), "number of positions must be a positive whole number"),
        (lambda: P.sinusoidal(10, 7), "width must be even"),
        (lambda: P.alibi_slopes(0), "number of heads must be a positive whole number, not 0"),
        (lambda: P.alibi_slopes(-2), "number of heads must be a positive whole number"),
        (lambda: P.alibi_slopes(2.5), "number of heads must be a positive whole number"),
        (lambda: P.alibi_bias(0, 5), "number of heads must be a positive whole number"),
        (lambda: P.alibi_bias(4, 0), "number of tokens must be a positive whole number"),
        (lambda: P.apply_rope(np.ones((4, 8)), np.arange(4), layout="meta"), "unknown RoPE layout"),
        (lambda: P.apply_rope(np.ones((4, 8)), np.arange(3)), "4 tokens need 4 positions"),
        (lambda: P.apply_rope(np.ones(8), np.arange(1)), r"a \(…, T, d_head\) array"),
        (lambda: P.rope_score(np.ones(8), np.ones(6), 0, 0), "a query and a key of one head"),
        (lambda: P.rotate_pair([1.0, 2.0, 3.0], [0], 1.0), "one pair is two numbers"),
        (lambda: P.dot_by_distance(np.ones((5, 4)), 5), "start must be a row of the table"),
        (lambda: P.cosine_similarity_matrix(np.ones(4)), "a table of positions × dimensions"),
        (lambda: P.alibi_what_if(np.ones((2, 3, 4))), "scores of heads × queries × keys"),
        (lambda: P.rope_turns(0, 32), "number of positions must be a positive whole number"),
    ],
)
def test_bad_input_is_refused_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
