"""dashboard.lessons.precision against independent implementations.

References, none of which is the code under test:

- a bit-level rounding written here from first principles (integer arithmetic on the float64
  significand; each format described only by its exponent and mantissa widths);
- ``numpy.finfo``, ``ml_dtypes.finfo`` and ``torch.finfo``;
- torch casts (``.to(torch.float16 / bfloat16 / float8_e4m3fn / float8_e5m2)``);
- numpy's own float64 → float16 conversion (it rounds once, correctly);
- ``torch.softmax`` on float16/bfloat16 tensors, ``torch.histogram``, ``fractions.Fraction``.

Two behaviours of the references are pinned down here rather than copied:

- torch and ml_dtypes convert float64 to bf16/fp8 (torch also to fp16) through float32, so
  they double-round float64 inputs that sit just off a tie; the module does not;
- torch's ``float8_e4m3fn`` cast saturates (overflow and ±inf → ±448) where ml_dtypes (and the
  module by default) give NaN; ``round_to(..., saturate=True)`` matches torch.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch

from dashboard.lessons import precision as P

# -- the formats from first principles: (exponent bits, mantissa bits, finite-only "fn") ---------
SPECS = {
    "fp32": (8, 23, False),
    "fp16": (5, 10, False),
    "bf16": (8, 7, False),
    "fp8_e4m3": (4, 3, True),  # fn: no inf; only S.1111.111 is NaN, so the top binade stops at .110
    "fp8_e5m2": (5, 2, False),
}
TORCH = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
NAMES = list(SPECS)


class Spec:
    """A binary floating-point format, from its field widths alone."""

    def __init__(self, name: str):
        self.e, self.m, self.fn = SPECS[name]
        self.bits = 1 + self.e + self.m
        self.bias = 2 ** (self.e - 1) - 1
        self.emin = 1 - self.bias
        # IEEE: the all-ones exponent is inf/NaN. fn: it holds normals, all-ones mantissa is NaN.
        self.emax = 2**self.e - 1 - self.bias if self.fn else 2**self.e - 2 - self.bias
        top = 2 - 2.0 ** -(self.m - 1) if self.fn else 2 - 2.0**-self.m
        self.max = top * 2.0**self.emax
        self.tiny = 2.0**self.emin
        self.sub = 2.0 ** (self.emin - self.m)
        self.eps = 2.0**-self.m


def ref_round(x, name: str) -> np.ndarray:
    """Round float64 ``x`` to format ``name``: nearest, ties to even, with integer arithmetic
    on the exact significand M·2**E of each float64."""
    sp = Spec(name)
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    b = x.view(np.uint64)
    ex = ((b >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    fr = (b & np.uint64((1 << 52) - 1)).astype(np.int64)
    big = np.int64(1) << np.int64(52)
    M = np.where(ex > 0, fr | big, fr)  # |x| = M · 2**E exactly
    E = np.where(ex > 0, ex - 1075, -1074)
    _, bitlen = np.frexp(M.astype(np.float64))  # M < 2**53: exact, so frexp gives its bit length
    top = E + bitlen.astype(np.int64) - 1  # floor(log2 |x|)
    q = np.maximum(top, sp.emin) - sp.m  # the spacing 2**q of the format around |x|
    shift = q - E
    s = np.clip(shift, 0, 62)
    n = M >> s
    rem = M - (n << s)
    half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
    up = (s > 0) & ((rem > half) | ((rem == half) & ((n & 1) == 1)))
    n = n + up
    with np.errstate(over="ignore"):
        val = np.where(shift <= 0, np.abs(x), np.ldexp(n.astype(np.float64), q))
    overflow = np.isfinite(x) & (val > sp.max)
    out = np.copysign(val, x)
    out[overflow] = np.nan if sp.fn else np.copysign(np.inf, x[overflow])
    out[np.isinf(x)] = np.nan if sp.fn else x[np.isinf(x)]
    out[np.isnan(x)] = np.nan
    return out


def ref_encode(v: float, name: str) -> int:
    """The bit pattern of a value the format holds (not NaN)."""
    sp = Spec(name)
    sign = 1 if math.copysign(1.0, v) < 0 else 0
    a = abs(v)
    if math.isinf(a):
        field, mant = 2**sp.e - 1, 0
    elif a < sp.tiny:
        field, mant = 0, Fraction(a) / Fraction(2) ** (sp.emin - sp.m)
    else:
        e = math.frexp(a)[1] - 1
        field, mant = e + sp.bias, (Fraction(a) / Fraction(2) ** e - 1) * 2**sp.m
    assert mant == int(mant), (v, name)
    return (sign << (sp.bits - 1)) | (field << sp.m) | int(mant)


def ref_decode(pattern: int, name: str) -> float:
    """The value of a bit pattern: (−1)**s · 2**(e − bias) · 1.m, or 2**emin · 0.m."""
    sp = Spec(name)
    s = pattern >> (sp.bits - 1)
    field = (pattern >> sp.m) & (2**sp.e - 1)
    mant = pattern & (2**sp.m - 1)
    sign = -1.0 if s else 1.0
    if sp.fn and field == 2**sp.e - 1 and mant == 2**sp.m - 1:
        return math.nan
    if not sp.fn and field == 2**sp.e - 1:
        return sign * math.inf if mant == 0 else math.nan
    if field == 0:
        return sign * math.ldexp(mant, sp.emin - sp.m)
    return sign * math.ldexp(2**sp.m + mant, field - sp.bias - sp.m)


def same(a, b) -> np.ndarray:
    """Elementwise: equal, NaN matching NaN, and the sign of zero compared too."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    return both_nan | ((a == b) & (np.signbit(a) == np.signbit(b)))


def assert_same(a, b, what=""):
    ok = same(a, b)
    if not ok.all():
        i = np.flatnonzero(~ok.ravel())[:5]
        a, b = np.ravel(a), np.ravel(b)
        raise AssertionError(f"{what}: {ok.size - ok.sum()} differ, e.g. {a[i]} vs {b[i]}")


def edge_values(name: str) -> np.ndarray:
    sp = Spec(name)
    ulp_max = 2.0 ** (sp.emax - sp.m)
    thr = sp.max + ulp_max / 2
    one_tie = 1 + 2.0 ** -(sp.m + 1)  # halfway between 1 and 1 + eps: ties to 1 (even)
    three_tie = 1 + 3 * 2.0 ** -(sp.m + 1)  # halfway between 1 + eps and 1 + 2eps: up (even)
    vals = [
        sp.max,
        -sp.max,
        thr,
        -thr,
        np.nextafter(thr, 0),
        np.nextafter(thr, np.inf),
        one_tie,
        three_tie,
        np.nextafter(one_tie, 2),
        np.nextafter(one_tie, 0),
        np.nextafter(three_tie, 0),
        sp.tiny,
        np.nextafter(sp.tiny, 0),
        sp.sub,
        sp.sub / 2,  # tie between 0 and sub: to 0 (even)
        -sp.sub / 2,
        np.nextafter(sp.sub / 2, 1),
        1.5 * sp.sub,  # tie: to 2·sub (even)
        2.5 * sp.sub,  # tie: to 2·sub (even)
        0.75 * sp.sub,
        65504.0,
        65520.0,
        65519.99,
        57344.0,
        61440.0,
        448.0,
        464.0,
        464.5,
        1e-8,
        -1e-8,
        1e-40,
        1e-45,
        1e4,
        -1e4,
        -1e10,
        0.1,
        1.0,
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        3.4e38,
        3.3962e38,
        1e39,
        5e-324,
    ]
    return np.array(vals, dtype=np.float64)


