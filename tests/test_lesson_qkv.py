"""The Q/K/V lab's pure computations, against torch and the models' own named outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dashboard.lessons import qkv
from dashboard.lessons.attention import kv_head
from models.runtime import STATIC_DIR, Engine

TEXT = "Return the value of the named attribute of object."
MODELS = ("anatomy-gpt", "anatomy-llama")


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _read(engine, model):
    ids = engine.tokenizer(model).encode(TEXT)
    f = engine.run(model, ids, outputs="all")
    return ids, f, engine.weights(model), engine.config(model)


@pytest.mark.parametrize("model", MODELS)
def test_the_embedding_rows_add_up_to_the_stream_the_first_block_reads(engine, model):
    ids, f, w, _ = _read(engine, model)
    e = qkv.embed(w, ids)
    ids_t = torch.tensor(ids)
    token = torch.nn.functional.embedding(ids_t, torch.from_numpy(np.array(w["wte.weight"])))
    np.testing.assert_array_equal(e.token, token.numpy())
    if model == "anatomy-gpt":
        wpe = torch.from_numpy(np.array(w["wpe.weight"]))
        pos = torch.nn.functional.embedding(torch.arange(len(ids)), wpe)
        np.testing.assert_array_equal(e.position, pos.numpy())
    else:
        assert e.position is None  # RoPE: nothing is added
    np.testing.assert_allclose(e.total, f.hidden[0], atol=1e-6)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("layer", [0, 3])
def test_the_norm_of_the_stream_times_w_q_is_the_models_q(engine, model, layer):
    """ln_1 of the stream entering block ``layer``, projected by the model's W_q and split
    into heads, is the model's own q (before RoPE in the LLaMA model)."""
    ids, f, w, cfg = _read(engine, model)
    x = qkv.block_input(f.hidden[layer], w, cfg, layer)
    c, eps = cfg["n_embd"], cfg["layer_norm_eps"]
    if cfg["norm"] == "rmsnorm":
        torch_norm = torch.nn.RMSNorm(c, eps=eps)
    else:
        torch_norm = torch.nn.LayerNorm(c, eps=eps)
        torch_norm.bias.data = torch.from_numpy(np.array(w[f"h.{layer}.ln_1.bias"]))
    torch_norm.weight.data = torch.from_numpy(np.array(w[f"h.{layer}.ln_1.weight"]))
    with torch.no_grad():
        want = torch_norm(torch.from_numpy(np.array(f.hidden[layer]))).numpy()
    np.testing.assert_allclose(x, want, atol=1e-5)
    w_attn = w[f"h.{layer}.attn.c_attn.weight"]
    q = x @ w_attn[:c].T
    if f"h.{layer}.attn.c_attn.bias" in w:
        q = q + w[f"h.{layer}.attn.c_attn.bias"][:c]
    model_q = f.q_before_rope if cfg["positions"] == "rope" else f.q
    np.testing.assert_allclose(qkv.split_heads(q, cfg["n_head"]), model_q[layer], atol=1e-4)


def test_split_and_merge_are_the_models_view_and_transpose():
    x = torch.randn(7, 12, dtype=torch.float64)
    split = x.view(7, 3, 4).transpose(0, 1)  # nanoGPT's (B, T, nh, hs).transpose(1, 2)
    np.testing.assert_array_equal(qkv.split_heads(x.numpy(), 3), split.numpy())
    merged = split.transpose(0, 1).contiguous().view(7, 12)
    np.testing.assert_array_equal(qkv.merge_heads(split.numpy()), merged.numpy())
    with pytest.raises(ValueError, match="does not split into 5 equal heads"):
        qkv.split_heads(x.numpy(), 5)


