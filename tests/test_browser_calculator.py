"""The calculator in a real Chromium: the snapshot's twin of scale.py (js/calculator.js, in
BigInt) gives exactly Python's numbers and texts for every preset and for edited configs, past
2^53 too; typing recomputes, a bad field says why beside it and keeps the last result; the
dashboard switches presets and recomputes as one types; a phone and a projector fit.

Oracles: dashboard/lessons/scale.py called here on the same config (exact against Hugging
Face's models in test_lesson_scale.py), Python's repr, and calculator.py's own templates."""

from __future__ import annotations

import html
import math
import re
import urllib.parse

import pytest
from playwright.sync_api import expect

from dashboard.lessons import scale as S
from dashboard.views import calculator as C
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import (
    JS_TITLE,
    ROOT,
    cut_text,
    cut_titles,
    model_get,
    model_set,
    open_offline,
    overflow,
    record_errors,
    serve,
    small_things,
)
from tests.test_view_calculator import expected

pytestmark = pytest.mark.browser

TEXT = "If the file does not exist, an exception is raised."
READY = 'doc.get_model_by_name("calculator-headline") != null'
JS_RECORD = """() => { const d = Bokeh.documents[0].get_model_by_name('calculator-numbers').data;
  return Object.fromEntries(d.key.map((k, i) => [k, d.value[i]])); }"""
JS_TEXTS = """(names) => Object.fromEntries(names.map(
  (n) => [n, Bokeh.documents[0].get_model_by_name(n).text]))"""


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("calculator") / "calculator.html"
    export_snapshot(path, TEXT, lessons="calculator", options=dict(calc_context=2048))
    return path


@pytest.fixture(scope="module")
def page(browser, snapshot):
    page = open_offline(browser, snapshot, READY)
    yield page
    page.close()


@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


def _record(page) -> dict[str, int]:
    return {k: int(v) for k, v in page.evaluate(JS_RECORD).items()}


def _texts(page) -> dict[str, str]:
    return page.evaluate(JS_TEXTS, list(C.OUT_NAMES.values()))


def _python_texts(z: C.Sizes) -> dict[str, str]:
    built = dict(
        headline=C.headline_html(z),
        shape=C.shape_html(z),
        params=C.params_html(z),
        weights=C.weights_html(z),
        kv=C.kv_html(z),
        training=C.training_html(z),
        flops=C.flops_html(z),
    )
    return {C.OUT_NAMES[k]: v for k, v in built.items()}


def _page_inputs(page, model_type: str) -> dict[str, str]:
    keys = [k for part in S.fields(model_type) for k in part]
    return page.evaluate(
        "(keys) => Object.fromEntries(keys.map((k) => { const m = Bokeh.documents[0]"
        ".get_model_by_name('calculator-' + k); return [k, m.value_input ?? m.value]; }))",
        keys,
    )


def _check_page_against_python(page, model_type: str, context: int, batch: int, cache: str):
    """The page's numbers, texts and bars are scale.py's for the config its fields hold."""
    texts = _page_inputs(page, model_type)
    _, _, switches = S.fields(model_type)
    read = C.read_inputs(
        model_type,
        {k: v for k, v in texts.items() if k not in switches},
        {k: texts[k] == "true" for k in switches},
        str(context),
        str(batch),
    )
    assert read.messages == {}
    config = {k: v for k, v in read.config.items()}
    assert _record(page) == expected(config, context, batch, cache)
    z = C.calculate(config, context, batch, cache)
    assert _texts(page) == _python_texts(z)
    data, factors, end, axis = C.bars_data(z)
    got = page.evaluate(
        "() => { const d = Bokeh.documents[0]; const f = d.get_model_by_name("
        "'calculator-params'); const b = d.get_model_by_name('calculator-bars').data;"
        " return {name: b.name, x: Array.from(b.x), label: b.label, factors: f.y_range.factors,"
        " end: f.x_range.end, axis: f.below[0].axis_label}; }"
    )
    assert got == dict(data, factors=factors, end=end, axis=axis)
    assert model_get(page, "calculator-summary", "visible") is False


