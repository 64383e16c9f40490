"""Every lesson on phones and tablets, both orientations, in a real Chromium with touch: the
page fits the width (no sideways scrolling), text is at least 14 CSS px, tap targets at least
40 px, and each lesson's main interaction works by tap. The snapshot too.

A phone upright (390×844) or on its side (844×390) and a tablet upright (768×1024) get one
column; a tablet on its side (1024×768) keeps the sidebar.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from dashboard.views import registry
from export.snapshot import export_snapshot
from tests.browser_support import (
    IMAGES,
    LEGEND_ENTRY,
    VISIBLE,
    cut_titles,
    open_offline,
    overflow,
    record_errors,
    serve,
    small_things,
)

pytestmark = pytest.mark.browser

SIZES = {
    "phone": (390, 844),
    "phone-landscape": (844, 390),
    "tablet": (768, 1024),
    "tablet-landscape": (1024, 768),
}
URL_OF = "() => new URL(location.href).searchParams"


@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


def touch_page(browser, size):
    """A page in a touch context of ``size`` (a phone's or a tablet's viewport)."""
    context = browser.new_context(
        viewport={"width": size[0], "height": size[1]}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    record_errors(page)
    return page


def open_lesson(browser, server, lesson, size, query=""):
    page = touch_page(browser, size)
    page.goto(f"{server}?lesson={lesson}{query}")
    page.locator(".chip").first.wait_for(timeout=30_000)
    page.wait_for_function(
        "(n) => window.Bokeh && Bokeh.documents.some(d => d.get_model_by_name(n))",
        arg=FIGURE[lesson],
        timeout=30_000,
    )
    page.wait_for_timeout(800)  # the layout settles
    return page


def assert_fits(page, size):
    """No sideways scrolling, no small text, no small tap target."""
    box = overflow(page)
    assert box["scroll"] <= size[0], box
    small = small_things(page)
    assert small == {"text": [], "taps": []}, small
    assert cut_titles(page) == []  # a figure scaled to a phone keeps its whole title


# One figure each lesson draws (the page is ready when it exists) and a tap that works it.
FIGURE = {
    "attention": "heatmap",
    "mask": "mask-probs",
    "sampling": "sampling-bars-figure",
    "bpe": "bpe-vocab",
    "precision": "precision-ranges",
    "recipes": "recipes-loss",
    "residual": "residual-norms",
    "qkv": "qkv-q",
    "positions": "positions-rope-pair",
    "tiles": "tiles-probs",
    "ffn": "ffn-neurons",
    "kv": "kv-diagram",
    "moe": "moe-router-fig",
    "calculator": "calculator-params",
    "loss": "loss-figure",
    "optimizers": "optim-paths",
    "run": "run-loss",
    "mixed": "mixed-hist",
    "encoder": "tr-encoder",
    "decoder": "tr-decoder",
    "cross": "tr-cross",
}


def tap_attention(page):
    page.locator(".chip").nth(3).tap()
    page.wait_for_function(f"() => ({URL_OF})().get('q') === '3'")


def tap_mask(page):
    page.locator("button", has_text="None (bidirectional)").tap()
    page.wait_for_function(f"() => ({URL_OF})().get('mask') === 'none'")


def tap_sampling(page):
    assert page.get_by_text("No tokens sampled yet").is_visible()
    page.locator(".sample-next button").tap()
    page.locator("table.sampling-steps").wait_for(timeout=15_000)


def tap_bpe(page):
    title = page.locator(".bpe-merge-slider .bk-slider-title")
    before = title.inner_text()
    page.locator(".bpe-k-prev button").tap()
    page.wait_for_function(
        "(t) => { const el = (function f(r) { for (const e of r.querySelectorAll('*')) {"
        " if (e.classList && e.classList.contains('bk-slider-title')) return e;"
        " if (e.shadowRoot) { const g = f(e.shadowRoot); if (g) return g; } } return null; })"
        "(document); return el && el.textContent !== t; }",
        arg=before,
    )


def tap_precision(page):
    before = page.evaluate(f"() => ({URL_OF})().get('value')")
    page.locator(".bit-fp16-0 button").tap()  # the sign bit
    page.wait_for_function(f"(b) => ({URL_OF})().get('value') !== b", arg=before)
    assert page.evaluate(f"() => ({URL_OF})().get('value')").startswith("-")


def tap_residual(page):
    page.locator(".residual-site button").filter(has_text="ln_f").tap()
    page.wait_for_function(f"() => ({URL_OF})().get('norm') === 'final'")


def tap_recipes(page):
    page.locator(".recipes-bucket button").filter(has_text=re.compile(r"^8$")).tap()
    page.wait_for_function(f"() => ({URL_OF})().get('bucket') === '8'")


def tap_ffn(page):
    page.locator(".ffn-layer button").filter(has_text=re.compile(r"^2$")).tap()
    page.wait_for_function(f"() => ({URL_OF})().get('layer') === '2'")


def tap_qkv(page):
    page.locator(".chip").nth(3).tap()  # that token becomes the query of the dot product
    page.wait_for_function(f"() => ({URL_OF})().get('q') === '3'")
    expect(page.locator(".qkv-dot-text")).to_contain_text("Query 3:")


def tap_positions(page):
    page.locator(".positions-alibi-heads input").fill("6")
    page.locator(".positions-alibi-heads input").press("Enter")
    page.wait_for_function(f"() => ({URL_OF})().get('alibi') === '6'")
    expect(page.locator(".positions-slopes-box")).to_contain_text("6 is not a power of two")


def tap_tiles(page):
    page.get_by_role("button", name="Next ▶").tap()
    page.wait_for_function(f"() => ({URL_OF})().get('step') === '1'")
    expect(page.locator(".tiles-step")).to_contain_text("step 2 of")


def tap_kv(page):
    page.locator(".kv-share button").filter(has_text="MQA").tap()
    page.wait_for_function(f"() => ({URL_OF})().get('kvs') === 'mqa'")
    expect(page.locator(".kv-share-text")).to_contain_text("1 K/V head for")


def tap_moe(page):
    page.locator(".moe-layer button").filter(has_text=re.compile(r"^3$")).tap()
    page.wait_for_function(f"() => ({URL_OF})().get('layer') === '3'")
    expect(page.locator(".moe-token")).to_contain_text("In layer 3,")


def tap_calculator(page):
    page.locator(".calculator-preset select").select_option(label="Mixtral 8x7B")
    page.wait_for_function(f"() => ({URL_OF})().get('preset') === 'Mixtral 8x7B'")


def tap_loss(page):
    page.locator(".chip").nth(3).tap()
    page.wait_for_function(f"() => ({URL_OF})().get('q') === '3'")
    expect(page.locator(".loss-position")).to_contain_text("(position 3)")


def tap_optimizers(page):
    page.locator(".opt-lr-input input").fill("0.05")
    page.locator(".opt-lr-input input").press("Enter")
    page.wait_for_function(f"() => ({URL_OF})().get('lr') === '0.05'")


def tap_run(page):
    at = page.evaluate(LEGEND_ENTRY, ["run-loss", 0])
    page.touchscreen.tap(at["x"], at["y"])
    page.wait_for_function(f"() => !({VISIBLE})({json.dumps(['run-loss', 0])}).some(v => v)")


def tap_mixed(page):
    page.locator(".mixed-step button").filter(has_text=re.compile(r"^3$")).tap()
    page.wait_for_function(f"() => ({URL_OF})().get('mps') === '3'")
    expect(page.locator(".mixed-text")).to_contain_text("at step 999 of 1000")


def tap_encoder(page):
    page.locator(".tr-number input").fill("42")
    page.locator(".tr-number input").press("Enter")
    page.wait_for_function(f"() => ({URL_OF})().get('num') === '42'")
    expect(page.locator(".tr-verdict-pane")).to_contain_text("forty-two")


def tap_decoder(page):
    page.locator(".tr-feed button").filter(has_text="free running").tap()
    page.wait_for_function(f"() => ({URL_OF})().get('trf') === 'free'")
    expect(page.locator(".tr-decoder-text")).to_contain_text("Free running")


def tap_cross(page):
    page.locator(".tr-step .noUi-handle").tap()
    page.locator(".tr-step .noUi-handle").press("ArrowLeft")
    page.wait_for_function(f"() => ({URL_OF})().get('trs') === '9'")
    expect(page.locator(".tr-cross-text")).to_contain_text("Step 6 of 6")


TAPS = {
    "attention": tap_attention,
    "mask": tap_mask,
    "sampling": tap_sampling,
    "bpe": tap_bpe,
    "precision": tap_precision,
    "recipes": tap_recipes,
    "residual": tap_residual,
    "qkv": tap_qkv,
    "positions": tap_positions,
    "tiles": tap_tiles,
    "ffn": tap_ffn,
    "kv": tap_kv,
    "moe": tap_moe,
    "calculator": tap_calculator,
    "loss": tap_loss,
    "optimizers": tap_optimizers,
    "run": tap_run,
    "mixed": tap_mixed,
    "encoder": tap_encoder,
    "decoder": tap_decoder,
    "cross": tap_cross,
}


def test_every_lesson_has_its_phone_test():
    assert set(TAPS) == set(FIGURE) == set(registry.LESSONS)
    assert set(DASHBOARD_SIZES) | set(SNAPSHOT_SIZES) == set(SIZES)


# Every size is laid out by one of the two tests below: each dashboard lesson at the narrowest
# and the widest touch layout, the snapshot (every tab) at the other two. Both sizes for each
# would double the suite's longest part for layouts the CSS does not tell apart.
DASHBOARD_SIZES = ("phone", "tablet-landscape")
SNAPSHOT_SIZES = ("phone-landscape", "tablet")


@pytest.mark.parametrize("where", DASHBOARD_SIZES)
@pytest.mark.parametrize("lesson", list(TAPS))
def test_lesson_fits_and_works_by_tap(server, browser, lesson, where):
    size = SIZES[where]
    page = open_lesson(browser, server, lesson, size)
    assert_fits(page, size)
    TAPS[lesson](page)
    page.wait_for_timeout(300)
    assert overflow(page)["scroll"] <= size[0]  # and still fits after the change
    assert page.errors == []
    page.context.close()


@pytest.mark.parametrize("where", ["phone", "tablet"])
def test_one_column_with_a_lesson_menu(server, browser, where):
    """Upright, the sidebar is the top of one column: the lesson menu (not the chapter
    buttons), the text box and the chips all reachable without sideways scrolling."""
    size = SIZES[where]
    page = open_lesson(browser, server, "attention", size)
    assert page.locator(".lesson-nav").first.is_hidden()
    menu = page.locator(".lesson-menu select")
    assert menu.is_visible()
    text = page.locator("textarea").first
    chips = page.locator(".chip").first
    for el in (menu, text, chips):
        box = el.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= size[0], box
    # one column: the text box is above the chips, the chips above the heatmap
    heatmap = page.evaluate(
        "() => Bokeh.index.find_one(Bokeh.documents.map(d => d.get_model_by_name('heatmap'))"
        ".find(x => x)).el.getBoundingClientRect().top"
    )
    assert text.bounding_box()["y"] < chips.bounding_box()["y"] < heatmap
    if where == "phone":
        page.screenshot(path=str(IMAGES / "phone.png"))  # the README's
    menu.select_option(label=registry.LESSONS["mask"].title)
    page.wait_for_function(f"() => ({URL_OF})().get('lesson') === 'mask'")
    page.wait_for_function(
        "() => Bokeh.documents.some(d => d.get_model_by_name('mask-probs'))", timeout=30_000
    )
    # typing in the text box on a phone reaches the lesson
    text.tap()
    text.fill("A cat sat")
    page.wait_for_function(f"() => ({URL_OF})().get('text') === 'A cat sat'")
    assert page.errors == []
    page.context.close()


def test_wide_tablet_keeps_the_sidebar(server, browser):
    page = open_lesson(browser, server, "attention", SIZES["tablet-landscape"])
    assert page.locator(".lesson-nav").first.is_visible()
    assert page.locator(".lesson-menu").first.is_hidden()
    page.context.close()


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("phone") / "snapshot.html"
    export_snapshot(path, "If the file does not exist, an exception is raised.")
    return path


@pytest.mark.parametrize("where", SNAPSHOT_SIZES)
def test_snapshot_fits_every_size(browser, snapshot, where):
    size = SIZES[where]
    ready = 'doc.get_model_by_name("lessons") != null'
    page = open_offline(browser, snapshot, ready, viewport=size, touch=True)
    tabs = page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('lessons').tabs.map(t => t.name)"
    )
    assert len(tabs) == len(registry.LESSONS)
    for i in range(len(tabs)):
        page.evaluate(f"() => {{ Bokeh.documents[0].get_model_by_name('lessons').active = {i}; }}")
        page.wait_for_function(
            """() => { const t = Bokeh.documents[0].get_model_by_name('lessons');
                       return Bokeh.index.find_one(t.tabs[t.active].child) != null; }"""
        )
        page.wait_for_timeout(300)
        box = overflow(page)
        assert box["scroll"] <= size[0], (tabs[i], box)
        small = small_things(page)
        assert small == {"text": [], "taps": []}, (tabs[i], small)
    assert page.errors == []
    page.close()
