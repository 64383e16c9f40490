"""Peak memory of attention computed whole vs tile by tile, in numpy, side by side.

    python -m benchmarks.bench_tiles [--t 4096] [--d 64] [--block 128] [--rounds 3]

The same causal attention of one head, float64: ``tiles.full_attention`` (the T × T scores,
their exponentials and the probabilities, all at once) and ``tiles.tiled_attention`` (one
block × block tile at a time, with the online softmax, no steps recorded). Both outputs must
agree to 1e-10. Peak bytes allocated are measured with tracemalloc (numpy reports its
buffers to it), the two interleaved round by round; the result is their ratio, beside what
the scores alone would take (tiles.score_bytes). Writes results/tiles.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from dashboard.lessons import tiles

RESULTS = Path(__file__).resolve().parent / "results"


def peak(fn) -> tuple[int, float, np.ndarray]:
    """(peak bytes allocated while ``fn`` ran, its seconds, its result)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top, seconds, out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--t", type=int, default=4096)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(args.t, args.d)) for _ in range(3))
    full = lambda: tiles.full_attention(q, k, v)  # noqa: E731
    tiled = lambda: tiles.tiled_attention(q, k, v, args.block, args.block, steps=False)[0]  # noqa: E731
    peaks: dict[str, list[int]] = {"full": [], "tiled": []}
    secs: dict[str, list[float]] = {"full": [], "tiled": []}
    for _ in range(args.rounds):
        b_full, s_full, o_full = peak(full)
        b_tiled, s_tiled, o_tiled = peak(tiled)
        np.testing.assert_allclose(o_tiled, o_full, atol=1e-10)
        peaks["full"].append(b_full)
        peaks["tiled"].append(b_tiled)
        secs["full"].append(s_full)
        secs["tiled"].append(s_tiled)
    result = {
        "t": args.t,
        "d": args.d,
        "block": args.block,
        "peak_bytes": {name: max(v) for name, v in peaks.items()},
        "ratio_full_over_tiled": round(max(peaks["full"]) / max(peaks["tiled"]), 1),
        "scores_alone_bytes": {
            "full": tiles.score_bytes(args.t, 1, 8),
            "tile": tiles.score_bytes(args.t, 1, 8, args.block, args.block),
        },
        "seconds_median": {name: float(np.median(v)) for name, v in secs.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tiles.json").write_text(json.dumps(result, indent=2) + "\n")
    mb = {k: v / 2**20 for k, v in result["peak_bytes"].items()}
    print(
        f"attention, T = {args.t}, d = {args.d}: peak {mb['full']:.0f} MiB whole vs "
        f"{mb['tiled']:.1f} MiB in {args.block} × {args.block} tiles "
        f"({result['ratio_full_over_tiled']}× less); {result['seconds_median']['full']:.2f} s vs "
        f"{result['seconds_median']['tiled']:.2f} s"
    )
    return result


if __name__ == "__main__":
    main()
