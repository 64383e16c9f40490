"""LayerNorm and RMSNorm step by step, over the last axis. Numpy in, numpy out.

Each returns the normalised vector and the statistics on the way (what the "residual stream
and normalisation" lesson shows one by one): LayerNorm subtracts the mean, divides by the
standard deviation (with eps under the root), then scales by γ and shifts by β; RMSNorm
skips the mean and the shift, dividing by the root of the mean square. Computed in float64:
the lesson shows the steps of the model's float32 arithmetic to more digits than it has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, and GPT-2's
RMS_NORM_EPS = 1e-6  # Hugging Face's Llama default (torch.nn.RMSNorm's default is float eps)
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class LayerNormSteps:
    """``layer_norm``'s way there, each over the last axis (keepdims for the statistics)."""

    mean: np.ndarray
    var: np.ndarray  # biased, as LayerNorm's (divided by n, not n - 1)
    std: np.ndarray  # sqrt(var + eps)
    normalised: np.ndarray  # (x - mean) / std, before γ and β
    out: np.ndarray


@dataclass(frozen=True)
class RMSNormSteps:
    """``rms_norm``'s way there."""

    mean_square: np.ndarray
    rms: np.ndarray  # sqrt(mean_square + eps)
    normalised: np.ndarray  # x / rms, before the weight
    out: np.ndarray


def _vector(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError("normalise a vector of at least one number")
    return x


def layer_norm(x, weight=None, bias=None, eps: float = LAYER_NORM_EPS) -> LayerNormSteps:
    """LayerNorm of ``x`` over its last axis: (x − mean) / sqrt(var + eps) · weight + bias."""
    x = _vector(x)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    std = np.sqrt(var + eps)
    normalised = (x - mean) / std
    out = normalised
    if weight is not None:
        out = out * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return LayerNormSteps(mean, var, std, normalised, out)


def rms_norm(x, weight=None, eps: float = RMS_NORM_EPS) -> RMSNormSteps:
    """RMSNorm of ``x`` over its last axis: x / sqrt(mean(x²) + eps) · weight."""
    x = _vector(x)
    mean_square = (x**2).mean(-1, keepdims=True)
    rms = np.sqrt(mean_square + eps)
    normalised = x / rms
    out = normalised if weight is None else normalised * np.asarray(weight, dtype=np.float64)
    return RMSNormSteps(mean_square, rms, normalised, out)


def parse_vector(text: str, limit: int = 4096) -> np.ndarray:
    """The numbers a student typed (commas, spaces or both between them), or a ValueError
    that says what is wrong: nothing typed, something that is not a number, too many, or a
    number float32 cannot hold (the model's arithmetic overflows to inf)."""
    parts = [p for p in str(text).replace(",", " ").split() if p]
    if not parts:
        raise ValueError("type a few numbers, e.g. 1, 2, 3, 10")
    if len(parts) > limit:
        raise ValueError(f"{len(parts)} numbers is more than {limit}")
    values = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"{p!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{p!r} is not a finite number")
        if abs(v) > FLOAT32_MAX:
            raise ValueError(
                f"{p} is beyond float32's largest value ({FLOAT32_MAX:.4g}): the model's "
                "arithmetic would overflow to inf"
            )
        values.append(v)
    return np.asarray(values, dtype=np.float64)


def constant_notice(x, eps: float) -> str:
    """What happens to a vector whose numbers are all equal (variance 0), or ""."""
    x = _vector(x)
    if np.ptp(x) != 0:
        return ""
    return (
        f"Every number is the same, so the variance is 0: without eps, LayerNorm would divide "
        f"0 by 0. With eps = {eps:g} under the root it divides 0 by sqrt({eps:g}) and every "
        "output is 0 (then β)."
    )
