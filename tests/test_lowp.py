"""The fp16 and emulated-bf16 graphs (models/lowp.py) and running them (models/runtime.py).

References: torch running the committed weights in float16 / bfloat16 (``model.half()``,
``model.to(torch.bfloat16)``), ONNX Runtime's own profiler (which kernel ran on which types),
ml_dtypes round trips (is a value bf16-representable) and the ``safetensors`` package.

Measured on this machine (ORT 1.31.1, CPU) over 40 random inputs, T = 1…128, as
max |difference| / max |fp32 value| per output: ORT fp16 vs torch fp16 ≤ 5.0·eps16 (worst:
attention probabilities; logits 1.3·eps16). That is no closer than either is to fp32
(≤ 3.5·eps16): both round at different points (torch's Linear adds the bias before rounding,
the graph after the MatMul), so they agree to the format's precision, not bit for bit. ORT
bf16 vs torch bf16 ≤ 4.0·eps_bf16, vs fp32 ≤ 4.8·eps_bf16. Mean |error| against fp32: bf16's
is 6.9–7.7 times fp16's (eps_bf16 / eps16 = 8). Top-1 next token agreeing with fp32: ≥ 98.4%
of positions in fp16, ≥ 94.1% in bf16. The tolerances below (8 eps, ratio 4, 90%) leave room.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import safetensors.numpy
import torch

from models import lowp
from models.checkpoint import load_model
from models.runtime import Engine, EngineError, read_safetensors, session_options, sha256_file

from .conftest import ROOT, STATIC

EPS16 = 2.0**-10
EPS_BF16 = 2.0**-7
NAMES = ("logits", "attn_scores", "attn_probs", "hidden")
LOW = {"fp16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16}


@pytest.fixture(scope="module")
def entry(static_manifest) -> dict:
    return next(m for m in static_manifest["models"] if m["name"] == "anatomy-gpt")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(STATIC, provider="cpu")


def _ids(seed: int, t: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, 1024, t).tolist()


# -- the committed files ---------------------------------------------------------------------------
def _unstamped(variants: dict) -> dict:
    """The variants without the ONNX Runtime version that made them."""
    return {p: {k: v for k, v in rec.items() if k != "onnxruntime"} for p, rec in variants.items()}


@pytest.mark.parametrize("precision", lowp.VARIANTS)
def test_committed_variants_match_manifest(entry, precision):
    v = entry["variants"][precision]
    path = STATIC / v["file"]
    assert v["file"] == f"anatomy-gpt-{precision}.onnx"
    assert sha256_file(path) == v["sha256"] and path.stat().st_size == v["bytes"]
    assert v["emulated_ops"] and v["description"]


def test_regenerating_gives_the_committed_bytes(entry, tmp_path):
    """`python -m models.lowp` on a copy of static/: the fp32 file and the weights stay
    byte-identical, and the variants come out exactly as committed (the code made them)."""
    for name in (entry["file"], entry["weights_file"], "manifest.json"):
        shutil.copy(STATIC / name, tmp_path / name)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] == entry["name"]]
    for m in manifest["models"]:
        m.pop("variants", None)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    before = sha256_file(tmp_path / entry["file"])
    assert lowp.main(["--static", str(tmp_path)]) == 0
    assert sha256_file(tmp_path / entry["file"]) == before == entry["sha256"]
    new = json.loads((tmp_path / "manifest.json").read_text())["models"][0]
    # which ops have an fp16 kernel is decided by the installed ONNX Runtime; its version is
    # recorded with the variants, and a newer release that keeps the same kernels must match
    assert _unstamped(new["variants"]) == _unstamped(entry["variants"])
    for v in new["variants"].values():
        assert v["onnxruntime"] == ort.__version__
    for precision in lowp.VARIANTS:
        f = entry["variants"][precision]["file"]
        assert (tmp_path / f).read_bytes() == (STATIC / f).read_bytes()
    assert {k: v for k, v in new.items() if k != "variants"} == {
        k: v for k, v in entry.items() if k != "variants"
    }


def test_lowp_main_errors(tmp_path, capsys):
    shutil.copy(STATIC / "manifest.json", tmp_path / "manifest.json")
    assert lowp.main(["--static", str(tmp_path), "--model", "nope"]) == 2
    assert "no model 'nope'" in capsys.readouterr().err
    assert lowp.main(["--static", str(tmp_path)]) == 2  # the .onnx file is not there
    assert "model file not found" in capsys.readouterr().err


# -- what ONNX Runtime really runs -----------------------------------------------------------------
def _profile(path) -> list[dict]:
    so = session_options(1)
    so.enable_profiling = True
    so.profile_file_prefix = str(path.parent / f"profile-{path.stem}")
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    s.run(None, {"input_ids": np.array([_ids(0, 9)], dtype=np.int64)})
    with open(s.end_profiling()) as f:
        events = json.load(f)
    return [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


def test_fp16_ops_run_on_fp16_tensors_as_recorded(entry, tmp_path):
    """ORT's profiler: the ops the manifest calls native read float16 tensors; the emulated
    ones read float32 (between our Casts); ORT inserted no casts of its own."""
    shutil.copy(STATIC / entry["variants"]["fp16"]["file"], tmp_path / "m.onnx")
    rec = entry["variants"]["fp16"]
    seen: dict[str, set[str]] = {}
    for e in _profile(tmp_path / "m.onnx"):
        types = {k for d in e["args"].get("input_type_shape", []) for k in d}
        seen.setdefault(e["args"]["op_name"], set()).update(types)
        assert "Inserted" not in e["name"], e["name"]
        assert e["args"]["provider"] == "CPUExecutionProvider"
    for op in rec["native_ops"]:
        assert "float16" in seen[op] and "float" not in seen[op], (op, seen[op])
    for op in rec["emulated_ops"]:
        assert "float" in seen[op] and "float16" not in seen[op], (op, seen[op])
    # the arithmetic: on this CPU provider only LayerNormalization has an fp16 kernel
    assert {"MatMul", "Add", "Softmax", "Gelu"} <= set(rec["emulated_ops"])
    assert "LayerNormalization" in rec["native_ops"]


@pytest.mark.parametrize("precision", lowp.VARIANTS)
def test_roundings_survive_graph_optimisation(entry, tmp_path, precision):
    """Every Cast that rounds an op's result to fp16/bf16 is still in the graph ORT runs
    (ORT_ENABLE_ALL): only casts of constant weights are folded away."""
    path = STATIC / entry["variants"][precision]["file"]
    src = onnx.load(str(path))
    so = session_options(1)
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    opt = onnx.load(str(tmp_path / "opt.onnx"))

    def roundings(m):
        return {
            (n.input[0], n.output[0])
            for n in m.graph.node
            if n.op_type == "Cast"
            and n.input[0].endswith("__op")
            and next(a.i for a in n.attribute if a.name == "to") == LOW[precision]
        }

    kept = roundings(src)
    assert len(kept) > 50
    assert kept <= roundings(opt)


def test_bf16_every_intermediate_is_bf16(entry):
    """Run the bf16 graph with every rounded activation as an extra output: each is exactly
    bf16-representable, and the named outputs are unchanged by asking for them."""
    model = onnx.load(str(STATIC / entry["variants"]["bf16"]["file"]))
    rounded = [n.output[0] for n in model.graph.node if n.input[0].endswith("__bf16")]
    assert len(rounded) > 100  # every weight and every computed activation
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(r, onnx.TensorProto.FLOAT, None)
        for r in rounded
        if r not in have
    )
    full = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"input_ids": np.array([_ids(3, 40)], dtype=np.int64)}
    outs = full.run(None, feed)
    for name, value in zip([o.name for o in model.graph.output], outs, strict=True):
        back = value.astype(ml_dtypes.bfloat16).astype(np.float32)
        np.testing.assert_array_equal(back, value, err_msg=name)
    named = plain.run(None, feed)
    for a, b in zip(named, outs[: len(named)], strict=True):
        np.testing.assert_array_equal(a, b)


def test_fp16_graph_stores_weights_in_fp16(entry):
    model = onnx.load(str(STATIC / entry["variants"]["fp16"]["file"]))
    types = {t.data_type for t in model.graph.initializer}
    assert onnx.TensorProto.FLOAT not in types and onnx.TensorProto.FLOAT16 in types
    assert [o.name for o in model.graph.output] == entry["outputs"]
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)


# -- against torch at the same precision -----------------------------------------------------------
@pytest.fixture(scope="module")
def torch_runs(entry):
    def run(dtype):
        model = load_model(STATIC / entry["weights_file"], entry["config"]).to(dtype)

        def f(ids):
            with torch.no_grad():
                return [x[0].float().numpy() for x in model(torch.tensor([ids]))]

        return f

    return {"fp32": run(torch.float32), "fp16": run(torch.float16), "bf16": run(torch.bfloat16)}


@pytest.mark.parametrize("t", [1, 17, 64, 128])
def test_lower_precision_runs_against_torch(engine, torch_runs, t):
    ids = _ids(t, t)
    model = engine.default_model
    runs = {p: engine.run(model, ids, p) for p in ("fp32", "fp16", "bf16")}
    ref = {p: torch_runs[p](ids) for p in ("fp16", "bf16")}
    for i, name in enumerate(NAMES):
        a32 = getattr(runs["fp32"], name).astype(np.float64)
        scale = np.abs(a32).max()
        a16 = getattr(runs["fp16"], name).astype(np.float64)
        ab = getattr(runs["bf16"], name).astype(np.float64)
        # the values are what the formats store
        np.testing.assert_array_equal(a16.astype(np.float16), a16)
        np.testing.assert_array_equal(ab.astype(ml_dtypes.bfloat16).astype(np.float64), ab)
        assert np.abs(a16 - ref["fp16"][i]).max() <= 8 * EPS16 * scale, name
        assert np.abs(ab - ref["bf16"][i]).max() <= 8 * EPS_BF16 * scale, name
        if name == "attn_probs" and t == 1:
            continue  # one token attends to itself with probability exactly 1
        err16, errb = np.abs(a16 - a32).mean(), np.abs(ab - a32).mean()
        assert 0 < err16 < errb / 4, (name, err16, errb)  # bf16 has 3 fewer mantissa bits
        assert np.abs(a16 - a32).max() <= 8 * EPS16 * scale
    for p in ("fp16", "bf16"):
        agree = runs[p].logits.argmax(-1) == runs["fp32"].logits.argmax(-1)
        assert agree.mean() >= 0.9, p


# -- the engine ------------------------------------------------------------------------------------
def test_engine_runs_and_caches_each_precision(quick_build):
    e = Engine(quick_build)
    name = e.default_model
    assert e.precisions(name) == ["fp32", "fp16", "bf16"]
    a = e.run(name, [1, 2, 3])
    b = e.run(name, [1, 2, 3], precision="fp16")
    c = e.run(name, [1, 2, 3], precision="bf16")
    assert (a.precision, b.precision, c.precision) == ("fp32", "fp16", "bf16")
    assert e.run(name, (1, 2, 3), "fp16") is b and e.forward_calls == 3
    assert b.logits.dtype == np.float32 and b.logits.shape == a.logits.shape
    assert not np.array_equal(a.logits, b.logits)
    assert e.provider(name, "fp16") == b.provider == "CPUExecutionProvider"
    assert e.variant(name, "bf16")["file"].endswith("-bf16.onnx")
    other = Engine(quick_build)
    assert other._session(name, "fp16") is e._session(name, "fp16")  # shared per process


def test_engine_precision_errors(quick_build, tmp_path):
    e = Engine(quick_build)
    with pytest.raises(EngineError, match="unknown precision 'fp8'"):
        e.run(e.default_model, [1], precision="fp8")
    dst = tmp_path / "static"
    shutil.copytree(quick_build, dst)
    e = Engine(dst)
    (dst / e.variant(e.default_model, "fp16")["file"]).unlink()
    with pytest.raises(EngineError, match=r"fp16\.onnx is missing.*python -m models\.lowp"):
        e.run(e.default_model, [1], "fp16")
    manifest = json.loads((dst / "manifest.json").read_text())
    del manifest["models"][0]["variants"]
    (dst / "manifest.json").write_text(json.dumps(manifest))
    e = Engine(dst)
    assert e.precisions(e.default_model) == ["fp32"]
    with pytest.raises(EngineError, match="no bf16 variant.*python -m models.lowp"):
        e.run(e.default_model, [1], "bf16")
    assert e.run(e.default_model, [1]).precision == "fp32"


def test_variants_run_without_onnx_or_torch():
    code = textwrap.dedent(
        """
        import sys
        import models.runtime
        e = models.runtime.Engine()
        for p in ("fp16", "bf16"):
            e.run(e.default_model, [1, 2, 3], p)
        e.weights(e.default_model)
        banned = [m for m in ("torch", "onnx", "onnxscript", "transformers") if m in sys.modules]
        print(banned)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- weights without torch -------------------------------------------------------------------------
