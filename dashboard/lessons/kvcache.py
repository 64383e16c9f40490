"""Sharing key/value heads and the KV cache: the arithmetic of the "K/V heads and the cache"
lesson. Pure functions (numbers and numpy in, numbers and numpy out).

Multi-head attention (MHA) gives every query head its own keys and values; grouped-query
attention (GQA) lets ``n_head / n_kv_head`` consecutive query heads read one key/value head;
multi-query attention (MQA) is the case of one. Generating token by token, a model keeps the
keys and values of every past position (the KV cache), so the number of key/value heads sets
the memory a sequence holds. Byte counts come from :func:`dashboard.lessons.scale.kv_cache_bytes`
(checked there against a real ``past_key_values``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dashboard.lessons import scale

BENCHMARK_DIR = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "results"
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def sharing_choices(n_head: int, n_kv_head: int | None = None) -> dict[str, int]:
    """The key/value heads of each way to share them under ``n_head`` query heads: "mha" one
    per query head, "gqa" a group's (the model's own ``n_kv_head`` where it groups, else the
    largest count that leaves at least two query heads a group), "mqa" one. A kind with no
    count of its own (GQA under 2 or 3 query heads) is left out."""
    if n_head < 1:
        raise ValueError(f"n_head must be at least 1, not {n_head}")
    out = {"mha": n_head}
    if n_kv_head is not None and 1 < n_kv_head < n_head and n_head % n_kv_head == 0:
        out["gqa"] = n_kv_head
    else:
        grouped = [k for k in range(n_head // 2, 1, -1) if n_head % k == 0]
        if grouped:
            out["gqa"] = grouped[0]
    if n_head > 1:
        out["mqa"] = 1
    return out


def sharing_kind(n_head: int, n_kv_head: int) -> str:
    """ "MHA", "GQA" or "MQA" for ``n_kv_head`` key/value heads under ``n_head`` query heads."""
    if n_kv_head < 1 or n_head % n_kv_head:
        raise ValueError(f"{n_head} query heads cannot share {n_kv_head} key/value heads evenly")
    if n_kv_head == n_head:
        return "MHA"
    return "MQA" if n_kv_head == 1 else "GQA"


def with_kv_heads(config: dict, n_kv_head: int) -> dict:
    """A Hugging Face config dict with ``n_kv_head`` key/value heads instead of its own
    (GPT-2's configs have no such field: its attention is always MHA, so only its own count,
    ``n_head``, is accepted)."""
    if config["model_type"] == scale.GPT2:
        if n_kv_head != int(config["n_head"]):
            raise ValueError("GPT-2 has one key/value head per query head")
        return dict(config)
    return {**config, "num_key_value_heads": int(n_kv_head)}


def cache_per_token(config: dict, n_kv_head: int | None = None, bytes_per_value: float = 2):
    """Bytes one token adds to the cache of one sequence: its key and value in every layer,
    for the config's own key/value heads or ``n_kv_head`` of them."""
    if n_kv_head is not None:
        config = with_kv_heads(config, n_kv_head)
    return scale.kv_cache_bytes(config, 1, 1, bytes_per_value)


def head_distances(probs: np.ndarray) -> np.ndarray:
    """(n_head, T, T) attention probabilities of one layer -> (n_head, n_head): for each pair
    of heads the total variation distance of their rows (½ Σ_j |p_j − q_j|: 0 for the same
    row, 1 for rows with no key in common), averaged over the queries."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise ValueError(f"probs must be (n_head, T, T), not {p.shape}")
    diff = np.abs(p[:, None] - p[None, :]).sum(axis=-1) / 2  # (H, H, T)
    return diff.mean(axis=-1)


def group_distances(distances: np.ndarray, n_kv_head: int) -> tuple[float, float]:
    """The mean distance between heads that read the same key/value head, and between heads
    that read different ones (NaN where there is no such pair)."""
    d = np.asarray(distances, dtype=np.float64)
    n = d.shape[0]
    group = np.arange(n) // (n // n_kv_head)
    off = ~np.eye(n, dtype=bool)
    same = off & (group[:, None] == group[None, :])
    other = group[:, None] != group[None, :]
    mean = lambda mask: float(d[mask].mean()) if mask.any() else float("nan")  # noqa: E731
    return mean(same), mean(other)


def human_bytes(n: float) -> str:
    """Bytes for people: 1,023 B, 2.0 KiB, 1.25 GiB (three significant digits from KiB up,
    powers of 1024). js/kvcache.js's ``human_bytes`` writes the same text."""
    if n < 0:
        raise ValueError(f"a byte count cannot be negative: {n}")
    if n < 1024:
        return f"{int(n):,} B"
    exp = 0
    while n >= 1024 ** (exp + 1) and exp + 1 < len(UNITS):
        exp += 1
    value = n / 1024**exp
    digits = 2 if value < 10 else 1 if value < 100 else 0
    text = f"{value:,.{digits}f}"
    if text in ("1,024", "1,024.0") and exp + 1 < len(UNITS):  # 1023.7 KiB rounds up a unit
        return f"1.00 {UNITS[exp + 1]}"
    return f"{text} {UNITS[exp]}"


def load_benchmark(name: str, directory: Path = BENCHMARK_DIR) -> dict | None:
    """A benchmark's measurements (``benchmarks/results/<name>.json``, written by ``make
    bench``), or None when it has not been run here or its file is unreadable."""
    try:
        return json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
