"""The "K/V heads and the cache" lesson: how many key/value heads a model keeps, and what that
costs while it generates.

Four parts. Which query heads read which key/value head under MHA, GQA and MQA (a diagram
with the cache bytes per token of each choice, for our model and published ones). The real
heads of a grouped-query model (anatomy-llama) side by side, grouped by the K/V head they
share, with how alike their patterns are. The cache's growth with context and batch for a
chosen model, against its weights. The measured speed-up of decoding with the cache
(``benchmarks/bench_kv_cache.py``). The arithmetic is :mod:`dashboard.lessons.kvcache` and
:mod:`dashboard.lessons.scale`; the snapshot swaps precomputed texts and multiplies per-token
bytes in ``js/kvcache.js``.
"""

from __future__ import annotations

import html
import re
from typing import ClassVar

import numpy as np
import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, RadioButtonGroup, Range1d, Select
from bokeh.palettes import Category10_10

from dashboard.lessons import kvcache as KV
from dashboard.lessons import scale
from dashboard.lessons.attention import kv_groups, mask_matrix, top_attended
from dashboard.views.calculator import presets as calculator_presets
from dashboard.views.offline import Context, callback, div, index_buttons, typed_fields
from dashboard.views.plots import MatrixPlot, PlotStyle, styled_figure
from dashboard.views.recipes import manifest_entries
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import (
    OptionSelect,
    index_group,
    labelled,
    text_pane,
)
from models.reading import read_text

ABOUT = (
    "<b>What you see:</b> which query heads read which key/value head when every head has "
    "its own (MHA), when a few share one (GQA) or all share one (MQA), and the bytes the KV "
    "cache then holds per token; anatomy-llama's real query heads side by side, grouped by "
    "the K/V head they read; how the cache grows with context and batch against the "
    "weights; and the speed-up the cache measured on this machine. <b>Try:</b> pick MQA "
    "and watch the cache shrink; compare two heads that share their keys; give Llama 2 7B "
    "a long context and a batch of 8."
)

DEFAULT_PRESET = "Llama 2 7B"
TABLE_PRESETS = (
    "GPT-2 small",
    "Llama 2 7B",
    "Llama 2 70B",
    "Llama 3 8B",
    "Mistral 7B v0.1",
    "Mixtral 8x7B",
    "Qwen2 0.5B",
)
LIMITS = {"kv_context": (1, 10_000_000), "kv_batch": (1, 100_000)}
FIELD_NAMES = {"kv_context": "Context length", "kv_batch": "Batch"}
BAD_FIELD = "{field}: {value} is not a whole number from {low} to {high}; kept {kept}."
GROWTH_TEXT = (
    "<p><b>{model}</b> adds {per_token} per token to each sequence's cache in fp16 (a key "
    "and a value in each of {layers} layers, {kv} K/V heads of {d} numbers, 2 bytes each). "
    "At <b>{context}</b> tokens × batch <b>{batch}</b>: <b>{total}</b> of cache, "
    "{ratio}× its fp16 weights ({weights}).</p>"
)
TOP_TEXT = "<p>For query <b>{query}</b> each head's strongest key: {heads}.</p>"
TOP_HEAD = "head {h} → {key} ({p})"
GROUP_COLOURS = Category10_10
HEAD_SIZE = {False: 300, True: 420}
SHARES = ("mha", "gqa", "mqa")


class KvOptions(Options):
    """The lesson's options (the shared selection gives the layer and the query)."""

    url: ClassVar[dict[str, str]] = {
        "kv_share": "kvs",
        "kv_preset": "kvm",
        "kv_context": "kvt",
        "kv_batch": "kvb",
    }

    kv_share = param.Selector(
        default="own",
        objects=["own", *SHARES],
        doc="The diagram's sharing: the model's own, MHA, GQA or MQA.",
    )
    # our own models (from the manifest) are chosen by name too: not every value is listed
    kv_preset = param.Selector(
        default=DEFAULT_PRESET,
        objects=list(scale.PRESETS),
        check_on_set=False,
        doc="The model whose cache grows.",
    )
    kv_context = param.Integer(default=4096, bounds=LIMITS["kv_context"], doc="Tokens cached.")
    kv_batch = param.Integer(default=1, bounds=LIMITS["kv_batch"], doc="Sequences cached.")


