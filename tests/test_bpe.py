"""Tests of models.bpe: training against a naive reference, encoding against tiktoken."""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from itertools import pairwise

import pytest
import regex
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from benchmarks.naive_bpe import train_naive
from models import bpe
from models.bpe import (
    DEFAULT_PATTERN,
    ENDOFTEXT,
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    Merge,
    Tokenizer,
    readable,
    train,
)
from models.corpus import load, split

# ---------------------------------------------------------------------------------------------
# inputs

ADVERSARIAL = [
    "",
    "a",
    " ",
    "hello world",
    "Hello, World! How's it going? I'LL say it's FINE, we'RE done, they'Ve, I'D, she'S.",
    "don't won't can't shan't y'all 'tis o'clock '' ''' 's 'S 'll",
    # emoji: plain, ZWJ sequences, skin tones, flags, keycaps, variation selectors
    "😀 😃🎉👍",
    "👩‍👩‍👧‍👦 family 👨‍💻 coder 🏳️‍🌈 flag",
    "👍🏻👍🏼👍🏽👍🏾👍🏿 waves 👋🏽",
    "🇫🇷🇩🇪🇯🇵🇺🇸 flags 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "1️⃣ #️⃣ ©️ ™️ ❤️ ✔︎",
    # CJK, RTL, combining marks, Indic, Thai, Korean
    "日本語のテキストです。中文文本,繁體中文。한국어 텍스트입니다.",
    "مرحبا بالعالم، هذا نص عربي. שלום עולם, זה טקסט בעברית.",
    "e\u0301 a\u0308 o\u0302\u0323 Z\u0351\u0352\u0353\u0354\u0355a\u0356\u0357l\u0358g\u0359o",
    "नमस्ते दुनिया, यह हिंदी पाठ है। क्षत्रिय ज्ञान",
    "สวัสดีชาวโลก ภาษาไทย",
    "Ελληνικά Кириллица Ѳѣ Ꙗ ǅungla ǈ ǋ Ⅻ ⅻ ½ ¾ ² ³ ٣ ۳ ߃ ३",
    # whitespace runs
    "a  b   c    d\t\te\n\nf\r\ng\r\n\r\nh   \n   i",
    "   leading and trailing   ",
    "\n\n\n",
    "\t \t \n \r \x0b \x0c \x85 \xa0 \u2000\u2001\u2002 \u3000 \u2028 \u2029 end",
    " " * 700 + "x" + "\n" * 600 + "y" + "\t " * 400,
    "line1\nline2\r\nline3\rline4\n",
    # digits
    "0 1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890",
    "3.14159265358979 1e-10 0x1F 1,000,000 -42 +7 ١٢٣٤٥ ໑໒໓ 𝟏𝟐𝟑",
    "9" * 1000,
    # code
    "def f(x: int) -> int:\n    return x ** 2  # square\n\nif __name__ == '__main__':\n",
    "for (int i = 0; i < n; ++i) { a[i] = b[i] << 2 | c; }",
    '{"key": [1, 2.5, null, true], "s": "\\u00e9\\n"}',
    "<|endoftext|> <|endoftext|>hello<|endoftext|>",
    '<html><body class="x">&amp; &lt;tag&gt;</body></html>',
    # control characters, NUL, odd code points
    "nul\x00byte\x00\x00 bell\x07 esc\x1b[31mred\x1b[0m del\x7f c1\x80\x9f",
    "\x1c\x1d\x1e\x1f separators \ufeff bom \u200b zwsp \u200d zwj \u2060 wj",
    "private \ue000\uf8ff \U000f0000 \U0010fffd noncharacters \ufffe\uffff \U0001fffe",
    "mixed: abc漢字123😀عربي  \t\nxyz",
    "ſ ſs 'ſ 'K 'K ﬁ ﬀ ß ẞ İ ı",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" * 10,
    "The quick brown fox jumps over the lazy dog. " * 20,
]

