"""The lesson registry: the one place a lesson plugs in, for both of its homes.

A lesson is one module in ``dashboard/views/`` with a view (a :class:`LessonView`), a
snapshot form (``snapshot(ctx) -> Bokeh layout``), its options (an :class:`Options` subclass:
``param`` parameters with their URL keys and ranges) and a short "what you see, what to try"
text; and one :func:`register` line in ``dashboard/views/__init__.py``. From here the shell
derives the navigation (chapters, course order, previous/next), ``?lesson=``, the URL keys
and their validation, and the snapshot writer derives its tabs, ``--lessons`` and its first
state. Nothing here imports the shell or the snapshot writer: both stand on top of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import panel as pn
import param

from dashboard.views.plots import PlotStyle, plot_style

# The lesson a page opens on when its link names none (the dashboard's and the snapshot's).
DEFAULT_LESSON = "attention"

# The course's chapters, in order; the navigation hides the empty ones.
CHAPTERS = (
    "Tokens",
    "Attention",
    "Inside a block",
    "Positions",
    "Scale",
    "Mamba",
    "Encoder–decoder",
    "Generation",
    "Training",
    "Numbers",
)


class Options(param.Parameterized):
    """A lesson's options: parameters (with bounds: a link's bad value is refused by them)
    and ``url``, parameter name -> URL query key. The session state composes every lesson's
    options; the snapshot starts from the same values."""

    url: ClassVar[dict[str, str]] = {}


class Selection(Options):
    """What several lessons share: the selected layer, head, query and key."""

    url: ClassVar[dict[str, str]] = {"layer": "layer", "head": "head", "query": "q", "key": "k"}

    layer = param.Integer(default=0, bounds=(0, None), doc="Selected layer (0-based).")
    head = param.Integer(default=0, bounds=(0, None), doc="Selected attention head (0-based).")
    query = param.Integer(default=0, bounds=(0, None), doc="Selected query token position.")
    key = param.Integer(default=0, bounds=(0, None), doc="Selected key token position.")


class LessonView(pn.viewable.Viewer):
    """Base class of the lessons' dashboard views: holds the session's state and plot style.

    Subclasses build their widgets and plots in ``__init__``, update them from watchers on
    ``state`` (drawing methods decorated with :func:`draws`) and return their layout from
    ``__panel__``. They only run when the state has a forward pass: the shell shows the
    prompt or error message otherwise.
    """

    state = param.Parameter(doc="The session's linked state (dashboard.state.AnatomyState).")
    shown = param.Boolean(default=True, doc="On screen now (the shell sets it).")

    def __init__(self, **params):
        self._pending: dict[str, tuple] = {}
        super().__init__(**params)
        self.style: PlotStyle = plot_style(self.state.classroom)

    @param.depends("shown", watch=True)
    def _catch_up(self) -> None:
        """Back on screen: redraw what changed while another lesson was shown."""
        if self.shown:
            pending, self._pending = self._pending, {}
            for method, args, kwargs in pending.values():
                method(self, *args, **kwargs)


def draws(method):
    """For a lesson's drawing methods. On screen: run now, with the page's document held
    (``panel.io.hold``), so that changes to raw Bokeh figures and sources made in a browser
    event's callback are collected and sent as one message (Panel runs those callbacks
    without Bokeh's document lock). Off screen: run once, later, when the lesson is shown
    again, so a session that visited every lesson pays for one lesson per keystroke (what
    lets one server hold a classroom). Outside a server (tests) holding does nothing."""

    @functools.wraps(method)
    def wrapper(self: LessonView, *args, **kwargs):
        if not self.shown:
            self._pending[method.__name__] = (wrapper, args, kwargs)  # the latest call counts
            return None
        with pn.io.hold():
            return method(self, *args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class Lesson:
    name: str  # URL value: ?lesson=name; python -m export --lessons name
    title: str  # the navigation's and the snapshot's tab's
    chapter: str  # one of CHAPTERS
    view: type[LessonView]  # the dashboard home
    snapshot: Callable  # the snapshot home: snapshot(ctx) -> Bokeh layout
    about: str  # what you see, what to try (HTML, ours)
    options: type[Options] | None = None
    aliases: tuple[str, ...] = ()  # older names that still work in links and on the command line


LESSONS: dict[str, Lesson] = {}
ALIASES: dict[str, str] = {}


def register(
    name: str,
    title: str,
    chapter: str,
    view: type[LessonView],
    snapshot: Callable,
    *,
    about: str,
    options: type[Options] | None = None,
    aliases: tuple[str, ...] = (),
) -> Lesson:
    """Add a lesson; the course order is the chapters' order, then registration order."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; choose from {', '.join(CHAPTERS)}")
    if not (isinstance(view, type) and issubclass(view, LessonView)):
        raise TypeError(f"{view!r} is not a LessonView")
    if not callable(snapshot):
        raise TypeError(f"the snapshot form of {name!r} is not callable")
    if options is not None and not issubclass(options, Options):
        raise TypeError(f"the options of {name!r} are not an Options subclass")
    taken = set(LESSONS) | set(ALIASES)
    if clash := taken & {name, *aliases}:
        raise ValueError(f"lesson name {sorted(clash)[0]!r} is already registered")
    lesson = Lesson(name, title, chapter, view, snapshot, about, options, tuple(aliases))
    _check_options([*option_classes(), *([options] if options else [])])
    LESSONS[name] = lesson
    ALIASES.update(dict.fromkeys(aliases, name))
    _composed.cache_clear()
    return lesson


