"""The BPE lesson's numbers: a training trace, segmentation after k merges, an encode trace.

Pure Python and numpy on top of :mod:`models.bpe`; no Panel. Three things are computed here:

- :func:`train_trace`: ``models.bpe.train`` plus what the page plots over the merge count k:
  the vocabulary size and the training text's compression (bytes per token) after k merges,
  replayed exactly as training merges (each merge applied left to right to whole chunks);
- :func:`segment`: a text split by the tokenizer that knows only its first k merges (tiktoken's
  algorithm restricted to ranks below 256 + k, so it equals tiktoken built from those ranks);
- :func:`encode_steps`: the encode trace of the text the model reads, flattened into frames a
  stepper can show: frame 0 is the regex pre-split, then every merge of every chunk in turn;
  the last frame holds exactly ``Tokenizer.encode(text)[:max_tokens]``;
- :func:`part_note` and :func:`merge_note`: which characters a token's bytes hold only part of
  (a byte-level token may end inside a character: ``\\xe4\\xbd`` is part of 你, e4 bd a0).

The default corpus's trace is computed once per process, in a background thread, and shared by
every browser session (:func:`default_trace_future`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise

import numpy as np
import regex

from models.bpe import (
    DEFAULT_PATTERN,
    ChunkTrace,
    Merge,
    Tokenizer,
    _byte_pair_merge,
    _chunk_counts,
    _merge_ids,
    _utf8_safe,
    readable,
    train,
)

MAX_PASTE_BYTES = 100_000  # pasted training text; more gets a message
DEFAULT_VOCAB = 1024  # the shipped tokenizer's ordinary tokens
LONG_CHUNK = 256  # bytes; a longer chunk is encoded in one step (the trace is quadratic)
MAX_TRACE_CHARS = 20_000  # the shell's text box holds at most this many characters


# -- input ----------------------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (as ``Tokenizer.encode`` does)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _utf8_safe(text)


def check_paste(text: str) -> str:
    """A message saying why ``text`` cannot be trained on, or "" when it can."""
    if not text:
        return "Paste some text to train a tokenizer on it."
    n = len(clean_text(text).encode("utf-8"))
    if n > MAX_PASTE_BYTES:
        return (
            f"The pasted text is {n:,} bytes; the lesson trains on at most "
            f"{MAX_PASTE_BYTES:,} bytes (100 KB). Paste a shorter text."
        )
    return ""


# -- training trace -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingTrace:
    """``train``'s merges with the curves the page draws over k = 0..len(merges).

    ``n_tokens[k]`` is the number of tokens of the training text after k merges (k = 0: its
    bytes), counted as training merges; ``vocab_size[k]`` is 256 + k.
    """

    source: str
    merges: tuple[Merge, ...]
    n_bytes: int
    n_tokens: np.ndarray
    pattern: str = DEFAULT_PATTERN
    seconds: float = 0.0
    requested: int = DEFAULT_VOCAB
    sha256: str = ""
    timings: dict = field(default_factory=dict)
    text: str = field(default="", repr=False)  # what was trained on (for comparisons)

    @property
    def n_merges(self) -> int:
        return len(self.merges)

    @property
    def vocab_size(self) -> np.ndarray:
        return 256 + np.arange(self.n_merges + 1)

    @property
    def bytes_per_token(self) -> np.ndarray:
        """Compression after k merges; 1.0 at k = 0 (NaN for an empty text)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.n_bytes / self.n_tokens.astype(np.float64)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer made of all the merges (no special tokens)."""
        return Tokenizer.from_merges(self.merges, self.pattern, {})


def tokens_after_merges(text: str, merges: Sequence[Merge], pattern: str = DEFAULT_PATTERN):
    """Tokens of ``text`` after each of 0..len(merges) merges, as ``train`` replays them.

    Each merge replaces its pair left to right in every chunk that holds it (an index from pair
    to chunks finds them); the total drops by one per replaced occurrence, weighted by how often
    the chunk occurs. Returns an int64 array of length ``len(merges) + 1``.
    """
    text = clean_text(text)
    chunks = _chunk_counts(text, pattern)
    words = [ids for ids, _ in chunks]
    freqs = [n for _, n in chunks]
    where: dict[tuple[int, int], set[int]] = {}
    for wi, ids in enumerate(words):
        for pair in pairwise(ids):
            where.setdefault(pair, set()).add(wi)
    total = len(text.encode("utf-8"))
    out = [total]
    for m in merges:
        for wi in where.pop(m.pair, ()):
            old = words[wi]
            new = _merge_ids(old, m.pair, m.rank)
            if len(new) == len(old):
                continue  # a stale index entry: the pair left this chunk earlier
            total -= freqs[wi] * (len(old) - len(new))
            words[wi] = new
            for pair in set(pairwise(new)).difference(pairwise(old)):
                where.setdefault(pair, set()).add(wi)
        out.append(total)
    return np.asarray(out, dtype=np.int64)


def train_trace(
    text: str,
    vocab_size: int = DEFAULT_VOCAB,
    pattern: str = DEFAULT_PATTERN,
    progress: Callable[[int, int], None] | None = None,
    source: str = "pasted text",
) -> TrainingTrace:
    """Train on ``text`` (``models.bpe.train``) and replay it for the curves.

    ``progress(done, total)`` is passed to ``train``; an exception it raises cancels training
    and propagates. Raises ``ValueError`` for empty text.
    """
    text = clean_text(text)
    t0 = time.perf_counter()
    merges = train(text, vocab_size, pattern, progress)
    t1 = time.perf_counter()
    n_tokens = tokens_after_merges(text, merges, pattern)
    t2 = time.perf_counter()
    data = text.encode("utf-8")
    return TrainingTrace(
        source=source,
        merges=tuple(merges),
        n_bytes=len(data),
        n_tokens=n_tokens,
        pattern=pattern,
        seconds=t2 - t0,
        requested=vocab_size,
        sha256=hashlib.sha256(data).hexdigest(),
        timings={"train_s": t1 - t0, "replay_s": t2 - t1},
        text=text,
    )


def default_corpus_text() -> tuple[str, str]:
    """The text the shipped tokenizer was trained on (the train split of the stdlib's
    docstrings, as ``models.build`` does) and its description."""
    from models.corpus import split, stdlib_docstrings

    corpus = stdlib_docstrings()
    return split(corpus.text)[0], corpus.source


def compute_default_trace(
    vocab_size: int = DEFAULT_VOCAB, progress: Callable[[int, int], None] | None = None
) -> TrainingTrace:
    """Read the default corpus (timed) and trace training on it."""
    t0 = time.perf_counter()
    text, source = default_corpus_text()
    read_s = time.perf_counter() - t0
    trace = train_trace(text, vocab_size, progress=progress, source=f"{source} (train split)")
    trace.timings["read_corpus_s"] = read_s
    return trace


_DEFAULT: Future | None = None
_DEFAULT_LOCK = threading.Lock()
DEFAULT_PROGRESS = [0, DEFAULT_VOCAB - 256]  # (done, total) of the shared default training


def default_trace_future() -> Future:
    """The default corpus's trace, computed once per process in a daemon thread.

    Every caller gets the same ``Future``; a failure is kept (``future.exception()``) until
    :func:`reset_default_trace`."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            future: Future = Future()
            _DEFAULT = future

            def progress(done: int, total: int) -> None:
                DEFAULT_PROGRESS[:] = [done, total]

            def run() -> None:
                try:
                    future.set_result(compute_default_trace(progress=progress))
                except BaseException as err:  # noqa: BLE001 - handed to the page
                    future.set_exception(err)

            threading.Thread(target=run, name="bpe-default-trace", daemon=True).start()
        return _DEFAULT


