"""Bring your own model: a local Hugging Face checkpoint folder, by its ``model_type``.

GPT-2 goes to :mod:`models.hf`, Llama, Mistral and Qwen2 to :mod:`models.llama_hf` (which
shares hf's file and tokenizer helpers, so the choice is made here, above both); anything
else is refused by name. ``python -m models.build --from-hf DIR --name NAME`` calls this.
"""

from __future__ import annotations

from pathlib import Path

from models.bpe import Tokenizer
from models.gpt import GPT
from models.hf import CONFIG_FILE, import_gpt2_checkpoint, read_json
from models.llama_hf import MODEL_TYPES, import_llama_checkpoint

SUPPORTED: tuple[str, ...] = ("gpt2", *MODEL_TYPES)


def import_checkpoint(directory: str | Path) -> tuple[GPT, Tokenizer, dict]:
    """``(model, tokenizer, provenance)`` for the checkpoint in ``directory``.

    The model is in eval mode with the checkpoint's weights (as float32); the provenance names
    files by their name inside the folder. Raises FileNotFoundError for a missing folder or
    file and ValueError for anything present but unusable, each naming the file or setting;
    a model type other than those in ``SUPPORTED`` is a ValueError listing them.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"Hugging Face checkpoint folder not found: {folder}")
    raw = read_json(folder / CONFIG_FILE)
    # not a JSON object: the GPT-2 reader says so, naming the file
    model_type = raw.get("model_type") if isinstance(raw, dict) else "gpt2"
    if model_type == "gpt2":
        return import_gpt2_checkpoint(folder)
    if model_type in MODEL_TYPES:
        return import_llama_checkpoint(folder)
    raise ValueError(
        f"{CONFIG_FILE}: model_type {model_type!r} is not supported; --from-hf imports "
        f"{', '.join(SUPPORTED)}"
    )