_INTERESTING = (
    [chr(c) for c in range(0x00, 0x80)]
    + list(" \t\n\r" * 8)
    + [chr(c) for c in range(0x80, 0x250)]
    + list("'sdmtlvrSDMTLVRſK")
    + [chr(c) for c in range(0x300, 0x370)]  # combining marks
    + [chr(c) for c in range(0x600, 0x700)]  # Arabic
    + [chr(c) for c in range(0x900, 0x980)]  # Devanagari
    + [chr(c) for c in range(0x4E00, 0x4E80)]  # CJK
    + [chr(c) for c in range(0x1F300, 0x1F650)]  # emoji
    + ["\u200d", "\ufe0f", "\u2028", "\u3000", "\u00a0", "\x85"]
)


def _random_code_point(rng: random.Random) -> str:
    while True:
        c = rng.randrange(0x110000)
        if not 0xD800 <= c < 0xE000:  # surrogates cannot be encoded in UTF-8
            return chr(c)


def random_strings(n: int = 3000, seed: int = 1234) -> list[str]:
    """Seeded random strings: any valid code point, BMP only, and an 'interesting' pool."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(1, 24)
        kind = i % 3
        if kind == 0:
            out.append("".join(_random_code_point(rng) for _ in range(length)))
        elif kind == 1:
            s = []
            while len(s) < length:
                c = rng.randrange(0x10000)
                if not 0xD800 <= c < 0xE000:
                    s.append(chr(c))
            out.append("".join(s))
        else:
            out.append("".join(rng.choice(_INTERESTING) for _ in range(length)))
    return out


ALL_INPUTS = ADVERSARIAL + random_strings()

# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def corpus_split() -> tuple[str, str]:
    return split(load().text)


@pytest.fixture(scope="module")
def small_merges(corpus_split) -> list[Merge]:
    return train(corpus_split[0][:200_000], 512)


@pytest.fixture(scope="module")
def small_tok(small_merges) -> Tokenizer:
    return Tokenizer.from_merges(small_merges)


def tiktoken_from_files(
    tmp_path, tok: Tokenizer, monkeypatch, name: str = "t"
) -> tiktoken.Encoding:
    """A tiktoken Encoding built from the files our tokenizer saves (not from memory)."""
    rank_path, meta_path = tok.save(tmp_path, name)
    # load_tiktoken_bpe reads a local path directly, but caches it under a key made from the
    # path alone; with caching off it cannot hand back a stale copy of another test's file.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    ranks = load_tiktoken_bpe(str(rank_path))
    meta = json.loads(meta_path.read_text("utf-8"))
    return tiktoken.Encoding(
        name=f"anatomy-test-{name}",
        pat_str=meta["pattern"],
        mergeable_ranks=ranks,
        special_tokens=meta["special_tokens"],
    )


# ---------------------------------------------------------------------------------------------
# training


def test_train_shape_and_tokens(small_merges):
    assert len(small_merges) == 512 - 256
    assert [m.rank for m in small_merges] == list(range(256, 512))
    vocab = [bytes([i]) for i in range(256)]
    for m in small_merges:
        a, b = m.pair
        assert a < m.rank and b < m.rank  # merges only use tokens that already exist
        assert m.token == vocab[a] + vocab[b]
        assert m.count >= 1
        vocab.append(m.token)
    assert len(set(vocab)) == len(vocab)  # bytes -> rank is a bijection


def test_first_merge_count_brute_force(corpus_split, small_merges):
    text = corpus_split[0][:200_000]
    counts: Counter[tuple[int, int]] = Counter()
    for chunk in regex.findall(DEFAULT_PATTERN, text):
        b = chunk.encode("utf-8")
        counts.update(pairwise(b))
    best = max(counts.values())
    first = small_merges[0]
    assert first.count == counts[first.pair] == best
    assert first.pair == min(p for p, c in counts.items() if c == best)  # tie rule


def test_counts_match_brute_force_replay(corpus_split, small_merges):
    """Every merge's count equals a recount on the chunks with all earlier merges applied."""
    text = corpus_split[0][:20_000]
    merges = train(text, 300)
    words = [list(c.encode("utf-8")) for c in regex.findall(DEFAULT_PATTERN, text)]
    for m in merges:
        recount = sum(1 for w in words for i in range(len(w) - 1) if (w[i], w[i + 1]) == m.pair)
        assert m.count == recount
        words = [bpe._merge_ids(w, m.pair, m.rank) for w in words]


