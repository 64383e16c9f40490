"""The lesson registry: how lessons plug into the shell.

A lesson is one :class:`LessonView` subclass (a ``pn.viewable.Viewer`` that reads and writes
the shared :class:`~dashboard.state.AnatomyState`) and one registration line in
``dashboard/views/__init__.py``::

    register("sampling", "Temperature & sampling", SamplingLesson)

The shell then lists it in the navigation, lets ↑/↓ reach it, and accepts ``?lesson=sampling``
in links. Views are created lazily, once per browser session.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import panel as pn
import param

from dashboard.state import AnatomyState
from dashboard.views.plots import PlotStyle, plot_style


class LessonView(pn.viewable.Viewer):
    """Base class of the lessons: holds the session's state and its plot style.

    Subclasses build their widgets and plots in ``__init__``, update them from watchers on
    ``state`` and return their layout from ``__panel__``. They only run when the state has a
    forward pass: the shell shows the prompt or error message otherwise.
    """

    state = param.ClassSelector(class_=AnatomyState, doc="The session's linked state.")
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


def when_shown(method):
    """For a lesson's drawing watchers: run now if the lesson is on screen, else once, later,
    when it is shown again. A session that visited every lesson then pays for one lesson per
    keystroke, not for all of them (what lets one server hold a classroom)."""

    @functools.wraps(method)
    def wrapper(self: LessonView, *args, **kwargs):
        if self.shown:
            return method(self, *args, **kwargs)
        self._pending[method.__name__] = (method, args, kwargs)  # only the latest call counts
        return None

    return wrapper


@dataclass(frozen=True)
class Lesson:
    name: str  # URL value: ?lesson=name
    title: str  # shown in the navigation
    view: type[LessonView]


LESSONS: dict[str, Lesson] = {}


def register(name: str, title: str, view: type[LessonView]) -> Lesson:
    """Add a lesson to the navigation (in registration order)."""
    if not issubclass(view, LessonView):
        raise TypeError(f"{view!r} is not a LessonView")
    LESSONS[name] = lesson = Lesson(name, title, view)
    return lesson
