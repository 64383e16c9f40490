"""The residual stream and its norms, and the build's Pre-LN vs Post-LN record. Numpy in, numpy out.

A Pre-LN block reads the stream through a norm and adds what each sublayer computes back onto
it: x → x + attn(ln_1(x)) (the model's ``resid_mid``) → x + mlp(ln_2(x)) (its next ``hidden``).
Here: the stream's norm per token at every stage, what each sublayer added (its norm, and its
cosine with the stream it was added to), the vector each norm reads with its own weights, and
the build's measurement of the two norm positions read into what the lesson draws. Norms are
computed in float64 from the model's float32 outputs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dashboard.lessons import norms

# Where a norm sits, as the lesson steps through it: the block's first norm reads the stream
# entering the block (``hidden[layer]``), the final norm the stream after the last block.
# (The block's second norm reads ``resid_mid``: drawn with the stream, not stepped through, so
# both homes show the same from the one ``hidden`` array the snapshot embeds.)
SITES = {"attn": "the block's first norm (ln_1)", "final": "the final norm (ln_f)"}
NORM_NAMES = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}
FLOAT32_MAX = norms.FLOAT32_MAX


# -- the stream ---------------------------------------------------------------------------------
def stage_names(n_layer: int) -> list[str]:
    """The stream's stages in order: after the embeddings, then after each sublayer."""
    out = ["embeddings"]
    for layer in range(n_layer):
        out += [f"{layer}: + attention", f"{layer}: + MLP"]
    return out


def sublayer_names(n_layer: int) -> list[str]:
    """The sublayers in order: each block's attention, then its MLP."""
    return [f"{layer} {part}" for layer in range(n_layer) for part in ("attention", "MLP")]


def stream_stages(hidden: np.ndarray, resid_mid: np.ndarray) -> np.ndarray:
    """The stream at every stage, (2·n_layer + 1, T, d), float64: ``hidden[0]``, then for each
    layer ``resid_mid[l]`` (after its attention) and ``hidden[l + 1]`` (after its MLP)."""
    hidden = np.asarray(hidden, dtype=np.float64)
    resid_mid = np.asarray(resid_mid, dtype=np.float64)
    n_layer = resid_mid.shape[0]
    if hidden.shape[0] != n_layer + 1 or hidden.shape[1:] != resid_mid.shape[1:]:
        raise ValueError(
            f"hidden {hidden.shape} and resid_mid {resid_mid.shape} are not one model's stream"
        )
    out = np.empty((2 * n_layer + 1, *hidden.shape[1:]))
    out[0] = hidden[0]
    out[1::2] = resid_mid
    out[2::2] = hidden[1:]
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of the angle between ``a`` and ``b`` over the last axis; NaN where either is the
    zero vector (no angle)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    dot = (a * b).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((na > 0) & (nb > 0), dot / (na * nb), np.nan)


@dataclass(frozen=True)
class StreamReport:
    """What the lesson draws about the stream, each per token (last axis T)."""

    norms: np.ndarray  # (2L + 1, T): ‖stream‖ at every stage
    added: np.ndarray  # (2L, T): ‖what each sublayer added‖
    cosines: np.ndarray  # (2L, T): cos(what it added, the stream it was added to)

    @property
    def n_layer(self) -> int:
        return self.added.shape[0] // 2


def stream_report(hidden: np.ndarray, resid_mid: np.ndarray) -> StreamReport:
    """The stream's norms at every stage, and each sublayer's added vector's norm and cosine
    with the stream before it (attention l adds resid_mid[l] − hidden[l], the MLP
    hidden[l + 1] − resid_mid[l])."""
    stages = stream_stages(hidden, resid_mid)
    before, after = stages[:-1], stages[1:]
    delta = after - before
    return StreamReport(
        norms=np.linalg.norm(stages, axis=-1),
        added=np.linalg.norm(delta, axis=-1),
        cosines=cosine(delta, before),
    )


# -- the norms, with each model's weights ---------------------------------------------------------
@dataclass(frozen=True)
class NormSpec:
    """A norm of the model: its weights and eps, and which kind the model uses."""

    key: str  # the weights' prefix, e.g. "h.2.ln_1" or "ln_f"
    kind: str  # "layernorm" or "rmsnorm": the model's own
    weight: np.ndarray
    bias: np.ndarray | None  # LayerNorm with bias (the GPT); None for RMSNorm and no-bias models
    eps: float