@pytest.mark.parametrize(
    "text, vocab",
    [
        ("aaaa bbb aaa ab ab ba abab aaaaa b a " * 3, 300),
        ("the cat sat on the mat; the cat ate the rat. 123 1234 12345\n\n  x", 330),
        ("ab " * 5 + "bc " * 5 + "abc " * 2 + "cab ca bca", 290),
    ],
)
def test_matches_naive_tiny(text, vocab):
    assert train(text, vocab) == train_naive(text, vocab)


def test_matches_naive_corpus_slice(corpus_split):
    text = corpus_split[0][:60_000]
    for pattern in (GPT4_SPLIT_PATTERN, GPT2_SPLIT_PATTERN):
        assert train(text, 400, pattern) == train_naive(text, 400, pattern)


def test_stops_when_no_pair_left():
    # chunks "ab", "ab", "c": only the pair (a, b), then nothing: one merge, not 300 - 256
    merges = train("ab ab c", 300, pattern=r"\S+")
    assert merges == [Merge(256, (97, 98), b"ab", 2)]
    assert train("x y z", 1000, pattern=r"\S") == []  # no chunk has two bytes
    assert train("xy", 260) == [Merge(256, (120, 121), b"xy", 1)]  # a pair seen once is merged


def test_progress_called_and_can_cancel():
    seen: list[tuple[int, int]] = []
    merges = train("hello world " * 50, 270, progress=lambda d, t: seen.append((d, t)))
    assert len(merges) == 10  # "hello" and " world" hold 4 + 5 pairs, then " " + "hello"
    assert seen == [(i, 14) for i in range(11)]

    class Cancelled(Exception):
        pass

    def cancel(done: int, total: int) -> None:
        if done == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        train("hello world " * 50, 270, progress=cancel)


@pytest.mark.parametrize("vocab", [255, 0, -1, 2**16 + 1])
def test_bad_vocab_size(vocab):
    with pytest.raises(ValueError, match="vocab_size"):
        train("some text", vocab)


def test_empty_text():
    with pytest.raises(ValueError, match="empty"):
        train("", 300)


def test_train_256_is_no_merges():
    assert train("hello", 256) == []


# ---------------------------------------------------------------------------------------------
# encoding and decoding


def test_round_trip(small_tok):
    for s in ALL_INPUTS:
        assert small_tok.decode(small_tok.encode(s)) == s


def test_encode_is_not_trivial(small_tok):
    ids = small_tok.encode("the function returns the value")
    assert len(ids) < len("the function returns the value") / 2
    assert all(0 <= i < small_tok.n_ordinary for i in ids)


def test_specials_and_sizes(small_tok):
    assert small_tok.n_ordinary == 512
    assert small_tok.special_tokens == {ENDOFTEXT: 512}
    assert small_tok.vocab_size == 513
    assert small_tok.token_bytes(512) == ENDOFTEXT.encode()
    assert small_tok.decode([512]) == ENDOFTEXT
    assert 512 not in small_tok.encode(ENDOFTEXT)  # ordinary text, never the special
    assert small_tok.decode(small_tok.encode(ENDOFTEXT)) == ENDOFTEXT
    none = Tokenizer.from_merges([], special_tokens={})
    assert none.vocab_size == none.n_ordinary == 256
    with pytest.raises(ValueError, match="not in the vocabulary"):
        none.token_bytes(256)


