"""The run-time engine: no torch, shared sessions, provider choice, cache, clear errors."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from models.runtime import Engine, EngineError, resolve_providers

from .conftest import ROOT


def test_runtime_never_imports_torch():
    code = textwrap.dedent(
        """
        import sys
        import models.runtime
        e = models.runtime.Engine()
        f = e.run(e.default_model, e.tokenizer(e.default_model).encode("Return the value."))
        assert f.logits.shape[0] > 0
        banned = [m for m in ("torch", "onnx", "onnxscript", "transformers") if m in sys.modules]
        print(banned)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("request_", "available", "first", "notice"),
    [
        ("auto", ["CPUExecutionProvider"], "CPUExecutionProvider", False),
        ("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], "CUDAExecutionProvider", False),
        ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], "CPUExecutionProvider", False),
        ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], "CUDAExecutionProvider", False),
        ("cuda", ["CPUExecutionProvider"], "CPUExecutionProvider", True),
    ],
)
def test_provider_resolution(request_, available, first, notice):
    providers, why = resolve_providers(request_, available)
    assert providers[0] == first
    assert providers[-1] == "CPUExecutionProvider", "CPU is always the fallback"
    assert bool(why) == notice


def test_unknown_provider_is_refused():
    with pytest.raises(EngineError, match="unknown provider"):
        resolve_providers("tpu", [])


def test_engine_refuses_unknown_provider(quick_build):
    with pytest.raises(EngineError, match="unknown provider 'tpu'; choose one of auto, cpu, cuda"):
        Engine(quick_build, provider="tpu")


def test_reports_the_provider_that_runs(quick_build):
    e = Engine(quick_build, provider="cuda")
    name = e.default_model
    f = e.run(name, [1, 2, 3])
    assert f.provider == e.provider(name) == "CPUExecutionProvider"  # no GPU on this machine
    assert "CUDA" in e.provider_notice(name)


def test_forward_shapes_and_values(quick_build, quick_manifest):
    e = Engine(quick_build)
    cfg = quick_manifest["models"][0]["config"]
    f = e.run(e.default_model, [5, 6, 7, 8])
    L, H, V, C = cfg["n_layer"], cfg["n_head"], cfg["vocab_size"], cfg["n_embd"]
    assert f.logits.shape == (4, V)
    assert f.attn_scores.shape == f.attn_probs.shape == (L, H, 4, 4)
    assert f.hidden.shape == (L + 1, 4, C)
    np.testing.assert_allclose(f.attn_probs.sum(-1), 1.0, atol=1e-5)
    assert f.seconds > 0


def test_cache_reuses_forward_passes(quick_build):
    e = Engine(quick_build)
    name = e.default_model
    a = e.run(name, [1, 2, 3])
    b = e.run(name, (1, 2, 3))
    assert a is b and e.forward_calls == 1
    e.run(name, [1, 2])
    assert e.forward_calls == 2


def test_cache_is_bounded(quick_build):
    e = Engine(quick_build, cache_size=2)
    name = e.default_model
    for ids in ([1], [2], [3], [1]):
        e.run(name, ids)
    assert e.forward_calls == 4, "[1] was evicted by [2], [3]"


def test_sessions_shared_across_engines(quick_build):
    a, b = Engine(quick_build), Engine(quick_build)
    assert a._session(a.default_model) is b._session(b.default_model)


@pytest.mark.parametrize(
    ("ids", "message"),
    [([], "no tokens"), (list(range(33)), "block size"), ([-1], "must lie"), ([10**6], "must lie")],
)
def test_bad_ids_are_clear_errors(quick_build, ids, message):
    e = Engine(quick_build)
    with pytest.raises(EngineError, match=message):
        e.run(e.default_model, ids)


def test_unknown_model(quick_build):
    with pytest.raises(EngineError, match="unknown model 'nope'"):
        Engine(quick_build).run("nope", [1])


def test_missing_manifest(tmp_path):
    with pytest.raises(EngineError, match="manifest.json not found.*make build"):
        Engine(tmp_path)


def test_corrupt_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON"):
        Engine(tmp_path)


@pytest.fixture()
def copy_of_quick(quick_build, tmp_path):
    dst = tmp_path / "static"
    shutil.copytree(quick_build, dst)
    return dst


def test_missing_model_file_names_it(copy_of_quick):
    e = Engine(copy_of_quick)
    name = e.default_model
    (copy_of_quick / e.entry(name)["file"]).unlink()
    with pytest.raises(EngineError, match=r"quick-gpt\.onnx is missing.*make build"):
        e.run(name, [1])


def test_corrupt_model_file_detected_by_checksum(copy_of_quick):
    e = Engine(copy_of_quick)
    path = copy_of_quick / e.entry(e.default_model)["file"]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(EngineError, match="does not match the manifest.*make build"):
        e.run(e.default_model, [1])


def test_corrupt_model_file_without_checksum(copy_of_quick):
    manifest = json.loads((copy_of_quick / "manifest.json").read_text())
    del manifest["models"][0]["sha256"]
    (copy_of_quick / "manifest.json").write_text(json.dumps(manifest))
    e = Engine(copy_of_quick)
    (copy_of_quick / e.entry(e.default_model)["file"]).write_bytes(b"garbage" * 100)
    with pytest.raises(EngineError, match="could not be loaded.*make build"):
        e.run(e.default_model, [1])


def test_cache_is_bounded_in_bytes_and_can_be_cleared():
    e = Engine(cache_bytes=1)  # smaller than any pass: only the latest one is kept
    model = e.default_model
    ids = e.tokenizer(model).encode("Return the value of the file.")
    e.run(model, ids)
    one = e.cached_bytes
    assert one > 0
    e.run(model, ids[:-1])
    assert e.cached_bytes < 2 * one  # the first pass was evicted...
    calls = e.forward_calls
    e.run(model, ids)
    assert e.forward_calls == calls + 1  # ...so it runs again
    roomy = Engine(cache_bytes=64 << 20)
    roomy.run(model, ids)
    roomy.run(model, ids[:-1])
    calls = roomy.forward_calls
    roomy.run(model, ids)
    assert roomy.forward_calls == calls  # both kept: a cache hit
    roomy.clear_cache()
    assert roomy.cached_bytes == 0
    roomy.run(model, ids)
    assert roomy.forward_calls == calls + 1
