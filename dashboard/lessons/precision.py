"""Number formats: what fp32, fp16, bf16 and the two fp8 formats can store, and what they do
to the numbers a transformer computes.

Numpy and ml_dtypes only: no Panel, no torch (this module is on the run-time path).

Every figure is derived from the dtypes themselves (``numpy.finfo``/``ml_dtypes.finfo``, casts,
``np.nextafter``, enumerating bit patterns); none is typed in. The tests compare each one with
an independent implementation: a bit-level rounding written from first principles, torch
casts, numpy's own float64 → float16 conversion and ONNX Runtime's ``Cast``.

Rounding (:func:`round_to`) is IEEE 754 round to nearest, ties to even, with subnormals, on the
exact float64 input:

- ``ml_dtypes`` (and torch) convert float64 to bfloat16/fp8 by going through float32 first, so
  a float64 a hair above a tie first rounds *onto* the tie and then to even: double rounding,
  e.g. ``1 + 2**-8 + 2**-30`` becomes 1.0 in bf16 instead of ``1 + 2**-7``. Here float64 is
  first rounded to float32 *to odd* (truncate, then set the last bit if anything was lost),
  which keeps the information a later rounding needs: rounding to odd with at least two spare
  bits and then to nearest-even equals rounding to nearest-even once. float32 has ≥ 13 spare
  bits over every 16- and 8-bit format here, at every magnitude (subnormals included).
- Overflow (the rounded value, with an unbounded exponent, exceeds the largest finite value)
  gives ±inf; **fp8_e4m3** (``float8_e4m3fn``: "fn" = finite + NaN) has no infinity, so there
  overflow and ±inf give NaN, as ``ml_dtypes`` does. ``saturate=True`` (fp8 only) clamps
  instead, the way ONNX ``Cast(saturate=1)`` (its default) does: finite overflow → ±max, and
  for e4m3 also ±inf → ±max. torch's ``.to(torch.float8_e4m3fn)`` saturates like that; its
  e5m2 cast does not.
- NaN stays NaN and −0 stays −0 (so does a negative value that flushes to zero).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import cache

import ml_dtypes
import numpy as np

FORMATS: tuple[str, ...] = ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2")

_DTYPES: dict[str, np.dtype] = {
    "fp32": np.dtype(np.float32),
    "fp16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "fp8_e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "fp8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
}
_LABELS: dict[str, str] = {
    "fp32": "FP32 (IEEE single)",
    "fp16": "FP16 (IEEE half)",
    "bf16": "BF16 (bfloat16)",
    "fp8_e4m3": "FP8 E4M3 (e4m3fn)",
    "fp8_e5m2": "FP8 E5M2",
}
_UINTS: dict[int, np.dtype] = {
    8: np.dtype(np.uint8),
    16: np.dtype(np.uint16),
    32: np.dtype(np.uint32),
}


def _check_name(name: str) -> str:
    if name not in _DTYPES:
        raise ValueError(f"unknown format {name!r}; the formats are: {', '.join(FORMATS)}")
    return name


def dtype_of(name: str) -> np.dtype:
    """The numpy dtype that stores format ``name`` (``ValueError`` for an unknown name)."""
    return _DTYPES[_check_name(name)]


def _finfo(name: str):
    dt = dtype_of(name)
    # numpy.finfo knows float32/float16; ml_dtypes.finfo knows (and defers to numpy for) all.
    return (
        np.finfo(dt) if dt in (np.dtype(np.float32), np.dtype(np.float16)) else ml_dtypes.finfo(dt)
    )


# -- the table of formats --------------------------------------------------------------------------
@dataclass(frozen=True)
class FormatInfo:
    """One row of the formats table. Every figure comes from the dtype (see :func:`format_info`)."""

    name: str
    label: str
    dtype: str  # numpy/ml_dtypes name of the storage type
    bits: int
    sign_bits: int
    exponent_bits: int
    mantissa_bits: int  # stored fraction bits; the significand has one more (the implicit 1)
    bias: int
    min_exponent: int  # exponent of the smallest normal, 1 - bias
    max_exponent: int  # exponent of the largest finite value
    max: float  # largest finite value
    smallest_normal: float
    smallest_subnormal: float
    eps: float  # spacing just above 1.0 (machine epsilon, 2**-mantissa_bits)
    decimal_digits: float  # the significand's worth in decimal digits, (mantissa_bits+1)·log10 2
    precision: int  # finfo.precision as numpy/ml_dtypes report it (an integer digit count)
    overflow_threshold: float  # max + half its ulp: beyond it every value overflows
    has_inf: bool
    has_nan: bool

    def as_row(self) -> dict[str, object]:
        """The figures as a plain dict, for a table widget."""
        return asdict(self)


@cache
def format_info(name: str) -> FormatInfo:
    """The figures of format ``name``, derived from its dtype (``ValueError`` if unknown)."""
    dt = dtype_of(name)
    fi = _finfo(name)
    big = dt.type(fi.max)
    below_max = np.nextafter(big, dt.type(0))
    # The ulp just above max (in an unbounded exponent range) equals the ulp just below it,
    # because max is the last value of its binade in every format here.
    half_ulp = (float(big) - float(below_max)) / 2
    with np.errstate(invalid="ignore", over="ignore"):
        inf_cast = np.array([np.inf], dtype=np.float32).astype(dt)
        nan_cast = np.array([np.nan], dtype=np.float32).astype(dt)
    return FormatInfo(
        name=name,
        label=_LABELS[name],
        dtype=str(dt),
        bits=int(fi.bits),
        sign_bits=1,
        exponent_bits=int(fi.nexp),
        mantissa_bits=int(fi.nmant),
        bias=1 - int(fi.minexp),  # the smallest normal has biased exponent field 1
        min_exponent=int(fi.minexp),
        max_exponent=int(fi.maxexp) - 1,  # finfo.maxexp is the first exponent that overflows
        max=float(fi.max),
        smallest_normal=float(fi.smallest_normal),
        smallest_subnormal=float(fi.smallest_subnormal),
        eps=float(fi.eps),
        decimal_digits=(int(fi.nmant) + 1) * math.log10(2),
        precision=int(fi.precision),
        overflow_threshold=float(big) + half_ulp,
        has_inf=bool(np.isinf(inf_cast[0])),
        has_nan=bool(np.isnan(nan_cast[0])),
    )


def format_table() -> list[dict[str, object]]:
    """Every format's figures, in :data:`FORMATS` order."""
    return [format_info(n).as_row() for n in FORMATS]


