"""The attention and mask lessons in a real Chromium: clicks, hovers, sliders, layout, errors.

Expected numbers come from the engine run here, independently of the page, and from masks
built in the test with numpy; the page's Bokeh document says what is drawn (plots and sources
are named in dashboard/views/).
"""

from __future__ import annotations

import shutil
import time
import urllib.parse

import numpy as np
import pytest

from dashboard.state import DEFAULT_TEXT
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import (
    IMAGES,
    JS_TITLE,
    cut_text,
    cut_titles,
    model_data,
    record_errors,
    serve,
    wait_ready,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


@pytest.fixture(scope="module")
def forward():
    engine = Engine(STATIC_DIR)
    model = engine.default_model
    return engine.run(model, engine.tokenizer(model).encode(DEFAULT_TEXT))


def open_page(browser, url, width=1600, height=1200, ready="heatmap-labels"):
    page = browser.new_page(viewport={"width": width, "height": height})
    record_errors(page)
    page.goto(url)
    if ready:
        wait_ready(page, ready)
    return page


# The frame of a named figure in page coordinates, and its data ranges.
JS_FRAME = """
(name) => {
  const fig = Bokeh.documents.map(d => d.get_model_by_name(name)).find(x => x);
  const pv = Bokeh.index.find_one(fig);
  const f = pv.frame.bbox, r = pv.el.getBoundingClientRect();
  return {x: r.left + f.left, y: r.top + f.top, w: f.width, h: f.height,
          xs: pv.frame.x_range.start, xe: pv.frame.x_range.end,
          ys: pv.frame.y_range.start, ye: pv.frame.y_range.end,
          left: r.left, top: r.top, right: r.right, bottom: r.bottom};
}
"""

# A matrix source's image as [rows of numbers] (NaN and -inf become null / strings).
JS_IMAGE = """
(name) => {
  const m = Bokeh.documents.map(d => d.get_model_by_name(name)).find(x => x);
  const img = m.data.image[0], [h, w] = img.shape;
  const out = [];
  for (let i = 0; i < h; i++) out.push(Array.from(img.slice(i * w, (i + 1) * w),
                                                  v => Number.isFinite(v) ? v : String(v)));
  return out;
}
"""


def image(page, name: str) -> np.ndarray:
    rows = page.evaluate(JS_IMAGE, name)
    return np.array([[float(v) for v in row] for row in rows])


def cell_point(page, figure: str, key: int, query: int) -> tuple[float, float]:
    """Page coordinates of matrix cell (query, key) of a named figure (y axis flipped)."""
    page.evaluate(
        "(n) => Bokeh.index.find_one(Bokeh.documents.map(d => d.get_model_by_name(n))"
        ".find(x => x)).el.scrollIntoView({block: 'center'})",
        figure,
    )
    f = page.evaluate(JS_FRAME, figure)
    px = f["x"] + (key - f["xs"]) / (f["xe"] - f["xs"]) * f["w"]
    py = f["y"] + (query - f["ye"]) / (f["ys"] - f["ye"]) * f["h"]
    return px, py


def url_param(page, name: str) -> str | None:
    return urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query).get(name, [None])[0]


def test_tapping_a_cell_shows_that_query_in_the_side_panel(server, browser, forward):
    page = open_page(browser, server)
    query, key = 7, 3
    page.mouse.click(*cell_point(page, "heatmap", key, query))
    page.wait_for_function(
        f"() => {{ const p = new URL(location.href).searchParams;"
        f" return p.get('q') === '{query}' && p.get('k') === '{key}'; }}",
        timeout=10_000,
    )
    page.wait_for_function(
        """(q) => Bokeh.documents.map(d => d.get_model_by_name("detail-bars-figure"))
                   .find(x => x).title.text.startsWith(`How query ${q}:`)""",
        arg=query,
        timeout=10_000,
    )
    # the bars are query 7's row of layer 0, head 0 (causal: keys 0..7, zeros after)
    bars = np.array(model_data(page, "detail-bars", "top"))
    np.testing.assert_allclose(bars, forward.attn_probs[0, 0, query], atol=1e-6)
    assert bars[query + 1 :].max() == 0 and bars[: query + 1].min() > 0
    # and the pair's score q·k/√d is printed as the model computed it
    score = f"{forward.attn_scores[0, 0, query, key]:.3f}"
    pair = page.locator("p", has_text="q·k/√d =").first
    pair.wait_for(timeout=10_000)
    assert f"q·k/√d = {score}" in pair.inner_text(), pair.inner_text()
    assert page.errors == []
    page.close()