RNG = np.random.default_rng(20261122)
ROOT = Path(__file__).resolve().parent.parent


def random_values(name: str, n: int = 20000) -> np.ndarray:
    """Log-uniform over many decades, both signs; plus ties of the format and their
    float64 neighbours (where rounding, and double rounding, is decided)."""
    sp = Spec(name)
    logs = RNG.uniform(-50, 40, n)
    x = 10.0**logs * RNG.choice([-1.0, 1.0], n)
    # random representable values (by exponent and mantissa) and the midpoint to the next one
    e = RNG.integers(sp.emin - 1, sp.emax + 1, n // 4)
    mant = RNG.integers(0, 2**sp.m, n // 4).astype(np.float64)
    lo = np.where(e < sp.emin, np.ldexp(mant, sp.emin - sp.m), np.ldexp(2**sp.m + mant, e - sp.m))
    step = np.where(e < sp.emin, 2.0 ** (sp.emin - sp.m), np.ldexp(1.0, e - sp.m))
    mid = lo + step / 2  # exact in float64
    ties = np.concatenate([mid, np.nextafter(mid, 0), np.nextafter(mid, np.inf)])
    ties *= RNG.choice([-1.0, 1.0], ties.size)
    return np.concatenate([x, ties])


# -- the formats table ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_format_info_equals_finfo(name):
    info = P.format_info(name)
    dt = P.dtype_of(name)
    for fi in [ml_dtypes.finfo(dt)] + ([np.finfo(dt)] if name in ("fp32", "fp16") else []):
        assert info.bits == fi.bits
        assert info.exponent_bits == fi.nexp
        assert info.mantissa_bits == fi.nmant
        assert info.min_exponent == fi.minexp
        assert info.max_exponent == fi.maxexp - 1
        assert info.max == float(fi.max)
        assert info.smallest_normal == float(fi.smallest_normal)
        assert info.smallest_subnormal == float(fi.smallest_subnormal)
        assert info.eps == float(fi.eps)
        assert info.precision == fi.precision


@pytest.mark.parametrize("name", NAMES)
def test_format_info_equals_torch_finfo(name):
    info, tf = P.format_info(name), torch.finfo(TORCH[name])
    assert (info.bits, info.max, info.smallest_normal, info.eps) == (
        tf.bits,
        tf.max,
        tf.smallest_normal,
        tf.eps,
    )


@pytest.mark.parametrize("name", NAMES)
def test_format_info_first_principles(name):
    info, sp = P.format_info(name), Spec(name)
    assert (info.bits, info.sign_bits, info.exponent_bits, info.mantissa_bits) == (
        sp.bits,
        1,
        sp.e,
        sp.m,
    )
    assert info.bias == sp.bias
    assert info.max == sp.max
    assert info.smallest_normal == sp.tiny
    assert info.smallest_subnormal == sp.sub
    assert info.eps == sp.eps
    assert info.overflow_threshold == sp.max + 2.0 ** (sp.emax - sp.m - 1)
    assert info.decimal_digits == pytest.approx(math.log10(2 ** (sp.m + 1)), rel=1e-15)
    assert info.has_inf is (not sp.fn)
    assert info.has_nan is True
    if not name.startswith("fp8"):
        # numpy's documented definition; ml_dtypes hard-codes precision = 1 for fp8, where this
        # formula gives 0 (and torch.finfo's resolution is 1.0, i.e. 0 digits)
        assert info.precision == math.floor(-math.log10(sp.eps))


def test_format_info_named_figures():
    assert P.format_info("fp16").max == (2 - 2**-10) * 2**15 == 65504
    assert P.format_info("fp16").smallest_subnormal == 2.0**-24
    assert P.format_info("bf16").max == (2 - 2**-7) * 2.0**127
    assert P.format_info("bf16").smallest_subnormal == 2.0**-133
    assert P.format_info("fp8_e4m3").max == 1.75 * 2**8 == 448
    assert P.format_info("fp8_e5m2").max == 1.75 * 2**15 == 57344
    assert P.format_info("fp16").overflow_threshold == 65520
    # bf16 keeps fp32's exponent range
    assert P.format_info("bf16").smallest_normal == P.format_info("fp32").smallest_normal


def test_unknown_format():
    with pytest.raises(ValueError, match="fp32, fp16, bf16, fp8_e4m3, fp8_e5m2"):
        P.format_info("fp64")
    with pytest.raises(ValueError, match="unknown format"):
        P.round_to(1.0, "int8")


def test_format_table_order():
    assert [r["name"] for r in P.format_table()] == list(P.FORMATS) == NAMES


# -- rounding --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_round_to_edges_match_reference(name):
    x = edge_values(name)
    assert_same(P.round_to(x, name), ref_round(x, name), name)


@pytest.mark.parametrize("name", NAMES)
def test_round_to_random_matches_reference(name):
    x = random_values(name)
    assert_same(P.round_to(x, name), ref_round(x, name), name)


def test_reference_agrees_with_numpy_float16_on_float64():
    # numpy converts float64 → float16 in one rounding: a third, independent implementation
    x = np.concatenate([edge_values("fp16"), random_values("fp16")])
    with np.errstate(over="ignore"):
        direct = x.astype(np.float16).astype(np.float64)
    assert_same(ref_round(x, "fp16"), direct, "reference vs numpy")
    assert_same(P.round_to(x, "fp16"), direct, "module vs numpy")


@pytest.mark.parametrize("name", NAMES)
def test_round_to_matches_torch_on_float32_inputs(name):
    x = np.concatenate([edge_values(name), random_values(name)])
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    t = torch.from_numpy(x32).to(TORCH[name]).to(torch.float64).numpy()
    if name == "fp8_e4m3":
        # torch saturates: overflow and ±inf → ±448, where ml_dtypes and the module give NaN
        assert_same(P.round_to(x32, name, saturate=True), t, "saturating")
        over = ~np.isnan(x32) & (np.abs(x32) >= 464.5)
        assert np.isnan(P.round_to(x32[over], name)).all()
        assert (np.abs(t[over]) == 448).all()
    else:
        assert_same(P.round_to(x32, name), t, name)


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_torch_double_rounds_float64(name):
    """torch converts float64 through float32; the module rounds the float64 once."""
    x = random_values(name)
    ours = P.round_to(x, name, saturate=name == "fp8_e4m3")
    t = torch.from_numpy(x).to(TORCH[name]).to(torch.float64).numpy()
    with np.errstate(over="ignore"):
        via32 = P.round_to(x.astype(np.float32), name, saturate=name == "fp8_e4m3")
    assert (same(t, ours) | same(t, via32)).all()
    differs = ~same(t, ours)
    assert differs.any(), "expected torch to double-round some float64 ties"
    # every difference is a float64 a hair off a tie, where float32 rounding lands on the tie
    assert (x[differs].astype(np.float32).astype(np.float64) != x[differs]).all()


def test_ml_dtypes_double_rounds_float64_and_module_does_not():
    x = 1 + 2**-8 + 2**-30  # just above the bf16 tie between 1 and 1 + 2**-7
    assert P.round_to(x, "bf16") == ref_round(x, "bf16")[0] == 1 + 2**-7
    direct = float(np.array([x]).astype(ml_dtypes.bfloat16).astype(np.float64)[0])
    assert direct in (1.0, 1 + 2**-7)  # 1.0 is ml_dtypes' double rounding (through float32)
    x = random_values("fp8_e5m2")
    with np.errstate(over="ignore"):
        direct = x.astype(ml_dtypes.float8_e5m2).astype(np.float64)
        via32 = x.astype(np.float32).astype(ml_dtypes.float8_e5m2).astype(np.float64)
    ours = P.round_to(x, "fp8_e5m2")
    assert (same(direct, ours) | same(direct, via32)).all()


def test_round_to_specifics():
    assert P.round_to(65504, "fp16") == 65504
    assert P.round_to(65519.99, "fp16") == 65504
    assert P.round_to(65520, "fp16") == np.inf  # tie: 65504 has an odd mantissa → up → inf
    assert P.round_to(464, "fp8_e4m3") == 448  # tie: 448 = 1.110b·2**8 is even → stays
    assert np.isnan(P.round_to(464.5, "fp8_e4m3"))  # e4m3fn overflow is NaN, not inf
    assert np.isnan(P.round_to(np.inf, "fp8_e4m3"))
    assert P.round_to(np.inf, "fp8_e4m3", saturate=True) == 448
    assert P.round_to(-1e6, "fp8_e5m2", saturate=True) == -57344
    assert P.round_to(-np.inf, "fp8_e5m2", saturate=True) == -np.inf  # e5m2 keeps its inf
    assert P.round_to(1e-8, "fp16") == 0.0
    assert P.round_to(2.0**-25, "fp16") == 0.0  # half the smallest subnormal: tie to 0
    assert P.round_to(np.nextafter(2.0**-25, 1), "fp16") == 2.0**-24
    z = P.round_to(-1e-30, "fp16")
    assert z == 0 and np.signbit(z)
    assert np.signbit(P.round_to(-0.0, "bf16"))
    assert P.round_to(1e10, "bf16") == ref_round(1e10, "bf16")[0] != 1e10
    assert isinstance(P.round_to(1.0, "fp16"), np.float64)
    assert P.round_to(np.ones((2, 3)), "bf16").shape == (2, 3)
    with pytest.raises(ValueError, match="fp8"):
        P.round_to(1.0, "fp16", saturate=True)


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_round_to_matches_onnx_runtime_cast(name):
    """ONNX Runtime's Cast float → fp16/bf16 → float (what an emulated bf16 run does)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    to = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}[name]
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["y"], to=to),
            helper.make_node("Cast", ["y"], ["z"], to=TensorProto.FLOAT),
        ],
        "cast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with np.errstate(over="ignore"):
        x32 = np.concatenate([edge_values(name), random_values(name)]).astype(np.float32)
    (z,) = sess.run(None, {"x": x32})
    assert_same(P.round_to(x32, name), z.astype(np.float64), f"ORT {name}")


# -- bits ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_bit_fields_match_reference(name):
    sp = Spec(name)
    xs = np.concatenate([edge_values(name), random_values(name, 400)])
    for x in xs:
        f = P.bit_fields(float(x), name)
        assert same(f.stored, ref_round(x, name)[0])
        assert f.bits == f.sign + f.exponent + f.mantissa
        assert (len(f.sign), len(f.exponent), len(f.mantissa)) == (1, sp.e, sp.m)
        assert f.pattern == int(f.bits, 2)
        assert (f.sign_int, f.exponent_int, f.mantissa_int) == (
            int(f.sign, 2),
            int(f.exponent, 2),
            int(f.mantissa, 2),
        )
        # fields → value, from first principles
        assert same(ref_decode(f.pattern, name), f.stored)
        if not math.isnan(f.stored):
            assert f.pattern == ref_encode(f.stored, name)
        cat = (
            "nan"
            if math.isnan(f.stored)
            else "inf"
            if math.isinf(f.stored)
            else "zero"
            if f.exponent_int == 0 and f.mantissa_int == 0
            else "subnormal"
            if f.exponent_int == 0
            else "normal"
        )
        assert f.category == cat
        if cat == "normal":
            assert f.stored == (-1) ** f.sign_int * f.significand * 2.0**f.exponent_value
        if cat in ("zero", "subnormal"):
            assert f.stored == (-1) ** f.sign_int * f.significand * 2.0**sp.emin
        # flags
        assert f.nan == (cat == "nan")
        assert f.overflow == (math.isfinite(x) and not math.isfinite(f.stored))
        assert f.flush_to_zero == (math.isfinite(x) and x != 0 and f.stored == 0)
        assert f.subnormal == (x != 0 and cat == "subnormal")
        # errors, against exact rational arithmetic
        if math.isfinite(x) and math.isfinite(f.stored):
            exact = abs(Fraction(f.stored) - Fraction(float(x)))
            assert f.abs_error == pytest.approx(float(exact), rel=1e-15, abs=0)
            if x != 0:
                assert f.rel_error == pytest.approx(float(exact / abs(Fraction(x))), rel=1e-15)


def test_bit_fields_specifics():
    f = P.bit_fields(1.0, "fp16")
    assert (f.sign, f.exponent, f.mantissa) == ("0", "01111", "0000000000")
    assert (f.exponent_value, f.significand, f.category) == (0, 1.0, "normal")
    f = P.bit_fields(65520, "fp16")
    assert f.overflow and f.category == "inf" and f.bits == "0111110000000000"
    assert f.abs_error == math.inf
    f = P.bit_fields(1e-8, "fp16")
    assert f.flush_to_zero and f.category == "zero" and f.rel_error == 1.0
    f = P.bit_fields(1e-6, "fp16")
    assert f.subnormal and not f.flush_to_zero and f.exponent == "00000"
    f = P.bit_fields(1e10, "fp8_e4m3")
    assert f.overflow and f.nan and f.bits == "01111111"
    f = P.bit_fields(math.nan, "bf16")
    assert f.nan and not f.overflow and f.exponent == "11111111" and f.mantissa_int != 0
    f = P.bit_fields(-0.0, "fp32")
    assert f.bits == "1" + "0" * 31 and f.category == "zero" and not f.flush_to_zero
    f = P.bit_fields(-math.inf, "fp16")
    assert f.category == "inf" and not f.overflow and f.abs_error == 0


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_fields_from_bits_all_patterns_round_trip(name):
    sp = Spec(name)
    patterns = range(2**sp.bits) if sp.bits == 8 else RNG.integers(0, 2**16, 1500)
    for p in patterns:
        f = P.fields_from_bits(int(p), name)
        assert f.pattern == int(p)
        assert same(f.stored, ref_decode(int(p), name))
        if not f.nan:
            assert P.bit_fields(f.stored, name).pattern == int(p)
    with pytest.raises(ValueError, match="bit pattern"):
        P.fields_from_bits(2**sp.bits, name)


@pytest.mark.parametrize("name", NAMES)
def test_flip_sign_bit_negates(name):
    for x in list(edge_values(name)[:-1]) + list(random_values(name, 200)):
        stored = P.round_to(x, name)
        if np.isnan(stored):
            continue
        flipped = P.flip_bit(x, name, 0)
        assert same(flipped, -stored)
        assert same(P.flip_bit(flipped, name, 0), stored)


def test_flip_bits_of_fp16_one():
    # 1.0 = 0 01111 0000000000
    assert P.flip_bit(1.0, "fp16", 5) == 0.5  # exponent 01110
    assert P.flip_bit(1.0, "fp16", 4) == 0.25  # exponent 01101
    assert P.flip_bit(1.0, "fp16", 1) == math.inf  # exponent 11111, mantissa 0
    assert P.flip_bit(1.0, "fp16", 6) == 1.5  # first mantissa bit
    assert P.flip_bit(1.0, "fp16", 15) == 1 + 2**-10  # last bit: 1 + eps
    assert P.flip_bit(1.0, "bf16", 8) == 0.5  # bf16's exponent ends at bit 8
    assert math.isnan(P.flip_bit(math.inf, "fp16", 15))
    assert P.flip_bit(0.0, "fp16", 15) == 2.0**-24
    for bad in (-1, 16, 1.5, True, "3"):
        with pytest.raises(ValueError, match="bit index"):
            P.flip_bit(1.0, "fp16", bad)


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_neighbours_match_enumeration(name):
    sp = Spec(name)
    values = sorted(
        v for v in (ref_decode(p, name) for p in range(2**sp.bits)) if not math.isnan(v)
    )
    values = np.array(sorted(set(values)))  # ±0 collapse to one entry
    for x in np.concatenate([edge_values(name), random_values(name, 300)]):
        s = ref_round(x, name)[0]
        below, above = P.neighbours(x, name)
        if math.isnan(s):
            assert (below, above) == (None, None)
            continue
        i = int(np.searchsorted(values, s))
        assert values[i] == s
        assert below == (values[i - 1] if i > 0 else None)
        assert above == (values[i + 1] if i + 1 < len(values) else None)
    assert P.neighbours(448, "fp8_e4m3") == (416, None)  # no inf above e4m3fn's max
    assert P.neighbours(65504, "fp16") == (65472, math.inf)


def test_neighbours_fp32():
    for x in random_values("fp32", 300):
        s = ref_round(x, "fp32")[0]
        if not np.isfinite(s) or s == 0:
            continue
        below, above = P.neighbours(x, "fp32")
        e = max(math.frexp(abs(s))[1] - 1, -126)
        ulp = 2.0 ** (e - 23)
        # above |s| the spacing is ulp; below, it halves at a power of two (except subnormals)
        ulp_down = ulp / 2 if abs(s) == 2.0**e and e > -126 else ulp
        lo, hi = (s - ulp_down, s + ulp) if s > 0 else (s - ulp, s + ulp_down)
        if abs(s) == Spec("fp32").max:
            assert (above if s > 0 else below) in (math.inf, -math.inf)
            continue
        assert (below, above) == (lo, hi)
    assert P.neighbours(0.0, "fp32") == (-(2.0**-149), 2.0**-149)
    assert P.neighbours(math.nan, "fp32") == (None, None)
    assert P.neighbours(math.inf, "fp32") == (Spec("fp32").max, None)


# -- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, value",
    [
        ("65504", 65504.0),
        (" 1e-8 ", 1e-8),
        ("-0", -0.0),
        ("inf", math.inf),
        ("-Infinity", -math.inf),
        ("\u2212\u221e", -math.inf),
        ("\u22121.5", -1.5),
        ("0x1p-24", 2.0**-24),
        ("-0x1.8p1", -3.0),
        ("2^-24", 2.0**-24),
        ("-2**15", -32768.0),
        ("2^(-133)", 2.0**-133),
        ("1_000", 1000.0),
        ("5e-324", 5e-324),
        (0.25, 0.25),
    ],
)
def test_parse_value_accepts(text, value):
    got = P.parse_value(text)
    assert same(got, value)


def test_parse_value_nan():
    assert math.isnan(P.parse_value("nan")) and math.isnan(P.parse_value(" NaN "))


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "type a number"),
        ("   ", "type a number"),
        ("abc", "not a number"),
        ("1,5", "not a number"),
        ("<b>1</b>", "not a number"),
        ("1e400", "beyond float64"),
        ("-1e400", "beyond float64"),
        ("1e-400", "smallest subnormal"),
        ("2^1024", "beyond float64"),
        ("2^-1075", "smallest subnormal"),
        ("0x1p2000", "beyond float64"),
        ("9" * 500, "characters"),
        (None, "type a number"),
        (True, "type a number"),
    ],
)
def test_parse_value_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        P.parse_value(text)


def test_parse_value_zero_spellings_are_zero():
    for text in ("0", "0.0", "0e500", "-0.000", "0x0p0"):
        assert P.parse_value(text) == 0


# -- ranges and density ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_range_band(name):
    sp, band = Spec(name), P.range_band(name)
    assert band.log10_smallest_subnormal == pytest.approx((sp.emin - sp.m) * math.log10(2))
    assert band.log10_smallest_normal == pytest.approx(sp.emin * math.log10(2))
    assert band.log10_max == pytest.approx(math.log10(sp.max))
    assert band.log10_smallest_subnormal < band.log10_smallest_normal < band.log10_max


def _count_in_decade(values: np.ndarray, k: int) -> int:
    lo, hi = Fraction(10) ** k, Fraction(10) ** (k + 1)
    near = values[(values > 10.0**k * 0.5) & (values < 10.0 ** (k + 1) * 2)]
    return sum(1 for v in near if lo <= Fraction(float(v)) < hi)


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_density_small_formats(name):
    sp = Spec(name)
    values = np.array([ref_decode(p, name) for p in range(1, 2 ** (sp.bits - 1))])
    values = values[np.isfinite(values)]
    d = P.density(name)
    positive_finite = 2 ** (sp.bits - 1) - 1 - (1 if sp.fn else 2**sp.m)  # not 0, NaN, inf
    assert d.counts.sum() == positive_finite == len(values)  # every value in some decade
    ks = d.decades if name != "bf16" else d.decades[::7]  # Fraction counting is slow
    for k in ks:
        assert d.counts[list(d.decades).index(k)] == _count_in_decade(values, int(k)), k
    # the per-binade formula (used for fp32) agrees with the enumeration here
    info = P.format_info(name)
    for k in list(d.decades) + [int(d.decades[0]) - 3, int(d.decades[-1]) + 3]:
        bound = Fraction(10) ** int(k)
        expected = int(np.searchsorted(values, 10.0 ** int(k)))
        while expected > 0 and Fraction(values[expected - 1]) >= bound:
            expected -= 1
        while expected < len(values) and Fraction(values[expected]) < bound:
            expected += 1
        assert P._analytic_count_below(bound, info) == expected, k


def test_density_explicit_decades():
    d = P.density("fp16", [-20, -8, 0, 4, 5, 30])
    assert d.decades.tolist() == [-20, -8, 0, 4, 5, 30]
    # one value, 2**-24, in [1e-8, 1e-7); none from 1e5 on (fp16 stops at 65504)
    assert d.counts[[0, 1, 4, 5]].tolist() == [0, 1, 0, 0]
    # [1, 10): 3 whole binades of 2**10 values, and 10 = 1.25·2**3 cuts the 4th at 2**8
    assert d.counts[2] == 3 * 2**10 + 2**8
    with pytest.raises(ValueError, match="1-d"):
        P.density("fp16", [[0]])


def test_density_fp32_by_pattern_order():
    """fp32 counts per binade vs counting bit patterns: positive float32 patterns ascend with
    their values, so #values in [a, b) = pattern(first ≥ b) − pattern(first ≥ a)."""

    def first_at_least(k: int) -> int:
        f = np.float32(10.0**k)
        while Fraction(float(f)) < Fraction(10) ** k:
            f = np.nextafter(f, np.float32(np.inf))
        while Fraction(float(np.nextafter(f, np.float32(0)))) >= Fraction(10) ** k:
            f = np.nextafter(f, np.float32(0))
        return int(np.array([f]).view(np.uint32)[0])

    d = P.density("fp32")
    for k, c in zip(d.decades, d.counts, strict=True):
        hi = first_at_least(int(k) + 1) if k < 38 else int(np.float32(np.inf).view(np.uint32))
        lo = first_at_least(int(k)) if k > -46 else 1
        assert c == hi - lo, k
    assert d.counts.sum() == 2**31 - 2**23 - 1  # every positive finite float32 (not 0)


def test_density_fp32_brute_force_subnormal_decades():
    values = np.arange(1, 2**23, dtype=np.uint32).view(np.float32).astype(np.float64)
    got = P.density("fp32", [-45, -44, -43, -42, -41, -40])
    for k, c in zip(got.decades, got.counts, strict=True):
        lo, hi = 10.0 ** int(k), 10.0 ** (int(k) + 1)
        i, j = np.searchsorted(values, [lo, hi])
        # float64 10**k is not 10**k exactly: settle the boundary values exactly
        while i > 0 and Fraction(values[i - 1]) >= Fraction(10) ** int(k):
            i -= 1
        while Fraction(values[i]) < Fraction(10) ** int(k):
            i += 1
        while j > 0 and Fraction(values[j - 1]) >= Fraction(10) ** (int(k) + 1):
            j -= 1
        while Fraction(values[j]) < Fraction(10) ** (int(k) + 1):
            j += 1
        assert c == j - i, k


# -- the model's numbers ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_overflow_counts_match_torch_casts(name):
    x = np.concatenate([random_values(name, 5000), [0.0, -0.0, np.nan, np.inf]])
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    exact32 = x32.astype(np.float64) == x
    x, x32 = x[exact32 | ~np.isfinite(x)], x32[exact32 | ~np.isfinite(x)]
    c = P.overflow_counts(x, name)
    t = torch.from_numpy(x32).to(TORCH[name]).to(torch.float64).numpy()
    tiny = torch.finfo(TORCH[name]).tiny
    finite = np.isfinite(x)
    nz = finite & (x != 0)
    if name == "fp8_e4m3":
        t_over = finite & (np.abs(x) > 464)  # torch saturates, so count where it clamps
        t_over &= np.abs(t) == 448
    else:
        t_over = finite & ~np.isfinite(t)
    assert c.total == x.size
    assert c.zeros == np.count_nonzero(x == 0) == 2
    assert c.nonfinite == 2
    assert c.overflow == np.count_nonzero(t_over)
    assert c.flush_to_zero == np.count_nonzero(nz & (t == 0))
    assert c.subnormal == np.count_nonzero(nz & (t != 0) & (np.abs(t) < tiny))
    assert c.normal == np.count_nonzero(nz & ~t_over & (np.abs(t) >= tiny))
    assert c.zeros + c.nonfinite + c.overflow + c.flush_to_zero + c.subnormal + c.normal == c.total


def test_overflow_counts_specific():
    c = P.overflow_counts([1e5, 65504, 1e-6, 1e-9, 0.0, np.nan, 1.0], "fp16")
    assert (c.overflow, c.normal, c.subnormal, c.flush_to_zero, c.zeros, c.nonfinite) == (
        1,
        2,
        1,
        1,
        1,
        1,
    )
    c = P.overflow_counts([1e5, 1e-6, 1e-9], "bf16")  # bf16's range holds them all
    assert (c.overflow, c.subnormal, c.flush_to_zero, c.normal) == (0, 0, 0, 3)
    assert P.overflow_counts([], "fp16").total == 0


def test_log_histogram_matches_torch_histogram():
    x = np.concatenate([random_values("fp32", 3000), np.zeros(7), [np.nan, np.inf, -np.inf]])
    edges = np.linspace(-50, 41, 92)
    h = P.log_histogram(x, edges)
    keep = np.isfinite(x) & (x != 0)
    ref = torch.histogram(torch.from_numpy(np.log10(np.abs(x[keep]))), bins=torch.from_numpy(edges))
    np.testing.assert_array_equal(h.counts, ref.hist.numpy().astype(np.int64))
    np.testing.assert_array_equal(h.edges, edges)
    assert (h.zeros, h.nonfinite) == (7, 3)
    h = P.log_histogram(x, 40)
    assert h.counts.sum() == keep.sum() and len(h.edges) == 41
    assert h.edges[0] == np.log10(np.abs(x[keep])).min()


def test_log_histogram_known_counts_and_edge_cases():
    h = P.log_histogram([1e-3, -1e-3, 0.5, 1.0, 20.0, 0.0], [-4, -2, 0, 2])
    assert h.counts.tolist() == [2, 1, 2] and h.zeros == 1
    h = P.log_histogram([0.0, 0.0], 5)
    assert h.counts.tolist() == [0] * 5 and h.zeros == 2
    h = P.log_histogram([3.0, 3.0], 4)
    assert h.counts.sum() == 2
    with pytest.raises(ValueError, match="bins"):
        P.log_histogram([1.0], 0)
    with pytest.raises(ValueError, match="ascending"):
        P.log_histogram([1.0], [1, 0])


# -- the masking lesson ----------------------------------------------------------------------------
SCORES = np.array(
    [
        [1.3, -0.2, 0.7, 2.1],
        [0.4, 2.9, -1.1, 0.3],
        [-0.6, 1.7, 3.2, -2.4],
        [2.2, 0.1, -0.9, 1.8],
    ]
)


def _torch_softmax(filled: np.ndarray, name: str) -> np.ndarray:
    t = torch.from_numpy(filled).to(TORCH[name])
    return torch.softmax(t, dim=-1).to(torch.float64).numpy()


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("fill", [-1e10, -1e4, -np.inf])
def test_softmax_in_format_matches_torch(name, fill):
    mask = P.causal_mask(4)
    mask[3] = True  # a fully masked row (e.g. a padding query)
    filled = np.where(mask, fill, SCORES * 3)
    ref = _torch_softmax(filled, name)
    eps = P.format_info(name).eps
    for accumulate, ulps in (("fp32", 1), ("format", 4)):
        got = P.softmax_in_format(filled, name, accumulate=accumulate)
        assert (np.isnan(got) == np.isnan(ref)).all(), (accumulate, got, ref)
        ok = ~np.isnan(ref)
        np.testing.assert_allclose(got[ok], ref[ok], rtol=ulps * eps, atol=0)
        assert same(got, P.round_to(got, name)).all()  # every output is a stored value


def test_mask_fill_demo():
    mask = P.causal_mask(4)
    mask[3] = True
    out = P.mask_fill_demo(SCORES, mask=mask)
    assert [(r.fill, r.name) for r in out] == [
        (f, n) for f in (-1e10, -1e4, -np.inf) for n in ("fp32", "fp16", "bf16")
    ]
    cell = {(r.fill, r.name): r for r in out}
    for r in out:
        assert same(r.stored_fill, ref_round(r.fill, r.name)[0])
        assert (r.probs[:3][mask[:3]] == 0).all()  # masked keys of normal rows get exactly 0
    # −1e10 overflows fp16 to −inf; bf16 (fp32's range) keeps it finite
    assert cell[(-1e10, "fp16")].fill_became_inf and cell[(-1e10, "fp16")].stored_fill == -np.inf
    assert not cell[(-1e10, "bf16")].fill_became_inf
    assert not any(cell[(-1e4, n)].fill_became_inf for n in ("fp32", "fp16", "bf16"))
    # the fully masked row: −inf − (−inf) = NaN; a finite fill gives a uniform row
    assert cell[(-1e10, "fp16")].nan_rows.tolist() == [3]
    assert cell[(-np.inf, "bf16")].nan_rows.tolist() == [3]
    assert not cell[(-1e10, "bf16")].has_nan and not cell[(-1e4, "fp16")].has_nan
    np.testing.assert_array_equal(cell[(-1e4, "fp16")].probs[3], P.round_to(0.25, "fp16"))
    for r in out:  # matches torch on every cell
        ref = _torch_softmax(np.where(mask, r.fill, SCORES), r.name)
        assert (np.isnan(r.probs) == np.isnan(ref)).all()
        ok = ~np.isnan(ref)
        np.testing.assert_allclose(r.probs[ok], ref[ok], rtol=4 * P.format_info(r.name).eps)
    # with the plain causal mask nothing is NaN and masked positions get exactly 0
    for r in P.mask_fill_demo(SCORES):
        assert not r.has_nan and r.masked_mass == 0.0
    with pytest.raises(ValueError, match="T, T"):
        P.mask_fill_demo(np.zeros((2, 3)))


def test_module_imports_neither_torch_nor_panel():
    import subprocess
    import sys

    code = (
        "import sys, dashboard.lessons.precision as P; P.round_to(1.0, 'bf16'); "
        "print(sorted(m for m in ('torch', 'panel', 'holoviews') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# -- real runs at lower precision ------------------------------------------------------------------
class _Run:
    def __init__(self, logits, attn_scores, attn_probs, hidden):
        self.logits, self.attn_scores, self.attn_probs, self.hidden = (
            logits,
            attn_scores,
            attn_probs,
            hidden,
        )


def _torch_layer_max(a, b) -> np.ndarray:
    """Per-layer max |a − b| with torch; NaN counts as an infinite difference."""
    d = torch.from_numpy(np.asarray(a, np.float64)) - torch.from_numpy(np.asarray(b, np.float64))
    d = torch.nan_to_num(d.abs(), nan=math.inf)
    return torch.amax(d, dim=tuple(range(1, d.ndim))).numpy()


def test_compare_runs_against_torch_on_the_real_model():
    from models.runtime import STATIC_DIR, Engine

    engine = Engine(STATIC_DIR, provider="cpu")
    name = engine.default_model
    ids = engine.tokenizer(name).encode("Return the value of the file, or raise an error.")
    ref = engine.run(name, ids)
    for precision in ("fp16", "bf16"):
        low = engine.run(name, ids, precision)
        c = P.compare_runs(low, ref, precision)
        n_layer = ref.attn_probs.shape[0]
        assert c.name == precision
        assert c.hidden_max_diff.shape == (n_layer + 1,) and c.probs_max_diff.shape == (n_layer,)
        np.testing.assert_array_equal(c.hidden_max_diff, _torch_layer_max(low.hidden, ref.hidden))
        np.testing.assert_array_equal(
            c.probs_max_diff, _torch_layer_max(low.attn_probs, ref.attn_probs)
        )
        np.testing.assert_array_equal(
            c.scores_max_diff, _torch_layer_max(low.attn_scores, ref.attn_scores)
        )
        tl, tr = torch.from_numpy(low.logits).double(), torch.from_numpy(ref.logits).double()
        assert c.logits_max_diff == (tl - tr).abs().max().item() > 0
        assert c.logits_max_rel == pytest.approx(c.logits_max_diff / tr.abs().max().item())
        agree = torch.argmax(tl, -1) == torch.argmax(tr, -1)
        assert c.agreement == agree.double().mean().item()
        assert c.flips.tolist() == torch.nonzero(~agree).flatten().tolist()
        np.testing.assert_array_equal(c.top1_ref, torch.argmax(tr, -1).numpy())
        assert c.nonfinite == 0
        # the embeddings are weights rounded once: the error there is within half an ulp
        eps = P.format_info(precision).eps
        assert c.hidden_max_diff[0] <= eps * np.abs(ref.hidden[0]).max()
        assert (c.hidden_max_diff > 0).all()


def test_compare_runs_nan_inf_and_flips():
    rng = np.random.default_rng(5)
    L, H, T, C, V = 2, 2, 3, 4, 5
    ref = _Run(
        rng.normal(size=(T, V)),
        rng.normal(size=(L, H, T, T)),
        rng.uniform(size=(L, H, T, T)),
        rng.normal(size=(L + 1, T, C)),
    )
    low = _Run(
        *(np.array(getattr(ref, k)) for k in ("logits", "attn_scores", "attn_probs", "hidden"))
    )
    low.hidden[2, 1, 3] = np.nan  # a broken value in the last block's output
    low.attn_scores[0, 0, 0, 0] = -np.inf
    low.logits[1] = ref.logits[1][::-1]  # position 1 now predicts another token
    c = P.compare_runs(low, ref, "fp16")
    assert c.hidden_max_diff.tolist() == [0.0, 0.0, math.inf]
    assert c.scores_max_diff.tolist() == [math.inf, 0.0]
    assert c.probs_max_diff.tolist() == [0.0, 0.0]
    ref_top = ref.logits.argmax(-1)
    flipped = ref_top[1] != low.logits[1].argmax()
    assert c.flips.tolist() == ([1] if flipped else [])
    assert c.agreement == pytest.approx(1 - flipped / T)
    assert c.nonfinite == 2
    # equal infinities are no difference
    same = _Run(ref.logits, np.full((L, H, T, T), -np.inf), ref.attn_probs, ref.hidden)
    assert P.compare_runs(same, same).scores_max_diff.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="shapes differ"):
        P.compare_runs(
            _Run(
                ref.logits[:2], *(getattr(ref, k) for k in ("attn_scores", "attn_probs", "hidden"))
            ),
            ref,
        )


# -- the histogram panel and the variant runs ------------------------------------------------------
def test_histogram_geometry_against_numpy_and_finfo():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.normal(0, 1e-3, 500), [0.0, -0.0, np.inf, np.nan, 3e7, -2e-12]])
    g = P.histogram_geometry(v)
    # x range: whole decades beyond the data (3e7: 7.48; 2e-12: -11.7) and beyond 1e-9 … 1e5
    assert (g.lo, g.hi) == (-13.0, 9.0)
    edges = np.linspace(-13, 9, 22 * 4 + 1)
    np.testing.assert_array_equal(g.histogram.edges, edges)
    finite = v[np.isfinite(v) & (v != 0)]
    ref = torch.histogram(torch.from_numpy(np.log10(np.abs(finite))), torch.from_numpy(edges))
    assert g.histogram.counts.tolist() == ref.hist.long().tolist()
    assert (g.histogram.zeros, g.histogram.nonfinite, g.size) == (2, 2, v.size)
    assert g.top == pytest.approx(1.1 * int(ref.hist.max()))
    by = {(b.name, b.kind): b for b in g.bands}
    assert list(by) == [
        ("fp16", "subnormal"),
        ("fp16", "normal"),
        ("bf16", "subnormal"),
        ("bf16", "normal"),
    ]
    h = np.finfo(np.float16)
    assert by["fp16", "subnormal"].left == pytest.approx(math.log10(float(h.smallest_subnormal)))
    assert by["fp16", "normal"].left == pytest.approx(math.log10(float(h.smallest_normal)))
    assert by["fp16", "normal"].right == pytest.approx(math.log10(float(h.max)))
    bf = ml_dtypes.finfo(ml_dtypes.bfloat16)
    assert by["bf16", "subnormal"].left == -13.0  # 9e-41 clipped to the plot
    assert by["bf16", "normal"].right == 9.0  # 3.4e38 clipped too
    assert math.log10(float(bf.smallest_subnormal)) < -13 and math.log10(float(bf.max)) > 9
    # fp16 on the lower half of the height, bf16 on the upper
    assert (by["fp16", "normal"].bottom, by["fp16", "normal"].top) == (0.0, g.top / 2)
    assert (by["bf16", "normal"].bottom, by["bf16", "normal"].top) == (g.top / 2, g.top)


