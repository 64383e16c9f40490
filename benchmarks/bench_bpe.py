"""BPE: incremental training vs the naive recount, and our encode vs tiktoken on the same ranks.

    python -m benchmarks.bench_bpe [--vocab 1024] [--quick]

Training: ``models.bpe.train`` against ``benchmarks/naive_bpe.py`` (same pre-split, dedup, tie
and skip rules; it recounts every pair before every merge) on the default corpus's train split.
Both must produce identical merges; the lesson's traced training (``dashboard.lessons.bpe.
train_trace``: training plus the replay behind its compression curve) is timed against the same
naive run. Encoding: ``Tokenizer.encode`` against tiktoken's
``encode_ordinary`` (one thread) built from the same ranks, over the validation text; both must
give identical ids. ``encode`` is timed cold (a fresh chunk cache every run) and warm (the cache
filled by an earlier pass over the same text). Pasted text: the lesson's training on 100 KB
(the most it accepts) of the validation text, of one repeated character and of whitespace, and
the time to read the default corpus with ``ast``. Prints a table; writes results/bpe.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import tiktoken

from benchmarks.naive_bpe import train_naive
from dashboard.lessons.bpe import MAX_PASTE_BYTES, train_trace
from models.bpe import Tokenizer, train
from models.corpus import split, stdlib_docstrings

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn, runs: int) -> tuple[float, object]:
    """Median seconds of ``runs`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=1024, help="vocabulary size (default 1024)")
    parser.add_argument(
        "--quick", action="store_true", help="train on the first 200 KB only, fewer repeats"
    )
    args = parser.parse_args(argv)

    read_s, corpus = _timed(stdlib_docstrings, 1)
    train_text, val_text = split(corpus.text)  # load() without a file is this corpus
    if args.quick:
        train_text = train_text[:200_000]
    runs = 1 if args.quick else 3
    train_mb = len(train_text.encode("utf-8")) / 1e6
    val_mb = len(val_text.encode("utf-8")) / 1e6

    ours_s, merges = _timed(lambda: train(train_text, args.vocab), runs)
    naive_s, naive_merges = _timed(lambda: train_naive(train_text, args.vocab), 1)
    assert merges == naive_merges, "incremental and naive training disagree"
    traced_s, trace = _timed(lambda: train_trace(train_text, args.vocab), runs)
    assert list(trace.merges) == merges, "traced training differs from train"

    # the lesson's pasted-text training: 100 KB, the most the page accepts
    val_bytes = val_text.encode("utf-8")
    pasted = {
        "prose": val_bytes[:MAX_PASTE_BYTES].decode("utf-8", "ignore"),
        "one_char": "x" * MAX_PASTE_BYTES,
        "whitespace": " " * MAX_PASTE_BYTES,
    }
    paste_s = {}
    for name, text in pasted.items():
        assert len(text.encode("utf-8")) <= MAX_PASTE_BYTES
        paste_s[name] = _timed(lambda text=text: train_trace(text, args.vocab), 3)[0]

    tok = Tokenizer.from_merges(merges)
    enc = tiktoken.Encoding(
        name="bench-bpe",
        pat_str=tok.pattern,
        mergeable_ranks=tok.ranks,
        special_tokens=tok.special_tokens,
    )

    def encode_cold() -> list[int]:
        tok._cache.clear()  # measure the real work, not lookups of chunks seen in a prior run
        return tok.encode(val_text)

    enc_runs = 3 if args.quick else 5
    cold_s, ids = _timed(encode_cold, enc_runs)
    warm_s, warm_ids = _timed(lambda: tok.encode(val_text), enc_runs)
    tik_s, tik_ids = _timed(lambda: enc.encode_ordinary(val_text), enc_runs)
    assert ids == warm_ids == tik_ids, "our encode and tiktoken disagree"

    results = {
        "vocab_size": args.vocab,
        "quick": args.quick,
        "train_mb": round(train_mb, 3),
        "val_mb": round(val_mb, 3),
        "merges": len(merges),
        "train_ours_s": round(ours_s, 4),
        "train_naive_s": round(naive_s, 4),
        "train_speedup": round(naive_s / ours_s, 1),
        "val_tokens": len(ids),
        "encode_ours_cold_mb_s": round(val_mb / cold_s, 3),
        "encode_ours_warm_mb_s": round(val_mb / warm_s, 3),
        "encode_tiktoken_mb_s": round(val_mb / tik_s, 3),
        "tiktoken_over_ours_cold": round(cold_s / tik_s, 1),
        "tiktoken_over_ours_warm": round(warm_s / tik_s, 1),
        "train_traced_s": round(traced_s, 4),
        "traced_speedup": round(naive_s / traced_s, 1),
        "read_corpus_s": round(read_s, 3),
        "paste_100kb_prose_s": round(paste_s["prose"], 4),
        "paste_100kb_one_char_s": round(paste_s["one_char"], 4),
        "paste_100kb_whitespace_s": round(paste_s["whitespace"], 4),
        "identical_merges": True,
        "identical_ids": True,
        "python": platform.python_version(),
        "tiktoken": tiktoken.__version__,
        "machine": platform.machine(),
    }

    print(f"BPE, vocab {args.vocab}, train {train_mb:.2f} MB, validation {val_mb:.3f} MB")
    print(f"{'':28}{'ours':>12}{'reference':>12}{'speed ratio':>13}")
    print(
        f"{'train (s)':28}{ours_s:12.3f}{naive_s:12.3f}{naive_s / ours_s:12.1f}x"
        "   reference = naive recount; identical merges"
    )
    print(
        f"{'traced train (s)':28}{traced_s:12.3f}{naive_s:12.3f}{naive_s / traced_s:12.1f}x"
        "   traced = train + compression replay (the lesson)"
    )
    print(
        f"{'encode cold cache (MB/s)':28}{val_mb / cold_s:12.2f}{val_mb / tik_s:12.2f}"
        f"{tik_s / cold_s:12.2f}x   reference = tiktoken; identical ids"
    )
    print(
        f"{'encode warm cache (MB/s)':28}{val_mb / warm_s:12.2f}{val_mb / tik_s:12.2f}"
        f"{tik_s / warm_s:12.2f}x"
    )
    print(
        f"{'train on 100 KB pasted (s)':28}{paste_s['prose']:12.3f}"
        f"   one repeated char {paste_s['one_char']:.3f} s, whitespace only "
        f"{paste_s['whitespace']:.3f} s"
    )
    print(f"{'read default corpus (s)':28}{read_s:12.3f}   ast over the stdlib, once per process")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bpe.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