def test_hover_tooltip_shows_html_in_tokens_as_text(server, browser):
    text = "<b>bold</b> <img src=x onerror=window.pwned=1>"
    page = open_page(browser, f"{server}?{urllib.parse.urlencode({'text': text})}")
    labels = model_data(page, "heatmap-labels", "label")
    # hover the cell of the last token holding a "<" (query) and the first one (key)
    marked = [i for i, label in enumerate(labels) if "<" in label]
    query, key = marked[-1], marked[0]
    page.mouse.move(*cell_point(page, "heatmap", key, query))
    tooltip = page.locator(".bk-tooltip-content").first
    tooltip.wait_for(timeout=10_000)
    shown = tooltip.inner_text()
    assert labels[query] in shown and labels[key] in shown, (shown, labels)
    # the tooltip shows the markup as characters: no element was made from the text
    assert tooltip.locator("b, img").count() == 0
    assert page.evaluate("() => window.pwned") is None
    assert page.errors == []
    page.close()


def test_mask_lesson_variants(server, browser, forward):
    page = open_page(
        browser, f"{server}?lesson=mask&mask=sliding&window=3", ready="mask-probs-labels"
    )
    n = forward.attn_scores.shape[-1]
    i, j = np.indices((n, n))
    page.wait_for_function(
        "() => Bokeh.documents.map(d => d.get_model_by_name('mask-allowed-image'))"
        ".find(x => x).data.image[0].length > 1",
        timeout=10_000,
    )
    sliding = (j <= i) & (j > i - 3)
    np.testing.assert_array_equal(image(page, "mask-allowed-image"), sliding.astype(float))
    probs = image(page, "mask-probs-image")
    scaled = forward.attn_scores[0, 0].astype(np.float64)
    expected = np.where(sliding, np.exp(scaled - scaled.max(1, keepdims=True)), 0)
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-6)

    # the padded batch: with -inf the padding queries' rows are NaN, and the page says why
    page.get_by_role("button", name="Padded batch").click()
    page.wait_for_function("() => new URL(location.href).searchParams.get('mask') === 'padding'")
    page.locator(".explain", has_text="no key left").first.wait_for(timeout=10_000)
    page.wait_for_function(  # the text and the image arrive in separate messages
        "() => Number.isNaN(Bokeh.documents.map(d => d.get_model_by_name('mask-probs-image'))"
        ".find(x => x).data.image[0][0])",
        timeout=10_000,
    )
    probs = image(page, "mask-probs-image")
    assert np.isnan(probs[:2]).all() and np.isfinite(probs[2:]).all()
    allowed = image(page, "mask-allowed-image")
    np.testing.assert_array_equal(allowed, ((j <= i) & (j >= 2)).astype(float))
    # with -1e9 instead the same rows are finite: uniform over every key, future ones included
    page.get_by_role("button", name="−10⁹").click()
    page.wait_for_function("() => new URL(location.href).searchParams.get('fill') === '-1e9'")
    page.wait_for_function(
        "() => !Number.isNaN(Bokeh.documents.map(d => d.get_model_by_name('mask-probs-image'))"
        ".find(x => x).data.image[0][0])",
        timeout=10_000,
    )
    probs = image(page, "mask-probs-image")
    np.testing.assert_allclose(probs[:2], np.full((2, n), 1 / n), atol=1e-6)
    page.locator(".explain", has_text="uniform average over all the keys").first.wait_for()
    assert page.errors == []
    page.close()


def test_arrow_keys_on_a_focused_slider_move_the_slider_only(server, browser):
    page = open_page(
        browser, f"{server}?lesson=mask&mask=sliding&window=3&q=5", ready="mask-probs-labels"
    )
    handle = page.locator(".noUi-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => new URL(location.href).searchParams.get('window') === '4'")
    page.wait_for_timeout(300)
    assert url_param(page, "q") == "5"  # the token selection did not move
    # away from the slider, the same key steps through the tokens
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => new URL(location.href).searchParams.get('q') === '6'")
    assert url_param(page, "window") == "4"
    page.close()


