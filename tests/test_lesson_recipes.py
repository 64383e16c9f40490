"""The recipes lesson's numbers: bucket means against plain loops, statistics.mean and torch;
the table's figures against the manifest's own; the KV cache against 2·n_layer·n_kv·d_head·4;
and the lesson's option, view and snapshot on the committed models.
"""

from __future__ import annotations

import copy
import html
import math
import statistics

import numpy as np
import pytest
import torch

from dashboard.lessons import recipes as R
from dashboard.state import AnatomyState
from dashboard.views import recipes as V
from export.pack import unpack
from export.snapshot import build_snapshot
from models.runtime import STATIC_DIR, Engine

TRAINED = ("val_loss", "unigram_entropy")


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def entries(engine):
    return {n: engine.entry(n) for n in engine.model_names}


def llama_like(entry: dict) -> dict:
    """A RoPE/GQA entry built from a GPT one (for a manifest that has no LLaMA yet): the
    fields the build writes, with 256 positions and a mean past the block."""
    e = copy.deepcopy(entry)
    e["config"].update(
        norm="rmsnorm", positions="rope", mlp="swiglu", n_kv_head=2, bias=False, mlp_hidden=352
    )
    e["training"]["val_loss"] = entry["training"]["val_loss"] - 0.1
    e["training"]["improvement_over_unigram"] = None  # recomputed from the losses
    e["decode"]["cache_bytes_per_token"] = R.kv_bytes_per_token(e["config"])
    loss = list(entry["positions"]["loss"]) * 2
    e["positions"].update(
        length=len(loss),
        loss=loss,
        mean_inside_block=round(statistics.mean(loss[:128]), 4),
        mean_past_block=round(statistics.mean(loss[128:]) + 0.2, 4),
    )
    return e


# -- bucket means ---------------------------------------------------------------------------
def loop_buckets(loss: list[float], width: int) -> tuple[list[int], list[float]]:
    starts, means = [], []
    i = 0
    while i < len(loss):
        starts.append(i)
        means.append(statistics.mean(loss[i : i + width]))  # a short last bucket: what it has
        i += width
    return starts, means


@pytest.mark.parametrize("n", [1, 7, 128, 256, 250])
@pytest.mark.parametrize("width", [1, 3, 8, 16, 32, 300])
def test_bucket_means_match_plain_loops(n, width):
    loss = np.random.default_rng(n * 31 + width).gamma(4.0, 1.0, size=n).tolist()
    starts, means = R.bucket_means(loss, width)
    want_s, want_m = loop_buckets(loss, width)
    assert starts.tolist() == want_s
    np.testing.assert_allclose(means, want_m, rtol=1e-12)


def test_bucket_means_of_whole_buckets_match_torch():
    loss = torch.rand(256, dtype=torch.float64) * 5
    for width in R.BUCKET_WIDTHS:
        _, means = R.bucket_means(loss.numpy(), width)
        np.testing.assert_allclose(means, loss.view(-1, width).mean(1).numpy(), rtol=1e-12)


def test_the_last_partial_bucket_is_the_mean_of_what_it_has():
    starts, means = R.bucket_means([1.0, 2.0, 3.0, 4.0, 10.0], 2)
    assert starts.tolist() == [0, 2, 4] and means.tolist() == [1.5, 3.5, 10.0]
    cols = R.bucket_columns([1.0, 2.0, 3.0, 4.0, 10.0], 2)
    assert cols == {"x": [0.5, 2.5, 4.0], "first": [0, 2, 4], "last": [1, 3, 4],
                    "loss": [1.5, 3.5, 10.0]}  # fmt: skip


@pytest.mark.parametrize("width", [0, -8, 2.5])
def test_a_bad_bucket_width_is_refused(width):
    with pytest.raises(ValueError, match="whole position"):
        R.bucket_means([1.0, 2.0], width)


def test_no_loss_gives_no_buckets():
    starts, means = R.bucket_means([], 16)
    assert starts.size == 0 and means.size == 0


