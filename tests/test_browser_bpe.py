"""The BPE lesson in a real Chromium: the merge slider, the encode trace, escaping, pasting.

What the page draws is read from its Bokeh document (sources named in dashboard/views/bpe.py)
and its DOM; the expected ids come from tiktoken built here from the committed rank file.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import tiktoken
from playwright.sync_api import expect
from tiktoken.load import load_tiktoken_bpe

from dashboard.state import DEFAULT_TEXT
from models.runtime import STATIC_DIR
from tests.bpe_support import JS_BOXES, JS_PARTS, expected_parts
from tests.browser_support import model_data, record_errors, serve, wait_data

pytestmark = pytest.mark.browser


def _ranks() -> tuple[dict[bytes, int], str]:
    spec = json.loads((STATIC_DIR / "manifest.json").read_text())["models"][0]["tokenizer"]
    path = STATIC_DIR / spec["rank_file"]
    # the hash makes tiktoken re-read the file rather than trust a cached copy
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return load_tiktoken_bpe(str(path), expected_hash=sha), spec["pattern"]


def _encoding(k: int | None = None) -> tiktoken.Encoding:
    ranks, pattern = _ranks()
    if k is not None:
        ranks = {b: r for b, r in ranks.items() if r < 256 + k}
    return tiktoken.Encoding(
        name=f"bpe-test-{k}", pat_str=pattern, mergeable_ranks=ranks, special_tokens={}
    )


def _ids(page, selector: str) -> list[int]:
    return [int(x) for x in page.locator(selector).evaluate_all("e => e.map(x => x.dataset.id)")]


def _chip_ids(page) -> list[int]:
    return [int(t) for t in page.locator(".chip .tid").all_inner_texts()]


def _trace_ids_become(page, expected: list[int], selector: str = ".bpe-trace .bpe-tok") -> None:
    """Assert the encode trace shows ``expected`` within a few seconds. The step caption and
    the trace are two panes, each its own message from the server: a test that waited for the
    caption may otherwise read the trace between the two."""
    deadline = time.monotonic() + 5
    while _ids(page, selector) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert _ids(page, selector) == expected


@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


def _open(browser, url: str, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height})
    record_errors(page)
    page.goto(url)
    # the default corpus is read and trained on in a thread: the page fills in when done
    wait_data(page, "bpe-curve", "k", "v => v.length === 769", timeout=120_000)
    page.locator(".chip").first.wait_for()
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    page = _open(browser, f"{server}?lesson=bpe", 1600, 1400)
    yield page
    page.close()


def test_merge_slider_changes_the_segmentation(page):
    wait_data(page, "bpe-marker", "k", "v => v.length === 1 && v[0] === 768")
    full = _ids(page, ".bpe-sample .bpe-tok")
    assert full == _encoding().encode_ordinary(DEFAULT_TEXT)

    track = page.locator(".bpe-merge-slider .noUi-base")
    box = track.bounding_box()
    page.mouse.click(box["x"] + 0.05 * box["width"], box["y"] + box["height"] / 2)
    wait_data(page, "bpe-marker", "k", "v => v.length === 1 && v[0] < 100")
    k = model_data(page, "bpe-marker", "k")[0]
    expected = _encoding(k).encode_ordinary(DEFAULT_TEXT)
    expect(page.locator(".bpe-sample .bpe-tok")).to_have_count(len(expected))
    shown = _ids(page, ".bpe-sample .bpe-tok")
    assert shown != full and shown == expected
    # the marker sits on the compression curve: bytes / tokens of the training text at k
    bpt = model_data(page, "bpe-curve", "bpt")
    assert model_data(page, "bpe-marker", "bpt") == [bpt[k]]

    page.locator(".bpe-k-next button").click()
    wait_data(page, "bpe-marker", "k", f"v => v[0] === {k + 1}")
    expected = _encoding(k + 1).encode_ordinary(DEFAULT_TEXT)
    expect(page.locator(".bpe-sample .bpe-tok")).to_have_count(len(expected))
    assert _ids(page, ".bpe-sample .bpe-tok") == expected
    assert page.errors == []


def test_encode_trace_ends_in_the_chips(page):
    final = _ids(page, ".bpe-trace .bpe-tok:not(.cut)")
    assert final == _chip_ids(page) == _encoding().encode_ordinary(DEFAULT_TEXT)
    expect(page.locator(".bpe-step")).to_contain_text(f"Final ids ({len(final)})")
    expect(page.locator(".bpe-verify")).to_contain_text("gives the same")
    assert page.errors == []


def _player_button(page, label: str):
    return page.locator(".bpe-player-buttons").get_by_role("button", name=label, exact=True)


def test_encode_stepper_and_animation(page):
    text = DEFAULT_TEXT.encode("utf-8")
    _player_button(page, "|◀ First").click()
    expect(page.locator(".bpe-step")).to_contain_text("Step 0 of")
    # the pre-split: every token a single byte, the text's bytes in order
    _trace_ids_become(page, list(text))
    _player_button(page, "Next ▶").click()
    expect(page.locator(".bpe-step")).to_contain_text("Step 1 of")
    expect(page.locator(".bpe-trace .bpe-tok.new")).to_have_count(1)
    assert len(_ids(page, ".bpe-trace .bpe-tok")) == len(text) - 1
    # play from three steps before the end: the animation stops at the final ids
    _player_button(page, "Last ▶|").click()
    expect(page.locator(".bpe-step")).to_contain_text("Final ids")
    for _ in range(3):
        _player_button(page, "◀ Back").click()
    expect(page.locator(".bpe-step")).not_to_contain_text("Final ids")
    _player_button(page, "▶ Play").click()
    expect(_player_button(page, "❚❚ Pause")).to_be_visible()
    expect(page.locator(".bpe-step")).to_contain_text("Final ids", timeout=10_000)
    expect(_player_button(page, "▶ Play")).to_be_visible()  # stopped at the end
    _trace_ids_become(page, _chip_ids(page), ".bpe-trace .bpe-tok:not(.cut)")
    # pause stops it where it is
    _player_button(page, "|◀ First").click()
    _player_button(page, "▶ Play").click()
    page.wait_for_function(f"() => ({JS_PLAYER})()[2] >= 2")
    _player_button(page, "❚❚ Pause").click()
    stopped = page.evaluate(JS_PLAYER)[2]
    page.wait_for_timeout(1200)
    assert page.evaluate(JS_PLAYER)[2] == stopped < page.evaluate(JS_PLAYER)[1]
    assert page.errors == []


def test_html_in_the_text_is_shown_as_text(page):
    text = "<b>bold</b> & <img src=x onerror=alert(1)> 😀"
    box = page.get_by_placeholder("Type a sentence…")
    box.fill(text)
    expected = _encoding().encode_ordinary(text)
    expect(page.locator(".chip")).to_have_count(len(expected), timeout=15_000)
    expect(page.locator(".bpe-trace .bpe-tok:not(.cut)")).to_have_count(len(expected))
    assert _ids(page, ".bpe-trace .bpe-tok:not(.cut)") == _chip_ids(page) == expected
    trace = page.locator(".bpe-trace .bpe-text")
    assert trace.locator("b, img").count() == 0
    assert "<b>bold</b>" in trace.inner_text()
    # hover: the token's bytes, id and the merge that made it; the emoji's bytes in hex
    last = page.locator(".bpe-trace .bpe-tok").last
    title = last.get_attribute("title")
    assert f"id {expected[-1]}" in title and "bytes" in title
    assert any("\\x" in t for t in page.locator(".bpe-trace .bpe-tok").all_inner_texts())
    assert page.errors == []


def test_pasted_text_is_trained_on_and_too_much_is_refused(page):
    paste = page.locator(".bpe-paste textarea")
    paste.fill("low lower lowest newer newest " * 40)
    paste.press("Tab")
    wait_data(page, "bpe-curve", "k", "v => v.length > 1 && v.length < 769", timeout=30_000)
    expect(page.locator(".bpe-source .bk-btn.bk-active")).to_have_text("Pasted text")
    expect(page.locator(".bpe-verify")).to_contain_text("tokenizers", timeout=30_000)
    n = len(model_data(page, "bpe-curve", "k"))
    paste.fill("z" * 100_001)
    paste.press("Tab")
    message = page.locator(".bpe-message")
    expect(message).to_be_visible()
    expect(message).to_contain_text("100 KB")
    assert len(model_data(page, "bpe-curve", "k")) == n  # the last trace stays
    page.locator(".bpe-source button").filter(has_text="Default corpus").click()
    wait_data(page, "bpe-curve", "k", "v => v.length === 769")
    expect(page.locator(".bpe-status")).to_contain_text("standard library")
    assert page.errors == []


JS_PLAYER = """
() => {
  for (const doc of Bokeh.documents)
    for (const m of doc._all_models.values())
      if (m.css_classes && m.css_classes.includes("bpe-player")) return [m.start, m.end, m.value];
  return null;
}
"""


def test_encode_player_range_follows_the_text(page):
    from dashboard.lessons import bpe as B
    from models.bpe import Tokenizer

    tok = Tokenizer.load(STATIC_DIR, "anatomy-gpt-bpe")
    for text in ("short one", "A longer sentence, with naïve words and 😀 to encode step by step."):
        n = B.encode_steps(tok, text, 128).n_steps
        page.get_by_placeholder("Type a sentence…").fill(text)
        page.wait_for_function(f"() => {{ const p = ({JS_PLAYER})(); return p && p[1] === {n}; }}")
        assert page.evaluate(JS_PLAYER) == [0, n, n]
        expect(page.locator(".bpe-step")).to_contain_text(f"Step {n} of {n}")
    assert page.errors == []


# -- characters split across tokens -------------------------------------------------------------
def _expected_parts(text: str, ids: list[int]) -> list[str]:
    """``expected_parts`` for tiktoken's token ids."""
    ranks = {r: b for b, r in _ranks()[0].items()}
    return expected_parts(text, [ranks[i] for i in ids])