# Every registered lesson's main plots (test_every_lesson_has_its_fit_tests checks that none
# is missing), and the lessons whose plots must also fit the projector's height.
LESSON_PLOTS = {
    "attention": ["heatmap", "grid", "detail-bars-figure"],
    "mask": ["mask-allowed", "mask-scores", "mask-masked", "mask-probs"],
    "sampling": ["sampling-bars-figure"],
    "bpe": ["bpe-compression", "bpe-vocab"],
    "precision": ["precision-ranges", "precision-density-figure"],
    "recipes": ["recipes-loss"],
    "residual": [
        "residual-norms",
        "residual-added",
        "residual-cosine",
        "residual-steps",
        "residual-loss",
        "residual-init-grads",
    ],
    "qkv": ["qkv-embed", "qkv-q", "qkv-k", "qkv-v", "qkv-heads", "qkv-dot"],
    "positions": [
        "positions-sinusoid",
        "positions-distance",
        "positions-sin-waves",
        "positions-learned",
        "positions-pca",
        "positions-rope-pair",
        "positions-rope-waves",
        "positions-alibi-bias",
        "positions-alibi-probs",
        "positions-loss",
    ],
    "ffn": ["ffn-neurons", "ffn-hist", "ffn-curves", "ffn-diff", "ffn-surface"],
    "tiles": ["tiles-probs", "tiles-output"],
}
LESSON_PLOTS["kv"] = ["kv-diagram", *(f"kv-head-{h}" for h in range(4)), "kv-growth-fig"]
LESSON_PLOTS["moe"] = ["moe-routes-fig", "moe-router-fig", "moe-shares-fig"]
LESSON_PLOTS["calculator"] = ["calculator-params"]
LESSON_PLOTS["loss"] = ["loss-figure"]
LESSON_PLOTS["optimizers"] = ["optim-paths", "optim-loss"]
LESSON_PLOTS["run"] = ["run-loss", "run-lr", "run-grad", "run-weights"]
LESSON_PLOTS["mixed"] = ["mixed-hist"]
LESSON_PLOTS.update({name: [f"tr-{name}"] for name in ("encoder", "decoder", "cross")})
ABOVE_THE_FOLD = {  # on a projector, what must be seen without scrolling
    "attention": ["heatmap", "grid"],
    "mask": LESSON_PLOTS["mask"],
    "sampling": ["sampling-bars-figure"],
    "bpe": LESSON_PLOTS["bpe"],
    "precision": LESSON_PLOTS["precision"],
    "recipes": LESSON_PLOTS["recipes"],
    "residual": ["residual-norms"],
    "qkv": ["qkv-embed"],
    "tiles": ["tiles-probs"],
    "positions": ["positions-sinusoid"],
    "ffn": ["ffn-neurons"],
    "kv": ["kv-diagram"],
    "moe": ["moe-routes-fig", "moe-router-fig"],
    "loss": ["loss-figure"],
    "run": ["run-loss"],
    "mixed": ["mixed-hist"],
    "encoder": ["tr-encoder"],
    "decoder": ["tr-decoder"],
    "cross": ["tr-cross"],
    "optimizers": [],  # the fields come first; the figures sit below them
    "calculator": [],  # the headline is above the fold; the figure sits below the fields
}
READY = {"attention": "heatmap-labels", "mask": "mask-probs-labels", "sampling": "sampling-bars"}


def test_every_lesson_has_its_fit_tests():
    from dashboard.views import registry

    assert set(LESSON_PLOTS) == set(registry.LESSONS)


def _open_lesson(browser, server, lesson, width, height, classroom=False):
    # query 8 is the default text's longest token, "·exception"
    mode = "&classroom=true" if classroom else ""
    page = open_page(
        browser, f"{server}?lesson={lesson}{mode}&q=8", width, height, READY.get(lesson)
    )
    if lesson not in READY:  # no token-labelled source: wait for the chips and the plots
        page.locator(".chip").first.wait_for(timeout=30_000)
        for name in LESSON_PLOTS[lesson]:
            page.wait_for_function(
                "(n) => window.Bokeh && Bokeh.documents.some(d => d.get_model_by_name(n) && "
                "Bokeh.index.find_one(d.get_model_by_name(n)))",
                arg=name,
                timeout=30_000,
            )
    page.wait_for_timeout(500)  # let the layout settle
    return page


def _assert_plots_fit(page, lesson, width, height=None):
    """Every plot of ``lesson`` inside the window's width (and its main plots inside the
    height, if given), every shown figure's title and every text uncut, and no horizontal
    scrolling."""
    for name in LESSON_PLOTS[lesson]:
        box = page.evaluate(JS_FRAME, name)
        assert box["left"] >= 0 and box["right"] <= width, (name, box)
        if height is not None and name in ABOVE_THE_FOLD[lesson]:
            assert box["top"] >= 0 and box["bottom"] <= height, (name, box)
        title = page.evaluate(JS_TITLE, name)
        assert title["width"] <= title["room"], (name, title)
    assert cut_titles(page) == []
    assert cut_text(page) == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("lesson", list(LESSON_PLOTS))
