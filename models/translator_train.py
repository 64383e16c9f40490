"""Training anatomy-translator: teacher forcing on numbers drawn fresh at every step.

Every batch is new numbers from :func:`models.numbers.training_numbers` (none of the held-out
ones), the loss is cross-entropy on every next word given the true previous words, AdamW
with a warm-up and a cosine decay. Judged by exact match of greedy decoding on the held-out
numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from models import numbers
from models.train import TrainConfig, lr_at
from models.translator import Translator, TranslatorConfig


@dataclass
class TranslatorTraining(TrainConfig):
    """The GPTs' optimisation settings, with the translator's defaults and its held-out count."""

    batch_size: int = 128
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    held_out: int = 2000


@dataclass
class TranslatorResult:
    model: Translator
    losses: list[float] = field(default_factory=list)
    accuracy: float = 0.0  # exact match on the held-out numbers, greedy
    wrong: list[dict] = field(default_factory=list)  # some held-out misses
    round_accuracy: float = 0.0  # the same on the held-out round numbers
    round_wrong: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def batch(ns: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source ids, decoder input (START + words) and targets (words + END), PAD-padded."""
    src = numbers.pad([numbers.source_ids(str(n)) for n in ns])
    tgt = numbers.pad([numbers.target_ids(int(n)) for n in ns])
    return torch.from_numpy(src), torch.from_numpy(tgt[:, :-1]), torch.from_numpy(tgt[:, 1:])


def loss_of(model: Translator, src, tgt_in, tgt_out) -> torch.Tensor:
    logits = model(src, tgt_in)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        tgt_out.reshape(-1),
        ignore_index=numbers.TARGET_IDS[numbers.PAD],
    )


def decoded_text(ids) -> str:
    """Greedy ids (after START) as text, up to the first END."""
    toks = []
    for i in ids:
        tok = numbers.TARGET_TOKENS[int(i)]
        if tok == numbers.END:
            break
        toks.append(tok)
    return numbers.join(toks)


def accuracy(model: Translator, ns: np.ndarray, batch_size: int = 500) -> tuple[float, list[dict]]:
    """Exact-match share of greedy translations of ``ns``, and the misses."""
    model.eval()
    wrong = []
    for i in range(0, len(ns), batch_size):
        chunk = ns[i : i + batch_size]
        src = torch.from_numpy(numbers.pad([numbers.source_ids(str(n)) for n in chunk]))
        for n, row in zip(chunk, model.greedy(src).tolist(), strict=True):
            got = decoded_text(row)
            if got != numbers.words(int(n)):
                wrong.append({"number": int(n), "got": got, "want": numbers.words(int(n))})
    return 1 - len(wrong) / len(ns), wrong


def train(config: TranslatorConfig, cfg: TranslatorTraining, progress: bool = True):
    """Train a translator of ``config``; seeded, so the same settings give the same weights."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    held = numbers.held_out(cfg.held_out)
    held_round = numbers.held_out_round(cfg.held_out // 4)
    model = Translator(config)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TranslatorResult(model)
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="translator", unit="step", disable=not progress)
    exclude = np.concatenate([held, held_round])
    model.train()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = loss_of(model, *batch(numbers.training_numbers(rng, cfg.batch_size, exclude)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        result.losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(result.losses[-50:]):.3f}")
    bar.close()
    result.accuracy, wrong = accuracy(model, held)
    result.wrong = wrong[:20]
    result.round_accuracy, wrong = accuracy(model, held_round)
    result.round_wrong = wrong[:20]
    result.seconds = time.perf_counter() - t0
    return result
