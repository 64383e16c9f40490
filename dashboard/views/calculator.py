"""The "A calculator for real models" lesson: parameters, memory and FLOPs of a published config.

A preset (GPT-2 small to XL, Llama 2 and 3, Mistral, Mixtral, Qwen2, and our own models from
the manifest) fills the config's fields, the Hugging Face ``config.json`` keys; every field
can be edited. From them, by :mod:`dashboard.lessons.scale`: the parameters by component (a
table and a bar figure), the weights in fp32, fp16, bf16, int8 and int4, the KV cache for a
context length and a batch, the training state with and without mixed precision, and the
forward FLOPs per token. A bad field gets its message beside it and the last valid result
stays on screen. In the snapshot ``js/calculator.js`` (scale.py's twin, in BigInt) computes
in the page from the presets embedded here, and fills the same templates.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import panel as pn
import param
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, FactorRange, Range1d, Select, TextInput

from dashboard.lessons import scale as S
from dashboard.views.offline import Context, callback, div
from dashboard.views.plots import PlotStyle, styled_figure, title_over_axis
from dashboard.views.recipes import manifest_entries
from dashboard.views.registry import LessonView, Options, draws
from dashboard.views.widgets import OptionSelect, labelled, text_pane

ABOUT = (
    "<b>What you see:</b> what a published model's config.json implies: its parameters by "
    "component, the memory of its weights in each format, of its KV cache for a context and "
    "a batch, and of its training state with Adam, and the FLOPs of each token's forward "
    "pass, all computed from the config's fields (the same arithmetic that counts Hugging "
    "Face's models exactly). <b>Try:</b> compare Llama 2 70B's cache with Llama 2 13B's (its "
    "8 K/V heads); set num_key_value_heads to 1; give Mixtral 8x7B a context of 32768 and a "
    "batch of 8; type 31 heads and read the message."
)

DEFAULT_PRESET = "Llama 2 7B"
FORMATS = tuple(S.BYTES_PER_PARAM)  # fp32, fp16, bf16, int8, int4
LIMIT = 10**12  # the most any field may hold: far past any real model, and no overflow
MAX_CHARS = 40  # a field's text
SPACE = " \t\r\n"  # what is stripped from a field (the same characters in the page)
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
CONTEXT, BATCH = "context", "batch"  # the names of the two fields that are not the config's
FIGURE_SIZE = {False: (460, 250), True: (640, 360)}  # the parameters' bar figure
FIELD_WIDTH = {False: 140, True: 300}
MENU_WIDTH = {False: 240, True: 360}  # the preset menu (the cache's: half)
TABLE_WIDTH = {False: 380, True: 640}  # the parameters' table beside the figure


def _counted(model_type: str) -> tuple[str, ...]:
    """A family's whole-number fields, the required ones first."""
    required, optional, _ = S.fields(model_type)
    return (*required, *optional)


# Every field of every family, in the order the page shows them
ALL_FIELDS = tuple(dict.fromkeys(k for t in S.MODEL_TYPES for k in _counted(t)))
ALL_SWITCHES = tuple(dict.fromkeys(k for t in S.MODEL_TYPES for k in S.fields(t)[2]))
PLACEHOLDERS = {  # what an optional field left empty means
    "n_inner": "4 × n_embd",
    "num_key_value_heads": "= heads",
    "head_dim": "width ÷ heads",
    "max_position_embeddings": "not set",
}
CLASSES = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}
COMPONENTS = {
    "embeddings": "embeddings",
    "position_embeddings": "positions",
    "attention": "attention",
    "mlp": "MLP",
    "experts": "experts",
    "router": "router",
    "norms": "norms",
    "lm_head": "LM head",
}
TRAINING_PARTS = {
    "weights": "weights",
    "gradients": "gradients",
    "master_weights": "fp32 master copy",
    "adam_m": "Adam m",
    "adam_v": "Adam v",
    "total": "total",
}
# (step, unit names): a count is shown in the largest unit it reaches
UNITS = {
    "params": (1000, ("", " K", " M", " B", " T")),
    "bytes": (1024, (" B", " KiB", " MiB", " GiB", " TiB", " PiB")),
    "flops": (1000, (" FLOPs", " kFLOPs", " MFLOPs", " GFLOPs", " TFLOPs", " PFLOPs")),
}
AXIS = {"": "parameters", " K": "thousands", " M": "millions", " B": "billions", " T": "trillions"}

