"""Training loop: seeded, deterministic, AdamW with warm-up and cosine decay, progress bar.

A mixture-of-experts model (``mlp="moe"``) minimises cross-entropy plus
``router_aux_loss_coef`` times the router's load-balancing loss, as Mixtral's training does;
the losses it reports are cross-entropy alone, comparable with a dense model's, and the balance
beside them (``routing``: the balance on the validation split and each expert's share)."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from models.gpt import GPT, GPTConfig, load_balancing_loss


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults train the teaching model in minutes on 2 cores."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1337
    threads: int = 2  # fixed, because CPU reductions depend on the thread count

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Recording:
    """What a run records beside its training loss; none of it changes the weights (the
    evaluations draw nothing from the batch generator, and the model has no dropout)."""

    eval_every: int = 0  # the validation loss every N steps too (0: only at the end)
    grad_steps: tuple[int, ...] = ()  # steps whose whole gradient (before clipping) is kept


@dataclass
class TrainResult:
    model: GPT
    train_loss: float  # mean over the last 50 steps
    val_loss: float  # over the whole validation split
    unigram_entropy: float  # entropy of the validation tokens' own frequencies (nats)
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    grad_norms: list[float] = field(default_factory=list)  # every step's, before clipping
    # at step 0 (the initial weights, the first batch): each block's gradient norm
    init_block_grad_norms: list[float] = field(default_factory=list)
    # a mixture of experts: the load-balancing loss, mean over the last 50 steps, and
    # ``routing(model, val_ids)``; None for a dense model
    balance_loss: float | None = None
    routing: dict | None = None
    lrs: list[float] = field(default_factory=list)  # every step's learning rate
    # every step's L2 norm of all the weights, those the step's loss was computed with
    weight_norms: list[float] = field(default_factory=list)
    # (step, validation loss) of the weights after ``step`` updates: every ``eval_every``, and
    # the end; the last is ``val_loss``
    val_history: list[tuple[int, float]] = field(default_factory=list)
    # step -> every parameter's gradient at that step, before clipping, flattened in
    # ``named_parameters`` order (float32)
    grads: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def improvement_over_unigram(self) -> float:
        """How far validation cross-entropy is below the unigram baseline, as a fraction."""
        return 1.0 - self.val_loss / self.unigram_entropy


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr`` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def unigram_entropy(ids: np.ndarray) -> float:
    """Entropy (nats) of the tokens' empirical distribution: the loss of a model that
    ignores context and always predicts the validation split's own frequencies."""
    counts = np.bincount(ids)
    p = counts[counts > 0] / len(ids)
    return float(-(p * np.log(p)).sum())


def _configure_determinism(cfg: TrainConfig) -> torch.Generator:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(cfg.seed)


def _batch(data: torch.Tensor, block: int, batch: int, gen: torch.Generator):
    starts = torch.randint(len(data) - block - 1, (batch,), generator=gen)
    x = torch.stack([data[s : s + block] for s in starts])
    y = torch.stack([data[s + 1 : s + 1 + block] for s in starts])
    return x, y