def test_histogram_geometry_of_nothing_finite():
    g = P.histogram_geometry([0.0, np.nan])
    assert (g.lo, g.hi) == (-10.0, 6.0)
    assert g.histogram.counts.sum() == 0 and g.top == pytest.approx(1.1)


def test_run_variants_and_curves_on_the_real_model():
    from models.runtime import STATIC_DIR, Engine

    engine = Engine(STATIC_DIR, provider="cpu")
    name = engine.default_model
    ref = engine.run(name, engine.tokenizer(name).encode("The value of the file."))
    runs = P.run_variants(engine, name, ref, ("fp16", "bf16", "int3"))
    assert [r.name for r in runs] == ["fp16", "bf16", "int3"]
    n_layer = ref.attn_probs.shape[0]
    for r in runs[:2]:
        low = engine.run(name, ref.ids, r.name)
        np.testing.assert_array_equal(
            r.comparison.hidden_max_diff, _torch_layer_max(low.hidden, ref.hidden)
        )
        assert r.provider == "CPUExecutionProvider" and r.error == ""
        assert list(r.emulated_ops) == engine.variant(name, r.name).get("emulated_ops", [])
    assert runs[2].comparison is None and "int3" in runs[2].error
    hidden, probs = P.run_curves(runs, n_layer)
    assert hidden["layer"] == list(range(n_layer + 1))
    assert probs["layer"] == list(range(1, n_layer + 1))
    want = _torch_layer_max(engine.run(name, ref.ids, "bf16").attn_probs, ref.attn_probs)
    assert probs["bf16"] == [x if x > 0 else pytest.approx(math.nan, nan_ok=True) for x in want]
    assert all(math.isnan(x) for x in hidden["int3"])  # the failed run: nothing drawn