@pytest.mark.parametrize("model", MODELS)
def test_one_dot_product_lands_on_the_models_score(engine, model):
    ids, f, _, cfg = _read(engine, model)
    n_head, n_kv = cfg["n_head"], cfg["n_kv_head"] or cfg["n_head"]
    t = len(ids)
    for layer, head, i, j in [(0, 0, t - 1, 0), (2, 3, t - 1, t - 1), (3, 1, 4, 2)]:
        kv = kv_head(head, n_head, n_kv)
        d = qkv.dot_product(f.q[layer, head, i], f.k[layer, kv, j])
        qt = torch.from_numpy(np.array(f.q[layer, head, i], dtype=np.float64))
        kt = torch.from_numpy(np.array(f.k[layer, kv, j], dtype=np.float64))
        np.testing.assert_allclose(d.products, (qt * kt).numpy())
        assert d.total == pytest.approx(float(qt @ kt), abs=1e-12)
        assert d.scale == pytest.approx(np.sqrt(cfg["n_embd"] // n_head)) and d.d_head == 32
        assert d.score == pytest.approx(float(f.attn_scores[layer, head, i, j]), abs=1e-5)
    with pytest.raises(ValueError, match="a query and a key"):
        qkv.dot_product(np.zeros(4), np.zeros(5))


@pytest.mark.parametrize("model", MODELS)
def test_a_pairs_weight_from_q_and_k_is_the_models_probability(engine, model):
    ids, f, _, cfg = _read(engine, model)
    n_head, n_kv, t = cfg["n_head"], cfg["n_kv_head"] or cfg["n_head"], len(ids)
    for layer, head in [(0, 0), (2, 3), (3, 1)]:
        kv = kv_head(head, n_head, n_kv)
        q = torch.from_numpy(np.array(f.q[layer, head], dtype=np.float64))
        k = torch.from_numpy(np.array(f.k[layer, kv], dtype=np.float64))
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        want = torch.softmax((q @ k.T / np.sqrt(q.shape[1])).masked_fill(~causal, -np.inf), -1)
        for i in range(t):
            for j in range(t):
                got = qkv.pair_weight(f.q[layer, head, i], f.k[layer, kv], i, j)
                assert got == pytest.approx(float(want[i, j]), abs=1e-12)
                assert got == pytest.approx(float(f.attn_probs[layer, head, i, j]), abs=1e-6)


@pytest.mark.parametrize("model", MODELS)
def test_a_heads_output_is_its_probabilities_over_the_values(engine, model):
    ids, f, _, cfg = _read(engine, model)
    n_head, n_kv = cfg["n_head"], cfg["n_kv_head"] or cfg["n_head"]
    for layer in range(cfg["n_layer"]):
        for head in range(n_head):
            kv = kv_head(head, n_head, n_kv)
            probs = torch.from_numpy(np.array(f.attn_probs[layer, head], dtype=np.float64))
            v = torch.from_numpy(np.array(f.v[layer, kv], dtype=np.float64))
            for i in (0, len(ids) - 1):
                got = qkv.head_output(f.attn_probs[layer, head, i], f.v[layer, kv])
                np.testing.assert_allclose(got, (probs @ v)[i].numpy(), atol=1e-12)
                np.testing.assert_allclose(got, f.attn_heads[layer, head, i], atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_the_shapes_are_the_arrays_shapes(engine, model):
    ids, f, _, cfg = _read(engine, model)
    rows = dict(qkv.shapes(cfg, len(ids)))
    t, c = f.hidden.shape[1:]
    h, _, d = f.q.shape[1:]
    kv = f.k.shape[1]
    assert rows["token embeddings wte[ids]"] == f"{t} × {c}"
    assert rows[f"Q = x·W_q, split into {h} heads"] == f"{t} × {c} → {h} × {t} × {d}"
    assert rows["K = x·W_k, V = x·W_v"].startswith(f"{t} × {kv * d} → {kv} × {t} × {d}")
    assert rows["scores Q·Kᵀ/√d per head"] == "{} × {} × {}".format(*f.attn_scores.shape[1:])
    assert rows["heads concatenated"] == f"{t} × {h * d}"
    assert ("+ position embeddings wpe[0..T)" in rows) == (model == "anatomy-gpt")
    assert ("RoPE rotates each q and k by its position" in rows) == (model == "anatomy-llama")


# -- the dashboard's view -----------------------------------------------------------------------
def _view(engine, model, **selection):
    from dashboard.state import AnatomyState
    from dashboard.views.qkv import QkvLesson

    state = AnatomyState(engine=engine, model=model, lesson="qkv", text=TEXT)
    state.param.update(**selection)
    return state, QkvLesson(state=state)


def test_the_view_draws_the_selected_head_and_pair(engine):
    state, view = _view(engine, "anatomy-llama", layer=1, head=2, query=9, key=3)
    f = engine.run("anatomy-llama", state.ids, outputs="all")
    figs = view._f
    np.testing.assert_array_equal(figs.q.source.data["image"][0], f.q[1, 2])
    np.testing.assert_array_equal(figs.k.source.data["image"][0], f.k[1, 1])  # 2 reads K/V 1
    np.testing.assert_array_equal(figs.v.source.data["image"][0], f.v[1, 1])
    assert figs.q.selection.data["y"] == [9] and figs.k.selection.data["y"] == [3]
    score, p = float(f.attn_scores[1, 2, 9, 3]), float(f.attn_probs[1, 2, 9, 3])
    text = view._dot_text.object
    assert f"it is <b class='num'>{score:.4f}</b>" in text
    assert f"gets the weight <b class='num'>{p:.4f}</b>" in text
    assert f"for the pair: <b class='num'>{p:.4f}</b>" in text
    assert "shares with head 3" in view._share.object
    assert "RoPE" in view._embed_note.object
    state.param.update(head=0, key=9)
    np.testing.assert_array_equal(figs.k.source.data["image"][0], f.k[1, 0])
    products = f.q[1, 0, 9].astype(np.float64) * f.k[1, 0, 9].astype(np.float64)
    np.testing.assert_allclose(figs.dot.source.data["top"], products)
    assert "shares with head 1" in view._share.object


def test_the_view_reads_a_one_token_text_and_says_what_a_model_file_lacks(engine, monkeypatch):
    state, view = _view(engine, "anatomy-gpt")
    state.text = "Return"
    assert state.n_tokens == 1
    assert view._f.q.source.data["image"][0].shape == (1, 32)
    assert "Query <b class='tok'>0: Return</b> · key <b class='tok'>0: Return</b>" in (
        view._dot_text.object
    )
    assert not view._message.visible
    core = ("logits", "attn_scores", "attn_probs", "hidden")
    monkeypatch.setattr(engine, "outputs", lambda model, precision="fp32": core)
    state.text = "Return the value"  # a new reading: the lesson asks for q, k, v again
    assert view._message.visible
    assert "has no q, k, v, attn_heads output" in view._message.object
    assert "Rebuild the models with `make build`" in view._message.object
