"""The feed-forward network's activations and the SwiGLU width rule. Numpy in, numpy out."""

from __future__ import annotations

import math

import numpy as np

# math.erf element by element: exact to float64, and the arrays here are a few hundred numbers
_erf = np.vectorize(math.erf, otypes=[np.float64])

GELU_MODES = ("none", "tanh")


def relu(x) -> np.ndarray:
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def gelu(x, approximate: str = "none") -> np.ndarray:
    """GELU: x · Φ(x) with the exact normal CDF ("none", torch's default and anatomy-gpt's) or
    GPT-2's tanh approximation ("tanh", Hugging Face's gelu_new)."""
    x = np.asarray(x, dtype=np.float64)
    if approximate == "none":
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    raise ValueError(f"approximate must be one of {GELU_MODES}, not {approximate!r}")


def silu(x) -> np.ndarray:
    """SiLU (swish): x · sigmoid(x), the sigmoid written so that no exp overflows."""
    x = np.asarray(x, dtype=np.float64)
    s = 1.0 / (1.0 + np.exp(-np.abs(x)))  # sigmoid(|x|)
    return x * np.where(x >= 0, s, 1.0 - s)


def swiglu(x, w_gate, w_up, w_down) -> np.ndarray:
    """LLaMA's MLP: w_down · (silu(w_gate · x) ⊙ (w_up · x)), with weights shaped as
    torch.nn.Linear keeps them (out, in), so ``x @ w.T``."""
    x = np.asarray(x, dtype=np.float64)
    gate = x @ np.asarray(w_gate, dtype=np.float64).T
    up = x @ np.asarray(w_up, dtype=np.float64).T
    return (silu(gate) * up) @ np.asarray(w_down, dtype=np.float64).T


def swiglu_hidden(d_model: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None):
    """LLaMA's hidden width: two thirds of 4·d_model (so the three matrices hold about as many
    weights as GELU's two of width 4·d), times ``ffn_dim_multiplier`` if given, rounded up to
    a multiple of ``multiple_of`` (Meta's model.py)."""
    if d_model < 1 or multiple_of < 1:
        raise ValueError("d_model and multiple_of must be positive")
    hidden = int(2 * (4 * d_model) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)