def test_classroom_lessons_fit_a_1920x1080_projector(server, browser, lesson):
    page = _open_lesson(browser, server, lesson, 1920, 1080, classroom=True)
    _assert_plots_fit(page, lesson, 1920, 1080)
    # the token chips keep to two rows and the rest scrolls: whole rows, none cut through
    rows = page.locator(".chip").evaluate_all(
        """chips => {
            const box = chips[0].parentElement;
            const bottom = box.getBoundingClientRect().bottom;
            const rects = chips.map(c => c.getBoundingClientRect());
            return {overflows: box.scrollHeight > box.clientHeight,
                    cut: rects.filter(r => r.top < bottom && r.bottom > bottom + 0.5).length};
        }"""
    )
    assert rows == {"overflows": True, "cut": 0}, rows
    assert page.errors == []
    page.close()


@pytest.mark.parametrize("lesson", list(LESSON_PLOTS))
def test_plot_titles_fit_a_1440x900_laptop(server, browser, lesson):
    page = _open_lesson(browser, server, lesson, 1440, 900)
    _assert_plots_fit(page, lesson, 1440)
    assert page.errors == []
    if lesson == "recipes":
        page.screenshot(path=str(IMAGES / "recipes.png"))  # the README's
    page.close()


def test_corrupt_model_file_is_explained_in_the_page(browser, tmp_path):
    static = tmp_path / "static"
    shutil.copytree(STATIC_DIR, static)
    onnx = static / "anatomy-gpt.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])
    with serve(static=static) as (url, _proc):
        page = open_page(browser, url, ready=None)
        message = page.get_by_text("anatomy-gpt.onnx").first
        message.wait_for(timeout=30_000)
        text = message.inner_text()
        assert "does not match the manifest" in text and "make build" in text, text
        assert page.locator(".chip").count() == 0
        page.close()


def test_clicking_a_chip_selects_that_query_everywhere(server, browser):
    page = open_page(browser, server)
    page.locator('.chip[data-index="5"]').click()
    page.wait_for_function("() => new URL(location.href).searchParams.get('q') === '5'")
    # the heatmap outlines row 5 (the selection source's first rectangle is the query row)
    page.wait_for_function(
        """() => { const fig = Bokeh.documents.map(d => d.get_model_by_name("heatmap"))
                   .find(x => x);
                   const r = fig.renderers.find(r => r.data_source.data.w !== undefined);
                   return r.data_source.data.y[0] === 5; }""",
        timeout=10_000,
    )
    assert page.locator(".chip.selected").get_attribute("data-index") == "5"
    assert page.errors == []
    page.close()


@pytest.mark.parametrize(
    "text",
    [
        "naïve café 🤖🎉 emoji",
        "注意力就是你所需要的",
        "مرحبا بالعالم hello",
        "tab\there\x07bell\x00nul",
    ],
    ids=["emoji", "cjk", "rtl", "control"],
)
def test_any_text_renders_as_its_tokens(server, browser, text):
    engine = Engine(STATIC_DIR)
    tokenizer = engine.tokenizer(engine.default_model)
    page = open_page(browser, f"{server}?{urllib.parse.urlencode({'text': text})}")
    ids = tokenizer.encode(text)
    page.wait_for_function(
        "(n) => document.querySelectorAll('.chip').length === n || "
        "[...document.querySelectorAll('*')].some(e => e.shadowRoot && "
        "e.shadowRoot.querySelectorAll('.chip').length === n)",
        arg=len(ids),
        timeout=10_000,
    )
    chip_ids = [int(t) for t in page.locator(".chip .tid").all_text_contents()]
    assert chip_ids == ids
    assert len(model_data(page, "heatmap-labels", "label")) == len(ids)
    assert page.errors == []
    page.close()