def test_decode_invalid_utf8_replaced(small_tok):
    assert small_tok.decode_bytes([0xC3]) == b"\xc3"
    assert small_tok.decode([0xC3]) == "\ufffd"
    assert small_tok.decode([0xC3, 0xA9, 0xC3]) == "é\ufffd"


def test_long_piece_heap_matches_scan(small_tok):
    ranks = small_tok.ranks
    rng = random.Random(7)
    pool = b"the and ing tion  \n  ab"
    for _ in range(50):
        piece = bytes(rng.choice(pool) for _ in range(rng.randint(2, 400)))
        assert bpe._byte_pair_merge_heap(piece, ranks) == bpe._byte_pair_merge(piece, ranks)
        cap = rng.randint(256, 512)
        assert bpe._byte_pair_merge_heap(piece, ranks, cap) == bpe._byte_pair_merge(
            piece, ranks, cap
        )


# ---------------------------------------------------------------------------------------------
# tiktoken equality


def _assert_same_as_tiktoken(tok: Tokenizer, enc: tiktoken.Encoding, inputs: list[str]) -> None:
    expected = enc.encode_ordinary_batch(inputs, num_threads=2)
    for s, ids in zip(inputs, expected, strict=True):
        assert tok.encode(s) == ids, f"differs from tiktoken on {s!r}"


def test_tiktoken_equality_small(small_tok, tmp_path, monkeypatch):
    enc = tiktoken_from_files(tmp_path, small_tok, monkeypatch)
    assert enc.n_vocab == small_tok.vocab_size
    _assert_same_as_tiktoken(small_tok, enc, ALL_INPUTS)
    # special token: its id, and "<|endoftext|>" in text is ordinary text for encode
    assert enc.encode(ENDOFTEXT, allowed_special="all") == [small_tok.special_tokens[ENDOFTEXT]]
    text = f"a{ENDOFTEXT}b {ENDOFTEXT}"
    assert small_tok.encode(text) == enc.encode_ordinary(text)
    # lone surrogates become U+FFFD, as tiktoken does
    for s in ["a\ud800b", "\udfff", "x \ud83d\ude00 y", "\ud83d"]:
        assert small_tok.encode(s) == enc.encode_ordinary(s)


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN], ids=["gpt2", "gpt4"])
def test_tiktoken_equality_both_patterns(pattern, small_merges, tmp_path, monkeypatch):
    tok = Tokenizer.from_merges(small_merges, pattern=pattern)
    enc = tiktoken_from_files(tmp_path, tok, monkeypatch)
    _assert_same_as_tiktoken(tok, enc, ALL_INPUTS)


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN], ids=["gpt2", "gpt4"])
def test_tiktoken_equality_every_code_point(pattern, small_merges):
    """Python's regex module and tiktoken's Rust regex split alike around every code point.

    Planes 0-3 and 14 hold every assigned character; planes 4-13 are unassigned and 15-16 are
    private use, which both engines treat as neither letter, number nor space.
    """
    tok = Tokenizer.from_merges(small_merges, pattern=pattern)
    enc = tiktoken.Encoding(
        "every-cp", pat_str=pattern, mergeable_ranks=tok.ranks, special_tokens={}
    )
    code_points = [c for c in range(0x40000) if not 0xD800 <= c < 0xE000]
    code_points += range(0xE0000, 0xE1000)
    text = "".join(f" {chr(c)}{chr(c)}a{chr(c)}1'{chr(c)}\n" for c in code_points)
    assert tok.encode(text) == enc.encode_ordinary(text)


def test_tiktoken_equality_default_settings(corpus_split, tmp_path, monkeypatch):
    train_text, val_text = corpus_split
    tok = Tokenizer.from_merges(train(train_text, 1024))
    enc = tiktoken_from_files(tmp_path, tok, monkeypatch, "full")
    assert tok.encode(val_text) == enc.encode_ordinary(val_text)
    _assert_same_as_tiktoken(tok, enc, ADVERSARIAL + random_strings(1000, seed=99))


