"""The dashboard in a real Chromium (Debian's /usr/bin/chromium), against the real static/.

Nothing here skips: without Chromium or without static/manifest.json these tests fail and
say why (CI installs chromium; `make build` writes static/).
"""

from __future__ import annotations

import urllib.parse

import pytest

from models.reading import EMPTY_PROMPT
from tests.browser_support import IMAGES, model_data, record_errors, serve, wait_ready
from tests.conftest import STATIC

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server():
    assert (STATIC / "manifest.json").is_file(), "static/manifest.json missing: run make build"
    with serve(static=STATIC) as (url, proc):
        yield url


def open_page(browser, url, width=1440, height=900, ready="heatmap-labels"):
    page = browser.new_page(viewport={"width": width, "height": height})
    record_errors(page)
    page.goto(url)
    wait_ready(page, ready)
    return page


def test_loads_without_console_errors(server, browser):
    page = open_page(browser, server)
    page.wait_for_timeout(500)
    assert page.errors == []
    labels = model_data(page, "heatmap-labels", "label")
    assert labels and labels[0].startswith("0: ")
    page.screenshot(path=str(IMAGES / "main.png"))
    page.close()


def test_typing_updates_heatmap_tokens(server, browser):
    page = open_page(browser, server)
    box = page.locator("textarea").first
    box.fill("Attention is all you need")
    page.wait_for_function(
        """() => { const m = Bokeh.documents.map(d => d.get_model_by_name("heatmap-labels"))
                   .find(x => x);
                   return m.data.label.map(l => l.split(": ").slice(1).join(": ")).join("")
                     .replaceAll("·", " ") === "Attention is all you need"; }""",
        timeout=10_000,
    )
    labels = model_data(page, "heatmap-labels", "label")
    text = "".join(label.split(": ", 1)[1] for label in labels).replace("·", " ")
    assert text == "Attention is all you need"
    assert page.errors == []
    page.close()


def test_click_grid_cell_selects_head(server, browser):
    page = open_page(browser, server)
    meta = model_data(page, "grid-meta", "T")[0], model_data(page, "grid-meta", "gap")[0]
    t, gap = meta
    # locate the grid's canvas: the Bokeh plot whose model is named "grid"
    handle = page.evaluate_handle(
        """() => {
          const fig = Bokeh.documents.map(d => d.get_model_by_name("grid")).find(x => x);
          const pv = Bokeh.index.find_one(fig);
          pv.el.scrollIntoView({block: "center"});
          const f = pv.frame.bbox; const r = pv.el.getBoundingClientRect();
          return {x: r.left + f.left, y: r.top + f.top, w: f.width, h: f.height,
                  xs: pv.frame.x_range.start, xe: pv.frame.x_range.end,
                  ys: pv.frame.y_range.start, ye: pv.frame.y_range.end};
        }"""
    )
    f = handle.json_value()
    layer, head = 1, 2
    cx, cy = head * (t + gap) + (t - 1) / 2, layer * (t + gap) + (t - 1) / 2
    px = f["x"] + (cx - f["xs"]) / (f["xe"] - f["xs"]) * f["w"]
    # the y range is flipped (layer 0 at the top): its end is the top edge
    py = f["y"] + (cy - f["ye"]) / (f["ys"] - f["ye"]) * f["h"]
    page.mouse.click(px, py)
    page.wait_for_function(
        "() => new URL(location.href).searchParams.get('head') === '2'", timeout=10_000
    )
    q = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    assert q["layer"] == ["1"] and q["head"] == ["2"]
    page.wait_for_function(
        """() => [...Bokeh.documents[0].all_models].some(
             m => m.title && m.title.text === "Layer 1, head 2: probabilities")""",
        timeout=10_000,
    )
    page.close()


def test_url_state_restores_view(server, browser):
    q = urllib.parse.urlencode(
        {"text": "one two three four", "layer": 2, "head": 3, "q": 2, "stage": "scaled"}
    )
    page = open_page(browser, f"{server}?{q}")
    page.wait_for_function(
        """() => [...Bokeh.documents[0].all_models].some(m => m.title &&
             m.title.text === "Layer 2, head 3: scaled scores q·k/√d")""",
        timeout=10_000,
    )
    labels = model_data(page, "heatmap-labels", "label")
    assert "".join(lab.split(": ", 1)[1] for lab in labels).replace("·", " ") == (
        "one two three four"
    )
    assert page.locator(".chip.selected").first.get_attribute("data-index") == "2"
    page.close()


