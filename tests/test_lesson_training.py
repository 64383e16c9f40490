"""The next-token loss against torch's cross_entropy and Hugging Face's own loss (labels=)
on the model's real logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dashboard.lessons import training as TR
from models.runtime import STATIC_DIR, Engine

TEXT = "Return the value of the named attribute of object. If the attribute does not exist"


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def test_token_losses_are_torchs_cross_entropy_on_the_models_logits(engine):
    model = engine.default_model
    ids = engine.tokenizer(model).encode(TEXT)
    logits = engine.run(model, ids).logits
    got = TR.token_losses(logits, ids)
    want = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits[:-1].astype(np.float64)), torch.tensor(ids[1:]), reduction="none"
    )
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)
    summary = TR.text_loss(logits, ids)
    assert summary.mean == pytest.approx(float(want.mean()))
    assert summary.perplexity == pytest.approx(float(torch.exp(want.mean())))
    np.testing.assert_allclose(summary.probs, torch.exp(-want).numpy())
    assert summary.surprising == [int(i) for i in torch.argsort(want, descending=True)[:3]]


def test_the_mean_is_hugging_faces_loss_with_labels():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 50, (1, 12))
    with torch.no_grad():
        out = model(ids, labels=ids)  # Hugging Face shifts the labels itself
    losses = TR.token_losses(out.logits[0].double().numpy(), ids[0].numpy())
    assert losses.mean() == pytest.approx(float(out.loss), rel=1e-6)


def test_a_one_token_text_has_no_target():
    with pytest.raises(ValueError, match="one token has no next token"):
        TR.token_losses(np.zeros((1, 5)), [3])
    with pytest.raises(ValueError, match="must be"):
        TR.token_losses(np.zeros((3, 5)), [1, 2])
