"""Real-browser test support: start ``panel_serve.py`` on a free port, drive Debian's Chromium.

``playwright install`` cannot download browsers here, so Playwright launches the system
Chromium (``/usr/bin/chromium``, or ``$ANATOMY_CHROMIUM``). Nothing here skips: a missing
browser or a server that does not come up is a failure with the reason in the message.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The README's screenshots are refreshed only on request (ANATOMY_SCREENSHOTS=1), so that a test
# run leaves the checkout clean; otherwise they are still taken (rendering must not fail).
IMAGES = (
    ROOT / "docs" / "images"
    if os.environ.get("ANATOMY_SCREENSHOTS")
    else Path(tempfile.mkdtemp(prefix="anatomy-shots-"))
)
CHROMIUM = os.environ.get("ANATOMY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    """Poll ``url`` until it answers 200; seconds waited. Fails fast if the server died."""
    t0 = time.perf_counter()
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except urllib.error.HTTPError as err:  # the server runs but the page is broken
            proc.terminate()
            out = proc.communicate(timeout=10)[0] if proc.stdout else ""
            raise RuntimeError(
                f"{url} answered {err.code}; server output:\n{out[-4000:]}"
            ) from None
        except OSError:
            pass
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.05)


@contextmanager
def serve(*args: str, static: str | Path | None = None, env: dict | None = None, probe: str = ""):
    """Run ``python panel_serve.py --port <free> ...``; yields (base URL, process) once
    ``probe`` (a path under the base URL) answers. The default, the page itself, also proves
    that a page can be made; it makes a session of its own, which a timing may not want."""
    port = free_port()
    cmd = [sys.executable, str(ROOT / "panel_serve.py"), "--port", str(port), *args]
    if static is not None:
        cmd += ["--static", str(static)]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url + probe.lstrip("/"), proc)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def launch(playwright):
    """Chromium from the system, headless."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) "
            "or point $ANATOMY_CHROMIUM at a Chromium binary"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# -- reading the page -----------------------------------------------------------------------------
# Plots and data sources carry names (dashboard/views/plots.py), so the page's Bokeh document
# answers what is drawn: "heatmap-labels" holds the heatmap's token labels, and so on.
JS_MODEL_DATA = """
([name, column]) => {
  for (const doc of Bokeh.documents) {
    const m = doc.get_model_by_name(name);
    if (m) return Array.from(m.data[column]);
  }
  return null;
}
"""


def model_data(page, name: str, column: str):
    """A column of the named ColumnDataSource, as the browser has it."""
    return page.evaluate(JS_MODEL_DATA, [name, column])


def wait_data(page, name: str, column: str, predicate_js: str, timeout: float = 30_000) -> None:
    """Wait until ``predicate_js`` (a JS function of an array) holds for a column of the named
    ColumnDataSource in the browser."""
    page.wait_for_function(
        f"""([name, column]) => {{
          if (!window.Bokeh) return false;
          for (const doc of Bokeh.documents) {{
            const m = doc.get_model_by_name(name);
            if (m) {{ const v = Array.from(m.data[column]); return ({predicate_js})(v); }}
          }}
          return false;
        }}""",
        arg=[name, column],
        timeout=timeout,
    )


def record_errors(page) -> list[str]:
    """Collect the page's console errors and uncaught exceptions in ``page.errors``."""
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page.errors


def wait_ready(page, name: str = "heatmap-labels", timeout: float = 30_000) -> None:
    """Wait until the named source has data and the token chips are drawn."""
    page.wait_for_function(
        """(name) => {
          if (!window.Bokeh) return false;
          const m = Bokeh.documents.map(d => d.get_model_by_name(name)).find(x => x);
          return m && m.data.label && m.data.label.length > 0;
        }""",
        arg=name,
        timeout=timeout,
    )
    page.locator(".chip").first.wait_for(timeout=timeout)


# A figure's title width in pixels, measured in the title's own font, and the room it has:
# Bokeh starts the title above the frame's left edge and the canvas ends at the figure's width.
JS_TITLE = """
(name) => {
  const fig = Bokeh.documents.map(d => d.get_model_by_name(name)).find(x => x);
  const pv = Bokeh.index.find_one(fig);
  const t = fig.title, ctx = document.createElement("canvas").getContext("2d");
  ctx.font = `${t.text_font_style} ${t.text_font_size} ${t.text_font}`;
  const f = pv.frame.bbox;  // from the frame's left edge, or to its right one (align "right")
  const room = t.align === "right" ? f.left + f.width : fig.width - f.left;
  return {text: t.text, width: ctx.measureText(t.text).width, room};
}
"""


