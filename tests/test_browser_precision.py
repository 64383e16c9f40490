"""The precision lesson in a real Chromium: bits follow a typed value (one change per format,
not per bit), a clicked bit flips, bad input gets a message, the legend and the formats table
read for people, the tensor selector redraws the histogram, the fp16/bf16 runs show.

Expected values are computed here independently of the page: numpy's float16 and ml_dtypes'
bfloat16 casts and bit views, numpy.histogram on weights read with the safetensors package,
torch reductions over the engine's fp16/bf16 runs.
"""

from __future__ import annotations

import json
import math
import re

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import torch
from playwright.sync_api import expect

from dashboard.state import DEFAULT_TEXT
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_data, record_errors, serve, wait_data

expect.set_options(timeout=20_000)  # a shared 2-core machine answers slowly at times

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server():
    with serve() as (url, _proc):
        yield url


@pytest.fixture(scope="module")
def page(browser, server):
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    record_errors(page)
    page.received = []  # the websocket's frames from the server
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: page.received.append(f)))
    page.goto(f"{server}?lesson=precision")
    wait_data(page, "precision-hist", "top", "v => v.length > 0")
    expect(_bit(page, "fp16", 15)).to_have_text("1", timeout=30_000)
    yield page
    page.close()


def _bit(page, fmt: str, i: int):
    return page.locator(f"button.bit-{fmt}-{i}, .bit-{fmt}-{i} button")


def _bits(page, fmt: str) -> str:
    return "".join(t.strip() for t in page.locator(f".bit-{fmt} button").all_inner_texts())


def _type(page, text: str) -> None:
    box = page.locator(".precision-value input")
    box.fill(text)
    box.press("Enter")


def test_typing_a_value_updates_the_bit_patterns(page):
    assert _bits(page, "fp16") == format(int(np.float16(65504).view(np.uint16)), "016b")
    _type(page, "1e-6")
    h = np.array([1e-6]).astype(np.float16)
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text(repr(float(h[0])))
    assert _bits(page, "fp16") == format(int(h.view(np.uint16)[0]), "016b")
    b = np.array([1e-6], dtype=np.float32).astype(ml_dtypes.bfloat16)
    assert _bits(page, "bf16") == format(int(b.view(np.uint16)[0]), "016b")
    expect(page.locator(".precision-info-bf16 .stored")).to_have_text(
        repr(float(b.astype(np.float64)[0]))
    )
    assert _bits(page, "fp32") == format(int(np.float32(1e-6).view(np.uint32)), "032b")
    expect(page.locator(".precision-info-fp16")).to_contain_text("subnormal")
    _type(page, "1e10")
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text("inf")
    expect(page.locator(".precision-info-fp16")).to_contain_text("overflow")
    assert page.errors == []


def test_clicking_a_bit_flips_it(page):
    _type(page, "1.5")
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text("1.5")
    pattern = int(np.float16(1.5).view(np.uint16)) ^ (1 << (15 - 5))  # bit 5: exponent's last
    expected = float(np.array([pattern], dtype=np.uint16).view(np.float16)[0])
    _bit(page, "fp16", 5).click()
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text(repr(expected))
    expect(page.locator(".precision-value input")).to_have_value(repr(expected))
    assert _bits(page, "fp16") == format(pattern, "016b")
    _bit(page, "fp16", 0).click()  # the sign
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text(repr(-expected))
    assert page.errors == []


def test_bad_input_shows_a_message_and_keeps_the_bits(page):
    _type(page, "3.0")
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text("3.0")
    before = _bits(page, "fp16")
    _type(page, "<b>abc</b>")
    message = page.locator(".precision-error")
    expect(message).to_be_visible()
    expect(message).to_contain_text("not a number")
    expect(message).to_contain_text("<b>abc</b>")  # shown as text, not rendered
    assert _bits(page, "fp16") == before
    _type(page, "1e400")
    expect(message).to_contain_text("beyond float64")
    _type(page, "nan")
    expect(message).to_be_hidden()
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text("nan")
    assert page.errors == []


def test_switching_the_tensor_updates_the_histogram(page):
    before = model_data(page, "precision-hist", "top")
    page.locator(".precision-tensor select").select_option("wte.weight")
    weights = safetensors.numpy.load_file(str(STATIC_DIR / "anatomy-gpt.safetensors"))
    w = weights["wte.weight"].astype(np.float64).ravel()
    wait_data(page, "precision-hist", "top", f"v => v.reduce((a, b) => a + b, 0) === {w.size}")
    left = model_data(page, "precision-hist", "left")
    right = model_data(page, "precision-hist", "right")
    top = model_data(page, "precision-hist", "top")
    assert top != before
    edges = np.array(left + right[-1:])
    ref, _ = np.histogram(np.log10(np.abs(w[w != 0])), bins=edges)
    assert top == ref.tolist()
    # the fp16 row counts the weights that become subnormal in fp16 (torch's cast)
    t = torch.from_numpy(w.astype(np.float32)).half().double().numpy()
    tiny = torch.finfo(torch.float16).tiny
    sub = int(np.count_nonzero((t != 0) & (np.abs(t) < tiny)))
    expect(page.locator(".precision-counts tr").nth(1).locator(".subnormal")).to_have_text(
        f"{sub:,}"
    )
    assert page.errors == []


