"""The feed-forward lesson's numbers (dashboard/lessons/ffn.py) and its view.

Oracles: torch's relu, gelu (both modes) and silu; torch.topk and plain loops; numpy's own
histogram; Hugging Face's GPT2MLP and LlamaMLP built from a config and given the committed
models' weights (their output is what the block adds to the residual stream, read from the
model's own ``hidden`` and ``resid_mid`` outputs); the modules' own parameter counts; the
models' named outputs (GELU(mlp_up) and SiLU(mlp_gate)·mlp_up equal mlp_hidden).
"""

from __future__ import annotations

import html
import json
import re
import shutil

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as TF
from transformers import GPT2Config, LlamaConfig
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP
from transformers.models.llama.modeling_llama import LlamaMLP

from dashboard.lessons import ffn
from dashboard.state import DEFAULT_TEXT, AnatomyState
from dashboard.views import ffn as V
from export.pack import unpack
from export.snapshot import build_snapshot
from models.contract import TRANSFORMER_OUTPUTS
from models.runtime import STATIC_DIR, Engine, sha256_file

MODELS = ("anatomy-gpt", "anatomy-llama")


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _ids(engine, model, text=DEFAULT_TEXT):
    return engine.tokenizer(model).encode(text)


# -- the curves -----------------------------------------------------------------------------
def test_the_curves_are_torchs():
    c = ffn.activation_curves()
    x = torch.from_numpy(c["x"])
    assert c["x"][0] == -4.0 and c["x"][-1] == 4.0 and len(c["x"]) == 161
    np.testing.assert_array_equal(c["relu"], TF.relu(x).numpy())
    np.testing.assert_allclose(c["gelu"], TF.gelu(x).numpy(), atol=1e-12)
    np.testing.assert_allclose(c["gelu_tanh"], TF.gelu(x, approximate="tanh").numpy(), atol=1e-12)
    np.testing.assert_allclose(c["silu"], TF.silu(x).numpy(), atol=1e-12)
    want = (TF.gelu(x, approximate="tanh") - TF.gelu(x)).numpy()
    np.testing.assert_allclose(c["gelu_diff"], want, atol=1e-12)


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_the_lowest_point_is_where_torchs_curve_is_lowest(name):
    x = torch.linspace(-3, 0, 3_000_001, dtype=torch.float64)  # step 1e-6
    y = getattr(TF, name)(x)
    i = int(torch.argmin(y))
    at, value = ffn.lowest_point(getattr(ffn, name))
    assert abs(at - float(x[i])) < 2e-6
    assert abs(value - float(y[i])) < 1e-11 and value <= float(y[i]) + 1e-15


def test_the_largest_gap_of_the_tanh_gelu_is_found_by_a_plain_loop():
    c = ffn.activation_curves()
    gaps = [(abs(d), -i) for i, d in enumerate(c["gelu_diff"])]
    _, neg_i = max(gaps)
    at, gap = ffn.largest_gap(c["x"], c["gelu_diff"])
    assert at == c["x"][-neg_i] and gap == c["gelu_diff"][-neg_i]
    x = torch.from_numpy(c["x"])
    assert abs(gap) == float((TF.gelu(x, approximate="tanh") - TF.gelu(x)).abs().max())


def test_the_swiglu_surface_is_silu_gate_times_up():
    g = np.linspace(-4, 4, 9)
    u = np.linspace(-2, 3, 6)
    got = ffn.swiglu_surface(g, u)
    gt, ut = torch.from_numpy(g), torch.from_numpy(u)
    want = torch.outer(ut, TF.silu(gt)).numpy()
    assert got.shape == (6, 9)
    np.testing.assert_allclose(got, want, atol=1e-12)


# -- one token's activations ----------------------------------------------------------------
def test_top_neurons_are_torchs_topk_of_the_magnitudes():
    h = np.random.default_rng(0).normal(size=(3, 5, 200)).astype(np.float32)
    got = ffn.top_neurons(h, 12)
    want = torch.topk(torch.from_numpy(h).abs(), 12, dim=-1).indices.numpy()
    np.testing.assert_array_equal(got, want)


