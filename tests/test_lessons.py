"""Generic tests over the lesson registry: every registered lesson, every option.

A lesson that is registered gets these for free, and fails them when it lacks a part: a
snapshot form, its "what you see" text, an option that survives a link or reaches the
snapshot. The browser tests (test_browser_views.py) run the classroom and laptop fit over
``registry.course()`` in the same way. The last test adds a throw-away lesson the way the
README's recipe says, and checks it reaches every place.
"""

from __future__ import annotations

import html
import json
import re

import numpy as np
import param
import pytest
from bokeh.models import Div

from dashboard.state import DEFAULT_TEXT, AnatomyState, state_class
from dashboard.views import LESSONS, registry
from export.pack import unpack, unpack_data
from export.snapshot import build_snapshot, parse_lessons
from models.runtime import STATIC_DIR, Engine


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def other_value(p: param.Parameter, default):
    """A valid value of ``p`` that is not its default (small: it must fit a short text)."""
    if isinstance(p, param.Selector):
        return next(o for o in p.objects if o != default)
    if isinstance(p, param.String):  # free text: one more word of the same kind
        return f"{default} {default.split()[-1]}"
    if isinstance(p, param.Boolean):
        return not default
    if isinstance(p, param.Integer):
        return 3 if default is None else default + 2
    if isinstance(p, param.Number):
        lo, hi = p.bounds or (None, None)
        v = 0.5 * default if default else 0.25
        return v if lo is None or v > lo else (default + (hi or default + 1)) / 2
    raise AssertionError(f"no other value for {p.name}")


def options_and_values():
    cls = registry.composed_options()
    return [(n, other_value(cls.param[n], cls.param[n].default)) for n in registry.option_names()]


def test_every_lesson_is_complete():
    assert list(LESSONS) and registry.course()[0] in LESSONS
    for name, lesson in LESSONS.items():
        assert lesson.chapter in registry.CHAPTERS, name
        assert callable(lesson.snapshot), name
        assert "What you see" in lesson.about and "Try" in lesson.about, name
        assert issubclass(lesson.view, registry.LessonView), name
        prev, nxt = registry.neighbours(name)
        assert (prev is None) == (name == registry.course()[0])
        assert (nxt is None) == (name == registry.course()[-1])


def test_the_navigation_marks_only_the_lesson_shown(engine):
    from dashboard.app import chapter_nav

    state = AnatomyState(engine=engine, lesson="mask")
    groups = [w for w in chapter_nav(state).objects if hasattr(w, "options")]
    assert [g.value for g in groups] == [
        "mask" if "mask" in g.values else None for g in groups
    ]  # fmt: skip
    assert sum(g.get_root().active is not None for g in groups) == 1  # what the page shows
    state.lesson = "precision"
    assert [g.value for g in groups].count(None) == len(groups) - 1


def test_chapters_are_in_course_order_and_names_resolve():
    order = registry.course()
    chapters = [LESSONS[n].chapter for n in order]
    assert chapters == sorted(chapters, key=registry.CHAPTERS.index)
    assert [n for names in registry.chapters().values() for n in names] == order
    assert registry.resolve("temperature") == "sampling"  # an old name in old links
    assert parse_lessons("temperature") == ["sampling"]


@pytest.mark.parametrize(("option", "value"), options_and_values())
def test_every_option_survives_a_link(engine, option, value):
    from panel.io.location import Location

    loc = Location(search="")
    s = AnatomyState(engine=engine)
    s.sync_url(loc)
    assert getattr(s, option) != value
    setattr(s, option, value)
    key = registry.url_keys()[option]
    assert re.search(rf"[?&]{re.escape(key)}=", loc.search), loc.search
    fresh = AnatomyState(engine=engine)
    fresh.sync_url(Location(search=loc.search))
    got = getattr(fresh, option)
    assert got == value or (isinstance(value, float) and np.isclose(got, value)), (got, value)
    assert fresh.notice == ""


