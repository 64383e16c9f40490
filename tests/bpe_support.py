"""Shared by the BPE tests (the lesson's live and snapshot pages, the checkpoint imports):
what its pages must say of characters split across tokens, computed here from ``str.encode``
(not from the lesson's own code), a reading of the boxes its text is drawn in, and texts
glued from random tokens."""

from __future__ import annotations

import numpy as np

# Each token element's "part of …" note (the element after it), or "".
JS_PARTS = """
(toks) => toks.map(t => {
  const next = t.nextElementSibling;
  return next && next.classList.contains("bpe-part") ? next.textContent : "";
})
"""


# Every shown box of a pane (the host and what its shadow root holds): its right edge, its
# scroll and client widths and the window's, for checking that the lesson's text fits.
JS_BOXES = """
(host) => {
  const inner = (host.shadowRoot || host).querySelectorAll("*");
  const room = document.documentElement.clientWidth;
  return [host, ...inner].filter(e => e.getBoundingClientRect().width > 0).map(e => {
    const r = e.getBoundingClientRect();
    return {what: `${e.tagName}.${e.className}`, right: r.right, sw: e.scrollWidth,
            cw: e.clientWidth, room: room};
  });
}
"""


def expected_parts(text: str, tokens: list[bytes]) -> list[str]:
    """For each token (its bytes), the characters of ``text`` whose UTF-8 bytes (str.encode)
    it holds only some of, as "part of 你 (e4 bd a0)"; "" for whole ones."""
    spans, pos = [], 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        spans.append((ch, pos, pos + n))
        pos += n
    out, pos = [], 0
    for t in tokens:
        end = pos + len(t)
        split = [
            f"{c} ({c.encode('utf-8').hex(' ')})"
            for c, a, b in spans
            if a < end and b > pos and (a < pos or b > end)
        ]
        out.append("part of " + " and ".join(split) if split else "")
        pos = end
    return out


def scrambled_texts(tok, lines: list[str], n: int, most: int, seed: int = 0) -> list[str]:
    """``lines`` and then ``n`` texts glued from 1 to ``most - 1`` random learned tokens of
    ``tok`` (their bytes joined, invalid UTF-8 replaced): where two encoders' merge orders
    would part."""
    rng = np.random.default_rng(seed)
    pieces = [tok.token_bytes(i) for i in range(256, tok.n_ordinary)]
    texts = list(lines)
    for _ in range(n):
        picked = rng.choice(len(pieces), size=rng.integers(1, most))
        texts.append(b"".join(pieces[i] for i in picked).decode("utf-8", "replace"))
    return texts