# -- the texts, filled by both homes (the snapshot's in js/calculator.js) ----------------------
TABLE_STYLE = (
    "<style>table.calc { border-collapse: collapse; }"
    " table.calc td, table.calc th { padding: 0.12em 0.7em 0.12em 0; text-align: left; }"
    " table.calc .num { text-align: right; }</style>"
)
HEADLINE = (
    "<p><b>{params}</b> parameters; <b>{weights}</b> of weights in bf16, <b>{kv}</b> of KV "
    "cache for {batch} × {context} tokens in {cache}, <b>{training}</b> of training state.</p>"
)
SHAPE = (
    "<p class='hint'>{kind}: {layers} layers of width {width}; {heads} query heads and "
    "{kv_heads} key/value heads of {head_dim} dimensions; an MLP of {ffn}{experts}; "
    "{vocab} tokens in the vocabulary.</p>"
)
EXPERTS = " in each of {experts} experts, {active} per token"
PARAM_ROW = "<tr><td>{name}</td><td class='num'>{exact}</td><td class='num'>{share}</td></tr>"
PARAM_TABLE = (
    "{style}<table class='calc calculator-params'><tr><th>component</th>"
    "<th class='num'>parameters</th><th class='num'>share</th></tr>{rows}<tr><th>total</th>"
    "<th class='num'>{exact}</th><th class='num'>{readable}</th></tr></table>"
)
WEIGHT_ROW = "<tr><td>{fmt}</td><td class='num'>{readable}</td><td class='num'>{exact}</td></tr>"
WEIGHT_TABLE = (
    "{style}<table class='calc calculator-weights'><tr><th>weights in</th>"
    "<th class='num'>memory</th><th class='num'>bytes</th></tr>{rows}</table><p class='hint'>"
    "4, 2, 2, 1 and ½ bytes per parameter. Real int8 and int4 schemes also store a scale per "
    "group of weights (a few percent more) and often keep the embeddings in 16 bits.</p>"
)
KV = (
    "<p>KV cache for a batch of {batch} × {context} tokens in {cache}: <b>{readable}</b> "
    "({exact} bytes) = 2 (a key and a value) × {layers} layers × {kv_heads} K/V heads × "
    "{head_dim} × {context} × {batch} × {per} bytes; {per_token} per token of each sequence."
    "</p>"
)
GQA = (
    "<p>Grouped-query attention: the {heads} query heads share {kv_heads} K/V heads, so the "
    "cache is 1/{ratio} of what multi-head attention would keep.</p>"
)
PAST = (
    "<p class='hint'>{context} tokens are more than the {positions} positions this model "
    "was built for.</p>"
)
TRAIN_ROW = "<tr><td>{part}</td><td class='num'>{fp32}</td><td class='num'>{mixed}</td></tr>"
TRAIN_TABLE = (
    "{style}<table class='calc calculator-training'><tr><th>with Adam</th>"
    "<th class='num'>fp32</th><th class='num'>mixed precision</th></tr>{rows}</table>"
    "<p class='hint'>Mixed precision keeps bf16 weights and gradients for the passes and an "
    "fp32 copy with Adam's two moments for the update: 16 bytes per parameter either way. "
    "What it saves is activation memory and time; activations (which grow with the batch "
    "and the context) are not counted here.</p>"
)
FLOPS = (
    "<p>A forward pass costs <b>{flops}</b> per token at a context of {context} ({exact} "
    "FLOPs): {flops0} for the weight matrices (a multiply and an add for each weight the "
    "token meets), the rest for the attention scores and their weighted sum. Training costs "
    "about three times the forward pass.</p>"
)
MOE = (
    "<p class='hint'>Each token runs {active} of the {experts} experts: it meets {met} "
    "weights of the {total} parameters.</p>"
)
SUMMARY = (
    "<p>Not recalculated: {fields} {to_fix}. The figures below are still those of the last "
    "valid configuration.</p>{messages}"
)
FIELD_MESSAGE = "<p>{text}</p>"
# the result texts' names (and classes) in both homes
OUT_NAMES = {
    k: f"calculator-{k}" + ("-table" if k == "params" else "")
    for k in ("headline", "shape", "params", "weights", "kv", "training", "flops")
}
SECTIONS = {
    "fields": "The config's fields",
    "params": "Parameters",
    "weights": "Weights",
    "kv": "KV cache",
    "training": "Training",
    "flops": "FLOPs per token",
}
UNKNOWN = "Unknown preset {name}: showing {default}."


class CalculatorOptions(Options):
    """The calculator's options; edited fields are not in the link (the preset is)."""

    url: ClassVar[dict[str, str]] = {
        "calc_preset": "preset",
        "calc_context": "ctx",
        "calc_batch": "batch",
        "calc_cache": "cache",
    }

    calc_preset = param.String(default=DEFAULT_PRESET, doc="A published config or our model.")
    calc_context = param.Integer(default=4096, bounds=(0, LIMIT), doc="Tokens in the cache.")
    calc_batch = param.Integer(default=1, bounds=(1, LIMIT), doc="Sequences in the cache.")
    calc_cache = param.Selector(default="bf16", objects=list(FORMATS), doc="The cache's format.")


# -- presets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    name: str
    label: str  # in the preset menu
    config: dict
    note: str  # HTML: where the config comes from


