"""The KV cache at run time: ``Engine.next_logits`` against the full graph, for every recipe,
and generation in the sampling lesson through it."""

import numpy as np
import pytest

from models.runtime import Engine, EngineError

RECIPES = ("quick-gpt", "quick-llama", "quick-moe")


@pytest.fixture()
def engine(quick_build) -> Engine:
    return Engine(quick_build)


@pytest.mark.parametrize("model", RECIPES)
def test_next_logits_equal_the_full_graphs_last_row_at_every_length(engine, model):
    """Growing a text one token at a time: one full pass, then only decode steps, each equal
    to the full graph's last row on the whole text."""
    block = engine.config(model)["block_size"]
    ids = np.random.default_rng(7).integers(engine.config(model)["vocab_size"], size=block)
    runs, steps = engine.forward_calls, engine.decode_calls
    got = [engine.next_logits(model, ids[: t + 1]) for t in range(block)]
    assert engine.forward_calls == runs + 1, "the full graph read the first token only"
    assert engine.decode_calls == steps + block - 1
    for t in (0, 1, block // 2, block - 1):
        want = engine.run(model, ids[: t + 1]).logits[-1]
        np.testing.assert_allclose(got[t], want, atol=1e-4)


def test_a_text_not_in_the_cache_is_read_whole(engine):
    """An edit in the middle (not the previous step's text plus one token): full graph."""
    a = [5, 6, 7, 8]
    engine.next_logits("quick-llama", a)
    runs = engine.forward_calls
    b = [5, 9, 7, 8, 10]
    got = engine.next_logits("quick-llama", b)
    assert engine.forward_calls == runs + 1
    np.testing.assert_allclose(got, engine.run("quick-llama", b).logits[-1], atol=1e-4)


def test_the_cache_is_bounded_and_cleared(quick_build):
    e = Engine(quick_build, cache_bytes=1 << 16)  # KV cache: 16 KB
    for start in range(40):
        e.next_logits("quick-gpt", list(range(start, start + 30)))
    assert e._kv_bytes <= (1 << 16) // 4 or len(e._kv) == 1
    e.clear_cache()
    assert e._kv_bytes == 0 and not e._kv


def test_a_model_without_a_decode_graph_recomputes(quick_build, tmp_path):
    """Older files (no decode graph in the manifest) still generate, by the full graph."""
    import json
    import shutil

    dst = tmp_path / "static"
    shutil.copytree(quick_build, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    for m in manifest["models"]:
        m.pop("decode")
    (dst / "manifest.json").write_text(json.dumps(manifest))
    e = Engine(dst)
    assert not e.has_decoder("quick-gpt")
    got = e.next_logits("quick-gpt", [1, 2, 3])
    e.next_logits("quick-gpt", [1, 2, 3, 4])
    assert e.decode_calls == 0 and e.forward_calls == 2
    np.testing.assert_allclose(got, e.run("quick-gpt", [1, 2, 3]).logits[-1], atol=0)


def test_a_corrupt_decode_graph_is_one_clear_message(quick_build, tmp_path):
    import shutil

    dst = tmp_path / "static"
    shutil.copytree(quick_build, dst)
    (dst / "quick-gpt-decode.onnx").write_bytes(b"not a model")
    e = Engine(dst)
    e.next_logits("quick-gpt", [1, 2])
    with pytest.raises(EngineError, match="quick-gpt-decode.onnx.*(corrupt|sha256)"):
        e.next_logits("quick-gpt", [1, 2, 3])


def test_outputs_on_request(engine):
    """The four core outputs by default; the inside of the block when asked; names checked."""
    core = engine.run("quick-llama", [1, 2, 3])
    assert list(core.outputs) == ["logits", "attn_scores", "attn_probs", "hidden"]
    everything = engine.run("quick-llama", [1, 2, 3], outputs="all")
    assert "q_before_rope" in everything.outputs and "mlp_gate" in everything.outputs
    np.testing.assert_array_equal(everything.logits, core.logits)
    some = engine.run("quick-llama", [1, 2, 3], outputs=("k", "v"))
    assert some.k.shape == (2, 2, 3, 8)  # (n_layer, n_kv_head, T, d_head)
    with pytest.raises(EngineError, match="no output 'mlp_gate'"):
        engine.run("quick-gpt", [1, 2, 3], outputs=("mlp_gate",))
