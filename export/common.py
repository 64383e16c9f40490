"""What every lesson of a snapshot shares: the data it draws, the theme, and small builders.

A snapshot is one Bokeh document. Lessons get a :class:`Context` (the text's tokens, the
forward pass, the chosen selection and the plot style) and return one Bokeh layout; their
interactivity is client-side only, as ``CustomJS`` callbacks whose code is read from
``export/js/*.js`` (with ``common.js`` prepended) at build time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from bokeh.models import ColumnDataSource, CustomJS, Div, InlineStyleSheet

from dashboard.views.plots import PlotStyle
from models.bpe import Tokenizer, readable
from models.runtime import Forward

JS_DIR = Path(__file__).resolve().parent / "js"


@dataclass(frozen=True)
class Selection:
    """What the snapshot shows first (the dashboard's state when exported from it).

    ``query`` None means the last token: the position whose next token the model predicts.
    """

    lesson: str = "attention"
    layer: int = 0
    head: int = 0
    query: int | None = None
    key: int | None = None
    stage: str = "probs"
    mask: str = "causal"
    window: int = 3
    pad: int = 2
    fill: str = "-inf"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    value: str = "0.1"


@dataclass
class Context:
    """Everything a lesson builder reads; ``shared`` caches data sources used by several."""

    model: str
    config: dict
    text: str
    ids: list[int]
    labels: list[str]  # unique: "3: ·the"
    tokens: list[str]  # readable token strings
    forward: Forward
    tokenizer: Tokenizer
    style: PlotStyle
    selection: Selection
    stylesheet: InlineStyleSheet
    shared: dict = field(default_factory=dict)

    def on_ready(self, cb: CustomJS) -> None:
        """Run ``cb`` once when the page has loaded (the lessons' first draw)."""
        self.shared.setdefault("ready", []).append(cb)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def query(self) -> int:
        q = self.selection.query
        return self.n_tokens - 1 if q is None else min(max(int(q), 0), self.n_tokens - 1)

    def attention_data(self) -> ColumnDataSource:
        """The model's scaled scores and probabilities, flattened (layer, head, query, key),
        float32: embedded once even when two lessons draw them."""
        if "attention" not in self.shared:
            f = self.forward
            self.shared["attention"] = ColumnDataSource(
                data=dict(
                    scores=np.ascontiguousarray(f.attn_scores, dtype=np.float32).ravel(),
                    probs=np.ascontiguousarray(f.attn_probs, dtype=np.float32).ravel(),
                ),
                name="attention-data",
            )
        return self.shared["attention"]

    def vocabulary(self) -> ColumnDataSource:
        """Readable text of every token id (``label[id]``), embedded once for all lessons."""
        if "vocab" not in self.shared:
            n = self.tokenizer.vocab_size
            labels = [readable(self.tokenizer.token_bytes(i)) for i in range(n)]
            self.shared["vocab"] = ColumnDataSource(data=dict(label=labels), name="vocab")
        return self.shared["vocab"]


@cache
def js_source(name: str) -> str:
    """The text of ``export/js/<name>.js``."""
    return (JS_DIR / f"{name}.js").read_text(encoding="utf-8")


def callback(lesson: str, call: str, **args) -> CustomJS:
    """A ``CustomJS`` running ``call`` (e.g. ``"draw()"``) after the lesson's functions."""
    code = "\n".join([js_source("common"), js_source(lesson), f"{call};"])
    return CustomJS(args=args, code=code)


def div(ctx: Context, html: str = "", *classes: str, name: str | None = None, **kw) -> Div:
    """A Div styled by the snapshot's style sheet (Bokeh renders each Div in its own shadow
    root, which page CSS cannot reach). Callers escape user text before it reaches ``html``."""
    if "width" not in kw:
        kw.setdefault("sizing_mode", "stretch_width")  # wrap at the window, never clip
    return Div(
        text=html,
        css_classes=list(classes),
        stylesheets=[ctx.stylesheet],
        name=name,
        **kw,
    )


def widget_style(ctx: Context) -> list:
    """Style sheets for widgets: the dark theme's colours in classroom mode."""
    return [ctx.stylesheet]