def _settings(page, context: int, batch: int, cache: str) -> None:
    """Context, batch and the cache's format, as typed and chosen (one round trip)."""
    page.evaluate(
        "([c, b, f]) => { const d = Bokeh.documents[0];"
        " d.get_model_by_name('calculator-context').value_input = c;"
        " d.get_model_by_name('calculator-batch').value_input = b;"
        " d.get_model_by_name('calculator-cache').value = f; }",
        [str(context), str(batch), cache],
    )


# -- the twin: every preset, exactly ----------------------------------------------------------
def test_the_page_opens_on_the_exported_options_and_computes_nothing_else(page, engine):
    assert page.requests == [page.url_] and page.errors == []
    assert model_get(page, "calculator-preset", "value") == C.DEFAULT_PRESET
    assert _record(page) == expected(S.PRESETS[C.DEFAULT_PRESET], 2048, 1, "bf16")


def test_every_preset_gives_scales_numbers_and_the_dashboards_texts(page, engine):
    known = C.presets(engine)
    # contexts and batches past 2^53 bytes too (the cache of 10^12 × 10^12 tokens), every
    # format (int4's half byte is computed in float64, as Python does)
    settings = [
        (4096, 1, "bf16"),
        (10**12, 10**12 - 1, "int4"),
        (0, 1, "fp32"),
        (131072, 64, "int8"),
        (10**12 - 1, 10**12 - 3, "fp16"),
    ]
    for i, (name, preset) in enumerate(known.items()):
        context, batch, cache = settings[i % len(settings)]
        _settings(page, context, batch, cache)
        model_set(page, "calculator-preset", "value", name)
        _check_page_against_python(page, preset.config["model_type"], context, batch, cache)
    assert page.errors == []


EDITS = [
    ("GPT-2 small", {"n_inner": "4000", "n_layer": "1000000", "tie_word_embeddings": "false"}),
    ("GPT-2 XL", {"n_positions": "2048", "n_head": "1600", "vocab_size": "1e12"}),
    ("Llama 2 7B", {"head_dim": "256", "attention_bias": "true", "mlp_bias": "true"}),
    ("Llama 2 70B", {"hidden_size": "1000000000000", "num_attention_heads": "1",
                     "num_key_value_heads": "", "vocab_size": "999999999999"}),
    ("Mixtral 8x7B", {"num_local_experts": "64", "num_experts_per_tok": "8.0"}),
    ("Qwen2 0.5B", {"num_key_value_heads": "1", "tie_word_embeddings": "false"}),
    ("anatomy-gpt", {"n_embd": "  96 ", "n_head": "+3"}),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "edits"), EDITS)
def test_edited_configs_give_scales_numbers(page, engine, preset, edits):
    _settings(page, 32768, 3, "int4")
    model_set(page, "calculator-preset", "value", preset)
    for key, text in edits.items():
        prop = "value" if key in C.ALL_SWITCHES else "value_input"
        model_set(page, f"calculator-{key}", prop, text)
    model_type = C.presets(engine)[preset].config["model_type"]
    _check_page_against_python(page, model_type, 32768, 3, "int4")
    assert page.errors == []


def test_the_twins_of_repr_parsing_and_units(browser, engine):
    """calculator.js's helpers on a blank page, against Python on shared cases."""
    js = ROOT / "dashboard" / "views" / "js"
    blank = browser.new_page()
    blank.set_content("<!DOCTYPE html><html><body></body></html>")
    blank.evaluate("(s) => { window.spec = s; }", C.page_spec(C.presets(engine)))
    for name in ("common", "calculator"):
        blank.add_script_tag(content=(js / f"{name}.js").read_text(encoding="utf-8"))
    floats = [0.5, 1.5, 12.5, 4096.5, 1e-5, 1.5e-5, 0.0001, 0.00012, 1e16 + 2, 1.25e17,
              -2.5, -0.0, 0.1 + 0.2, 1 / 3, 2.0**-30, 123456789.125, math.inf, -math.inf,
              math.nan]  # fmt: skip
    got = blank.evaluate(
        "(vs) => vs.map(v => py_repr(v === 'nan' ? NaN : v === 'inf' ? Infinity :"
        " v === '-inf' ? -Infinity : v === '-0' ? -0 : v))",
        [_js(v) for v in floats],
    )
    assert got == [repr(v) for v in floats]
    texts = ["4096", " +12\n", "0012", "-0", "-0.0", "1e3", "1.5", ".5", "5.", "", "  ",
             "abc", "1_000", "0x10", "inf", "nan", "1e400", "-1e400", "1e-400", "١٢", "12 3",
             str(10**12), str(10**12 + 1), "1.0000000000001e12",
             "-99999999999999999999", "1" * 41, "😀" * 40, "😀" * 41]  # fmt: skip
    got = blank.evaluate(
        "(ts) => ts.map(t => { const [v, m] = parse_text('n', t);"
        " return [typeof v === 'bigint' ? 'int:' + v : typeof v === 'number' ? py_repr(v) : v,"
        " m]; })",
        texts,
    )
    want = []
    for t in texts:
        v, m = C.parse_text("n", t)
        shown = f"int:{v}" if isinstance(v, int) else repr(v) if isinstance(v, float) else v
        want.append([shown, m])
    assert got == want
    counts = [0, 999, 1000, 1023, 1024, 999_999, 10**6, 2**30 - 1, 2**30, 6_738_415_616,
              2**53 + 1, 10**15, 10**18 + 7, 2**70, 10**40 + 3]  # fmt: skip
    for kind in C.UNITS:
        got = blank.evaluate(
            "([ns, kind]) => ns.map(n => readable(BigInt(n), kind))", [list(map(str, counts)), kind]
        )
        assert got == [C.readable(n, kind) for n in counts], kind
    blank.close()