def presets(engine) -> dict[str, Preset]:
    """The published configs, then our models (each as the Hugging Face config of the class
    with its weights; a model no class builds is left out)."""
    out = {
        name: Preset(
            name,
            name,
            config,
            f"<p class='hint'>{html.escape(name)}: the config.json of "
            f"<code>{html.escape(S.SOURCES[name])}</code> on the Hugging Face Hub.</p>",
        )
        for name, config in S.PRESETS.items()
    }
    for name, entry in manifest_entries(engine).items():
        try:
            config = S.our_preset(entry["config"])
        except (KeyError, ValueError):
            continue
        counted = entry.get("n_params")
        said = f"; the manifest counts {counted:,} parameters in it" if counted else ""
        out[name] = Preset(
            name,
            f"{name} (ours)",
            config,
            f"<p class='hint'>Our {html.escape(name)}, as the config of the Hugging Face "
            f"class with the same weights ({CLASSES[config['model_type']]}){said}.</p>",
        )
    return out


def chosen_preset(name: str, known: dict[str, Preset]) -> tuple[str, str]:
    """The preset to show for ``name`` (a link may name one we do not have) and the notice."""
    if name in known:
        return name, ""
    return DEFAULT_PRESET, UNKNOWN.format(name=repr(name), default=DEFAULT_PRESET)


def field_texts(config: dict) -> tuple[dict[str, str], dict[str, bool]]:
    """A config's fields as their inputs show them (an empty one: Hugging Face derives it)
    and its switches."""
    keys = _counted(config["model_type"])
    texts = {k: "" if config.get(k) is None else str(config[k]) for k in keys}
    return texts, S.switches(config)


# -- reading the fields ------------------------------------------------------------------------
def parse_text(name: str, text: str) -> tuple[Any, str | None]:
    """A field's text as a config value: None (empty), an int, a float (``validate`` refuses
    one that is not whole), or a message for text that is no number or a number past
    ``LIMIT``."""
    t = text.strip(SPACE)
    if not t:
        return None, None
    if len(t) > MAX_CHARS:  # the inputs hold no more; a crafted message might (int() of 5000
        return t, f"{name}: more than {MAX_CHARS} characters"  # digits would raise)
    if INTEGER.fullmatch(t):
        value: Any = int(t)
    elif NUMBER.fullmatch(t):
        value = float(t)
    else:
        return t, f"{name}: must be a whole number, not “{t}”"
    n = S.whole(value)
    if n is not None and n > LIMIT:
        return value, f"{name}: must be at most {LIMIT:,}"
    return value, None


def parse_count(name: str, text: str, low: int) -> tuple[int | None, str | None]:
    """The context length or the batch: a whole number from ``low`` to ``LIMIT``."""
    value, message = parse_text(name, text)
    if message:
        return None, message
    if value is None:
        return None, f"{name}: empty"
    n = S.whole(value)
    if n is None:
        return None, f"{name}: must be a whole number, not {value!r}"
    if n < low:
        return None, f"{name}: must be at least {low}"
    return n, None


@dataclass(frozen=True)
class Inputs:
    """What the fields say: the config they make, the context and batch, and every bad
    field's messages (field name -> messages, in the page's order)."""

    config: dict
    context: int | None
    batch: int | None
    messages: dict[str, list[str]]


def read_inputs(
    model_type: str, texts: dict[str, str], switches: dict[str, bool], context: str, batch: str
) -> Inputs:
    """The fields' texts as a config (``model_type``'s fields and switches only), checked by
    ``scale.validate``; a field's own message (not a number) stands for validate's."""
    keys, names = _counted(model_type), S.fields(model_type)[2]
    config: dict[str, Any] = {"model_type": model_type}
    messages: dict[str, list[str]] = {}
    for key in keys:
        config[key], message = parse_text(key, texts.get(key, ""))
        if message:
            messages[key] = [message]
    config.update({k: bool(switches.get(k)) for k in names})
    own = set(messages)
    for message in S.validate(config):
        key = message.partition(":")[0]
        if key not in own:
            messages.setdefault(key, []).append(message)
    n_context, message = parse_count(CONTEXT, context, 0)
    if message:
        messages[CONTEXT] = [message]
    n_batch, message = parse_count(BATCH, batch, 1)
    if message:
        messages[BATCH] = [message]
    order = [*keys, CONTEXT, BATCH]
    ordered = {k: messages[k] for k in order if k in messages}
    ordered.update({k: v for k, v in messages.items() if k not in ordered})
    return Inputs(config, n_context, n_batch, ordered)


# -- the figures -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """Everything the lesson shows of one config, each from scale.py."""

    config: dict
    shape: S.Shape
    params: dict[str, int]
    weights: dict[str, int]
    kv: int
    kv_token: int
    training: dict[str, dict[str, int]]  # "fp32" and "mixed"
    flops: int
    flops0: int
    met: int  # weights a token is multiplied by
    context: int
    batch: int
    cache: str


