"""The calculator's dashboard view and its pure helpers, without a browser: every figure it
shows is dashboard/lessons/scale.py's (itself exact against Hugging Face's models in
test_lesson_scale.py) for every preset and for edits; a bad field gets its message and the
last valid figures stay. tests/test_browser_calculator.py checks the page's twin."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pytest

from dashboard.lessons import scale as S
from dashboard.state import AnatomyState
from dashboard.views import calculator as C
from dashboard.views.recipes import manifest_entries
from models.runtime import STATIC_DIR, Engine


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def expected(config: dict, context: int, batch: int, cache: str) -> dict[str, int]:
    """Every number the lesson shows, straight from scale.py on the config as published."""
    per = S.BYTES_PER_PARAM[cache]
    out = {f"params.{k}": v for k, v in S.count_params(config).items()}
    out.update({f"weights.{f}": S.weight_bytes(config, f) for f in S.BYTES_PER_PARAM})
    out.update(
        kv=S.kv_cache_bytes(config, context, batch, per),
        kv_token=S.kv_cache_bytes(config, 1, 1, per),
        flops=S.flops_per_token(config, context),
        flops0=S.flops_per_token(config, 0),
        met=S.matmul_weights_per_token(config),
    )
    for mode, mixed in (("fp32", False), ("mixed", True)):
        out.update({f"training.{mode}.{k}": v for k, v in S.training_bytes(config, mixed).items()})
    return out


def _view(engine, **options):
    state = AnatomyState(engine=engine, lesson="calculator")
    state.param.update(**options)
    return state, C.CalculatorLesson(state=state)


def _shown(view) -> dict[str, int]:
    return dict(view.numbers)


def _type(view, key: str, text: str) -> None:
    """As a person types into a field (or picks a switch's value)."""
    fields = {**view._fields, **view._counts}
    fields[key].text = text


# -- the presets' fields read back to the published configs' figures ---------------------------
def test_every_presets_fields_give_scales_figures_for_the_published_config(engine):
    known = C.presets(engine)
    assert list(known)[: len(S.PRESETS)] == list(S.PRESETS)
    assert {"anatomy-gpt", "anatomy-llama"} <= set(known)
    for name, preset in known.items():
        texts, switches = C.field_texts(preset.config)
        read = C.read_inputs(preset.config["model_type"], texts, switches, "32768", "8")
        assert read.messages == {}, name
        z = C.calculate(read.config, read.context, read.batch, "int4")
        assert C.numbers(z) == expected(preset.config, 32768, 8, "int4"), name


def test_our_models_say_the_manifests_count_which_is_scales(engine):
    known = C.presets(engine)
    for name, entry in manifest_entries(engine).items():
        total = S.count_params(known[name].config)["total"]
        assert total == entry["n_params"]
        assert f"the manifest counts {total:,} parameters" in known[name].note
        assert known[name].label == f"{name} (ours)"


# -- the view ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "options"),
    [
        ("Llama 2 7B", {}),
        ("Llama 2 70B", dict(calc_context=131072, calc_batch=16, calc_cache="fp32")),
        ("Mixtral 8x7B", dict(calc_context=32768, calc_batch=8)),
        ("GPT-2 small", dict(calc_cache="int8")),
        ("Qwen2 0.5B", dict(calc_context=0)),
        ("anatomy-llama", dict(calc_context=200, calc_batch=3)),
    ],
)
def test_the_view_shows_scales_figures_for_a_preset(engine, preset, options):
    state, view = _view(engine, calc_preset=preset, **options)
    config = C.presets(engine)[preset].config
    context, batch, cache = state.calc_context, state.calc_batch, state.calc_cache
    assert _shown(view) == expected(config, context, batch, cache)
    z = C.calculate(config, context, batch, cache)
    assert view._headline.object == C.headline_html(z)
    assert view._params.object == C.params_html(z)
    assert view._weights.object == C.weights_html(z)
    assert view._kv.object == C.kv_html(z)
    assert view._training.object == C.training_html(z)
    assert view._flops.object == C.flops_html(z)
    assert view._shape.object == C.shape_html(z)
    # the bars: a bar per component, in the unit of the total, labelled with its count
    bars = view._figure.source.data
    parts = {k: v for k, v in S.count_params(config).items() if k != "total"}
    assert len(bars["x"]) == len(parts)
    unit = 1e9 if parts and sum(parts.values()) >= 10**9 else None
    if unit:
        assert bars["x"] == pytest.approx([v / unit for v in parts.values()], rel=1e-15)
        assert view._figure.figure.xaxis[0].axis_label == "billions"
    assert view._figure.figure.y_range.factors == list(reversed(bars["name"]))
    assert not view._summary.visible
    # only the preset's family's fields are on show
    shown = {k for k, f in view._fields.items() if f.box.visible}
    required, optional, switches = S.fields(config["model_type"])
    assert shown == {*required, *optional, *switches}