# -- how inf and NaN are stored -------------------------------------------------------------------
@dataclass(frozen=True)
class SpecialEncodings:
    """Where format ``name`` keeps ±inf and NaN, read from its bit patterns whose exponent
    field is all ones (the only ones that can hold inf or NaN in these formats)."""

    name: str
    inf: str  # the patterns of ±inf, in words ("none" if the format has no inf)
    nan: str  # the patterns of NaN, in words
    nan_patterns: int  # NaN patterns of each sign
    top_finite: int  # finite values (of each sign) with the exponent all ones
    top_max: float | None  # the largest of them (None if there is none)


@cache
def special_encodings(name: str) -> SpecialEncodings:
    """How format ``name`` stores ±inf and NaN, from every positive pattern with an all-ones
    exponent (2**mantissa_bits of them)."""
    info = format_info(name)
    m = info.mantissa_bits
    top = (2**info.exponent_bits - 1) << m
    uint = _UINTS[info.bits]
    values = (np.arange(2**m, dtype=uint) + uint.type(top)).view(dtype_of(name))
    with np.errstate(invalid="ignore"):  # ml_dtypes warns on NaN patterns
        is_inf, is_nan = np.isinf(values), np.isnan(values)
        finite = values[~is_nan & ~is_inf].astype(np.float64)
    inf_m = np.flatnonzero(is_inf).tolist()
    nan_m = np.flatnonzero(is_nan)  # mantissa fields (fp32: 8 million of them)
    if not inf_m:
        inf = "none"
    elif inf_m == [0]:
        inf = "exponent all ones, mantissa 0"
    else:  # no format here; say it plainly rather than wrongly
        inf = f"exponent all ones, mantissa {' or '.join(map(str, inf_m))}"
    if nan_m.size == 2**m - 1 and nan_m[0] == 1:  # ascending and distinct: 1 … 2**m − 1
        nan = "exponent all ones, mantissa not 0"
    elif nan_m.tolist() == [2**m - 1]:
        nan = "exponent and mantissa all ones"
    else:
        nan = f"exponent all ones, {len(nan_m)} of the {2**m} mantissas"
    return SpecialEncodings(
        name=name,
        inf=inf,
        nan=nan,
        nan_patterns=int(nan_m.size),
        top_finite=int(finite.size),
        top_max=float(finite.max()) if finite.size else None,
    )