def test_tiktoken_equality_foreign_ranks(tmp_path, monkeypatch):
    """Byte tokens not at id == byte (as in GPT-2) and a token that merging cannot reach."""
    order = list(range(256))
    random.Random(3).shuffle(order)
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    for extra in [b"th", b"he", b"the", b" the", b"in", b"ing", b"abcd", b"  ", b"    "]:
        ranks[extra] = len(ranks)
    tok = Tokenizer(ranks, special_tokens={ENDOFTEXT: len(ranks)})
    enc = tiktoken_from_files(tmp_path, tok, monkeypatch, "foreign")
    _assert_same_as_tiktoken(tok, enc, ADVERSARIAL + ["abcd", " abcd the thing", "    x"])
    assert tok.encode("abcd") == [ranks[b"abcd"]]  # whole-chunk shortcut
    assert tok.merge_of(ranks[b"abcd"]) is None  # a, b, c, d: no lower-ranked pair joins them
    assert tok.merge_of(ranks[b" the"]) == (ranks[b" "], ranks[b"the"])
    assert tok.merge_of(ranks[b"the"]) == (ranks[b"th"], ranks[b"e"])
    assert tok.merge_of(ranks[b"a"]) is None


# ---------------------------------------------------------------------------------------------
# encode_trace


def _check_trace(tok: Tokenizer, s: str) -> None:
    trace = tok.encode_trace(s)
    assert trace.ids == tok.encode(s)
    assert "".join(c.text for c in trace.chunks) == "".join(regex.findall(tok.pattern, s))
    for c in trace.chunks:
        assert s[c.start : c.end] == c.text
        assert tok.decode_bytes(c.initial) == c.text.encode("utf-8")
        assert all(len(tok.token_bytes(i)) == 1 for i in c.initial)
        parts = list(c.initial)
        for step in c.steps:
            if step.whole_chunk:
                assert step.new == tok.ranks[c.text.encode("utf-8")]
                assert step.parts == (step.new,)
                parts = [step.new]
                continue
            assert parts[step.position : step.position + 2] == [step.left, step.right]
            assert tok.token_bytes(step.new) == tok.token_bytes(step.left) + tok.token_bytes(
                step.right
            )
            parts[step.position : step.position + 2] = [step.new]
            assert tuple(parts) == step.parts
        assert tuple(parts) == c.ids


def test_trace_matches_encode(small_tok):
    for s in ADVERSARIAL + random_strings(500, seed=5):
        _check_trace(small_tok, s)


def test_trace_records_whole_chunk_shortcut():
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"abcd"] = 256
    tok = Tokenizer(ranks)
    trace = tok.encode_trace("abcd abc")
    first = trace.chunks[0]
    assert first.text == "abcd" and first.initial == (97, 98, 99, 100)
    assert len(first.steps) == 1 and first.steps[0].whole_chunk
    assert first.ids == (256,)
    assert trace.ids == tok.encode("abcd abc") == [256, 32, 97, 98, 99]
    _check_trace(tok, "abcd abc")


def test_trace_steps_example(small_tok):
    trace = small_tok.encode_trace(" the")
    (chunk,) = trace.chunks
    assert chunk.initial == tuple(b" the")
    assert chunk.steps and chunk.steps[-1].parts == chunk.ids
    assert all(not s.whole_chunk for s in chunk.steps)


# ---------------------------------------------------------------------------------------------
# merge_of, save and load


def test_merge_of_from_merges(small_tok, small_merges):
    for m in small_merges:
        assert small_tok.merge_of(m.rank) == m.pair
    assert small_tok.merge_of(65) is None
    assert small_tok.merge_of(512) is None  # the special token


