"""Next-token prediction's loss on a text: what training minimises. Pure numpy.

Training feeds a sequence in and asks, at every position, for the token that comes next: the
targets are the inputs shifted by one. One forward pass gives every position's logits at
once (the causal mask keeps each position from seeing its own target), so every position's
loss comes from that one pass with the true previous tokens as its context: teacher forcing,
and why a transformer trains on a whole block in parallel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dashboard.lessons.residual import floats_or_nan


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis (float64, stable)."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def token_losses(logits: np.ndarray, ids) -> np.ndarray:
    """The cross-entropy (nats) of each next token: for positions 0..T-2, −log p(ids[t+1] |
    ids[..t]) from ``logits`` (T, vocab). T − 1 values; none for a one-token text (it has no
    next token: ValueError)."""
    ids = np.asarray(ids)
    logits = np.asarray(logits)
    if logits.ndim != 2 or len(ids) != logits.shape[0]:
        raise ValueError(f"logits must be (T, vocab) for {len(ids)} ids, not {logits.shape}")
    if len(ids) < 2:
        raise ValueError("a text of one token has no next token to predict")
    lp = log_softmax(logits[:-1])
    return -lp[np.arange(len(ids) - 1), ids[1:]]


@dataclass(frozen=True)
class TextLoss:
    losses: np.ndarray  # (T - 1,) nats
    probs: np.ndarray  # (T - 1,) the probability given to the true next token
    mean: float  # the loss: the mean of ``losses``
    perplexity: float  # e^mean
    surprising: list[int]  # positions of the highest losses, highest first


def text_loss(logits: np.ndarray, ids, top: int = 3) -> TextLoss:
    """:func:`token_losses` with what the lesson shows of them."""
    losses = token_losses(logits, ids)
    mean = float(losses.mean())
    order = np.lexsort((np.arange(len(losses)), -losses))[:top]
    return TextLoss(losses, np.exp(-losses), mean, float(np.exp(mean)), [int(i) for i in order])


# -- the build's record of a training run -------------------------------------------------------
@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per record, shared
class RunRecord:
    """One model's run as the build recorded it (``<name>-run.json``, see
    ``models/run_record.py``): per step the training loss, learning rate, gradient norm before
    clipping and weight norm; the validation loss at ``val_steps``; the steps whose gradients
    were kept, ``grad_sample`` (steps, k) float32 values of them, and the whole gradients' casts
    as the build's torch counted them."""

    steps: int
    warmup_steps: int
    grad_clip: float
    loss: np.ndarray  # NaN where a step's loss was not finite
    lr: np.ndarray
    grad_norm: np.ndarray
    weight_norm: np.ndarray
    val_steps: np.ndarray
    val_loss: np.ndarray
    grad_steps: list[int]
    grad_of: int  # how many gradient values each kept step had in all
    grad_sample: np.ndarray
    whole: list[dict]  # per kept step: its norm and the counts of each cast ("fp16@8": {...})


def read_run(static_dir, entry: dict) -> RunRecord:
    """The run record of manifest ``entry`` from ``static_dir``. ValueError, saying why, for a
    model the build did not train (an imported checkpoint) or a record that is missing."""
    run = entry.get("run")
    if not run:
        raise ValueError(
            f"{entry.get('name', 'this model')} was not trained by the build (imported "
            "weights), so there is no record of its training run"
        )
    try:
        return _read(Path(static_dir), run["file"], run["grads_file"], run.get("sha256"))
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"the record of {entry.get('name')}'s run cannot be read: {err}") from err


@lru_cache(maxsize=32)
def _read(folder: Path, file: str, grads_file: str, sha256: str | None) -> RunRecord:
    """Read once per record (its hash in the key: a rebuilt one is read again); every session
    shares the frozen, read-only result."""
    r = json.loads((folder / file).read_text())
    sample = np.load(folder / grads_file, allow_pickle=False)
    sample.setflags(write=False)
    g = r["gradients"]
    return RunRecord(
        steps=int(r["steps"]),
        warmup_steps=int(r["warmup_steps"]),
        grad_clip=float(r["grad_clip"]),
        loss=floats_or_nan(r["loss"]),
        lr=floats_or_nan(r["lr_schedule"]),
        grad_norm=floats_or_nan(r["grad_norm"]),
        weight_norm=floats_or_nan(r["weight_norm"]),
        val_steps=np.asarray(r["val"]["step"], dtype=np.int64),
        val_loss=floats_or_nan(r["val"]["loss"]),
        grad_steps=[int(s) for s in g["steps"]],
        grad_of=int(g["of"]),
        grad_sample=np.asarray(sample, dtype=np.float32),
        whole=list(g["whole"]),
    )


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """The trailing mean of the last ``window`` values at every step (fewer at the start),
    NaNs skipped: how the build's progress bar reports the loss."""
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    total = np.concatenate([[0.0], np.cumsum(np.where(ok, x, 0.0))])
    count = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - window, 0)
    n = count[i] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total[i] - total[lo]) / np.maximum(n, 1), np.nan)


@dataclass(frozen=True)
class RunSummary:
    """A run in a few figures, each from its record."""

    val_start: float  # the validation loss of the initial weights
    val_end: float
    best_val: float
    best_step: int  # where the validation loss was lowest
    train_end: float  # the training loss, mean of the last ``SMOOTH`` steps (the manifest's)
    clipped: int  # steps whose gradient norm exceeded the clip (so clipping scaled it down)
    grad_median: float
    weight_start: float
    weight_end: float


SMOOTH = 50  # steps averaged, as the build's progress bar and the manifest do


def run_summary(rec: RunRecord) -> RunSummary:
    """:class:`RunSummary` of ``rec``."""
    best = int(np.nanargmin(rec.val_loss))
    return RunSummary(
        val_start=float(rec.val_loss[0]),
        val_end=float(rec.val_loss[-1]),
        best_val=float(rec.val_loss[best]),
        best_step=int(rec.val_steps[best]),
        train_end=float(np.nanmean(rec.loss[-SMOOTH:])),
        clipped=int(np.sum(rec.grad_norm > rec.grad_clip)),
        grad_median=float(np.nanmedian(rec.grad_norm)),
        weight_start=float(rec.weight_norm[0]),
        weight_end=float(rec.weight_norm[-1]),
    )
