"""The ONNX contract: every input and output of our model files, by name, in one place.

The exporter names a graph's outputs from :data:`OUTPUTS`, the engine asks a file for the
outputs it has and builds a :class:`Forward` from them by name, and the tests read the shapes
from here. Adding an output means one entry below and the model returning it.

Shapes are written with the batch axis; :class:`Forward` holds one sequence (batch removed).
No torch here: the run-time path reads this module too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INPUT_IDS = "input_ids"  # int64 (batch, T), 1 <= T <= block size


@dataclass(frozen=True)
class Output:
    """One named graph output."""

    name: str
    shape: str  # with the batch axis, e.g. "(batch, T, vocab)"
    meaning: str


OUTPUTS: dict[str, Output] = {
    o.name: o
    for o in (
        Output("logits", "(batch, T, vocab)", "next-token logits at every position"),
        Output(
            "attn_scores",
            "(batch, n_layer, n_head, T, T)",
            "q·k/√d_head of every layer and head, before the mask",
        ),
        Output(
            "attn_probs",
            "(batch, n_layer, n_head, T, T)",
            "attention probabilities, after the causal mask and the softmax",
        ),
        Output(
            "hidden",
            "(batch, n_layer + 1, T, d_model)",
            "the residual stream: the embeddings, then after every block",
        ),
    )
}

# What every transformer file of ours has (the exporter's output order).
TRANSFORMER_OUTPUTS: tuple[str, ...] = ("logits", "attn_scores", "attn_probs", "hidden")


@dataclass(frozen=True)
class Forward:
    """One forward pass, batch axis removed: ``outputs`` maps output name -> array.

    Outputs read as attributes (``f.logits``, ``f.attn_probs``); a model file that lacks one
    raises AttributeError naming it. ``seconds`` is the ONNX Runtime call's wall time,
    ``provider`` the execution provider that ran it, ``precision`` which graph (fp32, fp16,
    bf16)."""

    model: str
    ids: tuple[int, ...]
    outputs: dict[str, np.ndarray] = field(repr=False)
    seconds: float = 0.0
    provider: str = ""
    precision: str = "fp32"

    def __getattr__(self, name: str) -> np.ndarray:
        # only called for names that are not fields
        outputs = self.__dict__.get("outputs", {})
        if name in outputs:
            return outputs[name]
        raise AttributeError(f"{self.model!r} has no output {name!r}")

    def has(self, name: str) -> bool:
        return name in self.outputs

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.outputs.values())
