"""Bokeh building blocks shared by the lessons: matrices, the all-heads grid, bar charts.

Each plot is created once per browser session and then updated in place (new data in its
``ColumnDataSource``), so an edit sends a small patch to the browser instead of a new plot.
Every matrix is one ``image`` glyph, whatever its size (and one more, of bytes, painting the
keys its mask removed). Token text reaches the page only as canvas tick labels and through
hover formatters that return it as text, never as HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from bokeh.core.properties import without_property_validation
from bokeh.events import DoubleTap, Tap
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJSHover,
    FixedTicker,
    HoverTool,
    Legend,
    LinearColorMapper,
    NoOverlap,
    Range1d,
)
from bokeh.palettes import RdBu11, Viridis256, interp_palette
from bokeh.plotting import figure

SCORE_PALETTE = tuple(interp_palette(RdBu11, 256))  # blue negative, white 0, red positive
PROB_PALETTE = Viridis256
CLEAR = "rgba(0, 0, 0, 0)"  # paints nothing
# Up to this many tokens a mask-lesson matrix labels every row and column (its story names
# rows by number), in a smaller font and with labels cut to SHORT_LABEL characters where the
# style's do not fit; the hover always has the whole token.
LABEL_ALL = 32
SHORT_LABEL = 8


@dataclass(frozen=True)
class PlotStyle:
    """Sizes and colours of the plots in the normal and the classroom theme."""

    classroom: bool
    tick: str  # tick label font size
    label: str  # axis label font size
    title: str  # plot title font size
    matrix: int  # side of the main heatmap in pixels
    small: int  # side of each mask-lesson matrix
    grid: int  # side of the all-heads grid
    bars: tuple[int, int]  # width, height of the sampling lesson's bar chart
    detail: tuple[int, int]  # width, height of the attention lesson's one-query bar chart
    colorbar: int  # room a colour bar takes on the right of a matrix
    max_label: int  # characters of a token shown on an axis (hover shows all of it)
    text: str
    background: str
    muted: str
    masked: str  # cells removed by the mask
    nan: str  # NaN: a row with nothing to attend to
    accent: str  # the selection outline
    accent_name: str  # the accent's colour in words, for the texts that point at it

    @property
    def px_per_label(self) -> int:
        """Room a tick label needs; more tokens than fit are thinned out (hover has all)."""
        return int(self.tick.removesuffix("px")) + 4

    @property
    def y_axis_room(self) -> int:
        """About the width a y axis of token labels takes (a monospace-ish estimate)."""
        tick, label = int(self.tick.removesuffix("px")), int(self.label.removesuffix("px"))
        return int(0.6 * tick * self.max_label) + label + 16


NORMAL = PlotStyle(
    classroom=False,
    tick="11px",
    label="13px",
    title="14px",
    matrix=520,
    small=330,
    grid=400,
    bars=(520, 260),
    detail=(520, 260),
    colorbar=90,
    max_label=24,
    text="#1f2328",
    background="#ffffff",
    muted="#57606a",
    masked="#e6e6e6",
    nan="#ff4fa3",
    accent="#ff7f0e",
    accent_name="orange",
)

# At least twice every size of NORMAL: readable from the back of a room, on a 1920x1080 projector.
CLASSROOM = PlotStyle(
    classroom=True,
    tick="24px",
    label="28px",
    title="30px",
    # sized so that a lesson fits a 1920x1080 projector beside the 460 px sidebar (a browser
    # test measures it); the mask lesson's four matrices share one y axis to fit in a row
    matrix=640,
    small=440,
    grid=560,
    bars=(760, 420),
    detail=(500, 400),
    colorbar=110,
    max_label=12,
    text="#ffffff",
    background="#000000",
    muted="#c8c8c8",
    masked="#5a5a5a",
    nan="#ff4fa3",
    accent="#ffd400",
    accent_name="yellow",
)


def plot_style(classroom: bool) -> PlotStyle:
    return CLASSROOM if classroom else NORMAL


def tick_label(label: str, style: PlotStyle, chars: int | None = None) -> str:
    """``label`` cut to the style's axis length (or ``chars``): long tokens would push the plot
    off screen."""
    chars = style.max_label if chars is None else chars
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _px(size: str) -> int:
    return int(size.removesuffix("px"))


# How tick labels take room, for fitting them (MatrixPlot._frame_side): a label's box is about
# LINE × its font size tall, a character about CHAR × wide (measured on system-ui and
# Helvetica), an axis's ticks and the gaps beside its labels TICK_ROOM px, and an axis title
# may be drawn AXIS_TITLE times the style's size (Panel's theme writes 1.25em over the 13px
# default). Labels whose boxes overlap by up to LABEL_OVERLAP px are all drawn (a taller font's
# line spacing, not its ink); by more (a phone's narrower figure), some are left out.
LINE = 1.15
CHAR = 0.58
LABEL_OVERLAP = 2
TICK_ROOM = 18
AXIS_TITLE = 1.3
MIN_FONT = 5


def query_title(label: str, style: PlotStyle) -> str:
    """The title of a query's attention bars (a projector's large font has room for less)."""
    short = tick_label(label, style)
    return f"Query {short}" if style.classroom else f"How query {short} attends"


def next_token_title(label: str, style: PlotStyle, temperature: str = "{T}") -> str:
    """The title of the next-token chart after the token ``label`` (a snapshot fills in
    ``{T}`` in the browser as the slider moves)."""
    short = tick_label(label, style)
    if style.classroom:
        return f"Next after {short} (T = {temperature})"
    return f"After {short}  →  next token (T = {temperature})"


def styled_figure(style: PlotStyle, width: int, height: int, title: str, **kw) -> figure:
    """A figure of the theme's fonts and colours, ``width`` × ``height`` where there is room and
    scaled down to the width there is (a phone), keeping its shape."""
    fig = figure(
        width=width,
        height=height,
        max_width=width,
        aspect_ratio=width / height,
        title=title,
        tools="",
        toolbar_location=None,
        sizing_mode="scale_width",
        background_fill_color=style.background,
        border_fill_color=style.background,
        outline_line_color=None,
        **kw,
    )
    fig.title.text_font_size = style.title
    fig.title.text_color = style.text
    for axis in (*fig.xaxis, *fig.yaxis):
        style_axis(axis, style)
    fig.grid.visible = False
    return fig


def title_over_axis(fig) -> None:
    """End the title at the frame's right edge, so that a long title may reach left over a
    wide axis of labels: a figure scaled down to a phone's width keeps all of it."""
    fig.title.align = "right"