@torch.no_grad()
def evaluate(model: GPT, ids: np.ndarray, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy over every token of ``ids``, in non-overlapping windows."""
    model.eval()
    block = model.config.block_size
    data = torch.from_numpy(ids.astype(np.int64))
    n = (len(data) - 1) // block
    if n == 0:
        raise ValueError(f"validation split has {len(ids)} tokens; need more than {block}")
    x = data[: n * block].view(n, block)
    y = data[1 : n * block + 1].view(n, block)
    total = 0.0
    for i in range(0, n, batch_size):
        total += model.loss(x[i : i + batch_size], y[i : i + batch_size]).item() * len(
            x[i : i + batch_size]
        )
    return total / n


@torch.no_grad()
def routing(model: GPT, ids: np.ndarray, batch_size: int = 32) -> dict:
    """How a mixture of experts routes the tokens of ``ids`` (the windows ``evaluate`` reads):
    ``balance_loss``, the load-balancing loss over all of them (every layer pooled, as in
    training), and ``expert_share`` (n_layer, n_expert): in each layer, the fraction of the
    top-k choices that went to each expert (a row sums to 1; 1 / n_expert is even)."""
    model.eval()
    c = model.config
    block = c.block_size
    data = torch.from_numpy(ids.astype(np.int64))
    n = (len(data) - 1) // block
    x = data[: n * block].view(n, block)
    logits, chosen = [], []
    for i in range(0, n, batch_size):
        out = model.outputs(x[i : i + batch_size])
        logits.append(out["router_logits"])  # (B, L, T, E)
        chosen.append(out["experts"])  # (B, L, T, k)
    router = torch.cat(logits).transpose(0, 1)  # (L, N, T, E)
    chosen = torch.cat(chosen).transpose(0, 1)
    counts = F.one_hot(chosen, c.n_expert).sum((1, 2, 3)).double()  # (L, E)
    return {
        "balance_loss": load_balancing_loss(router, c.expert_top_k).item(),
        "expert_share": (counts / counts.sum(-1, keepdim=True)).tolist(),
        "tokens": n * block,
    }


@torch.no_grad()
def loss_by_position(
    model: GPT, ids: np.ndarray, length: int, stride: int | None = None, batch_size: int = 16
) -> dict:
    """Mean next-token cross-entropy (nats) at each position 0 .. length - 1 of the windows of
    ``ids`` that start every ``stride`` tokens (default ``length``: non-overlapping): how much
    the model gains from context, position by position. Two models given the same ``stride``
    read the same windows, whatever ``length`` each is asked about.

    ``length`` may exceed the block size only for rotary positions (nothing in the model is
    tied to a position); a learned position table has no row past its last, so it is refused.
    """
    config = model.config
    if length > config.block_size:
        if config.positions != "rope":
            raise ValueError(
                f"learned positions stop at {config.block_size}: a model without a position "
                f"vector past it cannot be asked about {length} tokens"
            )
        longer = GPT(dataclasses.replace(config, block_size=length))  # only the mask grows
        longer.load_state_dict(model.state_dict())
        model = longer
    model.eval()
    stride = stride or length
    if stride < length:
        raise ValueError(f"windows of {length} tokens every {stride} would overlap")
    data = torch.from_numpy(ids.astype(np.int64))
    n = (len(data) - 1) // stride
    if n == 0:
        raise ValueError(f"{len(ids)} tokens hold no window of {stride + 1}")
    starts = torch.arange(n) * stride
    x = torch.stack([data[s : s + length] for s in starts])
    y = torch.stack([data[s + 1 : s + 1 + length] for s in starts])
    total = torch.zeros(length, dtype=torch.float64)
    for i in range(0, n, batch_size):
        logits = model(x[i : i + batch_size])[0]
        nll = F.cross_entropy(logits.transpose(1, 2), y[i : i + batch_size], reduction="none")
        total += nll.sum(0).double()
    return {"length": length, "stride": stride, "windows": n, "loss": (total / n).tolist()}


def train(
    model_config: GPTConfig,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    cfg: TrainConfig | None = None,
    progress: bool = True,
    recording: Recording | None = None,
) -> TrainResult:
    """Train a fresh GPT on ``train_ids`` and evaluate it on ``val_ids``; ``recording`` says
    what is kept of the run beside the loss, learning rate and norms of every step."""
    cfg = cfg or TrainConfig()
    recording = recording or Recording()
    if len(train_ids) <= model_config.block_size + 1:
        raise ValueError(
            f"training split has {len(train_ids)} tokens; need more than the block size "
            f"({model_config.block_size})"
        )
    gen = _configure_determinism(cfg)
    model = GPT(model_config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    data = torch.from_numpy(train_ids.astype(np.int64))
    history: list[tuple[int, float]] = []
    grad_norms: list[float] = []
    init_blocks: list[float] = []
    recent: list[float] = []
    balances: list[float] = []
    lrs: list[float] = []
    weight_norms: list[float] = []
    val_history: list[tuple[int, float]] = []
    grads: dict[int, np.ndarray] = {}
    coef = model_config.router_aux_loss_coef
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="train", unit="step", disable=not progress)
    model.train()
    for step in bar:
        if recording.eval_every and step % recording.eval_every == 0:
            val_history.append((step, evaluate(model, val_ids)))
            model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        lrs.append(lr_at(step, cfg))
        weight_norms.append(weight_norm(model))
        x, y = _batch(data, model_config.block_size, cfg.batch_size, gen)
        loss, balance = model.losses(x, y)
        objective = loss if balance is None else loss + coef * balance
        opt.zero_grad(set_to_none=True)
        objective.backward()
        if step == 0:
            init_blocks = block_grad_norms(model)
        if step in recording.grad_steps:
            grads[step] = flat_grad(model)
        total = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        grad_norms.append(total.item())
        opt.step()
        recent = (recent + [loss.item()])[-50:]
        history.append((step, loss.item()))
        shown = {"loss": f"{sum(recent) / len(recent):.3f}"}
        if balance is not None:
            balances = (balances + [balance.item()])[-50:]
            shown["balance"] = f"{sum(balances) / len(balances):.3f}"
        bar.set_postfix(**shown, lr=f"{lr_at(step, cfg):.1e}")
    bar.close()
    val = evaluate(model, val_ids)
    val_history.append((cfg.steps, val))
    seconds = time.perf_counter() - t0  # training and the validation loss, as for every model
    routed = routing(model, val_ids) if model_config.mlp == "moe" else None
    model.eval()
    return TrainResult(
        model=model,
        train_loss=sum(recent) / len(recent),
        val_loss=val,
        unigram_entropy=unigram_entropy(val_ids),
        seconds=seconds,
        history=history,
        grad_norms=grad_norms,
        init_block_grad_norms=init_blocks,
        balance_loss=sum(balances) / len(balances) if balances else None,
        routing=routed,
        lrs=lrs,
        weight_norms=weight_norms,
        val_history=val_history,
        grads=grads,
    )


@torch.no_grad()
def weight_norm(model: GPT) -> float:
    """The L2 norm of all the model's parameters together (tied weights counted once)."""
    return torch.linalg.vector_norm(torch.cat([p.reshape(-1) for p in model.parameters()])).item()


def flat_grad(model: GPT) -> np.ndarray:
    """Every parameter's gradient, flattened in ``named_parameters`` order (zeros where a
    parameter has none), as float32."""
    parts = [
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
        for p in model.parameters()
    ]
    return torch.cat(parts).detach().float().numpy().copy()


def block_grad_norms(model: GPT) -> list[float]:
    """The L2 norm of the gradient of each block's parameters (after a backward pass)."""
    norms = []
    for block in model.h:
        grads = [p.grad.reshape(-1) for p in block.parameters() if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.cat(grads)).item() if grads else 0.0)
    return norms