def test_read_safetensors_matches_the_safetensors_package(entry):
    ours = read_safetensors(STATIC / entry["weights_file"])
    ref = safetensors.numpy.load_file(str(STATIC / entry["weights_file"]))
    assert set(ours) == set(ref)
    for k, v in ref.items():
        assert ours[k].dtype == v.dtype and ours[k].shape == v.shape
        np.testing.assert_array_equal(ours[k], v)


def test_read_safetensors_other_dtypes_and_errors(tmp_path):
    arrays = {
        "a": np.arange(6, dtype=np.float16).reshape(2, 3),
        "b": np.array([1, -2], dtype=np.int64),
        "c": np.array([0.1, 3e38], dtype=np.float32).astype(ml_dtypes.bfloat16),
    }
    path = tmp_path / "x.safetensors"
    safetensors.numpy.save_file({k: v for k, v in arrays.items() if k != "c"}, str(path))
    got = read_safetensors(path)
    for k in ("a", "b"):
        np.testing.assert_array_equal(got[k], arrays[k])
    # bf16 through torch, the package's other writer
    from safetensors.torch import save_file

    save_file({"c": torch.tensor([0.1, 3e38], dtype=torch.bfloat16)}, str(tmp_path / "c.st"))
    np.testing.assert_array_equal(read_safetensors(tmp_path / "c.st")["c"], arrays["c"])
    for bad in (b"", b"\xff" * 8 + b"{}", b"\x02\x00\x00\x00\x00\x00\x00\x00{x"):
        (tmp_path / "bad").write_bytes(bad)
        with pytest.raises(ValueError):
            read_safetensors(tmp_path / "bad")
    raw = path.read_bytes()
    (tmp_path / "cut").write_bytes(raw[:-4])
    with pytest.raises(ValueError, match="byte offsets"):
        read_safetensors(tmp_path / "cut")


def test_convert_refuses_unknown_precision_and_names_variant_files():
    model = onnx.load(str(STATIC / "anatomy-gpt.onnx"))
    with pytest.raises(ValueError, match="fp16, bf16"):
        lowp.convert(model, "fp8")
    assert lowp.variant_file("anatomy-gpt.onnx", "bf16") == "anatomy-gpt-bf16.onnx"