def reset_default_trace() -> None:
    """Forget the shared default trace (tests)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        _DEFAULT = None


def shipped_match(trace: TrainingTrace, shipped: Tokenizer) -> tuple[int, int]:
    """(merges of ``trace`` whose token has the same rank in ``shipped``, merges compared)."""
    ranks = shipped.ranks
    same = sum(1 for m in trace.merges if ranks.get(m.token) == m.rank)
    return same, trace.n_merges


def merge_rows(
    merges: Sequence[Merge], vocab: Sequence[bytes] | None = None, text: str = ""
) -> dict[str, list]:
    """The merge table's columns: rank, step k, readable pair, readable new token, count, and
    the note naming a character the new token is part of (:func:`merge_notes` over ``text``,
    the training text)."""
    tokens = list(vocab) if vocab is not None else [bytes([i]) for i in range(256)]
    if vocab is None:
        for m in merges:
            tokens.append(m.token)
    rows: dict[str, list] = {"rank": [], "k": [], "pair": [], "token": [], "count": []}
    for k, m in enumerate(merges, 1):
        a, b = m.pair
        rows["rank"].append(m.rank)
        rows["k"].append(k)
        rows["pair"].append(f"{readable(tokens[a])}  +  {readable(tokens[b])}")
        rows["token"].append(readable(m.token))
        rows["count"].append(m.count)
    rows["note"] = merge_notes(merges, text) if text else [""] * len(merges)
    return rows


def merge_notes(merges: Sequence[Merge], text: str) -> list[str]:
    """For each merge whose new token is not whole characters, an example from the training
    ``text`` (its first occurrence there): "e.g. part of 你 (e4 bd a0)"; else ""."""
    data = clean_text(text).encode("utf-8")
    out = []
    for m in merges:
        try:
            m.token.decode("utf-8")
            out.append("")
            continue
        except UnicodeDecodeError:
            pass
        at = data.find(m.token)
        note = part_note(data, at, at + len(m.token)) if at >= 0 else ""
        out.append(f"e.g. {note}" if note else "")
    return out


# -- characters split across tokens ---------------------------------------------------------------
# A byte-level token may hold only some of a character's UTF-8 bytes: the 3 bytes of 你
# (e4 bd a0) can be the tokens \xe4\xbd and \xa0. In UTF-8 every byte of a character but
# the first is 10xxxxxx, so a character's bytes are found from any one of them.
def _continues(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def char_spans(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """The byte ranges (first, past the last) of the characters of the UTF-8 text ``data``
    that its bytes [start, end) touch, in order."""
    i = start
    while 0 < i < len(data) and _continues(data[i]):
        i -= 1
    out = []
    while i < min(end, len(data)):
        j = i + 1
        while j < len(data) and _continues(data[j]):
            j += 1
        out.append((i, j))
        i = j
    return out


def _named(data: bytes, a: int, b: int) -> str:
    """A character by its look and its bytes: "你 (e4 bd a0)"."""
    return f"{readable(data[a:b])} ({data[a:b].hex(' ')})"


def part_note(data: bytes, start: int, end: int) -> str:
    """ "part of 你 (e4 bd a0)" for the characters of the UTF-8 text ``data`` of which the
    bytes [start, end) hold only some (joined by "and"); "" when they hold whole ones."""
    split = [_named(data, a, b) for a, b in char_spans(data, start, end) if a < start or b > end]
    return "part of " + " and ".join(split) if split else ""


def merge_note(data: bytes, start: int, mid: int, end: int) -> str:
    """What merging the bytes [start, mid) and [mid, end) of the UTF-8 text ``data`` does to
    its characters: "they make 你 (e4 bd a0) whole" for a character the two held parts of and
    the new token holds whole; "the new token is part of …" (:func:`part_note`); "" if
    neither (joined by "; ")."""
    made = [
        _named(data, a, b)
        for a, b in char_spans(data, start, end)
        if start <= a and b <= end and a < mid < b
    ]
    out = [f"they make {' and '.join(made)} whole"] if made else []
    if part := part_note(data, start, end):
        out.append(f"the new token is {part}")
    return "; ".join(out)


def token_notes(tok: Tokenizer, data: bytes, ids: Sequence[int], start: int = 0) -> list[str]:
    """:func:`part_note` of each token of ``ids``, laid end to end over ``data`` from byte
    ``start``."""
    out = []
    for i in ids:
        n = len(tok.token_bytes(i))
        out.append(part_note(data, start, start + n))
        start += n
    return out


# -- segmentation after k merges ------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """One token of a segmented text: its bytes, id and the chunk it belongs to."""

    token: bytes
    id: int
    chunk: int


def segment(tok: Tokenizer, text: str, k: int, ranks: dict[bytes, int] | None = None):
    """``text`` split by ``tok`` restricted to its first ``k`` merges (ranks < 256 + k).

    tiktoken's algorithm with the higher ranks removed, including its shortcut (a chunk whose
    bytes are a known token is that token), so ``tiktoken.Encoding`` built from the ranks below
    256 + k gives the same ids. ``ranks`` may pass ``tok.ranks`` to save a copy per call.
    """
    ranks = tok.ranks if ranks is None else ranks
    limit = 256 + max(int(k), 0)
    pat = _compiled(tok.pattern)
    out: list[Segment] = []
    for ci, chunk in enumerate(pat.findall(clean_text(text))):
        piece = chunk.encode("utf-8")
        whole = ranks.get(piece)
        parts = [piece] if whole is not None and whole < limit else None
        if parts is None:
            parts = _byte_pair_merge(piece, ranks, max_rank=limit)
        out.extend(Segment(p, ranks[p], ci) for p in parts)
    return out


_PATTERNS: dict[str, regex.Pattern] = {}


def _compiled(pattern: str) -> regex.Pattern:
    if pattern not in _PATTERNS:
        _PATTERNS[pattern] = regex.compile(pattern)
    return _PATTERNS[pattern]


def compression(n_bytes: int, n_tokens: int) -> float:
    """Bytes per token (NaN without tokens)."""
    return n_bytes / n_tokens if n_tokens else float("nan")


# -- encode trace ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodeSteps:
    """The encode trace of the text the model reads, as frames 0..n_steps.

    ``chunks[i]`` is chunk i's trace; ``states[i]`` its parts (ids) before its first step and
    after each step; ``animated[i]`` is False for a chunk longer than ``LONG_CHUNK`` bytes,
    encoded in one step. ``order[s - 1]`` is (chunk, step) of frame s. ``ids`` are the final ids
    (``encode(text)[:max_tokens]``); ``n_total`` the ids of the whole text.
    """

    text: str
    chunks: tuple[ChunkTrace, ...]
    states: tuple[tuple[tuple[int, ...], ...], ...]
    animated: tuple[bool, ...]
    order: tuple[tuple[int, int], ...]
    ids: list[int]
    n_total: int
    max_tokens: int | None

    @property
    def n_steps(self) -> int:
        return len(self.order)

    @property
    def truncated(self) -> bool:
        return len(self.ids) < self.n_total

    def frame(self, s: int) -> list[tuple[int, ...]]:
        """Every chunk's parts (ids) at frame ``s`` (clamped to 0..n_steps)."""
        s = min(max(int(s), 0), self.n_steps)
        if s == 0:
            return [st[0] for st in self.states]
        ci, j = self.order[s - 1]
        return (
            [st[-1] for st in self.states[:ci]]
            + [self.states[ci][j + 1]]
            + [st[0] for st in self.states[ci + 1 :]]
        )

    def active(self, s: int) -> tuple[int, int] | None:
        """(chunk, step) applied at frame ``s``; None at frame 0."""
        s = min(max(int(s), 0), self.n_steps)
        return None if s == 0 else self.order[s - 1]

    def step_note(self, tok: Tokenizer, s: int) -> str:
        """:func:`merge_note` of the merge applied at frame ``s`` ("" for none)."""
        active = self.active(s)
        if active is None or not self.animated[active[0]]:
            return ""
        ci, j = active
        m = self.chunks[ci].steps[j]
        if m.whole_chunk:
            return ""
        start = sum(len(tok.token_bytes(i)) for i in self.states[ci][j][: m.position])
        mid = start + len(tok.token_bytes(m.left))
        end = mid + len(tok.token_bytes(m.right))
        return merge_note(self.chunks[ci].text.encode("utf-8"), start, mid, end)


