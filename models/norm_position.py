"""Pre-LN vs Post-LN, measured: the same small model in both orders, trained by the build.

The two runs share everything but where the norms sit: the data and its order, the initial
weights (the same seed draws the same tensors: the modules are the same), the learning rate
and its schedule. The schedule has no warm-up on purpose: the claim under test is that
Post-LN needs one (Xiong et al., 2020) and Pre-LN does not. Recorded for each order: the
training loss and the gradient norm (before clipping) at every step, each block's gradient
norm at initialisation on the first batch, and the validation loss. The build writes the
record into the manifest's ``experiments``; the dashboard only draws it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from models.gpt import GPTConfig
from models.train import TrainConfig, train

POSITIONS = ("pre", "post")


def default_setting(vocab_size: int, quick: bool = False) -> tuple[GPTConfig, TrainConfig]:
    """A deeper, narrower model than the teaching ones (depth is where the orders differ),
    trained for a few hundred steps at the teaching learning rate with no warm-up."""
    if quick:
        model = GPTConfig(vocab_size=vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)
        return model, TrainConfig(steps=12, batch_size=4, warmup_steps=0)
    model = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=8, n_head=4, n_embd=64)
    return model, TrainConfig(steps=600, batch_size=16, warmup_steps=0)


def _finite(x: float) -> float | None:
    return round(x, 5) if math.isfinite(x) else None  # JSON has no NaN: null where it diverged


def run(
    model: GPTConfig, training: TrainConfig, train_ids: np.ndarray, val_ids: np.ndarray
) -> dict:
    """Train ``model`` in both orders; the record the manifest keeps (see the module doc)."""
    runs = {}
    for position in POSITIONS:
        config = dataclasses.replace(model, norm_position=position)
        result = train(config, train_ids, val_ids, training)
        losses = [loss for _, loss in result.history]
        diverged = not all(math.isfinite(x) for x in losses) or not math.isfinite(result.val_loss)
        runs[position] = {
            "loss": [_finite(x) for x in losses],
            "grad_norm": [_finite(x) for x in result.grad_norms],
            "init_block_grad_norms": [_finite(x) for x in result.init_block_grad_norms],
            "val_loss": _finite(result.val_loss),
            "diverged": diverged,
            "seconds": round(result.seconds, 1),
        }
        print(
            f"[norm position] {position}-LN: val {result.val_loss:.3f} nats, gradient norm at "
            f"init {min(result.init_block_grad_norms):.3g}–{max(result.init_block_grad_norms):.3g}"
            f" over the blocks{', diverged' if diverged else ''}"
        )
    return {
        "config": dataclasses.replace(model, norm_position="pre").to_dict(),
        "training": training.to_dict(),
        "runs": runs,
    }