def style_axis(axis, style: PlotStyle) -> None:
    """Fonts and colours of one axis, for figures and for axes added later (e.g. a right axis)."""
    axis.major_label_text_font_size = style.tick
    axis.axis_label_text_font_size = style.label
    axis.axis_label_text_font_style = "normal"
    axis.major_label_text_color = style.text
    axis.axis_label_text_color = style.text
    axis.axis_line_color = style.muted
    axis.major_tick_line_color = style.muted
    axis.minor_tick_line_color = None


def image_with_outline(
    fig, source, mapper, selection, style: PlotStyle, line_width: int, removed=None
):
    """One image glyph for a whole matrix, and an outline rectangle marking the selection.
    ``removed`` (a source like ``source`` holding 1 where the mask removed a cell, else 0) is
    drawn over it in the masked colour: a probability says nothing about the mask (a tiny one
    and a masked one may both be 0.0), so the mask is drawn from the mask itself."""
    glyph = fig.image(
        image="image", x="x", y="y", dw="dw", dh="dh", source=source, color_mapper=mapper
    )
    if removed is not None:
        fig.image(
            image="image",
            x="x",
            y="y",
            dw="dw",
            dh="dh",
            source=removed,
            color_mapper=LinearColorMapper(
                palette=[style.masked], low=0.5, high=1, low_color=CLEAR, nan_color=CLEAR
            ),
        )
    fig.rect(
        x="x",
        y="y",
        width="w",
        height="h",
        source=selection,
        fill_alpha=0,
        line_color=style.accent,
        line_width=line_width,
    )
    return glyph


def colour_bar(fig, mapper, style: PlotStyle) -> ColorBar:
    """The theme's colour bar for ``mapper``, on the right of ``fig``."""
    bar = ColorBar(
        color_mapper=mapper,
        major_label_text_font_size=style.tick,
        major_label_text_color=style.text,
        background_fill_color=style.background,
        width=28 if style.classroom else 14,
        padding=4,
    )
    fig.add_layout(bar, "right")
    return bar


def _label_hover(labels: ColumnDataSource) -> CustomJSHover:
    """Formats a coordinate as the token label at that position (returned as plain text)."""
    return CustomJSHover(
        args=dict(labels=labels),
        code="""
        const L = labels.data["label"];
        const i = Math.round(value);
        return (i >= 0 && i < L.length) ? L[i] : "";
        """,
    )


