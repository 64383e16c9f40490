"""``python -m models.build``: corpus -> tokenizer -> train -> measure -> export -> manifest.

Three models by default, trained the same way on the same data: anatomy-gpt (GPT-2's
recipe), anatomy-llama (LLaMA's: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases),
with a parameter count within a few per cent of the GPT's, and anatomy-moe (the LLaMA recipe
with Mixtral's mixture of experts in every MLP: 4 experts of half the LLaMA width, top-2
routing, a load-balancing loss). Beside them anatomy-translator, an encoder-decoder that
writes numbers in words (models/translator_build.py). ``--recipe gpt``, ``llama``, ``moe`` or
``translator`` builds one.

Each step is skipped when its output is up to date (same inputs, file present and intact): a
change to the export alone re-exports the saved weights without retraining; ``--force`` redoes
everything. ``--quick`` builds tiny models in seconds (for tests), into ``build/quick`` unless
``--out`` says otherwise, so it never replaces the teaching models. ``--from-hf DIR --name NAME``
imports a local Hugging Face checkpoint instead of training.
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
from models import run_record
from models.bpe import DEFAULT_PATTERN, Tokenizer
from models.bpe import train as train_bpe
from models.checkpoint import load_model, save_weights
from models.contract import transformer_outputs
from models.export import check_parity, decode_parity, export_decode, export_onnx, parity
from models.gpt import GPT, GPTConfig
from models.lowp import write_variants
from models.manifest import (
    DEFAULT_MODEL,
    MANIFEST_NAME,
    STATIC_DIR,
    atomic_write,
    find_entry,
    read_manifest,
    write_experiment,
    write_manifest,
)
from models.runtime import sha256_file
from models.train import TrainConfig, loss_by_position, train

DEFAULT_NAME = DEFAULT_MODEL
RECIPES = ("gpt", "llama", "moe")
DEFAULT_NAMES = {"gpt": DEFAULT_NAME, "llama": "anatomy-llama", "moe": "anatomy-moe"}
QUICK_NAMES = {"gpt": "quick-gpt", "llama": "quick-llama", "moe": "quick-moe"}
DEFAULT_VOCAB = 1024
# What the exported files hold; a change here re-exports every model from its saved weights.
EXPORT_FORMAT = 2  # 1: four outputs; 2: the inside of every block, and the decode graph
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
                "model": config_key(self.model),
                "training": self.training.to_dict(),
                "torch": torch.__version__,
                "record": run_record.RECORD_FORMAT,  # what the run keeps of itself
            }
        )


# Config fields added after models were trained with them at these values: left out of the
# key at that value, so adding a field retrains nothing.
LATER_FIELDS = {"norm_position": "pre"}
# The mixture of experts' settings, which a dense MLP never reads: left out of a dense model's
# key (they came after anatomy-gpt and anatomy-llama, and change nothing in them).
MOE_FIELDS = ("n_expert", "expert_top_k", "router_aux_loss_coef")


def config_key(config: GPTConfig) -> dict:
    """What of ``config`` decides the trained weights (the model key's part)."""
    d = config.to_dict()
    if config.mlp != "moe":
        d = {k: v for k, v in d.items() if k not in MOE_FIELDS}
    return {k: v for k, v in d.items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def llama_recipe(gpt: GPTConfig, n_kv_head: int) -> GPTConfig:
    """The LLaMA recipe at ``gpt``'s size: RMSNorm, RoPE (base 10000, half-split), SwiGLU,
    ``n_kv_head`` key/value heads, no biases, tied embeddings. The SwiGLU width is the multiple
    of 32 that brings the parameter count nearest to ``gpt``'s (LLaMA's own rule, 2/3 of 4·C,
    would leave it smaller: grouped-query attention has fewer key/value weights)."""
    base = dataclasses.replace(
        gpt,
        bias=False,
        norm="rmsnorm",
        positions="rope",
        rope_base=10000.0,
        mlp="swiglu",
        n_kv_head=n_kv_head,
    )
    target = count_params(gpt)
    widths = range(base.multiple_of, 8 * gpt.n_embd + 1, base.multiple_of)
    best = min(
        widths,
        key=lambda w: abs(count_params(dataclasses.replace(base, mlp_hidden=w)) - target),
    )
    return dataclasses.replace(base, mlp_hidden=best)


def moe_recipe(llama: GPTConfig, n_expert: int = 4, top_k: int = 2) -> GPTConfig:
    """The LLaMA recipe ``llama`` with Mixtral's mixture of experts in every MLP: ``n_expert``
    SwiGLU experts, each ``top_k``-th of the LLaMA width, so the ``top_k`` experts a token
    is sent to hold as many weights as ``llama``'s MLP: about the same parameters per token,
    n_expert / top_k times the MLP parameters in all."""
    return dataclasses.replace(
        llama, mlp="moe", mlp_hidden=llama.hidden // top_k, n_expert=n_expert, expert_top_k=top_k
    )


def count_params(config: GPTConfig) -> int:
    """Parameters of a model of ``config``, without allocating its weights."""
    with torch.device("meta"):
        return GPT(config).num_params()


def count_active_params(config: GPTConfig) -> int:
    """Parameters one token is computed with (``GPT.num_active_params``), without weights."""
    with torch.device("meta"):
        return GPT(config).num_active_params()


def default_plan(
    name: str = DEFAULT_NAME, vocab: int = DEFAULT_VOCAB, steps: int | None = None, recipe="gpt"
) -> Plan:
    """The teaching models: the same size, data, steps and seed; ``recipe`` gpt, llama or moe
    (anatomy-llama's recipe with 4 experts of half its width, top-2)."""
    training = TrainConfig() if steps is None else TrainConfig(steps=steps)
    model = GPTConfig(vocab_size=vocab + 1)
    if recipe in ("llama", "moe"):
        model = llama_recipe(model, n_kv_head=2)
    if recipe == "moe":
        model = moe_recipe(model)
    return Plan(name, vocab, model, training)


def quick_plan(name: str = "quick-gpt", recipe: str = "gpt") -> Plan:
    """A model that trains in a couple of seconds: shapes are real, quality is not."""
    model = GPTConfig(vocab_size=301, block_size=32, n_layer=2, n_head=2, n_embd=32)
    if recipe in ("llama", "moe"):  # four query heads sharing two key/value heads
        model = llama_recipe(dataclasses.replace(model, n_head=4), n_kv_head=2)
    if recipe == "moe":
        model = moe_recipe(model)
    training = TrainConfig(steps=30, batch_size=8, warmup_steps=5)
    return Plan(name, 300, model, training, corpus_chars=60_000)


def export_key() -> str:
    return _hash({"format": EXPORT_FORMAT, "torch": torch.__version__})


def _up_to_date(out: Path, entry: dict | None, key_field: str, key: str) -> bool:
    if not entry or entry.get("build", {}).get(key_field) != key:
        return False
    path = out / entry["file"]
    return path.is_file() and sha256_file(path) == entry.get("sha256")


# -- steps ----------------------------------------------------------------------------------------
def build_tokenizer(
    text: str, plan: Plan, out: Path, key: str, manifest: dict, force: bool = False
) -> Tokenizer:
    """The plan's tokenizer: a copy of any model's in ``manifest`` built from the same corpus
    and settings (the two recipes share one), else trained. Saved as ``<name>-bpe``."""
    tok_name = f"{plan.name}-bpe"
    for entry in [] if force else manifest["models"]:
        if entry.get("build", {}).get("tokenizer_key") != key:
            continue
        try:
            tok = Tokenizer.load(out, entry["tokenizer"]["name"])
        except (OSError, ValueError, KeyError):
            continue
        print(f"[tokenizer] up to date: {entry['tokenizer']['name']} ({tok.n_ordinary} tokens)")
        if entry["tokenizer"]["name"] != tok_name:
            tok.save(out, tok_name)
        return tok
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
    """Export ``model`` (full and decode graphs), check parity, write its manifest entry.
    Returns the entry."""
    path = out / f"{name}.onnx"
    t0 = time.perf_counter()
    print(f"[export] {path.name} ...", flush=True)
    export_onnx(model, path)
    errors = parity(model, path)
    check_parity(errors)
    decode = export_and_check_decode(model, path, out / f"{name}-decode.onnx")
    weights = save_weights(model, out / f"{name}.safetensors")
    variants = write_variants(out, {"file": path.name})  # fp16 and emulated bf16 graphs
    print(
        f"[export] {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f}s; "
        f"parity max|torch-ort| = {max(errors.values()):.2e}"
    )
    extra = dict(extra)
    build_keys = {**extra.pop("build", {}), "export_key": export_key()}
    entry = {
        "name": name,
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
        "config": model.config.to_dict(),
        "n_params": model.num_params(),
        "n_active_params": model.num_active_params(),  # per token: < n_params for experts
        "outputs": list(transformer_outputs(model.config.to_dict())),
        "tokenizer": {
            "name": f"{name}-bpe",
            "rank_file": f"{name}-bpe.tiktoken",
            "meta_file": f"{name}-bpe.json",
            "n_ordinary": tok.n_ordinary,
            "pattern": tok.pattern,
            "special_tokens": tok.special_tokens,
        },
        "parity_max_abs_error": errors,
        "decode": decode,
        "variants": variants,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        **extra,
        "build": build_keys,
    }
    write_manifest(out, entry)
    return entry


def export_and_check_decode(model: GPT, full: Path, path: Path) -> dict:
    """The decode graph beside the full one, checked by decoding a whole block one token at a
    time against the full graph; its manifest record."""
    export_decode(model, path)
    T = model.config.block_size
    error, cache_bytes = decode_parity(full, path, model.config.vocab_size, T)
    check_parity({"decode logits": error})
    print(f"[export] {path.name}: {T} steps, max|decode-full| = {error:.2e}")
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "parity_max_abs_error": error,  # logits, every position of a full block
        "parity_steps": T,
        "cache_bytes_per_token": cache_bytes,  # measured: present_k + present_v per position
    }


def measure_positions(model: GPT, val_ids: np.ndarray) -> dict:
    """Loss per position on held-out text: inside the block for every model, and out to twice
    the block for rotary positions (which have no last position), on the same windows."""
    block = model.config.block_size
    reach = 2 * block if model.config.positions == "rope" else block
    t0 = time.perf_counter()
    result = loss_by_position(model, val_ids, reach, stride=2 * block + 1)
    loss = result.pop("loss")
    inside, past = loss[:block], loss[block:]
    summary = {
        **result,
        "block_size": block,
        "loss": [round(x, 4) for x in loss],
        "mean_inside_block": round(float(np.mean(inside)), 4),
        "mean_past_block": round(float(np.mean(past)), 4) if past else None,
    }
    print(
        f"[measure] loss per position over {result['windows']} windows of {reach}: "
        f"{summary['mean_inside_block']:.3f} nats inside the block"
        + (f", {summary['mean_past_block']:.3f} past it" if past else "")
        + f" ({time.perf_counter() - t0:.0f}s)"
    )
    return summary


def _intact(out: Path, entry: dict) -> bool:
    """Whether ``entry`` was written by this exporter and its other files are still its own
    (the ONNX file itself is checked by ``_up_to_date``)."""
    if entry.get("build", {}).get("export_key") != export_key():
        return False
    files = [(entry.get("weights_file"), entry.get("weights_sha256"))]
    decode = entry.get("decode") or {}
    files.append((decode.get("file"), decode.get("sha256")))
    if "run" in entry:  # a model the build trained: its run's record and gradients
        run = entry["run"]
        files += [
            (run.get("file"), run.get("sha256")),
            (run.get("grads_file"), run.get("grads_sha256")),
        ]
    return all(
        name and sha and (out / name).is_file() and sha256_file(out / name) == sha
        for name, sha in files
    )


def _trained(out: Path, old: dict | None, model_key: str) -> GPT | None:
    """The model ``old`` recorded, when its weights are from this very training and intact."""
    if not old or old.get("build", {}).get("model_key") != model_key:
        return None
    path = out / old.get("weights_file", "")
    if not path.is_file() or old.get("weights_sha256") not in (None, sha256_file(path)):
        return None
    try:
        return load_model(path, old["config"])
    except (OSError, ValueError, TypeError, RuntimeError):
        return None


def build(plan: Plan, out: Path, corpus_path: str | None = None, force: bool = False) -> dict:
    """Build ``plan`` into ``out``; returns the manifest entry."""
    out.mkdir(parents=True, exist_ok=True)
    print(f"[corpus] reading {corpus_path or 'the standard library'} ...")
    corpus = corpus_mod.load(corpus_path)
    text = corpus.text[: plan.corpus_chars] if plan.corpus_chars else corpus.text
    train_text, val_text = corpus_mod.split(text)
    print(f"[corpus] {corpus.source}: {len(text.encode()):,} bytes (sha256 {corpus.sha256[:12]})")

    manifest = read_manifest(out)
    old = None if force else find_entry(manifest, plan.name)
    model_key = plan.model_key(corpus.sha256)
    if _up_to_date(out, old, "model_key", model_key) and _intact(out, old):
        print(f"[build] {plan.name} is up to date ({out / old['file']}); --force rebuilds it")
        return old

    tok_key = plan.tokenizer_key(corpus.sha256)
    tok = build_tokenizer(train_text, plan, out, tok_key, manifest, force)
    val_ids = encode_corpus(tok, val_text, "encode val")
    model = None if force else _trained(out, old, model_key)
    if model is not None:  # only the export changed: the saved weights, re-exported
        print(f"[train] {plan.name}: the saved weights are from this training; re-exporting")
        kept = ("corpus", "training", "samples", "run")
        extra = {k: old[k] for k in kept if k in old}
    else:
        model, extra = train_model(plan, tok, train_text, val_ids, corpus, text, out)
    extra["positions"] = measure_positions(model, val_ids)
    extra["build"] = {"tokenizer_key": tok_key, "model_key": model_key}
    return export_and_record(model, tok, out, plan.name, extra)


def train_model(plan: Plan, tok: Tokenizer, train_text: str, val_ids, corpus, text: str, out: Path):
    """Train ``plan``'s model and write its run's record into ``out``; returns the model and
    its manifest fields (corpus, training, samples, run)."""
    train_ids = encode_corpus(tok, train_text, "encode train")
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

    n, active = count_params(model_config), count_active_params(model_config)
    per_token = f" ({active:,} per token)" if active != n else ""
    print(f"[train] {plan.name}: {n:,} parameters{per_token}")
    recording = run_record.recording_for(plan.training)
    result = train(model_config, train_ids, val_ids, plan.training, recording=recording)
    print(
        f"[train] {result.seconds:.0f}s: train {result.train_loss:.3f}, val {result.val_loss:.3f}"
        f" nats; unigram baseline {result.unigram_entropy:.3f} "
        f"({100 * result.improvement_over_unigram:.1f}% below)"
    )
    if result.routing is not None:
        shares = "; ".join(
            " ".join(f"{x:.2f}" for x in row) for row in result.routing["expert_share"]
        )
        print(
            f"[train] load balance {result.balance_loss:.4f} (last 50 steps), "
            f"{result.routing['balance_loss']:.4f} on val (even: "
            f"{model_config.expert_top_k}); experts' shares by layer: {shares}"
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
            **_routing_record(result, model_config),
        },
        "samples": samples,
        "run": run_record.write(out, plan.name, result, plan.training),
    }
    return result.model, extra