# -- rounding --------------------------------------------------------------------------------------
def _float32_round_to_odd(x: np.ndarray) -> np.ndarray:
    """float64 → float32 rounded to odd: truncate toward zero, then set the last bit if the
    result is inexact. Never overflows to inf (a too-large finite value gives ±max, which is
    odd), and a nonzero value below float32's range gives ±2**-149, never 0."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = x.astype(np.float32)  # round to nearest: we only need a neighbour of x
    back = f.astype(np.float64)
    inexact = (back != x) & ~np.isnan(x)
    # rounded away from zero → step one float32 back toward zero (inf steps to ±max)
    away = inexact & (np.abs(back) > np.abs(x))
    f = np.where(away, np.nextafter(f, np.float32(0)), f)
    bits = f.view(np.uint32) | inexact.astype(np.uint32)
    return bits.view(np.float32)


def to_dtype(x, name: str, *, saturate: bool = False) -> np.ndarray:
    """``x`` (anything float64 can hold) stored in format ``name``: an array of its dtype
    (shape kept; a scalar gives a 0-d array). See the module docstring for the rules."""
    dt = dtype_of(name)
    if saturate and name not in ("fp8_e4m3", "fp8_e5m2"):
        raise ValueError("saturate applies to the fp8 formats only (as in ONNX Cast)")
    a = np.asarray(x, dtype=np.float64)
    if name == "fp32":
        with np.errstate(over="ignore"):
            return a.astype(np.float32)  # hardware float64 → float32: correctly rounded
    with np.errstate(over="ignore", invalid="ignore"):
        stored = _float32_round_to_odd(a).astype(dt)
    if saturate:
        info = format_info(name)
        # ONNX Cast(saturate=1): |x| beyond max clamps to ±max; ±inf clamps too for e4m3fn
        # (which cannot store it) but stays ±inf for e5m2.
        over = ~np.isnan(a) & ~np.isfinite(stored.astype(np.float64))
        if info.has_inf:
            over &= np.isfinite(a)
        clamped = np.copysign(info.max, a).astype(dt)
        stored = np.where(over, clamped, stored).astype(dt)
    return stored


def round_to(x, name: str, *, saturate: bool = False) -> np.ndarray | np.float64:
    """The value format ``name`` actually stores for ``x``, as float64 (an array for an array,
    a numpy float64 scalar for a scalar). Round to nearest, ties to even, subnormals, overflow
    to ±inf (NaN for fp8_e4m3, or ±max with ``saturate``), NaN and −0 kept."""
    out = to_dtype(x, name, saturate=saturate).astype(np.float64)
    return out[()] if out.ndim == 0 else out


# -- bits ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BitFields:
    """What one value looks like in one format."""

    name: str
    input: float  # the value asked for (float64)
    stored: float  # the value the format stores
    pattern: int  # the bits as an unsigned integer
    bits: str  # the bits, most significant (the sign) first
    sign: str
    exponent: str
    mantissa: str
    sign_int: int
    exponent_int: int  # the biased exponent field
    mantissa_int: int
    category: str  # "zero", "subnormal", "normal", "inf" or "nan"
    exponent_value: int | None  # the power of two the significand is scaled by (None: inf/NaN)
    significand: float | None  # 1.mantissa (normal) or 0.mantissa (subnormal, zero)
    overflow: bool  # a finite input became ±inf (or NaN, in fp8_e4m3)
    flush_to_zero: bool  # a nonzero finite input became ±0
    subnormal: bool  # a nonzero input is stored as a subnormal
    nan: bool  # the stored value is NaN
    abs_error: float  # |stored − input| (inf on overflow, NaN if either is NaN)
    rel_error: float  # abs_error / |input| (0 for input 0; NaN for NaN or inf input)


def _category(v: float, info: FormatInfo) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf"
    if v == 0:
        return "zero"
    return "subnormal" if abs(v) < info.smallest_normal else "normal"


def _fields(x: float, stored_arr: np.ndarray, name: str) -> BitFields:
    info = format_info(name)
    pattern = int(stored_arr.reshape(1).view(_UINTS[info.bits])[0])
    with np.errstate(invalid="ignore"):  # some NaN patterns warn when widened
        stored = float(stored_arr.astype(np.float64).reshape(1)[0])
    bits = format(pattern, f"0{info.bits}b")
    e_bits, m_bits = info.exponent_bits, info.mantissa_bits
    s, e, m = bits[:1], bits[1 : 1 + e_bits], bits[1 + e_bits :]
    cat = _category(stored, info)
    if cat in ("inf", "nan"):
        exp_value, significand = None, None
    elif cat in ("zero", "subnormal"):
        exp_value, significand = info.min_exponent, int(m, 2) / 2**m_bits
    else:
        exp_value, significand = int(e, 2) - info.bias, 1 + int(m, 2) / 2**m_bits
    finite_in = math.isfinite(x)
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error = abs(stored - x)  # exact or within one float64 rounding of exact
    if x == 0:
        rel_error = 0.0
    elif finite_in:
        rel_error = abs_error / abs(x)
    else:
        rel_error = math.nan
    if math.isinf(x) and math.isinf(stored) and x == stored:
        abs_error = 0.0
    return BitFields(
        name=name,
        input=x,
        stored=stored,
        pattern=pattern,
        bits=bits,
        sign=s,
        exponent=e,
        mantissa=m,
        sign_int=int(s, 2),
        exponent_int=int(e, 2),
        mantissa_int=int(m, 2),
        category=cat,
        exponent_value=exp_value,
        significand=significand,
        overflow=finite_in and not math.isfinite(stored),
        flush_to_zero=finite_in and x != 0 and stored == 0,
        subnormal=x != 0 and cat == "subnormal",
        nan=cat == "nan",
        abs_error=abs_error,
        rel_error=rel_error,
    )


def bit_fields(x: float, name: str, *, saturate: bool = False) -> BitFields:
    """How format ``name`` stores the float64 value ``x``: bits, fields, category, flags and
    rounding error."""
    x = float(x)
    return _fields(x, to_dtype(np.array([x]), name, saturate=saturate), name)


def fields_from_bits(pattern: int, name: str) -> BitFields:
    """The fields of a bit pattern as it is (NaN payloads included); ``input`` is its value.
    For a view that keeps the pattern as its state while bits are clicked."""
    info = format_info(name)
    if isinstance(pattern, bool) or not isinstance(pattern, int | np.integer):
        raise ValueError(f"a bit pattern must be an integer, not {pattern!r}")
    if not 0 <= int(pattern) < 2**info.bits:
        raise ValueError(f"a {name} bit pattern lies in [0, 2**{info.bits}), not {pattern}")
    arr = np.array([int(pattern)], dtype=_UINTS[info.bits]).view(dtype_of(name))
    with np.errstate(invalid="ignore"):
        value = float(arr.astype(np.float64)[0])
    return _fields(value, arr, name)


def from_bits(pattern: int, name: str) -> float:
    """The value of a bit pattern in format ``name``."""
    return fields_from_bits(pattern, name).stored


def neighbours(x: float, name: str) -> tuple[float | None, float | None]:
    """The representable values just below and just above the value ``x`` is stored as
    (``np.nextafter`` on the dtype). None where there is none: below −inf, above +inf, above
    fp8_e4m3's max (it has no inf), and both for NaN. ±0 both neighbour ±smallest subnormal."""
    info = format_info(name)
    dt = dtype_of(name)
    s = to_dtype(np.array([float(x)]), name)
    if np.isnan(s[0]):
        return None, None
    out: list[float | None] = []
    for direction in (-1.0, 1.0):
        # nextafter toward inf, or toward ±max where the format has no inf (inf casts to NaN)
        target = np.array([direction * (math.inf if info.has_inf else info.max)]).astype(dt)
        if s[0] == target[0]:
            out.append(None)
        else:
            with np.errstate(over="ignore"):  # max → inf is a neighbour, not an accident
                out.append(float(np.nextafter(s, target).astype(np.float64)[0]))
    return out[0], out[1]


