"""The feed-forward network's activations and the SwiGLU width rule. Numpy in, numpy out."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


# -- what the lesson draws ----------------------------------------------------------------------
# |h| below this counts as "near zero" (the page says so): GELU's negative side never goes
# below -0.17, SiLU's below -0.28, so a neuron switched off by its activation lands here.
NEAR_ZERO = 0.1
TOP_K = 12  # the most active neurons shown for the selected token
CURVE_X = np.linspace(-4.0, 4.0, 161)  # the activation curves' grid (step 0.05)
SURFACE_AXIS = np.linspace(-4.0, 4.0, 81)  # gate and up axes of the SwiGLU surface
HIST_EDGES = np.linspace(-2.0, 2.0, 41)  # bins of width 0.1; the end bins take the tails


def activation_curves(x=CURVE_X) -> dict[str, np.ndarray]:
    """ReLU, GELU (exact and tanh), SiLU and the tanh approximation's error on ``x``."""
    x = np.asarray(x, dtype=np.float64)
    exact, tanh = gelu(x), gelu(x, "tanh")
    return {
        "x": x,
        "relu": relu(x),
        "gelu": exact,
        "gelu_tanh": tanh,
        "silu": silu(x),
        "gelu_diff": tanh - exact,
    }


def lowest_point(fn, lo: float = -4.0, hi: float = 0.0, tol: float = 1e-12) -> tuple[float, float]:
    """Where ``fn`` (one dip on [lo, hi], as GELU and SiLU have) is lowest, and its value there:
    golden-section search."""
    r = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = float(lo), float(hi)
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = float(fn(c)), float(fn(d))
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = float(fn(c))
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = float(fn(d))
    x = (a + b) / 2.0
    return x, float(fn(x))


def largest_gap(x, diff) -> tuple[float, float]:
    """The grid point where |diff| is largest, and diff there (the first such point)."""
    i = int(np.argmax(np.abs(np.asarray(diff))))
    return float(np.asarray(x)[i]), float(np.asarray(diff)[i])


def swiglu_surface(gate_axis=SURFACE_AXIS, up_axis=SURFACE_AXIS) -> np.ndarray:
    """SiLU(gate) · up on a grid: rows follow ``up_axis``, columns ``gate_axis``."""
    g = np.asarray(gate_axis, dtype=np.float64)
    u = np.asarray(up_axis, dtype=np.float64)
    return u[:, None] * silu(g)[None, :]


def top_neurons(h, k: int = TOP_K) -> np.ndarray:
    """Indices of the ``k`` largest |h| along the last axis, largest first (a tie: the lower
    index first); fewer when there are fewer neurons."""
    h = np.asarray(h)
    k = min(int(k), h.shape[-1])
    order = np.argsort(-np.abs(h.astype(np.float64)), axis=-1, kind="stable")
    return order[..., :k]


def near_zero(h, threshold: float = NEAR_ZERO) -> np.ndarray:
    """How many entries along the last axis have |h| < ``threshold``."""
    return np.count_nonzero(np.abs(np.asarray(h, dtype=np.float64)) < threshold, axis=-1)


