"""Byte-level BPE: train a vocabulary with a merge trace, encode exactly as tiktoken does.

Pure Python plus the ``regex`` module (for ``\\p{L}`` and possessive quantifiers); no torch.

The pieces, in the order a reader meets them:

- split patterns: text is first cut into chunks by a regex, and merges never cross chunks;
- ``train``: the most frequent adjacent pair of tokens is merged into a new token, again and
  again, with pair counts updated incrementally;
- ``Tokenizer``: encodes with tiktoken's algorithm (lowest-ranked *byte concatenation* first),
  so that ``tiktoken.Encoding`` built from our saved rank file gives the same ids;
- ``Tokenizer.encode_trace``: the same encoding, step by step, for the dashboard.

Token ids are ranks: a lower id was merged earlier. A tokenizer trained here has the 256 single
bytes as ids 0..255 (id == byte value); an imported one (GPT-2 from Hugging Face) need not.
"""

from __future__ import annotations

import base64
import heapq
import json
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import regex

# GPT-2's split pattern, as published in openai/gpt-2 encoder.py.
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
# GPT-4's split pattern (cl100k_base as first released; tiktoken now ships an equivalent
# rewrite with more possessive quantifiers): case-insensitive contractions, digits in groups of
# at most three, and a newline kept apart from the spaces that indent the next line.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
# The default is GPT-4's: it splits digits and code better, and it passes the tiktoken equality
# tests exactly as GPT-2's does. Both patterns lean on the regex engine's Unicode tables (\p{L},
# \p{N}, \s, case folding for (?i)); the Python ``regex`` module and tiktoken's Rust regex were
# checked to agree on every code point (U+0000..U+10FFFF minus surrogates, each in several
# contexts), so no disagreement forced the choice.
DEFAULT_PATTERN = GPT4_SPLIT_PATTERN
ENDOFTEXT = "<|endoftext|>"

_CACHE_SIZE = 50_000  # chunk -> ids entries kept by Tokenizer.encode before the cache is reset
_LONG_PIECE = 500  # bytes; above this the byte-pair merge switches to a heap (as tiktoken does)
_NO_RANK = 1 << 62  # "this concatenation is not a token": larger than any rank


# ---------------------------------------------------------------------------------------------
# training


@dataclass(frozen=True)
class Merge:
    """One learned merge: tokens ``pair`` became token ``rank`` with bytes ``token``.

    ``count`` is how many times the pair stood side by side in the training chunks (each chunk
    weighted by how often it occurs) when it was merged. Overlapping occurrences count each
    time: ``aaa`` holds the pair ``(a, a)`` twice, though only one merge fits.
    """

    rank: int
    pair: tuple[int, int]
    token: bytes
    count: int


def _chunk_counts(text: str, pattern: str) -> list[tuple[list[int], int]]:
    """Pre-split ``text`` and deduplicate: (byte ids, how many times the chunk occurs).

    Chunks of one byte hold no pair and are dropped. Shared with the naive reference trainer in
    ``benchmarks/naive_bpe.py`` so the two see exactly the same input.
    """
    counts = Counter(regex.findall(pattern, text))
    chunks = []
    for chunk, n in counts.items():
        ids = list(chunk.encode("utf-8"))
        if len(ids) >= 2:
            chunks.append((ids, n))
    return chunks