def flip_bit(value: float, name: str, index: int) -> float:
    """The value after flipping bit ``index`` (0 = the most significant, the sign) of the
    pattern that stores ``value`` in format ``name``."""
    info = format_info(name)
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise ValueError(f"bit index must be an integer, not {index!r}")
    if not 0 <= index < info.bits:
        raise ValueError(f"bit index must lie in 0..{info.bits - 1} for {name}, not {index}")
    pattern = bit_fields(value, name).pattern ^ (1 << (info.bits - 1 - int(index)))
    return from_bits(pattern, name)


# -- parsing typed values --------------------------------------------------------------------------
_EXAMPLES = "e.g. 65504, 1e-8, -0, inf, nan, 0x1p-24 or 2^-24"
_POWER = re.compile(r"^([+-]?)2\s*(?:\^|\*\*)\s*\(?\s*([+-]?\d{1,6})\s*\)?$")
_MAX_LEN = 200


def _nonzero_digits(s: str) -> bool:
    """Whether the significand of a decimal or hex float literal has a nonzero digit."""
    body = s.lstrip("+-")
    if body[:2].lower() == "0x":
        return re.search(r"[1-9a-fA-F]", re.split(r"[pP]", body[2:])[0]) is not None
    return re.search(r"[1-9]", re.split(r"[eE]", body)[0]) is not None


def parse_value(text) -> float:
    """A value typed by a person → float64, or ``ValueError`` with a message for the page.

    Accepts what Python's ``float`` accepts ("65504", "1e-8", "-0", "inf", "-Infinity",
    "nan", "1_000"), hexadecimal floats ("0x1p-24", exact binary values), powers of two
    ("2^-24", "-2**15"), and "∞" and the typographic minus "−". A number that float64 itself
    cannot hold is refused rather than silently changed: "1e400" would become inf and
    "1e-400" would become 0, which would hide the overflow/flush the lesson is about.
    """
    if isinstance(text, bool):
        raise ValueError(f"type a number ({_EXAMPLES}), not {text!r}")
    if isinstance(text, int | float | np.floating | np.integer):
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"type a number ({_EXAMPLES}), not {type(text).__name__}")
    s = text.strip().replace("\u2212", "-").replace("\u221e", "inf")
    if not s:
        raise ValueError(f"type a number ({_EXAMPLES})")
    if len(s) > _MAX_LEN:
        raise ValueError(f"that is {len(s)} characters; a number needs at most {_MAX_LEN}")
    shown = s if len(s) <= 40 else s[:37] + "..."
    power = _POWER.match(s)
    if power:
        n = int(power.group(2))
        if n > 1023:
            raise ValueError(f"2^{n} is beyond float64 (largest 2^1023·(2 − 2^-52)); try inf")
        if n < -1074:
            raise ValueError(f"2^{n} is below float64's smallest subnormal 2^-1074")
        return math.ldexp(-1.0 if power.group(1) == "-" else 1.0, n)
    try:
        value = float.fromhex(s) if re.match(r"^[+-]?0[xX]", s) else float(s)
    except OverflowError:
        raise ValueError(f"{shown!r} is beyond float64's range (±1.8e308); type inf") from None
    except ValueError:
        raise ValueError(f"{shown!r} is not a number ({_EXAMPLES})") from None
    if math.isinf(value) and "inf" not in s.lower():
        raise ValueError(
            f"{shown!r} is beyond float64's range (±{np.finfo(np.float64).max:.4g}), so beyond "
            "every format here; type inf for infinity"
        )
    if value == 0 and _nonzero_digits(s):
        raise ValueError(
            f"{shown!r} is below float64's smallest subnormal "
            f"({np.finfo(np.float64).smallest_subnormal:.3g}); every format here stores it as 0"
        )
    return value


