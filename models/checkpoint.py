"""Trained weights as safetensors, next to the ONNX file.

The ONNX graph folds and renames weights, so the torch weights are kept too: the tests check
the committed ONNX file against torch with exactly these weights, and the precision lesson
reads them (safetensors needs no torch to read).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file

from models.gpt import GPT, GPTConfig

_TIED = "lm_head.weight"  # the same tensor as wte.weight; safetensors stores shared tensors once


def save_weights(model: GPT, path: str | Path) -> Path:
    path = Path(path)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != _TIED}
    save_file(state, str(path))
    path.chmod(0o644)  # safetensors writes 0600; static/ is read by the server and by people
    return path


def load_model(path: str | Path, config: GPTConfig | dict) -> GPT:
    """A GPT with the weights in ``path``; every parameter must be present."""
    config = GPTConfig(**config) if isinstance(config, dict) else config
    model = GPT(config)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if [k for k in missing if k != _TIED] or unexpected:
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected}")
    return model.eval()