def calculate(config: dict, context: int, batch: int, cache: str) -> Sizes:
    per = S.BYTES_PER_PARAM[cache]
    return Sizes(
        config=config,
        shape=S.shape_of(config),
        params=S.count_params(config),
        weights={f: S.weight_bytes(config, f) for f in FORMATS},
        kv=S.kv_cache_bytes(config, context, batch, per),
        kv_token=S.kv_cache_bytes(config, 1, 1, per),
        training={
            "fp32": S.training_bytes(config, False),
            "mixed": S.training_bytes(config, True),
        },
        flops=S.flops_per_token(config, context),
        flops0=S.flops_per_token(config, 0),
        met=S.matmul_weights_per_token(config),
        context=context,
        batch=batch,
        cache=cache,
    )


def numbers(z: Sizes) -> dict[str, int]:
    """Every number shown, exact, by a name (the page keeps them in ``calculator-numbers``)."""
    out = {f"params.{k}": v for k, v in z.params.items()}
    out.update({f"weights.{k}": v for k, v in z.weights.items()})
    out.update(kv=z.kv, kv_token=z.kv_token, flops=z.flops, flops0=z.flops0, met=z.met)
    for mode, parts in z.training.items():
        out.update({f"training.{mode}.{k}": v for k, v in parts.items()})
    return out


def _unit(n: int, kind: str) -> tuple[int, float, str]:
    """(step count k, step**k, unit) of the largest unit that ``n`` reaches."""
    step, names = UNITS[kind]
    k = 0
    while k + 1 < len(names) and n >= step ** (k + 1):
        k += 1
    return k, float(step**k), names[k]


def readable(n: int, kind: str) -> str:
    """``n`` parameters, bytes or FLOPs for a person: 6.74 B, 12.55 GiB, 14.48 GFLOPs."""
    k, size, unit = _unit(n, kind)
    return f"{n:,}{unit}" if k == 0 else f"{n / size:.2f}{unit}"


def headline_html(z: Sizes) -> str:
    return HEADLINE.format(
        params=readable(z.params["total"], "params"),
        weights=readable(z.weights["bf16"], "bytes"),
        kv=readable(z.kv, "bytes"),
        batch=f"{z.batch:,}",
        context=f"{z.context:,}",
        cache=z.cache,
        training=readable(z.training["mixed"]["total"], "bytes"),
    )


def shape_html(z: Sizes) -> str:
    s = z.shape
    experts = EXPERTS.format(experts=s.experts, active=s.active_experts) if s.experts > 1 else ""
    return SHAPE.format(
        kind=CLASSES[s.model_type],
        layers=f"{s.layers:,}",
        width=f"{s.width:,}",
        heads=f"{s.heads:,}",
        kv_heads=f"{s.kv_heads:,}",
        head_dim=f"{s.head_dim:,}",
        ffn=f"{s.ffn:,}",
        experts=experts,
        vocab=f"{s.vocab:,}",
    )


def _share(part: int, total: int) -> str:
    return f"{float(part) / float(total) * 100:.1f}%"


def component_name(key: str, z: Sizes) -> str:
    return "LM head (tied)" if key == "lm_head" and z.shape.tied else COMPONENTS[key]


def params_html(z: Sizes) -> str:
    total = z.params["total"]
    rows = "".join(
        PARAM_ROW.format(name=component_name(k, z), exact=f"{v:,}", share=_share(v, total))
        for k, v in z.params.items()
        if k != "total"
    )
    return PARAM_TABLE.format(
        style=TABLE_STYLE, rows=rows, exact=f"{total:,}", readable=readable(total, "params")
    )


def weights_html(z: Sizes) -> str:
    rows = "".join(
        WEIGHT_ROW.format(fmt=f, readable=readable(v, "bytes"), exact=f"{v:,}")
        for f, v in z.weights.items()
    )
    return WEIGHT_TABLE.format(style=TABLE_STYLE, rows=rows)


def positions_of(config: dict) -> int | None:
    """The positions the model was built for (GPT-2's table, the LLaMA family's setting)."""
    value = config.get("n_positions") if config["model_type"] == S.GPT2 else None
    value = value if value is not None else config.get("max_position_embeddings")
    return S.whole(value) if value is not None else None


def kv_html(z: Sizes) -> str:
    s = z.shape
    text = KV.format(
        batch=f"{z.batch:,}",
        context=f"{z.context:,}",
        cache=z.cache,
        readable=readable(z.kv, "bytes"),
        exact=f"{z.kv:,}",
        layers=f"{s.layers:,}",
        kv_heads=f"{s.kv_heads:,}",
        head_dim=f"{s.head_dim:,}",
        per=f"{S.BYTES_PER_PARAM[z.cache]:g}",
        per_token=readable(z.kv_token, "bytes"),
    )
    if s.kv_heads < s.heads:
        text += GQA.format(
            heads=f"{s.heads:,}", kv_heads=f"{s.kv_heads:,}", ratio=f"{s.heads // s.kv_heads:,}"
        )
    positions = positions_of(z.config)
    if positions is not None and z.context > positions:
        text += PAST.format(context=f"{z.context:,}", positions=f"{positions:,}")
    return text