def js_kernel_page(browser, *names: str):
    """A blank page with ``dashboard/views/js/common.js`` and ``<name>.js`` loaded, for
    running a snapshot kernel beside its Python twin (``page.evaluate("(a) => f(...a)", a)``)."""
    js = ROOT / "dashboard" / "views" / "js"
    page = browser.new_page()
    page.set_content("<!DOCTYPE html><html><body></body></html>")
    for name in ("common", *names):
        page.add_script_tag(content=(js / f"{name}.js").read_text(encoding="utf-8"))
    return page


def model_set(page, name: str, prop: str, value) -> None:
    """Set a snapshot model's property as a person's click or typing would (its callbacks
    run before this returns)."""
    page.evaluate(
        "([n, p, v]) => { Bokeh.documents[0].get_model_by_name(n)[p] = v; }", [name, prop, value]
    )


def model_get(page, name: str, prop: str):
    """A snapshot model's property."""
    return page.evaluate("([n, p]) => Bokeh.documents[0].get_model_by_name(n)[p]", [name, prop])


def open_offline(browser, path, ready: str, viewport=(1600, 1200), touch: bool = False):
    """Open a snapshot from file:// as a person would, offline: every request recorded
    (``page.requests``) and all but the file itself aborted, console errors and dialogs
    recorded (``page.errors``, ``page.dialogs``). Returns once ``ready``, a JavaScript
    expression over ``doc`` (the page's Bokeh document), is true; ``page.opened_in`` is the
    seconds that took. ``touch``: in a phone's or tablet's browser (touch, mobile viewport)."""
    size = {"width": viewport[0], "height": viewport[1]}
    if touch:  # a phone's or a tablet's browser
        page = browser.new_context(viewport=size, is_mobile=True, has_touch=True).new_page()
    else:
        page = browser.new_page(viewport=size)
    url = page.url_ = path.as_uri()
    page.requests, page.dialogs = [], []
    record_errors(page)
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))

    def route(r):
        page.requests.append(r.request.url)
        r.continue_() if r.request.url == url else r.abort()

    page.route("**/*", route)
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(
        "() => { if (!window.Bokeh || !Bokeh.documents.length) return false;"
        f" const doc = Bokeh.documents[0]; return Boolean({ready}); }}",
        timeout=30_000,
    )
    page.opened_in = time.perf_counter() - t0
    return page


# Every element of the page, inside shadow roots too (Bokeh and Panel draw in them), the ones
# inside an element's shadow root before the element: the walk the page checks below share.
JS_EVERY_ELEMENT = """
  function* everyElement(root) {
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) yield* everyElement(el.shadowRoot);
      yield el;
    }
  }
"""

# Every element (shadow roots included) whose box reaches past the viewport's right edge, the
# innermost first: what a phone would have to scroll sideways to see.
JS_OVERFLOW = (
    """
() => {"""
    + JS_EVERY_ELEMENT
    + """
  const width = document.documentElement.clientWidth, out = [];
  for (const el of everyElement(document)) {
    const r = el.getBoundingClientRect();
    if (String(el.className).includes("GlyphRenderer")) continue;
    if (r.width > 0 && r.right > width + 1 && getComputedStyle(el).visibility !== "hidden") {
      const name = el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined
        ? "." + String(el.className).trim().split(/\\s+/).join(".") : "");
      out.push(`${name} right=${Math.round(r.right)} width=${Math.round(r.width)}`);
    }
  }
  return {scroll: document.documentElement.scrollWidth, width, over: out.slice(0, 12)};
}
"""
)


def overflow(page) -> dict:
    """The page's scroll width, its viewport width and up to 12 elements reaching past it."""
    return page.evaluate(JS_OVERFLOW)


