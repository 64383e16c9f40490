"""The committed default artifacts in static/: intact, faithful to torch, and good enough."""

import numpy as np
import onnxruntime as ort
import pytest
import tiktoken
import torch

from models import corpus
from models.bpe import Tokenizer
from models.checkpoint import load_model
from models.export import decode_parity, parity
from models.runtime import sha256_file

from .conftest import STATIC

MODELS = ("anatomy-gpt", "anatomy-llama", "anatomy-moe")


@pytest.fixture(scope="module", params=MODELS)
def entry(request, static_manifest) -> dict:
    return next(m for m in static_manifest["models"] if m["name"] == request.param)


def _entry(static_manifest, name: str) -> dict:
    return next(m for m in static_manifest["models"] if m["name"] == name)


@pytest.fixture(scope="module")
def tok(entry) -> Tokenizer:
    return Tokenizer.load(STATIC, entry["tokenizer"]["name"])


@pytest.fixture(scope="module")
def val_ids(entry, tok) -> np.ndarray:
    text = corpus.load().text
    fresh = corpus.stdlib_docstrings()  # read again, not the cached copy
    assert fresh.sha256 == entry["corpus"]["sha256"], "corpus reads deterministically"
    _, val = corpus.split(text)
    return np.asarray(tok.encode(val), dtype=np.int64)


def test_files_match_manifest(entry):
    assert sha256_file(STATIC / entry["file"]) == entry["sha256"]
    assert sha256_file(STATIC / entry["decode"]["file"]) == entry["decode"]["sha256"]
    assert sha256_file(STATIC / entry["weights_file"]) == entry["weights_sha256"]
    assert not list(STATIC.glob("*.onnx.data")), "single-file ONNX"


def test_committed_onnx_matches_torch(entry):
    """The committed ONNX file against torch with the committed weights, T = 1, 64, 128."""
    model = load_model(STATIC / entry["weights_file"], entry["config"])
    errors = parity(model, STATIC / entry["file"], seed=1)
    assert list(errors) == entry["outputs"], "every output, the inside of the blocks included"
    assert max(errors.values()) <= 1e-4, errors


def test_committed_decode_graph_gives_the_full_graphs_logits(entry):
    """A whole block decoded one token at a time from the cache, at every position."""
    cfg = entry["config"]
    error, per_token = decode_parity(
        STATIC / entry["file"], STATIC / entry["decode"]["file"], cfg["vocab_size"], 128, seed=2
    )
    assert error <= 1e-4
    assert per_token == entry["decode"]["cache_bytes_per_token"]


def test_the_two_recipes_are_the_same_size_trained_the_same_way(static_manifest):
    gpt, llama = (_entry(static_manifest, n) for n in MODELS[:2])
    assert abs(llama["n_params"] / gpt["n_params"] - 1) <= 0.05
    settings = ("steps", "batch_size", "lr", "min_lr", "warmup_steps", "weight_decay", "seed")
    assert [gpt["training"][k] for k in settings] == [llama["training"][k] for k in settings]
    assert gpt["corpus"] == llama["corpus"]
    assert gpt["tokenizer"]["pattern"] == llama["tokenizer"]["pattern"]
    ranks = [Tokenizer.load(STATIC, e["tokenizer"]["name"]).ranks for e in (gpt, llama)]
    assert ranks[0] == ranks[1], "one tokenizer"
    c = llama["config"]
    assert (c["norm"], c["positions"], c["mlp"], c["bias"]) == ("rmsnorm", "rope", "swiglu", False)
    assert (c["n_head"], c["n_kv_head"], c["rope_base"], c["block_size"]) == (4, 2, 10000.0, 128)
    # multi-head: 2 · layers · heads · d_head floats per token; grouped-query: half of it
    assert gpt["decode"]["cache_bytes_per_token"] == 2 * 4 * 4 * 32 * 4
    assert llama["decode"]["cache_bytes_per_token"] == 2 * 4 * 2 * 32 * 4


def _windows(val_ids: np.ndarray, length: int, stride: int):
    n = (len(val_ids) - 1) // stride
    x = np.stack([val_ids[i * stride : i * stride + length] for i in range(n)])
    y = np.stack([val_ids[i * stride + 1 : i * stride + 1 + length] for i in range(n)])
    return x, y


def _val_ids() -> np.ndarray:
    tok = Tokenizer.load(STATIC, "anatomy-gpt-bpe")
    return np.asarray(tok.encode(corpus.split(corpus.load().text)[1]), dtype=np.int64)


