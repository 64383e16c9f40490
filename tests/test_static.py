"""The committed default artifacts in static/: intact, faithful to torch, and good enough."""

import numpy as np
import onnxruntime as ort
import pytest
import tiktoken
import torch

from models import corpus
from models.bpe import Tokenizer
from models.checkpoint import load_model
from models.export import parity
from models.runtime import sha256_file

from .conftest import STATIC


@pytest.fixture(scope="module")
def entry(static_manifest) -> dict:
    return next(m for m in static_manifest["models"] if m["name"] == "anatomy-gpt")


@pytest.fixture(scope="module")
def tok(entry) -> Tokenizer:
    return Tokenizer.load(STATIC, entry["tokenizer"]["name"])


@pytest.fixture(scope="module")
def val_ids(entry, tok) -> np.ndarray:
    text = corpus.load().text
    assert corpus.load().sha256 == entry["corpus"]["sha256"], "corpus reads deterministically"
    _, val = corpus.split(text)
    return np.asarray(tok.encode(val), dtype=np.int64)


def test_files_match_manifest(entry):
    assert sha256_file(STATIC / entry["file"]) == entry["sha256"]
    assert not list(STATIC.glob("*.onnx.data")), "single-file ONNX"


def test_committed_onnx_matches_torch(entry):
    """The committed ONNX file against torch with the committed weights, T = 1, 64, 128."""
    model = load_model(STATIC / entry["weights_file"], entry["config"])
    errors = parity(model, STATIC / entry["file"], seed=1)
    assert max(errors.values()) <= 1e-4, errors


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
