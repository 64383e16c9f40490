"""Running anatomy-translator with ONNX Runtime: ``translate("1204")``. Never imports torch.

Two graphs, named in the manifest's ``translator`` entry with both vocabularies and the
start and end tokens:

- the encoder: ``src_ids`` (1, S) digit ids -> ``memory`` (1, S, C), the encoder's output,
  and ``enc_attn`` (layer, 1, head, S, S), its self-attention probabilities;
- the decoder: ``tgt_ids`` (1, T) START and the words so far, and ``memory`` -> ``logits``
  (1, T, V) for every next word, ``self_attn`` (layer, 1, head, T, T), causal, and
  ``cross_attn`` (layer, 1, head, T, S): which digits each position reads.

Greedy decoding runs the decoder once per word on the whole prefix (at most 10 positions: a
cache would save nothing worth its code here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import manifest as manifest_file
from models import numbers
from models.manifest import MANIFEST_NAME
from models.runtime import Engine, EngineError

ENCODER_INPUTS = ("src_ids",)
ENCODER_OUTPUTS = ("memory", "enc_attn")
DECODER_INPUTS = ("tgt_ids", "memory")
DECODER_OUTPUTS = ("logits", "self_attn", "cross_attn")
MANIFEST_KEY = "translator"


@dataclass(frozen=True)
class Translation:
    """One number through the translator: what it wrote and everything it looked at."""

    digits: str  # as typed, separators removed
    tokens: tuple[str, ...]  # the words it wrote, END included when it stopped
    enc_attn: np.ndarray  # (layer, head, S, S)
    self_attn: np.ndarray  # (layer, head, T, T): row j wrote tokens[j]
    cross_attn: np.ndarray  # (layer, head, T, S)
    probs: np.ndarray  # (T,) the probability of each written token when it was written
    runner_up: tuple[str, ...]  # the second choice at each step
    runner_up_probs: np.ndarray  # (T,)

    @property
    def words(self) -> list[str]:
        return [t for t in self.tokens if t != numbers.END]

    @property
    def text(self) -> str:
        return numbers.join(self.words)

    @property
    def finished(self) -> bool:
        return bool(self.tokens) and self.tokens[-1] == numbers.END

    @property
    def reference(self) -> str:
        return numbers.words(int(self.digits))

    @property
    def correct(self) -> bool:
        return self.finished and self.text == self.reference


@dataclass(frozen=True)
class Forced:
    """The decoder fed the true previous words (teacher forcing), every position at once."""

    inputs: tuple[str, ...]  # START and the reference words
    targets: tuple[str, ...]  # the reference words and END
    predicted: tuple[str, ...]  # the decoder's first choice at each position
    target_probs: np.ndarray  # (T,) the probability it gave the true next word
    self_attn: np.ndarray  # (layer, head, T, T)
    cross_attn: np.ndarray  # (layer, head, T, S)

    @property
    def loss(self) -> float:
        """Mean cross-entropy (nats) over the positions: what training minimised."""
        return float(-np.mean(np.log(np.maximum(self.target_probs, 1e-30))))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class TranslatorRuntime:
    """The two sessions of one translator and its manifest entry (``Engine.translator()``)."""

    def __init__(self, entry: dict, encoder, decoder):
        self.entry = entry
        self.encoder = encoder  # onnxruntime.InferenceSession
        self.decoder = decoder
        self.max_len = int(entry["config"]["max_tgt"])

    def encode(self, digits: str) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray([numbers.source_ids(digits)], dtype=np.int64)
        memory, attn = self.encoder.run(list(ENCODER_OUTPUTS), {"src_ids": ids})
        return memory, attn[:, 0]

    def decode(self, memory: np.ndarray, tokens: list[str]):
        ids = np.asarray([[numbers.TARGET_IDS[t] for t in tokens]], dtype=np.int64)
        logits, self_attn, cross = self.decoder.run(
            list(DECODER_OUTPUTS), {"tgt_ids": ids, "memory": memory}
        )
        return logits[0], self_attn[:, 0], cross[:, 0]

    def translate(self, text: str) -> Translation:
        """Greedy decoding of a typed number (``numbers.parse`` reads it; its ValueError says
        what is wrong)."""
        digits = numbers.parse(text)
        memory, enc_attn = self.encode(digits)
        prefix = [numbers.START]
        probs, second, second_p = [], [], []
        for _ in range(self.max_len):
            logits, self_attn, cross = self.decode(memory, prefix)
            p = softmax(logits[-1].astype(np.float64))
            order = np.argsort(-p, kind="stable")
            prefix.append(numbers.TARGET_TOKENS[order[0]])
            probs.append(p[order[0]])
            second.append(numbers.TARGET_TOKENS[order[1]])
            second_p.append(p[order[1]])
            if prefix[-1] == numbers.END:
                break
        return Translation(
            digits,
            tuple(prefix[1:]),
            enc_attn,
            self_attn,
            cross,
            np.asarray(probs),
            tuple(second),
            np.asarray(second_p),
        )

    def teacher_forced(self, text: str) -> Forced:
        """The decoder on START + the reference words of ``text``, in one pass."""
        digits = numbers.parse(text)
        memory, _ = self.encode(digits)
        words = numbers.word_tokens(int(digits))
        inputs = [numbers.START, *words]
        targets = [*words, numbers.END]
        logits, self_attn, cross = self.decode(memory, inputs)
        p = softmax(logits.astype(np.float64))
        predicted = tuple(numbers.TARGET_TOKENS[i] for i in p.argmax(-1))
        want = np.asarray([numbers.TARGET_IDS[t] for t in targets])
        return Forced(
            tuple(inputs),
            tuple(targets),
            predicted,
            p[np.arange(len(targets)), want],
            self_attn,
            cross,
        )


# One runtime per translator and provider, shared by every session and lesson as its ONNX
# sessions are, so that what is computed for it (the views' cache of translations) is too.
_RUNTIMES: dict[tuple, TranslatorRuntime] = {}


def open_translator(engine: Engine) -> TranslatorRuntime:
    """The translator of ``engine``'s manifest, on the engine's provider (sessions shared per
    process, files checked against their sha256); an EngineError when there is none."""
    entry = engine.manifest.get(MANIFEST_KEY)
    if not entry:
        raise EngineError(
            f"{engine.static_dir / MANIFEST_NAME} has no translator. "
            "Build it with `make build` (or `python -m models.build --recipe translator`)."
        )
    key = (
        str(engine.static_dir),
        json.dumps(entry, sort_keys=True),
        engine.provider_request,
        engine.threads,
    )
    if key not in _RUNTIMES:
        _RUNTIMES[key] = _open(engine, entry)
    return _RUNTIMES[key]


def _open(engine: Engine, entry: dict) -> TranslatorRuntime:
    sessions = []
    for part, outputs in (("encoder", ENCODER_OUTPUTS), ("decoder", DECODER_OUTPUTS)):
        record = entry[part]
        path = engine.static_dir / record["file"]
        sessions.append(engine.shared_session(path, record, required=outputs).session)
    return TranslatorRuntime(entry, *sessions)


def translate(text: str, static_dir: str | Path | None = None) -> str:
    """``translate("1204") == "one thousand two hundred four"``: the trained translator's
    greedy answer (ONNX Runtime, no torch) for a typed number; a ValueError says what is
    wrong with bad input."""
    return open_translator(Engine(static_dir or manifest_file.static_dir())).translate(text).text