def test_padding_mask_masks_the_padding_key_for_every_query():
    # a padding token at position 0, as a key padding mask does it: key 0 is masked for every
    # query, on top of the causal mask (key j > query i); query 0 then has no key left
    t = 5
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    np.testing.assert_array_equal(P.padding_mask(t), (j > i) | (j == 0))
    assert P.padding_mask(t)[0].all() and not P.padding_mask(t)[1:].all(axis=1).any()


def test_the_mask_demo_is_torchs_key_padding_mask():
    # torch's own key padding: masked_fill over a (T,) mask of padded keys, broadcast to
    # every query, plus the causal mask
    t = 4
    scores = SCORES * 3
    pad = torch.tensor([True] + [False] * (t - 1))
    causal = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    keep = ~(causal | pad[None, :])
    for r in P.mask_fill_demo(scores, mask=P.padding_mask(t)):
        filled = torch.from_numpy(scores).masked_fill(~keep, r.fill).to(TORCH[r.name])
        ref = torch.softmax(filled, dim=-1).to(torch.float64).numpy()
        assert (np.isnan(r.probs) == np.isnan(ref)).all(), (r.fill, r.name)
        ok = ~np.isnan(ref)
        np.testing.assert_allclose(r.probs[ok], ref[ok], rtol=4 * P.format_info(r.name).eps)
        if r.fill == -np.inf:  # no query gives key 0 any weight; query 0's row is NaN
            assert (r.probs[1:, 0] == 0).all() and r.nan_rows.tolist() == [0]


