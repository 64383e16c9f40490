"""The build's translator step: train anatomy-translator, judge it, export it, record it.

Skipped when the manifest's ``translator`` entry is from the same settings and its files are
intact. The entry says how to call the graphs: their input and output names, both
vocabularies (token -> id), the start, end and padding tokens.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import onnxruntime
import torch
from safetensors.torch import save_file

from models import numbers
from models.export import check_parity
from models.manifest import read_manifest, write_section
from models.runtime import sha256_file
from models.translation import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    MANIFEST_KEY,
)
from models.translator import Translator, TranslatorConfig
from models.translator_export import (
    export_decoder,
    export_encoder,
    onnx_parity,
    reference_parity,
)
from models.translator_train import TranslatorTraining, train

NAME = "anatomy-translator"
QUICK_NAME = "quick-translator"
FORMAT = 1  # what the entry and the graphs hold; a change rebuilds


def plan(quick: bool) -> tuple[str, TranslatorConfig, TranslatorTraining]:
    """The teaching translator, or a tiny one for tests (same shapes of everything)."""
    if quick:
        config = TranslatorConfig(d_model=32, d_ff=64, n_head=2)
        return QUICK_NAME, config, TranslatorTraining(steps=40, batch_size=64, held_out=200)
    return NAME, TranslatorConfig(), TranslatorTraining()


def _key(config: TranslatorConfig, training: TranslatorTraining) -> str:
    blob = {
        "format": FORMAT,
        "model": config.to_dict(),
        "training": training.to_dict(),
        "torch": torch.__version__,
        "task": [numbers.LIMIT, numbers.TARGET_TOKENS, numbers.SOURCE_TOKENS],
        "data": numbers.DATA_FORMAT,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _intact(out: Path, entry: dict) -> bool:
    files = [entry.get("weights_file"), entry.get("encoder", {}).get("file")]
    files.append(entry.get("decoder", {}).get("file"))
    shas = [entry.get("weights_sha256"), entry.get("encoder", {}).get("sha256")]
    shas.append(entry.get("decoder", {}).get("sha256"))
    return all(
        f and s and (out / f).is_file() and sha256_file(out / f) == s
        for f, s in zip(files, shas, strict=True)
    )


def _names(inputs: tuple[str, ...], outputs: tuple[str, ...]) -> dict:
    return {"inputs": list(inputs), "outputs": list(outputs)}


def build_translator(out: Path, quick: bool = False, force: bool = False) -> dict:
    """Build the translator into ``out`` (skipped when up to date); returns its entry."""
    name, config, training = plan(quick)
    key = _key(config, training)
    old = read_manifest(out).get(MANIFEST_KEY)
    if not force and old and old.get("build", {}).get("key") == key and _intact(out, old):
        print(f"[translator] {old['name']} is up to date; --force rebuilds it")
        return old
    torch.set_num_threads(training.threads)
    weights = out / f"{name}.safetensors"
    print(f"[translator] {name}: {Translator(config).num_params():,} parameters")
    result = train(config, training)
    model = result.model.eval()
    record = {
        **training.to_dict(),
        "train_loss": round(sum(result.losses[-50:]) / len(result.losses[-50:]), 4),
        "held_out_accuracy": result.accuracy,
        "held_out_wrong": result.wrong,
        "held_out_round": training.held_out // 4,  # train() holds out this many round ones
        "held_out_round_accuracy": result.round_accuracy,
        "held_out_round_wrong": result.round_wrong,
        "seconds": round(result.seconds, 1),
    }
    print(
        f"[translator] {result.seconds:.0f}s: train loss {record['train_loss']:.4f}, "
        f"{100 * result.accuracy:.2f}% exact on {training.held_out:,} held-out numbers, "
        f"{100 * result.round_accuracy:.2f}% on {training.held_out // 4} round ones"
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    weights.chmod(0o644)  # safetensors writes 0600; static/ is served
    t0 = time.perf_counter()
    files = {}
    for part, export in (("encoder", export_encoder), ("decoder", export_decoder)):
        path = export(model, out / f"{name}-{part}.onnx")
        files[part] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    errors = onnx_parity(model, out / files["encoder"]["file"], out / files["decoder"]["file"])
    check_parity(errors)
    ref = reference_parity(model)
    check_parity({"nn.Transformer logits": ref})
    print(
        f"[translator] exported in {time.perf_counter() - t0:.0f}s; max|torch-ort| = "
        f"{max(errors.values()):.2e}, max|ours-nn.Transformer| = {ref:.2e}"
    )
    entry = {
        "name": name,
        "task": (
            f"whole numbers 0 to {numbers.LIMIT:,} in digits -> American English words "
            "(lower case, no 'and', tens and units hyphenated)"
        ),
        "encoder": {**files["encoder"], **_names(ENCODER_INPUTS, ENCODER_OUTPUTS)},
        "decoder": {**files["decoder"], **_names(DECODER_INPUTS, DECODER_OUTPUTS)},
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
        "config": config.to_dict(),
        "n_params": model.num_params(),
        "source_vocab": numbers.SOURCE_IDS,
        "target_vocab": numbers.TARGET_IDS,
        "start_token": numbers.START,
        "end_token": numbers.END,
        "pad_token": numbers.PAD,
        "training": record,
        "parity_max_abs_error": errors,
        "reference_max_abs_error": ref,  # our layers vs torch.nn.Transformer, same weights
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "build": {"key": key},
    }
    write_section(out, MANIFEST_KEY, entry)
    return entry
