"""The ONNX contract: every input and output of our model files, by name, in one place.

The exporter names a graph's outputs from :data:`OUTPUTS`, the engine asks a file for the
outputs it has and builds a :class:`Forward` from them by name, and the tests read the shapes
from here. Adding an output means one entry below and the model returning it.

Shapes are written with the batch axis; :class:`Forward` holds one sequence (batch removed).
Every output is float32 except where its ``dtype`` says otherwise (the chosen experts' ids).
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
    dtype: str = "float32"  # as ONNX Runtime returns it (a numpy dtype name)


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
        Output(
            "q",
            "(batch, n_layer, n_head, T, d_head)",
            "queries as they enter the scores (after RoPE in a RoPE model)",
        ),
        Output(
            "k",
            "(batch, n_layer, n_kv_head, T, d_head)",
            "keys as they enter the scores, one per key/value head: what a KV cache stores",
        ),
        Output(
            "v",
            "(batch, n_layer, n_kv_head, T, d_head)",
            "values, one per key/value head: what a KV cache stores",
        ),
        Output(
            "q_before_rope",
            "(batch, n_layer, n_head, T, d_head)",
            "RoPE models only: queries before the rotation",
        ),
        Output(
            "k_before_rope",
            "(batch, n_layer, n_kv_head, T, d_head)",
            "RoPE models only: keys before the rotation",
        ),
        Output(
            "attn_heads",
            "(batch, n_layer, n_head, T, d_head)",
            "each head's output (probabilities @ v), before the heads are concatenated and "
            "projected",
        ),
        Output(
            "resid_mid",
            "(batch, n_layer, T, d_model)",
            "the residual stream between each block's attention and MLP sublayers",
        ),
        Output(
            "mlp_up",
            "(batch, n_layer, T, d_mlp)",
            "the MLP's first projection: GELU's input, or SwiGLU's up branch",
        ),
        Output(
            "mlp_gate",
            "(batch, n_layer, T, d_mlp)",
            "SwiGLU models only: the gate branch, before its SiLU",
        ),
        Output(
            "mlp_hidden",
            "(batch, n_layer, T, d_mlp)",
            "the MLP's activations, what its output projection reads: gelu(up), or silu(gate)·up",
        ),
        # A mixture of experts' MLP (mlp "moe") has these instead of mlp_up, mlp_gate and
        # mlp_hidden: its experts' activations are n_expert of each, mostly weighted 0.
        Output(
            "router_logits",
            "(batch, n_layer, T, n_expert)",
            "mixture-of-experts models only: the router's logit for each expert, before the "
            "softmax",
        ),
        Output(
            "experts",
            "(batch, n_layer, T, top_k)",
            "mixture-of-experts models only: the ids of the top_k experts each token is sent "
            "to, heaviest first",
            dtype="int64",
        ),
        Output(
            "expert_weights",
            "(batch, n_layer, T, top_k)",
            "mixture-of-experts models only: the chosen experts' weights, their softmax "
            "probabilities renormalised to sum to 1 (the MLP's output is their weighted sum)",
        ),
    )
}

# What every transformer file has, old ones and brought-in ones included: what every lesson
# may rely on, and what the engine returns unless asked for more.
TRANSFORMER_OUTPUTS: tuple[str, ...] = ("logits", "attn_scores", "attn_probs", "hidden")


def transformer_outputs(config: dict) -> tuple[str, ...]:
    """The outputs our exporter writes for a model of ``config`` (a GPTConfig dict), in the
    graph's order: the four above, then the inside of every block."""
    rope = config.get("positions", "learned") == "rope"
    mlp = config.get("mlp", "gelu")
    inside = ("q", "k", "v") + (("q_before_rope", "k_before_rope") if rope else ())
    inside += ("attn_heads", "resid_mid")
    if mlp == "moe":
        inside += ("router_logits", "experts", "expert_weights")
    else:
        inside += ("mlp_up",) + (("mlp_gate",) if mlp == "swiglu" else ()) + ("mlp_hidden",)
    return TRANSFORMER_OUTPUTS + inside


# The decode graph (``<model>-decode.onnx``): one token in, with the keys and values of the
# positions before it (the full graph's ``k`` and ``v``, or an earlier step's ``present_*``).
PAST_K, PAST_V = "past_k", "past_v"  # float32 (batch, n_layer, n_kv_head, P, d_head), P >= 1
DECODE_INPUTS: tuple[str, ...] = (INPUT_IDS, PAST_K, PAST_V)  # input_ids: int64 (batch, 1)
# logits (batch, 1, vocab) at the new position; the cache grown by it (P + 1 positions)
DECODE_OUTPUTS: tuple[str, ...] = ("logits", "present_k", "present_v")


@dataclass(frozen=True)
class Forward:
    """One forward pass, batch axis removed: ``outputs`` maps output name -> array.

    Outputs read as attributes (``f.logits``, ``f.attn_probs``); a model file that lacks one
    raises AttributeError naming it. Arrays keep the graph's dtype: float32, int64 for
    ``experts``. ``seconds`` is the ONNX Runtime call's wall time,
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