def test_top_neurons_ties_go_to_the_lower_index_and_k_is_capped():
    h = np.array([0.5, -2.0, 2.0, 0.0, -0.5, 1.0])
    want = sorted(range(len(h)), key=lambda i: (-abs(h[i]), i))
    assert ffn.top_neurons(h, 4).tolist() == want[:4] == [1, 2, 5, 0]
    assert ffn.top_neurons(h, 50).tolist() == want


def test_near_zero_counts_like_a_loop():
    h = np.random.default_rng(1).normal(scale=0.3, size=(2, 4, 100))
    h[0, 0, :3] = [0.1, -0.1, 0.0999]  # the threshold itself is not near zero
    got = ffn.near_zero(h, 0.1)
    want = [[sum(1 for v in row if abs(v) < 0.1) for row in layer] for layer in h]
    assert got.tolist() == want


def test_the_histogram_is_numpys_with_the_tails_in_the_end_bins():
    h = np.random.default_rng(2).normal(scale=1.5, size=(3, 7, 300))
    got = ffn.histogram(h)
    e = ffn.HIST_EDGES
    assert got.shape == (3, 7, len(e) - 1)
    for idx in np.ndindex(3, 7):
        want, _ = np.histogram(np.clip(h[idx], e[0], e[-1]), bins=e)
        np.testing.assert_array_equal(got[idx], want)
        assert got[idx].sum() == 300


def _hf_mlp(engine, model, layer):
    """Hugging Face's MLP of ``model``'s kind, given ``layer``'s weights (float64)."""
    cfg, w = engine.config(model), engine.weights(model)
    d, p = cfg["n_embd"], f"h.{layer}.mlp."
    t = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in w.items()}
    if cfg["mlp"] == "swiglu":
        hf = LlamaMLP(
            LlamaConfig(hidden_size=d, intermediate_size=ffn.mlp_width(cfg), hidden_act="silu")
        ).double()
        with torch.no_grad():
            hf.gate_proj.weight.copy_(t[p + "c_gate.weight"])
            hf.up_proj.weight.copy_(t[p + "c_fc.weight"])
            hf.down_proj.weight.copy_(t[p + "c_proj.weight"])
        return hf.eval()
    act = "gelu" if cfg["gelu_approximate"] == "none" else "gelu_new"
    hf = GPT2MLP(ffn.mlp_width(cfg), GPT2Config(n_embd=d, activation_function=act)).double()
    with torch.no_grad():  # GPT-2's Conv1D keeps its weight as (in, out)
        hf.c_fc.weight.copy_(t[p + "c_fc.weight"].T)
        hf.c_fc.bias.copy_(t[p + "c_fc.bias"])
        hf.c_proj.weight.copy_(t[p + "c_proj.weight"].T)
        hf.c_proj.bias.copy_(t[p + "c_proj.bias"])
    return hf.eval()  # no dropout


def _normed(engine, model, layer, x):
    """The block's second norm (LayerNorm or RMSNorm, the model's eps) of ``x``, in torch."""
    cfg, w = engine.config(model), engine.weights(model)
    x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    weight = torch.from_numpy(np.array(w[f"h.{layer}.ln_2.weight"], dtype=np.float64))
    if cfg["norm"] == "rmsnorm":
        return TF.rms_norm(x, (x.shape[-1],), weight, eps=cfg["layer_norm_eps"])
    bias = torch.from_numpy(np.array(w[f"h.{layer}.ln_2.bias"], dtype=np.float64))
    return TF.layer_norm(x, (x.shape[-1],), weight, bias, eps=cfg["layer_norm_eps"])


