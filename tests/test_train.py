"""Training: schedule, baseline, determinism, and that the loss really falls."""

import numpy as np
import pytest
import torch

from models.gpt import GPT, GPTConfig
from models.train import Recording, TrainConfig, evaluate, lr_at, train, unigram_entropy


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx(5.5e-4)  # halfway down the cosine
    assert lr_at(100, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_unigram_entropy_matches_torch():
    ids = np.random.default_rng(0).integers(0, 50, 5000) ** 2 % 37
    counts = torch.bincount(torch.from_numpy(ids))
    ref = torch.distributions.Categorical(probs=counts / counts.sum()).entropy().item()
    assert unigram_entropy(ids) == pytest.approx(ref, rel=1e-6)


def _data(seed: int, n: int) -> np.ndarray:
    """A learnable sequence: a noisy repeating pattern over 20 symbols."""
    rng = np.random.default_rng(seed)
    base = np.tile(np.arange(20), n // 20 + 1)[:n]
    noise = rng.random(n) < 0.05
    return np.where(noise, rng.integers(0, 20, n), base).astype(np.int32)


MODEL = GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=16)
QUICK = TrainConfig(steps=60, batch_size=8, warmup_steps=5, lr=1e-2, min_lr=1e-3)


def test_training_is_deterministic():
    a = train(MODEL, _data(0, 4000), _data(1, 600), QUICK, progress=False)
    b = train(MODEL, _data(0, 4000), _data(1, 600), QUICK, progress=False)
    assert a.history == b.history
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_training_learns_the_pattern():
    result = train(MODEL, _data(0, 4000), _data(1, 600), QUICK, progress=False)
    assert result.history[0][1] > 2.5  # about ln(20) = 3.0 at the start
    assert result.val_loss < 0.6 * result.unigram_entropy
    assert result.improvement_over_unigram > 0.4


def test_evaluate_equals_mean_cross_entropy():
    result = train(MODEL, _data(0, 4000), _data(1, 600), QUICK, progress=False)
    val = _data(2, 16 * 5 + 1)
    x = torch.from_numpy(val[:-1].astype(np.int64)).view(5, 16)
    y = torch.from_numpy(val[1:].astype(np.int64)).view(5, 16)
    with torch.no_grad():
        logits = result.model(x)[0]
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 20), y.reshape(-1)).item()
    assert evaluate(result.model, val) == pytest.approx(ref, rel=1e-5)


def test_too_little_data_is_a_clear_error():
    with pytest.raises(ValueError, match="block size"):
        train(MODEL, _data(0, 10), _data(1, 600), QUICK, progress=False)


def test_recording_a_run_leaves_its_weights_alone():
    """The evaluations and kept gradients draw nothing from the batch generator."""
    plain = train(MODEL, _data(0, 4000), _data(1, 600), QUICK, progress=False)
    rec = Recording(eval_every=7, grad_steps=(0, 30))
    kept = train(MODEL, _data(0, 4000), _data(1, 600), QUICK, progress=False, recording=rec)
    assert kept.history == plain.history
    for pa, pb in zip(plain.model.parameters(), kept.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert [s for s, _ in kept.val_history] == [*range(0, QUICK.steps, 7), QUICK.steps]
    assert kept.val_history[-1][1] == kept.val_loss
    assert sorted(kept.grads) == [0, 30]


def test_a_runs_record_agrees_with_torch():
    rec = Recording(eval_every=10, grad_steps=(0, 59))
    r = train(MODEL, _data(0, 4000), _data(1, 600), QUICK, progress=False, recording=rec)
    assert r.lrs == pytest.approx([lr_at(s, QUICK) for s in range(QUICK.steps)])
    # the initial weights: the same seed draws them again
    torch.manual_seed(QUICK.seed)
    fresh = GPT(MODEL)
    every = torch.cat([p.detach().reshape(-1) for p in fresh.parameters()])
    assert r.weight_norms[0] == pytest.approx(torch.linalg.vector_norm(every).item(), rel=1e-6)
    assert r.val_history[0][1] == pytest.approx(evaluate(fresh, _data(1, 600)), rel=1e-6)
    assert r.weight_norms[-1] != r.weight_norms[0]
    # the kept gradient is the one clip_grad_norm_ measured, before clipping
    for step in (0, 59):
        norm = np.linalg.norm(r.grads[step].astype(np.float64))
        assert norm == pytest.approx(r.grad_norms[step], rel=1e-5)
        assert len(r.grads[step]) == fresh.num_params()