# Text a person reads (an element with text of its own, shown) smaller than ``min_px``, and tap
# targets (buttons, inputs, menus, token chips) smaller than ``min_tap`` in either direction.
JS_SMALL = (
    """
([minPx, minTap]) => {"""
    + JS_EVERY_ELEMENT
    + """
  const text = [], taps = [];
  const shown = (el, r) =>
    r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden";
  const said = (el) => (el.textContent || el.value || "").trim().slice(0, 30);
  for (const el of everyElement(document)) {
    const r = el.getBoundingClientRect();
    if (!shown(el, r)) continue;
    // a plot's own labels (axes, legends) follow the plot's theme; super/subscripts are small
    const host = el.getRootNode().host;
    const inPlot = host && host.closest(".bk-Figure, .bk-Legend, [class*='Legend']");
    const own = !inPlot && !["SUP", "SUB"].includes(el.tagName) &&
      Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (own && size < minPx) text.push(`${el.tagName.toLowerCase()} ${size}px "${said(el)}"`);
    const tappable = ["BUTTON", "SELECT", "TEXTAREA"].includes(el.tagName) ||
      (el.tagName === "INPUT" && el.type !== "hidden");
    if (tappable && (r.height < minTap - 0.5 || r.width < minTap - 0.5)) {
      const size = `${Math.round(r.width)}x${Math.round(r.height)}`;
      taps.push(`${el.tagName.toLowerCase()} ${size} "${said(el)}"`);
    }
  }
  return {text: text.slice(0, 12), taps: taps.slice(0, 12)};
}
"""
)


def small_things(page, min_px: float = 14, min_tap: float = 40) -> dict:
    """Up to 12 texts smaller than ``min_px`` and 12 tap targets smaller than ``min_tap``."""
    return page.evaluate(JS_SMALL, [min_px, min_tap])


# Every shown figure whose title is wider than the room the figure gives it (as drawn: a figure
# scaled down to a phone's width has less room than its nominal width).
JS_CUT_TITLES = """
() => {
  const out = [], ctx = document.createElement("canvas").getContext("2d");
  for (const doc of Bokeh.documents) for (const m of doc._all_models.values()) {
    const t = m.title;
    if (!t || typeof t.text !== "string" || !t.text || !m.renderers) continue;
    const pv = Bokeh.index.find_one(m);
    if (!pv || !pv.frame) continue;
    const r = pv.el.getBoundingClientRect();
    if (r.width === 0) continue;  // not shown
    ctx.font = `${t.text_font_style} ${t.text_font_size} ${t.text_font}`;
    // a title starts at the frame's left edge, or ends at its right one (align "right")
    const f = pv.frame.bbox, width = ctx.measureText(t.text).width;
    const room = t.align === "right" ? f.left + f.width : r.width - f.left;
    const said = `${m.name}: "${t.text}" ${Math.round(width)} > ${Math.round(room)}`;
    if (width > room + 1) out.push(said);
  }
  return out;
}
"""

# Every shown text cut by its own box (its content wider than the box, which clips or scrolls
# it) or running past the window's right edge.
JS_CUT_TEXT = (
    """
() => {"""
    + JS_EVERY_ELEMENT
    + """
  const out = [], right = document.documentElement.clientWidth;
  for (const el of everyElement(document)) {
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || getComputedStyle(el).visibility === "hidden") continue;
    const style = getComputedStyle(el);
    const clips = ["hidden", "clip", "auto", "scroll"].includes(style.overflowX) ||
                  style.textOverflow === "ellipsis";
    if ((clips && el.scrollWidth > el.clientWidth + 1) || r.right > right + 1)
      out.push(`${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 40)}"`);
  }
  return out.slice(0, 12);
}
"""
)


def cut_titles(page) -> list[str]:
    """Shown figures whose titles do not fit (see JS_CUT_TITLES)."""
    return page.evaluate(JS_CUT_TITLES)


def cut_text(page) -> list[str]:
    """Up to 12 shown texts cut by their box or the window (see JS_CUT_TEXT)."""
    return page.evaluate(JS_CUT_TEXT)


# The screen position of a figure's legend entry ``i``: the legend's box in its canvas.
LEGEND_ENTRY = """([name, i]) => {
  const doc = Bokeh.documents.find(d => d.get_model_by_name(name));
  const view = Bokeh.index.find_one(doc.get_model_by_name(name));
  const legend = [...view.renderer_views.values()].find(v => v.model.click_policy === 'hide');
  const rect = view.canvas_view.el.getBoundingClientRect();
  const b = legend.bbox, n = legend.model.items.length;
  return {x: rect.left + b.left + 12, y: rect.top + b.top + (i + 0.5) * b.height / n};
}"""
VISIBLE = """([name, i]) => {
  const doc = Bokeh.documents.find(d => d.get_model_by_name(name));
  const legend = doc.get_model_by_name(name).center.find(m => m.click_policy === 'hide');
  return legend.items[i].renderers.map(r => r.visible);
}"""