def test_switching_preset_fills_the_fields_and_the_figures_follow(engine):
    state, view = _view(engine)
    assert view._fields["hidden_size"].text == "4096"
    assert view._fields["tie_word_embeddings"].text == "false"
    state.calc_preset = "GPT-2 XL"
    assert view._fields["n_embd"].text == "1600" and view._fields["n_inner"].text == ""
    assert view._fields["tie_word_embeddings"].text == "true"
    assert _shown(view)["params.total"] == 1_557_611_200  # GPT-2 XL, tied: 1.56 B
    assert "1.56 B</b> parameters" in view._headline.object
    # the menu is the link's option, both ways
    view._preset.value = "Llama 3 8B"
    assert state.calc_preset == "Llama 3 8B"
    assert _shown(view)["params.total"] == S.count_params(S.PRESETS["Llama 3 8B"])["total"]


def test_edited_fields_give_scales_figures_for_the_edited_config(engine):
    state, view = _view(engine, calc_preset="Llama 2 7B")
    edits = {
        "num_key_value_heads": "8",
        "vocab_size": " 128256 ",
        "intermediate_size": "1.4336e4",
        "head_dim": "",
        "tie_word_embeddings": "true",
        "attention_bias": "true",
        "context": "100000",
        "batch": "4",
    }
    config = dict(S.PRESETS["Llama 2 7B"])
    config.update(
        num_key_value_heads=8,
        vocab_size=128256,
        intermediate_size=14336,
        tie_word_embeddings=True,
        attention_bias=True,
    )
    for key, text in edits.items():
        _type(view, key, text)
    assert _shown(view) == expected(config, 100000, 4, "bf16")
    assert (state.calc_context, state.calc_batch) == (100000, 4)  # in the link now
    assert "1/4 of what multi-head attention would keep" in view._kv.object
    assert "100,000 tokens are more than the 4,096 positions" in view._kv.object
    assert "LM head (tied)" in view._params.object
    # the cache's format
    state.calc_cache = "int4"
    assert _shown(view)["kv"] == math.ceil(S.kv_cache_bytes(config, 100000, 4, 2) / 4)
    # a new preset drops the edits
    state.calc_preset = "Mixtral 8x7B"
    state.calc_preset = "Llama 2 7B"
    assert view._fields["num_key_value_heads"].text == "32"


BAD = [
    ("hidden_size", "", "hidden_size: empty"),
    ("hidden_size", "abc", "hidden_size: must be a whole number, not “abc”"),
    ("hidden_size", "4096.5", "hidden_size: must be a whole number, not 4096.5"),
    ("num_hidden_layers", "-3", "num_hidden_layers: must be positive, not -3"),
    ("num_hidden_layers", "0", "num_hidden_layers: must be positive, not 0"),
    ("num_attention_heads", "31", "num_attention_heads: 31 heads do not divide hidden_size = 4096"),
    ("num_key_value_heads", "5", "5 key/value heads do not divide num_attention_heads = 32"),
    ("vocab_size", "1e13", "vocab_size: must be at most 1,000,000,000,000"),
    ("vocab_size", "<b>x</b>", "vocab_size: must be a whole number, not “<b>x</b>”"),
    ("context", "-1", "context: must be at least 0"),
    ("context", "2.5", "context: must be a whole number, not 2.5"),
    ("batch", "0", "batch: must be at least 1"),
    ("batch", "", "batch: empty"),
]


@pytest.mark.parametrize(("key", "text", "message"), BAD)
def test_a_bad_field_says_why_beside_it_and_the_last_result_stays(engine, key, text, message):
    state, view = _view(engine, calc_preset="Llama 2 7B")
    _type(view, "num_hidden_layers", "40")  # a valid edit: the result to keep
    before = _shown(view)
    texts = (view._headline.object, view._params.object, view._kv.object)
    field = {**view._fields, **view._counts}[key]
    good = field.text
    _type(view, key, text)
    assert field.message.visible
    beside = message.partition(": ")[2] or message
    assert html.escape(beside) in field.message.object and "<b>" not in field.message.object
    assert view._summary.visible and html.escape(message) in view._summary.object
    assert "Not recalculated" in view._summary.object
    assert _shown(view) == before
    assert (view._headline.object, view._params.object, view._kv.object) == texts
    assert state.calc_context == 4096 and state.calc_batch == 1
    # fixed: recomputed, the messages gone
    _type(view, key, good)
    assert not field.message.visible and not view._summary.visible
    assert _shown(view) == before


