"""Generation with the KV cache vs recomputing the whole prefix, both in ONNX Runtime.

    python -m benchmarks.bench_kv_cache [--models anatomy-gpt,anatomy-llama] [--rounds 5]

Greedy decoding of a whole block (one prompt token, then block - 1 new ones), two ways: the
full graph on the prompt and then the decode graph one token at a time, fed its own cache;
or the full graph on the whole text for every token (asking it for the logits only). Both
must produce the same tokens. The two are interleaved round by round so that machine noise
hits both alike; the result is their tokens-per-second ratio, and the cache's bytes per
token measured from the tensors (anatomy-gpt: multi-head, anatomy-llama: grouped-query).
Writes results/kv_cache.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.contract import DECODE_OUTPUTS, INPUT_IDS, PAST_K, PAST_V
from models.runtime import STATIC_DIR, Engine, session_options

RESULTS = Path(__file__).resolve().parent / "results"


def _sessions(entry: dict, threads: int):
    opts = session_options(threads)
    cpu = ["CPUExecutionProvider"]
    full = ort.InferenceSession(str(STATIC_DIR / entry["file"]), opts, providers=cpu)
    step = ort.InferenceSession(str(STATIC_DIR / entry["decode"]["file"]), opts, providers=cpu)
    return full, step


def with_cache(full, step, prompt: list[int], n: int) -> tuple[list[int], int]:
    """Greedy tokens and the cache's bytes per token at the end."""
    logits, k, v = full.run(["logits", "k", "v"], {INPUT_IDS: np.asarray([prompt])})
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(logits[0, -1].argmax()))
        feed = {INPUT_IDS: np.asarray([ids[-1:]]), PAST_K: k, PAST_V: v}
        logits, k, v = step.run(list(DECODE_OUTPUTS), feed)
    return ids[len(prompt) :], (k.nbytes + v.nbytes) // k.shape[3]


def recomputing(full, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        (logits,) = full.run(["logits"], {INPUT_IDS: np.asarray([ids])})
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt) :]


def bench(name: str, rounds: int, threads: int) -> dict:
    entry = Engine(STATIC_DIR).entry(name)
    full, step = _sessions(entry, threads)
    block = entry["config"]["block_size"]
    prompt = [int(Engine(STATIC_DIR).tokenizer(name).encode("Return the")[0])]
    n = block - len(prompt)  # fill the block: the last token's prefix is the longest
    cached_s, full_s = [], []
    for _ in range(rounds + 1):  # the first round warms both up and is not counted
        t0 = time.perf_counter()
        a, per_token = with_cache(full, step, prompt, n)
        t1 = time.perf_counter()
        b = recomputing(full, prompt, n)
        t2 = time.perf_counter()
        if a != b:
            raise AssertionError(f"{name}: the cache changed the greedy tokens")
        cached_s.append(t1 - t0)
        full_s.append(t2 - t1)
    cached, recompute = statistics.median(cached_s[1:]), statistics.median(full_s[1:])
    c = entry["config"]
    return {
        "model": name,
        "attention": f"{c['n_head']} query heads, {c.get('n_kv_head') or c['n_head']} key/value",
        "tokens": n,
        "cached_tokens_per_s": round(n / cached, 1),
        "recompute_tokens_per_s": round(n / recompute, 1),
        "speedup": round(recompute / cached, 2),
        "cache_bytes_per_token": per_token,
        "cache_bytes_full_block": per_token * block,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_kv_cache")
    p.add_argument("--models", default="anatomy-gpt,anatomy-llama")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    rows = [bench(m, args.rounds, args.threads) for m in args.models.split(",")]
    for r in rows:
        print(
            f"{r['model']} ({r['attention']}): {r['tokens']} tokens, cache "
            f"{r['cached_tokens_per_s']:.0f} tok/s vs recompute {r['recompute_tokens_per_s']:.0f} "
            f"tok/s: ×{r['speedup']}; {r['cache_bytes_per_token']:,} cache bytes per token"
        )
    result = {
        "threads": args.threads,
        "rounds": args.rounds,
        "machine": f"{platform.machine()}, {args.threads} threads",
        "onnxruntime": ort.__version__,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kv_cache.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