def test_fp16_and_bf16_runs_are_shown(page):
    engine = Engine(STATIC_DIR)
    model = engine.default_model
    ids = engine.tokenizer(model).encode(DEFAULT_TEXT)
    ref = engine.run(model, ids)
    wait_data(page, "precision-run-hidden", "layer", "v => v.length > 0")
    for n in ("fp16", "bf16"):
        low = engine.run(model, ids, n)
        d = (torch.from_numpy(low.hidden).double() - torch.from_numpy(ref.hidden).double()).abs()
        expected = torch.amax(d, dim=(1, 2)).tolist()
        got = model_data(page, "precision-run-hidden", n)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        dp = (torch.from_numpy(low.attn_probs).double() - torch.from_numpy(ref.attn_probs)).abs()
        got_p = model_data(page, "precision-run-probs", n)
        np.testing.assert_allclose(got_p, torch.amax(dp, dim=(1, 2, 3)).tolist(), rtol=1e-12)
        agree = (low.logits.argmax(-1) == ref.logits.argmax(-1)).mean()
        run = page.locator(f".precision-runs .run-{n}")
        expect(run).to_contain_text(f"{100 * agree:.1f}%")
        logits_err = float(np.abs(low.logits.astype(np.float64) - ref.logits).max())
        expect(run.locator(".logits-error")).to_have_text(f"{logits_err:.3g}")
        expect(run).to_contain_text("CPUExecutionProvider")
    expect(page.locator(".precision-runs")).to_contain_text("MatMul")
    expect(page.locator(".precision-mask")).to_contain_text("-inf")
    assert not math.isnan(model_data(page, "precision-run-hidden", "fp16")[1])
    assert page.errors == []


def _rgb(hex_color: str) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_bit_colours_are_the_fields_colours_the_snapshot_uses(page):
    from dashboard.views.precision import FIELD_COLORS

    _type(page, "-1.5")  # fp16 1 01111 1000000000: a solid bit in every field
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text("-1.5")
    style = "e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).borderTopColor]"
    for index, field in ((0, "sign"), (2, "exponent"), (6, "mantissa")):
        solid = _bit(page, "fp16", index).evaluate(style)
        assert solid == [_rgb(FIELD_COLORS[field])] * 2, field
    outline = _bit(page, "fp16", 1).evaluate(style)  # an exponent 0
    assert outline == ["rgba(0, 0, 0, 0)", _rgb(FIELD_COLORS["exponent"])]
    assert page.errors == []


def test_the_legend_names_the_colours_the_bits_are_drawn_in(page):
    _type(page, "-1.5")  # fp16 1 01111 1000000000: a solid bit in every field
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text("-1.5")
    legend = page.locator(".bit-legend")
    expect(legend).to_be_visible()
    expect(legend).to_contain_text("filled = 1, outlined = 0")
    colour = "e => getComputedStyle(e).color"
    background = "e => getComputedStyle(e).backgroundColor"
    for index, field in ((0, "sign"), (2, "exponent"), (6, "mantissa")):
        key = page.locator(f".bit-key-{field}")
        expect(key).to_have_text(f"■ {field}")
        swatch = key.locator(".swatch").evaluate(colour)
        assert swatch == _bit(page, "fp16", index).evaluate(background), field
    # next to the bits: below the value box, above the first row of bits
    box = page.locator(".precision-value input").bounding_box()
    first = _bit(page, "fp32", 0).bounding_box()
    at = legend.bounding_box()
    assert box["y"] + box["height"] <= at["y"] and at["y"] + at["height"] <= first["y"]
    assert page.errors == []


# Each header's text box, left to right (a header of two lines: its wider line).
JS_HEADER_TEXT = """
(table) => Array.from(table.rows[0].cells).slice(1).map(th => {
  const r = document.createRange(); r.selectNodeContents(th);
  const b = r.getBoundingClientRect(); return [b.left, b.right];
})
"""


def test_the_formats_table_reads_for_people(page):
    table = page.locator("table.precision-formats")
    boxes = table.evaluate(JS_HEADER_TEXT)
    assert len(boxes) == 5
    for (_, right), (left, _) in zip(boxes, boxes[1:], strict=False):
        assert left - right >= 8, boxes  # the headers' words do not run together
    text = table.inner_text()
    assert "True" not in text and "False" not in text and not re.search(r"\de[+-]\d", text)
    cells = {
        r[0]: r[1:] for r in table.evaluate("t => Array.from(t.rows, r => Array.from(r.cells, "
                                            "c => c.innerText.trim()))")
    }  # fmt: skip
    # written as people write them, and worth what numpy.finfo says (to six digits)
    assert cells["largest finite"][0] == "3.40282 × 10³⁸"
    sup = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")

    def read(t):
        mant, _, exp = t.partition(" × 10")
        return float(mant) * 10.0 ** int(exp.translate(sup) or 0)

    for label, attr in (("largest finite", "max"), ("smallest subnormal", "smallest_subnormal")):
        for got, dt in zip(cells[label][:2], (np.float32, np.float16), strict=True):
            assert read(got) == pytest.approx(float(getattr(np.finfo(dt), attr)), rel=5e-6)
    assert cells["±inf stored as"][3] == "none"  # e4m3fn: inf casts to NaN (ml_dtypes)
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.array([np.inf], np.float32).astype(ml_dtypes.float8_e4m3fn)[0])
    assert page.errors == []


