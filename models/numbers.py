"""The translator's task: whole numbers in digits -> American English words.

``words(1204) == "one thousand two hundred four"``: lower case, no "and", no commas, tens and
units joined by a hyphen ("forty-two"). This function is the reference the model is trained
on and judged by, and what the dashboard shows beside a wrong translation. Also here: the two
vocabularies (digits in, words out), the data split (held-out numbers never trained on) and
the reading of what a person types. No torch: the dashboard imports this.
"""

from __future__ import annotations

import re

import numpy as np

LIMIT = 999_999  # the trained range: 0 to LIMIT
DATA_FORMAT = 2  # how training numbers are drawn (1: uniform digit counts; 2: and round ones)
MAX_DIGITS = len(str(LIMIT))

# split strings are easier to read than 28 quoted words
_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
UNITS = _UNITS.split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()  # noqa: SIM905 (20-90)

# Target tokens: a word, or a ten with its hyphen ("forty-") that a unit follows, so that
# "forty-two" is two tokens and each reads one digit.
PAD, START, END = "<pad>", "<s>", "</s>"
SOURCE_TOKENS = (PAD, *"0123456789")
TARGET_TOKENS = (PAD, START, END, *UNITS, *TENS, *(t + "-" for t in TENS), "hundred", "thousand")
SOURCE_IDS = {t: i for i, t in enumerate(SOURCE_TOKENS)}
TARGET_IDS = {t: i for i, t in enumerate(TARGET_TOKENS)}
# the longest target: "seven hundred seventy- seven thousand seven hundred seventy- seven"
MAX_WORDS = 9


def _below_thousand(n: int) -> list[str]:
    out = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        out += [UNITS[hundreds], "hundred"]
    if rest >= 20:
        tens, units = divmod(rest, 10)
        out += [TENS[tens - 2] + "-", UNITS[units]] if units else [TENS[tens - 2]]
    elif rest or not out:
        out.append(UNITS[rest])
    return out


def word_tokens(n: int) -> list[str]:
    """The target tokens of ``n`` (0 <= n <= LIMIT): ``42 -> ["forty-", "two"]``."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n <= LIMIT:
        raise ValueError(f"the translator's numbers are whole numbers from 0 to {LIMIT:,}")
    thousands, rest = divmod(int(n), 1000)
    out = []
    if thousands:
        out += [*_below_thousand(thousands), "thousand"]
    if rest or not out:
        out += _below_thousand(rest)
    return out


def join(tokens: list[str]) -> str:
    """Target tokens as text: spaces between words, none after a hyphen."""
    text = ""
    for tok in tokens:
        text += tok if not text or text.endswith("-") else " " + tok
    return text


def words(n: int) -> str:
    """``n`` in American English words: ``words(700010) == "seven hundred thousand ten"``."""
    return join(word_tokens(n))


# -- what a person types --------------------------------------------------------------------
SEPARATED = re.compile(r"\d{1,3}([ ,]\d{3})+")


def parse(text: str) -> str:
    """The digits of a typed number, or a ValueError saying what is wrong (safe to show).

    Accepts digits, and spaces or commas as thousands separators ("12,345", "12 345");
    leading zeros are kept (the model reads them as typed)."""
    text = (text or "").strip()
    if not text:
        raise ValueError("Type a number, for example 1204.")
    if not (text.isascii() and text.isdigit()):  # str.isdigit is true of "١٢٣" and "²"
        if not text.isascii() or not SEPARATED.fullmatch(text):
            raise ValueError(
                f"{text[:20]!r} is not a number in digits: use 0-9 only (commas or spaces "
                "may separate thousands, as in 12,345)."
            )
        text = re.sub(r"[ ,]", "", text)
    if len(text) > MAX_DIGITS or int(text) > LIMIT:
        raise ValueError(
            f"{text[:20]} is beyond what the translator was trained on (0 to {LIMIT:,})."
        )
    return text


def source_ids(digits: str) -> list[int]:
    """The encoder's input ids of ``digits`` (a string of 0-9)."""
    return [SOURCE_IDS[d] for d in digits]


def target_ids(n: int) -> list[int]:
    """The decoder's ids for ``n``: START, the words, END."""
    return [TARGET_IDS[START], *(TARGET_IDS[t] for t in word_tokens(n)), TARGET_IDS[END]]


# -- the data ---------------------------------------------------------------------------------
def draw(rng: np.random.Generator, size: int, zeros: float = 0.0) -> np.ndarray:
    """``size`` numbers: the number of digits uniform from 1 to 6 (so that short numbers are
    not drowned out), the leading digit 1-9 (0 alone for one digit), each later digit 0-9,
    and 0 instead with probability ``zeros`` (round numbers: 100000, 7010)."""
    n_digits = rng.integers(1, MAX_DIGITS + 1, size=size)
    digits = rng.integers(0, 10, size=(size, MAX_DIGITS))
    digits[rng.random((size, MAX_DIGITS)) < zeros] = 0
    place = np.arange(MAX_DIGITS)[None, :]  # 0 = units
    lead = place == (n_digits - 1)[:, None]
    digits = np.where(lead & (n_digits[:, None] > 1), rng.integers(1, 10, size=(size, 1)), digits)
    digits = np.where(place < n_digits[:, None], digits, 0)
    return (digits * 10**place).sum(axis=1)


def held_out(count: int = 2000, seed: int = 0) -> np.ndarray:
    """``count`` numbers never trained on: drawn uniformly from 1,000 to LIMIT (each number
    below 1,000 is a building block of every larger one, so all of them are trained on)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(1000, LIMIT + 1), size=count, replace=False))


def held_out_round(count: int = 500, seed: int = 1) -> np.ndarray:
    """``count`` more numbers never trained on, from 1,000 up, drawn as :func:`draw` does with
    half the digits zero: the round numbers that uniform draws almost never give."""
    rng = np.random.default_rng(seed)
    found: dict[int, None] = {}  # in the order drawn
    while len(found) < count:
        n = draw(rng, count, zeros=0.5)
        found.update(dict.fromkeys(int(x) for x in n[n >= 1000]))
    return np.sort(np.fromiter(found, dtype=np.int64)[:count])


def training_numbers(rng: np.random.Generator, size: int, exclude: np.ndarray) -> np.ndarray:
    """``size`` numbers for training, none in ``exclude``: half drawn with no extra zeros,
    half with each later digit zero with probability 1/2 (see :func:`draw`)."""
    out = np.empty(0, dtype=np.int64)
    while len(out) < size:
        n = np.concatenate([draw(rng, size), draw(rng, size, zeros=0.5)])
        n = rng.permutation(n)
        out = np.concatenate([out, n[~np.isin(n, exclude)]])
    return out[:size]


def pad(rows: list[list[int]], length: int | None = None) -> np.ndarray:
    """Rows of ids right-padded with PAD (id 0) to one length."""
    length = length or max(len(r) for r in rows)
    out = np.zeros((len(rows), length), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