def unregister(name: str) -> None:
    """Remove a lesson (tests that register a throw-away one)."""
    LESSONS.pop(name, None)
    for alias in [a for a, n in ALIASES.items() if n == name]:
        del ALIASES[alias]
    _composed.cache_clear()


def resolve(name: str) -> str | None:
    """A lesson's name from its name or an alias (None if neither)."""
    return name if name in LESSONS else ALIASES.get(name)


def course() -> list[str]:
    """Every lesson in course order (chapter by chapter)."""
    return sorted(LESSONS, key=lambda n: CHAPTERS.index(LESSONS[n].chapter))


def chapters() -> dict[str, list[str]]:
    """Chapter -> its lessons in course order; empty chapters left out."""
    out: dict[str, list[str]] = {}
    for name in course():
        out.setdefault(LESSONS[name].chapter, []).append(name)
    return out


def neighbours(name: str) -> tuple[str | None, str | None]:
    """The previous and next lesson in the course (None at either end)."""
    order = course()
    if name not in order:
        return None, None
    i = order.index(name)
    return (order[i - 1] if i > 0 else None), (order[i + 1] if i + 1 < len(order) else None)


# -- options, composed --------------------------------------------------------------------------
def option_classes() -> list[type[Options]]:
    """The shared selection, then each lesson's options class (each once)."""
    out: list[type[Options]] = [Selection]
    for lesson in LESSONS.values():
        if lesson.options is not None and lesson.options not in out:
            out.append(lesson.options)
    return out


def _own_parameters(cls: type[Options]) -> list[str]:
    return [n for n in cls.param if n != "name" and n in cls.__dict__]


def _check_options(classes: list[type[Options]]) -> None:
    seen: dict[str, str] = {}
    keys: dict[str, str] = {}
    for cls in classes:
        own = _own_parameters(cls)
        if missing := [n for n in own if n not in cls.url]:
            raise ValueError(f"{cls.__name__} gives no URL key for {missing}")
        for n in own:
            if n in seen and seen[n] != cls.__name__:
                raise ValueError(f"option {n!r} is declared by {seen[n]} and {cls.__name__}")
            seen[n] = cls.__name__
            key = cls.url[n]
            if key in keys and keys[key] != n:
                raise ValueError(f"URL key {key!r} is used by {keys[key]!r} and {n!r}")
            keys[key] = n


def option_names() -> list[str]:
    """Every composed option's parameter name."""
    return [n for cls in option_classes() for n in _own_parameters(cls)]


def url_keys() -> dict[str, str]:
    """Option parameter -> URL key, for every composed option."""
    return {n: cls.url[n] for cls in option_classes() for n in _own_parameters(cls)}


@functools.cache
def _composed() -> type[Options]:
    # Parameterized classes compose by inheritance: one class with every lesson's parameters
    return type("LessonOptions", tuple(reversed(option_classes())), {"url": url_keys()})


def composed_options() -> type[Options]:
    """One Options class with every registered lesson's options (rebuilt when one is added)."""
    return _composed()
