"""Build one self-contained, interactive HTML snapshot of the lessons for a text.

The page is a single Bokeh document rendered as ``bokeh.embed.file_html`` with INLINE
resources does, into our own template (:func:`inline_html`): every script and style is in the
file, the favicon is an inline ``data:`` URL, and nothing is fetched when it opens (not Panel's
``save``, which links a CDN and weighs ~3 MB before any data); its scripts, BokehJS first,
are carried gzipped and unpacked by the page (:mod:`export.pack`). Interactivity is
``CustomJS`` over embedded float32 arrays (Bokeh writes numpy arrays as base64 buffers): no
server.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from bokeh.document import Document
from bokeh.embed.bundle import bundle_for_objs_and_resources
from bokeh.embed.elements import html_page_for_render_items
from bokeh.embed.util import standalone_docs_json_and_render_items
from bokeh.events import DocumentReady
from bokeh.layouts import column
from bokeh.model import Model
from bokeh.models import Column, CustomJS, InlineStyleSheet, LayoutDOM, Plot, TabPanel, Tabs
from bokeh.resources import INLINE

from dashboard.views import registry
from dashboard.views.offline import Context, div
from dashboard.views.plots import plot_style
from export.pack import pack_scripts
from models.manifest import static_dir
from models.reading import read_text
from models.runtime import Engine, EngineError

# The lessons (name -> registry.Lesson), the same registry the dashboard's navigation uses.
LESSONS = registry.LESSONS

TEMPLATE = """
{% block preamble %}
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>{{ page_css }}</style>
{% endblock %}
"""
# A tag that would make the browser fetch something (the favicon is an inline data: URL).
EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*(?![\"']?data:)", re.I
)

# A tab's lesson goes in the first time the tab is chosen.
OPEN_TAB = """
const i = tabs.active, panel = tabs.tabs[i], layout = layouts[i];
if (panel.child !== layout) {
  // Tabs rebuilds its views when its list of panels changes, not when a panel's child does
  const name = panel.name;
  panel.name = null;
  const opened = new panel.constructor({child: layout, title: panel.title, name});
  tabs.tabs = tabs.tabs.map((p, j) => (j === i ? opened : p));
}
"""

SCRIPT_BODY = re.compile(r"(<script\b[^>]*>).*?</script>", re.I | re.S)


class SnapshotError(ValueError):
    """Bad input for a snapshot (unknown lesson or model, empty text, unwritable path)."""


def parse_lessons(names: str | Sequence[str] | None) -> list[str]:
    """``"attention,bpe"`` or a list → lesson names in the order given (None: all, in course
    order). Old names (``temperature``) still work."""
    if names is None:
        return registry.course()
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    choose = ", ".join(registry.course())
    unknown = [n for n in names if registry.resolve(n) is None]
    if unknown:
        raise SnapshotError(f"unknown lesson {', '.join(map(repr, unknown))}; choose from {choose}")
    if not names:
        raise SnapshotError(f"no lesson chosen; choose from {choose}")
    return list(dict.fromkeys(registry.resolve(n) for n in names))


def lesson_options(options: dict | None) -> tuple[registry.Options, frozenset]:
    """Every lesson's options, from their defaults and ``options`` (name -> value, validated
    by the options' own bounds), and the names that were given."""
    options = dict(options or {})
    known = set(registry.option_names())
    if unknown := sorted(set(options) - known):
        raise SnapshotError(f"unknown option {', '.join(map(repr, unknown))}")
    try:
        values = registry.composed_options()(**options)
    except (ValueError, TypeError) as err:
        raise SnapshotError(f"bad option value: {err}") from None
    return values, frozenset(options)


def _css(classroom: bool) -> tuple[str, str]:
    """(page CSS, CSS for Bokeh's shadow roots) in the normal or the classroom theme."""
    here = Path(__file__).resolve().parent / "css"
    files = (["page.css", "classroom.css"], ["shadow.css", "shadow-classroom.css"])
    return tuple(
        "\n".join((here / f).read_text(encoding="utf-8") for f in names[: 2 if classroom else 1])
        for names in files
    )