def encode_steps(tok: Tokenizer, text: str, max_tokens: int | None = None) -> EncodeSteps:
    """Trace the encoding of ``text`` chunk by chunk, up to the chunk holding token
    ``max_tokens`` (the model's block size); the final ids are cut to ``max_tokens``."""
    text = clean_text(text)
    pat = _compiled(tok.pattern)
    matches = list(pat.finditer(text))
    ranks = tok.ranks
    chunks, states, animated, order, ids = [], [], [], [], []
    n_total = 0
    for match in matches:
        piece = match.group().encode("utf-8")
        if max_tokens is not None and len(ids) >= max_tokens:
            n_total += len(_piece_ids(piece, ranks))
            continue
        traced = tok.encode_trace(match.group()).chunks if len(piece) <= LONG_CHUNK else ()
        if len(traced) == 1 and traced[0].text == match.group():
            t = traced[0]
            trace = ChunkTrace(t.text, match.start(), match.end(), t.initial, t.steps, t.ids)
            st = [trace.initial] + [step.parts for step in trace.steps]
            anim = True
        else:  # too long to animate (or split differently alone): one step to the final ids
            initial = tuple(ranks[bytes([b])] for b in piece)
            final = _piece_ids(piece, ranks)
            trace = ChunkTrace(match.group(), match.start(), match.end(), initial, (), final)
            st = [initial, final]
            anim = False
        ci = len(chunks)
        chunks.append(trace)
        states.append(tuple(st))
        animated.append(anim)
        order.extend((ci, j) for j in range(len(st) - 1))
        ids.extend(trace.ids)
        n_total += len(trace.ids)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    return EncodeSteps(
        text=text,
        chunks=tuple(chunks),
        states=tuple(states),
        animated=tuple(animated),
        order=tuple(order),
        ids=ids,
        n_total=n_total,
        max_tokens=max_tokens,
    )


