"""ONNX Runtime forward (the four outputs every lesson draws) vs torch eager, same weights.

    python -m benchmarks.bench_runtime [--model anatomy-gpt] [--repeats 200]

Both run one sequence with every output the dashboard draws, interleaved round by round so
that machine noise hits both alike. Prints medians and the ratio; writes results/runtime.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from models.checkpoint import load_model
from models.contract import TRANSFORMER_OUTPUTS
from models.runtime import STATIC_DIR, Engine

RESULTS = Path(__file__).resolve().parent / "results"


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench(model_name: str, lengths: list[int], repeats: int, threads: int) -> list[dict]:
    engine = Engine(STATIC_DIR, provider="cpu", threads=threads, cache_size=0)
    entry = engine.entry(model_name)
    session = engine._session(model_name).session
    torch.set_num_threads(threads)
    model = load_model(STATIC_DIR / entry["weights_file"], entry["config"])
    rng = np.random.default_rng(0)
    rows = []
    for T in lengths:
        ids = rng.integers(0, entry["config"]["vocab_size"], (1, T), dtype=np.int64)
        ids_t = torch.from_numpy(ids)

        def run_ort(ids=ids):
            session.run(list(TRANSFORMER_OUTPUTS), {"input_ids": ids})

        def run_torch(ids_t=ids_t):
            with torch.inference_mode():
                model(ids_t)

        for fn in (run_ort, run_torch):  # warm-up
            for _ in range(10):
                fn()
        ort_ms, torch_ms = [], []
        for _ in range(5):  # interleave rounds so both see the same machine state
            ort_ms.append(_median_ms(run_ort, repeats // 5))
            torch_ms.append(_median_ms(run_torch, repeats // 5))
        o, t = statistics.median(ort_ms), statistics.median(torch_ms)
        rows.append(
            {
                "T": T,
                "onnxruntime_ms": round(o, 3),
                "torch_eager_ms": round(t, 3),
                "speedup": round(t / o, 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="anatomy-gpt")
    p.add_argument("--lengths", default="16,64,128")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    rows = bench(args.model, [int(x) for x in args.lengths.split(",")], args.repeats, args.threads)
    print(f"{'T':>5} {'ORT ms':>9} {'torch ms':>9} {'torch/ORT':>10}")
    for r in rows:
        print(
            f"{r['T']:>5} {r['onnxruntime_ms']:>9.3f} {r['torch_eager_ms']:>9.3f} "
            f"{r['speedup']:>9.2f}x"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "runtime.json").write_text(
        json.dumps(
            {
                "model": args.model,
                "threads": args.threads,
                "repeats": args.repeats,
                "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
