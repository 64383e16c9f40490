"""The FP16 vs BF16 lesson: what each number format can store, and what it does to the model.

Five parts, top to bottom: the formats table; a bit explorer (type a value, see each format's
bits, click a bit to flip it); the representable ranges and densities on a log scale; the
model's own numbers (weights, hidden states, scores, logits) as histograms of log10|x| over
the fp16 and bf16 bands; and the same model really run in fp16 and (emulated) bf16 by ONNX
Runtime, compared with fp32, with the masking lesson's fills in each format.

Thin by design: every figure comes from :mod:`dashboard.lessons.precision` or the engine.
"""

from __future__ import annotations

import functools
import html
import math

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Legend, LegendItem, Range1d

from dashboard.lessons import precision as P
from dashboard.views.plots import styled_figure
from dashboard.views.registry import LessonView, when_shown
from dashboard.views.widgets import OptionSelect, text_pane
from models.runtime import EngineError

COLORS = {
    "fp32": "#4c78a8",
    "fp16": "#f58518",
    "bf16": "#54a24b",
    "fp8_e4m3": "#b279a2",
    "fp8_e5m2": "#9d755d",
}
FIELD_BUTTON = {"sign": "danger", "exponent": "primary", "mantissa": "success"}
ACTIVATIONS = {
    "hidden": "hidden states (this text)",
    "attn_scores": "attention scores q·k/√d (this text)",
    "logits": "logits (this text)",
}
ALL_WEIGHTS = "all weights"
RUN_FORMATS = ("fp16", "bf16")
TABLE_ROWS = (
    ("bits", "bits", "{:d}"),
    ("exponent_bits", "exponent bits", "{:d}"),
    ("mantissa_bits", "mantissa bits (stored)", "{:d}"),
    ("bias", "exponent bias", "{:d}"),
    ("max", "largest finite", "{:.6g}"),
    ("smallest_normal", "smallest normal", "{:.6g}"),
    ("smallest_subnormal", "smallest subnormal", "{:.6g}"),
    ("eps", "machine epsilon", "{:.6g}"),
    ("decimal_digits", "decimal digits", "{:.2f}"),
    ("has_inf", "has ±inf", "{}"),
    ("has_nan", "has NaN", "{}"),
)