def _js(v: float):
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0 and math.copysign(1, v) < 0:
        return "-0"
    return v


# -- interactions in the snapshot --------------------------------------------------------------
def test_typing_recomputes_and_a_bad_field_says_why_and_keeps_the_last_result(page, engine):
    _settings(page, 4096, 1, "bf16")
    model_set(page, "calculator-preset", "value", "Llama 2 13B")
    field = page.locator(".calculator-num_key_value_heads input")
    field.fill("8")  # as typed, key by key
    config = dict(S.PRESETS["Llama 2 13B"], num_key_value_heads=8)
    headline = C.headline_html(C.calculate(config, 4096, 1, "bf16"))
    assert model_get(page, "calculator-headline", "text") == headline
    assert _record(page) == expected(config, 4096, 1, "bf16")
    before = _texts(page)
    field.fill("3")  # 40 query heads in groups of 3: no
    note = page.locator(".calculator-num_key_value_heads-message")
    expect(note).to_be_visible()
    expect(note).to_contain_text("3 key/value heads do not divide num_attention_heads = 40")
    summary = page.locator(".calculator-summary")
    expect(summary).to_contain_text("Not recalculated: num_key_value_heads needs fixing")
    assert _texts(page) == before
    assert _record(page) == expected(config, 4096, 1, "bf16")
    page.locator(".calculator-context input").fill("<i>lots</i>")
    expect(page.locator(".calculator-context-message")).to_contain_text("“<i>lots</i>”")
    expect(summary).to_contain_text("num_key_value_heads, context need fixing")
    assert _texts(page) == before
    # fixed, both: recomputed
    page.locator(".calculator-context input").fill("8192")
    field.fill("10")
    expect(summary).to_be_hidden()
    expect(note).to_be_hidden()
    config["num_key_value_heads"] = 10
    assert _record(page) == expected(config, 8192, 1, "bf16")
    # a new preset: its own fields, the edits gone
    page.locator(".calculator-preset select").select_option("GPT-2 medium")
    expect(page.locator(".calculator-n_embd input")).to_have_value("1024")
    expect(page.locator(".calculator-hidden_size input")).to_be_hidden()
    assert _record(page) == expected(S.PRESETS["GPT-2 medium"], 8192, 1, "bf16")
    assert page.errors == []


# -- the dashboard -----------------------------------------------------------------------------
def _open(browser, url: str, width=1440, height=900, touch=False):
    size = {"width": width, "height": height}
    context = browser.new_context(viewport=size, is_mobile=touch, has_touch=touch)
    tab = context.new_page()
    record_errors(tab)
    tab.goto(url)
    tab.locator(".calculator-headline p").first.wait_for(timeout=30_000)
    tab.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.some(d => d.get_model_by_name('calculator-params')"
        " && Bokeh.index.find_one(d.get_model_by_name('calculator-params')))",
        timeout=30_000,
    )
    tab.wait_for_timeout(500)  # the layout settles
    return tab


def _said(tab, cls: str) -> str:
    return " ".join(tab.locator(f".{cls} p").all_inner_texts())