def _piece_ids(piece: bytes, ranks: dict[bytes, int]) -> tuple[int, ...]:
    """tiktoken's encoding of one chunk's bytes (with its whole-chunk shortcut)."""
    if piece in ranks:
        return (ranks[piece],)
    return tuple(ranks[p] for p in _byte_pair_merge(piece, ranks))


def token_info(tok: Tokenizer, token_id: int) -> str:
    """Hover text of one token: its bytes (readable and hex), id and the merge that made it."""
    b = tok.token_bytes(token_id)
    pair = tok.merge_of(token_id)
    if pair is None:
        made = "a single byte" if len(b) == 1 else "not made by a merge"
    else:
        # in a tokenizer trained here the 256 bytes come first, so id 256 + i is merge i + 1
        number = f"merge {token_id - 255}" if tok.token_bytes(255) == b"\xff" else "merge"
        a, c = (readable(tok.token_bytes(i)) for i in pair)
        made = f"{number}: {a} + {c}"
    return f"{readable(b)} | bytes {b.hex(' ')} | id {token_id} | {made}"


# -- comparison with Hugging Face tokenizers ------------------------------------------------------
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted: the character ByteLevel shows -> its byte."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    visible += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for b in range(256):
        if b in visible:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def hf_train_merges(text: str, vocab_size: int, pattern: str = DEFAULT_PATTERN) -> list[bytes]:
    """The new tokens (bytes), in order, of the ``tokenizers`` library's byte-level BPE trained
    on ``text`` with our split pattern, the 256 bytes as its alphabet and ``vocab_size``."""
    import json

    from tokenizers import Regex, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    hf.train_from_iterator([clean_text(text)], trainer=trainer)
    decode = _byte_decoder()
    out = []
    for merge in json.loads(hf.to_str())["model"]["merges"]:
        a, b = merge if isinstance(merge, list) else merge.split(" ")
        out.append(bytes(decode[c] for c in a + b))
    return out


