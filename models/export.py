"""torch -> ONNX with every stage as a named output, the decode graph, and the parity checks.

Two graphs per model: the full graph (``<name>.onnx``: token ids in, every output of
models/contract.py out) and the decode graph (``<name>-decode.onnx``: one token and the KV
cache in, its logits and the grown cache out), which is what makes generation cost one
position per token instead of the whole prefix.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from models.contract import DECODE_INPUTS, DECODE_OUTPUTS, PAST_K, PAST_V, transformer_outputs
from models.contract import INPUT_IDS as INPUT_NAME
from models.gpt import GPT

PARITY_TOLERANCE = 1e-4


class _Named(torch.nn.Module):
    """The model as the exporter sees it: a tuple of outputs in the contract's order."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model
        self.names = output_names(model)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.outputs(input_ids)
        return tuple(out[n] for n in self.names)


class _Decode(torch.nn.Module):
    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, input_ids, past_k, past_v):
        return self.model.decode(input_ids, past_k, past_v)


def output_names(model: GPT) -> tuple[str, ...]:
    """The full graph's outputs for ``model``, in order (models/contract.py)."""
    return transformer_outputs(model.config.to_dict())


def export_onnx(model: GPT, path: str | Path) -> Path:
    """Export ``model`` to one self-contained ``.onnx`` file (no external-data side file).

    Batch and sequence length are dynamic: T from 1 token up to the block size.
    """
    model = model.eval()
    example = torch.zeros((1, min(8, model.config.block_size)), dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("T", min=1, max=model.config.block_size)
    return _export(
        _Named(model),
        (example,),
        path,
        [INPUT_NAME],
        list(output_names(model)),
        {INPUT_NAME: {0: batch, 1: seq}},
    )


def export_decode(model: GPT, path: str | Path) -> Path:
    """Export ``model.decode``: one new token (batch, 1) and a cache of 1 <= P < block size
    positions in; logits (batch, 1, vocab) and the cache of P + 1 positions out."""
    model = model.eval()
    c = model.config
    if c.block_size < 3:
        raise ValueError("the decode graph needs a block size of at least 3")
    P = min(4, c.block_size - 1)  # an example past length away from 0 and 1 (not specialised)
    # batch 2 in the example, or the exporter specialises the batch axis to 1
    past = torch.zeros((2, c.n_layer, c.kv_heads, P, c.head_dim))
    batch = torch.export.Dim("batch", min=1, max=1024)
    past_len = torch.export.Dim("P", min=1, max=c.block_size - 1)
    cache_axes = {0: batch, 3: past_len}
    return _export(
        _Decode(model),
        (torch.zeros((2, 1), dtype=torch.long), past, past.clone()),
        path,
        list(DECODE_INPUTS),
        list(DECODE_OUTPUTS),
        {INPUT_NAME: {0: batch}, PAST_K: cache_axes, PAST_V: cache_axes},
    )


def _export(module, example, path, input_names, output_names, dynamic_shapes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            example,
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
        )
    # Write next to the target, then rename: a crash never leaves a half-written model.
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        program.save(tmp, external_data=False)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the file is served to readers
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class _quiet_exporter:
    """The exporter logs a warning per missing torchvision op; none of them concern us."""

    def __enter__(self):
        self._logger = logging.getLogger("torch.onnx")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)


def parity_lengths(block_size: int) -> list[int]:
    """The sequence lengths the parity check covers: 1 token, a middle length, the block size."""
    return sorted({1, max(1, block_size // 2), block_size})


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b|, where matching infinities (the masked scores' -inf) count as equal."""
    same_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
    if np.any(np.isinf(a) != np.isinf(b)) or np.any(np.isnan(a) != np.isnan(b)):
        return float("inf")
    with np.errstate(invalid="ignore"):  # inf - inf where both are -inf: masked out below
        diff = np.abs(np.where(same_inf, 0.0, a.astype(np.float64) - b.astype(np.float64)))
    return float(np.nanmax(diff)) if diff.size else 0.0


def parity(model: GPT, onnx_path: str | Path, seed: int = 0) -> dict[str, float]:
    """Torch vs ONNX Runtime on random inputs at T = 1, middle, block size.

    Returns the worst max |difference| for each output over those lengths; the dtypes must
    match too (float32, and int64 for a mixture of experts' ``experts``).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = output_names(model)
    gen = torch.Generator().manual_seed(seed)
    worst = dict.fromkeys(names, 0.0)
    model = model.eval()
    for T in parity_lengths(model.config.block_size):
        ids = torch.randint(model.config.vocab_size, (2, T), generator=gen)
        with torch.no_grad():
            expected = model.outputs(ids)
        got = session.run(list(names), {INPUT_NAME: ids.numpy()})
        for name, g in zip(names, got, strict=True):
            e = expected[name].numpy()
            if e.shape != g.shape or e.dtype != g.dtype:
                raise AssertionError(
                    f"{name}: torch {e.dtype} {e.shape} != ONNX {g.dtype} {g.shape}"
                )
            # an integer output (the chosen experts) must be equal: one id off is >= 1
            worst[name] = max(worst[name], max_abs_diff(e, g))
    return worst


def decode_parity(
    full_path: str | Path, decode_path: str | Path, vocab_size: int, T: int, seed: int = 0
) -> tuple[float, int]:
    """Decode ``T`` random tokens one at a time in ONNX Runtime (the full graph for the first,
    then the decode graph fed its own cache). Returns the worst max |difference| from the full
    graph's logits at every position, and the cache's bytes per token of one sequence,
    measured from the last step's ``present_k`` and ``present_v``."""
    import onnxruntime as ort

    cpu = ["CPUExecutionProvider"]
    full = ort.InferenceSession(str(full_path), providers=cpu)
    step = ort.InferenceSession(str(decode_path), providers=cpu)
    gen = np.random.default_rng(seed)
    ids = gen.integers(vocab_size, size=(2, T), dtype=np.int64)
    want = full.run(["logits"], {INPUT_NAME: ids})[0]
    logits, k, v = full.run(["logits", "k", "v"], {INPUT_NAME: ids[:, :1]})
    worst = max_abs_diff(logits[:, 0], want[:, 0])
    for t in range(1, T):
        logits, k, v = step.run(
            list(DECODE_OUTPUTS), {INPUT_NAME: ids[:, t : t + 1], PAST_K: k, PAST_V: v}
        )
        worst = max(worst, max_abs_diff(logits[:, 0], want[:, t]))
    batch, positions = k.shape[0], k.shape[3]
    return worst, (k.nbytes + v.nbytes) // (batch * positions)


def check_parity(errors: dict[str, float], tolerance: float = PARITY_TOLERANCE) -> None:
    """Raise if any output differs by more than ``tolerance``."""
    bad = {k: v for k, v in errors.items() if not v <= tolerance}
    if bad:
        raise AssertionError(f"ONNX parity failed (tolerance {tolerance}): {bad}")