def _routing_record(result, config: GPTConfig) -> dict:
    """A mixture of experts' training fields: the load-balancing loss (the last 50 steps'
    mean, and on the validation split), its weight, and each expert's share of each layer's
    top-k choices on the validation split. Nothing for a dense model."""
    if result.routing is None:
        return {}
    return {
        "router_aux_loss_coef": config.router_aux_loss_coef,
        "balance_loss": round(result.balance_loss, 4),
        "val_balance_loss": round(result.routing["balance_loss"], 4),
        "expert_share": [[round(x, 4) for x in row] for row in result.routing["expert_share"]],
    }


NORM_POSITION_FILE = "norm-position.json"


def build_norm_position(out: Path, corpus_path: str | None, quick: bool, entry: dict) -> dict:
    """Pre-LN vs Post-LN (models/norm_position.py) on the corpus and tokenizer of ``entry``
    (a model just built); skipped when its record is up to date. Returns the summary."""
    from models import norm_position

    tok = Tokenizer.load(out, entry["tokenizer"]["name"])
    model, training = norm_position.default_setting(tok.vocab_size, quick)
    key = _hash(
        {
            "tokenizer": entry["build"]["tokenizer_key"],
            "model": config_key(model),
            "training": training.to_dict(),
            "torch": torch.__version__,
        }
    )
    old = read_manifest(out).get("experiments", {}).get("norm_position") or {}
    path = out / NORM_POSITION_FILE
    if old.get("key") == key and path.is_file() and sha256_file(path) == old.get("sha256"):
        print("[norm position] up to date")
        return old
    corpus = corpus_mod.load(corpus_path)
    text = corpus.text[: quick_plan().corpus_chars] if quick else corpus.text
    train_text, val_text = corpus_mod.split(text)
    train_ids = encode_corpus(tok, train_text, "encode train")
    val_ids = encode_corpus(tok, val_text, "encode val")
    record = norm_position.run(model, training, train_ids, val_ids)
    atomic_write(path, json.dumps(record, separators=(",", ":")) + "\n")
    summary = {
        "file": path.name,
        "sha256": sha256_file(path),
        "key": key,
        "val_loss": {p: r["val_loss"] for p, r in record["runs"].items()},
        "diverged": {p: r["diverged"] for p, r in record["runs"].items()},
    }
    write_experiment(out, "norm_position", summary)
    return summary