def norm_key(site: str, layer: int) -> str:
    """The weights' prefix of the norm at ``site`` (see SITES) of block ``layer``."""
    if site == "attn":
        return f"h.{int(layer)}.ln_1"
    if site == "final":
        return "ln_f"
    raise ValueError(f"unknown norm site {site!r}; choose one of {', '.join(SITES)}")


def norm_spec(config: dict, weights: dict, site: str, layer: int) -> NormSpec:
    """The model's norm at ``site``: its own kind (config ``norm``), weights and eps."""
    key = norm_key(site, layer)
    kind = config.get("norm", "layernorm")
    if kind not in NORM_NAMES:
        raise ValueError(f"unknown norm {kind!r}")
    bias = weights.get(f"{key}.bias")
    return NormSpec(
        key=key,
        kind=kind,
        weight=np.asarray(weights[f"{key}.weight"], dtype=np.float64),
        bias=None if bias is None else np.asarray(bias, dtype=np.float64),
        eps=float(config.get("layer_norm_eps", norms.LAYER_NORM_EPS)),
    )


def norm_input(hidden: np.ndarray, site: str, layer: int) -> np.ndarray:
    """What the norm at ``site`` reads, (T, d) float64: the stream entering block ``layer``
    (``hidden[layer]``), or after the last block (``hidden[-1]``) for the final norm."""
    hidden = np.asarray(hidden, dtype=np.float64)
    norm_key(site, layer)  # refuses an unknown site
    return hidden[-1] if site == "final" else hidden[int(layer)]


@dataclass(frozen=True)
class BothNorms:
    """One vector through LayerNorm and through RMSNorm with the same weight (and LayerNorm's
    bias, where the model has one); ``own`` says which the model uses."""

    x: np.ndarray
    layer: norms.LayerNormSteps
    rms: norms.RMSNormSteps
    own: str | None  # "layernorm", "rmsnorm", or None for a typed vector (no model's weights)
    eps: float


def both_norms(x, spec: NormSpec | None = None, eps: float | None = None) -> BothNorms:
    """``x`` through both norms: with ``spec``'s weight (and bias, LayerNorm only) when given,
    else with γ = 1, β = 0 (a typed vector of any length). The model's own norm is one of
    them; the other is the what-if with the same weight."""
    x = np.asarray(x, dtype=np.float64)
    if spec is None:
        e = norms.LAYER_NORM_EPS if eps is None else float(eps)
        return BothNorms(x, norms.layer_norm(x, eps=e), norms.rms_norm(x, eps=e), None, e)
    return BothNorms(
        x,
        norms.layer_norm(x, spec.weight, spec.bias, eps=spec.eps),
        norms.rms_norm(x, spec.weight, eps=spec.eps),
        spec.kind,
        spec.eps,
    )


def shown_dims(x, first: int) -> list[int]:
    """The dimensions a lesson writes out: the first ``first``, and the one of the largest
    magnitude (the earliest of ties) when it is not among them."""
    x = np.asarray(x, dtype=np.float64)
    dims = list(range(min(first, x.size)))
    big = int(np.argmax(np.abs(x))) if x.size else 0
    return dims if big in dims or not x.size else [*dims, big]


def overflow_notice(x) -> str:
    """What float32 arithmetic does to a vector whose squares pass float32's largest value
    (both norms square it: the variance or mean square becomes inf), or ""."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or float(np.max(np.abs(x))) ** 2 <= FLOAT32_MAX:
        return ""
    top = float(np.max(np.abs(x)))
    return (
        f"{top:.4g}² = {top * top:.4g} is beyond float32's largest value ({FLOAT32_MAX:.4g}): "
        "in the model's float32 arithmetic the squares overflow to inf, so the variance and "
        "the mean square are inf and every output is 0 (or NaN). These steps are in float64, "
        "which holds them."
    )


def typed_notices(x, eps: float) -> list[str]:
    """The notices of a typed vector: constant (variance 0: what eps does), overflow."""
    return [n for n in (norms.constant_notice(x, eps), overflow_notice(x)) if n]


# -- Pre-LN vs Post-LN, as the build measured -----------------------------------------------------
ORDERS = {"pre": "Pre-LN", "post": "Post-LN"}
SMOOTH = 20  # training-loss steps averaged when comparing the runs (one step is noisy)


@dataclass(frozen=True)
class Run:
    """One order's record: the training loss and gradient norm at every step, each block's
    gradient norm at initialisation, and the validation loss at the end."""

    order: str
    loss: np.ndarray  # NaN where the run produced no finite loss
    grad_norm: np.ndarray
    init_block_grad_norms: np.ndarray
    val_loss: float  # NaN if it diverged
    diverged: bool


@dataclass(frozen=True)
class NormPosition:
    """The build's record (``static/norm-position.json``), both orders."""

    runs: dict[str, Run]
    steps: int
    lr: float
    warmup_steps: int
    seed: int
    n_layer: int
    n_embd: int


