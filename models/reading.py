"""What a model makes of a text: the one reading every lesson draws from.

:func:`read_text` turns (engine, model, text) into a :class:`Reading`: the token ids, their
readable strings and unique labels, the truncation notice, the forward pass, and, for bad
input, a message instead. The dashboard's state and the snapshot writer both call it, so
they tokenise, truncate and run the same way. Never raises for bad input; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.bpe import readable
from models.contract import Forward
from models.runtime import Engine, EngineError

EMPTY_PROMPT = "Type a sentence in the text box to see how the model reads it."


def token_labels(tokens: list[str]) -> list[str]:
    """Axis labels that stay unique when a token repeats: ``"3: the"``."""
    return [f"{i}: {tok}" for i, tok in enumerate(tokens)]


@dataclass(frozen=True)
class Reading:
    """One text read by one model. ``status`` is "ok" (a forward pass), "empty" (nothing to
    read: ``message`` is a prompt) or "error" (``message`` says what to fix)."""

    status: str
    model: str | None = None
    ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # readable: spaces as ·, newlines as ↵
    labels: list[str] = field(default_factory=list)  # unique: "3: ·the"
    forward: Forward | None = None
    provider: str = ""
    message: str = ""  # the prompt or the error
    notices: tuple[str, ...] = ()  # truncation, provider fallback

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def read_text(engine: Engine | None, model: str | None, text: str) -> Reading:
    """Tokenise ``text``, cut it to the model's block size (with a notice), run the model."""
    if engine is None or model is None:
        return Reading("error", model, message="No model is loaded.")
    try:
        tokenizer = engine.tokenizer(model)
        ids = tokenizer.encode(text if isinstance(text, str) else "")
        if not ids:
            return Reading("empty", model, message=EMPTY_PROMPT)
        block = int(engine.config(model)["block_size"])
        notices = []
        if len(ids) > block:
            notices.append(
                f"Your text is {len(ids)} tokens long; {model} reads at most {block}, "
                f"so only the first {block} tokens are shown."
            )
            ids = ids[:block]
        tokens = [readable(tokenizer.token_bytes(i)) for i in ids]
        forward = engine.run(model, ids)
        provider = engine.provider(model)
        if extra := engine.provider_notice(model):
            notices.append(extra)
    except EngineError as err:
        return Reading("error", model, message=str(err))
    return Reading(
        "ok",
        model,
        ids=list(ids),
        tokens=tokens,
        labels=token_labels(tokens),
        forward=forward,
        provider=provider,
        notices=tuple(notices),
    )