def plans(args) -> list[Plan]:
    """The plans the command line asks for: every recipe unless ``--recipe`` names one."""
    recipes = [args.recipe] if args.recipe else list(RECIPES)
    if args.name and len(recipes) > 1:
        raise ValueError(f"--name names one model: give --recipe ({', '.join(RECIPES)}) with it")
    names = QUICK_NAMES if args.quick else DEFAULT_NAMES
    return [
        quick_plan(args.name or names[r], r)
        if args.quick
        else default_plan(args.name or names[r], args.vocab, args.steps, r)
        for r in recipes
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m models.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, help="output folder (default: static/)")
    p.add_argument(
        "--recipe", choices=(*RECIPES, "translator"), help="build one model (default: all)"
    )
    p.add_argument("--name", help="model name in the manifest (with --recipe or --from-hf)")
    p.add_argument("--corpus", help="train on this UTF-8 text file instead of the stdlib")
    p.add_argument("--vocab", type=int, default=DEFAULT_VOCAB, help="BPE vocabulary size")
    p.add_argument("--steps", type=int, help="training steps (default: 1000)")
    p.add_argument("--quick", action="store_true", help="tiny models in seconds, for tests")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--from-hf", metavar="DIR", help="import a local Hugging Face checkpoint")
    args = p.parse_args(argv)

    try:
        if args.from_hf:
            from models.import_hf import import_checkpoint

            if not args.name:
                p.error("--from-hf needs --name NAME")
            out = args.out or STATIC_DIR
            out.mkdir(parents=True, exist_ok=True)
            model, tok, info = import_checkpoint(args.from_hf)
            tok.save(out, f"{args.name}-bpe")
            entries = [export_and_record(model, tok, out, args.name, {"source": info})]
        else:
            out = args.out or (QUICK_DIR if args.quick else STATIC_DIR)
            entries = []
            for plan in [] if args.recipe == "translator" else plans(args):
                torch.set_num_threads(plan.training.threads)
                entries.append(build(plan, out, args.corpus, args.force))
            if not args.recipe:  # the build's own measurements, beside the models
                build_norm_position(out, args.corpus, args.quick, entries[0])
            if args.recipe in (None, "translator"):  # an encoder-decoder of its own task
                from models.translator_build import build_translator

                build_translator(out, args.quick, args.force)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for entry in entries:
        print(f"[build] {entry['name']} -> {out / entry['file']} (manifest: {out / MANIFEST_NAME})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