def test_split_characters_are_named_beside_their_bytes(page):
    text = "你好 café 😀"
    page.get_by_placeholder("Type a sentence…").fill(text)
    expected_ids = _encoding().encode_ordinary(text)
    expect(page.locator(".chip")).to_have_count(len(expected_ids), timeout=15_000)
    _trace_ids_become(page, expected_ids, ".bpe-trace .bpe-tok:not(.cut)")
    for where in (".bpe-trace .bpe-tok", ".bpe-sample .bpe-tok"):  # the sample at some k
        want = _expected_parts(text, _ids(page, where))
        assert "part of 你 (e4 bd a0)" in want and "part of 😀 (f0 9f 98 80)" in want
        assert page.locator(where).evaluate_all(JS_PARTS) == want, where
    # the notes are on screen, not only in a tooltip
    note = page.locator(".bpe-trace .bpe-part").first
    expect(note).to_be_visible()
    assert note.bounding_box()["height"] > 5
    assert page.errors == []


# -- the paste box ------------------------------------------------------------------------------
JS_RECORD_CURVES = """
() => {
  const m = Bokeh.documents.map(d => d.get_model_by_name("bpe-curve")).find(x => x);
  window.bpeCurves = [];
  if (!window.bpeRecording)
    m.connect(m.properties.data.change, () => window.bpeCurves.push(m.data.k.length));
  window.bpeRecording = true;
}
"""