VALUE_HOVER_JS = """
if (value == null || Number.isNaN(value)) return "NaN (no key to attend to)";
if (value === -Infinity) return "−∞ (masked)";
if (value <= -1e8) return value.toExponential(0) + " (masked)";
return value.toFixed(4);
"""


# Plot updates set values our own code built (lists of numbers and strings, arrays): Bokeh's
# per-item property validation of them was half the cost of a keystroke.
fast = without_property_validation


def set_ticks(axis, ticks: Sequence[float]) -> None:
    """Move an axis's ticks in place. A new FixedTicker per update would be a new model in the
    document, and Bokeh then walks every model of the session again (~60 ms a keystroke)."""
    if isinstance(axis.ticker, FixedTicker):
        axis.ticker.ticks = list(ticks)
    else:
        axis.ticker = FixedTicker(ticks=list(ticks))


def removed_cells(probs: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """uint8, 1 where the mask removed a key and it got no weight: the cells drawn in the masked
    colour over a probability matrix. Every allowed key keeps its colour however tiny its
    probability; so does a removed key that still got weight (a -1e9 fill in a row with no key
    left spreads it uniformly) or NaN (a -inf fill there: 0/0)."""
    probs = np.asarray(probs)
    return (~np.asarray(allowed, dtype=bool) & (probs == 0)).astype(np.uint8)


def font_px(px: int) -> str:
    """A font size Bokeh keeps: written with a decimal, so that it is recorded even where it
    equals the property's default ("11px"), which Panel's theme would replace (by 1.025em)."""
    return f"{px:.1f}px"


def thinned_ticks(n: int, pixels: int, px_per_label: int) -> list[int]:
    """Tick positions for ``n`` tokens on ``pixels``: all of them when they fit, else every k-th."""
    if n <= 0:
        return []
    step = max(1, int(np.ceil(n * px_per_label / max(pixels, 1))))
    return list(range(0, n, step))


def score_range(matrix: np.ndarray, allowed: np.ndarray | None = None) -> float:
    """Largest |score| among the finite cells the mask keeps: the ± range of a diverging scale
    (so a -1e9 fill does not wash out the real scores). 1.0 when there is none."""
    keep = np.isfinite(matrix) if allowed is None else (allowed & np.isfinite(matrix))
    top = float(np.abs(matrix[keep]).max()) if keep.any() else 1.0
    return top or 1.0


def _clean(values: np.ndarray) -> np.ndarray:
    """float32 for the wire; -inf and NaN are kept (the colour mapper and hover explain them)."""
    return np.ascontiguousarray(values, dtype=np.float32)


class MatrixPlot:
    """A (query × key) matrix as one image glyph: token labels on both axes, hover values, a
    colour bar, and an outline on the selected query row and (query, key) cell.

    ``kind`` picks the colours: ``probs`` (0..1; the keys the mask removed grey), ``scores``
    (diverging around 0, masked cells grey), ``mask`` (allowed / masked). ``size`` is the
    figure's height and, with the colour bar's room added, its width. Matrices in a row can
    share the first one's y axis (``y_axis=False`` on the others) and leave out their colour
    bar (``colorbar=False``). ``label_all``: up to LABEL_ALL tokens, label every row and column.
    """

    def __init__(
        self,
        style: PlotStyle,
        size: int,
        title: str = "",
        kind: str = "probs",
        name: str = "",
        y_axis: bool = True,
        colorbar: bool | None = None,
        label_all: bool = False,
    ):
        self.style = style
        self.size = size
        self.kind = kind
        self.y_axis = y_axis
        self.label_all = label_all
        self.label_peers = [self]  # plots shown side by side: their labels share one font
        self.score_range: float | None = None  # fixed ± range of a scores plot, else its own
        # names let tests and benchmarks find the models in the page (Bokeh.documents)
        self.labels = ColumnDataSource(data=dict(label=[]), name=f"{name}-labels" if name else None)
        self.source = ColumnDataSource(
            data=dict(image=[np.zeros((1, 1), np.float32)], x=[-0.5], y=[-0.5], dw=[1], dh=[1]),
            name=f"{name}-image" if name else None,
        )
        # 1 where the mask removed a key: drawn grey over the probabilities (removed_cells)
        self.removed = ColumnDataSource(
            data=dict(image=[np.zeros((1, 1), np.uint8)], x=[-0.5], y=[-0.5], dw=[1], dh=[1]),
            name=f"{name}-removed" if name else None,
        )
        self.selection = ColumnDataSource(data=dict(x=[], y=[], w=[], h=[]))
        # low_color: the -inf and -1e9 of masked scores (below any score's range)
        self.mapper = LinearColorMapper(
            palette=PROB_PALETTE, low=0, high=1, nan_color=style.nan, low_color=style.masked
        )
        if colorbar is None:
            colorbar = kind != "mask"
        # the colour bar's room is added on the right, so the matrix itself stays square
        bar = style.colorbar if colorbar else 0
        self.bar = bar
        fig = styled_figure(
            style,
            size + bar if y_axis else size + bar - style.y_axis_room,
            size,
            title,
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(0.5, -0.5),  # flipped: query 0 at the top
            name=name or None,
        )
        fig.xaxis.axis_label = "key (attended to)"
        fig.yaxis.axis_label = "query (attending)"
        fig.xaxis.major_label_orientation = np.pi / 2
        if not y_axis:
            fig.yaxis.visible = False
            fig.min_border_left = 5
        else:
            title_over_axis(fig)
        for axis in (*fig.xaxis, *fig.yaxis):
            # labels that would overlap are left out (a phone's narrower figure), not piled up
            axis.major_label_policy = NoOverlap(min_distance=-LABEL_OVERLAP)
        self.glyph = image_with_outline(
            fig,
            self.source,
            self.mapper,
            self.selection,
            style,
            4 if style.classroom else 2,
            removed=self.removed,
        )
        label_fmt = _label_hover(self.labels)
        hover = HoverTool(
            renderers=[self.glyph],
            tooltips=[("query", "$y{custom}"), ("key", "$x{custom}"), ("value", "@image{custom}")],
            formatters={
                "$y": label_fmt,
                "$x": label_fmt,
                "@image": CustomJSHover(code=VALUE_HOVER_JS),
            },
        )
        fig.add_tools(hover)
        if colorbar:
            self.colorbar = colour_bar(fig, self.mapper, style)
        self.figure = fig

    def on_tap(self, callback: Callable[[int, int], None]) -> None:
        """Call ``callback(query, key)`` when a cell is clicked."""

        def _tap(event: Tap) -> None:
            n = len(self.labels.data["label"])
            if event.x is None or event.y is None or n == 0:
                return
            i, j = int(round(event.y)), int(round(event.x))
            if 0 <= i < n and 0 <= j < n:
                callback(i, j)

        self.figure.on_event(Tap, _tap)

    @fast
    def update(
        self,
        matrix: np.ndarray,
        labels: Sequence[str],
        selected: tuple[int, int] | None = None,
        allowed: np.ndarray | None = None,
        title: str | None = None,
    ) -> None:
        """Show ``matrix`` (T × T). ``allowed`` marks the cells the mask keeps: their range sets
        the colour scale of scores, so a -1e9 fill does not wash out the real ones, and over
        probabilities the keys it removed are drawn in the masked colour (removed_cells)."""
        matrix = np.asarray(matrix, dtype=np.float64)
        n = matrix.shape[0]
        removed = np.zeros((n, n), np.uint8)
        if self.kind == "probs":
            # every probability, 0.0 included, takes the palette: the mask is drawn by itself
            self.mapper.update(palette=PROB_PALETTE, low=0, high=1.0)
            if allowed is not None:
                removed = removed_cells(matrix, allowed)
        elif self.kind == "mask":
            self.mapper.update(palette=[self.style.masked, self.style.accent], low=0, high=1)
        else:
            top = self.score_range or score_range(matrix, allowed)
            self.mapper.update(palette=SCORE_PALETTE, low=-top, high=top)
        ticks, overrides, font = self._tick_labels(labels)
        fig = self.figure
        for axis in (*fig.xaxis, *fig.yaxis):
            set_ticks(axis, ticks)
            axis.major_label_overrides = overrides
            axis.major_label_text_font_size = font_px(font)
        fig.x_range.update(start=-0.5, end=n - 0.5)
        fig.y_range.update(start=n - 0.5, end=-0.5)
        if title is not None:
            fig.title.text = title
        self.labels.data = dict(label=list(labels))
        self.source.data = dict(image=[_clean(matrix)], x=[-0.5], y=[-0.5], dw=[n], dh=[n])
        self.removed.data = dict(image=[removed], x=[-0.5], y=[-0.5], dw=[n], dh=[n])
        self.select(selected)

    def _tick_labels(self, labels: Sequence[str]) -> tuple[list[int], dict[int, str], int]:
        """The ticks of both axes, their labels and their font size in pixels.

        A ``label_all`` plot of up to LABEL_ALL tokens labels every row and column: in the
        style's font where that fits, else with labels cut to SHORT_LABEL characters and in
        the largest font at which they all fit the matrix's side, one label per row. Any other
        plot labels every k-th token, as many as fit in the style's font. The font is the
        smallest that any of ``label_peers`` needs, so plots side by side match."""
        n, tick = len(labels), _px(self.style.tick)
        if self.label_all and n <= LABEL_ALL:
            for chars in (self.style.max_label, SHORT_LABEL):
                cut = [tick_label(label, self.style, chars) for label in labels]
                longest = max(map(len, cut), default=0)
                font = min(p._fitting_font(n, longest) for p in self.label_peers)
                if font == tick:
                    break
            return list(range(n)), dict(enumerate(cut)), font
        # about what the title and the x axis's labels leave of the figure's height
        frame = self.size - (240 if self.style.classroom else 120)
        ticks = thinned_ticks(n, frame, self.style.px_per_label)
        return ticks, {i: tick_label(labels[i], self.style) for i in ticks}, tick

    def _fitting_font(self, n: int, chars: int) -> int:
        """The largest font (px, at most the style's) at which ``n`` labels of ``chars``
        characters fit along both sides of the matrix, one per row (an estimate of Bokeh's
        layout, on the generous side: a browser test measures the labels it paints)."""
        for font in range(_px(self.style.tick), MIN_FONT, -1):
            if n * (LINE * font + 1) <= self._frame_side(font, chars):  # + 1: whole pixels
                return font
        return MIN_FONT

    def _frame_side(self, font: int, chars: int) -> float:
        """About the shorter side of the matrix's frame with tick labels of ``chars``
        characters in a ``font`` px font: the figure less its title, axes and colour bar."""
        s, fig = self.style, self.figure
        labels = TICK_ROOM + CHAR * font * chars  # an axis's ticks and labels
        title = LINE * _px(s.title) + 10
        x_title = LINE * AXIS_TITLE * _px(s.label) + 10 if fig.xaxis[0].axis_label else 0
        y_title = LINE * AXIS_TITLE * _px(s.label) + 10
        height = fig.height - title - labels - x_title
        left = labels + y_title if self.y_axis else 5
        width = fig.width - left - (self.bar or 5)
        return min(height, width)

    @fast
    def select(self, selected: tuple[int, int] | None) -> None:
        """Outline the selected query's row and the selected (query, key) cell."""
        n = len(self.labels.data["label"])
        if selected is None or n == 0:
            self.selection.data = dict(x=[], y=[], w=[], h=[])
            return
        i, j = selected
        self.selection.data = dict(x=[(n - 1) / 2, j], y=[i, i], w=[n, 1], h=[1, 1])


class HeadGrid:
    """Every layer × head as small multiples, drawn as ONE image glyph: the T × T matrices are
    tiled into one canvas with NaN gaps (and the keys the mask removed drawn over it, tiled
    the same way). A click selects the tile's layer and head."""

    def __init__(self, style: PlotStyle, size: int, title: str = "All heads"):
        self.style = style
        self.size = size
        self.shape = (1, 1, 1)  # layers, heads, tokens
        self.meta = ColumnDataSource(data=dict(T=[1], gap=[1]), name="grid-meta")
        self.labels = ColumnDataSource(data=dict(label=[]))
        self.source = ColumnDataSource(
            data=dict(image=[np.zeros((1, 1), np.float32)], x=[-0.5], y=[-0.5], dw=[1], dh=[1])
        )
        self.removed = ColumnDataSource(
            data=dict(image=[np.zeros((1, 1), np.uint8)], x=[-0.5], y=[-0.5], dw=[1], dh=[1]),
            name="grid-removed",
        )
        self.selection = ColumnDataSource(data=dict(x=[], y=[], w=[], h=[]))
        # every probability, 0.0 included, in the palette; NaN: the gaps between the tiles
        self.mapper = LinearColorMapper(
            palette=PROB_PALETTE, low=0, high=1, nan_color=style.background
        )
        fig = styled_figure(
            style, size, size, title, x_range=Range1d(0, 1), y_range=Range1d(1, 0), name="grid"
        )
        fig.xaxis.axis_label = "head"
        fig.yaxis.axis_label = "layer"
        fig.xaxis.major_tick_line_color = None
        fig.yaxis.major_tick_line_color = None
        self.glyph = image_with_outline(
            fig,
            self.source,
            self.mapper,
            self.selection,
            style,
            5 if style.classroom else 3,
            removed=self.removed,
        )
        tile = """
        const T = meta.data["T"][0], g = meta.data["gap"][0];
        const v = Math.round(value);
        const t = Math.floor(v / (T + g)), r = v - t * (T + g);
        """
        tile_fmt = CustomJSHover(args=dict(meta=self.meta), code=tile + "return r < T ? t : '';")
        token_fmt = CustomJSHover(
            args=dict(meta=self.meta, labels=self.labels),
            code=tile + "return r < T ? labels.data['label'][r] : '';",
        )
        fig.add_tools(
            HoverTool(
                renderers=[self.glyph],
                tooltips=[
                    ("layer", "$y{custom}"),
                    ("head", "$x{custom}"),
                    ("probability", "@image{custom}"),
                ],
                formatters={
                    "$y": tile_fmt,
                    "$x": tile_fmt,
                    "@image": CustomJSHover(code=VALUE_HOVER_JS),
                },
            ),
            HoverTool(
                renderers=[self.glyph],
                tooltips=[("query", "$y{custom}"), ("key", "$x{custom}")],
                formatters={"$y": token_fmt, "$x": token_fmt},
                description="tokens",
            ),
        )
        self.figure = fig

    def tile_at(self, x: float, y: float) -> tuple[int, int] | None:
        """(layer, head) of the tile under data coordinates (x, y), or None in a gap."""
        n_layer, n_head, t = self.shape
        gap = self.meta.data["gap"][0]
        col, row = int(np.floor((x + 0.5) / (t + gap))), int(np.floor((y + 0.5) / (t + gap)))
        inside = (x + 0.5) - col * (t + gap) < t + gap / 2 and (y + 0.5) - row * (t + gap) < (
            t + gap / 2
        )
        if 0 <= row < n_layer and 0 <= col < n_head and inside:
            return row, col
        return None

    def on_tap(self, callback: Callable[[int, int], None]) -> None:
        """Call ``callback(layer, head)`` when a tile is clicked."""

        def _tap(event: Tap) -> None:
            hit = None if event.x is None or event.y is None else self.tile_at(event.x, event.y)
            if hit is not None:
                callback(*hit)

        self.figure.on_event(Tap, _tap)

    @fast
    def update(
        self,
        probs: np.ndarray,
        labels: Sequence[str],
        layer: int,
        head: int,
        tiles: bool = True,
        allowed: np.ndarray | None = None,
    ) -> None:
        """Show ``probs`` (n_layer, n_head, T, T) with (layer, head) outlined; ``allowed``
        (T × T) is the mask the model used (its removed keys are drawn grey). ``tiles=False``
        sets up the axes only: a snapshot tiles the canvas in the page from the probabilities
        it embeds anyway (``draw_grid`` in js/attention.js), instead of embedding them twice."""
        n_layer, n_head, t, _ = probs.shape
        gap = max(1, int(np.ceil(t / 6)))
        size = t + gap
        canvas = np.full((n_layer * size - gap, n_head * size - gap), np.nan, np.float32)
        gone = np.zeros(canvas.shape, np.uint8)
        for lay in range(n_layer if tiles else 0):
            for h in range(n_head):
                at = np.s_[lay * size : lay * size + t, h * size : h * size + t]
                canvas[at] = probs[lay, h]
                if allowed is not None:
                    gone[at] = removed_cells(probs[lay, h], allowed)
        self.shape = (n_layer, n_head, t)
        self.meta.data = dict(T=[t], gap=[gap])
        self.labels.data = dict(label=list(labels))
        height, width = canvas.shape
        if not tiles:
            canvas = np.full((1, 1), np.nan, np.float32)
            gone = np.zeros((1, 1), np.uint8)
        fig = self.figure
        fig.x_range.update(start=-0.5, end=width - 0.5)
        fig.y_range.update(start=height - 0.5, end=-0.5)
        for axis in fig.xaxis:
            set_ticks(axis, [h * size + (t - 1) / 2 for h in range(n_head)])
        for axis in fig.yaxis:
            set_ticks(axis, [lay * size + (t - 1) / 2 for lay in range(n_layer)])
        fig.xaxis.major_label_overrides = {h * size + (t - 1) / 2: str(h) for h in range(n_head)}
        fig.yaxis.major_label_overrides = {
            lay * size + (t - 1) / 2: str(lay) for lay in range(n_layer)
        }
        self.source.data = dict(image=[canvas], x=[-0.5], y=[-0.5], dw=[width], dh=[height])
        self.removed.data = dict(image=[gone], x=[-0.5], y=[-0.5], dw=[width], dh=[height])
        self.select(layer, head)

    @fast
    def select(self, layer: int, head: int) -> None:
        _, _, t = self.shape
        size = t + self.meta.data["gap"][0]
        c = (t - 1) / 2
        self.selection.data = dict(
            x=[head * size + c], y=[layer * size + c], w=[t + 0.6], h=[t + 0.6]
        )


class BarPlot:
    """One query's attention over the keys: a bar per key, the selected key highlighted."""

    def __init__(self, style: PlotStyle, title: str = ""):
        self.style = style
        width, height = style.detail
        self.source = ColumnDataSource(
            data=dict(x=[], top=[], label=[], color=[]), name="detail-bars"
        )
        fig = styled_figure(
            style,
            width,
            height,
            title,
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(0, 1.05),
            name="detail-bars-figure",
        )
        fig.yaxis.axis_label = "probability"
        fig.xaxis.major_label_orientation = np.pi / 2
        fig.ygrid.visible = True
        fig.ygrid.grid_line_color = style.muted
        fig.ygrid.grid_line_alpha = 0.3
        bars = fig.vbar(x="x", top="top", width=0.8, color="color", source=self.source)
        fig.add_tools(
            HoverTool(
                renderers=[bars], tooltips=[("key", "@label"), ("probability", "@top{0.0000}")]
            )
        )
        self.figure = fig

    @fast
    def update(self, row: np.ndarray, labels: Sequence[str], key: int, title: str) -> None:
        n = len(row)
        row = np.nan_to_num(np.asarray(row, dtype=np.float64), nan=0.0)
        ticks = thinned_ticks(n, self.style.detail[0] - 80, self.style.px_per_label)
        colors = [self.style.accent if j == key else "#4c78a8" for j in range(n)]
        if self.style.classroom:
            colors = [self.style.accent if j == key else "#6fa8dc" for j in range(n)]
        for axis in self.figure.xaxis:
            set_ticks(axis, ticks)
        self.figure.xaxis.major_label_overrides = {
            i: tick_label(labels[i], self.style) for i in ticks
        }
        self.figure.x_range.update(start=-0.5, end=n - 0.5)
        self.figure.title.text = title
        self.source.data = dict(
            x=list(range(n)), top=row.tolist(), label=list(labels), color=colors
        )


class RowMatrix:
    """Rows of vectors as one image glyph: a row label per row (tokens, or the names of the
    steps), the vector's dimensions across, a diverging colour scale around 0 (± the largest
    |value| shown), outlines on the selected rows, and vertical rules (``splits``, e.g. where
    one head's columns end and the next one's begin)."""

    def __init__(
        self, style: PlotStyle, width: int, height: int, title: str = "", name: str = "",
        x_label: str = "dimension",
    ):  # fmt: skip
        self.style = style
        self.width, self.height = width, height
        self.labels = ColumnDataSource(data=dict(label=[]), name=f"{name}-labels" if name else None)
        self.source = ColumnDataSource(
            data=dict(image=[np.zeros((1, 1), np.float32)], x=[-0.5], y=[-0.5], dw=[1], dh=[1]),
            name=f"{name}-image" if name else None,
        )
        self.selection = ColumnDataSource(data=dict(x=[], y=[], w=[], h=[]))
        self.splits = ColumnDataSource(data=dict(x=[], y0=[], y1=[]))
        self.mapper = LinearColorMapper(palette=SCORE_PALETTE, low=-1, high=1, nan_color=style.nan)
        fig = styled_figure(
            style,
            width,
            height,
            title,
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(0.5, -0.5),  # the first row at the top
            name=name or None,
        )
        fig.xaxis.axis_label = x_label
        title_over_axis(fig)
        self.glyph = image_with_outline(
            fig, self.source, self.mapper, self.selection, style, 4 if style.classroom else 2
        )
        fig.segment(
            x0="x", x1="x", y0="y0", y1="y1", source=self.splits,
            line_color=style.text, line_width=2 if style.classroom else 1,
        )  # fmt: skip
        fig.yaxis.major_label_policy = NoOverlap(min_distance=-LABEL_OVERLAP)
        fig.add_tools(
            HoverTool(
                renderers=[self.glyph],
                tooltips=[
                    ("row", "$y{custom}"),
                    ("dimension", "$x{0}"),
                    ("value", "@image{0.0000}"),
                ],
                formatters={"$y": _label_hover(self.labels)},
            )
        )
        colour_bar(fig, self.mapper, style)
        self.figure = fig

    def on_tap(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(row)`` when a row is clicked."""

        def _tap(event: Tap) -> None:
            n = len(self.labels.data["label"])
            if event.y is not None and 0 <= int(round(event.y)) < n:
                callback(int(round(event.y)))

        self.figure.on_event(Tap, _tap)
        self.figure.on_event(DoubleTap, _tap)  # two quick clicks on two rows are two picks

    @fast
    def update(
        self,
        matrix: np.ndarray,
        labels: Sequence[str],
        selected: Sequence[int] = (),
        title: str | None = None,
        splits: Sequence[float] = (),
    ) -> None:
        """Show ``matrix`` (rows × dimensions) with a label per row."""
        matrix = np.asarray(matrix, dtype=np.float64)
        rows, cols = matrix.shape
        top = float(np.abs(matrix[np.isfinite(matrix)]).max()) if np.isfinite(matrix).any() else 1
        self.mapper.update(low=-(top or 1.0), high=top or 1.0)
        ticks = thinned_ticks(rows, self.height - (200 if self.style.classroom else 100),
                              self.style.px_per_label)  # fmt: skip
        set_ticks(self.figure.yaxis[0], ticks)
        self.figure.yaxis.major_label_overrides = {
            i: tick_label(labels[i], self.style) for i in ticks
        }
        set_ticks(self.figure.xaxis[0], [c for c in (0, cols // 2, cols - 1) if c < cols])
        self.figure.x_range.update(start=-0.5, end=cols - 0.5)
        self.figure.y_range.update(start=rows - 0.5, end=-0.5)
        if title is not None:
            self.figure.title.text = title
        self.labels.data = dict(label=list(labels))
        self.source.data = dict(image=[_clean(matrix)], x=[-0.5], y=[-0.5], dw=[cols], dh=[rows])
        self.splits.data = dict(
            x=list(splits), y0=[-0.5] * len(splits), y1=[rows - 0.5] * len(splits)
        )
        self.select(selected, cols)

    @fast
    def select(self, rows: Sequence[int], cols: int | None = None) -> None:
        """Outline the given rows."""
        if cols is None:
            cols = int(self.source.data["dw"][0])
        self.selection.data = dict(
            x=[(cols - 1) / 2] * len(rows), y=list(rows), w=[cols] * len(rows), h=[1] * len(rows)
        )


class SignedBars:
    """Signed values as bars around 0 (positive and negative in two colours), e.g. the terms
    of one dot product; the y range fits the values."""

    def __init__(self, style: PlotStyle, width: int, height: int, title: str = "", name: str = "",
                 x_label: str = "", y_label: str = ""):  # fmt: skip
        self.style = style
        self.source = ColumnDataSource(
            data=dict(x=[], top=[], color=[]), name=f"{name}-bars" if name else None
        )
        fig = styled_figure(
            style, width, height, title, x_range=Range1d(-0.5, 0.5), y_range=Range1d(-1, 1),
            name=name or None,
        )  # fmt: skip
        fig.xaxis.axis_label = x_label
        fig.yaxis.axis_label = y_label
        fig.ygrid.visible = True
        fig.ygrid.grid_line_color = style.muted
        fig.ygrid.grid_line_alpha = 0.3
        bars = fig.vbar(x="x", top="top", width=0.8, color="color", source=self.source)
        fig.add_tools(
            HoverTool(renderers=[bars], tooltips=[("dimension", "@x"), ("value", "@top{0.0000}")])
        )
        self.figure = fig

    def colors(self) -> tuple[str, str]:
        """(positive, negative) bar colours."""
        return ("#e4572e", "#4c78a8") if not self.style.classroom else ("#ff8a65", "#6fa8dc")

    @fast
    def update(self, values: np.ndarray, title: str | None = None) -> None:
        values = np.asarray(values, dtype=np.float64)
        pos, neg = self.colors()
        top = float(np.abs(values).max()) if len(values) else 1.0
        self.figure.x_range.update(start=-0.5, end=len(values) - 0.5)
        self.figure.y_range.update(start=-1.1 * (top or 1), end=1.1 * (top or 1))
        if title is not None:
            self.figure.title.text = title
        self.source.data = dict(
            x=list(range(len(values))),
            top=values.tolist(),
            color=[pos if v >= 0 else neg for v in values],
        )


def add_legend(fig, style: PlotStyle, items: list, where: str, click_hides: bool = False) -> None:
    """A legend of the theme's colours over a light background at ``where``; with
    ``click_hides``, a click (a tap) on an entry hides its lines."""
    legend = Legend(items=items, location=where, label_text_font_size=style.tick)
    legend.background_fill_alpha = 0.6
    legend.background_fill_color = style.background
    legend.label_text_color = style.text
    legend.border_line_color = None
    if click_hides:
        legend.click_policy = "hide"
    fig.add_layout(legend)