def _document(page: str) -> str:
    """The snapshot's Bokeh document, ids and the export time taken out (they always differ)."""
    (body,) = unpack_data(page).values()  # the Bokeh document
    doc = re.sub(r'"(?:id|root_ids|ids)":\s*"?p\d+"?', '"id":0', body)
    doc = re.sub(r"\bp\d{3,}\b", "p", doc)
    doc = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "uuid", doc)
    return re.sub(r"exported \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "exported", doc)


def _owners(option: str) -> tuple[str, ...]:
    """The lessons that declare ``option``; the shared selection's (layer, head, query, key)
    are the attention lesson's to show."""
    owners = tuple(n for n, lesson in LESSONS.items()
                   if lesson.options is not None and option in lesson.options.url)  # fmt: skip
    return owners or ("attention",)


@pytest.fixture(scope="module")
def default_documents(engine):
    """The default snapshot's document of a set of lessons, built once per set and the same
    when built twice (so that a difference below is the option's, not the build's)."""
    built: dict[tuple[str, ...], str] = {}

    def document(lessons: tuple[str, ...]) -> str:
        if lessons not in built:
            base = _document(build_snapshot(DEFAULT_TEXT, engine=engine, lessons=list(lessons)))
            again = build_snapshot(DEFAULT_TEXT, engine=engine, lessons=list(lessons))
            assert base == _document(again)
            built[lessons] = base
        return built[lessons]

    return document


@pytest.mark.parametrize(("option", "value"), options_and_values())
def test_every_option_reaches_the_snapshot(engine, default_documents, option, value):
    """The snapshot of the lessons that show an option, with that option changed, differs from
    their default one, and only because of it (the default built twice is the same)."""
    lessons = _owners(option)
    changed = build_snapshot(DEFAULT_TEXT, engine=engine, lessons=list(lessons),
                             options={option: value})  # fmt: skip
    assert _document(changed) != default_documents(lessons), (
        f"option {option}={value!r} does not reach the snapshot of {', '.join(lessons)}"
    )


def test_snapshot_refuses_bad_option_values(engine):
    from export.snapshot import SnapshotError

    with pytest.raises(SnapshotError, match="unknown option 'nope'"):
        build_snapshot("hi", engine=engine, options={"nope": 1})
    with pytest.raises(SnapshotError, match="bad option value"):
        build_snapshot("hi", engine=engine, options={"top_p": 3.0})


def test_every_lesson_has_a_snapshot_form_and_a_tab(engine):
    page = build_snapshot(DEFAULT_TEXT, engine=engine)
    doc = html.unescape(unpack(page))
    for name, lesson in LESSONS.items():
        assert f'"tab-{name}"' in doc, name
        assert json.dumps(lesson.title)[1:-1] in doc, name
        assert f'"about-{name}"' in doc and json.dumps(lesson.about)[1:20] in doc, name


# -- a throw-away lesson, added the way the README says ---------------------------------------
def test_a_new_lesson_is_written_once_and_appears_everywhere(engine):
    """Three touch points: a pure function, one lesson module (options, view, snapshot form,
    text), one registry line. Everything else follows from the registry."""

    # 1. the pure computation (numpy in, numpy out)
    def token_lengths(tokens: list[str]) -> np.ndarray:
        return np.array([len(t) for t in tokens])

    # 2. the lesson module: options, view and snapshot form
    class LengthOptions(registry.Options):
        url = {"longest": "longest"}
        longest = param.Boolean(default=False, doc="Mark the longest token.")

    class LengthView(registry.LessonView):
        def __panel__(self):
            import panel as pn

            return pn.pane.Str(str(token_lengths(self.state.tokens).tolist()))

    def snapshot(ctx):
        lengths = token_lengths(ctx.tokens)
        return Div(text=f"lengths {lengths.tolist()} longest={ctx.selection.longest}")

    # 3. one registry line
    registry.register(
        "lengths",
        "Token lengths",
        "Training",
        LengthView,
        snapshot,
        about="<b>What you see:</b> lengths. <b>Try:</b> longer words.",
        options=LengthOptions,
    )
    try:
        from panel.io.location import Location

        from dashboard.app import Shell, chapter_nav
        from export.cli import parser

        assert registry.course()[-2:] == ["lengths", "precision"]  # Training before Numbers
        # the state has its option, and a link carries it
        s = state_class()(engine=engine)
        loc = Location(search="")
        s.sync_url(loc)
        s.longest = True
        assert "longest=true" in loc.search
        fresh = state_class()(engine=engine)
        fresh.sync_url(Location(search=loc.search + "&lesson=lengths"))
        assert fresh.longest is True and fresh.lesson == "lengths"
        # the navigation lists it in its chapter; the shell shows it and its neighbours
        nav = chapter_nav(fresh)
        assert any("Token lengths" in getattr(w, "options", {}) for w in nav.objects)
        shell = Shell(state=fresh)
        assert "lengths" in shell._views and "What you see" in shell.about.object
        assert shell.next.label.startswith("FP16 vs BF16")
        # the snapshot writer, its command line and its options
        assert "lengths" in parser().get_default("lessons").split(",")
        page = build_snapshot(
            "a bb ccc", engine=engine, lessons="lengths", options={"longest": True}
        )
        page = unpack(page)
        assert "longest=True" in page and "Token lengths" in page
        # and the snapshot of the dashboard session
        from export.snapshot import snapshot_of_state

        assert "longest=True" in unpack(snapshot_of_state(fresh))
    finally:
        registry.unregister("lengths")
    assert "lengths" not in registry.course()
    assert "longest" not in registry.option_names()


# -- every lesson with every model --------------------------------------------------------------
@pytest.mark.parametrize("model", ["anatomy-gpt", "anatomy-llama"])
def test_every_lesson_works_with_both_models(engine, model):
    """The model picker offers both committed models; every lesson draws either, without an
    error message, in the dashboard and in the snapshot."""
    assert {"anatomy-gpt", "anatomy-llama"} <= set(engine.model_names)
    state = AnatomyState(engine=engine, text=DEFAULT_TEXT, model=model)
    assert state.status == "ok" and state.model == model
    for name in LESSONS:
        view = LESSONS[name].view(state=state)
        view.__panel__()
        state.param.update(layer=1, head=3, query=2)
        assert state.status == "ok", (name, state.message)
    page = html.unescape(unpack(build_snapshot(DEFAULT_TEXT, engine=engine, model=model)))
    for name in LESSONS:
        assert f'"tab-{name}"' in page, (model, name)
    assert f"A snapshot of model <b>{model}</b>" in page


def test_the_attention_lesson_says_which_query_heads_share_a_key_value_head(engine):
    """anatomy-llama's 4 query heads read 2 key/value heads; anatomy-gpt's each have their own."""
    from dashboard.views.attention import AttentionLesson

    state = AnatomyState(engine=engine, text=DEFAULT_TEXT, model="anatomy-llama")
    view = AttentionLesson(state=state)
    state.head = 2
    assert "heads 0 and 1 read K/V head 0; heads 2 and 3 read K/V head 1" in view._sharing.object
    assert view._sharing.object.endswith("Head 2 reads K/V head 1 with head 3.")
    state.model = "anatomy-gpt"
    assert "Multi-head attention" in view._sharing.object
    page = html.unescape(unpack(build_snapshot(DEFAULT_TEXT, engine=engine, model="anatomy-llama")))
    assert "heads 0 and 1 read K/V head 0; heads 2 and 3 read K/V head 1" in page