def training_html(z: Sizes) -> str:
    rows = "".join(
        TRAIN_ROW.format(
            part=label,
            fp32=readable(z.training["fp32"][k], "bytes"),
            mixed=readable(z.training["mixed"][k], "bytes"),
        )
        for k, label in TRAINING_PARTS.items()
    )
    return TRAIN_TABLE.format(style=TABLE_STYLE, rows=rows)


def flops_html(z: Sizes) -> str:
    text = FLOPS.format(
        flops=readable(z.flops, "flops"),
        context=f"{z.context:,}",
        exact=f"{z.flops:,}",
        flops0=readable(z.flops0, "flops"),
    )
    s = z.shape
    if s.experts > 1:
        text += MOE.format(
            active=s.active_experts,
            experts=s.experts,
            met=readable(z.met, "params"),
            total=readable(z.params["total"], "params"),
        )
    return text


def bars_data(z: Sizes) -> tuple[dict, list[str], float, str]:
    """The bar figure's data (a bar per component, in the unit of the total), its factors
    (first component on top), the x range's end and the axis label."""
    _, size, unit = _unit(z.params["total"], "params")
    parts = [(k, v) for k, v in z.params.items() if k != "total"]
    names = [component_name(k, z) for k, _ in parts]
    x = [float(v) / size for _, v in parts]
    label = [readable(v, "params") for _, v in parts]
    end = max(x) * 1.45
    data = dict(name=names, x=x, label=label)
    return data, list(reversed(names)), end, AXIS[unit]


def summary_html(messages: dict[str, list[str]]) -> str:
    """What stops the calculation, above the figures it left as they were."""
    names = list(messages)
    fields = ", ".join(names)
    said = "".join(
        FIELD_MESSAGE.format(text=html.escape(m)) for ms in messages.values() for m in ms
    )
    to_fix = "needs fixing" if len(names) == 1 else "need fixing"
    return SUMMARY.format(fields=html.escape(fields), to_fix=to_fix, messages=said)


def field_message_html(messages: list[str]) -> str:
    """Beside the field: its messages without the field's name in front."""
    return "".join(
        FIELD_MESSAGE.format(text=html.escape(m.partition(": ")[2] or m)) for m in messages
    )


def field_label(key: str) -> str:
    """A key that may break after its underscores (a phone's narrow fields)."""
    return html.escape(key).replace("_", "_<wbr>")


class BarFigure:
    """Parameters by component, a bar each with its count written beside it."""

    def __init__(self, style: PlotStyle):
        width, height = FIGURE_SIZE[style.classroom]
        self.source = ColumnDataSource(data=dict(name=[], x=[], label=[]), name="calculator-bars")
        self.figure = styled_figure(
            style,
            width,
            height,
            "Parameters by component",
            y_range=FactorRange(factors=["embeddings"]),
            x_range=Range1d(0, 1),
            name="calculator-params",
        )
        title_over_axis(self.figure)
        self.figure.hbar(y="name", right="x", height=0.6, color="#4c78a8", source=self.source)
        self.figure.text(
            x="x",
            y="name",
            text="label",
            x_offset=4,
            text_baseline="middle",
            text_font_size=style.tick,
            text_color=style.text,
            source=self.source,
        )
        self.figure.xaxis.axis_label = "parameters"

    def draw(self, z: Sizes) -> None:
        data, factors, end, axis = bars_data(z)
        self.figure.y_range.factors = factors
        self.figure.x_range.end = end
        self.figure.xaxis.axis_label = axis
        self.source.data = data


# -- the dashboard -----------------------------------------------------------------------------
class Field:
    """One config field: its key, a text input (or a true/false menu) and its message."""

    def __init__(self, key: str, classroom: bool, switch: bool = False, label: str = ""):
        width = FIELD_WIDTH[classroom]
        cls = f"calculator-{key}"
        if switch:
            self.input = OptionSelect(options=["true", "false"], width=width, css_classes=[cls])
        else:
            self.input = pn.widgets.TextInput(
                max_length=MAX_CHARS,
                placeholder=PLACEHOLDERS.get(key, ""),
                width=width,
                css_classes=[cls],
            )
        self.message = text_pane(
            "", "message", "error", f"{cls}-message", visible=False, width=width, margin=(0, 5)
        )
        # as widgets.labelled, the caption as wide as the field (a long key breaks at its
        # underscores): two fields side by side on a phone
        caption = text_pane(label or field_label(key), "control-label", margin=(0, 5), width=width)
        self.box = pn.Column(
            caption, self.input, self.message, css_classes=["control"], margin=(0, 10, 5, 0)
        )

    @property
    def text(self) -> str:
        """What the field holds now (a text input's as typed, key by key)."""
        if isinstance(self.input, pn.widgets.Select):
            return self.input.value
        return self.input.value_input

    @text.setter
    def text(self, value: str) -> None:
        if isinstance(self.input, pn.widgets.Select):
            self.input.value = value
        else:
            self.input.param.update(value=value, value_input=value)

    def say(self, messages: list[str]) -> None:
        self.message.object = field_message_html(messages)
        self.message.visible = bool(messages)