# -- how each format stores inf and NaN ------------------------------------------------------------
# IEEE 754 (binary32, binary16), bfloat16 (binary32's top half) and OCP FP8 (E5M2 follows IEEE;
# E4M3 "fn" has no inf, S.1111.111 is its only NaN, and S.1111.000-110 are normal, up to 448):
# (an inf pattern or None, a NaN pattern, NaN patterns of each sign, finite values with the
# exponent all ones)
SPECIAL_FACTS = {
    "fp32": (0x7F800000, 0x7FC00000, 2**23 - 1, 0),
    "fp16": (0x7C00, 0x7E00, 2**10 - 1, 0),
    "bf16": (0x7F80, 0x7FC0, 2**7 - 1, 0),
    "fp8_e4m3": (None, 0x7F, 1, 7),
    "fp8_e5m2": (0x7C, 0x7E, 3, 0),
}


@pytest.mark.parametrize("name", NAMES)
def test_special_encodings_are_the_formats_own(name):
    inf_bits, nan_bits, n_nan, top_finite = SPECIAL_FACTS[name]
    dt, uint = P.dtype_of(name), {8: np.uint8, 16: np.uint16, 32: np.uint32}[Spec(name).bits]
    # the facts, checked on the dtypes themselves
    with np.errstate(invalid="ignore"):
        if inf_bits is not None:
            assert np.isposinf(np.array([inf_bits], uint).view(dt).astype(np.float64)[0])
        assert np.isnan(np.array([nan_bits], uint).view(dt).astype(np.float64)[0])
    s = P.special_encodings(name)
    assert s.nan_patterns == n_nan and s.top_finite == top_finite
    # casting inf and NaN to the format (format_info) agrees with the patterns
    assert (s.inf == "none") is (not P.format_info(name).has_inf) and P.format_info(name).has_nan
    if inf_bits is None:
        assert s.inf == "none"
        assert s.nan == "exponent and mantissa all ones"
        assert s.top_max == float(ml_dtypes.finfo(dt).max) == 448
    else:
        assert s.inf == "exponent all ones, mantissa 0"
        assert s.nan == "exponent all ones, mantissa not 0"
        assert s.top_max is None