def test_inf_and_nan_are_explained_by_their_bits(page):
    _type(page, "inf")
    fp16 = page.locator(".precision-info-fp16")
    expect(fp16).to_contain_text("(inf: exponent all ones, mantissa 0)")
    assert _bits(page, "fp16") == format(int(np.float16(np.inf).view(np.uint16)), "016b")
    # e4m3fn stores inf as NaN, 0 1111 111: exponent and mantissa all ones
    with np.errstate(invalid="ignore"):
        e4m3 = np.array([np.inf], np.float32).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    assert format(int(e4m3[0]), "08b") == _bits(page, "fp8_e4m3") == "01111111"
    expect(page.locator(".precision-info-fp8_e4m3")).to_contain_text(
        "(NaN: exponent and mantissa all ones)"
    )
    _type(page, "nan")
    expect(page.locator(".precision-info-bf16")).to_contain_text(
        "(NaN: exponent all ones, mantissa not 0)"
    )
    _type(page, "448")  # e4m3fn's largest, 0 1111 110: an all-ones exponent, a normal value
    expect(page.locator(".precision-info-fp8_e4m3 .stored")).to_have_text("448.0")
    assert _bits(page, "fp8_e4m3") == format(
        int(np.array([448.0], np.float32).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)[0]),
        "08b",
    )
    expect(page.locator(".precision-info-fp8_e4m3")).to_contain_text(
        "exponent 1111 still holds normal values"
    )
    assert page.errors == []


def test_a_typed_value_changes_each_formats_bits_at_once_not_bit_by_bit(page):
    """One change per format (a Bokeh model per bit made the page re-lay itself out for each
    of the 80 changed labels: seconds per value)."""
    _type(page, "2.5")
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text("2.5")
    page.wait_for_timeout(500)
    page.received.clear()
    _type(page, "-0.75")
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text("-0.75")
    expect(page.locator(".precision-info-fp32 .stored")).to_have_text("-0.75")
    page.wait_for_timeout(500)
    changes = []
    for f in page.received:
        try:
            msg = json.loads(f)
        except (TypeError, ValueError):
            continue
        if isinstance(msg, dict):
            changes += [e for e in msg.get("events", []) if e.get("kind") == "ModelChanged"]
    assert _bits(page, "fp16") == format(int(np.float16(-0.75).view(np.uint16)), "016b")
    # fewer changes than one fp16 pattern has bits: the patterns travel whole
    assert 0 < len(changes) < 16, [(c["model"]["id"], c["attr"]) for c in changes]
    assert page.errors == []


def test_the_masked_scores_table_names_the_nan_rows(page):
    mask = page.locator(".precision-mask")
    expect(mask).to_contain_text("key 0 masked for every query")
    expect(mask.locator("th").nth(4)).to_have_text("rows that are NaN")
    nan = mask.locator("td.nan").all_inner_texts()
    # a −inf fill leaves query 0 (key 0 masked, and every later key causal) all −inf: NaN
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.float64(-np.inf) - np.float64(-np.inf))
    assert nan and all(t == "row 0" for t in nan), nan
    rest = [t for t in mask.locator("td:nth-child(5)").all_inner_texts() if t not in nan]
    assert rest and all(t == "none" for t in rest), rest
    assert page.errors == []


# How far the formats table and each row of bits reach past the pane that holds them (a pane
# clips what does not fit).
JS_CLIPPED = """
() => {
  const out = [];
  const walk = (root) => { for (const el of root.querySelectorAll("*")) {
    if (el.shadowRoot) walk(el.shadowRoot);
    if (el.matches("table.precision-formats, .bits")) {
      const host = el.getRootNode().host.getBoundingClientRect();
      out.push([el.className, Math.round(el.getBoundingClientRect().right - host.right)]);
    }
  } };
  walk(document);
  return out;
}
"""


def test_the_formats_table_and_the_bits_fit_a_classroom_projector(browser, server):
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    record_errors(page)
    page.goto(f"{server}?lesson=precision&classroom=true")
    expect(_bit(page, "fp16", 15)).to_have_text("1", timeout=30_000)
    page.wait_for_timeout(500)
    clipped = page.evaluate(JS_CLIPPED)
    assert len(clipped) == 6 and all(over <= 0 for _, over in clipped), clipped
    assert page.errors == []
    page.close()