def _context(
    engine: Engine,
    text: str,
    model: str | None,
    classroom: bool,
    options: dict | None,
    stylesheet: InlineStyleSheet,
) -> tuple[Context, list[str]]:
    if not isinstance(text, str) or not text.strip():
        raise SnapshotError("the text is empty: give the model something to read (--text)")
    model = model or engine.default_model
    if model not in engine.model_names:
        raise SnapshotError(
            f"unknown model {model!r}; the manifest has {', '.join(engine.model_names)}"
        )
    reading = read_text(engine, model, text)
    if not reading.ok:
        raise SnapshotError(reading.message)
    selection, chosen = lesson_options(options)
    ctx = Context(
        engine=engine,
        reading=reading,  # ok: the engine has read this model's config and tokenizer already
        text=text,
        style=plot_style(classroom),
        selection=selection,
        stylesheet=stylesheet,
        chosen=chosen,
    )
    return ctx, list(reading.notices)


def _header(ctx: Context, notices: list[str], when: str) -> str:
    chips = "".join(
        f"<span class='chip' title='id {i}'>{html.escape(t)}</span>"
        for i, t in zip(ctx.ids, ctx.tokens, strict=True)
    )
    notice = "".join(f"<p class='notice'>{html.escape(n)}</p>" for n in notices)
    return (
        "<h1 class='snap-title'>Transformer Anatomy</h1>"
        f"<p class='snap-info'>A snapshot of model <b>{html.escape(ctx.model)}</b> reading "
        f"{ctx.n_tokens} tokens, exported {html.escape(when)}. It works offline: every "
        "control below runs in this page.</p>"
        f"{notice}<div class='chips'>{chips}</div>"
    )


def build_snapshot(
    text: str,
    model: str | None = None,
    lessons: str | Sequence[str] | None = None,
    classroom: bool = False,
    options: dict | None = None,
    lesson: str | None = None,
    engine: Engine | None = None,
) -> str:
    """The snapshot's HTML for ``text`` read by ``model`` (default: the manifest's default),
    with ``lessons`` (names or "a,b"; default all) in the normal or classroom theme, opening
    on ``lesson`` with the lessons' ``options`` (name -> value; the rest at their defaults).

    Raises :class:`SnapshotError` with a message for a person on bad input."""
    names = parse_lessons(lessons)
    if engine is None:
        try:
            engine = Engine(static_dir())
        except EngineError as err:
            raise SnapshotError(str(err)) from None
    page_css, shadow_css = _css(classroom)
    sheet = InlineStyleSheet(css=shadow_css)
    ctx, notices = _context(engine, text, model, classroom, options, sheet)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = div(ctx, _header(ctx, notices, when), "snap-header", name="snapshot-header")
    first = registry.resolve(lesson or registry.DEFAULT_LESSON)
    active = names.index(first) if first in names else 0
    layouts = [_lesson(ctx, LESSONS[n]) for n in names]
    # Only the open tab is laid out when the page opens; a tab's lesson goes into it the first
    # time it is chosen (Bokeh would otherwise build every hidden lesson's views up front).
    panels = [
        TabPanel(
            child=layout if i == active else div(ctx, "", name=f"pending-{n}"),
            title=LESSONS[n].title,
            name=f"tab-{n}",
        )
        for i, (n, layout) in enumerate(zip(names, layouts, strict=True))
    ]
    tabs = Tabs(
        tabs=panels,
        active=active,
        name="lessons",
        stylesheets=[sheet],
        sizing_mode="stretch_width",
    )
    tabs.js_on_change("active", CustomJS(args=dict(tabs=tabs, layouts=layouts), code=OPEN_TAB))
    root = Column(header, tabs, name="snapshot", stylesheets=[sheet], sizing_mode="stretch_width")
    styled(root, layouts, sheet)
    doc = Document()
    doc.add_root(root)
    for cb in ctx.shared.get("ready", []):
        doc.js_on_event(DocumentReady, cb)
    return inline_html(doc, f"Transformer Anatomy: {ctx.model} snapshot", page_css)


