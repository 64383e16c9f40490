"""GPT and LLaMA, measured: what the build recorded about each recipe, ready to show.

The build trains the GPT-2 recipe (LayerNorm, learned positions, GELU, a key/value head per
query head, biases) and the LLaMA recipe (RMSNorm, RoPE, SwiGLU, grouped key/value heads, no
biases) on the same data, steps and seed, and writes into each manifest entry its losses, its
measured KV cache size and its loss at every position of held-out text. Everything here reads
those records (plain dicts in, numpy and dataclasses out); nothing runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dashboard.lessons.attention import heads_of

BUCKET_WIDTHS = (1, 8, 16, 32)  # positions averaged into one point of the loss-per-position chart
FLOAT32_BYTES = 4  # the decode graph's cache is float32

NORMS = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}
POSITIONS = {"learned": "learned", "rope": "RoPE"}
MLPS = {"gelu": "GELU", "swiglu": "SwiGLU"}


def bucket_means(loss, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``loss`` over consecutive buckets of ``width`` positions: the first positions
    of the buckets and their means (float64). When ``width`` does not divide the length, the
    last bucket is shorter and its mean is over the positions it has: nothing is dropped and
    nothing padded."""
    loss = np.asarray(loss, dtype=np.float64).ravel()
    if int(width) != width or width < 1:
        raise ValueError(f"a bucket is at least one whole position wide, not {width!r}")
    width = int(width)
    if loss.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    starts = np.arange(0, loss.size, width)
    sizes = np.diff(np.append(starts, loss.size))
    return starts, np.add.reduceat(loss, starts) / sizes


def bucket_columns(loss, width: int) -> dict[str, list]:
    """One line of the chart: each bucket's centre (x), first and last position and mean loss
    (the columns both homes draw, and the snapshot embeds for every width)."""
    starts, means = bucket_means(loss, width)
    ends = np.minimum(starts + int(width), len(loss)) - 1
    return {
        "x": ((starts + ends) / 2).tolist(),
        "first": starts.tolist(),
        "last": ends.tolist(),
        "loss": means.tolist(),
    }


def kv_bytes_per_token(config: dict) -> int:
    """The KV cache one token adds, from the config: a key and a value vector of ``d_head``
    float32 numbers per key/value head per layer, 2 · n_layer · n_kv_head · d_head · 4."""
    n_kv = heads_of(config)[1]
    d_head = config["n_embd"] // config["n_head"]
    return 2 * config["n_layer"] * n_kv * d_head * FLOAT32_BYTES


def has_training(entry: dict) -> bool:
    """Did the build record this model's training (a brought-in model has no record)?"""
    t = entry.get("training") or {}
    return all(t.get(k) is not None for k in ("val_loss", "unigram_entropy"))


def has_positions(entry: dict) -> bool:
    """Did the build measure this model's loss per position?"""
    return bool((entry.get("positions") or {}).get("loss"))


@dataclass(frozen=True)
class RecipeRow:
    """One model's column of the table, every figure from its manifest entry."""

    model: str
    norm: str
    positions: str
    mlp: str
    n_head: int
    n_kv_head: int
    bias: bool
    n_params: int
    val_loss: float
    train_loss: float | None
    unigram: float
    below_unigram: float  # fraction of the unigram entropy the model's loss is below it
    kv_bytes_per_token: int  # measured by the build's decode graph, else from the config
    kv_measured: bool
    block_size: int
    steps: int | None
    seed: int | None
    seconds: float | None

    @property
    def kv_bytes_per_block(self) -> int:
        """The cache of a full block (block_size tokens)."""
        return self.kv_bytes_per_token * self.block_size


def recipe_row(name: str, entry: dict) -> RecipeRow:
    """The table's column for one manifest entry that :func:`has_training`."""
    c, t = entry["config"], entry["training"]
    measured = (entry.get("decode") or {}).get("cache_bytes_per_token")
    below = t.get("improvement_over_unigram")
    if below is None:
        below = (t["unigram_entropy"] - t["val_loss"]) / t["unigram_entropy"]
    return RecipeRow(
        model=name,
        norm=NORMS.get(c.get("norm", "layernorm"), str(c.get("norm"))),
        positions=POSITIONS.get(c.get("positions", "learned"), str(c.get("positions"))),
        mlp=MLPS.get(c.get("mlp", "gelu"), str(c.get("mlp"))),
        n_head=int(c["n_head"]),
        n_kv_head=heads_of(c)[1],
        bias=bool(c.get("bias", True)),
        n_params=int(entry["n_params"]),
        val_loss=float(t["val_loss"]),
        train_loss=t.get("train_loss"),
        unigram=float(t["unigram_entropy"]),
        below_unigram=float(below),
        kv_bytes_per_token=int(measured if measured is not None else kv_bytes_per_token(c)),
        kv_measured=measured is not None,
        block_size=int(c["block_size"]),
        steps=t.get("steps"),
        seed=t.get("seed"),
        seconds=t.get("seconds"),
    )


def recipe_rows(entries: dict[str, dict]) -> tuple[list[RecipeRow], list[str]]:
    """The table's columns (manifest order) and the models left out for lack of a training
    record (a brought-in checkpoint)."""
    rows = [recipe_row(n, e) for n, e in entries.items() if has_training(e)]
    skipped = [n for n, e in entries.items() if not has_training(e)]
    return rows, skipped


@dataclass(frozen=True)
class Comparison:
    """The lowest validation loss against the next lowest."""

    best: str
    other: str
    nats: float  # other's loss minus best's
    percent: float  # of other's loss
    same_run: bool  # the same steps and seed: the comparison the build set up


def compare(rows: list[RecipeRow]) -> Comparison | None:
    """Which model has the lower validation loss and by how much (None below two models)."""
    if len(rows) < 2:
        return None
    best, other = sorted(rows, key=lambda r: r.val_loss)[:2]
    nats = other.val_loss - best.val_loss
    same = (best.steps, best.seed) == (other.steps, other.seed) and best.steps is not None
    return Comparison(best.model, other.model, nats, 100 * nats / other.val_loss, same)


@dataclass(frozen=True)
class PositionLoss:
    """One model's loss per position on held-out text (the build's ``positions`` record)."""

    model: str
    loss: np.ndarray  # nats, positions 0..length-1
    block_size: int
    windows: int
    rope: bool
    mean_inside: float
    mean_past: float | None  # None: the model was not run past its block


def position_losses(entries: dict[str, dict]) -> tuple[list[PositionLoss], list[str]]:
    """The chart's lines (manifest order) and the models left out for lack of a record."""
    out = []
    for name, e in entries.items():
        if not has_positions(e):
            continue
        p = e["positions"]
        loss = np.asarray(p["loss"], dtype=np.float64)
        block = int(p.get("block_size") or e["config"]["block_size"])
        inside = p.get("mean_inside_block")
        out.append(
            PositionLoss(
                model=name,
                loss=loss,
                block_size=block,
                windows=int(p.get("windows") or 0),
                rope=e["config"].get("positions") == "rope",
                mean_inside=float(inside if inside is not None else loss[:block].mean()),
                mean_past=p.get("mean_past_block"),
            )
        )
    return out, [n for n, e in entries.items() if not has_positions(e)]