def _merge_ids(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right."""
    out = []
    i, n = 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _check_train_args(text: str, vocab_size: int) -> None:
    if not isinstance(vocab_size, int) or not 256 <= vocab_size <= 2**16:
        raise ValueError(
            f"vocab_size must be an integer from 256 (the single bytes) to 65536, "
            f"got {vocab_size!r}"
        )
    if not text:
        raise ValueError("cannot train a tokenizer on empty text")


def train(
    text: str,
    vocab_size: int,
    pattern: str = DEFAULT_PATTERN,
    progress: Callable[[int, int], None] | None = None,
) -> list[Merge]:
    """Learn ``vocab_size - 256`` merges from ``text``; return them in rank order.

    The text is split with ``pattern`` and identical chunks are counted once, with their
    frequency as a weight. Then, repeatedly, the most frequent adjacent pair is merged into a new
    token with the next rank (256, 257, ...). Rules, all deterministic:

    - ties in count go to the smallest pair, compared as ``(left id, right id)``;
    - a pair whose concatenated bytes are already a token (``ab`` + ``c`` after ``a`` + ``bc``)
      is skipped for good and the next pair is taken, so every byte string has one id, which
      tiktoken's rank files need (a guard: with merges applied left to right to whole chunks
      it never fired on the default corpus, up to 8192 tokens);
    - training stops early, with fewer merges, only when no pair is left at all (every chunk is
      a single token, or the only pairs left are skipped ones). Pairs seen once are merged.

    Counts are kept incrementally: a merge touches only the chunks that contain its pair (found
    through an index from pair to chunks), and a heap with stale entries skipped on pop finds
    the best pair without scanning all of them.

    ``progress(done, total)`` is called after every merge (and once at the start); an exception
    it raises propagates, which is how a caller cancels training.
    """
    _check_train_args(text, vocab_size)
    total = vocab_size - 256
    chunks = _chunk_counts(text, pattern)
    words = [ids for ids, _ in chunks]
    freqs = [n for _, n in chunks]

    counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for wi, (ids, n) in enumerate(chunks):
        for pair in pairwise(ids):
            counts[pair] = counts.get(pair, 0) + n
            where.setdefault(pair, set()).add(wi)
    # Min-heap on (-count, pair): the top is the most frequent pair, smallest ids on ties.
    # An entry is stale once its pair's count has changed; stale entries are skipped on pop.
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)

    vocab = [bytes([i]) for i in range(256)]
    known = set(vocab)
    skipped: set[tuple[int, int]] = set()
    merges: list[Merge] = []
    if progress:
        progress(0, total)
    while len(merges) < total and heap:
        neg, pair = heapq.heappop(heap)
        count = counts.get(pair, 0)
        if count != -neg or pair in skipped:
            continue
        token = vocab[pair[0]] + vocab[pair[1]]
        if token in known:
            skipped.add(pair)
            continue
        new_id = len(vocab)
        vocab.append(token)
        known.add(token)
        merges.append(Merge(new_id, pair, token, count))

        # Re-tokenize only the chunks holding the pair; collect the net change of every pair.
        delta: dict[tuple[int, int], int] = {}
        for wi in where.pop(pair):
            old, n = words[wi], freqs[wi]
            new = _merge_ids(old, pair, new_id)
            words[wi] = new
            old_pairs = list(pairwise(old))
            new_pairs = list(pairwise(new))
            for p in old_pairs:
                delta[p] = delta.get(p, 0) - n
            for p in new_pairs:
                delta[p] = delta.get(p, 0) + n
            gone = set(old_pairs).difference(new_pairs)
            gone.discard(pair)  # its whole index entry was popped above
            for p in gone:
                holders = where[p]
                holders.discard(wi)
                if not holders:
                    del where[p]
            for p in set(new_pairs).difference(old_pairs):
                where.setdefault(p, set()).add(wi)
        for p, d in delta.items():
            if d == 0:
                continue
            c = counts.get(p, 0) + d
            if c > 0:
                counts[p] = c
                heapq.heappush(heap, (-c, p))
            else:
                counts.pop(p, None)
        if progress:
            progress(len(merges), total)
    return merges


# ---------------------------------------------------------------------------------------------
# encoding: tiktoken's byte-pair merge


def _byte_pair_merge(
    piece: bytes, ranks: dict[bytes, int], max_rank: int = _NO_RANK
) -> list[bytes]:
    """Split ``piece`` into tokens the way tiktoken does.

    Start from single bytes; repeatedly join the adjacent pair of parts whose concatenated bytes
    is the lowest-ranked token (leftmost on ties), considering only ranks below ``max_rank``;
    stop when no adjacent concatenation is such a token.
    """
    if len(piece) > _LONG_PIECE:
        return _byte_pair_merge_heap(piece, ranks, max_rank)
    parts = [piece[i : i + 1] for i in range(len(piece))]

    def rank_of(b: bytes) -> int:
        r = ranks.get(b, _NO_RANK)
        return r if r < max_rank else _NO_RANK

    # pair_ranks[i] is the rank of parts[i] + parts[i + 1]; min() and index() scan it in C.
    pair_ranks = [rank_of(piece[i : i + 2]) for i in range(len(piece) - 1)]
    while pair_ranks:
        best = min(pair_ranks)
        if best == _NO_RANK:
            break
        i = pair_ranks.index(best)  # leftmost of the lowest
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del pair_ranks[i]
        if i > 0:
            pair_ranks[i - 1] = rank_of(parts[i - 1] + parts[i])
        if i < len(pair_ranks):
            pair_ranks[i] = rank_of(parts[i] + parts[i + 1])
    return parts


def _byte_pair_merge_heap(
    piece: bytes, ranks: dict[bytes, int], max_rank: int = _NO_RANK
) -> list[bytes]:
    """``_byte_pair_merge`` in O(n log n) for long pieces (a long run of spaces or letters).

    Parts are a linked list keyed by their start offset; a heap of (rank, start) gives the
    lowest rank, leftmost on ties, exactly as the quadratic scan does.
    """
    n = len(piece)
    nxt = list(range(1, n + 1))  # start of the next part; n means "no next part"
    prv = list(range(-1, n - 1))
    alive = [True] * n
    current: dict[int, int] = {}  # start -> rank of (part at start) + (the part after it)

    def rank_at(s: int) -> int | None:
        e = nxt[s]
        if e >= n:
            return None
        r = ranks.get(piece[s : nxt[e]])
        return r if r is not None and r < max_rank else None

    heap = []
    for s in range(n - 1):
        r = rank_at(s)
        if r is not None:
            current[s] = r
            heap.append((r, s))
    heapq.heapify(heap)
    while heap:
        r, s = heapq.heappop(heap)
        if not alive[s] or current.get(s) != r:
            continue  # stale: this part or its neighbour changed since the entry was pushed
        e = nxt[s]
        alive[e] = False
        nxt[s] = nxt[e]
        if nxt[s] < n:
            prv[nxt[s]] = s
        for t in (s, prv[s]):
            if t < 0:
                continue
            rt = rank_at(t)
            if rt is None:
                current.pop(t, None)
            else:
                current[t] = rt
                heapq.heappush(heap, (rt, t))
    parts = []
    s = 0
    while s < n:
        parts.append(piece[s : nxt[s]])
        s = nxt[s]
    return parts


@dataclass(frozen=True)
class MergeStep:
    """One step of encoding a chunk.

    ``position`` is the index, in the parts list before the step, of the left part; ``left``
    and ``right`` are the ids joined and ``new`` the resulting id (its rank); ``parts`` the ids
    after the step. A ``whole_chunk`` step is tiktoken's shortcut: the chunk's bytes are a token
    but step-by-step merging stopped elsewhere, so all parts (``left`` is the first, ``right``
    the last, ``position`` is 0) are replaced by that one token.
    """

    position: int
    left: int
    right: int
    new: int
    parts: tuple[int, ...]
    whole_chunk: bool = False


@dataclass(frozen=True)
class ChunkTrace:
    """How one regex chunk was encoded.

    ``start``/``end`` are character offsets of the chunk in the traced text, ``initial`` its
    single-byte ids, ``steps`` the merges in the order applied, ``ids`` the final ids.
    """

    text: str
    start: int
    end: int
    initial: tuple[int, ...]
    steps: tuple[MergeStep, ...]
    ids: tuple[int, ...]


@dataclass(frozen=True)
class EncodeTrace:
    """``Tokenizer.encode_trace`` result: every chunk's trace; ``ids`` equals ``encode(text)``."""

    text: str
    chunks: tuple[ChunkTrace, ...]
    ids: list[int]


