"""A small GPT whose attention shows its work, in two recipes.

nanoGPT-style decoder: token + learned position embeddings, pre-LayerNorm blocks, causal
self-attention computed explicitly (so the scaled scores and the probabilities are tensors we
can return), a GELU MLP, a final LayerNorm and an LM head tied to the token embedding.

The same module builds the LLaMA recipe from its config: RMSNorm instead of LayerNorm, rotary
positions (Hugging Face's half-split layout) instead of learned ones, a SwiGLU MLP, fewer key /
value heads than query heads (grouped-query attention; 1 is multi-query), no biases. With
``mlp="moe"`` every block's MLP is Mixtral's mixture of experts instead: a router sends each
token to its top-k of ``n_expert`` SwiGLU MLPs, and training adds the router's load-balancing
loss (``load_balancing_loss``, Switch Transformer's, as Hugging Face's Mixtral computes it).

``forward`` returns the four tensors every lesson draws: ``logits`` (B, T, V),
``attn_scores`` (B, L, H, T, T) = q·k/√d_head before the mask, ``attn_probs`` (B, L, H, T, T)
after the mask and softmax, and ``hidden`` (B, L+1, T, C), the residual stream after the
embeddings and after every block. ``outputs`` adds the inside of every block (q, k, v, each
head's output, the stream between the sublayers, the MLP's activations or the router's
choices): the ONNX export's named outputs, listed in models/contract.py. ``decode`` is one step
with a KV cache.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    """Shape of the model. The defaults are the teaching model (see README: "The model")."""

    vocab_size: int = 1025  # 1024 BPE tokens + <|endoftext|>
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    bias: bool = True
    layer_norm_eps: float = 1e-5
    # "none" is PyTorch's exact erf GELU; "tanh" is GPT-2's approximation (Hugging Face gelu_new)
    gelu_approximate: str = "none"
    # -- the LLaMA recipe's choices (the defaults are GPT-2's) --
    norm: str = "layernorm"  # or "rmsnorm" (eps: layer_norm_eps)
    positions: str = "learned"  # or "rope"
    rope_base: float = 10000.0
    mlp: str = "gelu"  # or "swiglu", or "moe" (a mixture of SwiGLU experts)
    n_kv_head: int | None = None  # key/value heads; None: one per query head (MHA)
    # None: 4·n_embd for GELU, LLaMA's rule for SwiGLU; for "moe" the width of each expert
    mlp_hidden: int | None = None
    multiple_of: int = 32  # LLaMA's rule rounds the SwiGLU width up to a multiple of this
    qkv_bias: bool = False  # biases on the q, k, v projection only (Qwen2), whatever ``bias`` says
    # "pre": x + sublayer(norm(x)) (GPT-2, LLaMA); "post": norm(x + sublayer(x)) (the original
    # Transformer, BERT). The final norm before the LM head stays in both.
    norm_position: str = "pre"
    # -- the mixture of experts (mlp="moe"; Mixtral's num_local_experts, num_experts_per_tok,
    # router_aux_loss_coef); a dense MLP ignores them --
    n_expert: int = 4
    expert_top_k: int = 2
    router_aux_loss_coef: float = 0.01  # the load-balancing loss's weight in training

    def __post_init__(self) -> None:
        for name, allowed in (
            ("norm", ("layernorm", "rmsnorm")),
            ("positions", ("learned", "rope")),
            ("mlp", ("gelu", "swiglu", "moe")),
            ("norm_position", ("pre", "post")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if self.mlp == "moe" and not 1 <= self.expert_top_k <= self.n_expert:
            raise ValueError(
                f"expert_top_k ({self.expert_top_k}) must lie in 1 .. n_expert ({self.n_expert})"
            )
        if self.n_embd % self.n_head:
            raise ValueError("n_embd must be a multiple of n_head")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head")
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError("rotary positions need an even head size")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def hidden(self) -> int:
        """The MLP's width (each expert's, for a mixture): 4·C for GELU; for SwiGLU LLaMA's 2/3
        of that (its three matrices then hold as many weights as GELU's two), rounded up to
        ``multiple_of``."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "gelu":
            return 4 * self.n_embd
        width = int(2 * 4 * self.n_embd / 3)
        return self.multiple_of * -(-width // self.multiple_of)

    def to_dict(self) -> dict:
        return asdict(self)


def norm_layer(config: GPTConfig) -> nn.Module:
    """LayerNorm (GPT-2) or RMSNorm (LLaMA: no mean subtracted, no bias)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)


def rope_tables(T: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (T, head_dim) of the rotation at each position, in Hugging Face's layout:
    dimension i and i + head_dim/2 form one rotating pair, at frequency base^(-2i/head_dim)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (i, i + d/2) pair of ``x`` (..., T, d) by its position's angle."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, each stage explicit rather than fused. With fewer
    key/value heads than query heads, query head h reads key/value head h // (n_head/n_kv).

    ``forward(x, past)`` returns the output and a dict of the stages (the contract's per-layer
    tensors); ``past`` is this layer's cached (k, v) of the earlier positions, already rotated,
    as the KV cache keeps them."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        self.rope = config.positions == "rope"
        self.rope_base = config.rope_base
        kv = self.n_kv * self.head_dim
        # one projection for q, k and v (C + 2·kv outputs; 3·C for multi-head attention)
        self.c_attn = nn.Linear(
            config.n_embd, config.n_embd + 2 * kv, bias=config.bias or config.qkv_bias
        )
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        causal = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("causal", causal, persistent=False)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        B, T, C = x.shape
        P = 0 if past is None else past[0].shape[2]  # positions already in the cache
        kv = self.n_kv * self.head_dim
        q, k, v = self.c_attn(x).split([C, kv, kv], dim=2)
        # (B, T, heads·d) -> (B, heads, T, d): each head attends independently
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k, v = (t.view(B, T, self.n_kv, self.head_dim).transpose(1, 2) for t in (k, v))
        stages = {}
        if self.rope:
            stages["q_before_rope"], stages["k_before_rope"] = q, k
            cos, sin = rope_tables(P + T, self.head_dim, self.rope_base)
            q, k = rotate(q, cos[P:], sin[P:]), rotate(k, cos[P:], sin[P:])
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        stages.update(q=q, k=k, v=v)
        if self.n_kv != self.n_head:  # each key/value head serves a group of query heads
            k, v = (t.repeat_interleave(self.n_head // self.n_kv, dim=1) for t in (k, v))
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        # decoding (a past given) is one token at a time: it sees every cached position
        causal = self.causal[:T, :T]
        masked = scores if past is not None else scores.masked_fill(~causal, float("-inf"))
        probs = F.softmax(masked, dim=-1)
        heads = probs @ v  # (B, H, T, d): each head's output, before they are concatenated
        y = heads.transpose(1, 2).contiguous().view(B, T, C)
        stages.update(attn_scores=scores, attn_probs=probs, attn_heads=heads)
        return self.c_proj(y), stages


class MLP(nn.Module):
    """GELU: c_proj(gelu(c_fc(x))). SwiGLU: c_proj(silu(c_gate(x)) * c_fc(x)).

    ``forward`` returns the output and its stages: ``mlp_up`` (c_fc's output: GELU's input, or
    SwiGLU's up branch), ``mlp_gate`` (SwiGLU's gate before the SiLU) and ``mlp_hidden`` (what
    c_proj reads)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        self.c_fc = nn.Linear(config.n_embd, config.hidden, bias=config.bias)
        if self.swiglu:
            self.c_gate = nn.Linear(config.n_embd, config.hidden, bias=config.bias)
        else:
            self.gelu = nn.GELU(approximate=config.gelu_approximate)
        self.c_proj = nn.Linear(config.hidden, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        up = self.c_fc(x)
        if self.swiglu:
            gate = self.c_gate(x)
            hidden = F.silu(gate) * up
            stages = {"mlp_up": up, "mlp_gate": gate, "mlp_hidden": hidden}
        else:
            hidden = self.gelu(up)
            stages = {"mlp_up": up, "mlp_hidden": hidden}
        return self.c_proj(hidden), stages


class MoE(nn.Module):
    """Mixtral's sparse mixture of experts: ``n_expert`` SwiGLU MLPs and a router, a linear
    map (no bias) from the token to one logit per expert. Each token goes to the ``top_k``
    experts of highest softmax probability; their probabilities, renormalised to sum to 1,
    weight the sum of their outputs.

    Two ways to the same sum. Training runs Mixtral's loop: each expert reads only the tokens
    sent to it (the compute of top_k experts). Evaluation, and so the ONNX export and the
    decode step, runs every expert on every token and gives the ones not chosen weight exactly
    0: the same result (a zero weight adds an exact zero) as one static graph, without the
    data-dependent gather of tokens, at n_expert / top_k times the expert compute.

    ``forward`` returns the output and its stages: ``router_logits`` (B, T, E) before the
    softmax, ``experts`` (B, T, k) the chosen experts' ids (int64), heaviest first, and
    ``expert_weights`` (B, T, k) their renormalised weights."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.top_k = config.expert_top_k
        self.router = nn.Linear(config.n_embd, config.n_expert, bias=False)
        expert = dataclasses.replace(config, mlp="swiglu")  # each expert: our SwiGLU MLP
        self.experts = nn.ModuleList(MLP(expert) for _ in range(config.n_expert))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.router(x)  # (B, T, E)
        probs = F.softmax(logits, dim=-1)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (B, T, k), sorted, heaviest first
        weights = weights / weights.sum(-1, keepdim=True)
        stages = {"router_logits": logits, "experts": chosen, "expert_weights": weights}
        if self.training:
            return self._sparse(x, weights, chosen), stages
        combine = torch.zeros_like(probs).scatter(-1, chosen, weights)  # (B, T, E), k nonzero
        y = sum(combine[..., e, None] * expert(x)[0] for e, expert in enumerate(self.experts))
        return y, stages

    def _sparse(self, x: torch.Tensor, weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Each expert on its own tokens only, weighted and added back into place."""
        flat = x.reshape(-1, x.shape[-1])  # (B·T, C)
        w, ids = weights.reshape(-1, self.top_k), chosen.reshape(-1, self.top_k)
        y = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(ids == e)  # the tokens sent to e, and in which place
            y = y.index_add(0, token, expert(flat[token])[0] * w[token, slot, None])
        return y.view_as(x)


def load_balancing_loss(router_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Switch Transformer's auxiliary loss (Fedus et al., 2021, eqs. 4-6) as Hugging Face's
    ``load_balancing_loss_func`` computes it for Mixtral: E · Σ_e f_e · P_e, where f_e is the
    fraction of the top-k choices that went to expert e and P_e the mean router probability of
    e, both over every token of every layer pooled (``router_logits`` (..., E): layers,
    batch, positions in any leading shape). f sums to k, so a router that spreads tokens and
    probability evenly scores k; one that sends everything to the same k experts scores up to
    E. Only P carries a gradient: the choice itself (f) does not."""
    E = router_logits.shape[-1]
    probs = F.softmax(router_logits.reshape(-1, E), dim=-1)
    chosen = probs.topk(top_k, dim=-1).indices  # (N, k)
    f = F.one_hot(chosen, E).sum(1).float().mean(0)  # (E,): each expert's share, sums to k
    return E * (f * probs.mean(0)).sum()


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x)); or, with
    ``norm_position="post"``, Post-LN: ln(x + attn(x)), then ln(x + mlp(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.post = config.norm_position == "post"
        self.ln_1 = norm_layer(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = norm_layer(config)
        self.mlp = MoE(config) if config.mlp == "moe" else MLP(config)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.post:
            a, stages = self.attn(x, past)
            x = self.ln_1(x + a)
            stages["resid_mid"] = x
            m, mlp_stages = self.mlp(x)
            stages.update(mlp_stages)
            return self.ln_2(x + m), stages
        a, stages = self.attn(self.ln_1(x), past)
        x = x + a
        stages["resid_mid"] = x  # the stream between the attention and the MLP sublayers
        m, mlp_stages = self.mlp(self.ln_2(x))
        stages.update(mlp_stages)
        return x + m, stages


class GPT(nn.Module):
    """The decoder. ``forward(ids)`` returns (logits, attn_scores, attn_probs, hidden);
    ``outputs(ids)`` every named output of the ONNX contract; ``decode`` one step with a
    KV cache."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.positions == "learned":  # rotary positions live in the attention instead
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = norm_layer(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that write into the residual stream
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Parameter count, the tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    def num_active_params(self) -> int:
        """Parameters one token is computed with: all of them for a dense model; for a mixture
        of experts, all but the experts it is not sent to (n_expert - top_k per layer). The
        embedding counts, as in Mixtral's "12.9B active" figure."""
        c = self.config
        if c.mlp != "moe":
            return self.num_params()
        idle = c.n_expert - c.expert_top_k
        per_expert = sum(p.numel() for p in self.h[0].mlp.experts[0].parameters())
        return self.num_params() - c.n_layer * idle * per_expert

    def _embed(self, input_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        x = self.wte(input_ids)
        if self.config.positions == "learned":
            T = input_ids.shape[1]
            x = x + self.wpe(torch.arange(start, start + T, device=input_ids.device))
        return x

    def _layers(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list]:
        x = self._embed(input_ids)
        hidden, stages = [x], []
        for block in self.h:
            x, s = block(x)
            hidden.append(x)
            stages.append(s)
        return self.lm_head(self.ln_f(x)), hidden, stages

    def forward(
        self, input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, hidden, stages = self._layers(input_ids)
        scores = torch.stack([s["attn_scores"] for s in stages], 1)
        probs = torch.stack([s["attn_probs"] for s in stages], 1)
        return logits, scores, probs, torch.stack(hidden, 1)

    def outputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every named output (models/contract.py), per-layer tensors stacked on axis 1."""
        logits, hidden, stages = self._layers(input_ids)
        out = {"logits": logits, "hidden": torch.stack(hidden, 1)}
        for name in stages[0]:
            out[name] = torch.stack([s[name] for s in stages], 1)
        return out

    def decode(
        self, input_ids: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoding step with the KV cache: the logits after ``input_ids`` (B, 1) given
        every earlier position's keys and values (B, n_layer, n_kv_head, P, d_head), and
        the cache grown by this position (P + 1). Costs one position, not P + 1."""
        x = self._embed(input_ids, start=past_k.shape[3])
        present_k, present_v = [], []
        for i, block in enumerate(self.h):
            x, s = block(x, (past_k[:, i], past_v[:, i]))
            present_k.append(s["k"])
            present_v.append(s["v"])
        logits = self.lm_head(self.ln_f(x))
        return logits, torch.stack(present_k, 1), torch.stack(present_v, 1)

    def loss(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats)."""
        return self.losses(input_ids, targets)[0]

    def losses(
        self, input_ids: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mean next-token cross-entropy and, for a mixture of experts, the router's
        load-balancing loss over every layer (None for a dense MLP). Training minimises
        cross-entropy + ``router_aux_loss_coef`` · balance, as Mixtral's does."""
        logits, _, stages = self._layers(input_ids)  # nothing stacked for the lessons
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        if self.config.mlp != "moe":
            return ce, None
        router = torch.stack([s["router_logits"] for s in stages])  # (L, B, T, E)
        return ce, load_balancing_loss(router, self.config.expert_top_k)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy continuation (used to check that the trained model reads like its corpus)."""
        for _ in range(max_new_tokens):
            context = input_ids[:, -self.config.block_size :]
            next_id = self._layers(context)[0][:, -1].argmax(-1, keepdim=True)
            input_ids = torch.cat([input_ids, next_id], dim=1)
        return input_ids