def _plain(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split())


def _link(tab) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(tab.url).query))


def test_the_dashboard_switches_presets_and_recomputes_as_one_types(server, browser):
    tab = _open(browser, f"{server}?lesson=calculator&preset=GPT-2+medium&ctx=1024")
    headline = lambda c, ctx=1024: _plain(C.headline_html(C.calculate(c, ctx, 1, "bf16")))  # noqa: E731
    expect(tab.locator(".calculator-headline p")).to_have_text(headline(S.PRESETS["GPT-2 medium"]))
    tab.locator(".calculator-preset select").select_option(label="Mixtral 8x7B")
    tab.wait_for_function(
        "() => new URL(location.href).searchParams.get('preset') === 'Mixtral 8x7B'"
    )  # noqa: E501
    mixtral = S.PRESETS["Mixtral 8x7B"]
    expect(tab.locator(".calculator-headline p")).to_have_text(headline(mixtral))
    expect(tab.locator(".calculator-n_embd input")).to_be_hidden()
    field = tab.locator(".calculator-num_experts_per_tok input")
    field.fill("3")
    edited = dict(mixtral, num_experts_per_tok=3)
    expect(tab.locator(".calculator-flops p").first).to_contain_text(
        C.readable(S.flops_per_token(edited, 1024), "flops")
    )
    field.fill("9")
    note = tab.locator(".calculator-num_experts_per_tok-message p")
    expect(note).to_have_text("9 is more than num_local_experts = 8")
    expect(tab.locator(".calculator-summary p").first).to_contain_text(
        "num_experts_per_tok needs fixing"
    )
    assert _said(tab, "calculator-headline") == headline(mixtral)  # the last valid result
    field.fill("2")
    expect(note).to_be_hidden()
    tab.locator(".calculator-context input").fill("32768")
    expect(tab.locator(".calculator-headline p")).to_have_text(headline(mixtral, 32768))
    tab.wait_for_function("() => new URL(location.href).searchParams.get('ctx') === '32768'")
    assert _link(tab)["preset"] == "Mixtral 8x7B"
    assert tab.errors == []
    tab.close()


def test_a_phone_fits_and_its_fields_take_typing(server, browser, snapshot):
    size = (390, 844)
    tab = _open(browser, f"{server}?lesson=calculator", *size, touch=True)
    box = overflow(tab)
    assert box["scroll"] <= size[0], box
    assert small_things(tab) == {"text": [], "taps": []}
    assert cut_titles(tab) == []
    field = tab.locator(".calculator-num_hidden_layers input")
    field.tap()
    field.fill("16")
    config = dict(S.PRESETS[C.DEFAULT_PRESET], num_hidden_layers=16)
    want = _plain(C.headline_html(C.calculate(config, 4096, 1, "bf16")))
    expect(tab.locator(".calculator-headline p")).to_have_text(want)
    assert overflow(tab)["scroll"] <= size[0]
    assert tab.errors == []
    tab.close()
    # the snapshot on the same phone
    snap = open_offline(browser, snapshot, READY, viewport=size, touch=True)
    snap.wait_for_timeout(300)
    box = overflow(snap)
    assert box["scroll"] <= size[0], box
    assert small_things(snap) == {"text": [], "taps": []}
    snap.locator(".calculator-num_hidden_layers input").tap()
    snap.locator(".calculator-num_hidden_layers input").fill("16")
    assert model_get(snap, "calculator-headline", "text") == C.headline_html(
        C.calculate(config, 2048, 1, "bf16")
    )
    assert snap.errors == []
    snap.close()


def test_classroom_mode_fits_a_1920x1080_projector(server, browser):
    tab = _open(browser, f"{server}?lesson=calculator&classroom=true", 1920, 1080)
    title = tab.evaluate(JS_TITLE, "calculator-params")
    assert title["width"] <= title["room"], title
    frame = tab.evaluate(
        "() => Bokeh.index.find_one(Bokeh.documents.map(d => d.get_model_by_name("
        "'calculator-params')).find(x => x)).el.getBoundingClientRect().right"
    )
    assert frame <= 1920
    assert cut_titles(tab) == [] and cut_text(tab) == []
    assert tab.evaluate("() => document.documentElement.scrollWidth") <= 1920
    assert tab.errors == []
    tab.close()