def pair_counts_after(text: str, merges: Sequence[Merge], pattern: str = DEFAULT_PATTERN):
    """Every adjacent pair's count (chunk-frequency weighted) after applying ``merges``."""
    counts: dict[tuple[int, int], int] = {}
    for ids, n in _chunk_counts(clean_text(text), pattern):
        for m in merges:
            if len(ids) < 2:
                break
            ids = _merge_ids(ids, m.pair, m.rank)
        for pair in pairwise(ids):
            counts[pair] = counts.get(pair, 0) + n
    return counts


@dataclass(frozen=True)
class HFComparison:
    """How ``tokenizers``' merges compare with ours on the same text and vocabulary size.

    ``same_prefix``: merges identical (same new token, in the same order) before the first
    difference; ``overlap``: new tokens both learned, in any order. At the first difference,
    ``ours``/``theirs`` are the two new tokens and ``ours_count``/``theirs_count`` their pairs'
    counts at that moment (both counted by our rules on the identical vocabulary so far)."""

    n_ours: int
    n_theirs: int
    same_prefix: int
    overlap: int
    ours: bytes | None = None
    theirs: bytes | None = None
    ours_count: int | None = None
    theirs_count: int | None = None
    seconds: float = 0.0

    @property
    def identical(self) -> bool:
        return self.same_prefix == self.n_ours == self.n_theirs

    @property
    def tie(self) -> bool:
        return self.ours_count is not None and self.ours_count == self.theirs_count


def compare_with_hf(
    text: str, merges: Sequence[Merge], vocab_size: int, pattern: str = DEFAULT_PATTERN
) -> HFComparison:
    """Train ``tokenizers`` on ``text`` and compare its merges with ``merges`` (ours)."""
    t0 = time.perf_counter()
    theirs = hf_train_merges(text, vocab_size, pattern)
    ours = [m.token for m in merges]
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
    same = min(len(ours), len(theirs)) if same is None else same
    result = dict(
        n_ours=len(ours),
        n_theirs=len(theirs),
        same_prefix=same,
        overlap=len(set(ours) & set(theirs)),
    )
    if same < min(len(ours), len(theirs)):
        counts = pair_counts_after(text, merges[:same], pattern)
        ranks = {bytes([i]): i for i in range(256)} | {m.token: m.rank for m in merges[:same]}
        theirs_pair = _pair_in(theirs[same], ranks)
        result.update(
            ours=ours[same],
            theirs=theirs[same],
            ours_count=merges[same].count,
            theirs_count=counts.get(theirs_pair, 0) if theirs_pair else None,
        )
    return HFComparison(**result, seconds=time.perf_counter() - t0)


def _pair_in(token: bytes, ranks: dict[bytes, int]) -> tuple[int, int] | None:
    """The one split of ``token`` into two known tokens (None if there is not exactly one)."""
    splits = [
        (ranks[token[:i]], ranks[token[i:]])
        for i in range(1, len(token))
        if token[:i] in ranks and token[i:] in ranks
    ]
    return splits[0] if len(splits) == 1 else None
