"""Optimisers as torch writes them, one step at a time over numpy state, and the 2-D loss
surfaces they race on. Pure numpy; js/optim.js is the page's twin.

Each step function takes the parameters, their gradient and the optimiser's state (None
before the first step) and returns the new parameters and state, with torch's parameter
names (``lr``, ``momentum``, ``betas``, ``eps``, ``weight_decay``). The difference the lesson
is about: ``adam_step`` adds weight decay to the gradient (L2 regularisation, torch's
``Adam(weight_decay=...)``), so Adam's per-coordinate scaling divides it too; ``adamw_step``
decays the weights directly, outside the adaptive update (Loshchilov & Hutter's decoupled
weight decay, torch's ``AdamW``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# a run that leaves this box is stopped there and called diverged (no inf, no NaN in a plot)
BOUND = 1e6


@dataclass(frozen=True)
class AdamState:
    step: int
    exp_avg: np.ndarray  # m: the running mean of the gradients
    exp_avg_sq: np.ndarray  # v: the running mean of their squares


def sgd_momentum_step(
    p,
    grad,
    state,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    dampening: float = 0.0,
):
    """torch.optim.SGD (nesterov off): g ← grad + wd·p; buf ← momentum·buf + (1 − dampening)·g
    (buf ← g on the first step); p ← p − lr·buf. State: the momentum buffer."""
    p, g = np.asarray(p, np.float64), np.asarray(grad, np.float64)
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        buf = g.copy() if state is None else momentum * state + (1 - dampening) * g
        g = buf
    else:
        buf = None
    return p - lr * g, buf


def _adam(p, g, state: AdamState | None, lr, betas, eps):
    b1, b2 = betas
    step = 1 if state is None else state.step + 1
    m0 = np.zeros_like(p) if state is None else state.exp_avg
    v0 = np.zeros_like(p) if state is None else state.exp_avg_sq
    m = b1 * m0 + (1 - b1) * g
    v = b2 * v0 + (1 - b2) * g * g
    # the bias corrections: m and v start at 0, so early averages are too small by these
    bc1, bc2 = 1 - b1**step, 1 - b2**step
    denom = np.sqrt(v) / np.sqrt(bc2) + eps
    return p - (lr / bc1) * m / denom, AdamState(step, m, v)


def adam_step(
    p,
    grad,
    state: AdamState | None,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
):
    """torch.optim.Adam: weight decay as L2, added to the gradient before the moments."""
    p, g = np.asarray(p, np.float64), np.asarray(grad, np.float64)
    if weight_decay:
        g = g + weight_decay * p
    return _adam(p, g, state, lr, betas, eps)


def adamw_step(
    p,
    grad,
    state: AdamState | None,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
):
    """torch.optim.AdamW: the weights shrink by lr·wd first, the moments see the bare
    gradient."""
    p, g = np.asarray(p, np.float64), np.asarray(grad, np.float64)
    return _adam(p * (1 - lr * weight_decay), g, state, lr, betas, eps)


def bias_correction(betas: tuple[float, float], step: int) -> tuple[float, float]:
    """1 − β1^t and 1 − β2^t: what m and v are divided by at step ``t`` (1-based)."""
    return 1 - betas[0] ** step, 1 - betas[1] ** step


# -- the surfaces --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Surface:
    name: str
    title: str
    loss: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    start: tuple[float, float]
    minimum: tuple[float, float]  # one of them (the saddle's valleys: y = ±1)
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 drawn


def _bowl_loss(p):
    return 0.5 * (p[0] ** 2 + 25.0 * p[1] ** 2)


def _bowl_grad(p):
    return np.array([p[0], 25.0 * p[1]])


def _rosen_loss(p):
    return (1 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


def _rosen_grad(p):
    return np.array(
        [-2 * (1 - p[0]) - 400.0 * p[0] * (p[1] - p[0] ** 2), 200.0 * (p[1] - p[0] ** 2)]
    )


def _saddle_loss(p):
    # a saddle point at the origin between two valleys, at y = ±1 (loss -1/4)
    return 0.5 * p[0] ** 2 - 0.5 * p[1] ** 2 + 0.25 * p[1] ** 4


def _saddle_grad(p):
    return np.array([p[0], p[1] ** 3 - p[1]])


SURFACES = {
    s.name: s
    for s in (
        Surface(
            "bowl",
            "An ill-conditioned bowl",
            _bowl_loss,
            _bowl_grad,
            (-4.0, 1.5),
            (0.0, 0.0),
            (-5.0, 5.0, -2.5, 2.5),
        ),
        Surface(
            "rosenbrock",
            "Rosenbrock's valley",
            _rosen_loss,
            _rosen_grad,
            (-1.5, 2.0),
            (1.0, 1.0),
            (-2.0, 2.0, -1.0, 3.0),
        ),
        Surface(
            "saddle",
            "A saddle and two valleys",
            _saddle_loss,
            _saddle_grad,
            (-3.0, 1e-3),
            (0.0, 1.0),
            (-3.5, 3.5, -2.0, 2.0),
        ),
    )
}


@dataclass(frozen=True)
class Run:
    path: np.ndarray  # (steps + 1, 2): the start, then after every step
    losses: np.ndarray  # (steps + 1,)
    diverged_at: int | None  # the step the run left the BOUND box (its path stops there)
    states: list  # the optimiser's state after every step


def race(surface: str, optimizer: str, steps: int, **hyper) -> Run:
    """``steps`` steps of ``optimizer`` ("sgd", "adam" or "adamw", with torch's
    hyper-parameters) on ``surface`` from its start. A run whose parameters leave ±BOUND (or
    turn non-finite) stops there: the path and losses end at the last finite point."""
    s = SURFACES[surface]
    step_fn = {"sgd": sgd_momentum_step, "adam": adam_step, "adamw": adamw_step}[optimizer]
    p = np.array(s.start, dtype=np.float64)
    path, losses, states, state = [p.copy()], [s.loss(p)], [], None
    diverged = None
    for t in range(1, steps + 1):
        new, state = step_fn(p, s.grad(p), state, **hyper)
        if not np.all(np.isfinite(new)) or np.max(np.abs(new)) > BOUND:
            diverged = t
            break
        p = new
        path.append(p.copy())
        losses.append(s.loss(p))
        states.append(state)
    return Run(np.array(path), np.array(losses), diverged, states)


def check_hyper(
    lr: float,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> list[str]:
    """Messages for hyper-parameters out of range (torch's own checks): lr > 0, each β in
    [0, 1), ε > 0, weight decay ≥ 0, momentum in [0, 1). Empty when all are fine."""
    out = []
    finite = lambda x: isinstance(x, (int, float)) and np.isfinite(x)  # noqa: E731
    if not (finite(lr) and lr > 0):
        out.append(f"learning rate: {lr} is not > 0")
    for name, b in (("β1", betas[0]), ("β2", betas[1])):
        if not (finite(b) and 0 <= b < 1):
            out.append(f"{name}: {b} is not in [0, 1)")
    if not (finite(eps) and eps > 0):
        out.append(f"ε: {eps} is not > 0")
    if not (finite(weight_decay) and weight_decay >= 0):
        out.append(f"weight decay: {weight_decay} is not ≥ 0")
    if not (finite(momentum) and 0 <= momentum < 1):
        out.append(f"momentum: {momentum} is not in [0, 1)")
    return out
