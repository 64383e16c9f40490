"""The shell: template, navigation between lessons, header, classroom mode, URL state.

``create_app()`` builds one browser session's page around one :class:`AnatomyState`. The
state is mirrored in the URL, so a copied link (``?lesson=mask&layer=2&head=1&q=5...``)
reproduces the view. Classroom mode is a theme (dark, every size at least doubled): the
header button reloads the page with ``classroom=true`` flipped, and the rest of the state
survives the reload through the URL.
"""

from __future__ import annotations

import functools
import html

import panel as pn
import param
from panel.theme.base import Inherit
from panel.theme.fast import Fast
from panel.viewable import Viewable

from dashboard import sessions
from dashboard.state import ENV_CLASSROOM, SHELL_KEYS, SessionState, env_flag, state_class
from dashboard.views import LESSONS, registry
from dashboard.views.components import KeyboardNav, TokenChips
from dashboard.views.registry import LessonView
from dashboard.views.widgets import (
    OptionSelect,
    css,
    labelled,
    text_pane,
    two_way,
)

TITLE = "Transformer Anatomy"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

# Flips classroom=... in the current URL (already synced with the state) and reloads.
TOGGLE_CLASSROOM_JS = """
const url = new URL(window.location.href);
const on = url.searchParams.get("classroom") === "true";
url.searchParams.set("classroom", on ? "false" : "true");
window.location.assign(url.toString());
"""


# Inside every widget and layout on a touch screen or a narrow one (static/anatomy.css has the
# page's rules): taps of at least 40 px, button groups that wrap instead of running off the
# screen, no 12 px text; on a narrow one nothing wider than its parent (a lesson's widths are
# what it takes where there is room).
PHONE_CSS = """@media (pointer: coarse), (max-width: 800px), (max-height: 500px) {
.bk-btn, .bk-input, select.bk-input { min-height: 40px; font-size: 15px; }
.bk-btn-group { flex-wrap: wrap; }
.bk-btn-group > .bk-btn { flex: 1 0 auto; }
.noUi-handle { width: 28px !important; height: 28px !important; }
.bk-spin-btn { display: none !important; }
}
@media (max-width: 800px), (max-height: 500px) {
:host { max-width: calc(100% - 10px) !important; min-width: 0 !important; }
:host(.bk-Row) { flex-wrap: wrap !important; }
:host > div { max-width: 100% !important; min-width: 0 !important; }
}"""


class OfflineFast(Fast):
    """Panel's Fast design without its Google web font: the page makes no request outside
    the server (a classroom may have no internet, and a failed font load is a console error).
    """

    _resources = {k: v for k, v in Fast._resources.items() if k != "font"}
    # every widget's shadow root gets the narrow-screen rules (page CSS cannot reach inside)
    modifiers = {**Fast.modifiers, Viewable: {"stylesheets": [Inherit, PHONE_CSS]}}


# Panel locates a design's bundled files (fast/js/fast_design.js) by its class name.
OfflineFast.__name__ = "Fast"


