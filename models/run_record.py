"""The record of a training run, as the build writes it beside the model it trained.

``<name>-run.json`` holds, for every step: the training loss, the learning rate, the gradient
norm before clipping and the weight norm; the validation loss every ``eval_every`` steps; and,
for a few steps, what becomes of the gradient in the half-precision formats: the whole
gradient cast by torch at the loss scales :data:`FP16_SCALES` (fp16) and with no scaling (bf16).
``<name>-grads.npy`` keeps a sample of those gradients (the same randomly chosen parameters at
each of the steps, float32) for the dashboard to cast at any scale itself. Build side: torch.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import torch

from models.manifest import atomic_write
from models.runtime import sha256_file
from models.train import Recording, TrainConfig, TrainResult

RECORD_FORMAT = 1  # a change here retrains every model, to record its run again
EVAL_POINTS = 20  # validation evaluations over a run (plus the initial weights)
GRAD_SAMPLE = 32768  # gradient values kept per recorded step
SAMPLE_SEED = 0
FP16_SCALES = (0, 8, 16)  # loss scales 2**k whose fp16 casts of the whole gradient are counted
FATES = ("zero", "flushed", "subnormal", "normal", "overflow")


def recording_for(cfg: TrainConfig) -> Recording:
    """The validation loss ``EVAL_POINTS`` times over the run; the gradients of the first step,
    the last warm-up step, the middle and the last."""
    every = max(1, cfg.steps // EVAL_POINTS)
    last_warm = min(max(cfg.warmup_steps - 1, 0), cfg.steps - 1)
    steps = sorted({0, last_warm, cfg.steps // 2, cfg.steps - 1})
    return Recording(eval_every=every, grad_steps=tuple(steps))


def fates(grad: np.ndarray, dtype: torch.dtype, log2_scale: int = 0) -> dict[str, int]:
    """What a torch cast of ``grad`` × 2**log2_scale to ``dtype`` does to each value: ``zero``
    (it was 0), ``flushed`` (non-zero, now 0), ``subnormal``, ``normal`` (finite, at full
    precision) or ``overflow`` (±inf). Counts; they sum to ``grad.size``."""
    g = torch.tensor(np.asarray(grad, dtype=np.float32))  # a copy: the values may be read-only
    scaled = g * (2.0**log2_scale)  # a power of two: exact in float32
    y = scaled.to(dtype)
    tiny = torch.finfo(dtype).tiny
    zero = g == 0
    flushed = (y == 0) & ~zero
    inf = torch.isinf(y)
    sub = (y != 0) & (y.abs() < tiny)
    normal = ~(zero | flushed | inf | sub)
    return {
        "zero": int(zero.sum()),
        "flushed": int(flushed.sum()),
        "subnormal": int(sub.sum()),
        "normal": int(normal.sum()),
        "overflow": int(inf.sum()),
    }


def _round(values, digits: int = 6) -> list:
    return [round(float(v), digits) if math.isfinite(v) else None for v in values]


def write(out: Path, name: str, result: TrainResult, cfg: TrainConfig) -> dict:
    """Write ``name``'s run record and gradient sample into ``out``; returns the manifest's
    pointer to them (files, hashes, what was sampled)."""
    steps = sorted(result.grads)
    n = len(result.grads[steps[0]]) if steps else 0
    k = min(GRAD_SAMPLE, n)
    index = np.sort(np.random.default_rng(SAMPLE_SEED).choice(n, k, replace=False))
    sample = np.stack([result.grads[s][index] for s in steps]).astype(np.float32)
    whole = []
    for s in steps:
        g = result.grads[s]
        cast = {f"fp16@{e}": fates(g, torch.float16, e) for e in FP16_SCALES}
        cast["bf16@0"] = fates(g, torch.bfloat16, 0)
        whole.append({"step": s, "norm": float(np.linalg.norm(g.astype(np.float64))), **cast})
    record = {
        "format": RECORD_FORMAT,
        "steps": cfg.steps,
        "warmup_steps": cfg.warmup_steps,
        "lr": cfg.lr,
        "min_lr": cfg.min_lr,
        "grad_clip": cfg.grad_clip,
        "batch_size": cfg.batch_size,
        "loss": _round([loss for _, loss in result.history]),
        "lr_schedule": [float(x) for x in result.lrs],
        "grad_norm": _round(result.grad_norms),
        "weight_norm": _round(result.weight_norms),
        "val": {
            "step": [s for s, _ in result.val_history],
            "loss": _round([v for _, v in result.val_history]),
        },
        "gradients": {"steps": steps, "of": n, "sample": k, "seed": SAMPLE_SEED, "whole": whole},
    }
    run_path, grads_path = out / f"{name}-run.json", out / f"{name}-grads.npy"
    atomic_write(run_path, json.dumps(record, separators=(",", ":")) + "\n")
    buf = io.BytesIO()
    np.save(buf, sample)
    tmp = grads_path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(grads_path)
    return {
        "file": run_path.name,
        "sha256": sha256_file(run_path),
        "grads_file": grads_path.name,
        "grads_sha256": sha256_file(grads_path),
    }
