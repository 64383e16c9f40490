"""Mixed precision's counts from binades: equal to torch's casts of the values themselves."""

import ml_dtypes
import numpy as np
import pytest
import torch

from dashboard.lessons import mixed_precision as M
from dashboard.lessons import training as TR
from models.run_record import fates
from models.runtime import STATIC_DIR, Engine
from tests.test_run_record import _edges

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def test_the_boundaries_are_the_formats_own():
    for fmt, fi in (("fp16", np.finfo(np.float16)), ("bf16", ml_dtypes.finfo(ml_dtypes.bfloat16))):
        b = M.boundaries(fmt)
        assert 2.0 ** b["sub"] == float(fi.smallest_subnormal)
        assert 2.0 ** b["tiny"] == float(fi.smallest_normal)
        assert 2.0 ** b["top"] <= float(fi.max) < 2.0 ** (b["top"] + 1)
        assert b["p"] == fi.nmant


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_counts_from_binades_equal_torch_casts_at_every_boundary(fmt):
    x = _edges(fmt)
    x = x[np.isfinite(x)]
    b = M.binade_counts(x)
    assert b.n == len(x)
    for k in range(31):  # loss scales 1 and up (torch scales in float32: exact for k ≥ 0)
        assert M.fates_from_binades(b, fmt, k) == fates(x, DTYPES[fmt], k), (fmt, k)


def test_counts_from_binades_equal_torch_casts_of_the_saved_gradients():
    engine = Engine(STATIC_DIR)
    trained = [m for m in engine.model_names if "run" in engine.entry(m)]
    assert trained
    for name in trained:
        rec = TR.read_run(STATIC_DIR, engine.entry(name))
        for sample in rec.grad_sample:
            b = M.binade_counts(sample)
            for k in (0, 8, 12, 16, 20, 24):
                assert M.fates_from_binades(b, "fp16", k) == fates(sample, torch.float16, k)
            assert M.fates_from_binades(b, "bf16", 0) == fates(sample, torch.bfloat16, 0)


def test_binades_are_frexps_exponents():
    x = np.float32([1.0, 1.5, 2.0, 3.999, 2.0**-149, 2.0**-126, 0.0, -0.75])
    b = M.binade_counts(x)
    e = np.arange(M.LOW, M.HIGH + 1)
    assert dict(zip(e[b.total > 0].tolist(), b.total[b.total > 0].tolist(), strict=True)) == {
        -149: 1,
        -126: 1,
        -1: 1,
        0: 2,
        1: 2,
    }
    assert b.zeros == 1 and int(b.exact.sum()) == 4  # 1, 2, 2**-149, 2**-126
    assert int(b.top[7].sum()) == 1  # 3.999 = (2 - 0.0005)·2: within 2**-7 of the top


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="fp16 or bf16"):
        M.boundaries("fp8_e4m3")