def inline_html(doc: Document, title: str, page_css: str) -> str:
    """``bokeh.embed.file_html(doc, INLINE)`` minus external files. Bokeh's INLINE resources
    still list the ``__javascript__`` URLs of every registered model class, used or not (once
    Panel is imported, a CDN/static ES-module shim); nothing here needs them, so they go."""
    docs_json, render_items = standalone_docs_json_and_render_items(doc)
    bundle = bundle_for_objs_and_resources([doc], INLINE)
    bundle.js_files.clear()
    bundle.css_files.clear()
    page = html_page_for_render_items(
        bundle,
        docs_json,
        render_items,
        title=title,
        template=TEMPLATE,
        template_variables={"page_css": page_css},
    )
    tags = SCRIPT_BODY.sub(r"\1</script>", page)  # markup only: the JS mentions "<img src="
    linked = EXTERNAL.search(tags)
    if linked:  # the contract is zero requests: fail loudly rather than write such a file
        raise RuntimeError(f"the snapshot would load {linked.group(0)[:120]!r}")
    return pack_scripts(page)


def write_snapshot(page: str, out: str | os.PathLike) -> Path:
    """Write ``page`` to ``out`` atomically: a temporary file in the same folder, renamed
    once complete, so a failure never leaves a partial snapshot behind."""
    out = Path(out)
    if out.is_dir():
        raise SnapshotError(f"cannot write {out}: it is a folder; name a file, e.g. {out}/a.html")
    folder = out.parent if str(out.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from a web server
        os.replace(tmp, out)
        tmp = None
    except OSError as err:
        raise SnapshotError(f"cannot write {out}: {err.strerror or err}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return out


def export_snapshot(out: str | os.PathLike, text: str, **options) -> Path:
    """Build the snapshot (see :func:`build_snapshot` for ``options``) and write it to
    ``out``. Nothing is written unless the whole page was built."""
    return write_snapshot(build_snapshot(text, **options), out)


def styled(root: Model, layouts: Sequence[Model], sheet: InlineStyleSheet) -> None:
    """Give every layout, text and widget of the page the shadow-root style sheet, not only the
    ones the lessons built with it: its narrow-screen rules (rows that wrap, nothing wider than
    the window, 40 px taps) must reach every row of every lesson (export/css/shadow.css)."""
    for model in {m for top in (root, *layouts) for m in top.references()}:
        if isinstance(model, LayoutDOM) and sheet not in model.stylesheets:
            model.stylesheets = [*model.stylesheets, sheet]
        # A figure that scales to the width would shrink to nothing beside fixed siblings in a
        # Bokeh row: its full width is also its least (the narrow rules lift that minimum).
        if isinstance(model, Plot) and model.sizing_mode == "scale_width" and model.max_width:
            model.min_width = model.max_width


def _lesson(ctx: Context, lesson: registry.Lesson):
    """A lesson's tab: its "what you see, what to try" text above its snapshot form."""
    try:
        body = lesson.snapshot(ctx)
    except EngineError as err:  # a model file without the outputs it draws: say so in its tab
        body = div(ctx, f"<p>{html.escape(str(err))}</p>", "error", name=f"error-{lesson.name}")
    return column(div(ctx, f"<p>{lesson.about}</p>", "about", name=f"about-{lesson.name}"),
                  body, sizing_mode="stretch_width")  # fmt: skip


def snapshot_of_state(state, **options) -> str:
    """The snapshot of what a dashboard session shows: its text, model, lesson, every lesson
    option and the theme; every lesson included; ``options`` override the session's. Raises
    :class:`SnapshotError` when there is nothing to export."""
    if state.engine is None:
        raise SnapshotError(state.message or "no model is loaded")
    values = {name: getattr(state, name) for name in registry.option_names()}
    return build_snapshot(
        state.text,
        model=state.model,
        classroom=state.classroom,
        options={**values, **options},
        lesson=state.lesson,
        engine=state.engine,
    )