def histogram(h, edges=HIST_EDGES) -> np.ndarray:
    """Counts of ``h`` along the last axis in the bins between ``edges`` (each bin [a, b), the
    last one [a, b]); values beyond the ends are counted in the end bins."""
    h = np.asarray(h, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    n = len(edges) - 1
    bins = np.clip(np.searchsorted(edges, h, side="right") - 1, 0, n - 1)
    flat = bins.reshape(-1, h.shape[-1])
    rows = np.arange(flat.shape[0])[:, None] * n
    counts = np.bincount((flat + rows).ravel(), minlength=flat.shape[0] * n)
    return counts.reshape(*h.shape[:-1], n)


@dataclass(frozen=True)
class Activations:
    """What the lesson shows of every (layer, token) of a text's MLP activations: its ``k``
    most active neurons (index and value of each stage, float32 as the model wrote them), how
    many are near zero, how many are switched off (a negative GELU input or SwiGLU gate),
    and the histogram of h. Arrays are (n_layer, T, ...)."""

    neurons: np.ndarray  # (L, T, k) int
    hidden: np.ndarray  # (L, T, k) float32: h, what the down projection reads
    up: np.ndarray  # (L, T, k) float32: GELU's input, or SwiGLU's up branch
    gate: np.ndarray | None  # (L, T, k) float32: SwiGLU's gate before its SiLU
    gate_act: np.ndarray | None  # (L, T, k) float32: SiLU(gate)
    near: np.ndarray  # (L, T) int: |h| < threshold
    negative: np.ndarray  # (L, T) int: up < 0 (GELU) or gate < 0 (SwiGLU)
    counts: np.ndarray  # (L, T, bins) int: histogram of h
    width: int  # d_mlp
    threshold: float

    @property
    def swiglu(self) -> bool:
        return self.gate is not None


def activations(
    up, hidden, gate=None, k: int = TOP_K, threshold: float = NEAR_ZERO, edges=HIST_EDGES
) -> Activations:
    """Summarise the MLP outputs ``mlp_up``, ``mlp_hidden`` (and ``mlp_gate``), each
    (n_layer, T, d_mlp), for every layer and token."""
    up, hidden = np.asarray(up, dtype=np.float32), np.asarray(hidden, dtype=np.float32)
    idx = top_neurons(hidden, k)

    def pick(a):
        return np.take_along_axis(a, idx, axis=-1)

    g = None if gate is None else np.asarray(gate, dtype=np.float32)
    return Activations(
        neurons=idx,
        hidden=pick(hidden),
        up=pick(up),
        gate=None if g is None else pick(g),
        gate_act=None if g is None else silu(pick(g)).astype(np.float32),
        near=near_zero(hidden, threshold),
        negative=np.count_nonzero((up if g is None else g) < 0, axis=-1),
        counts=histogram(hidden, edges),
        width=int(hidden.shape[-1]),
        threshold=float(threshold),
    )


# -- parameters -----------------------------------------------------------------------------------
MLP_DESIGNS = ("gelu", "swiglu")


def mlp_params(d_model: int, hidden: int, design: str, bias: bool = False) -> int:
    """Parameters of one MLP: GELU's two matrices 2·d·h (biases h + d), SwiGLU's three
    3·d·h (biases 2·h + d)."""
    if design == "gelu":
        return 2 * d_model * hidden + (hidden + d_model if bias else 0)
    if design == "swiglu":
        return 3 * d_model * hidden + (2 * hidden + d_model if bias else 0)
    raise ValueError(f"design must be one of {MLP_DESIGNS}, not {design!r}")


def mlp_width(config: dict) -> int:
    """A model's MLP width from its config (models.gpt.GPTConfig.hidden): ``mlp_hidden`` when
    set, else 4·d for GELU and LLaMA's rule for SwiGLU."""
    if config.get("mlp_hidden"):
        return int(config["mlp_hidden"])
    d = int(config["n_embd"])
    if config.get("mlp", "gelu") == "gelu":
        return 4 * d
    return swiglu_hidden(d, int(config.get("multiple_of", 256)))


def mlp_params_in(weights: dict, layer: int = 0) -> int:
    """Parameters of layer ``layer``'s MLP as a weights file holds them (``h.<layer>.mlp.*``)."""
    prefix = f"h.{layer}.mlp."
    return int(sum(np.asarray(w).size for name, w in weights.items() if name.startswith(prefix)))


# Published LLaMA widths (intermediate_size in each model's released config):
# name, d_model, multiple_of, ffn_dim_multiplier, published width
PUBLISHED = (
    ("LLaMA 7B", 4096, 256, None, 11008),
    ("LLaMA 13B", 5120, 256, None, 13824),
    ("Llama 2 70B", 8192, 4096, 1.3, 28672),
    ("Llama 3 8B", 4096, 1024, 1.3, 14336),
)


@dataclass(frozen=True)
class WidthRow:
    """One MLP design at one width: its weights and their ratio to GELU's at 4·d."""

    label: str
    design: str
    width: int
    params: int
    ratio: float


def width_rows(d_model: int, multiple_of: int, model_width: int | None = None,
               model_design: str | None = None) -> list[WidthRow]:  # fmt: skip
    """GELU at 4·d, SwiGLU at the same width, SwiGLU at LLaMA's rule, and (if given) the
    model's own design and width: weight matrices only (no biases)."""
    base = mlp_params(d_model, 4 * d_model, "gelu")
    rule = swiglu_hidden(d_model, multiple_of)
    rows = [
        ("GELU, h = 4·d", "gelu", 4 * d_model),
        ("SwiGLU, the same h = 4·d", "swiglu", 4 * d_model),
        (f"SwiGLU, LLaMA's rule (⅔·4·d, up to a multiple of {multiple_of})", "swiglu", rule),
    ]
    if model_width is not None and model_design is not None:
        rows.append(("this model", model_design, int(model_width)))
    out = []
    for label, design, width in rows:
        p = mlp_params(d_model, width, design)
        out.append(WidthRow(label, design, width, p, p / base))
    return out
