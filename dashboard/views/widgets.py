"""Widgets shared by the lessons, each linked both ways to one state parameter."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import panel as pn
import param

CSS_DIR = Path(__file__).resolve().parent.parent.parent / "static"


@cache
def css(name: str = "anatomy.css") -> str:
    """One of the page's style sheets from the repository's static/ folder."""
    return (CSS_DIR / name).read_text(encoding="utf-8")


class OptionSelect(pn.widgets.Select):
    """A Select that ignores a value from the browser that is not one of its options.

    The page only offers the options; another value comes from a crafted websocket message
    (a file path for the model picker, say). Panel would refuse it too, but with a traceback
    in the server's log; here it is dropped and the server's value stands."""

    def _process_property_change(self, props: dict) -> dict:
        label = props.get("value")  # a label, or the value itself (grouped options)
        if label not in (None, "") and label not in self.labels and label not in self.values:
            props = {k: v for k, v in props.items() if k != "value"}
        return super()._process_property_change(props)


def text_pane(html: str = "", *classes: str, **params) -> pn.pane.HTML:
    """An HTML pane styled by static/anatomy.css. Panel renders each pane in its own shadow
    root, which page-level CSS cannot reach, so the style sheet travels with the pane.
    Callers escape any user text (``html.escape``) before it reaches ``html``."""
    params.setdefault("margin", (5, 10))
    return pn.pane.HTML(html, css_classes=list(classes), stylesheets=[css()], **params)


def two_way(widget: pn.widgets.Widget, state: param.Parameterized, name: str, prop: str = "value"):
    """Keep ``widget.<prop>`` and ``state.<name>`` equal, whichever changes."""

    def to_state(event) -> None:
        if getattr(state, name) != event.new:
            setattr(state, name, event.new)

    def to_widget(event) -> None:
        # A choice the widget does not offer (a link's layer=99 on its way to being kept in
        # range) would leave no button lit; the value in range follows at once.
        if prop == "value" and hasattr(widget, "values") and event.new not in widget.values:
            return
        if getattr(widget, prop) != event.new:
            setattr(widget, prop, event.new)

    widget.param.watch(to_state, prop)
    state.param.watch(to_widget, name)
    return widget


def choice_group(
    state: param.Parameterized, name: str, options: dict, **params
) -> pn.widgets.RadioButtonGroup:
    """Outlined buttons choosing ``state.<name>`` among ``options`` (label -> value), linked
    both ways."""
    group = pn.widgets.RadioButtonGroup(
        options=options,
        value=getattr(state, name),
        color="primary",
        variant="outline",
        **params,
    )
    return two_way(group, state, name)


def labelled(label: str, widget: pn.viewable.Viewable, css_class: str = "control") -> pn.Column:
    """A widget with a caption above it (button groups have no title of their own)."""
    return pn.Column(
        text_pane(label, "control-label", margin=(0, 5)),
        widget,
        css_classes=[css_class],
        margin=(0, 10, 5, 0),
    )


def index_group(
    state: param.Parameterized, name: str, count_key: str
) -> pn.widgets.RadioButtonGroup:
    """Buttons 0..n-1 for ``state.<name>`` (a layer or head); n follows the model's config."""

    def options() -> dict[str, int]:
        return {str(i): i for i in range(int(state.config.get(count_key, 1)))}

    group = choice_group(state, name, options())

    def refresh(_event=None) -> None:
        group.param.update(options=options(), value=getattr(state, name))

    state.param.watch(refresh, "model")
    return group


def head_controls(state: param.Parameterized) -> pn.Row:
    """Layer and head pickers."""
    return pn.Row(
        labelled("Layer", index_group(state, "layer", "n_layer")),
        labelled("Head", index_group(state, "head", "n_head")),
        margin=0,
    )