# -- the lesson's words and tables (dashboard/views/precision.py) ----------------------------------
def _view():
    from dashboard.views import precision as V

    return V


def test_bit_info_says_how_inf_and_nan_are_encoded():
    V = _view()
    assert "(inf: exponent all ones, mantissa 0)" in V.bit_info_html(math.inf, "fp16")
    assert "(NaN: exponent all ones, mantissa not 0)" in V.bit_info_html(math.nan, "bf16")
    assert "(NaN: exponent and mantissa all ones)" in V.bit_info_html(math.nan, "fp8_e4m3")
    # 448 is e4m3fn's largest value: 0 1111 110, an all-ones exponent holding a normal value
    pattern = int(np.array([448.0], np.float32).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)[0])
    assert format(pattern, "08b") == "01111110"
    text = V.bit_info_html(448.0, "fp8_e4m3")
    assert "exponent 1111 still holds normal values" in text
    assert "still holds" not in V.bit_info_html(57344.0, "fp8_e5m2")


def _cells(table: str) -> list[list[str]]:
    """The text of each row's cells of an HTML table (tags as spaces, spaces collapsed)."""
    import re

    def text(cell: str) -> str:
        return " ".join(re.sub(r"<[^>]+>", " ", cell).split())

    rows = re.findall(r"<tr>(.*?)</tr>", table)
    return [[text(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r)] for r in rows]


SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def _read(text: str) -> float:
    """A number as the table writes it for people: 65504, 0.0078125 or 3.40282 × 10³⁸."""
    mant, _, exp = text.partition(" × 10")
    return float(mant) * 10.0 ** int(exp.translate(SUPERSCRIPT) or 0)


def test_formats_table_reads_for_people():
    V = _view()
    rows = _cells(V.formats_table())
    text = " ".join(" ".join(r) for r in rows)
    assert "True" not in text and "False" not in text
    assert "e+" not in text and "e-" not in text
    by = {r[0]: r[1:] for r in rows[1:]}
    fis = [ml_dtypes.finfo(P.dtype_of(n)) for n in NAMES]
    for label, attr in (
        ("largest finite", "max"),
        ("smallest normal", "smallest_normal"),
        ("smallest subnormal", "smallest_subnormal"),
        ("machine epsilon", "eps"),
    ):
        got = [_read(c) for c in by[label]]
        np.testing.assert_allclose(got, [float(getattr(f, attr)) for f in fis], rtol=5e-6)
    assert by["largest finite"][0] == "3.40282 × 10³⁸" and by["largest finite"][1] == "65504"
    # the decimal digits are computed: (stored mantissa bits + 1) · log10 2
    want = [f"{(f.nmant + 1) * math.log10(2):.2f}" for f in fis]
    assert by["decimal digits"] == want
    # inf: only e4m3fn has none (casting inf to it gives NaN); NaN: every format has one
    assert by["±inf stored as"] == ["exponent all ones, mantissa 0"] * 3 + [
        "none",
        "exponent all ones, mantissa 0",
    ]
    assert by["NaN stored as"][3] == "exponent and mantissa all ones"
    # headers: the format on one line, what it is on the next
    assert rows[0][1:] == [
        "FP32 IEEE single",
        "FP16 IEEE half",
        "BF16 bfloat16",
        "FP8 E4M3 e4m3fn",
        "FP8 E5M2",
    ]
    assert "<br>" in V.formats_table()  # the two lines of a header