def test_typing_in_the_paste_box_trains_without_leaving_it(page):
    from dashboard.lessons import bpe as B

    paste = page.locator(".bpe-paste textarea")
    paste.fill("")
    page.locator(".bpe-source button").filter(has_text="Default corpus").click()
    wait_data(page, "bpe-curve", "k", "v => v.length === 769")
    page.evaluate(JS_RECORD_CURVES)
    text = "the cat sat on the mat, the cat ate the rat"
    n = B.train_trace(text, B.DEFAULT_VOCAB).n_merges + 1
    paste.press_sequentially(text, delay=40)  # typing; the box keeps the focus
    wait_data(page, "bpe-curve", "k", f"v => v.length === {n}", timeout=15_000)
    assert page.evaluate("() => document.activeElement.tagName") != "BODY"
    expect(page.locator(".bpe-source .bk-btn.bk-active")).to_have_text("Pasted text")
    # one training, for the whole text: not one per keystroke
    page.wait_for_timeout(800)
    assert page.evaluate("() => window.bpeCurves") == [n]
    assert page.errors == []


def test_a_new_paste_cancels_the_training_in_progress_in_the_page(page):
    import random

    from dashboard.lessons import bpe as B

    paste = page.locator(".bpe-paste textarea")
    page.evaluate(JS_RECORD_CURVES)
    rng = random.Random(0)
    slow = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6000))  # seconds
    paste.fill(slow)
    expect(page.locator(".bpe-status")).to_contain_text("6,000 bytes", timeout=5_000)
    second = "low lower lowest newer newest " * 40
    n = B.train_trace(second, B.DEFAULT_VOCAB).n_merges + 1
    assert n != 769
    paste.fill(second)
    wait_data(page, "bpe-curve", "k", f"v => v.length === {n}", timeout=10_000)
    expect(page.locator(".bpe-status")).to_contain_text(f"{len(second):,} bytes")
    # the long text's training (all 768 merges) never reached the page
    assert page.evaluate("() => window.bpeCurves") == [n]
    assert page.errors == []