class CalculatorLesson(LessonView):
    """A published or our own config, every field editable, and what it implies."""

    def __init__(self, **params):
        super().__init__(**params)
        s, style = self.state, self.style
        self._presets = presets(s.engine)
        self._loading = False  # filling the fields: one calculation when they are all in
        self._pushing = False  # writing the typed context and batch to the state
        wide = MENU_WIDTH[style.classroom]
        self._preset = OptionSelect(
            options={p.label: p.name for p in self._presets.values()},
            value=chosen_preset(s.calc_preset, self._presets)[0],
            width=wide,
            css_classes=["calculator-preset"],
        )
        self._cache = OptionSelect(
            options=list(FORMATS),
            value=s.calc_cache,
            width=wide // 2,
            css_classes=["calculator-cache"],
        )
        self._fields = {k: Field(k, style.classroom) for k in ALL_FIELDS}
        self._fields.update({k: Field(k, style.classroom, switch=True) for k in ALL_SWITCHES})
        self._counts = {
            CONTEXT: Field(CONTEXT, style.classroom, label="Context length"),
            BATCH: Field(BATCH, style.classroom, label="Batch"),
        }
        self._counts[CONTEXT].text = str(s.calc_context)
        self._counts[BATCH].text = str(s.calc_batch)
        for f in [*self._fields.values(), *self._counts.values()]:
            name = "value" if isinstance(f.input, pn.widgets.Select) else "value_input"
            f.input.param.watch(lambda _e: self._edited(), name)
        self._preset.param.watch(lambda e: setattr(s, "calc_preset", e.new), "value")
        self._cache.param.watch(lambda e: setattr(s, "calc_cache", e.new), "value")
        self._figure = BarFigure(style)
        self.numbers: dict[str, int] = {}  # every number shown (calculator.numbers)
        explain = lambda k: text_pane(  # noqa: E731
            "", "explain", OUT_NAMES.get(k, f"calculator-{k}"), sizing_mode="stretch_width"
        )
        self._summary = text_pane(
            "", "message", "error", "calculator-summary", visible=False, sizing_mode="stretch_width"
        )
        self._notice = text_pane("", "notice", "calculator-notice", visible=False)
        self._note = explain("note")
        self._headline = explain("headline")
        self._shape = explain("shape")
        self._params = text_pane(
            "", "explain", "calculator-params-table", width=TABLE_WIDTH[style.classroom]
        )
        self._weights = explain("weights")
        self._kv = explain("kv")
        self._training = explain("training")
        self._flops = explain("flops")
        # every family's fields, those of the preset's shown (a widget added to a page later
        # would miss the page's style sheets)
        boxes = [f.box for f in self._fields.values()]
        self._grid = pn.FlexBox(*boxes, sizing_mode="stretch_width")
        section = lambda k: text_pane(f"<h3>{SECTIONS[k]}</h3>", "detail")  # noqa: E731
        self._layout = pn.Column(
            self._notice,
            pn.FlexBox(
                labelled("Preset", self._preset),
                self._counts[CONTEXT].box,
                self._counts[BATCH].box,
                labelled("Cache in", self._cache),
                sizing_mode="stretch_width",
            ),
            self._note,
            self._summary,
            self._headline,
            self._shape,
            section("fields"),
            self._grid,
            section("params"),
            pn.FlexBox(
                pn.pane.Bokeh(self._figure.figure, margin=(5, 5)),
                self._params,
                sizing_mode="stretch_width",
            ),
            section("weights"),
            self._weights,
            section("kv"),
            self._kv,
            section("training"),
            self._training,
            section("flops"),
            self._flops,
            margin=0,
            sizing_mode="stretch_width",
        )
        self._load()

    @property
    def model_type(self) -> str:
        return self._presets[self._preset.value].config["model_type"]

    # -- the inputs ----------------------------------------------------------------------------
    @param.depends("state.calc_preset", watch=True)
    def _load(self) -> None:
        """Fill the fields from the preset (edits to the last one are dropped)."""
        name, notice = chosen_preset(self.state.calc_preset, self._presets)
        self._notice.object = f"<p>{html.escape(notice)}</p>"
        self._notice.visible = bool(notice)
        preset = self._presets[name]
        texts, switches = field_texts(preset.config)
        self._loading = True
        try:
            self._preset.value = name
            for key, text in texts.items():
                self._fields[key].text = text
            for key, on in switches.items():
                self._fields[key].text = "true" if on else "false"
        finally:
            self._loading = False
        model_type = preset.config["model_type"]
        shown = {*_counted(model_type), *S.fields(model_type)[2]}
        for key, f in self._fields.items():
            f.box.visible = key in shown
        self._note.object = preset.note
        self._edited()

    @param.depends("state.calc_context", "state.calc_batch", "state.calc_cache", watch=True)
    def _option_changed(self) -> None:
        """A link or a menu changed an option: the fields follow, then the figures."""
        s = self.state
        if self._pushing:
            return
        self._loading = True
        try:
            for name, value in ((CONTEXT, s.calc_context), (BATCH, s.calc_batch)):
                if parse_count(name, self._counts[name].text, 0)[0] != value:
                    self._counts[name].text = str(value)
            self._cache.value = s.calc_cache
        finally:
            self._loading = False
        self._edited()

    def _edited(self) -> None:
        if not self._loading:
            self._recompute()

    def read(self) -> Inputs:
        """What the fields say now."""
        keys, names = _counted(self.model_type), S.fields(self.model_type)[2]
        texts = {k: self._fields[k].text for k in keys}
        switches = {k: self._fields[k].text == "true" for k in names}
        return read_inputs(
            self.model_type, texts, switches, self._counts[CONTEXT].text, self._counts[BATCH].text
        )

    @draws
    def _recompute(self) -> None:
        inputs = self.read()
        for key, f in [*self._fields.items(), *self._counts.items()]:
            f.say(inputs.messages.get(key, []))
        self._summary.object = summary_html(inputs.messages) if inputs.messages else ""
        self._summary.visible = bool(inputs.messages)
        if inputs.messages:
            return  # the last valid figures stay
        z = calculate(inputs.config, inputs.context, inputs.batch, self.state.calc_cache)
        self.show(z)
        self._pushing = True
        try:
            self.state.param.update(calc_context=z.context, calc_batch=z.batch)
        finally:
            self._pushing = False

    def show(self, z: Sizes) -> None:
        self._headline.object = headline_html(z)
        self._shape.object = shape_html(z)
        self._params.object = params_html(z)
        self._weights.object = weights_html(z)
        self._kv.object = kv_html(z)
        self._training.object = training_html(z)
        self._flops.object = flops_html(z)
        self._figure.draw(z)
        self.numbers = numbers(z)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout


# -- the snapshot ------------------------------------------------------------------------------
# The same texts and figure. js/calculator.js is scale.py's arithmetic in BigInt (exact, as
# Python's ints), reading the presets' fields embedded here as text and filling the templates
# above; one callback serves every input (it tells the preset menu from the fields).


def page_spec(known: dict[str, Preset]) -> str:
    """What the page's twin reads, as JSON: the presets (their fields as text), the families'
    fields, the formats, the names and every template."""
    spec = dict(
        presets={
            n: dict(model_type=p.config["model_type"], texts=t, switches=sw, note=p.note)
            for n, p in known.items()
            for t, sw in [field_texts(p.config)]
        },
        fields={t: list(map(list, S.fields(t))) for t in S.MODEL_TYPES},
        switches=list(ALL_SWITCHES),
        formats=[[f, S.BYTES_PER_PARAM[f]] for f in FORMATS],
        limit=str(LIMIT),
        max_chars=MAX_CHARS,
        classes=CLASSES,
        components=COMPONENTS,
        training=list(TRAINING_PARTS.items()),
        units={k: [step, list(names)] for k, (step, names) in UNITS.items()},
        axis=AXIS,
        table_style=TABLE_STYLE,
        templates=dict(
            headline=HEADLINE,
            shape=SHAPE,
            experts=EXPERTS,
            param_row=PARAM_ROW,
            param_table=PARAM_TABLE,
            weight_row=WEIGHT_ROW,
            weight_table=WEIGHT_TABLE,
            kv=KV,
            gqa=GQA,
            past=PAST,
            train_row=TRAIN_ROW,
            train_table=TRAIN_TABLE,
            flops=FLOPS,
            moe=MOE,
            summary=SUMMARY,
            field_message=FIELD_MESSAGE,
        ),
    )
    return json.dumps(spec, ensure_ascii=False)


def _text_input(ctx: Context, key: str, text: str, width: int) -> TextInput:
    return TextInput(
        value=text,
        value_input=text,
        max_length=MAX_CHARS,
        placeholder=PLACEHOLDERS.get(key, ""),
        width=width,
        css_classes=[f"calculator-{key}"],
        name=f"calculator-{key}",
        stylesheets=[ctx.stylesheet],
    )


def _message_div(ctx: Context, key: str, width: int):
    cls = f"calculator-{key}-message"
    return div(ctx, "", "message", "error", cls, name=cls, width=width, visible=False)