# -- the table ------------------------------------------------------------------------------
def test_kv_bytes_per_token_from_the_config():
    gpt = {"n_layer": 4, "n_head": 4, "n_kv_head": None, "n_embd": 128}
    assert R.kv_bytes_per_token(gpt) == 2 * 4 * 4 * 32 * 4 == 4096
    assert R.kv_bytes_per_token({**gpt, "n_kv_head": 2}) == 2048


def _check_row(row: R.RecipeRow, e: dict) -> None:
    c, t = e["config"], e["training"]
    assert row.n_params == e["n_params"]
    assert row.val_loss == t["val_loss"] and row.unigram == t["unigram_entropy"]
    assert row.seconds == t.get("seconds") and row.steps == t["steps"]
    below = (t["unigram_entropy"] - t["val_loss"]) / t["unigram_entropy"]
    assert math.isclose(row.below_unigram, below, abs_tol=1e-4)  # the manifest rounds it
    if t.get("improvement_over_unigram") is not None:
        assert row.below_unigram == t["improvement_over_unigram"]
    n_kv = c["n_kv_head"] or c["n_head"]
    from_config = 2 * c["n_layer"] * n_kv * (c["n_embd"] // c["n_head"]) * 4
    assert row.kv_bytes_per_token == e["decode"]["cache_bytes_per_token"] == from_config
    assert row.kv_bytes_per_block == from_config * c["block_size"]
    assert (row.n_head, row.n_kv_head, row.bias) == (c["n_head"], n_kv, c["bias"])


def test_every_row_holds_the_manifests_numbers(entries):
    trained = {n: e for n, e in entries.items() if all(k in e.get("training", {}) for k in TRAINED)}
    assert trained, "the committed manifest has trained models"
    rows, skipped = R.recipe_rows(entries)
    assert [r.model for r in rows] == list(trained) and set(skipped) == set(entries) - set(trained)
    for row in rows:
        _check_row(row, entries[row.model])


def test_gpt_and_llama_rows_and_which_is_lower(entries):
    gpt = entries["anatomy-gpt"]
    both = {"anatomy-gpt": gpt, "anatomy-llama": entries.get("anatomy-llama") or llama_like(gpt)}
    rows, skipped = R.recipe_rows(both)
    assert skipped == []
    for row in rows:
        _check_row(row, both[row.model])
    g, lm = rows
    assert (g.norm, g.positions, g.mlp, g.bias) == ("LayerNorm", "learned", "GELU", True)
    assert (lm.norm, lm.positions, lm.mlp, lm.bias) == ("RMSNorm", "RoPE", "SwiGLU", False)
    cmp = R.compare(rows)
    losses = {r.model: r.val_loss for r in rows}
    best = min(losses, key=losses.get)
    other = max(losses, key=losses.get)
    assert (cmp.best, cmp.other) == (best, other)
    assert math.isclose(cmp.nats, losses[other] - losses[best])
    assert math.isclose(cmp.percent, 100 * (losses[other] - losses[best]) / losses[other])
    assert cmp.same_run
    text = V.comparison_text(rows, cmp)
    assert f"{cmp.nats:.3f} nats ({cmp.percent:.1f}%) lower" in text and "Measured on our" in text
    table = V.recipes_table(rows, cmp.best)
    assert f"class='best' data-model='{best}'" in table
    assert f"{losses[best]:.3f}" in table and f"{gpt['n_params']:,}" in table


def test_a_brought_in_model_is_left_out_and_named(entries):
    gpt = entries["anatomy-gpt"]
    brought = {k: v for k, v in gpt.items() if k not in ("training", "positions")}
    both = {"anatomy-gpt": gpt, "my-<checkpoint>": brought}
    rows, skipped = R.recipe_rows(both)
    lines, no_lines = R.position_losses(both)
    assert [r.model for r in rows] == [p.model for p in lines] == ["anatomy-gpt"]
    assert skipped == no_lines == ["my-<checkpoint>"]
    assert R.compare(rows) is None
    assert "my-&lt;checkpoint&gt;" in V.skipped_text(skipped)  # escaped, never rendered


# -- loss per position ----------------------------------------------------------------------
def test_position_means_are_the_manifests(entries):
    gpt = entries["anatomy-gpt"]
    both = {"anatomy-gpt": gpt, "anatomy-llama": entries.get("anatomy-llama") or llama_like(gpt)}
    lines, _ = R.position_losses(both)
    for p in lines:
        rec = both[p.model]["positions"]
        assert p.loss.tolist() == rec["loss"] and len(p.loss) == rec["length"]
        assert p.mean_inside == rec["mean_inside_block"]
        # the recorded mean is of the unrounded losses: within rounding of the shown ones
        assert math.isclose(statistics.mean(rec["loss"][:128]), p.mean_inside, abs_tol=1e-3)
        assert p.mean_past == rec["mean_past_block"]
    g, lm = lines
    assert len(g.loss) == 128 and g.mean_past is None and not g.rope
    assert len(lm.loss) == 256 and lm.rope
    text = V.positions_text(lines)
    assert "cannot be asked past position 127" in text
    assert f"{lm.mean_inside:.3f} nats inside" in text and f"{lm.mean_past:.3f} past it" in text


# -- the lesson: option, view and snapshot ---------------------------------------------------
def test_the_view_draws_the_chosen_bucketing(engine):
    state = AnatomyState(engine=engine, lesson="recipes")
    view = V.RecipesLesson(state=state)
    view.__panel__()
    for width in R.BUCKET_WIDTHS:
        state.bucket = width
        for name, src in view._sources.items():
            loss = engine.entry(name)["positions"]["loss"]
            starts, means = loop_buckets(loss, width)
            assert src.data["first"] == starts
            np.testing.assert_allclose(src.data["loss"], means, rtol=1e-12)
        assert f"over {width} position" in view._caption.object


def test_an_unknown_bucket_width_in_a_link_is_named_and_ignored(engine):
    from panel.io.location import Location

    state = AnatomyState(engine=engine)
    state.sync_url(Location(search="?lesson=recipes&bucket=7"))
    assert state.bucket == 16 and state.lesson == "recipes"
    assert "bucket=7" in state.notice


def test_the_snapshot_has_the_table_and_every_bucketing(engine):
    page = html.unescape(unpack(build_snapshot("hi", engine=engine, lessons="recipes")))
    for name in ("recipes-loss", "recipes-bucket", "recipes-table", "recipes-positions"):
        assert f'"{name}"' in page, name
    assert "cannot be asked past position 127" in page


# -- the real build's records (the quick build: quick-gpt, quick-llama, quick-moe) ------------
def test_the_quick_builds_recipes(quick_build, quick_manifest):
    entries = {e["name"]: e for e in quick_manifest["models"]}
    rows, skipped = R.recipe_rows(entries)
    quick = ["quick-gpt", "quick-llama", "quick-moe"]
    assert skipped == [] and [r.model for r in rows] == quick
    for row in rows:
        _check_row(row, entries[row.model])
    lines, _ = R.position_losses(entries)
    g, lm, _moe = lines
    assert not g.rope and len(g.loss) == g.block_size and g.mean_past is None
    assert lm.rope and len(lm.loss) == 2 * lm.block_size and lm.mean_past is not None
    # the view on an engine of that build: both lines, the RoPE one past the block
    engine = Engine(quick_build)
    state = AnatomyState(engine=engine, lesson="recipes")
    view = V.RecipesLesson(state=state)
    state.bucket = 8
    assert set(view._sources) == set(quick)
    assert view._sources["quick-llama"].data["last"][-1] == 2 * lm.block_size - 1
    assert view._sources["quick-gpt"].data["last"][-1] == g.block_size - 1
    page = html.unescape(unpack(build_snapshot("hi", engine=engine, lessons="recipes")))
    assert '"recipes-line-quick-llama"' in page and "past it" in page