# -- ranges and density ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RangeBand:
    """A format's positive range on a log10 axis: subnormals from ``log10_smallest_subnormal``
    to ``log10_smallest_normal``, normals from there to ``log10_max``."""

    name: str
    smallest_subnormal: float
    smallest_normal: float
    max: float
    log10_smallest_subnormal: float
    log10_smallest_normal: float
    log10_max: float


def range_band(name: str) -> RangeBand:
    """Where format ``name``'s positive values lie, for a log-scale range plot."""
    info = format_info(name)
    return RangeBand(
        name=name,
        smallest_subnormal=info.smallest_subnormal,
        smallest_normal=info.smallest_normal,
        max=info.max,
        log10_smallest_subnormal=math.log10(info.smallest_subnormal),
        log10_smallest_normal=math.log10(info.smallest_normal),
        log10_max=math.log10(info.max),
    )


@cache
def positive_values(name: str) -> np.ndarray:
    """Every positive finite value of an 8- or 16-bit format, ascending (from its bit
    patterns: positive patterns ascend with their values)."""
    info = format_info(name)
    if info.bits > 16:
        raise ValueError(f"{name} has 2**{info.bits} patterns; enumerate 8- or 16-bit formats")
    patterns = np.arange(1, 2 ** (info.bits - 1), dtype=_UINTS[info.bits])
    with np.errstate(invalid="ignore"):  # the NaN patterns
        values = patterns.view(dtype_of(name)).astype(np.float64)
    values = values[np.isfinite(values)]
    values.setflags(write=False)
    return values


def _exact_count_below(values: np.ndarray, k: int) -> int:
    """How many of the ascending ``values`` are < 10**k, compared exactly (10**k, k < 0, is not
    a binary fraction, so float64 10.0**k might sit on the wrong side of a stored value)."""
    i = int(np.searchsorted(values, 10.0**k, side="left"))
    bound = _pow10(k)
    while i > 0 and _frac(values[i - 1]) >= bound:
        i -= 1
    while i < len(values) and _frac(values[i]) < bound:
        i += 1
    return i


def _frac(v: float) -> Fraction:
    return Fraction(float(v))


def _pow10(k: int) -> Fraction:
    return Fraction(10) ** k


def _analytic_count_below(bound: Fraction, info: FormatInfo) -> int:
    """How many positive finite values of an IEEE-like format are < ``bound``, counted per
    binade: the 2**m − 1 subnormals j·2**(emin − m) (0 < j < 2**m), then 2**m values
    2**e·(1 + j·2**−m) in each binade [2**e, 2**(e+1)) from emin up to emax."""
    m, emin = info.mantissa_bits, info.min_exponent
    if bound <= 0:
        return 0
    if bound > Fraction(info.max):
        # every positive finite value: those below max, and max (fp8_e4m3's top binade is
        # one short, its all-ones mantissa being NaN, so a whole-binade count would be wrong)
        return _analytic_count_below(Fraction(info.max), info) + 1
    if bound <= Fraction(2) ** emin:
        return math.ceil(bound / Fraction(2) ** (emin - m)) - 1  # j·2**(emin−m) < bound, j ≥ 1
    e = bound.numerator.bit_length() - bound.denominator.bit_length()
    if Fraction(2) ** e > bound:
        e -= 1  # now 2**e ≤ bound < 2**(e+1)
    whole = 2**m - 1 + (e - emin) * 2**m  # subnormals and the whole binades below 2**e
    return whole + math.ceil((bound - Fraction(2) ** e) / Fraction(2) ** (e - m))


@dataclass(frozen=True)
class Density:
    """How many positive representable values each decade [10**k, 10**(k+1)) holds (the
    negative side mirrors it)."""

    name: str
    decades: np.ndarray  # the k of each decade
    counts: np.ndarray  # int64


def default_decades(name: str) -> np.ndarray:
    """The decades that hold at least one positive value of format ``name``."""
    band = range_band(name)
    return np.arange(
        math.floor(band.log10_smallest_subnormal), math.floor(band.log10_max) + 1, dtype=np.int64
    )


def density(name: str, decades: Sequence[int] | None = None) -> Density:
    """Representable values per decade of format ``name``: by enumerating every bit pattern
    for the 8- and 16-bit formats, by counting per binade (exactly, with fractions) for fp32."""
    info = format_info(name)
    ks = default_decades(name) if decades is None else np.asarray(decades, dtype=np.int64)
    if ks.ndim != 1:
        raise ValueError("decades must be a 1-d sequence of integers")
    if info.bits <= 16:
        values = positive_values(name)
        below = [_exact_count_below(values, int(k)) for k in ks]
        above = [_exact_count_below(values, int(k) + 1) for k in ks]
    else:
        below = [_analytic_count_below(_pow10(int(k)), info) for k in ks]
        above = [_analytic_count_below(_pow10(int(k) + 1), info) for k in ks]
    counts = np.array(above, dtype=np.int64) - np.array(below, dtype=np.int64)
    return Density(name=name, decades=ks, counts=counts)