@pytest.mark.parametrize("model", MODELS)
def test_the_named_outputs_are_the_mlp_hugging_face_computes(engine, model):
    """mlp_hidden is GELU(mlp_up), or SiLU(mlp_gate)·mlp_up; and Hugging Face's MLP with the
    model's weights, on the normed stream between the sublayers, adds what the block adds."""
    cfg = engine.config(model)
    f = engine.run(model, _ids(engine, model), outputs="all")
    up = torch.from_numpy(f.mlp_up.astype(np.float64))
    if cfg["mlp"] == "swiglu":
        gate = torch.from_numpy(f.mlp_gate.astype(np.float64))
        want = TF.silu(gate) * up
    else:
        want = TF.gelu(up, approximate=cfg["gelu_approximate"])
    np.testing.assert_allclose(f.mlp_hidden, want.numpy(), atol=1e-5)
    for layer in range(cfg["n_layer"]):
        hf = _hf_mlp(engine, model, layer)
        with torch.no_grad():
            added = hf(_normed(engine, model, layer, f.resid_mid[layer])).numpy()
        np.testing.assert_allclose(added, f.hidden[layer + 1] - f.resid_mid[layer], atol=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_the_summary_of_every_layer_and_token(engine, model):
    f = engine.run(model, _ids(engine, model), outputs="all")
    gate = getattr(f, "mlp_gate", None)
    a = ffn.activations(f.mlp_up, f.mlp_hidden, gate)
    n_layer, t, d = f.mlp_hidden.shape
    assert a.neurons.shape == (n_layer, t, ffn.TOP_K) and a.width == d
    assert a.swiglu == (gate is not None)
    h = torch.from_numpy(f.mlp_hidden)
    top = torch.topk(h.abs(), ffn.TOP_K, dim=-1)
    np.testing.assert_array_equal(a.neurons, top.indices.numpy())
    np.testing.assert_array_equal(np.abs(a.hidden), top.values.numpy())
    np.testing.assert_array_equal(a.up, np.take_along_axis(f.mlp_up, a.neurons, -1))
    assert a.near.tolist() == (h.abs() < ffn.NEAR_ZERO).sum(-1).tolist()
    off = torch.from_numpy(f.mlp_up if gate is None else gate) < 0
    assert a.negative.tolist() == off.sum(-1).tolist()
    assert (a.counts.sum(-1) == d).all()
    if gate is not None:
        g = np.take_along_axis(gate, a.neurons, -1)
        np.testing.assert_array_equal(a.gate, g)
        np.testing.assert_allclose(a.gate_act, TF.silu(torch.from_numpy(g)).numpy(), atol=1e-6)
        assert a.gate_act.dtype == np.float32
    else:
        assert a.gate is None and a.gate_act is None


# -- parameters -----------------------------------------------------------------------------
def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("d", "h"), [(128, 512), (128, 352), (64, 100)])
@pytest.mark.parametrize("bias", [False, True])
def test_parameter_counts_are_the_modules(d, h, bias):
    gpt2 = GPT2MLP(h, GPT2Config(n_embd=d))
    if not bias:  # GPT-2's Conv1D always has a bias: count the weights only
        assert ffn.mlp_params(d, h, "gelu") == gpt2.c_fc.weight.numel() + gpt2.c_proj.weight.numel()
    else:
        assert ffn.mlp_params(d, h, "gelu", bias=True) == _count(gpt2)
    llama = LlamaMLP(LlamaConfig(hidden_size=d, intermediate_size=h, mlp_bias=bias))
    assert ffn.mlp_params(d, h, "swiglu", bias=bias) == _count(llama)
    with pytest.raises(ValueError, match="design must be one of"):
        ffn.mlp_params(d, h, "relu")


@pytest.mark.parametrize("model", MODELS)
def test_the_models_width_and_parameters_from_its_weights(engine, model):
    cfg, w = engine.config(model), engine.weights(model)
    width = ffn.mlp_width(cfg)
    f = engine.run(model, _ids(engine, model, "hi"), outputs=("mlp_hidden",))
    assert width == f.mlp_hidden.shape[-1] == w["h.0.mlp.c_fc.weight"].shape[0]
    hf = _hf_mlp(engine, model, 0)
    for layer in range(cfg["n_layer"]):
        assert ffn.mlp_params_in(w, layer) == _count(hf)
    kind = cfg["mlp"]
    assert ffn.mlp_params_in(w, 0) == ffn.mlp_params(cfg["n_embd"], width, kind, cfg["bias"])


