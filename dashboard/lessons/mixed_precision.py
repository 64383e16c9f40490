"""Mixed precision: what fp16 (with a loss scale) and bf16 do to real gradients. Pure numpy.

Training in fp16 multiplies the loss by a scale 2**k before the backward pass, so that every
gradient is 2**k times larger while it is stored in fp16, and divides it out in fp32 before
the update. Small gradients that fp16 would flush to zero survive; too large a scale turns
the largest ones into infinity (torch's GradScaler then skips the step and halves the scale).
bf16 has fp32's exponent range and needs no scale. Here a gradient recorded in fp32 by the
build is multiplied by 2**k (exact: a power of two) and cast, as a proxy for the backward
pass done in fp16 (which also rounds every intermediate).

A cast of x × 2**k depends on x's binade (its exponent) and, only in the binade at each of a
format's three boundaries, on where in the binade x lies. :func:`binade_counts` keeps exactly
what the boundaries need, so :func:`fates_from_binades` gives exactly the counts of casting
the values themselves, for every integer k ≥ 0, from a few hundred integers (tested against
torch's casts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dashboard.lessons import precision as P

FATES = ("zero", "flushed", "subnormal", "normal", "overflow")
# float32's binades: its smallest subnormal is 2**-149, its largest binade starts at 2**127
LOW, HIGH = -149, 127


TOPS = (7, 8, 10, 11)  # the binade tops the boundaries of bf16 (p = 7) and fp16 (p = 10) need


@dataclass(frozen=True)
class Binades:
    """Per float32 binade e (LOW..HIGH: |x| in [2**e, 2**(e+1))): how many values in all
    (``total``), exactly 2**e (``exact``), and at its top, |x| ≥ (2 − 2**-j)·2**e (``top[j]``
    for j in :data:`TOPS`); and how many are 0 (``zeros``)."""

    total: np.ndarray
    exact: np.ndarray
    top: dict[int, np.ndarray]
    zeros: int

    @property
    def n(self) -> int:
        return int(self.total.sum()) + self.zeros


def binade_counts(values) -> Binades:
    """:class:`Binades` of ``values`` (float32 gradients; non-finite ones are left out)."""
    x = np.abs(np.asarray(values, dtype=np.float32)).astype(np.float64)
    x = x[np.isfinite(x)]
    nz = x[x > 0]
    _, e = np.frexp(nz)  # nz = f · 2**e with f in [0.5, 1): exact
    e = e.astype(np.int64) - 1
    m = nz / np.exp2(e.astype(np.float64))  # in [1, 2), exact
    size = HIGH - LOW + 1

    def count(mask) -> np.ndarray:
        return np.bincount(e[mask] - LOW, minlength=size)

    return Binades(
        total=count(np.ones(len(m), dtype=bool)),
        exact=count(m == 1.0),
        top={j: count(m >= 2 - 2.0**-j) for j in TOPS},
        zeros=int((x == 0).sum()),
    )


def boundaries(fmt: str) -> dict[str, int]:
    """``fmt``'s boundaries as binade exponents, from its finfo: the smallest subnormal is
    2**sub, the smallest normal 2**tiny, max lies in binade ``top``; ``p``, its fraction bits."""
    if fmt not in ("fp16", "bf16"):
        raise ValueError(f"gradients are cast to fp16 or bf16, not {fmt!r}")
    info = P.format_info(fmt)
    return {
        "sub": int(np.frexp(info.smallest_subnormal)[1]) - 1,
        "tiny": int(np.frexp(info.smallest_normal)[1]) - 1,
        "top": int(np.frexp(info.max)[1]) - 1,
        "p": info.mantissa_bits,
    }


def fates_from_binades(b: Binades, fmt: str = "fp16", log2_scale: int = 0) -> dict[str, int]:
    """What casting the values counted in ``b``, × 2**log2_scale, to ``fmt`` (round to nearest,
    ties to even) does to them: ``zero`` (it was 0), ``flushed`` (non-zero, now 0),
    ``subnormal``, ``normal`` or ``overflow`` (±inf); counts summing to ``b.n``."""
    f = boundaries(fmt)
    e = np.arange(LOW, HIGH + 1) + int(log2_scale)  # each binade's exponent once scaled
    t, p = b.total, f["p"]
    # Up to half the smallest subnormal, 0: every binade below, and exactly half (a tie: even).
    half = e == f["sub"] - 1
    flushed = t[e < f["sub"] - 1].sum() + b.exact[half].sum()
    # From halfway between the largest subnormal and the smallest normal on, the normal: the
    # top of the binade below 2**tiny, (2 − 2**-p)·2**(tiny−1) and up.
    subnormal = t[(e >= f["sub"] - 1) & (e < f["tiny"])].sum() - b.exact[half].sum()
    subnormal -= b.top[p][e == f["tiny"] - 1].sum()
    # From max plus half its spacing, (2 − 2**-(p+1))·2**top, on: infinity.
    overflow = t[e > f["top"]].sum() + b.top[p + 1][e == f["top"]].sum()
    normal = b.n - b.zeros - flushed - subnormal - overflow
    return {
        "zero": b.zeros,
        "flushed": int(flushed),
        "subnormal": int(subnormal),
        "normal": int(normal),
        "overflow": int(overflow),
    }
