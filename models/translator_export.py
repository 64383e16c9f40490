"""anatomy-translator -> two ONNX graphs (encoder, decoder), and the checks that they and our
module compute what they should: torch vs ONNX Runtime, and our layers vs
``torch.nn.Transformer`` loaded with the same weights."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from models import numbers
from models.export import _export, max_abs_diff
from models.translation import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS
from models.translator import Translator


class _Encoder(torch.nn.Module):
    def __init__(self, model: Translator):
        super().__init__()
        self.model = model

    def forward(self, src_ids):
        return self.model.encode(src_ids)


class _Decoder(torch.nn.Module):
    def __init__(self, model: Translator):
        super().__init__()
        self.model = model

    def forward(self, tgt_ids, memory):
        return self.model.decode(tgt_ids, memory)


def export_encoder(model: Translator, path: str | Path) -> Path:
    """The encoder: 1 <= S <= max_src digits, any batch."""
    c = model.eval().config
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("S", min=1, max=c.max_src)
    example = torch.ones((2, min(4, c.max_src)), dtype=torch.long)
    return _export(
        _Encoder(model),
        (example,),
        path,
        list(ENCODER_INPUTS),
        list(ENCODER_OUTPUTS),
        {"src_ids": {0: batch, 1: seq}},
    )


def export_decoder(model: Translator, path: str | Path) -> Path:
    """The decoder: 1 <= T <= max_tgt words so far, the encoder's output of 1 <= S digits."""
    c = model.eval().config
    batch = torch.export.Dim("batch", min=1, max=1024)
    T = torch.export.Dim("T", min=1, max=c.max_tgt)
    S = torch.export.Dim("S", min=1, max=c.max_src)
    tgt = torch.ones((2, min(5, c.max_tgt)), dtype=torch.long)
    memory = torch.zeros((2, min(4, c.max_src), c.d_model))
    return _export(
        _Decoder(model),
        (tgt, memory),
        path,
        list(DECODER_INPUTS),
        list(DECODER_OUTPUTS),
        {"tgt_ids": {0: batch, 1: T}, "memory": {0: batch, 1: S}},
    )


def onnx_parity(model: Translator, encoder: Path, decoder: Path, seed: int = 0) -> dict:
    """Torch vs ONNX Runtime on random ids at every source length and at T = 1, middle and
    max_tgt: the worst max |difference| of every output of both graphs."""
    import onnxruntime as ort

    cpu = ["CPUExecutionProvider"]
    enc = ort.InferenceSession(str(encoder), providers=cpu)
    dec = ort.InferenceSession(str(decoder), providers=cpu)
    c = model.eval().config
    gen = torch.Generator().manual_seed(seed)
    worst = dict.fromkeys([*ENCODER_OUTPUTS, *DECODER_OUTPUTS], 0.0)
    for S in range(1, c.max_src + 1):
        src = torch.randint(1, c.src_vocab, (2, S), generator=gen)  # no PAD: one number each
        with torch.no_grad():
            want = [t.numpy() for t in model.encode(src)]
        got = enc.run(list(ENCODER_OUTPUTS), {"src_ids": src.numpy()})
        for name, w, g in zip(ENCODER_OUTPUTS, want, got, strict=True):
            worst[name] = max(worst[name], _diff(name, w, g))
        memory = torch.from_numpy(got[0])
        for T in sorted({1, c.max_tgt // 2, c.max_tgt}):
            tgt = torch.randint(1, c.tgt_vocab, (2, T), generator=gen)
            with torch.no_grad():
                want = [t.numpy() for t in model.decode(tgt, memory)]
            got_d = dec.run(list(DECODER_OUTPUTS), {"tgt_ids": tgt.numpy(), "memory": got[0]})
            for name, w, g in zip(DECODER_OUTPUTS, want, got_d, strict=True):
                worst[name] = max(worst[name], _diff(name, w, g))
    return worst


def _diff(name: str, want: np.ndarray, got: np.ndarray) -> float:
    if want.shape != got.shape or want.dtype != got.dtype:
        raise AssertionError(
            f"{name}: torch {want.dtype} {want.shape} != ONNX {got.dtype} {got.shape}"
        )
    return max_abs_diff(want, got)


def reference_transformer(model: Translator) -> torch.nn.Transformer:
    """``torch.nn.Transformer`` of ``model``'s shape (Pre-LN, GELU, no dropout, batch first)
    holding ``model``'s encoder and decoder weights."""
    c = model.config
    with warnings.catch_warnings():  # "enable_nested_tensor is True, but ... norm_first"
        warnings.simplefilter("ignore", UserWarning)
        ref = _transformer(c)
    ours = {
        k: v for k, v in model.state_dict().items() if k.split(".")[0] in ("encoder", "decoder")
    }
    ref.load_state_dict(ours, strict=True)
    return ref.eval()


def _transformer(c) -> torch.nn.Transformer:
    return torch.nn.Transformer(
        d_model=c.d_model,
        nhead=c.n_head,
        num_encoder_layers=c.n_enc_layer,
        num_decoder_layers=c.n_dec_layer,
        dim_feedforward=c.d_ff,
        dropout=0.0,
        activation="gelu",
        layer_norm_eps=c.eps,
        batch_first=True,
        norm_first=True,
    )


def reference_parity(model: Translator, count: int = 256, seed: int = 0) -> float:
    """Max |ours - nn.Transformer| of the logits under teacher forcing, on a padded batch of
    ``count`` random numbers (the padding masks in play)."""
    model = model.eval()
    ref = reference_transformer(model)
    rng = np.random.default_rng(seed)
    ns = numbers.training_numbers(rng, count, np.empty(0, dtype=np.int64))
    src = torch.from_numpy(numbers.pad([numbers.source_ids(str(n)) for n in ns]))
    tgt = torch.from_numpy(numbers.pad([numbers.target_ids(int(n)) for n in ns]))[:, :-1]
    pad = src == numbers.SOURCE_IDS[numbers.PAD]
    T = tgt.shape[1]
    with torch.no_grad():
        ours = model(src, tgt)
        s = model.src_embed(src) + model.src_pos(torch.arange(src.shape[1]))
        t = model.tgt_embed(tgt) + model.tgt_pos(torch.arange(T))
        causal = torch.nn.Transformer.generate_square_subsequent_mask(T)
        out = ref(
            s,
            t,
            tgt_mask=causal,
            src_key_padding_mask=pad,
            memory_key_padding_mask=pad,
            tgt_is_causal=True,
        )
        theirs = model.head(out)
    # rows past a number's END are PAD in both and never read: compare where the target is real
    real = tgt != numbers.TARGET_IDS[numbers.PAD]
    return float((ours - theirs).abs()[real].max())
