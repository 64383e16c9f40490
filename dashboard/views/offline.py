"""What every lesson's snapshot form shares: the data it draws, the theme, small builders.

A snapshot is one Bokeh document. Each lesson's ``snapshot(ctx)`` gets a :class:`Context`
(the reading of the text, the lesson options it starts from and the plot style) and returns
one Bokeh layout; its interactivity is client-side only, as ``CustomJS`` callbacks whose
code is read from ``dashboard/views/js/*.js`` (with ``common.js`` prepended) at build time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    Div,
    InlineStyleSheet,
    RadioButtonGroup,
    TextInput,
)

from dashboard.views.plots import PlotStyle
from models.bpe import Tokenizer, readable
from models.contract import Forward
from models.reading import Reading

JS_DIR = Path(__file__).resolve().parent / "js"


@dataclass
class Context:
    """Everything a lesson builder reads; ``shared`` caches data sources used by several."""

    engine: Any  # models.runtime.Engine: the one that read the text (lower precisions, weights)
    reading: Reading  # the text as the model read it (status "ok")
    text: str
    style: PlotStyle
    selection: Any  # every lesson's options (registry.composed_options()), as they start
    stylesheet: InlineStyleSheet
    chosen: frozenset = frozenset()  # the options the caller set (not defaults)
    shared: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.reading.model

    @property
    def ids(self) -> list[int]:
        return self.reading.ids

    @property
    def labels(self) -> list[str]:
        """Unique token labels: "3: ·the"."""
        return self.reading.labels

    @property
    def tokens(self) -> list[str]:
        """Readable token strings."""
        return self.reading.tokens

    @property
    def forward(self) -> Forward:
        return self.reading.forward

    @property
    def config(self) -> dict:
        return self.engine.config(self.model)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.engine.tokenizer(self.model)

    def on_ready(self, cb: CustomJS) -> None:
        """Run ``cb`` once when the page has loaded (the lessons' first draw)."""
        self.shared.setdefault("ready", []).append(cb)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def query(self) -> int:
        """The query to open on: the one chosen, else the last token (whose next token the
        model predicts)."""
        q = self.selection.query if "query" in self.chosen else None
        return self.n_tokens - 1 if q is None else min(max(int(q), 0), self.n_tokens - 1)

    @property
    def key(self) -> int:
        """The key to open on (at most the query: a causal query sees no later key)."""
        k = self.selection.key if "key" in self.chosen else None
        return self.query if k is None else min(max(int(k), 0), self.query)

    def attention_data(self) -> ColumnDataSource:
        """The model's attention probabilities, flattened (layer, head, query, key), float32:
        embedded once even when two lessons draw them. Its scaled scores are computed in the
        page from q and k (``model_scores`` of js/scores.js, with :meth:`scores_args`)."""
        if "attention" not in self.shared:
            probs = np.ascontiguousarray(self.forward.attn_probs, dtype=np.float32).ravel()
            self.shared["attention"] = ColumnDataSource(
                data=dict(probs=probs), name="attention-data"
            )
        return self.shared["attention"]

    def scores_args(self) -> dict:
        """The callback arguments js/scores.js computes the model's scaled scores from: the
        embedded q and k (shared with the lessons that draw them) and their shape."""
        f = self.outputs("q", "k")
        n_layer, n_head, t, d = f.q.shape
        return dict(
            att_q=self.output_data("q"),
            att_k=self.output_data("k"),
            att_shape=dict(L=n_layer, H=n_head, KV=int(f.k.shape[1]), T=t, d=d),
        )

    def outputs(self, *names: str) -> Forward:
        """The reading's forward pass with the named outputs (models.contract); raises
        EngineError when the model file lacks one (the snapshot writer reports it)."""
        self.engine.require(self.model, names)
        return self.engine.run(self.model, self.ids, outputs=tuple(names))

    def output_data(self, name: str) -> ColumnDataSource:
        """One named output, flattened float32 in its own axis order, embedded once however
        many lessons read it (source ``output-<name>``, column ``values``)."""
        key = f"output:{name}"
        if key not in self.shared:
            values = getattr(self.outputs(name), name)
            self.shared[key] = ColumnDataSource(
                data=dict(values=np.ascontiguousarray(values, dtype=np.float32).ravel()),
                name=f"output-{name}",
            )
        return self.shared[key]

    def vocabulary(self) -> ColumnDataSource:
        """Readable text of every token id (``label[id]``), embedded once for all lessons."""
        if "vocab" not in self.shared:
            n = self.tokenizer.vocab_size
            labels = [readable(self.tokenizer.token_bytes(i)) for i in range(n)]
            self.shared["vocab"] = ColumnDataSource(data=dict(label=labels), name="vocab")
        return self.shared["vocab"]


@cache
def js_source(name: str) -> str:
    """The text of ``dashboard/views/js/<name>.js``."""
    return (JS_DIR / f"{name}.js").read_text(encoding="utf-8")


def compact_js(text: str) -> str:
    """``text`` without its comment lines, blank lines and indentation, lines otherwise as
    written (so no statement is joined to another). Every callback carries its own copy of
    common.js and its lesson's file, so this is a good part of every snapshot's size; the
    files keep their comments. Lines inside a template literal are kept whole."""
    out, inside = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if inside:
            out.append(line)
        elif stripped and not stripped.startswith("//"):
            out.append(stripped)
        if line.count("`") % 2:  # a template literal opens or closes on this line
            inside = not inside
    return "\n".join(out)


@cache
def _compact_source(name: str) -> str:
    return compact_js(js_source(name))


def callback(js: str | tuple[str, ...], call: str, **args) -> CustomJS:
    """A ``CustomJS`` running ``call`` (e.g. ``"draw()"``) after ``common.js`` and the named
    file(s) of ``dashboard/views/js`` (a kernel first, then the lesson's own code)."""
    names = (js,) if isinstance(js, str) else tuple(js)
    code = "\n".join([*map(_compact_source, ("common", *names)), f"{call};"])
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


def index_buttons(ctx: Context, n: int, active: int, name: str) -> RadioButtonGroup:
    """Buttons 0..n-1 (a layer or head picker)."""
    return RadioButtonGroup(
        labels=[str(i) for i in range(n)],
        active=min(max(active, 0), n - 1),
        name=name,
        stylesheets=[ctx.stylesheet],
    )


def typed_fields(ctx: Context, values: dict, width: int, message_width: int):
    """A TextInput per field (``values``: option name -> its text) and a hidden message Div
    beside each, both named and classed ``<name with dashes>-input`` / ``-message``."""
    inputs, messages = {}, {}
    for n, text in values.items():
        key = n.replace("_", "-")
        inputs[n] = TextInput(
            value=text,
            name=f"{key}-input",
            css_classes=[f"{key}-input"],
            width=width,
            stylesheets=[ctx.stylesheet],
        )
        messages[n] = div(
            ctx,
            "",
            "message",
            "error",
            f"{key}-message",
            name=f"{key}-message",
            visible=False,
            width=message_width,
        )
    return inputs, messages
