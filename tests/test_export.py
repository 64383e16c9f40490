"""The ONNX contract: names, dynamic shapes, one file, parity with torch, for every recipe;
the decode graph against the full one."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from models.checkpoint import load_model
from models.contract import OUTPUTS, TRANSFORMER_OUTPUTS, transformer_outputs
from models.export import decode_parity, max_abs_diff, parity, parity_lengths

RECIPES = ("quick-gpt", "quick-llama", "quick-moe")


@pytest.fixture(scope="module", params=RECIPES)
def quick(request, quick_build, quick_manifest):
    entry = next(m for m in quick_manifest["models"] if m["name"] == request.param)
    model = load_model(quick_build / entry["weights_file"], entry["config"])
    return quick_build, entry, model


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_single_file_no_external_data(quick):
    out, entry, _ = quick
    for name in (entry["file"], entry["decode"]["file"]):
        proto = onnx.load(str(out / name), load_external_data=False)
        assert not any(
            t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer
        )
    assert not list(out.glob("*.data")), "no external-data side file"


def test_names_and_dynamic_axes(quick):
    out, entry, _ = quick
    proto = onnx.load(str(out / entry["file"]))
    (inp,) = proto.graph.input
    assert inp.name == "input_ids"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    dims = inp.type.tensor_type.shape.dim
    assert all(d.dim_param and not d.dim_value for d in dims), "batch and T are symbolic"
    names = [o.name for o in proto.graph.output]
    assert names == list(transformer_outputs(entry["config"])) == entry["outputs"]
    assert names[:4] == list(TRANSFORMER_OUTPUTS)
    assert set(names) <= set(OUTPUTS), "every output is documented in the contract"


def test_outputs_follow_the_recipe(quick):
    _, entry, _ = quick
    rope = entry["config"]["positions"] == "rope"
    swiglu = entry["config"]["mlp"] == "swiglu"
    assert ("q_before_rope" in entry["outputs"]) == ("k_before_rope" in entry["outputs"]) == rope
    assert ("mlp_gate" in entry["outputs"]) == swiglu
    moe = entry["config"]["mlp"] == "moe"
    routed = {"router_logits", "experts", "expert_weights"}
    assert (routed <= set(entry["outputs"])) == moe and ("mlp_hidden" in entry["outputs"]) != moe


def _shape(spec: str, cfg: dict, B: int, T: int) -> tuple[int, ...]:
    """A contract shape string, e.g. "(batch, n_layer, n_kv_head, T, d_head)", evaluated."""
    sizes = {
        "batch": B,
        "T": T,
        "vocab": cfg["vocab_size"],
        "n_layer": cfg["n_layer"],
        "n_layer + 1": cfg["n_layer"] + 1,
        "n_head": cfg["n_head"],
        "n_kv_head": cfg["n_kv_head"] or cfg["n_head"],
        "d_head": cfg["n_embd"] // cfg["n_head"],
        "d_model": cfg["n_embd"],
        "d_mlp": cfg["mlp_hidden"] or 4 * cfg["n_embd"],
        "n_expert": cfg.get("n_expert"),
        "top_k": cfg.get("expert_top_k"),
    }
    return tuple(sizes[p.strip()] for p in spec.strip("()").split(","))


@pytest.mark.parametrize("T", [1, 7, 32])
def test_parity_every_output(quick, T):
    """Every output, against torch, at the shape the contract documents."""
    out, entry, model = quick
    ids = torch.randint(
        entry["config"]["vocab_size"], (3, T), generator=torch.Generator().manual_seed(T)
    )
    names = entry["outputs"]
    got = _session(out / entry["file"]).run(names, {"input_ids": ids.numpy()})
    with torch.no_grad():
        want = model.outputs(ids)
        assert [t.numpy().tolist() for t in model(ids)] == [
            want[n].numpy().tolist() for n in TRANSFORMER_OUTPUTS
        ], "forward() is the first four outputs"
    for name, g in zip(names, got, strict=True):
        assert g.shape == _shape(OUTPUTS[name].shape, entry["config"], 3, T), name
        assert g.dtype == np.dtype(OUTPUTS[name].dtype), name
        assert max_abs_diff(want[name].numpy(), g) <= 1e-4, name


def test_parity_function_reports_all_outputs(quick):
    out, entry, model = quick
    errors = parity(model, out / entry["file"])
    assert list(errors) == entry["outputs"]
    assert max(errors.values()) <= 1e-4
    assert entry["parity_max_abs_error"].keys() == errors.keys()


def test_inside_outputs_are_what_they_say(quick):
    """Recomputed from the named outputs and the weights: the scores from q and k, the heads
    from the probabilities and v, resid_mid from the heads, the MLP from its branches."""
    out, entry, model = quick
    cfg = entry["config"]
    ids = torch.randint(cfg["vocab_size"], (1, 9), generator=torch.Generator().manual_seed(3))
    names = entry["outputs"]
    got = _session(out / entry["file"]).run(names, {"input_ids": ids.numpy()})
    o = dict(zip(names, got, strict=True))
    H, d = cfg["n_head"], cfg["n_embd"] // cfg["n_head"]
    group = H // (cfg["n_kv_head"] or H)
    k = np.repeat(o["k"], group, axis=2)  # query head h reads key/value head h // group
    v = np.repeat(o["v"], group, axis=2)
    np.testing.assert_allclose(o["attn_scores"], o["q"] @ k.swapaxes(-1, -2) / d**0.5, atol=1e-5)
    np.testing.assert_allclose(o["attn_heads"], o["attn_probs"] @ v, atol=1e-5)
    sd = {n: t.detach().numpy() for n, t in model.state_dict().items()}
    for layer in range(cfg["n_layer"]):
        p = f"h.{layer}."
        concat = o["attn_heads"][0, layer].transpose(1, 0, 2).reshape(9, H * d)
        proj = concat @ sd[p + "attn.c_proj.weight"].T + sd.get(p + "attn.c_proj.bias", 0)
        np.testing.assert_allclose(
            o["resid_mid"][0, layer], o["hidden"][0, layer] + proj, atol=1e-5
        )
        if "router_logits" in o:  # a mixture of experts: the router's choice, then its sum
            _check_experts(o, sd, cfg, layer)
            continue
        up = o["mlp_up"][0, layer]
        if "mlp_gate" in o:
            gate = o["mlp_gate"][0, layer]
            want = gate / (1 + np.exp(-gate)) * up
        else:
            want = torch.nn.functional.gelu(torch.from_numpy(up)).numpy()
        np.testing.assert_allclose(o["mlp_hidden"][0, layer], want, atol=1e-5)
        down = o["mlp_hidden"][0, layer] @ sd[p + "mlp.c_proj.weight"].T
        down = down + sd.get(p + "mlp.c_proj.bias", 0)
        np.testing.assert_allclose(
            o["hidden"][0, layer + 1], o["resid_mid"][0, layer] + down, atol=1e-5
        )
    if "q_before_rope" in o:  # the rotation keeps each pair's length and moves position 0 not
        half = d // 2

        def pair(x):  # the squared length of every rotating pair (i, i + d/2)
            return x[..., :half] ** 2 + x[..., half:] ** 2

        for a, b in (("q_before_rope", "q"), ("k_before_rope", "k")):
            np.testing.assert_allclose(pair(o[a]), pair(o[b]), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(o[a][..., 0, :], o[b][..., 0, :], atol=1e-6)
            assert not np.allclose(o[a][..., 1:, :], o[b][..., 1:, :], atol=1e-3)


def _check_experts(o: dict, sd: dict, cfg: dict, layer: int) -> None:
    """The router's logits from the normed stream, its top-k from their softmax, and the
    block's output as the stream plus the chosen experts' SwiGLUs, weighted."""
    p = f"h.{layer}."
    x = o["resid_mid"][0, layer].astype(np.float64)  # (T, C)
    x = x / np.sqrt((x**2).mean(-1, keepdims=True) + cfg["layer_norm_eps"]) * sd[p + "ln_2.weight"]
    logits = x @ sd[p + "mlp.router.weight"].T
    np.testing.assert_allclose(o["router_logits"][0, layer], logits, atol=1e-5)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    k = cfg["expert_top_k"]
    top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    np.testing.assert_array_equal(o["experts"][0, layer], top)
    w = np.take_along_axis(probs, top, -1)
    np.testing.assert_allclose(
        o["expert_weights"][0, layer], w / w.sum(-1, keepdims=True), atol=1e-6
    )
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        for e, weight in zip(top[t], o["expert_weights"][0, layer, t], strict=True):
            q = f"{p}mlp.experts.{e}."
            gate, up = x[t] @ sd[q + "c_gate.weight"].T, x[t] @ sd[q + "c_fc.weight"].T
            y[t] += weight * ((gate / (1 + np.exp(-gate)) * up) @ sd[q + "c_proj.weight"].T)
    np.testing.assert_allclose(o["hidden"][0, layer + 1], o["resid_mid"][0, layer] + y, atol=1e-5)


def test_decode_graph_names_and_axes(quick):
    out, entry, _ = quick
    s = _session(out / entry["decode"]["file"])
    assert [i.name for i in s.get_inputs()] == ["input_ids", "past_k", "past_v"]
    assert [o.name for o in s.get_outputs()] == ["logits", "present_k", "present_v"]
    past = s.get_inputs()[1].shape
    assert isinstance(past[0], str) and isinstance(past[3], str), "batch and P are symbolic"


def test_decoding_step_by_step_gives_the_full_graphs_logits(quick):
    """A whole block, one token at a time from the cache, at every position; in the build's
    record too. The cache is 2 · n_layer · n_kv_head · d_head floats per token."""
    out, entry, _ = quick
    cfg = entry["config"]
    error, per_token = decode_parity(
        out / entry["file"],
        out / entry["decode"]["file"],
        cfg["vocab_size"],
        cfg["block_size"],
        seed=5,
    )
    assert error <= 1e-4
    kv = cfg["n_kv_head"] or cfg["n_head"]
    assert per_token == 2 * cfg["n_layer"] * kv * (cfg["n_embd"] // cfg["n_head"]) * 4
    assert entry["decode"]["cache_bytes_per_token"] == per_token
    assert entry["decode"]["parity_max_abs_error"] <= 1e-4
    assert entry["decode"]["parity_steps"] == cfg["block_size"]


def test_decode_graph_refuses_a_wrong_cache(quick):
    out, entry, _ = quick
    s = _session(out / entry["decode"]["file"])
    cfg = entry["config"]
    bad = np.zeros((1, cfg["n_layer"] + 1, cfg["n_kv_head"] or cfg["n_head"], 3, 8), np.float32)
    with pytest.raises(Exception, match="past_k|dimension"):
        s.run(None, {"input_ids": np.zeros((1, 1), np.int64), "past_k": bad, "past_v": bad})


def test_parity_lengths_cover_one_middle_and_block():
    assert parity_lengths(128) == [1, 64, 128]
    assert parity_lengths(2) == [1, 2]


def test_max_abs_diff_treats_matching_infinities_as_equal():
    a = np.array([1.0, -np.inf, 3.0])
    assert max_abs_diff(a, np.array([1.0, -np.inf, 3.5])) == 0.5
    assert max_abs_diff(a, np.array([1.0, 0.0, 3.0])) == float("inf")
    assert max_abs_diff(a, np.array([1.0, np.nan, 3.0])) == float("inf")
