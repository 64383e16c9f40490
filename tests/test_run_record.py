"""The build's record of each training run, and what half precision does to its gradients."""

import json
import math

import ml_dtypes
import numpy as np
import pytest
import torch

from dashboard.lessons import mixed_precision as M
from dashboard.lessons import training as TR
from models.run_record import FATES, fates
from models.runtime import STATIC_DIR, sha256_file


def _edges(fmt: str) -> np.ndarray:
    """float32 values at and around every boundary of ``fmt``: half the smallest subnormal,
    halfway to the smallest normal, the overflow threshold; and a spread of magnitudes."""
    fi = ml_dtypes.finfo(ml_dtypes.bfloat16) if fmt == "bf16" else np.finfo(np.float16)
    sub, tiny, big = float(fi.smallest_subnormal), float(fi.smallest_normal), float(fi.max)
    below_max = float(np.nextafter(fi.dtype.type(big), fi.dtype.type(0)))
    marks = [sub / 2, tiny - sub / 2, big + (big - below_max) / 2, sub, tiny, big]
    out = [0.0]
    for m in marks:
        f = np.float32(m)
        out += [f, np.nextafter(f, np.float32(0)), np.nextafter(f, np.float32(np.inf))]
    rng = np.random.default_rng(0)
    out += list(np.exp2(rng.uniform(-150, 130, 4000)) * rng.choice([-1, 1], 4000))
    with np.errstate(over="ignore"):
        return np.asarray(out, dtype=np.float32)


def test_the_builds_fates_equal_numpys_float16_cast():
    x = _edges("fp16")
    x = x[np.isfinite(x)]
    for k in (0, 8, 16):
        with np.errstate(over="ignore"):
            y = (x.astype(np.float64) * 2.0**k).astype(np.float16)
        ref = {
            "zero": int((x == 0).sum()),
            "flushed": int(((y == 0) & (x != 0)).sum()),
            "subnormal": int(((y != 0) & (np.abs(y) < np.finfo(np.float16).tiny)).sum()),
            "overflow": int(np.isinf(y).sum()),
        }
        ref["normal"] = len(x) - sum(ref.values())
        assert fates(x, torch.float16, k) == ref


def test_the_quick_build_records_every_run(quick_build, quick_manifest):
    for entry in quick_manifest["models"]:
        run = entry["run"]
        assert sha256_file(quick_build / run["file"]) == run["sha256"]
        rec = TR.read_run(quick_build, entry)
        t = entry["training"]
        assert rec.steps == t["steps"] == len(rec.loss) == len(rec.lr) == len(rec.grad_norm)
        assert len(rec.weight_norm) == rec.steps
        assert rec.val_steps[0] == 0 and rec.val_steps[-1] == rec.steps
        assert rec.val_loss[-1] == pytest.approx(t["val_loss"], abs=1e-4)
        # the manifest's training loss is the mean of the last 50 steps of the same record
        assert np.mean(rec.loss[-50:]) == pytest.approx(t["train_loss"], abs=1e-4)
        assert rec.grad_steps == [0, t["warmup_steps"] - 1, t["steps"] // 2, t["steps"] - 1]
        assert rec.grad_sample.shape == (4, min(32768, rec.grad_of))
        assert rec.grad_of == entry["n_params"]
        for i, whole in enumerate(rec.whole):
            assert sum(whole["fp16@0"].values()) == rec.grad_of
            # the kept step's gradient norm is the one the step recorded
            assert whole["norm"] == pytest.approx(rec.grad_norm[rec.grad_steps[i]], rel=1e-4)
            sample = rec.grad_sample[i]
            for k in range(0, 25, 4):
                got = M.fates_from_binades(M.binade_counts(sample), "fp16", k)
                assert got == fates(sample, torch.float16, k)


def test_an_imported_model_has_no_run_to_show():
    with pytest.raises(ValueError, match="not trained by the build"):
        TR.read_run(STATIC_DIR, {"name": "gpt2-local", "source": {}})


def test_a_missing_record_is_a_clear_error(tmp_path):
    entry = {"name": "x", "run": {"file": "x-run.json", "grads_file": "x-grads.npy"}}
    with pytest.raises(ValueError, match="cannot be read"):
        TR.read_run(tmp_path, entry)


def test_smooth_is_a_trailing_mean():
    x = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
    assert TR.smooth(x, 2).tolist() == [1.0, 2.0, 3.0, 5.0, 6.0]


def _teaching_models():
    manifest = json.loads((STATIC_DIR / "manifest.json").read_text())
    return [e for e in manifest["models"] if "run" in e]


@pytest.mark.parametrize("entry", _teaching_models(), ids=lambda e: e["name"])
def test_the_sample_stands_for_the_whole_gradient(entry):
    """The kept sample's fractions are within 5 standard errors of the whole gradient's."""
    rec = TR.read_run(STATIC_DIR, entry)
    k = rec.grad_sample.shape[1]
    for i, whole in enumerate(rec.whole):
        for key, fmt, scale in (
            ("fp16@0", "fp16", 0),
            ("fp16@16", "fp16", 16),
            ("bf16@0", "bf16", 0),
        ):
            got = M.fates_from_binades(M.binade_counts(rec.grad_sample[i]), fmt, scale)
            for fate in FATES:
                p = whole[key][fate] / rec.grad_of
                se = math.sqrt(max(p * (1 - p), 1 / k) / k)
                assert abs(got[fate] / k - p) <= 5 * se, (entry["name"], key, fate)


def test_every_model_the_build_trained_has_its_run_recorded():
    manifest = json.loads((STATIC_DIR / "manifest.json").read_text())
    trained = [e["name"] for e in manifest["models"] if "training" in e]
    assert trained and trained == [e["name"] for e in _teaching_models()]