# -- the pieces both homes draw ------------------------------------------------------------------
def gqa_model(engine, fallback: str) -> str:
    """The first model in the manifest whose query heads share key/value heads (else
    ``fallback``, the session's own)."""
    for name, entry in manifest_entries(engine).items():
        cfg = entry.get("config", {})
        if (cfg.get("n_kv_head") or cfg.get("n_head")) < cfg.get("n_head", 0):
            return name
    return fallback


def presets(engine) -> dict[str, dict]:
    """The calculator's configs: the published ones, then ours."""
    return {name: p.config for name, p in calculator_presets(engine).items()}


def diagram_data(n_head: int, n_kv: int) -> tuple[dict, dict]:
    """The diagram's heads (query heads in a row above, K/V heads below each group's middle)
    and the lines from each query head to the K/V head it reads."""
    groups = kv_groups(n_head, n_kv)
    colour = [GROUP_COLOURS[g % len(GROUP_COLOURS)] for g in range(n_kv)]
    centre = [float(np.mean(g)) for g in groups]
    nodes = dict(
        x=[*map(float, range(n_head)), *centre],
        y=[1.0] * n_head + [0.0] * n_kv,
        label=[f"q{h}" for h in range(n_head)] + [f"kv{g}" for g in range(n_kv)],
        color=[colour[h // (n_head // n_kv)] for h in range(n_head)] + colour,
    )
    links = dict(x0=[], y0=[], x1=[], y1=[], color=[])
    for g, members in enumerate(groups):
        for h in members:
            links["x0"].append(float(h))
            links["y0"].append(1.0)
            links["x1"].append(centre[g])
            links["y1"].append(0.0)
            links["color"].append(colour[g])
    return nodes, links


def share_label(n_kv: int, n_head: int) -> str:
    return f"{KV.sharing_kind(n_head, n_kv)} ({n_kv})"


def diagram_title(n_head: int, n_kv: int) -> str:
    return f"{KV.sharing_kind(n_head, n_kv)}: {n_kv} K/V of {n_head}"


def share_html(model: str, config: dict, n_kv: int, measured: int | None) -> str:
    """What ``n_kv`` K/V heads cost our model per token, in numbers and bytes."""
    s = scale.shape_of(config)
    kind = KV.sharing_kind(s.heads, n_kv)
    per_layer = 2 * n_kv * s.head_dim
    fp16, fp32 = (KV.cache_per_token(config, n_kv, b) for b in (2, 4))
    text = (
        f"<p><b>{kind}</b>, {n_kv} K/V head{'s' if n_kv > 1 else ''} for {s.heads} query "
        f"heads: each layer caches 2 × {n_kv} × {s.head_dim} = {per_layer:,} numbers per token "
        f"(a key and a value per K/V head), {s.layers} layers: {per_layer * s.layers:,} "
        f"numbers, <b>{KV.human_bytes(fp16)}</b> per token in fp16, "
        f"{KV.human_bytes(fp32)} in fp32.</p>"
    )
    if n_kv == s.kv_heads:
        text += f"<p>{html.escape(model)}'s own choice"
        if measured is not None:
            text += (
                f": its decode graph's cache, measured, holds {measured:,} B per token in "
                "fp32" + (" (the same)" if measured == fp32 else "")
            )
        text += ".</p>"
    return text


def presets_table(names=TABLE_PRESETS) -> str:
    """Cache per token (fp16) of published models with every head its own K/V, as they ship,
    and with one K/V head."""
    rows = []
    for name in names:
        cfg = scale.PRESETS[name]
        s = scale.shape_of(cfg)
        cells = [
            KV.cache_per_token(cfg, k) if s.model_type != scale.GPT2 or k == s.heads else None
            for k in (s.heads, s.kv_heads, 1)
        ]
        text = ["—" if c is None else KV.human_bytes(c) for c in cells]
        rows.append(
            f"<tr><td>{name}</td><td class='num'>{s.heads} / {s.kv_heads}</td>"
            + "".join(f"<td class='num'>{t}</td>" for t in text)
            + "</tr>"
        )
    return (
        "<table class='kv-presets'><tr><th>model</th><th>heads q / kv</th><th>MHA</th>"
        f"<th>as shipped</th><th>MQA</th></tr>{''.join(rows)}</table><p class='hint'>Cache "
        "per token in fp16. GPT-2 has no K/V heads of its own to share.</p>"
    )


def growth(config: dict, context: int, batch: int) -> dict:
    """The cache of ``config`` for ``batch`` sequences up to twice ``context``, the fp16
    weights, and the figures' unit."""
    per_token = KV.cache_per_token(config)
    weights = scale.weight_bytes(config, "fp16")
    top = max(per_token * 2 * context * batch, weights)
    unit, div = unit_of(top)
    return dict(
        per_token=per_token,
        weights=weights,
        total=per_token * context * batch,
        unit=unit,
        x=[0, 2 * context],
        one=[0.0, per_token * 2 * context / div],
        batch=[0.0, per_token * 2 * context * batch / div],
        weight_line=weights / div,
        point=per_token * context * batch / div,
    )


def unit_of(n: float) -> tuple[str, int]:
    """The largest binary unit that ``n`` bytes fill at least once."""
    exp = 0
    while exp + 1 < len(KV.UNITS) and n >= 1024 ** (exp + 1):
        exp += 1
    return KV.UNITS[exp], 1024**exp


def growth_html(name: str, config: dict, context: int, batch: int) -> str:
    s, g = scale.shape_of(config), growth(config, context, batch)
    return GROWTH_TEXT.format(
        model=html.escape(name),
        per_token=KV.human_bytes(g["per_token"]),
        layers=s.layers,
        kv=s.kv_heads,
        d=s.head_dim,
        context=f"{context:,}",
        batch=f"{batch:,}",
        total=KV.human_bytes(g["total"]),
        ratio=f"{g['total'] / g['weights']:.2f}",
        weights=KV.human_bytes(g["weights"]),
    )


def parse_count(text: str, name: str, kept: int) -> tuple[int | None, str]:
    """A context length or batch typed in: (the number, "") or (None, the message)."""
    low, high = LIMITS[name]
    raw = str(text).strip().replace(",", "").replace("_", "")
    if re.fullmatch(r"[0-9]+", raw) and low <= int(raw) <= high:
        return int(raw), ""
    shown = f"“{str(text).strip()}”" if str(text).strip() else "nothing"
    message = BAD_FIELD.format(
        field=FIELD_NAMES[name], value=shown, low=f"{low:,}", high=f"{high:,}", kept=f"{kept:,}"
    )
    return None, message


def top_html(probs: np.ndarray, labels, query: int) -> str:
    """Each head's strongest key for the selected query (one layer's (H, T, T))."""
    parts = []
    for h in range(probs.shape[0]):
        for j, p in top_attended(probs[h, query], 1):
            parts.append(TOP_HEAD.format(h=h, key=html.escape(labels[j]), p=f"{p:.3f}"))
    return TOP_TEXT.format(query=html.escape(labels[query]), heads="; ".join(parts))


def distance_html(model: str, probs: np.ndarray, n_kv: int, layer: int) -> str:
    """How alike the heads' patterns are, within and across K/V groups."""
    n_head = probs.shape[0]
    if n_kv == n_head:
        return (
            f"<p>{html.escape(model)} gives every query head its own keys and values: "
            "nothing is shared.</p>"
        )
    same, other = KV.group_distances(KV.head_distances(probs), n_kv)
    verdict = (
        "more alike than heads that read different keys"
        if same < 0.8 * other
        else "about as different as heads that read different keys"
    )
    return (
        f"<p>Layer {layer} of {html.escape(model)}: heads that read the same K/V head differ "
        f"by <b>{same:.3f}</b> on average, heads that read different ones by "
        f"<b>{other:.3f}</b> (total variation between their rows: 0 the same, 1 nothing in "
        f"common). Sharing the keys and values leaves each head its own queries: here they "
        f"are {verdict}.</p>"
    )


def measured_html(result: dict | None) -> str:
    """The KV-cache benchmark's figures, with the machine that measured them."""
    if not result or not result.get("rows"):
        return (
            "<p>The speed-up of decoding with the cache is measured by <code>make bench"
            "</code> (benchmarks/bench_kv_cache.py); it has not been run here.</p>"
        )
    rows = "".join(
        f"<tr><td>{html.escape(r['model'])}</td>"
        f"<td class='num'>{r['cached_tokens_per_s']:,.0f}</td>"
        f"<td class='num'>{r['recompute_tokens_per_s']:,.0f}</td>"
        f"<td class='num'>{r['speedup']:.1f}×</td></tr>"
        for r in result["rows"]
    )
    first = result["rows"][0]
    return (
        f"<p>Generating {first['tokens']} tokens with ONNX Runtime "
        f"{html.escape(result['onnxruntime'])} on {html.escape(result['machine'])} (median of "
        f"{result['rounds']} rounds): with the cache each step runs one new token through the "
        "model; without it, the whole text again.</p><table class='kv-measured'><tr><th>"
        "model</th><th>tokens/s, cache</th><th>no cache</th><th>speed-up</th></tr>"
        f"{rows}</table>"
    )


class Figures:
    """The diagram, one heatmap per query head, and the growth chart."""

    def __init__(self, style: PlotStyle, n_head: int):
        self.style = style
        c = style.classroom
        self.nodes = ColumnDataSource(data=dict(x=[], y=[], label=[], color=[]), name="kv-nodes")
        self.links = ColumnDataSource(
            data=dict(x0=[], y0=[], x1=[], y1=[], color=[]), name="kv-links"
        )
        fig = styled_figure(
            style,
            640 if c else 440,
            300 if c else 220,
            "",
            name="kv-diagram",
            x_range=Range1d(-0.6, 0.6),
            y_range=Range1d(-0.45, 1.45),
        )
        fig.axis.visible = False
        fig.segment(
            "x0", "y0", "x1", "y1", color="color", line_width=4 if c else 2, source=self.links
        )
        fig.scatter(
            "x", "y", color="color", size=44 if c else 30, marker="square", source=self.nodes
        )
        fig.text(
            "x",
            "y",
            text="label",
            source=self.nodes,
            text_align="center",
            text_baseline="middle",
            text_color="#ffffff",
            text_font_size=style.tick,
        )
        self.diagram = fig
        size = HEAD_SIZE[c]
        self.heads = [
            MatrixPlot(style, size, kind="probs", name=f"kv-head-{h}", colorbar=False)
            for h in range(n_head)
        ]
        self.growth = ColumnDataSource(
            data=dict(x=[0, 1], one=[0, 0], batch=[0, 0], weights=[0, 0]), name="kv-growth"
        )
        self.point = ColumnDataSource(data=dict(x=[0], y=[0]), name="kv-point")
        g = styled_figure(style, 640 if c else 460, 400 if c else 300, "", name="kv-growth-fig")
        g.line(
            "x",
            "one",
            source=self.growth,
            color=style.muted,
            line_width=3 if c else 2,
            legend_label="batch 1",
        )
        g.line(
            "x",
            "batch",
            source=self.growth,
            color=style.accent,
            line_width=4 if c else 3,
            legend_label="chosen batch",
        )
        g.scatter("x", "y", source=self.point, color=style.accent, size=16 if c else 10)
        g.line(
            "x",
            "weights",
            source=self.growth,
            color=GROUP_COLOURS[2],
            line_dash="dashed",
            line_width=3 if c else 2,
            legend_label="fp16 weights",
        )
        g.legend.location = "top_left"
        g.legend.label_text_font_size = style.tick
        g.legend.background_fill_alpha = 0.0
        g.legend.label_text_color = style.text
        g.xaxis.axis_label = "tokens in the cache"
        g.x_range = Range1d(0, 1)
        g.y_range = Range1d(0, 1)
        self.growth_fig = g

    def draw_diagram(self, n_head: int, n_kv: int) -> None:
        nodes, links = diagram_data(n_head, n_kv)
        self.nodes.data, self.links.data = nodes, links
        self.diagram.x_range.update(start=-0.6, end=n_head - 0.4)
        self.diagram.title.text = diagram_title(n_head, n_kv)

    def draw_heads(self, probs: np.ndarray, labels, query: int, n_kv: int) -> None:
        """One layer's (H, T, T) probabilities, one heatmap per query head."""
        t, n_head = probs.shape[-1], probs.shape[0]
        for h, plot in enumerate(self.heads[:n_head]):
            plot.update(
                probs[h],
                labels,
                (query, query),
                allowed=mask_matrix("causal", t),
                title=f"Head {h} · K/V {h // (n_head // n_kv)}",
            )

    def draw_growth(self, g: dict) -> None:
        w = [g["weight_line"]] * 2
        self.growth.data = dict(x=g["x"], one=g["one"], batch=g["batch"], weights=w)
        self.point.data = dict(x=[g["x"][1] / 2], y=[g["point"]])
        self.growth_fig.x_range.update(start=0, end=g["x"][1])
        self.growth_fig.y_range.update(start=0, end=1.1 * max(g["batch"][1], g["weight_line"]))
        self.growth_fig.yaxis.axis_label = f"cache ({g['unit']})"
        self.growth_fig.title.text = "Cache and weights"


def groups_html(n_head: int, n_kv: int) -> str:
    """Which query heads read each K/V head, in one line above the heatmaps."""
    parts = [
        f"K/V head {g}: query heads {', '.join(map(str, members))}"
        for g, members in enumerate(kv_groups(n_head, n_kv))
    ]
    return f"<p><b>{' · '.join(parts)}</b></p>"


class KvLesson(LessonView):
    """MHA, GQA and MQA; a grouped-query model's heads side by side; the cache's cost."""

    def __init__(self, **params):
        super().__init__(**params)
        s = self.state
        self._model = gqa_model(s.engine, s.model)
        self._cfg = s.engine.config(self._model)
        self._hf = scale.our_preset(self._cfg)
        self._n_head = int(self._cfg["n_head"])
        self._n_kv = int(self._cfg.get("n_kv_head") or self._n_head)
        self._presets = presets(s.engine)
        self._f = Figures(self.style, self._n_head)
        for plot in self._f.heads:
            plot.on_tap(lambda i, j: s.param.update(query=i, key=j))
        self._choices = KV.sharing_choices(self._n_head, self._n_kv)
        share = pn.widgets.RadioButtonGroup(
            options={share_label(n, self._n_head): n for n in self._choices.values()},
            value=self._share_heads(),
            color="primary",
            variant="outline",
            css_classes=["kv-share"],
        )
        kinds = {n: kind for kind, n in self._choices.items()}
        share.param.watch(lambda e: setattr(s, "kv_share", kinds[e.new]), "value")
        s.param.watch(lambda _e: share.param.update(value=self._share_heads()), "kv_share")
        self._share_text = text_pane("", "explain", "kv-share-text", width=460)
        layer_pick = index_group(s, "layer", "n_layer")
        self._top = text_pane("", "explain", "kv-top", sizing_mode="stretch_width")
        self._distance = text_pane("", "explain", "kv-distance", sizing_mode="stretch_width")
        preset = OptionSelect(
            options=list(self._presets),
            value=self._preset_name(),
            css_classes=["kv-preset"],
            width=220,
        )
        preset.param.watch(lambda e: setattr(s, "kv_preset", e.new), "value")
        self._inputs = {
            name: pn.widgets.TextInput(
                value=f"{getattr(s, name):,}",
                width=150,
                css_classes=[f"{name.replace('_', '-')}-input"],
            )
            for name in LIMITS
        }
        self._field_messages = {
            name: text_pane(
                "",
                "message",
                "error",
                f"{name.replace('_', '-')}-message",
                visible=False,
                width=300,
            )
            for name in LIMITS
        }
        for name, box in self._inputs.items():
            box.param.watch(lambda e, n=name: self._typed(n, e.new), "value")
        self._groups = text_pane(groups_html(self._n_head, self._n_kv), "explain")
        self._growth_text = text_pane("", "explain", "kv-growth-text", width=460)
        self._layout = pn.Column(
            text_pane("<h3>Who reads which K/V head</h3>", margin=(0, 10)),
            labelled("Key/value heads", share),
            pn.FlexBox(
                pn.pane.Bokeh(self._f.diagram, margin=(5, 5)),
                self._share_text,
                text_pane(presets_table(), "explain", width=520),
                sizing_mode="stretch_width",
            ),
            text_pane(f"<h3>{html.escape(self._model)}'s heads, side by side</h3>", margin=(0, 10)),
            labelled("Layer", layer_pick),
            self._distance,
            self._groups,
            pn.FlexBox(
                *[pn.pane.Bokeh(p.figure, margin=(5, 5)) for p in self._f.heads],
                sizing_mode="stretch_width",
            ),
            self._top,
            text_pane("<h3>The cache grows</h3>", margin=(0, 10)),
            pn.FlexBox(
                labelled("Model", preset),
                *(
                    pn.Column(
                        labelled(FIELD_NAMES[n], self._inputs[n]), self._field_messages[n], margin=0
                    )
                    for n in LIMITS
                ),
                sizing_mode="stretch_width",
            ),
            pn.FlexBox(
                pn.pane.Bokeh(self._f.growth_fig, margin=(5, 5)),
                self._growth_text,
                sizing_mode="stretch_width",
            ),
            text_pane(
                measured_html(KV.load_benchmark("kv_cache")),
                "explain",
                "kv-measured",
                sizing_mode="stretch_width",
            ),
            margin=0,
            sizing_mode="stretch_width",
        )
        self._reading, self._reading_text = None, None
        self._draw_share()
        self._draw_heads()
        self._draw_growth()

    def _preset_name(self) -> str:
        return self.state.kv_preset if self.state.kv_preset in self._presets else DEFAULT_PRESET

    def _typed(self, name: str, text: str) -> None:
        value, message = parse_count(text, name, getattr(self.state, name))
        box = self._field_messages[name]
        box.object, box.visible = (f"<p>{html.escape(message)}</p>", bool(message))
        if value is not None:
            setattr(self.state, name, value)

    def _share_heads(self) -> int:
        """The K/V heads of the chosen sharing ("own", or a kind this model lacks: its own)."""
        return self._choices.get(self.state.kv_share, self._n_kv)

    @param.depends("state.kv_share", watch=True)
    @draws
    def _draw_share(self) -> None:
        n_kv = self._share_heads()
        self._f.draw_diagram(self._n_head, n_kv)
        measured = self.state.engine.entry(self._model).get("decode", {})
        self._share_text.object = share_html(
            self._model, self._hf, n_kv, measured.get("cache_bytes_per_token")
        )

    @param.depends("state.forward", "state.layer", "state.query", watch=True)
    @draws
    def _draw_heads(self) -> None:
        s = self.state
        if s.forward is None:
            return
        if s.model == self._model:
            forward, labels = s.forward, s.labels
        else:  # the grouped-query model reads the session's text too
            if self._reading is None or self._reading_text != s.text:
                self._reading, self._reading_text = read_text(s.engine, self._model, s.text), s.text
            if not self._reading.ok:
                self._distance.object = f"<p>{html.escape(self._reading.message)}</p>"
                return
            forward, labels = self._reading.forward, self._reading.labels
        layer = min(s.layer, int(self._cfg["n_layer"]) - 1)
        query = min(s.query, len(labels) - 1)
        probs = forward.attn_probs[layer]
        self._f.draw_heads(probs, labels, query, self._n_kv)
        self._distance.object = distance_html(self._model, probs, self._n_kv, layer)
        self._top.object = top_html(probs, labels, query)

    @param.depends("state.kv_preset", "state.kv_context", "state.kv_batch", watch=True)
    @draws
    def _draw_growth(self) -> None:
        s = self.state
        name = self._preset_name()
        cfg = self._presets[name]
        self._f.draw_growth(growth(cfg, s.kv_context, s.kv_batch))
        self._growth_text.object = growth_html(name, cfg, s.kv_context, s.kv_batch)
        for field, box in self._inputs.items():
            if parse_count(box.value, field, 0)[0] != getattr(s, field) and not (
                self._field_messages[field].visible
            ):
                box.value = f"{getattr(s, field):,}"

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------------------------
# The same figures. The diagram's data and text for every choice, and the distances for every
# layer, are precomputed; js/kvcache.js slices the grouped-query model's probabilities for the
# heatmaps and multiplies each preset's per-token bytes for the growth chart.


def probs_data(ctx: Context, model: str):
    """The probabilities of ``model`` reading the snapshot's text, embedded once: shared with
    the attention lesson when it is the snapshot's own model."""
    if model == ctx.model:
        return ctx.attention_data(), ctx.forward, ctx.labels
    key = f"probs:{model}"
    if key not in ctx.shared:
        reading = read_text(ctx.engine, model, ctx.text)
        if not reading.ok:
            raise ValueError(reading.message)
        f = reading.forward
        src = ColumnDataSource(
            data=dict(probs=np.ascontiguousarray(f.attn_probs, dtype=np.float32).ravel()),
            name=f"kv-probs-{model}",
        )
        ctx.shared[key] = (src, f, reading.labels)
    return ctx.shared[key]


def snapshot(ctx: Context):
    s, style, engine = ctx.selection, ctx.style, ctx.engine
    model = gqa_model(engine, ctx.model)
    cfg = engine.config(model)
    hf = scale.our_preset(cfg)
    n_head, n_kv = int(cfg["n_head"]), int(cfg.get("n_kv_head") or cfg["n_head"])
    n_layer = int(cfg["n_layer"])
    figs = Figures(style, n_head)
    # who reads which K/V head: every choice precomputed
    options = list(KV.sharing_choices(n_head, n_kv).values())
    measured = engine.entry(model).get("decode", {}).get("cache_bytes_per_token")
    choices = []
    for k in options:
        nodes, links = diagram_data(n_head, k)
        choices.append(
            dict(
                nodes=nodes,
                links=links,
                text=share_html(model, hf, k, measured),
                title=diagram_title(n_head, k),
            )
        )
    chosen = KV.sharing_choices(n_head, n_kv).get(s.kv_share, n_kv)
    figs.draw_diagram(n_head, chosen)
    share = RadioButtonGroup(
        labels=[share_label(k, n_head) for k in options],
        active=options.index(chosen),
        name="kv-share",
        css_classes=["kv-share"],
        stylesheets=[ctx.stylesheet],
    )
    share_text = div(
        ctx,
        choices[options.index(chosen)]["text"],
        "explain",
        "kv-share-text",
        name="kv-share-text",
        width=460,
    )
    share.js_on_change(
        "active",
        callback(
            "kvcache",
            "draw_share()",
            share=share,
            choices=choices,
            nodes=figs.nodes,
            links=figs.links,
            text=share_text,
            fig=figs.diagram,
        ),
    )
    # the real heads
    data, forward, labels = probs_data(ctx, model)
    t = len(labels)
    layer = index_buttons(ctx, n_layer, s.layer, "kv-layer")
    query = min(ctx.query, t - 1)
    probs = forward.attn_probs
    figs.draw_heads(probs[layer.active], labels, query, n_kv)
    distances = [distance_html(model, probs[i], n_kv, i) for i in range(n_layer)]
    distance = div(ctx, distances[layer.active], "explain", "kv-distance", name="kv-distance")
    top = div(ctx, top_html(probs[layer.active], labels, query), "explain", "kv-top", name="kv-top")
    state = ColumnDataSource(data=dict(query=[query]), name="kv-state")
    args = dict(
        probs=data,
        L=n_layer,
        H=n_head,
        KV=n_kv,
        T=t,
        layer=layer,
        state=state,
        labels=labels,
        distances=distances,
        distance=distance,
        top=top,
        top_t=TOP_TEXT,
        head_t=TOP_HEAD,
        images=[p.source for p in figs.heads],
        removed=[p.removed for p in figs.heads],
        selections=[p.selection for p in figs.heads],
    )
    layer.js_on_change("active", callback("kvcache", "draw_heads()", **args))
    # the heatmaps are drawn in the page from the probabilities it embeds anyway: their own
    # images start empty (zeros of the right size), 40 KB less
    for plot in figs.heads:
        plot.source.data = {**plot.source.data, "image": [np.zeros((t, t), np.float32)]}
    ctx.on_ready(callback("kvcache", "draw_heads()", **args))
    for h, plot in enumerate(figs.heads):
        plot.figure.js_on_event("tap", callback("kvcache", f"tap_head({h}, cb_obj)", **args))
        plot.figure.js_on_event("doubletap", callback("kvcache", f"tap_head({h}, cb_obj)", **args))
    # the cache grows
    table = presets(engine)
    name = s.kv_preset if s.kv_preset in table else DEFAULT_PRESET
    figs.draw_growth(growth(table[name], s.kv_context, s.kv_batch))
    shapes = {n: scale.shape_of(c) for n, c in table.items()}
    info = {
        n: dict(
            per_token=KV.cache_per_token(c),
            weights=scale.weight_bytes(c, "fp16"),
            layers=shapes[n].layers,
            kv=shapes[n].kv_heads,
            d=shapes[n].head_dim,
        )
        for n, c in table.items()
    }
    preset = Select(
        options=list(table),
        value=name,
        name="kv-preset",
        css_classes=["kv-preset"],
        width=220,
        stylesheets=[ctx.stylesheet],
    )
    inputs, messages = typed_fields(ctx, {n: f"{getattr(s, n):,}" for n in LIMITS}, 150, 300)
    growth_text = div(
        ctx,
        growth_html(name, table[name], s.kv_context, s.kv_batch),
        "explain",
        "kv-growth-text",
        name="kv-growth-text",
        width=460,
    )
    kept = ColumnDataSource(data=dict(context=[s.kv_context], batch=[s.kv_batch]), name="kv-kept")
    gargs = dict(
        preset=preset,
        info=info,
        context=inputs["kv_context"],
        batch=inputs["kv_batch"],
        context_msg=messages["kv_context"],
        batch_msg=messages["kv_batch"],
        kept=kept,
        text=growth_text,
        growth_t=GROWTH_TEXT,
        bad_t=BAD_FIELD,
        limits=LIMITS,
        names=FIELD_NAMES,
        units=list(KV.UNITS),
        source=figs.growth,
        point=figs.point,
        fig=figs.growth_fig,
    )
    for widget in (preset, *inputs.values()):
        widget.js_on_change("value", callback("kvcache", "draw_growth()", **gargs))
    caption = lambda title: div(ctx, f"<b>{title}</b>", "explain")  # noqa: E731
    heading = lambda title: div(ctx, f"<h3>{html.escape(title)}</h3>")  # noqa: E731
    return column(
        heading("Who reads which K/V head"),
        column(caption("Key/value heads"), share),
        row(figs.diagram, share_text, div(ctx, presets_table(), "explain", width=520)),
        heading(f"{model}'s heads, side by side"),
        column(caption("Layer"), layer),
        distance,
        div(ctx, groups_html(n_head, n_kv), "explain"),
        row(*[p.figure for p in figs.heads]),
        top,
        heading("The cache grows"),
        row(
            column(caption("Model"), preset),
            *(column(caption(FIELD_NAMES[n]), inputs[n], messages[n]) for n in LIMITS),
        ),
        row(figs.growth_fig, growth_text),
        div(ctx, measured_html(KV.load_benchmark("kv_cache")), "explain", "kv-measured"),
    )