class Shell(pn.viewable.Viewer):
    """Everything around the lessons: text, model, tokens, messages, navigation, header."""

    state = param.ClassSelector(class_=SessionState)

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self._views: dict[str, LessonView] = {}
        # each visited lesson's layout, hidden when not shown
        self._layouts: dict[str, pn.viewable.Viewable] = {}
        self.text = pn.widgets.TextAreaInput(
            label="Text",
            value=s.text,
            # Panel starts value_input at "": clearing the box before any other edit would
            # then change nothing, and the old tokens would stay
            value_input=s.text,
            placeholder="Type a sentence…",
            rows=4,
            auto_grow=True,
            max_rows=10,
            max_length=20_000,
            sizing_mode="stretch_width",
        )
        # every keystroke updates the state (value_input), not only when the box loses focus
        self.text.param.watch(lambda e: setattr(s, "text", e.new), "value_input")
        s.param.watch(self._text_from_state, "text")
        self.model = OptionSelect(
            label="Model",
            options=list(s.param.model.objects),
            value=s.model,
            sizing_mode="stretch_width",
        )
        two_way(self.model, s, "model")
        self.nav = chapter_nav(s)
        self.menu = lesson_menu(s)
        self.about = text_pane("", "explain", "lesson-about", sizing_mode="stretch_width")
        self.previous = pn.widgets.Button(color="light", css_classes=["lesson-previous"])
        self.next = pn.widgets.Button(color="light", css_classes=["lesson-next"])
        self.previous.on_click(lambda _e: self._go(0))
        self.next.on_click(lambda _e: self._go(1))
        self.lesson_header = pn.Column(
            self.about,
            pn.Row(self.previous, self.next, margin=0),
            sizing_mode="stretch_width",
            margin=0,
        )
        self.chips = TokenChips(tokens=s.tokens, ids=s.ids, selected=s.query, margin=(5, 10))
        two_way(self.chips, s, "query", prop="selected")
        self.header_info = text_pane("", "header-info", margin=(0, 20), align="center")
        self.classroom_button = pn.widgets.Button(
            label="Normal mode" if s.classroom else "Classroom mode",
            color="light",
            align="center",
            width=260 if s.classroom else 150,
        )
        self.classroom_button.js_on_click(code=TOGGLE_CLASSROOM_JS)
        # a self-contained HTML file of what is on screen, interactive offline (export/)
        self.export_button = pn.widgets.FileDownload(
            callback=self._snapshot,
            filename="anatomy-snapshot.html",
            label="Export snapshot",
            color="light",
            embed=False,
            align="center",
            sizing_mode="stretch_width",
        )
        self.message = text_pane("", "message")
        self.notice = text_pane("", "notice")
        self.lesson_area = pn.Column(sizing_mode="stretch_width", margin=0)
        self.keyboard = KeyboardNav(s, margin=0, width=0, height=0)
        self._derived()
        self._show_lesson()

    def _snapshot(self):
        """The export button's file (a BytesIO): a snapshot of this session's state. On
        failure the page says why, and the download is a one-line page with the same message."""
        import io

        from export.snapshot import SnapshotError, snapshot_of_state

        try:
            page = snapshot_of_state(self.state)
        except SnapshotError as err:
            text = f"The snapshot could not be made: {err}"
            self.notice.param.update(object=html.escape(text), visible=True)
            page = f"<!DOCTYPE html><meta charset='utf-8'><p>{html.escape(text)}</p>"
        return io.BytesIO(page.encode("utf-8"))

    def _text_from_state(self, event) -> None:
        if self.text.value_input != event.new:
            self.text.param.update(value=event.new, value_input=event.new)

    @param.depends("state.forward", "state.status", "state.notice", "state.message", watch=True)
    def _derived(self) -> None:
        """Tokens, header, notice and message follow each new forward pass."""
        s = self.state
        self.chips.param.update(tokens=s.tokens, ids=s.ids, selected=s.query)
        self.notice.object = html.escape(s.notice)
        self.notice.visible = bool(s.notice)
        self.message.object = html.escape(s.message)
        self.message.css_classes = ["message", "error"] if s.status == "error" else ["message"]
        self.message.visible = s.status != "ok"
        self.lesson_area.visible = self.lesson_header.visible = s.status == "ok"
        self.chips.visible = s.status == "ok"
        if s.status == "ok" and self.state.lesson not in self._views:
            self._show_lesson()
        self.header_info.object = self._header()

    def _header(self) -> str:
        """The model, the provider that actually ran it and the last forward pass's time.
        Classroom mode says the same in fewer words, so it fits a projector's width."""
        s, f = self.state, self.state.forward
        if s.model is None:
            return "no model loaded"
        short = s.classroom
        parts = [f"{'' if short else 'model '}<b>{html.escape(s.model)}</b>"]
        if s.provider:
            name = html.escape(s.provider)
            if short:
                parts.append(f"<b>{name.removesuffix('ExecutionProvider')}</b> provider")
            else:
                parts.append(f"provider <b>{name}</b>")
        if f is not None:
            label = "forward" if short else "last forward pass"
            parts.append(f"{label} <b>{1000 * f.seconds:.1f} ms</b> ({len(f.ids)} tokens)")
        return " · ".join(parts)

    @param.depends("state.lesson", watch=True)
    def _show_lesson(self) -> None:
        """Create the lesson's view on first visit (once per session) and show it.

        Visited lessons stay in the page, hidden: switching back only toggles visibility
        instead of sending the whole lesson to the browser again."""
        s = self.state
        if s.lesson in LESSONS:
            self._lesson_header(s.lesson)
        if s.status != "ok" or s.lesson not in LESSONS:
            return
        if s.lesson not in self._views:
            self._views[s.lesson] = view = LESSONS[s.lesson].view(state=s)
            # The lesson's own layout goes in, not a Column around the view: wrapped so, the
            # browser never reported the page ready (no `document_ready`), and Panel then
            # dropped every plot update made inside a hold (tests/test_browser_views.py).
            self._layouts[s.lesson] = view.__panel__()
            self.lesson_area.append(self._layouts[s.lesson])
            sessions.settle_objects()  # the lesson stays in the page until its tab closes
        # lessons off screen stop drawing (and catch up when shown again)
        for name, view in self._views.items():
            view.shown = name == s.lesson
            self._layouts[name].visible = name == s.lesson

    def _lesson_header(self, name: str) -> None:
        """The lesson's "what you see, what to try", and the course's previous and next."""
        self.about.object = f"<p>{LESSONS[name].about}</p>"
        for button, other, arrow in zip(
            (self.previous, self.next), registry.neighbours(name), ("← ", " →"), strict=True
        ):
            button.visible = other is not None
            if other is not None:
                title = LESSONS[other].title
                button.label = f"{arrow}{title}" if arrow == "← " else f"{title}{arrow}"

    def _go(self, which: int) -> None:
        other = registry.neighbours(self.state.lesson)[which]
        if other is not None:
            self.state.lesson = other

    @property
    def sidebar(self) -> list:
        # On a narrow screen (static/anatomy.css) the sidebar becomes the top of one column:
        # the menu replaces the chapter buttons, and the keyboard hint is hidden.
        return [
            labelled("Lessons", self.nav, "lesson-nav"),
            self.menu,
            self.export_button,
            self.text,
            self.model,
            text_pane(
                "<p class='hint'>← → step through the tokens, ↑ ↓ through the lessons. "
                "The address bar always holds a link to exactly this view.</p>",
                "caption",
                "keys-hint",
            ),
        ]

    @property
    def main(self) -> list:
        return [
            self.keyboard,
            self.message,
            self.notice,
            self.chips,
            self.lesson_area,
            self.lesson_header,  # below the plots: they stay above the fold on a projector
        ]

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(*self.sidebar, width=320), pn.Column(*self.main))


