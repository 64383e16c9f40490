"""torch -> ONNX with every attention stage as a named output, and the parity check."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from models.contract import INPUT_IDS as INPUT_NAME
from models.contract import TRANSFORMER_OUTPUTS as OUTPUT_NAMES
from models.gpt import GPT

PARITY_TOLERANCE = 1e-4


def export_onnx(model: GPT, path: str | Path) -> Path:
    """Export ``model`` to one self-contained ``.onnx`` file (no external-data side file).

    Batch and sequence length are dynamic: T from 1 token up to the block size.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros((1, min(8, model.config.block_size)), dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("T", min=1, max=model.config.block_size)
    with warnings.catch_warnings(), _quiet_exporter():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={INPUT_NAME: {0: batch, 1: seq}},
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

    Returns the worst max |difference| for each output over those lengths.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = dict.fromkeys(OUTPUT_NAMES, 0.0)
    model = model.eval()
    for T in parity_lengths(model.config.block_size):
        ids = torch.randint(model.config.vocab_size, (2, T), generator=gen)
        with torch.no_grad():
            expected = [t.numpy() for t in model(ids)]
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: ids.numpy()})
        for name, e, g in zip(OUTPUT_NAMES, expected, got, strict=True):
            if e.shape != g.shape:
                raise AssertionError(f"{name}: torch shape {e.shape} != ONNX shape {g.shape}")
            worst[name] = max(worst[name], max_abs_diff(e, g))
    return worst


def check_parity(errors: dict[str, float], tolerance: float = PARITY_TOLERANCE) -> None:
    """Raise if any output differs by more than ``tolerance``."""
    bad = {k: v for k, v in errors.items() if not v <= tolerance}
    if bad:
        raise AssertionError(f"ONNX parity failed (tolerance {tolerance}): {bad}")
