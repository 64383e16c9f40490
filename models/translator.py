"""anatomy-translator: a small encoder-decoder that writes numbers in words.

The encoder reads the digits with bidirectional self-attention; the decoder writes the words
with causal self-attention and cross-attention to the encoder's output (queries from the
decoder, keys and values from the encoder). The layers are Pre-LN and named as
``torch.nn.Transformer``'s (``norm_first=True``, GELU), so that its state dict loads into one
and the two can be checked against each other; the embeddings, learned positions and output
head are ours. Every attention's probabilities are returned, per layer and head.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models import numbers


@dataclass
class TranslatorConfig:
    src_vocab: int = len(numbers.SOURCE_TOKENS)
    tgt_vocab: int = len(numbers.TARGET_TOKENS)
    max_src: int = numbers.MAX_DIGITS
    max_tgt: int = numbers.MAX_WORDS + 1  # START and the words (the decoder's input)
    n_enc_layer: int = 2
    n_dec_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int = 256
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_head {self.n_head}")

    def to_dict(self) -> dict:
        return asdict(self)


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention``'s weights (packed in_proj, out_proj), our arithmetic: returns
    the output and the probabilities (batch, head, query, key)."""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x, source, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, T, C) asks; ``source`` (B, S, C) answers; ``mask`` (broadcast to
        (B, H, T, S)) is True where a query may not look."""
        B, T, C = x.shape
        H = self.n_head
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(x, w[:C], b[:C])
        k = F.linear(source, w[C : 2 * C], b[C : 2 * C])
        v = F.linear(source, w[2 * C :], b[2 * C :])
        q, k, v = (t.view(B, -1, H, C // H).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        probs = scores.softmax(dim=-1)
        y = (probs @ v).transpose(1, 2).reshape(B, T, C)
        return self.out_proj(y), probs


def _ff(layer, x: torch.Tensor) -> torch.Tensor:
    return layer.linear2(F.gelu(layer.linear1(x)))


class EncoderLayer(nn.Module):
    def __init__(self, c: TranslatorConfig):
        super().__init__()
        self.self_attn = MultiheadAttention(c.d_model, c.n_head)
        self.linear1 = nn.Linear(c.d_model, c.d_ff)
        self.linear2 = nn.Linear(c.d_ff, c.d_model)
        self.norm1 = nn.LayerNorm(c.d_model, eps=c.eps)
        self.norm2 = nn.LayerNorm(c.d_model, eps=c.eps)

    def forward(self, x, pad_mask=None):
        h = self.norm1(x)
        a, probs = self.self_attn(h, h, pad_mask)
        x = x + a
        return x + _ff(self, self.norm2(x)), probs


class DecoderLayer(nn.Module):
    def __init__(self, c: TranslatorConfig):
        super().__init__()
        self.self_attn = MultiheadAttention(c.d_model, c.n_head)
        self.multihead_attn = MultiheadAttention(c.d_model, c.n_head)
        self.linear1 = nn.Linear(c.d_model, c.d_ff)
        self.linear2 = nn.Linear(c.d_ff, c.d_model)
        self.norm1 = nn.LayerNorm(c.d_model, eps=c.eps)
        self.norm2 = nn.LayerNorm(c.d_model, eps=c.eps)
        self.norm3 = nn.LayerNorm(c.d_model, eps=c.eps)

    def forward(self, x, memory, causal, memory_mask=None):
        h = self.norm1(x)
        a, self_probs = self.self_attn(h, h, causal)
        x = x + a
        a, cross_probs = self.multihead_attn(self.norm2(x), memory, memory_mask)
        x = x + a
        return x + _ff(self, self.norm3(x)), self_probs, cross_probs


class Stack(nn.Module):
    """``nn.TransformerEncoder``/``Decoder``'s names: ``layers`` and the final ``norm``."""

    def __init__(self, layers: list[nn.Module], d_model: int, eps: float):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model, eps=eps)


class Translator(nn.Module):
    def __init__(self, config: TranslatorConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab, c.d_model)
        self.src_pos = nn.Embedding(c.max_src, c.d_model)
        self.tgt_embed = nn.Embedding(c.tgt_vocab, c.d_model)
        self.tgt_pos = nn.Embedding(c.max_tgt, c.d_model)
        self.encoder = Stack([EncoderLayer(c) for _ in range(c.n_enc_layer)], c.d_model, c.eps)
        self.decoder = Stack([DecoderLayer(c) for _ in range(c.n_dec_layer)], c.d_model, c.eps)
        self.head = nn.Linear(c.d_model, c.tgt_vocab, bias=False)
        for emb in (self.src_embed, self.src_pos, self.tgt_embed, self.tgt_pos):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Digit ids (B, S) -> the encoder's output (B, S, C) and its self-attention
        probabilities (layer, B, head, S, S). PAD (id 0) keys are masked: a batch may mix
        lengths."""
        pad = _pad_mask(src)
        x = self.src_embed(src) + self.src_pos(torch.arange(src.shape[1], device=src.device))
        probs = []
        for layer in self.encoder.layers:
            x, p = layer(x, pad)
            probs.append(p)
        return self.encoder.norm(x), torch.stack(probs)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src: torch.Tensor | None = None):
        """Word ids so far (B, T) and the encoder's output -> logits (B, T, V), the causal
        self-attention (layer, B, head, T, T) and the cross-attention (layer, B, head, T, S)
        probabilities. ``src`` masks the encoder's PAD positions (not needed for one number)."""
        T = tgt.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt.device).triu(1)
        memory_mask = None if src is None else _pad_mask(src)
        x = self.tgt_embed(tgt) + self.tgt_pos(torch.arange(T, device=tgt.device))
        self_probs, cross_probs = [], []
        for layer in self.decoder.layers:
            x, s, c = layer(x, memory, causal, memory_mask)
            self_probs.append(s)
            cross_probs.append(c)
        logits = self.head(self.decoder.norm(x))
        return logits, torch.stack(self_probs), torch.stack(cross_probs)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the logits of every next word given the true previous ones."""
        memory, _ = self.encode(src)
        return self.decode(tgt, memory, src)[0]

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        """Greedy decoding of a batch (B, S): (B, <= max_len) word ids after START, each row
        ending at its first END (later positions PAD)."""
        max_len = max_len or self.config.max_tgt
        memory, _ = self.encode(src)
        start, end = numbers.TARGET_IDS[numbers.START], numbers.TARGET_IDS[numbers.END]
        tgt = torch.full((src.shape[0], 1), start, dtype=torch.long)
        done = torch.zeros(src.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            nxt = self.decode(tgt, memory, src)[0][:, -1].argmax(-1)
            nxt = torch.where(done, torch.zeros_like(nxt), nxt)
            tgt = torch.cat([tgt, nxt[:, None]], dim=1)
            done |= nxt == end
            if done.all():
                break
        return tgt[:, 1:]


def _pad_mask(src: torch.Tensor) -> torch.Tensor | None:
    """(B, 1, 1, S): True at PAD keys."""
    return (src == numbers.SOURCE_IDS[numbers.PAD])[:, None, None, :]