def chapter_nav(state: SessionState) -> pn.Column:
    """The lessons chapter by chapter (empty chapters hidden), in course order: one button
    group per chapter, all choosing ``state.lesson`` (the others then show no choice)."""
    groups: dict[str, pn.widgets.RadioButtonGroup] = {}
    rows = []
    for chapter, names in registry.chapters().items():
        group = groups[chapter] = pn.widgets.RadioButtonGroup(
            options={LESSONS[n].title: n for n in names},
            value=state.lesson if state.lesson in names else None,
            orientation="vertical",
            color="primary",
            variant="outline",
            sizing_mode="stretch_width",
            css_classes=["chapter-lessons"],
        )
        if state.lesson not in names:
            group.value = None  # Panel starts a group on its first option when given None
        group.param.watch(lambda e: e.new is not None and setattr(state, "lesson", e.new), "value")
        rows += [text_pane(chapter, "chapter", margin=(6, 5, 0, 5)), group]

    def show(event) -> None:
        for group in groups.values():
            group.value = event.new if event.new in group.values else None

    state.param.watch(show, "lesson")
    return pn.Column(*rows, margin=0, sizing_mode="stretch_width")


def lesson_menu(state: SessionState) -> pn.widgets.Select:
    """The lessons as one drop-down, grouped by chapter: the navigation of a narrow screen."""
    menu = OptionSelect(
        label="Lesson",
        groups={
            chapter: {LESSONS[n].title: n for n in names}
            for chapter, names in registry.chapters().items()
        },
        value=state.lesson,
        sizing_mode="stretch_width",
        css_classes=["lesson-menu"],
    )
    two_way(menu, state, "lesson")
    return menu


def build_template(shell: Shell) -> pn.template.FastListTemplate:
    """The page: the FastList template, themed for the normal or the classroom mode."""
    classroom = shell.state.classroom
    template = pn.template.FastListTemplate(
        title=TITLE,
        theme="dark" if classroom else "default",
        theme_toggle=False,
        font=FONT,
        design=OfflineFast,
        accent_base_color="#ffd400" if classroom else "#0969da",
        header_background="#000000" if classroom else "#0b3d91",
        sidebar_width=460 if classroom else 330,
        meta_viewport="width=device-width, initial-scale=1",
        main_layout=None,
        # Panel's busy spinner is process-wide: every event of every session would update
        # every session's spinner (40 students: 40 updates per keystroke), and it would tell a
        # student the server is busy with someone else's work. The header's timing says enough.
        busy_indicator=None,
        sidebar=shell.sidebar,
        main=shell.main,
        header=[shell.header_info, shell.classroom_button],
    )
    template.config.raw_css = [css("anatomy.css")] + (
        [css("anatomy-classroom.css")] if classroom else []
    )
    template.server_doc = functools.partial(_frozen_server_doc, template.server_doc)
    return template


def _frozen_server_doc(server_doc, doc=None, *args, **kwargs):
    """Put the page in its document with the document's model graph frozen: each of the
    template's roots would otherwise walk every model added so far (a third of a page's cost)."""
    doc = doc or pn.state.curdoc
    if doc is None or not hasattr(doc, "models"):
        return server_doc(doc, *args, **kwargs)
    with doc.models.freeze():
        page = server_doc(doc, *args, **kwargs)
    sessions.settle_objects()  # the page lives as long as its tab
    return page


def create_app(classroom: bool | None = None) -> pn.template.FastListTemplate:
    """One browser session's page. ``classroom`` is the default when the URL does not say."""
    state = state_class()(lessons=registry.course())
    location = pn.state.location
    if location is not None:
        in_url = SHELL_KEYS["classroom"] in location.query_params
        state.sync_url(location)
    else:
        in_url = False
    if not in_url and (env_flag(ENV_CLASSROOM) if classroom is None else classroom):
        state.classroom = True
    sessions.register(state)  # counted while the tab is open, forgotten when it closes
    return build_template(Shell(state=state))