def snapshot(ctx: Context):
    style = ctx.style
    known = presets(ctx.engine)
    name, notice = chosen_preset(ctx.selection.calc_preset, known)
    preset = known[name]
    texts, switches = field_texts(preset.config)
    width = FIELD_WIDTH[style.classroom]
    shown = {*_counted(preset.config["model_type"]), *S.fields(preset.config["model_type"])[2]}
    inputs, boxes, notes = [], [], []
    for key in (*ALL_FIELDS, *ALL_SWITCHES):
        if key in ALL_SWITCHES:
            widget = Select(
                options=["true", "false"],
                value="true" if switches.get(key) else "false",
                width=width,
                css_classes=[f"calculator-{key}"],
                name=f"calculator-{key}",
                stylesheets=[ctx.stylesheet],
            )
        else:
            widget = _text_input(ctx, key, texts.get(key, ""), width)
        note = _message_div(ctx, key, width)
        label = div(ctx, f"<b>{field_label(key)}</b>", "explain", width=width)
        inputs.append(widget)
        notes.append(note)
        boxes.append(column(label, widget, note, visible=key in shown))
    s = ctx.selection
    counts, count_notes = [], []
    for key, value in ((CONTEXT, s.calc_context), (BATCH, s.calc_batch)):
        counts.append(_text_input(ctx, key, str(value), width))
        count_notes.append(_message_div(ctx, key, width))
    menu = MENU_WIDTH[style.classroom]
    select = Select(
        options=[(p.name, p.label) for p in known.values()],
        value=name,
        width=menu,
        css_classes=["calculator-preset"],
        name="calculator-preset",
        stylesheets=[ctx.stylesheet],
    )
    cache = Select(
        options=list(FORMATS),
        value=s.calc_cache,
        width=menu // 2,
        css_classes=["calculator-cache"],
        name="calculator-cache",
        stylesheets=[ctx.stylesheet],
    )
    z = calculate(preset.config, s.calc_context, s.calc_batch, s.calc_cache)
    figure = BarFigure(style)
    figure.draw(z)
    shown_numbers = numbers(z)
    record = ColumnDataSource(
        data=dict(key=list(shown_numbers), value=[str(v) for v in shown_numbers.values()]),
        name="calculator-numbers",
    )
    out = {
        "headline": headline_html(z),
        "shape": shape_html(z),
        "params": params_html(z),
        "weights": weights_html(z),
        "kv": kv_html(z),
        "training": training_html(z),
        "flops": flops_html(z),
    }
    divs = {k: div(ctx, v, "explain", OUT_NAMES[k], name=OUT_NAMES[k]) for k, v in out.items()}
    divs["params"].sizing_mode = "fixed"
    divs["params"].width = TABLE_WIDTH[style.classroom]
    summary = div(ctx, "", "message", "error", "calculator-summary", name="calculator-summary",
                  visible=False)  # fmt: skip
    note = div(ctx, preset.note, "explain", "calculator-note", name="calculator-note")
    args = dict(
        spec=page_spec(known),
        keys=[*ALL_FIELDS, *ALL_SWITCHES],
        inputs=inputs,
        boxes=boxes,
        notes=notes,
        counts=counts,
        count_notes=count_notes,
        preset=select,
        cache=cache,
        summary=summary,
        note=note,
        out=[divs[k] for k in out],
        out_keys=list(out),
        bars=figure.source,
        fig=figure.figure,
        xaxis=figure.figure.xaxis[0],
        record=record,
    )
    cb = callback("calculator", "changed(cb_obj)", **args)
    for w in (*inputs, *counts):
        w.js_on_change("value_input" if isinstance(w, TextInput) else "value", cb)
    select.js_on_change("value", cb)
    cache.js_on_change("value", cb)
    caption = lambda title: div(ctx, f"<b>{title}</b>", "explain", width=width)  # noqa: E731
    section = lambda k: div(ctx, f"<h3>{SECTIONS[k]}</h3>", "detail")  # noqa: E731
    top = [
        column(div(ctx, "<b>Preset</b>", "explain", width=menu), select),
        column(caption("Context length"), counts[0], count_notes[0]),
        column(caption("Batch"), counts[1], count_notes[1]),
        column(div(ctx, "<b>Cache in</b>", "explain", width=menu // 2), cache),
    ]
    parts = [
        div(ctx, f"<p>{html.escape(notice)}</p>", "notice", name="calculator-notice")
    ] if notice else []  # fmt: skip
    return column(
        *parts,
        row(*top),
        note,
        summary,
        divs["headline"],
        divs["shape"],
        section("fields"),
        row(*boxes),
        section("params"),
        row(figure.figure, divs["params"]),
        section("weights"),
        divs["weights"],
        section("kv"),
        divs["kv"],
        section("training"),
        divs["training"],
        section("flops"),
        divs["flops"],
        sizing_mode="stretch_width",
    )
