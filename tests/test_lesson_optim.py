"""The optimisers' steps against torch.optim stepped on the same gradients for hundreds of
steps (float64, within 1e-6 relative), and the surfaces' gradients against autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dashboard.lessons import optim as O


def _torch_run(kind: str, surface: str, steps: int, **hyper) -> np.ndarray:
    s = O.SURFACES[surface]
    p = torch.tensor(s.start, dtype=torch.float64, requires_grad=True)
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    opt = cls([p], **hyper)
    path = [p.detach().numpy().copy()]
    for _ in range(steps):
        opt.zero_grad()
        p.grad = torch.from_numpy(s.grad(p.detach().numpy()))  # the same gradient as ours
        opt.step()
        path.append(p.detach().numpy().copy())
    return np.array(path)


CASES = [
    ("sgd", "bowl", dict(lr=0.03, momentum=0.9)),
    ("sgd", "rosenbrock", dict(lr=1e-4, momentum=0.8, weight_decay=0.1)),
    ("sgd", "saddle", dict(lr=0.05, momentum=0.5, dampening=0.1)),
    ("adam", "bowl", dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8)),
    ("adam", "rosenbrock", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.5)),
    ("adam", "saddle", dict(lr=0.1, betas=(0.0, 0.9), eps=1e-3, weight_decay=0.2)),
    ("adamw", "bowl", dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.5)),
    ("adamw", "rosenbrock", dict(lr=0.02, betas=(0.95, 0.9), eps=1e-8, weight_decay=0.01)),
    ("adamw", "saddle", dict(lr=0.1, betas=(0.5, 0.5), eps=1e-4, weight_decay=1.0)),
]


@pytest.mark.parametrize(("kind", "surface", "hyper"), CASES)
def test_each_optimiser_steps_as_torch_does(kind, surface, hyper):
    steps = 300
    ours = O.race(surface, kind, steps, **hyper)
    assert ours.diverged_at is None
    want = _torch_run(kind, surface, steps, **hyper)
    np.testing.assert_allclose(ours.path, want, rtol=1e-6, atol=1e-12)


def test_adams_moments_are_torchs_state():
    hyper = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.3)
    s = O.SURFACES["bowl"]
    p = torch.tensor(s.start, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], **hyper)
    run = O.race("bowl", "adam", 40, **hyper)
    for t in range(40):
        p.grad = torch.from_numpy(s.grad(p.detach().numpy()))
        opt.step()
        st = opt.state[p]
        assert run.states[t].step == int(st["step"]) == t + 1
        np.testing.assert_allclose(run.states[t].exp_avg, st["exp_avg"].numpy(), rtol=1e-9)
        np.testing.assert_allclose(run.states[t].exp_avg_sq, st["exp_avg_sq"].numpy(), rtol=1e-9)
    assert O.bias_correction((0.8, 0.95), 3) == pytest.approx((1 - 0.8**3, 1 - 0.95**3))


def test_l2_and_decoupled_decay_differ_and_without_decay_agree():
    a = O.race("rosenbrock", "adam", 200, lr=0.02, weight_decay=0.0)
    w = O.race("rosenbrock", "adamw", 200, lr=0.02, weight_decay=0.0)
    np.testing.assert_allclose(a.path, w.path, rtol=0, atol=0)
    a = O.race("rosenbrock", "adam", 200, lr=0.02, weight_decay=1.0)
    w = O.race("rosenbrock", "adamw", 200, lr=0.02, weight_decay=1.0)
    assert np.abs(a.path[-1] - w.path[-1]).max() > 0.1


@pytest.mark.parametrize("surface", list(O.SURFACES))
def test_the_surfaces_gradients_are_autograds(surface):
    s = O.SURFACES[surface]
    for point in ([0.3, -0.7], [-1.2, 2.1], list(s.start)):
        p = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        loss = {
            "bowl": lambda q: 0.5 * (q[0] ** 2 + 25 * q[1] ** 2),
            "rosenbrock": lambda q: (1 - q[0]) ** 2 + 100 * (q[1] - q[0] ** 2) ** 2,
            "saddle": lambda q: 0.5 * q[0] ** 2 - 0.5 * q[1] ** 2 + 0.25 * q[1] ** 4,
        }[surface](p)
        loss.backward()
        assert s.loss(np.array(point)) == pytest.approx(loss.item())
        np.testing.assert_allclose(s.grad(np.array(point)), p.grad.numpy(), rtol=1e-12)


def test_a_diverging_run_stops_finite():
    run = O.race("bowl", "sgd", 500, lr=1.0, momentum=0.9)  # 25·lr > 2: it blows up
    assert run.diverged_at is not None and run.diverged_at < 500
    assert np.all(np.isfinite(run.path)) and np.all(np.isfinite(run.losses))
    assert len(run.path) == run.diverged_at


@pytest.mark.parametrize(
    ("hyper", "words"),
    [
        (dict(lr=0), "learning rate"),
        (dict(lr=-1), "learning rate"),
        (dict(lr=0.1, betas=(1.0, 0.9)), "β1"),
        (dict(lr=0.1, betas=(0.9, -0.1)), "β2"),
        (dict(lr=0.1, eps=0), "ε"),
        (dict(lr=0.1, weight_decay=-1), "weight decay"),
        (dict(lr=float("nan")), "learning rate"),
    ],
)
def test_out_of_range_hyper_parameters_are_named(hyper, words):
    (message,) = O.check_hyper(**hyper)
    assert words in message
    assert O.check_hyper(lr=0.1) == []