def test_html_in_text_is_shown_as_text(server, browser):
    text = "<b>bold</b> <script>window.pwned=1</script>"
    page = open_page(browser, f"{server}?{urllib.parse.urlencode({'text': text})}")
    assert page.evaluate("() => window.pwned") is None
    chips = page.locator(".chip .tok").all_text_contents()
    assert "".join(chips).replace("·", " ") == text
    # no <b> element was created from the text anywhere in the chips
    assert page.locator(".chips b").count() == 0
    assert page.errors == []
    page.close()


def test_classroom_mode_is_large(server, browser):
    normal = open_page(browser, server)
    big = open_page(browser, f"{server}?classroom=true&q=0", 1920, 1080)

    def sizes(page):
        return page.evaluate(
            """() => {
              const px = s => parseFloat(getComputedStyle(s).fontSize);
              const find = (root, sel) => { for (const el of root.querySelectorAll("*")) {
                  if (el.matches(sel)) return el;
                  if (el.shadowRoot) { const f = find(el.shadowRoot, sel); if (f) return f; } }
                return null; };
              const fig = [...Bokeh.documents[0].all_models].find(m => m.name === "heatmap");
              return {chip: px(find(document, ".chip")), button: px(find(document, "button")),
                      textarea: px(find(document, "textarea")),
                      tick: parseFloat(fig.below[0].major_label_text_font_size)};
            }"""
        )

    a, b = sizes(normal), sizes(big)
    for key in a:
        assert b[key] >= 2 * a[key], (key, a[key], b[key])
    bg = big.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert sum(int(c) for c in bg[bg.index("(") + 1 : -1].split(",")[:3]) < 3 * 60  # dark
    big.keyboard.press("ArrowRight")
    big.wait_for_function("() => new URL(location.href).searchParams.get('q') === '1'")
    big.keyboard.press("ArrowDown")
    big.wait_for_function("() => new URL(location.href).searchParams.get('lesson') === 'mask'")
    big.keyboard.press("ArrowUp")
    big.wait_for_function("() => new URL(location.href).searchParams.get('lesson') === 'attention'")
    big.wait_for_timeout(500)
    big.screenshot(path=str(IMAGES / "classroom.png"))
    assert normal.errors == [] and big.errors == []
    normal.close()
    big.close()


URL = "() => Object.fromEntries(new URL(location.href).searchParams)"


def test_clearing_the_text_of_a_fresh_page(server, browser):
    """Select-all and Backspace, before any other edit: the tokens go, the prompt shows and
    the link says the text is empty."""
    page = open_page(browser, server)
    box = page.locator("textarea").first
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    page.get_by_text(EMPTY_PROMPT).wait_for(timeout=10_000)
    page.wait_for_function(f"() => ({URL})().text === ''")
    assert page.locator(".chip").count() == 0 or not page.locator(".chip").first.is_visible()
    assert page.errors == []
    page.close()


def test_a_bad_link_is_said_once_and_rewritten_to_the_values_in_use(server, browser):
    page = open_page(browser, server + "?layer=99&head=-1&lesson=nope&temperature=abc")
    page.wait_for_timeout(1000)  # the browser's own copy of the link comes back once
    notice = page.get_by_text("Ignored unusable link values").inner_text()
    assert notice.count("Ignored unusable link values") == 1, notice
    for bad in ("layer=99", "head=-1", "lesson=nope", "temperature=abc"):
        assert bad in notice
    # the address bar holds the values the page uses, the buttons show them
    page.wait_for_function(
        f"""() => {{ const q = ({URL})();
                     return q.layer === '3' && q.head === '0' && q.lesson === 'attention' &&
                            q.temperature === '1.0'; }}"""
    )
    active = page.locator(".control .bk-btn-group .bk-active").all_inner_texts()
    assert active[:2] == ["3", "0"], active  # Layer, then Head
    page.locator(".chip").nth(2).click()
    page.wait_for_function(f"() => ({URL})().q === '2'")
    query = page.evaluate(URL)
    assert (query["layer"], query["head"], query["lesson"], query["temperature"]) == (
        "3",
        "0",
        "attention",
        "1.0",
    )
    assert page.get_by_text("Ignored unusable").inner_text().count("Ignored") == 1
    page.close()
