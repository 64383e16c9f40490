"""The snapshot's rounding kernel (dashboard/views/js/rounding.js) in a real Chromium against
numpy's and ml_dtypes' casts: one list of cases (ties, halfway points, the largest finite
value and just above it, the smallest subnormal and half of it, −0, ±inf, NaN, random values
over many decades), exact equality of the stored value and of the bit pattern.

Values cross into the page as the hex of their float64 bits, so nothing is lost on the way.
ml_dtypes casts float64 to bfloat16 and fp8 through float32 (double rounding), so those cases
are float32 values there, where one rounding is all there is; the float64 cases it gets wrong
are checked against the Python twin, :func:`dashboard.lessons.precision.round_to`.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from dashboard.lessons import precision as P
from tests.browser_support import js_kernel_page

pytestmark = pytest.mark.browser

DTYPES = {
    "fp32": np.float32,
    "fp16": np.float16,
    "bf16": ml_dtypes.bfloat16,
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
}
UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32}
# float64 -> the format in one rounding: numpy's float32 and float16 casts are direct
DIRECT = ("fp32", "fp16")

JS_ROUND = """(cases) => cases.map(([hex, name]) => {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt("0x" + hex));
  const x = view.getFloat64(0);
  view.setFloat64(0, round_value(x, name));
  return [view.getBigUint64(0).toString(16).padStart(16, "0"), encode(x, name)];
})"""


def _hex(x: float) -> str:
    return format(int(np.array([x], np.float64).view(np.uint64)[0]), "016x")


def _from_hex(h: str) -> float:
    return float(np.array([int(h, 16)], np.uint64).view(np.float64)[0])


def _finfo(name):
    dt = np.dtype(DTYPES[name])
    return np.finfo(dt) if name in DIRECT else ml_dtypes.finfo(dt)


def cases(name: str) -> list[float]:
    """The shared list for format ``name``: every value float32 holds exactly (see above)."""
    fi = _finfo(name)
    m = int(fi.nmant)
    big, tiny, normal = float(fi.max), float(fi.smallest_subnormal), float(fi.smallest_normal)
    ulp_top = big - float(np.nextafter(DTYPES[name](big), DTYPES[name](0)))
    out = [
        1.0, 1 + 2.0**-m,  # exact
        1 + 2.0 ** -(m + 1), 1 + 3 * 2.0 ** -(m + 1),  # ties: to even, down then up
        1 + 2.0 ** -(m + 1) + 2.0 ** -(m + 8), 1 + 2.0 ** -(m + 1) - 2.0 ** -(m + 8),  # near ties
        big, big + ulp_top / 4, big + ulp_top / 2, big + ulp_top,  # max, above, halfway, beyond
        2 * big, 1e30,
        tiny, tiny / 2, tiny * 0.75, tiny * 1.5, tiny * 2.5,  # smallest subnormal, its ties
        normal, normal - tiny, normal - tiny / 2,  # the subnormal/normal border
        0.1, 1 / 3, 65504.0, 65520.0, 448.0, 464.0, 480.0, 57344.0, 61440.0,
        0.0, -0.0, math.inf, -math.inf, math.nan,
    ]  # fmt: skip
    out += [-v for v in out[:-5]]
    rng = np.random.default_rng(7)
    decades = rng.uniform(-46, 39, 300)
    random = np.sign(rng.uniform(-1, 1, 300)) * 10.0**decades * rng.uniform(1, 10, 300)
    with np.errstate(over="ignore"):  # 2·max of bf16 (and 1e39) are beyond float32: inf
        out += [float(v) for v in random.astype(np.float32)]
        if name in DIRECT:
            out += [float(v) for v in random]  # float64 values with all 52 bits: one rounding
        return [float(np.float32(v)) if name not in DIRECT else v for v in out]


def oracle(x: float, name: str) -> tuple[float, str]:
    """The stored value and bit pattern from numpy's / ml_dtypes' cast."""
    dt = np.dtype(DTYPES[name])
    src = np.float64 if name in DIRECT else np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        s = np.array([x], dtype=src).astype(dt)
        value = float(s.astype(np.float64)[0])
    pattern = int(s.view(UINTS[dt.itemsize])[0])
    return value, format(pattern, f"0{8 * dt.itemsize}b")


@pytest.fixture(scope="module")
def page(browser):
    page = js_kernel_page(browser, "rounding")
    yield page
    page.close()


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


@pytest.mark.parametrize("name", list(DTYPES))
def test_kernel_rounds_as_numpy_and_ml_dtypes(page, name):
    xs = cases(name)
    got = page.evaluate(JS_ROUND, [[_hex(x), name] for x in xs])
    bad = []
    for x, (stored_hex, bits) in zip(xs, got, strict=True):
        value, pattern = oracle(x, name)
        if not _same(_from_hex(stored_hex), value) or bits != pattern:
            bad.append((x, _from_hex(stored_hex), value, bits, pattern))
    assert not bad, bad[:5]
    assert len(xs) > 300


def test_kernel_rounds_float64_once_where_ml_dtypes_rounds_twice(page):
    # a hair above a bf16/fp8 tie: float32 first rounds onto the tie, then to even
    xs = [1 + 2.0**-8 + 2.0**-30, -(1 + 2.0**-8 + 2.0**-30), 1 + 2.0**-4 + 2.0**-40]
    names = ["bf16", "bf16", "fp8_e4m3"]
    got = page.evaluate(JS_ROUND, [[_hex(x), n] for x, n in zip(xs, names, strict=True)])
    for x, n, (stored_hex, _bits) in zip(xs, names, got, strict=True):
        stored = _from_hex(stored_hex)
        assert stored == float(P.round_to(x, n))
        assert stored != float(np.array([x]).astype(DTYPES[n]).astype(np.float64)[0])
    assert _from_hex(got[0][0]) == 1 + 2.0**-7


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_decode_reads_every_pattern_as_ml_dtypes_does(page, name):
    dt = np.dtype(DTYPES[name])
    bits = 8 * dt.itemsize
    patterns = np.arange(2**bits, dtype=UINTS[dt.itemsize])
    with np.errstate(invalid="ignore"):
        want = patterns.view(dt).astype(np.float64)
    got = page.evaluate(
        """([name, bits]) => {
          const out = [];
          for (let p = 0; p < 2 ** bits; p++) {
            const v = decode(p.toString(2).padStart(bits, "0"), name);
            out.push(Number.isNaN(v) ? "nan" : Object.is(v, -0) ? "-0" : v);
          }
          return out;
        }""",
        [name, bits],
    )
    for p, (g, w) in enumerate(zip(got, want, strict=True)):
        if np.isnan(w):
            assert g == "nan", p
        elif w == 0 and math.copysign(1, w) < 0:
            assert g == "-0", p
        else:
            assert g == w, p


@pytest.mark.parametrize("name", list(DTYPES))
def test_neighbours_are_numpy_nextafter(page, name):
    dt = np.dtype(DTYPES[name])
    fi = _finfo(name)
    values = [0.0, -0.0, 1.0, -1.0, float(fi.max), -float(fi.max), float(fi.smallest_subnormal)]
    values += [-float(fi.smallest_subnormal), float(fi.smallest_normal), 0.1, -3.0]
    if name != "fp8_e4m3":
        values += [math.inf, -math.inf]
    values = [float(np.array([v]).astype(dt).astype(np.float64)[0]) for v in values]
    got = page.evaluate(
        """(cases) => cases.map(([v, name]) => neighbours(v, name).map(
             (n) => n === null ? null : Object.is(n, -0) ? "-0" : n))""",
        [[v, name] for v in values],
    )
    top = np.array([math.inf if name != "fp8_e4m3" else float(fi.max)]).astype(dt)
    for v, (below, above) in zip(values, got, strict=True):
        s = np.array([v]).astype(dt)
        for g, target in ((below, -top), (above, top)):
            if s[0] == target[0]:
                assert g is None, (v, g)
                continue
            with np.errstate(over="ignore"):
                w = float(np.nextafter(s, target).astype(np.float64)[0])
            assert (g == "-0") if (w == 0 and math.copysign(1, w) < 0) else (g == w), (v, g, w)
