"""``python -m models.build``: corpus -> tokenizer -> train -> export -> manifest.

Each step is skipped when its output is up to date (same inputs, file present and intact);
``--force`` redoes everything. ``--quick`` builds a tiny model in seconds (for tests), into
``build/quick`` unless ``--out`` says otherwise, so it never replaces the teaching model.
``--from-hf DIR --name NAME`` imports a local Hugging Face GPT-2 checkpoint instead of training.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from tqdm.auto import tqdm

from models import corpus as corpus_mod
from models.bpe import DEFAULT_PATTERN, Tokenizer
from models.bpe import train as train_bpe
from models.checkpoint import save_weights
from models.export import check_parity, export_onnx, parity
from models.gpt import GPT, GPTConfig
from models.lowp import write_variants
from models.manifest import (
    DEFAULT_MODEL,
    MANIFEST_NAME,
    STATIC_DIR,
    find_entry,
    read_manifest,
    write_manifest,
)
from models.runtime import sha256_file
from models.train import TrainConfig, train

DEFAULT_NAME = DEFAULT_MODEL
DEFAULT_VOCAB = 1024
QUICK_DIR = Path(__file__).resolve().parent.parent / "build" / "quick"
PROMPTS = ("Return the", "The default value is", "This module provides", "If the file")
SAMPLE_TOKENS = 24


@dataclass
class Plan:
    """Everything that determines the artifacts; its hash decides what is up to date."""

    name: str
    vocab_size: int
    model: GPTConfig
    training: TrainConfig
    corpus_chars: int | None = None  # --quick trains on a prefix of the corpus

    def tokenizer_key(self, corpus_sha: str) -> str:
        return _hash(
            {
                "corpus": corpus_sha,
                "chars": self.corpus_chars,
                "vocab": self.vocab_size,
                "pattern": DEFAULT_PATTERN,
            }
        )

    def model_key(self, corpus_sha: str) -> str:
        return _hash(
            {
                "tokenizer": self.tokenizer_key(corpus_sha),
                "model": self.model.to_dict(),
                "training": self.training.to_dict(),
                "torch": torch.__version__,
            }
        )


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def default_plan(name: str = DEFAULT_NAME, vocab: int = DEFAULT_VOCAB, steps: int | None = None):
    training = TrainConfig() if steps is None else TrainConfig(steps=steps)
    return Plan(name, vocab, GPTConfig(vocab_size=vocab + 1), training)


def quick_plan(name: str = "quick-gpt") -> Plan:
    """A model that trains in a couple of seconds: shapes are real, quality is not."""
    model = GPTConfig(vocab_size=301, block_size=32, n_layer=2, n_head=2, n_embd=32)
    training = TrainConfig(steps=30, batch_size=8, warmup_steps=5)
    return Plan(name, 300, model, training, corpus_chars=60_000)


def _up_to_date(out: Path, entry: dict | None, key_field: str, key: str) -> bool:
    if not entry or entry.get("build", {}).get(key_field) != key:
        return False
    path = out / entry["file"]
    return path.is_file() and sha256_file(path) == entry.get("sha256")


# -- steps ----------------------------------------------------------------------------------------
def build_tokenizer(text: str, plan: Plan, out: Path, key: str, old: dict | None) -> Tokenizer:
    tok_name = f"{plan.name}-bpe"
    if old and old.get("build", {}).get("tokenizer_key") == key:
        try:
            tok = Tokenizer.load(out, tok_name)
            print(f"[tokenizer] up to date: {tok_name} ({tok.n_ordinary} tokens)")
            return tok
        except (OSError, ValueError):
            pass
    bar = tqdm(total=plan.vocab_size - 256, desc="tokenizer", unit="merge")

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    merges = train_bpe(text, plan.vocab_size, progress=progress)
    bar.close()
    tok = Tokenizer.from_merges(merges)
    tok.save(out, tok_name)
    return tok


def encode_corpus(tok: Tokenizer, text: str, desc: str) -> np.ndarray:
    """Encode ``text`` in one call, exactly as the dashboard would encode it."""
    t0 = time.perf_counter()
    ids = np.asarray(tok.encode(text), dtype=np.int32)
    print(f"[{desc}] {len(ids):,} tokens in {time.perf_counter() - t0:.1f}s")
    return ids


def greedy_samples(model: GPT, tok: Tokenizer, prompts=PROMPTS, n: int = SAMPLE_TOKENS):
    samples = []
    for prompt in prompts:
        ids = torch.tensor([tok.encode(prompt)], dtype=torch.long)
        out = model.generate(ids, n)[0, ids.shape[1] :].tolist()
        samples.append({"prompt": prompt, "continuation": tok.decode(out)})
    return samples


def export_and_record(model: GPT, tok: Tokenizer, out: Path, name: str, extra: dict) -> dict:
    """Export ``model``, check parity, write its manifest entry. Returns the entry."""
    path = out / f"{name}.onnx"
    t0 = time.perf_counter()
    print(f"[export] {path.name} ...", flush=True)
    export_onnx(model, path)
    errors = parity(model, path)
    check_parity(errors)
    weights = save_weights(model, out / f"{name}.safetensors")
    variants = write_variants(out, {"file": path.name})  # fp16 and emulated bf16 graphs
    print(
        f"[export] {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f}s; "
        f"parity max|torch-ort| = {max(errors.values()):.2e}"
    )
    entry = {
        "name": name,
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "weights_file": weights.name,
        "config": model.config.to_dict(),
        "n_params": model.num_params(),
        "tokenizer": {
            "name": f"{name}-bpe",
            "rank_file": f"{name}-bpe.tiktoken",
            "meta_file": f"{name}-bpe.json",
            "n_ordinary": tok.n_ordinary,
            "pattern": tok.pattern,
            "special_tokens": tok.special_tokens,
        },
        "parity_max_abs_error": errors,
        "variants": variants,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        **extra,
    }
    write_manifest(out, entry)
    return entry


def build(plan: Plan, out: Path, corpus_path: str | None = None, force: bool = False) -> dict:
    """Build ``plan`` into ``out``; returns the manifest entry."""
    out.mkdir(parents=True, exist_ok=True)
    print(f"[corpus] reading {corpus_path or 'the standard library'} ...")
    corpus = corpus_mod.load(corpus_path)
    text = corpus.text[: plan.corpus_chars] if plan.corpus_chars else corpus.text
    train_text, val_text = corpus_mod.split(text)
    print(f"[corpus] {corpus.source}: {len(text.encode()):,} bytes (sha256 {corpus.sha256[:12]})")

    old = None if force else find_entry(read_manifest(out), plan.name)
    model_key = plan.model_key(corpus.sha256)
    if _up_to_date(out, old, "model_key", model_key):
        print(f"[build] {plan.name} is up to date ({out / old['file']}); --force rebuilds it")
        return old

    tok_key = plan.tokenizer_key(corpus.sha256)
    tok = build_tokenizer(train_text, plan, out, tok_key, old)
    train_ids = encode_corpus(tok, train_text, "encode train")
    val_ids = encode_corpus(tok, val_text, "encode val")
    print(
        f"[tokenizer] {len(train_ids):,} train / {len(val_ids):,} val tokens, "
        f"{len(train_text.encode()) / len(train_ids):.2f} bytes per token"
    )
    model_config = plan.model
    if tok.vocab_size != model_config.vocab_size:
        # A small corpus can run out of pairs before the planned vocabulary is reached.
        print(
            f"[tokenizer] {tok.n_ordinary} tokens learned (planned {plan.vocab_size}): "
            f"the model's vocabulary follows the tokenizer"
        )
        model_config = dataclasses.replace(model_config, vocab_size=tok.vocab_size)

    result = train(model_config, train_ids, val_ids, plan.training)
    print(
        f"[train] {result.seconds:.0f}s: train {result.train_loss:.3f}, val {result.val_loss:.3f}"
        f" nats; unigram baseline {result.unigram_entropy:.3f} "
        f"({100 * result.improvement_over_unigram:.1f}% below)"
    )
    samples = greedy_samples(result.model, tok)
    for s in samples:
        print(f"[sample] {s['prompt']!r} -> {s['continuation']!r}")
    extra = {
        "corpus": {
            "source": corpus.source,
            "sha256": corpus.sha256,
            "bytes": len(text.encode()),
            "train_tokens": int(len(train_ids)),
            "val_tokens": int(len(val_ids)),
        },
        "training": {
            **plan.training.to_dict(),
            "train_loss": round(result.train_loss, 4),
            "val_loss": round(result.val_loss, 4),
            "unigram_entropy": round(result.unigram_entropy, 4),
            "improvement_over_unigram": round(result.improvement_over_unigram, 4),
            "seconds": round(result.seconds, 1),
        },
        "samples": samples,
        "build": {"tokenizer_key": tok_key, "model_key": model_key},
    }
    return export_and_record(result.model, tok, out, plan.name, extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m models.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, help="output folder (default: static/)")
    p.add_argument("--name", help=f"model name in the manifest (default: {DEFAULT_NAME})")
    p.add_argument("--corpus", help="train on this UTF-8 text file instead of the stdlib")
    p.add_argument("--vocab", type=int, default=DEFAULT_VOCAB, help="BPE vocabulary size")
    p.add_argument("--steps", type=int, help="training steps (default: 1000)")
    p.add_argument("--quick", action="store_true", help="tiny model in seconds, for tests")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--from-hf", metavar="DIR", help="import a local Hugging Face GPT-2 checkpoint")
    args = p.parse_args(argv)

    try:
        if args.from_hf:
            from models.hf import import_checkpoint

            if not args.name:
                p.error("--from-hf needs --name NAME")
            out = args.out or STATIC_DIR
            out.mkdir(parents=True, exist_ok=True)
            model, tok, info = import_checkpoint(args.from_hf)
            tok.save(out, f"{args.name}-bpe")
            entry = export_and_record(model, tok, out, args.name, {"source": info})
        else:
            if args.quick:
                plan = quick_plan(args.name or "quick-gpt")
            else:
                plan = default_plan(args.name or DEFAULT_NAME, args.vocab, args.steps)
            out = args.out or (QUICK_DIR if args.quick else STATIC_DIR)
            torch.set_num_threads(plan.training.threads)
            entry = build(plan, out, args.corpus, args.force)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[build] {entry['name']} -> {out / entry['file']} (manifest: {out / MANIFEST_NAME})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