# -- the model's real numbers ----------------------------------------------------------------------
@dataclass(frozen=True)
class OverflowCounts:
    """What storing a tensor in one format does to its values (each count is of elements)."""

    name: str
    total: int
    zeros: int  # exactly ±0 already
    nonfinite: int  # inf or NaN already
    overflow: int  # finite → ±inf (NaN in fp8_e4m3)
    subnormal: int  # nonzero finite → a nonzero subnormal (precision lost)
    flush_to_zero: int  # nonzero finite → ±0
    normal: int  # finite nonzero → a normal value


def overflow_counts(values, name: str) -> OverflowCounts:
    """Count what format ``name`` does to ``values`` (any shape, any float dtype)."""
    info = format_info(name)
    x = np.asarray(values, dtype=np.float64).ravel()
    s = round_to(x, name) if x.size else x
    s = np.atleast_1d(s)
    finite = np.isfinite(x)
    nonzero = finite & (x != 0)
    s_finite = np.isfinite(s)
    s_abs = np.abs(s)
    return OverflowCounts(
        name=name,
        total=int(x.size),
        zeros=int(np.count_nonzero(x == 0)),
        nonfinite=int(np.count_nonzero(~finite)),
        overflow=int(np.count_nonzero(finite & ~s_finite)),
        subnormal=int(np.count_nonzero(nonzero & (s != 0) & (s_abs < info.smallest_normal))),
        flush_to_zero=int(np.count_nonzero(nonzero & (s == 0))),
        normal=int(np.count_nonzero(nonzero & s_finite & (s_abs >= info.smallest_normal))),
    )


@dataclass(frozen=True)
class LogHistogram:
    """A histogram of log10|x| over the finite nonzero values; zeros and non-finite values are
    counted apart (they have no log)."""

    edges: np.ndarray  # log10|x| bin edges, len(counts) + 1
    counts: np.ndarray  # int64
    zeros: int
    nonfinite: int


def log_histogram(values, bins: int | Sequence[float] = 60) -> LogHistogram:
    """Histogram of log10|x| of ``values``. ``bins``: a count (edges span the data; 0..1 if
    there are no finite nonzero values) or an ascending array of edges. Bins are half-open
    [a, b) except the last, which includes its right edge (``numpy.histogram``'s rule)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(x)
    keep = finite & (x != 0)
    logs = np.log10(np.abs(x[keep]))
    if np.ndim(bins) == 0:
        n = int(bins)
        if n < 1:
            raise ValueError(f"bins must be at least 1, not {bins}")
        lo, hi = (float(logs.min()), float(logs.max())) if logs.size else (0.0, 1.0)
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        counts, edges = np.histogram(logs, bins=n, range=(lo, hi))
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bin edges must be a 1-d ascending array of at least 2 values")
        counts, edges = np.histogram(logs, bins=edges)
    return LogHistogram(
        edges=edges,
        counts=counts.astype(np.int64),
        zeros=int(np.count_nonzero(x == 0)),
        nonfinite=int(np.count_nonzero(~finite)),
    )


# -- the masking lesson ----------------------------------------------------------------------------
def causal_mask(t: int) -> np.ndarray:
    """(t, t) bool, True where query i must not see key j (j > i)."""
    return np.triu(np.ones((t, t), dtype=bool), k=1)


def softmax_in_format(scores, name: str, *, accumulate: str = "format") -> np.ndarray:
    """Softmax over the last axis as format ``name`` would compute it, returned as float64.

    Step by step, each result rounded to the format (``r``) before the next step::

        x = r(scores)                 # the scores as stored
        m = max(x)                    # exact: a max of stored values is stored
        d = r(x − m)                  # −inf − (−inf) = NaN when a whole row is −inf
        e = r(exp(d))                 # exp in float64, rounded once
        s = r(…r(r(e0 + e1) + e2)…)   # summed left to right, rounded after every addition
        p = r(e / s)

    ``accumulate="fp32"`` instead rounds ``x`` to the format, does every step in float32 and
    rounds only ``p`` to the format: what torch's CPU softmax does for float16/bfloat16.
    """
    if accumulate not in ("format", "fp32"):
        raise ValueError(f"accumulate must be 'format' or 'fp32', not {accumulate!r}")
    x = round_to(np.asarray(scores, dtype=np.float64), name)
    x = np.atleast_1d(x)
    work = name if accumulate == "format" else "fp32"

    def r(v):
        return np.atleast_1d(round_to(v, work))

    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(x, axis=-1, keepdims=True)
        d = r(x - m)
        e = r(np.exp(d))
        s = e[..., :1]
        for j in range(1, e.shape[-1]):
            s = r(s + e[..., j : j + 1])
        p = r(e / s)
    return np.atleast_1d(round_to(p, name))


@dataclass(frozen=True)
class MaskFill:
    """One (fill value, format) cell of the masking lesson."""

    fill: float  # the fill asked for
    name: str
    stored_fill: float  # what the format stores for it
    fill_became_inf: bool  # a finite fill overflowed to −inf (or NaN in fp8_e4m3)
    probs: np.ndarray  # softmax rows, (..., T, T), float64
    nan_rows: np.ndarray  # indices (over the flattened leading axes and rows) with a NaN
    has_nan: bool
    masked_mass: float  # the largest probability given to a masked position


def mask_fill_demo(
    scores,
    fills: Sequence[float] = (-1e10, -1e4, -np.inf),
    formats: Sequence[str] = ("fp32", "fp16", "bf16"),
    mask: np.ndarray | None = None,
    *,
    accumulate: str = "format",
) -> list[MaskFill]:
    """Fill the masked scores with each of ``fills``, store in each of ``formats`` and take the
    softmax there (:func:`softmax_in_format`). ``mask``: bool, True = masked, broadcast to
    ``scores``; default causal. A row masked entirely shows the fills apart: a finite fill
    gives a uniform row, −inf gives −inf − (−inf) = NaN. Results in ``fills`` × ``formats``
    order."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim < 2 or s.shape[-1] != s.shape[-2] or s.shape[-1] == 0:
        raise ValueError(f"scores must be (..., T, T) with T ≥ 1, not {s.shape}")
    mk = causal_mask(s.shape[-1]) if mask is None else np.asarray(mask, dtype=bool)
    mk = np.broadcast_to(mk, s.shape)
    out = []
    for fill in fills:
        fill = float(fill)
        filled = np.where(mk, fill, s)
        for name in formats:
            stored_fill = float(round_to(fill, name))
            probs = softmax_in_format(filled, name, accumulate=accumulate)
            row_nan = np.isnan(probs).any(axis=-1).ravel()
            masked = np.where(mk, probs, 0.0)
            out.append(
                MaskFill(
                    fill=fill,
                    name=name,
                    stored_fill=stored_fill,
                    fill_became_inf=math.isfinite(fill) and not math.isfinite(stored_fill),
                    probs=probs,
                    nan_rows=np.flatnonzero(row_nan),
                    has_nan=bool(row_nan.any()),
                    masked_mass=float(np.nanmax(masked)) if np.any(~np.isnan(masked)) else 0.0,
                )
            )
    return out