def test_two_bad_fields_are_both_named_in_the_summary(engine):
    _, view = _view(engine, calc_preset="GPT-2 small")
    _type(view, "n_head", "7")
    _type(view, "n_layer", "x")
    assert "n_layer, n_head need fixing" in view._summary.object
    assert view._fields["n_head"].message.visible and view._fields["n_layer"].message.visible


def test_a_link_sets_context_batch_and_cache_and_an_unknown_preset_is_said(engine):
    state, view = _view(engine, calc_context=8192, calc_batch=2, calc_cache="fp32")
    assert view._counts["context"].text == "8192" and view._counts["batch"].text == "2"
    assert _shown(view)["kv"] == S.kv_cache_bytes(S.PRESETS["Llama 2 7B"], 8192, 2, 4)
    state.calc_preset = "<script>GPT-5</script>"
    assert view._notice.visible and "&lt;script&gt;" in view._notice.object
    assert "showing Llama 2 7B" in view._notice.object
    assert view._preset.value == "Llama 2 7B"
    state.calc_preset = "GPT-2 small"
    assert not view._notice.visible


# -- the pure helpers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "kind", "text"),
    [
        (0, "params", "0"),
        (999, "params", "999"),
        (1000, "params", "1.00 K"),
        (6_738_415_616, "params", "6.74 B"),
        (10**15, "params", "1000.00 T"),
        (1023, "bytes", "1,023 B"),
        (1024, "bytes", "1.00 KiB"),
        (2**30 - 1, "bytes", "1024.00 MiB"),
        (13_476_831_232, "bytes", "12.55 GiB"),
        (2**60, "bytes", "1024.00 PiB"),
        (14_287_896_576, "flops", "14.29 GFLOPs"),
        (512, "flops", "512 FLOPs"),
    ],
)
def test_readable(n, kind, text):
    assert C.readable(n, kind) == text


@pytest.mark.parametrize(
    ("text", "value", "said"),
    [
        ("4096", 4096, None),
        (" +12\n", 12, None),
        ("0012", 12, None),
        ("1e3", 1000.0, None),
        ("1.5", 1.5, None),
        (".5", 0.5, None),
        ("", None, None),
        ("  ", None, None),
        ("1_000", "1_000", "must be a whole number"),
        ("0x10", "0x10", "must be a whole number"),
        ("inf", "inf", "must be a whole number"),
        ("١٢", "١٢", "must be a whole number"),  # digits, but not ones the page reads
        (str(10**12), 10**12, None),
        (str(10**12 + 1), 10**12 + 1, "at most"),
        ("9" * 5000, "9" * 5000, "more than 40 characters"),  # never int(): it would raise
    ],
)
def test_parse_text(text, value, said):
    got, message = C.parse_text("n", text)
    assert got == value and type(got) is type(value)
    assert (message is None) == (said is None) and (said or "") in (message or "")


def test_the_fields_and_switches_of_each_family():
    for model_type in S.MODEL_TYPES:
        required, optional, switches = S.fields(model_type)
        preset = next(c for c in S.PRESETS.values() if c["model_type"] == model_type)
        assert all(k in preset for k in required)
        assert S.validate({k: v for k, v in preset.items() if k not in optional}) == []
        # every required field's absence is refused, and named
        for key in required:
            assert S.validate({k: v for k, v in preset.items() if k != key})[0].startswith(key)
        assert set(S.switches(preset)) == set(switches)
    assert S.switches({"model_type": "gpt2"}) == {"tie_word_embeddings": True}
    assert S.switches({"model_type": "llama"}) == dict.fromkeys(S.fields("llama")[2], False)
    assert S.switches({"model_type": "qwen2", "attention_bias": True}) == {
        "tie_word_embeddings": False
    }
    with pytest.raises(ValueError, match="model_type"):
        S.fields("bert")


def test_the_summary_and_messages_escape_what_was_typed():
    messages = {"vocab_size": ["vocab_size: must be a whole number, not “<img src=x>”"]}
    said = C.summary_html(messages) + C.field_message_html(messages["vocab_size"])
    assert "<img" not in said and "&lt;img src=x&gt;" in said
    assert re.search(r"vocab_size needs fixing", said)


def test_the_spec_holds_pythons_presets(engine):
    """The page reads the presets from Python's PRESETS (nothing retyped in JavaScript)."""
    spec = json.loads(C.page_spec(C.presets(engine)))
    for name, config in S.PRESETS.items():
        texts, switches = C.field_texts(config)
        assert spec["presets"][name]["texts"] == texts
        assert spec["presets"][name]["switches"] == switches
    js = Path(__file__).resolve().parent.parent / "dashboard" / "views" / "js"
    source = (js / "calculator.js").read_text(encoding="utf-8")
    assert "11008" not in source and "Llama" not in source