def test_formats_caption_says_where_each_figure_comes_from():
    V = _view()
    caption = V.FORMATS_CAPTION
    assert "Every figure is read from the dtype itself" not in caption
    assert "numpy.finfo" in caption and "ml_dtypes.finfo" in caption
    assert "decimal digits are computed, (mantissa bits + 1) · log10 2" in caption
    assert "casting inf and NaN to each format" in caption
    assert "exponent 1111 still holds normal values up to 448" in caption
    assert "mantissa: 0 is inf, anything else NaN" in caption


def test_the_bit_legend_names_the_colours_the_bits_use():
    V = _view()
    legend = V.bit_legend()
    for field in ("sign", "exponent", "mantissa"):
        assert f"style='color: {V.FIELD_COLORS[field]}'>■</span> {field}" in legend
    assert "filled = 1, outlined = 0" in legend


def test_the_masked_scores_table_says_which_rows_are_nan_not_how_many():
    V = _view()
    t = 4
    cells = V.mask_cells(SCORES * 3)
    by = {(c["fill"], c["name"]): c for c in cells}
    # torch: −inf fills give query 0 (no key left) a NaN row, in every format; −1e4 never
    pad = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    pad[:, 0] = True
    for (fill, name), c in by.items():
        x = torch.from_numpy(SCORES * 3).masked_fill(pad, float(fill)).to(TORCH[name])
        rows = torch.nonzero(torch.isnan(torch.softmax(x, -1)).any(-1)).flatten().tolist()
        want = (
            "none"
            if not rows
            else ("row " if len(rows) == 1 else "rows ") + ", ".join(map(str, rows))
        )
        assert c["rows"] == want, (fill, name)
    assert by["-inf", "fp16"]["rows"] == "row 0" and by["-10000", "fp16"]["rows"] == "none"
    html_text = V.mask_html(cells, 0, 0)
    assert "<th>rows that are NaN</th>" in html_text
    assert "key 0 masked for every query" in html_text