# -- real runs at lower precision ------------------------------------------------------------------
@dataclass(frozen=True)
class RunComparison:
    """A lower-precision forward pass against the fp32 one over the same tokens.

    Differences are max |low − fp32| in float64; a NaN on either side, or an inf on one side
    only, counts as an infinite difference (the run broke there)."""

    name: str  # the lower precision, e.g. "fp16"
    hidden_max_diff: np.ndarray  # (n_layer + 1,): residual stream; 0 = after the embeddings
    scores_max_diff: np.ndarray  # (n_layer,): scaled scores q·k/√d, before the mask
    probs_max_diff: np.ndarray  # (n_layer,): attention probabilities, over heads and rows
    logits_max_diff: float
    logits_max_rel: float  # logits_max_diff / max |fp32 logit|
    top1: np.ndarray  # (T,) next token predicted at each position by the low-precision run
    top1_ref: np.ndarray  # (T,) by the fp32 run
    agreement: float  # fraction of positions whose top-1 next token is the same
    flips: np.ndarray  # positions where it differs
    nonfinite: int  # inf or NaN values among the low-precision run's outputs


def _abs_diff(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    same_inf = np.isinf(a) & (a == b)
    return np.where(same_inf, 0.0, np.where(np.isnan(d), np.inf, d))


def _max_over(d: np.ndarray, keep: int) -> np.ndarray:
    """Max over every axis but the first ``keep``."""
    return d.reshape(*d.shape[:keep], -1).max(axis=-1) if d.size else np.zeros(d.shape[:keep])


def compare_runs(low, ref, name: str = "") -> RunComparison:
    """Compare two forward passes (anything with ``logits`` (T, V), ``attn_scores`` and
    ``attn_probs`` (L, H, T, T) and ``hidden`` (L + 1, T, C)): ``low`` at lower precision,
    ``ref`` in fp32."""
    dl = _abs_diff(low.logits, ref.logits)
    logits_max = float(dl.max()) if dl.size else 0.0
    ref_top = float(np.abs(np.asarray(ref.logits, dtype=np.float64)).max()) if dl.size else 0.0
    top1 = np.argmax(np.nan_to_num(np.asarray(low.logits, np.float64), nan=-np.inf), axis=-1)
    top1_ref = np.argmax(np.asarray(ref.logits, dtype=np.float64), axis=-1)
    agree = top1 == top1_ref
    nonfinite = sum(
        int(np.count_nonzero(~np.isfinite(np.asarray(getattr(low, k)))))
        for k in ("logits", "attn_scores", "attn_probs", "hidden")
    )
    return RunComparison(
        name=name,
        hidden_max_diff=_max_over(_abs_diff(low.hidden, ref.hidden), 1),
        scores_max_diff=_max_over(_abs_diff(low.attn_scores, ref.attn_scores), 1),
        probs_max_diff=_max_over(_abs_diff(low.attn_probs, ref.attn_probs), 1),
        logits_max_diff=logits_max,
        logits_max_rel=logits_max / ref_top if ref_top else logits_max,
        top1=top1,
        top1_ref=top1_ref,
        agreement=float(agree.mean()) if agree.size else 1.0,
        flips=np.flatnonzero(~agree),
        nonfinite=nonfinite,
    )


# -- the histogram panel ---------------------------------------------------------------------------
# Behind the bars, each format's band: fp16 on the lower half of the plot's height, bf16 on the
# upper half, so both stay visible where they overlap.
HISTOGRAM_BANDS: tuple[tuple[str, float, float], ...] = (("fp16", 0.0, 0.5), ("bf16", 0.5, 1.0))
HISTOGRAM_STEP = 0.25  # bin width in decades


@dataclass(frozen=True)
class HistogramBand:
    """One shaded rectangle behind the histogram: where a format stores subnormal or normal
    values, clipped to the plot's x range."""

    name: str  # the format
    kind: str  # "subnormal" or "normal"
    left: float  # log10|x|
    right: float
    bottom: float  # counts (the y axis)
    top: float


@dataclass(frozen=True)
class HistogramGeometry:
    """Everything the histogram of a tensor draws: bars, x and y ranges and the bands."""

    histogram: LogHistogram
    size: int  # every value, zeros and non-finite included
    lo: float  # x range, whole decades, always spanning at least 1e-9 … 1e5
    hi: float
    top: float  # y range: the tallest bar plus 10 %
    bands: tuple[HistogramBand, ...]


def histogram_geometry(values, step: float = HISTOGRAM_STEP) -> HistogramGeometry:
    """The histogram of log10|x| of ``values`` in bins of ``step`` decades, over whole decades
    from below both the data and 1e-9 to above both the data and 1e5 (so fp16's range, 6e-8 …
    65504, always shows), with the fp16 and bf16 bands (:data:`HISTOGRAM_BANDS`)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    nonzero = v[np.isfinite(v) & (v != 0)]
    logs = np.log10(np.abs(nonzero)) if nonzero.size else np.zeros(1)
    lo = min(math.floor(float(logs.min())), -9) - 1
    hi = max(math.ceil(float(logs.max())), 5) + 1
    h = log_histogram(v, np.arange(lo, hi + step / 2, step))
    top = max(int(h.counts.max()), 1) * 1.1
    bands = []
    for name, b0, b1 in HISTOGRAM_BANDS:
        rb = range_band(name)
        for kind, a, z in (
            ("subnormal", rb.log10_smallest_subnormal, rb.log10_smallest_normal),
            ("normal", rb.log10_smallest_normal, rb.log10_max),
        ):
            bands.append(HistogramBand(name, kind, max(a, lo), min(z, hi), b0 * top, b1 * top))
    return HistogramGeometry(
        histogram=h, size=int(v.size), lo=float(lo), hi=float(hi), top=top, bands=tuple(bands)
    )


# -- the model run in each variant -----------------------------------------------------------------
@dataclass(frozen=True)
class VariantRun:
    """The model run at one lower precision beside fp32, or why it could not run."""

    name: str  # "fp16" or "bf16"
    comparison: RunComparison | None  # None when the variant failed
    provider: str = ""  # the ONNX Runtime provider that ran it
    description: str = ""  # the manifest's words for the variant
    emulated_ops: tuple[str, ...] = ()  # ops computed in fp32 between Casts
    error: str = ""


def run_variants(engine, model: str, ref, names: Sequence[str] = ("fp16", "bf16")):
    """Run ``model`` on ``ref.ids`` in each precision of ``names`` with ``engine`` (a
    :class:`models.runtime.Engine`) and compare each with the fp32 pass ``ref``."""
    from models.runtime import EngineError  # onnxruntime: only for those who run the model

    out = []
    for name in names:
        try:
            low = engine.run(model, ref.ids, name)
            record = engine.variant(model, name)
        except EngineError as err:
            out.append(VariantRun(name, None, error=str(err)))
            continue
        out.append(
            VariantRun(
                name,
                compare_runs(low, ref, name),
                provider=low.provider,
                description=str(record.get("description", "")),
                emulated_ops=tuple(record.get("emulated_ops", ())),
            )
        )
    return out


def run_curves(runs: Sequence[VariantRun], n_layer: int):
    """The runs figure's two sources as columns: max |difference| per layer of the hidden
    state (layer 0: the embeddings) and of the attention probabilities (layers 1 … n_layer),
    one column per run; NaN where the run failed and for an exact 0 (a log axis has no 0)."""

    def col(run: VariantRun, key: str, n: int) -> list[float]:
        if run.comparison is None:
            return [math.nan] * n
        return [float(x) if x > 0 else math.nan for x in getattr(run.comparison, key)]

    hidden = {"layer": list(range(n_layer + 1))}
    probs = {"layer": list(range(1, n_layer + 1))}
    for r in runs:
        hidden[r.name] = col(r, "hidden_max_diff", n_layer + 1)
        probs[r.name] = col(r, "probs_max_diff", n_layer)
    return hidden, probs


def padding_mask(t: int) -> np.ndarray:
    """The masked-scores demo's mask: position 0 is a padding token, so key 0 is masked for
    every query (a key padding mask), on top of the causal mask. Every query loses key 0, and
    query 0 has no key left, so each fill shows what it does to a row that is all masked."""
    mask = causal_mask(t)
    mask[:, 0] = True
    return mask