def test_the_width_rows_and_llamas_rule():
    rows = ffn.width_rows(128, 32, 384, "swiglu")
    assert [r.width for r in rows] == [512, 512, 352, 384]
    gpt2 = _count(GPT2MLP(512, GPT2Config(n_embd=128))) - 512 - 128  # less its biases
    assert rows[0].params == gpt2 and rows[0].ratio == 1.0
    llama = _count(LlamaMLP(LlamaConfig(hidden_size=128, intermediate_size=512)))
    assert rows[1].params == llama and rows[1].ratio == 1.5
    assert rows[2].width == 32 * -(-(2 * 4 * 128 // 3) // 32)
    assert len(ffn.width_rows(128, 32)) == 3


def test_the_published_widths_include_hugging_faces_llama_default():
    c = LlamaConfig()  # LLaMA 7B's sizes
    assert ("LLaMA 7B", c.hidden_size, 256, None, c.intermediate_size) in ffn.PUBLISHED
    for _name, d, multiple, multiplier, published in ffn.PUBLISHED:
        assert ffn.swiglu_hidden(d, multiple, multiplier) == published


# -- the view -------------------------------------------------------------------------------
def _plain_table(a_up, a_h, a_gate, neurons):
    """The table's rows as (neuron, values...) text, from the model's outputs directly."""
    out = []
    for n in neurons:
        cells = [str(n)]
        if a_gate is not None:
            g = float(a_gate[n])
            cells += [f"{g:.3f}", f"{float(TF.silu(torch.tensor(g, dtype=torch.float32))):.3f}"]
        cells += [f"{float(a_up[n]):.3f}", f"{float(a_h[n]):.3f}"]
        out.append(cells)
    return out


@pytest.mark.parametrize("model", MODELS)
def test_the_view_follows_the_selected_layer_and_token(engine, model):
    state = AnatomyState(engine=engine, lesson="ffn", model=model, text=DEFAULT_TEXT)
    view = V.FfnLesson(state=state)
    view.__panel__()
    f = engine.run(model, state.ids, outputs="all")
    gate = getattr(f, "mlp_gate", None)
    for layer, query in [(0, 0), (2, 5), (3, len(state.ids) - 1), (1, 3)]:
        state.param.update(layer=layer, query=query)
        h = f.mlp_hidden[layer, query]
        want = torch.topk(torch.from_numpy(h).abs(), ffn.TOP_K).indices.tolist()
        assert view._bars.data["neuron"] == want
        np.testing.assert_array_equal(view._bars.data["hidden"], h[want])
        np.testing.assert_array_equal(view._bars.data["up"], f.mlp_up[layer, query][want])
        near = int((np.abs(h) < 0.1).sum())
        summary = view._summary.object
        assert f"<b class='num'>{near}</b> of its {h.size} activations" in summary
        assert f"({100 * near / h.size:.1f}%)" in summary and "|h| &lt; 0.1" in summary
        assert html.escape(state.labels[query]) in summary and f"in layer {layer}:" in summary
        table = view._table.object
        g = None if gate is None else gate[layer, query]
        assert _cells(table) == _plain_table(f.mlp_up[layer, query], h, g, want)
        counts, _ = np.histogram(np.clip(h, -2, 2), bins=np.linspace(-2, 2, 41))
        assert view._hist.data["count"] == counts.tolist()
        if gate is None:
            assert "has no gate" in summary and view._points.data["gate"] == []
        else:
            assert "negative gate" in summary
            np.testing.assert_array_equal(view._points.data["gate"], gate[layer, query][want])
        assert view._neurons_pane.object.title.text == f"Layer {layer}: most active neurons"


def _cells(table: str) -> list[str]:
    """Each body row of an HTML table: its cells' text."""
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", table)]
    return [r for r in rows if r]  # the header row has no td


def test_the_view_redraws_for_the_other_model_and_says_which_has_a_gate(engine):
    state = AnatomyState(engine=engine, lesson="ffn", model="anatomy-gpt")
    view = V.FfnLesson(state=state)
    view.__panel__()
    gelu_fig = view._neurons_pane.object
    assert "GELU(up)" in view._params.object or "GELU MLP" in view._params.object
    state.model = "anatomy-llama"
    assert view._neurons_pane.object is not gelu_fig
    labels = [i.label.value for i in view._neurons_pane.object.legend[0].items]
    assert labels == ["SiLU(gate)", "up", "h = SiLU(gate)·up"]
    assert "not the rule's 352" in view._params.object and "147,456" in view._params.object
    assert "has no gate" not in view._summary.object


def test_a_text_of_one_token_and_html_in_the_text(engine):
    state = AnatomyState(engine=engine, lesson="ffn", text="<b>")
    view = V.FfnLesson(state=state)
    view.__panel__()
    assert state.status == "ok"
    state.query = 0
    label = state.labels[0]
    assert "<" in label and len(view._bars.data["neuron"]) == ffn.TOP_K
    assert f"<b class='tok'>{html.escape(label)}</b>" in view._summary.object  # escaped
    state.text = "a"
    assert len(state.ids) == 1 and state.query == 0
    f = engine.run(state.model, state.ids, outputs=("mlp_hidden",))
    want = torch.topk(torch.from_numpy(f.mlp_hidden[state.layer, 0]).abs(), ffn.TOP_K).indices
    assert view._bars.data["neuron"] == want.tolist()
    state.text = ""
    assert state.status != "ok"  # the shell shows the prompt; the view keeps its last drawing


@pytest.fixture(scope="module")
def old_static(tmp_path_factory):
    """A static folder whose anatomy-gpt file was exported before the MLP outputs: the same
    graph with only the four outputs every transformer file has (the manifest updated)."""
    static = tmp_path_factory.mktemp("old") / "static"
    shutil.copytree(STATIC_DIR, static)
    path = static / "anatomy-gpt.onnx"
    graph = onnx.load(str(path))
    kept = [o for o in graph.graph.output if o.name in TRANSFORMER_OUTPUTS]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, str(path))
    manifest = json.loads((static / "manifest.json").read_text())
    for entry in manifest["models"]:
        if entry["name"] == "anatomy-gpt":
            entry.update(sha256=sha256_file(path), bytes=path.stat().st_size)
            entry["outputs"] = list(TRANSFORMER_OUTPUTS)
    (static / "manifest.json").write_text(json.dumps(manifest))
    return static


def test_a_model_file_without_mlp_outputs_is_explained(old_static):
    engine = Engine(old_static)
    state = AnatomyState(engine=engine, lesson="ffn", model="anatomy-gpt")
    assert state.status == "ok"
    view = V.FfnLesson(state=state)
    view.__panel__()
    assert view._error.visible and not view._body.visible
    assert "has no mlp_up, mlp_hidden output" in view._error.object
    state.query = 0  # nothing breaks on the next selection
    page = html.unescape(unpack(build_snapshot("If the file", engine=engine, lessons="ffn")))
    assert '"error-ffn"' in page and "has no mlp_up, mlp_hidden output" in page
    state.model = "anatomy-llama"  # a model that has them draws again
    assert not view._error.visible and view._body.visible
    assert len(view._bars.data["neuron"]) == ffn.TOP_K


def test_the_snapshot_embeds_summaries_not_the_tensors(engine):
    page = html.unescape(unpack(build_snapshot(DEFAULT_TEXT, engine=engine, lessons="ffn")))
    for name in ("ffn-neurons", "ffn-hist", "ffn-curves", "ffn-surface", "ffn-top", "ffn-token"):
        assert f'"{name}"' in page, name
    assert '"output-mlp_hidden"' not in page and '"output-mlp_up"' not in page
