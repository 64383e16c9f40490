"""The naive BPE trainer: recount every pair over all chunks before every merge.

This is the reference ``models.bpe.train`` is checked and timed against. It is deliberately the
same in everything but the counting: the same pre-split and deduplication (the very same
helper), the same weighting by chunk frequency, the same tie rule (most frequent pair, then the
smallest ``(left id, right id)``), the same rule that skips a pair whose bytes are already a
token, and the same stopping rule (only when no pair is left).
"""

from __future__ import annotations

from itertools import pairwise

from models.bpe import DEFAULT_PATTERN, Merge, _check_train_args, _chunk_counts, _merge_ids


def train_naive(text: str, vocab_size: int, pattern: str = DEFAULT_PATTERN) -> list[Merge]:
    """Learn ``vocab_size - 256`` merges from ``text``, recounting all pairs for each merge."""
    _check_train_args(text, vocab_size)
    chunks = _chunk_counts(text, pattern)
    words = [ids for ids, _ in chunks]
    freqs = [n for _, n in chunks]
    vocab = [bytes([i]) for i in range(256)]
    known = set(vocab)
    merges: list[Merge] = []
    while len(vocab) < vocab_size:
        counts: dict[tuple[int, int], int] = {}
        for ids, n in zip(words, freqs, strict=True):
            for pair in pairwise(ids):
                counts[pair] = counts.get(pair, 0) + n
        candidates = [(-c, p) for p, c in counts.items() if vocab[p[0]] + vocab[p[1]] not in known]
        if not candidates:
            break
        neg, pair = min(candidates)  # highest count, then smallest pair
        new_id = len(vocab)
        token = vocab[pair[0]] + vocab[pair[1]]
        vocab.append(token)
        known.add(token)
        merges.append(Merge(new_id, pair, token, -neg))
        words = [_merge_ids(ids, pair, new_id) if len(ids) > 1 else ids for ids in words]
    return merges