@pytest.mark.parametrize("lesson", list(LESSON_PLOTS))
def test_every_lesson_page_tells_the_server_it_is_ready(server, browser, lesson):
    """Panel forwards plot updates made inside a hold only once the page has sent Bokeh's
    ``document_ready`` event; a page that never sends it silently loses them (a layout
    wrapped around a lesson's view once did exactly that)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(str(f))))
    page.goto(f"{server}?lesson={lesson}")
    deadline = time.monotonic() + 30
    while not any('"document_ready"' in f for f in sent) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    page.close()
    assert any('"document_ready"' in f for f in sent), f"{len(sent)} frames, none document_ready"


def test_a_lesson_shown_again_has_caught_up(server, browser):
    page = open_page(browser, server)
    page.get_by_role("button", name="Causal mask", exact=True).click()
    page.wait_for_function("() => new URL(location.href).searchParams.get('lesson') === 'mask'")
    text = "Attention is all you need"
    page.locator("textarea").first.fill(text)
    engine = Engine(STATIC_DIR)
    n = len(engine.tokenizer(engine.default_model).encode(text))
    page.wait_for_function(
        """(n) => Bokeh.documents.map(d => d.get_model_by_name("mask-probs-labels"))
                 .find(x => x).data.label.length === n""",
        arg=n,
        timeout=10_000,
    )
    page.get_by_role("button", name="Attention", exact=True).click()
    page.wait_for_function(
        """() => { const m = Bokeh.documents.map(d => d.get_model_by_name("heatmap-labels"))
                   .find(x => x);
                   return m.data.label.map(l => l.split(": ").slice(1).join(": ")).join("")
                     .replaceAll("·", " ") === "Attention is all you need"; }""",
        timeout=10_000,
    )
    assert page.locator("textarea").first.is_visible()
    assert page.errors == []
    page.close()


@pytest.mark.parametrize("classroom", [False, True])
def test_every_row_and_column_of_a_short_texts_mask_matrices_is_labelled(
    server, browser, classroom
):
    """A text of up to 32 tokens: each of the four mask matrices names every row and column
    (the story's "rows 0, 1 have no key left" must point at labelled rows), and at the
    figures' size Bokeh paints every one of those labels, none overlapping its neighbour."""
    from tests.matrix_support import SHORT_TEXT, assert_every_token_labelled, text_of

    engine = Engine(STATIC_DIR)
    size = (1920, 1080) if classroom else (1600, 1200)
    for n in (32, 17):
        text = text_of(engine, SHORT_TEXT, n)
        query = urllib.parse.urlencode(
            {"lesson": "mask", "text": text, "classroom": str(classroom).lower()}
        )
        page = open_page(browser, f"{server}?{query}", *size, ready="mask-probs-labels")
        page.wait_for_timeout(300)  # the figures' layout after the last patch
        for name in ("mask-allowed", "mask-scores", "mask-masked", "mask-probs"):
            assert_every_token_labelled(page, name, n)
        assert page.errors == []
        page.close()


def test_only_the_causal_mask_is_drawn_in_the_masked_colour(server, browser):
    """A 128-token text whose layer 2, head 1 gives many allowed keys a probability far below
    1e-12: in the heatmap and in every tile of the grid, the cells painted in the masked colour
    are exactly the ones above the diagonal."""
    from dashboard.views.plots import NORMAL, PROB_PALETTE
    from tests.matrix_support import TINY_TEXT, drawn_colours, grid_painted, painted, text_of

    engine = Engine(STATIC_DIR)
    text = text_of(engine, TINY_TEXT, 128)
    f = engine.run(engine.default_model, engine.tokenizer(engine.default_model).encode(text))
    t = f.attn_probs.shape[-1]
    above = np.triu(np.ones((t, t), bool), 1)
    assert ((f.attn_probs[2, 1] < 1e-12) & ~above).sum() > 50  # the case that went grey
    query = urllib.parse.urlencode({"text": text, "layer": 2, "head": 1})
    page = open_page(browser, f"{server}?{query}")
    page.wait_for_function(
        "() => Bokeh.documents.map(d => d.get_model_by_name('heatmap-image')).find(x => x)"
        ".data.image[0].length === 128 * 128",
        timeout=10_000,
    )
    page.wait_for_timeout(300)
    heat = drawn_colours(page, "heatmap")
    np.testing.assert_array_equal(painted(heat, NORMAL.masked), above)
    # the tiniest allowed probabilities take the palette's lowest colour
    tiny = (f.attn_probs[2, 1] < 1e-12) & ~above
    assert painted(heat, PROB_PALETTE[0])[tiny].all()
    grid = drawn_colours(page, "grid")
    n_layer, n_head = f.attn_probs.shape[:2]
    want = grid_painted(page, above, n_layer, n_head)
    np.testing.assert_array_equal(painted(grid, NORMAL.masked), want)
    assert page.errors == []
    page.close()