# -- classroom: a 1920x1080 projector -----------------------------------------------------------


def assert_fits(page, selector: str) -> None:
    """Every box of the element (its shadow root too) inside the window, no text beyond a box."""
    for box in page.locator(selector).first.evaluate(JS_BOXES):
        assert box["right"] <= box["room"] + 0.5, (selector, box)
        assert box["cw"] == 0 or box["sw"] <= box["cw"], (selector, box)


PLAYER_LABELS = ("|◀ First", "◀ Back", "▶ Play", "Next ▶", "Last ▶|")


def test_classroom_step_text_final_ids_and_player_fit_1920x1080(browser, server):
    page = _open(browser, f"{server}?lesson=bpe&classroom=true", 1920, 1080)
    text = (DEFAULT_TEXT + " ") * 5
    ids = _encoding().encode_ordinary(text)[:128]
    page.get_by_placeholder("Type a sentence…").fill(text)
    expect(page.locator(".bpe-step")).to_contain_text(f"Final ids ({len(ids)})", timeout=15_000)
    page.locator(".bpe-step").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    for selector in (".bpe-step", ".bpe-trace", ".bpe-player-buttons"):
        assert_fits(page, selector)
    # the slider's knob may hang over its box by a few pixels: only its right edge counts
    slider = page.locator(".bpe-player").bounding_box()
    assert slider["x"] + slider["width"] <= 1920, slider
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1920
    main = page.locator("#main").evaluate("m => [m.scrollWidth, m.clientWidth]")
    assert main[0] <= main[1], main
    # the player's buttons: labelled in words, large enough for a projector
    for label in PLAYER_LABELS:
        button = _player_button(page, label)
        expect(button).to_be_visible()
        box = button.bounding_box()
        assert box["height"] >= 40 and box["x"] + box["width"] <= 1920, (label, box)
    # a step's text, mid-way, fits too
    _player_button(page, "|◀ First").click()
    _player_button(page, "Next ▶").click()
    expect(page.locator(".bpe-step")).to_contain_text("Step 1 of")
    assert_fits(page, ".bpe-step")
    assert page.errors == []
    page.close()