def _utf8_safe(text: str) -> str:
    """Replace lone surrogates by U+FFFD as tiktoken does (they cannot be encoded in UTF-8).

    Like tiktoken, this round-trips through UTF-16, which also joins a surrogate *pair* given as
    two code units into the one character it stands for.
    """
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Tokenizer:
    """A byte-level BPE tokenizer: ranks (bytes -> id), a split pattern and special tokens.

    Encoding is tiktoken's algorithm, so ``tiktoken.Encoding(pat_str=pattern,
    mergeable_ranks=ranks, special_tokens=special_tokens)`` gives the same ids.
    """

    def __init__(
        self,
        ranks: dict[bytes, int],
        pattern: str = DEFAULT_PATTERN,
        special_tokens: dict[str, int] | None = None,
    ) -> None:
        self._ranks = dict(ranks)
        n = len(self._ranks)
        self._decoder = {r: b for b, r in self._ranks.items()}
        if sorted(self._decoder) != list(range(n)):
            raise ValueError(f"ranks must be the ids 0..{n - 1}, each used once")
        missing = [b for b in range(256) if bytes([b]) not in self._ranks]
        if missing:
            raise ValueError(
                f"ranks lack {len(missing)} single-byte tokens (first: {missing[0]:#04x}); "
                "byte-level BPE needs all 256"
            )
        self._special = dict(special_tokens or {})
        ids = list(self._special.values())
        if len(set(ids)) != len(ids) or any(not isinstance(i, int) or i < n for i in ids):
            raise ValueError(
                f"special token ids must be distinct integers >= {n} (the ordinary tokens' "
                f"count), got {self._special}"
            )
        self._special_decoder = {i: s.encode("utf-8") for s, i in self._special.items()}
        self._pattern = pattern
        self._regex = regex.compile(pattern)
        self._merges: dict[int, tuple[int, int] | None] = {}  # filled lazily by merge_of
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_merges(
        cls,
        merges: Sequence[Merge],
        pattern: str = DEFAULT_PATTERN,
        special_tokens: dict[str, int] | None = None,
    ) -> Tokenizer:
        """A tokenizer from ``train``'s merges: bytes 0..255, then one token per merge.

        ``special_tokens`` defaults to ``{ENDOFTEXT: vocab size}`` (the first id after the
        ordinary tokens); pass ``{}`` for none.
        """
        ranks = {bytes([i]): i for i in range(256)}
        for m in merges:
            if m.rank != len(ranks):
                raise ValueError(
                    f"merge ranks must run 256, 257, ...; got {m.rank} at {len(ranks)}"
                )
            ranks[m.token] = m.rank
        if special_tokens is None:
            special_tokens = {ENDOFTEXT: len(ranks)}
        tok = cls(ranks, pattern, special_tokens)
        tok._merges.update({m.rank: m.pair for m in merges})
        return tok

    # --- properties ---------------------------------------------------------------------------

    @property
    def pattern(self) -> str:
        return self._pattern

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def ranks(self) -> dict[bytes, int]:
        """The ordinary tokens: bytes -> rank (a copy)."""
        return dict(self._ranks)

    @property
    def n_ordinary(self) -> int:
        return len(self._ranks)

    @property
    def vocab_size(self) -> int:
        """Ordinary plus special tokens."""
        return len(self._ranks) + len(self._special)

    # --- encoding -----------------------------------------------------------------------------

    def _encode_piece(self, piece: bytes) -> list[int]:
        rank = self._ranks.get(piece)
        if rank is not None:  # tiktoken's shortcut: a chunk that is a token is that token
            return [rank]
        return [self._ranks[p] for p in _byte_pair_merge(piece, self._ranks)]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, all of it ordinary text.

        Special-token strings such as ``<|endoftext|>`` are encoded as the characters they are,
        like tiktoken's ``encode_ordinary``. Lone surrogates become U+FFFD, as in tiktoken.
        """
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _utf8_safe(text)
        ids: list[int] = []
        cache = self._cache
        for chunk in self._regex.findall(text):
            got = cache.get(chunk)
            if got is None:
                got = self._encode_piece(chunk.encode("utf-8"))
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()  # simple bound: text that is mostly new chunks gains nothing
                cache[chunk] = got
            ids.extend(got)
        return ids

    def encode_trace(self, text: str) -> EncodeTrace:
        """Encode ``text`` and record every merge step of every chunk (for the dashboard).

        Steps follow the quadratic scan of ``_byte_pair_merge`` (fine for display-sized text).
        The result's ``ids`` always equal ``encode(text)``.
        """
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _utf8_safe(text)
        ranks = self._ranks
        chunks = []
        for match in self._regex.finditer(text):
            piece = match.group().encode("utf-8")
            parts = [piece[i : i + 1] for i in range(len(piece))]
            initial = tuple(ranks[p] for p in parts)
            steps = []
            while len(parts) > 1:
                best, at = _NO_RANK, -1
                for i in range(len(parts) - 1):
                    r = ranks.get(parts[i] + parts[i + 1], _NO_RANK)
                    if r < best:
                        best, at = r, i
                if at < 0:
                    break
                left, right = ranks[parts[at]], ranks[parts[at + 1]]
                parts[at : at + 2] = [parts[at] + parts[at + 1]]
                steps.append(MergeStep(at, left, right, best, tuple(ranks[p] for p in parts)))
            ids = tuple(ranks[p] for p in parts)
            whole = ranks.get(piece)
            if whole is not None and len(parts) > 1:
                steps.append(MergeStep(0, ids[0], ids[-1], whole, (whole,), whole_chunk=True))
                ids = (whole,)
            chunks.append(
                ChunkTrace(match.group(), match.start(), match.end(), initial, tuple(steps), ids)
            )
        return EncodeTrace(text, tuple(chunks), [i for c in chunks for i in c.ids])

    # --- decoding -----------------------------------------------------------------------------

    def token_bytes(self, id: int) -> bytes:
        """The bytes of one token (a special token's UTF-8 string)."""
        b = self._decoder.get(id)
        if b is None:
            b = self._special_decoder.get(id)
            if b is None:
                raise ValueError(
                    f"token id {id!r} is not in the vocabulary (size {self.vocab_size})"
                )
        return b

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of a sequence of ids, joined."""
        return b"".join(self.token_bytes(i) for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of a sequence of ids; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def merge_of(self, id: int) -> tuple[int, int] | None:
        """The two token ids merged to make token ``id``; None for single bytes and specials.

        A tokenizer made by ``from_merges`` knows its merges. One loaded from a rank file
        recovers them: byte-pair merge the token's bytes using only lower ranks; the two parts
        left are the pair (minbpe's ``recover_merges``). A token that this process cannot build
        from two lower-ranked tokens (possible only in a foreign rank file) also gives None.
        """
        if id in self._merges:
            return self._merges[id]
        b = self.token_bytes(id)  # raises for an unknown id
        pair = None
        if id in self._decoder and len(b) > 1:
            parts = _byte_pair_merge(b, self._ranks, max_rank=id)
            if len(parts) == 2:
                pair = (self._ranks[parts[0]], self._ranks[parts[1]])
        self._merges[id] = pair
        return pair

    # --- files --------------------------------------------------------------------------------

    def save(self, directory: str | Path, name: str) -> tuple[Path, Path]:
        """Write ``name.tiktoken`` (base64 bytes, space, rank; by rank) and ``name.json``.

        The JSON holds the split pattern, the special tokens and the ordinary tokens' count.
        Returns the two paths.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rank_path = directory / f"{name}.tiktoken"
        meta_path = directory / f"{name}.json"
        lines = (
            f"{base64.b64encode(self._decoder[r]).decode('ascii')} {r}\n"
            for r in range(self.n_ordinary)
        )
        rank_path.write_text("".join(lines), encoding="ascii")
        meta = {
            "pattern": self._pattern,
            "special_tokens": self._special,
            "n_ordinary": self.n_ordinary,
        }
        meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return rank_path, meta_path

    @classmethod
    def load(cls, directory: str | Path, name: str) -> Tokenizer:
        """Read a tokenizer written by ``save``; errors name the missing or malformed file."""
        directory = Path(directory)
        rank_path = directory / f"{name}.tiktoken"
        meta_path = directory / f"{name}.json"
        for path in (rank_path, meta_path):
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            pattern = meta["pattern"]
            special = meta["special_tokens"]
            n_ordinary = meta["n_ordinary"]
            if not (
                isinstance(pattern, str)
                and isinstance(special, dict)
                and isinstance(n_ordinary, int)
            ):
                raise TypeError("pattern, special_tokens or n_ordinary has the wrong type")
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"malformed tokenizer metadata {meta_path}: {err!r}") from None
        ranks = _read_ranks(rank_path)
        if len(ranks) != n_ordinary:
            raise ValueError(
                f"{rank_path} has {len(ranks)} tokens but {meta_path} says n_ordinary={n_ordinary}"
            )
        try:
            return cls(ranks, pattern, special)
        except (ValueError, regex.error) as err:
            raise ValueError(f"tokenizer {directory / name} (.tiktoken/.json): {err}") from None

    def __repr__(self) -> str:
        return (
            f"Tokenizer(n_ordinary={self.n_ordinary}, special_tokens={self._special}, "
            f"pattern={self._pattern!r})"
        )


def _read_ranks(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken rank file; a malformed line raises ValueError naming file and line."""
    ranks: dict[bytes, int] = {}
    try:
        lines = path.read_bytes().decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"malformed rank file {path}: not ASCII text") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            token_b64, rank_text = line.split()
            token = base64.b64decode(token_b64, validate=True)
            rank = int(rank_text)
        except ValueError as err:
            raise ValueError(
                f"malformed rank file {path}, line {lineno}: {line!r} ({err})"
            ) from None
        if token in ranks:
            raise ValueError(f"malformed rank file {path}, line {lineno}: token listed twice")
        ranks[token] = rank
    if not ranks:
        raise ValueError(f"malformed rank file {path}: no tokens")
    return ranks


# ---------------------------------------------------------------------------------------------
# display


_VISIBLE = {" ": "·", "\n": "↵", "\t": "→"}


def readable(b: bytes) -> str:
    """Token bytes as a person can read them.

    Space, newline and tab become ``·``, ``↵`` and ``→``; control characters and bytes that are
    not part of a complete UTF-8 character become ``\\xNN`` escapes (one per byte).
    """
    out = []
    # surrogateescape maps each undecodable byte 0xNN to the lone surrogate U+DCNN
    for ch in b.decode("utf-8", errors="surrogateescape"):
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif unicodedata.category(ch) == "Cc":
            out.append("".join(f"\\x{x:02x}" for x in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)