def floats_or_nan(values) -> np.ndarray:
    """JSON numbers as float64, its nulls (a diverged run's) as NaN."""
    return np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def norm_position(record: dict) -> NormPosition:
    """The record as arrays (JSON's nulls, where a run diverged, as NaN)."""
    runs = {}
    for order in ORDERS:
        r = record["runs"][order]
        val = r.get("val_loss")
        runs[order] = Run(
            order=order,
            loss=floats_or_nan(r["loss"]),
            grad_norm=floats_or_nan(r["grad_norm"]),
            init_block_grad_norms=floats_or_nan(r["init_block_grad_norms"]),
            val_loss=math.nan if val is None else float(val),
            diverged=bool(r.get("diverged")),
        )
    t, c = record["training"], record["config"]
    return NormPosition(
        runs=runs,
        steps=int(t["steps"]),
        lr=float(t["lr"]),
        warmup_steps=int(t.get("warmup_steps", 0)),
        seed=int(t["seed"]),
        n_layer=int(c["n_layer"]),
        n_embd=int(c["n_embd"]),
    )


def read_norm_position(static_dir: str | Path, manifest: dict) -> NormPosition:
    """The record the manifest names under ``experiments.norm_position``; a ValueError that
    says what is missing and how to make it otherwise."""
    summary = (manifest.get("experiments") or {}).get("norm_position") or {}
    name = summary.get("file")
    if not name:
        raise ValueError(
            "The manifest has no Pre-LN vs Post-LN measurement: run `make build` to train both "
            "orders and record them."
        )
    path = Path(static_dir) / name
    try:
        return norm_position(json.loads(path.read_text(encoding="utf-8")))
    except OSError:
        raise ValueError(f"{path} is missing: run `make build` to measure it again.") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is unreadable ({err}): run `make build` again.") from None


def trailing_mean(values: np.ndarray, window: int = SMOOTH) -> np.ndarray:
    """The mean of the last ``window`` values at every step (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


@dataclass(frozen=True)
class Verdict:
    """Which order trained better, as measured."""

    better: str  # the order with the lower validation loss
    worse: str
    gap: float  # worse's validation loss minus better's (nats)
    diverged: list[str]  # orders whose loss stopped being finite
    caught_up: int | None  # first step where better's smoothed loss ≤ worse's final one
    final_smoothed: dict[str, float]  # each order's mean training loss over the last SMOOTH
    init_range: dict[str, tuple[float, float]]  # min and max block gradient norm at init
    init_first_over_rest: dict[str, float]  # block 0's gradient norm / the largest later one's
    below_unigram: dict[str, bool]  # validation loss below the unigram baseline (if given)


def _range(values: np.ndarray) -> tuple[float, float]:
    return float(np.nanmin(values)), float(np.nanmax(values))


def verdict(record: NormPosition, unigram: float | None = None) -> Verdict:
    """The measurement in figures: the lower validation loss, by how much, where the better
    run's training loss (mean of SMOOTH steps) first reached the worse run's final one, which
    run diverged, each order's range of block gradient norms at initialisation, and whether
    each ended below the unigram baseline ``unigram``."""
    runs = record.runs
    diverged = [o for o, r in runs.items() if r.diverged or not np.isfinite(r.loss).all()]

    def val(o: str) -> float:
        v = runs[o].val_loss
        return math.inf if o in diverged or not math.isfinite(v) else v

    better, worse = sorted(runs, key=lambda o: (val(o), o != "pre"))
    smooth = {o: trailing_mean(r.loss) for o, r in runs.items()}
    final = {o: float(s[-1]) for o, s in smooth.items()}
    reached = np.flatnonzero(smooth[better] <= final[worse]) if worse not in diverged else []
    gap = val(worse) - val(better)
    return Verdict(
        better=better,
        worse=worse,
        gap=gap,
        diverged=diverged,
        caught_up=int(reached[0]) if len(reached) else None,
        final_smoothed=final,
        init_range={o: _range(r.init_block_grad_norms) for o, r in runs.items()},
        init_first_over_rest={
            o: float(r.init_block_grad_norms[0] / np.nanmax(r.init_block_grad_norms[1:]))
            for o, r in runs.items()
            if len(r.init_block_grad_norms) > 1
        },
        below_unigram={} if unigram is None else {o: val(o) < unigram for o in runs},
    )
