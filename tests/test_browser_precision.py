"""The precision lesson in a real Chromium: bits follow a typed value, a clicked bit flips,
bad input gets a message, the tensor selector redraws the histogram, the fp16/bf16 runs show.

Expected values are computed here independently of the page: numpy's float16 and ml_dtypes'
bfloat16 casts and bit views, numpy.histogram on weights read with the safetensors package,
torch reductions over the engine's fp16/bf16 runs.
"""

from __future__ import annotations

import math

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
def page(browser):
    with serve() as (url, _proc):
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        record_errors(page)
        page.goto(f"{url}?lesson=precision")
        wait_data(page, "precision-hist", "top", "v => v.length > 0")
        expect(page.locator(".bit-fp16-15 button")).to_have_text("1", timeout=30_000)
        yield page
        page.close()


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
    page.locator(".bit-fp16-5 button").click()
    expect(page.locator(".precision-info-fp16 .stored")).to_have_text(repr(expected))
    expect(page.locator(".precision-value input")).to_have_value(repr(expected))
    assert _bits(page, "fp16") == format(pattern, "016b")
    page.locator(".bit-fp16-0 button").click()  # the sign
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
        solid = page.locator(f".bit-fp16-{index} button").evaluate(style)
        assert solid == [_rgb(FIELD_COLORS[field])] * 2, field
    outline = page.locator(".bit-fp16-1 button").evaluate(style)  # an exponent 0
    assert outline == ["rgba(0, 0, 0, 0)", _rgb(FIELD_COLORS["exponent"])]
    assert page.errors == []