def test_loss_by_position_inside_the_block_recomputed_with_onnx_runtime(static_manifest):
    """The manifest's loss per position of anatomy-gpt, position by position, from the
    committed ONNX file on the same windows (every 257 tokens of the validation text)."""
    gpt = _entry(static_manifest, "anatomy-gpt")
    val = _val_ids()
    record = gpt["positions"]
    assert (record["length"], record["stride"]) == (128, 257)
    x, y = _windows(val, 128, 257)
    assert len(x) == record["windows"]
    sess = ort.InferenceSession(str(STATIC / gpt["file"]), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(["logits"], {"input_ids": x})
    lp = torch.log_softmax(torch.from_numpy(logits).double(), -1)
    nll = -lp.gather(-1, torch.from_numpy(y)[..., None]).squeeze(-1).mean(0)
    np.testing.assert_allclose(record["loss"], nll.numpy(), atol=2e-4)


def test_loss_past_the_block_recomputed_by_hugging_faces_llama(static_manifest):
    """anatomy-llama's loss per position out to 256 tokens, twice its block, recomputed by
    transformers' LlamaForCausalLM holding the committed weights (RoPE has no last
    position; only its mask is longer)."""
    from tests.test_llama_recipe import as_hf

    llama = _entry(static_manifest, "anatomy-llama")
    record = llama["positions"]
    assert (record["length"], record["stride"], record["block_size"]) == (256, 257, 128)
    model = load_model(STATIC / llama["weights_file"], {**llama["config"], "block_size": 256})
    hf = as_hf(model)
    val = _val_ids()
    x, y = _windows(val, 256, 257)
    total = torch.zeros(256, dtype=torch.float64)
    with torch.no_grad():
        for i in range(0, len(x), 32):
            logits = hf(torch.from_numpy(x[i : i + 32])).logits.double()
            lp = torch.log_softmax(logits, -1)
            total += -lp.gather(-1, torch.from_numpy(y[i : i + 32])[..., None]).squeeze(-1).sum(0)
    np.testing.assert_allclose(record["loss"], (total / len(x)).numpy(), atol=2e-4)
    assert record["mean_inside_block"] == pytest.approx(
        float(np.mean(record["loss"][:128])), abs=1e-4
    )
    assert record["mean_past_block"] == pytest.approx(
        float(np.mean(record["loss"][128:])), abs=1e-4
    )


def test_quality_bar(entry, val_ids):
    """Validation cross-entropy at least 30% below the unigram baseline, recomputed here with
    ONNX Runtime and torch's own entropy, not read from the manifest."""
    counts = torch.bincount(torch.from_numpy(val_ids))
    unigram = torch.distributions.Categorical(probs=counts / counts.sum()).entropy().item()
    block = entry["config"]["block_size"]
    n = (len(val_ids) - 1) // block
    x = val_ids[: n * block].reshape(n, block)
    y = val_ids[1 : n * block + 1].reshape(n, block)
    sess = ort.InferenceSession(str(STATIC / entry["file"]), providers=["CPUExecutionProvider"])
    nll = []
    for i in range(0, n, 16):
        (logits,) = sess.run(["logits"], {"input_ids": x[i : i + 16]})
        lp = torch.log_softmax(torch.from_numpy(logits), -1)
        nll.append(-lp.gather(-1, torch.from_numpy(y[i : i + 16])[..., None]).squeeze(-1))
    val_loss = torch.cat(nll).mean().item()
    assert val_loss == pytest.approx(entry["training"]["val_loss"], abs=1e-3)
    assert unigram == pytest.approx(entry["training"]["unigram_entropy"], abs=1e-3)
    assert val_loss <= 0.7 * unigram


def test_committed_tokenizer_equals_tiktoken(entry, tok, val_ids):
    enc = tiktoken.Encoding(
        name="anatomy",
        pat_str=tok.pattern,
        mergeable_ranks=tok.ranks,
        special_tokens=tok.special_tokens,
    )
    _, val = corpus.split(corpus.load().text)
    assert enc.encode_ordinary(val) == val_ids.tolist()
    assert tok.vocab_size == entry["config"]["vocab_size"]


def test_samples_recorded(entry):
    assert len(entry["samples"]) >= 3
    for s in entry["samples"]:
        assert s["continuation"].strip(), s