def test_save_load_round_trip(small_tok, small_merges, tmp_path):
    rank_path, meta_path = small_tok.save(tmp_path / "sub", "tok")
    assert rank_path.name == "tok.tiktoken" and meta_path.name == "tok.json"
    lines = rank_path.read_text().splitlines()
    assert len(lines) == 512
    assert lines[0] == base64.b64encode(bytes([0])).decode() + " 0"
    assert [int(line.split()[1]) for line in lines] == list(range(512))
    meta = json.loads(meta_path.read_text())
    assert meta == {
        "pattern": DEFAULT_PATTERN,
        "special_tokens": {ENDOFTEXT: 512},
        "n_ordinary": 512,
    }

    loaded = Tokenizer.load(tmp_path / "sub", "tok")
    assert loaded.ranks == small_tok.ranks
    assert loaded.special_tokens == small_tok.special_tokens
    assert loaded.pattern == small_tok.pattern
    for s in ADVERSARIAL:
        assert loaded.encode(s) == small_tok.encode(s)
    # merges recovered from ranks alone equal the trained ones
    assert [loaded.merge_of(m.rank) for m in small_merges] == [m.pair for m in small_merges]


def test_load_missing_file(small_tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tiktoken"):
        Tokenizer.load(tmp_path, "nope")
    _, meta_path = small_tok.save(tmp_path, "t")
    meta_path.unlink()
    with pytest.raises(FileNotFoundError, match="t.json"):
        Tokenizer.load(tmp_path, "t")


@pytest.mark.parametrize(
    "damage, where",
    [
        (lambda r, m: r.write_text("not base64!! 0\n"), "t.tiktoken"),
        (lambda r, m: r.write_text("YQ== zero\n"), "t.tiktoken"),
        (lambda r, m: r.write_text("YQ==\n"), "t.tiktoken"),
        (lambda r, m: r.write_bytes(b"\xff\xfe"), "t.tiktoken"),
        (lambda r, m: r.write_text(""), "t.tiktoken"),
        (lambda r, m: r.write_text("".join(r.read_text().splitlines(True)[:-1])), "t.tiktoken"),
        (lambda r, m: m.write_text("{not json"), "t.json"),
        (lambda r, m: m.write_text('{"pattern": "x"}'), "t.json"),
        (
            lambda r, m: m.write_text(
                m.read_text().replace('"n_ordinary": 512', '"n_ordinary": "a"')
            ),
            "t.json",
        ),
    ],
)
def test_load_malformed(small_tok, tmp_path, damage, where):
    rank_path, meta_path = small_tok.save(tmp_path, "t")
    damage(rank_path, meta_path)
    with pytest.raises(ValueError, match=regex.escape(where)):
        Tokenizer.load(tmp_path, "t")


def test_constructor_validation():
    ranks = {bytes([b]): b for b in range(256)}
    with pytest.raises(ValueError, match="single-byte"):
        Tokenizer({k: v for k, v in ranks.items() if k != b"\x00"} | {b"ab": 0})
    with pytest.raises(ValueError, match="0..256"):
        Tokenizer(ranks | {b"ab": 300})
    with pytest.raises(ValueError, match="special"):
        Tokenizer(ranks, special_tokens={ENDOFTEXT: 10})


# ---------------------------------------------------------------------------------------------
# readable


@pytest.mark.parametrize(
    "raw, shown",
    [
        (b"hello", "hello"),
        (b" the", "·the"),
        (b"\n\n", "↵↵"),
        (b"\tx", "→x"),
        (b"\r\n", "\\x0d↵"),
        (b"\x00\x1b\x7f", "\\x00\\x1b\\x7f"),
        ("é".encode(), "é"),
        ("é".encode()[:1], "\\xc3"),
        ("😀".encode()[:3], "\\xf0\\x9f\\x98"),
        ("a😀".encode()[1:], "😀"),
        (b"\x80abc", "\\x80abc"),
        ("\x85".encode(), "\\xc2\\x85"),  # C1 control: both UTF-8 bytes escaped
        ("日本".encode(), "日本"),
    ],
)
def test_readable(raw, shown):
    assert readable(raw) == shown