def _held(method):
    """Run ``method`` with the document held: raw Bokeh changes inside a browser event's
    callback are collected and sent as one message (see dashboard/views/sampling.py)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with pn.io.hold():
            return method(self, *args, **kwargs)

    return wrapper


def _num(v: float | None) -> str:
    """A value for the page: exact float64 repr (short for binary fractions), or a dash."""
    if v is None:
        return "—"
    return repr(float(v))


def _flags(f: P.BitFields) -> str:
    flags = [
        ("overflow → " + ("NaN" if f.nan else "inf"), f.overflow),
        ("flushed to zero", f.flush_to_zero),
        ("subnormal", f.subnormal),
        ("NaN", f.nan and not f.overflow),
    ]
    shown = [f"<span class='flag'>{name}</span>" for name, on in flags if on]
    return " ".join(shown) or "<span class='hint'>exact range</span>"


def formats_table() -> str:
    """The formats table (figures from numpy.finfo / ml_dtypes.finfo) as HTML."""
    infos = [P.format_info(n) for n in P.FORMATS]
    head = "".join(f"<th>{html.escape(i.label)}</th>" for i in infos)
    rows = "".join(
        f"<tr><td>{label}</td>"
        + "".join(
            f"<td class='num' style='padding: 0.1em 0.8em'>{fmt.format(getattr(i, key))}</td>"
            for i in infos
        )
        + "</tr>"
        for key, label, fmt in TABLE_ROWS
    )
    return (
        "<table class='precision-formats' style='border-collapse: collapse'>"
        f"<tr><th></th>{head}</tr>{rows}</table>"
    )


class BitRow:
    """One format's bit pattern as buttons (sign red, exponent blue, mantissa green; solid =
    1), and what the format stores for the value."""

    def __init__(self, name: str, on_flip, classroom: bool):
        self.name = name
        info = P.format_info(name)
        fields = ["sign"] + ["exponent"] * info.exponent_bits + ["mantissa"] * info.mantissa_bits
        width = 34 if classroom else 22
        # same width whatever the label and style: a pattern reads as a row of equal cells
        sheet = (
            f":host {{ width: {width}px; min-width: {width}px; flex: 0 0 auto; }} "
            f".bk-btn {{ padding: 0; width: {width}px; min-width: {width}px; }}"
        )
        self.buttons = []
        for i, field in enumerate(fields):
            b = pn.widgets.Button(
                label="0",
                color=FIELD_BUTTON[field],
                variant="outline",
                width=width,
                height=width + 6,
                margin=(1, 1),
                css_classes=["bit", f"bit-{name}", f"bit-{name}-{i}"],
                description=f"{field} bit {i}: click to flip",
                stylesheets=[sheet],
            )
            b.on_click(lambda _e, i=i: on_flip(name, i))
            self.buttons.append(b)
        self.info = text_pane("", "precision-info", f"precision-info-{name}", margin=(0, 10))
        self.layout = pn.Column(
            text_pane(f"<b>{html.escape(info.label)}</b>", "control-label", margin=(4, 5, 0, 5)),
            pn.FlexBox(*self.buttons, gap="0px", margin=(0, 5)),
            self.info,
            margin=0,
        )

    def show(self, value: float) -> None:
        f = P.bit_fields(value, self.name)
        for b, bit in zip(self.buttons, f.bits, strict=True):
            b.param.update(label=bit, variant="solid" if bit == "1" else "outline")
        below, above = P.neighbours(f.stored, self.name)
        if f.category in ("normal", "subnormal", "zero"):
            how = (
                f"= (−1)<sup>{f.sign_int}</sup> · {f.significand!r} · "
                f"2<sup>{f.exponent_value}</sup>"
            )
            if f.category != "normal":
                how += " (exponent field 0: no implicit leading 1)"
        else:
            how = f"({f.category}: exponent all ones)"
        self.info.object = (
            f"<p>stores <b class='num stored'>{_num(f.stored)}</b> {how}<br>"
            f"neighbours <span class='num below'>{_num(below)}</span> and "
            f"<span class='num above'>{_num(above)}</span> · abs error "
            f"<span class='num'>{f.abs_error:.3g}</span> · rel error "
            f"<span class='num'>{f.rel_error:.3g}</span> · {_flags(f)}</p>"
        )


class PrecisionLesson(LessonView):
    """Number formats, the model's numbers in them, and the model run in fp16 and bf16."""

    value = param.Number(default=65504.0, doc="The value shown in the bit explorer.")
    tensor = param.Selector(default="hidden", objects=list(ACTIVATIONS), doc="Histogram source.")
    error = param.String(default="", doc="Why the typed value was refused.")

    def __init__(self, **params):
        super().__init__(**params)
        style = self.style
        self.param.tensor.objects = self._tensor_names()

        # -- bit explorer ----------------------------------------------------------------------
        self.value_input = pn.widgets.TextInput(
            label="Type a value",
            value="65504",
            placeholder="e.g. 65504, 1e-8, -0, inf, nan, 0x1p-24, 2^-24",
            width=320 if style.classroom else 240,
            css_classes=["precision-value"],
        )
        self.value_input.param.watch(self._typed, "value")
        self.error_pane = text_pane("", "message", "error", "precision-error", visible=False)
        self.rows = {n: BitRow(n, self.flip, style.classroom) for n in P.FORMATS}

        # -- ranges and density ----------------------------------------------------------------
        self.ranges_figure, self.density_figure = self._range_plots()

        # -- the model's numbers ---------------------------------------------------------------
        self.tensor_select = OptionSelect(
            label="Tensor",
            options=list(self.param.tensor.objects),
            value=self.tensor,
            width=380 if style.classroom else 300,
            css_classes=["precision-tensor"],
        )
        self.tensor_select.param.watch(lambda e: setattr(self, "tensor", e.new), "value")
        self.hist_source = ColumnDataSource(
            data=dict(left=[], right=[], top=[]), name="precision-hist"
        )
        self.band_source = ColumnDataSource(
            data=dict(left=[], right=[], bottom=[], top=[], color=[], alpha=[], label=[]),
            name="precision-hist-bands",
        )
        self.hist_figure = self._hist_plot()
        self.counts = text_pane("", "precision-counts")

        # -- real runs -------------------------------------------------------------------------
        self.run_hidden = ColumnDataSource(
            data=dict(layer=[], fp16=[], bf16=[]), name="precision-run-hidden"
        )
        self.run_probs = ColumnDataSource(
            data=dict(layer=[], fp16=[], bf16=[]), name="precision-run-probs"
        )
        self.runs_figure = self._runs_plot()
        self.runs_text = text_pane("", "precision-runs")
        self.mask_text = text_pane("", "precision-mask")

        def h(text: str) -> pn.pane.HTML:
            return text_pane(f"<h3>{text}</h3>", "explain", margin=(12, 10, 0, 10))

        self._layout = pn.Column(
            h("1. The formats"),
            text_pane(formats_table(), "explain"),
            text_pane(
                "<p class='hint'>Every figure is read from the dtype itself (numpy.finfo, "
                "ml_dtypes.finfo). bf16 keeps fp32's 8 exponent bits (its range) and drops "
                "16 mantissa bits; fp16 spends more bits on the mantissa and has a far "
                "smaller range.</p>",
                "caption",
            ),
            h("2. Bits: type a value, click a bit to flip it"),
            pn.Row(self.value_input, self.error_pane, margin=0),
            *(r.layout for r in self.rows.values()),
            h("3. Range and density"),
            pn.FlexBox(
                pn.pane.Bokeh(self.ranges_figure, margin=(5, 5)),
                pn.pane.Bokeh(self.density_figure, margin=(5, 5)),
                gap="6px",
            ),
            h("4. The model's own numbers"),
            self.tensor_select,
            pn.pane.Bokeh(self.hist_figure, margin=(5, 5)),
            text_pane(
                "<p class='hint'>Shaded behind the bars: where fp16 (orange, lower half) and "
                "bf16 (green, upper half) can store a value; the paler strip at the left of "
                "each is its subnormals, with fewer significant bits.</p>",
                "caption",
            ),
            self.counts,
            h("5. The same model run in fp16 and bf16"),
            pn.FlexBox(pn.pane.Bokeh(self.runs_figure, margin=(5, 5)), self.runs_text, gap="6px"),
            h("6. Masked scores in fp16 and bf16"),
            self.mask_text,
            sizing_mode="stretch_width",
            margin=0,
        )
        self._show_value()
        self._draw_histogram()
        self._draw_runs()

    # -- bit explorer ------------------------------------------------------------------------------
    def _typed(self, event) -> None:
        try:
            value = P.parse_value(event.new)
        except ValueError as err:
            self.error = str(err)  # the last good value stays on show
            return
        self.error = ""
        if not same_float(value, self.value):
            self.value = value

    def flip(self, name: str, index: int) -> None:
        """Flip bit ``index`` of ``name``'s pattern for the current value."""
        self.error = ""
        self.value = P.flip_bit(self.value, name, index)
        self.value_input.value = _num(self.value)

    @param.depends("error", watch=True)
    def _show_error(self) -> None:
        self.error_pane.object = f"<p>{html.escape(self.error)}</p>"
        self.error_pane.visible = bool(self.error)

    @param.depends("value", watch=True)
    @_held
    def _show_value(self) -> None:
        for row in self.rows.values():
            row.show(self.value)

    # -- ranges ------------------------------------------------------------------------------------
    def _range_plots(self):
        style = self.style
        names = list(P.FORMATS)
        width, height = (900, 420) if style.classroom else (560, 250)
        bands = dict(y=[], left=[], right=[], color=[], alpha=[], what=[])
        for n in names:
            b = P.range_band(n)
            for lo, hi, alpha, what in (
                (b.smallest_subnormal, b.smallest_normal, 0.35, "subnormals"),
                (b.smallest_normal, b.max, 0.9, "normal numbers"),
            ):
                bands["y"].append(P.format_info(n).label)
                bands["left"].append(lo)
                bands["right"].append(hi)
                bands["color"].append(COLORS[n])
                bands["alpha"].append(alpha)
                bands["what"].append(f"{what}: {lo:.3g} … {hi:.3g}")
        labels = [P.format_info(n).label for n in names]
        src = ColumnDataSource(bands, name="precision-bands")
        r = styled_figure(
            style,
            width,
            height,
            "Positive range (pale: subnormals)",
            x_axis_type="log",
            y_range=FactorRange(*reversed(labels)),
            x_range=Range1d(1e-47, 1e40),
            name="precision-ranges",
        )
        bars = r.hbar(
            y="y",
            left="left",
            right="right",
            height=0.6,
            color="color",
            fill_alpha="alpha",
            source=src,
        )
        r.add_tools(HoverTool(renderers=[bars], tooltips=[("", "@y"), ("", "@what")]))
        r.xaxis.axis_label = "|x| (log scale)"
        d = styled_figure(
            style,
            width,
            height,
            "Representable values per decade",
            x_axis_type="log",
            y_axis_type="log",
            x_range=r.x_range,
            name="precision-density-figure",
        )
        dens = dict(fmt=[], xs=[], ys=[], color=[])
        for n in names:
            dn = P.density(n)
            keep = dn.counts > 0
            dens["fmt"].append(P.format_info(n).label)
            dens["xs"].append((10.0 ** (dn.decades[keep] + 0.5)).tolist())
            dens["ys"].append(dn.counts[keep].astype(float).tolist())
            dens["color"].append(COLORS[n])
        dsrc = ColumnDataSource(dens, name="precision-density")
        lines = d.multi_line(
            xs="xs",
            ys="ys",
            line_color="color",
            line_width=4 if style.classroom else 2,
            source=dsrc,
        )
        d.add_tools(HoverTool(renderers=[lines], tooltips=[("format", "@fmt")]))
        d.xaxis.axis_label = "decade of |x|"
        d.yaxis.axis_label = "values in the decade"
        return r, d

    # -- the model's numbers -----------------------------------------------------------------------
    def _hist_plot(self):
        style = self.style
        width, height = (1300, 460) if style.classroom else (900, 300)
        f = styled_figure(
            style,
            width,
            height,
            "",
            x_range=Range1d(-10, 6),
            y_range=Range1d(0, 1),
            name="precision-hist-figure",
        )
        f.quad(
            left="left",
            right="right",
            bottom="bottom",
            top="top",
            color="color",
            fill_alpha="alpha",
            line_alpha=0,
            source=self.band_source,
        )
        bars = f.quad(
            left="left",
            right="right",
            bottom=0,
            top="top",
            source=self.hist_source,
            fill_color=COLORS["fp32"],
            line_color=style.background,
        )
        f.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[("log10|x|", "@left{0.00} … @right{0.00}"), ("count", "@top")],
            )
        )
        f.xaxis.axis_label = "log10 |x|"
        f.yaxis.axis_label = "values"
        return f

    def _tensor_names(self) -> list[str]:
        """The histogram's choices: this text's activations, then the model's weights."""
        s = self.state
        try:
            weights = list(s.engine.weights(s.model)) if s.engine is not None else []
        except EngineError:
            weights = []  # the histogram says why when "all weights" is chosen
        return [*ACTIVATIONS, ALL_WEIGHTS, *weights]

    @param.depends("state.model", watch=True)
    def _model_changed(self) -> None:
        names = self._tensor_names()
        self.param.tensor.objects = names
        self.tensor_select.options = names
        if self.tensor not in names:
            self.tensor = "hidden"

    def _tensor_values(self) -> np.ndarray | None:
        s = self.state
        if self.tensor in ACTIVATIONS:
            if s.forward is None:
                return None
            return np.asarray(getattr(s.forward, self.tensor))
        weights = s.engine.weights(s.model)
        if self.tensor == ALL_WEIGHTS:
            return np.concatenate([np.asarray(w, np.float64).ravel() for w in weights.values()])
        return np.asarray(weights[self.tensor])

    @param.depends("tensor", "state.forward", watch=True)
    @_held
    @when_shown
    def _draw_histogram(self) -> None:
        self.tensor_select.value = self.tensor
        try:
            values = self._tensor_values()
        except (EngineError, KeyError) as err:
            self.counts.object = f"<p class='message error'>{html.escape(str(err))}</p>"
            return
        if values is None:
            return
        v = np.asarray(values, dtype=np.float64)
        finite = v[np.isfinite(v) & (v != 0)]
        logs = np.log10(np.abs(finite)) if finite.size else np.zeros(1)
        lo = min(math.floor(float(logs.min())), -9) - 1
        hi = max(math.ceil(float(logs.max())), 5) + 1
        h = P.log_histogram(v, np.arange(lo, hi + 1e-9, 0.25))
        top = max(int(h.counts.max()), 1) * 1.1
        self.hist_source.data = dict(
            left=h.edges[:-1].tolist(), right=h.edges[1:].tolist(), top=h.counts.tolist()
        )
        bands = dict(left=[], right=[], bottom=[], top=[], color=[], alpha=[], label=[])
        # fp16 on the lower half of the plot's height, bf16 on the upper: both bands visible
        for n, (b0, b1) in (("fp16", (0, 0.5)), ("bf16", (0.5, 1.0))):
            rb = P.range_band(n)
            for a, z, label, alpha in (
                (rb.log10_smallest_subnormal, rb.log10_smallest_normal, "subnormal", 0.1),
                (rb.log10_smallest_normal, rb.log10_max, "normal", 0.25),
            ):
                bands["left"].append(max(a, lo))
                bands["right"].append(min(z, hi))
                bands["bottom"].append(b0 * top)
                bands["top"].append(b1 * top)
                bands["color"].append(COLORS[n])
                bands["alpha"].append(alpha)
                bands["label"].append(f"{n} {label}")
        self.band_source.data = bands
        self.hist_figure.x_range.update(start=lo, end=hi)
        self.hist_figure.y_range.update(start=0, end=top)
        name = ACTIVATIONS.get(self.tensor, self.tensor)
        self.hist_figure.title.text = f"log10|x| of {name}: {v.size:,} values"
        rows = []
        for n in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2"):
            c = P.overflow_counts(v, n)
            rows.append(
                f"<tr><td>{html.escape(P.format_info(n).label)}</td>"
                f"<td class='num overflow'>{c.overflow:,}</td>"
                f"<td class='num subnormal'>{c.subnormal:,}</td>"
                f"<td class='num flush'>{c.flush_to_zero:,}</td>"
                f"<td class='num'>{c.normal:,}</td></tr>"
            )
        self.counts.object = (
            f"<p>{h.zeros:,} values are exactly 0 and {h.nonfinite:,} are not finite (no "
            "log). Stored in each format, the others would:</p>"
            "<table class='top'><tr><th>format</th><th>overflow</th><th>become subnormal"
            "</th><th>flush to zero</th><th>stay normal</th></tr>" + "".join(rows) + "</table>"
        )

    # -- real runs ---------------------------------------------------------------------------------
    def _runs_plot(self):
        style = self.style
        width, height = (900, 460) if style.classroom else (520, 300)
        f = styled_figure(
            style,
            width,
            height,
            "max |difference| from fp32, per layer",
            y_axis_type="log",
            name="precision-runs-figure",
        )
        lw = 4 if style.classroom else 2
        items = []
        for src, dash, what in (
            (self.run_hidden, "solid", "hidden state"),
            (self.run_probs, "dashed", "attention probs"),
        ):
            for n in RUN_FORMATS:
                r = f.line(
                    "layer", n, source=src, line_color=COLORS[n], line_dash=dash, line_width=lw
                )
                dots = f.scatter("layer", n, source=src, color=COLORS[n], size=3 * lw)
                items.append(LegendItem(label=f"{n} {what}", renderers=[r, dots]))
        f.add_layout(
            Legend(
                items=items,
                label_text_font_size=style.tick,
                label_text_color=style.text,
                background_fill_color=style.background,
                background_fill_alpha=0.7,
            ),
            "right",
        )
        f.xaxis.axis_label = "layer (hidden state 0: the embeddings)"
        return f

    @param.depends("state.forward", watch=True)
    @_held
    @when_shown
    def _draw_runs(self) -> None:
        s = self.state
        ref = s.forward
        if ref is None or s.engine is None:
            return
        comps, parts = {}, []
        for n in RUN_FORMATS:
            try:
                low = s.engine.run(s.model, ref.ids, n)
                record = s.engine.variant(s.model, n)
            except EngineError as err:
                parts.append(f"<p class='message error'>{n}: {html.escape(str(err))}</p>")
                continue
            c = comps[n] = P.compare_runs(low, ref, n)
            flips = ", ".join(html.escape(s.labels[i]) for i in c.flips[:12]) or "none"
            ops = ", ".join(record.get("emulated_ops", []))
            parts.append(
                f"<p class='run-{n}'><b>{n}</b> on <b>{html.escape(low.provider)}</b>: "
                f"logits max error <b class='num logits-error'>{c.logits_max_diff:.3g}</b> "
                f"({100 * c.logits_max_rel:.2f}% of the largest logit) · top-1 next token "
                f"agrees at <b class='num agreement'>{100 * c.agreement:.1f}%</b> of "
                f"{len(c.top1)} positions · differs at: <span class='tok'>{flips}</span>"
                + (
                    f" · <span class='nan'>{c.nonfinite} inf/NaN values</span>"
                    if c.nonfinite
                    else ""
                )
                + f"<br><span class='hint'>{html.escape(record.get('description', ''))}. "
                f"Run in fp32 between Casts: {html.escape(ops)}.</span></p>"
            )
        if not comps:
            self.run_hidden.data = self.run_probs.data = dict(layer=[], fp16=[], bf16=[])
        else:

            def col(n, key):
                if n not in comps:
                    return []
                d = getattr(comps[n], key)
                return [float(x) if x > 0 else float("nan") for x in d]  # 0 has no log

            n_layer = int(ref.attn_probs.shape[0])
            self.run_hidden.data = dict(
                layer=list(range(n_layer + 1)),
                **{
                    n: col(n, "hidden_max_diff") or [float("nan")] * (n_layer + 1)
                    for n in RUN_FORMATS
                },
            )
            self.run_probs.data = dict(
                layer=list(range(1, n_layer + 1)),
                **{n: col(n, "probs_max_diff") or [float("nan")] * n_layer for n in RUN_FORMATS},
            )
        parts.append(
            "<p class='hint'>The fp16 graph stores weights and activations in fp16; ONNX "
            "Runtime's CPU provider has fp16 kernels only for the ops not listed above, so "
            "those listed read fp16 values, compute in fp32 and round back to fp16. bf16 is "
            "emulated the same way around every op: this CPU provider has no bf16 arithmetic. "
            "On a GPU provider (CUDA) every op would have fp16 kernels.</p>"
        )
        self.runs_text.object = "".join(parts)
        self._draw_mask()

    # -- the masking demo --------------------------------------------------------------------------
    @param.depends("state.layer", "state.head", watch=True)
    @when_shown
    def _draw_mask(self) -> None:
        s = self.state
        if s.forward is None:
            return
        scores = np.asarray(s.forward.attn_scores[s.layer, s.head], dtype=np.float64)
        mask = P.causal_mask(scores.shape[-1])
        mask[0] = True  # query 0 plays a padding token: nothing left to attend to
        rows = []
        for c in P.mask_fill_demo(scores, mask=mask):
            nan_rows = ", ".join(str(int(i)) for i in c.nan_rows) or "none"
            rows.append(
                f"<tr><td class='num'>{c.fill:g}</td><td>{c.name}</td>"
                f"<td class='num'>{_num(c.stored_fill)}</td>"
                f"<td>{'yes: −inf' if c.fill_became_inf else 'no'}</td>"
                f"<td class='{'nan' if c.has_nan else ''}'>{nan_rows}</td>"
                f"<td class='num'>{c.masked_mass:.3g}</td></tr>"
            )
        self.mask_text.object = (
            f"<p>Layer {s.layer}, head {s.head}: its scores with the causal mask, and query 0 "
            "masked completely (a padding token). Each fill stored in each format, then the "
            "softmax computed in that format:</p>"
            "<table class='top'><tr><th>fill</th><th>format</th><th>stored fill</th>"
            "<th>overflowed?</th><th>rows of NaN</th><th>most weight on a masked key</th></tr>"
            + "".join(rows)
            + "</table><p class='hint'>fp16 cannot store −1e10 (its largest is 65504): it "
            "becomes −inf, and a row that is all −inf gives −inf − (−inf) = NaN. −1e4 stays "
            "finite everywhere, so the padding row becomes a quiet uniform average.</p>"
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


def same_float(a: float, b: float) -> bool:
    """Equal as stored: NaN equals NaN, and −0 differs from +0."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)
