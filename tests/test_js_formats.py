"""The page's Python-format helpers (dashboard/views/js/common.js) against Python itself, on
shared cases: the snapshot writes the same numbers into the same texts as the dashboard."""

from __future__ import annotations

import html
import math
import random

import pytest

from tests.browser_support import js_kernel_page

pytestmark = pytest.mark.browser

random.seed(0)
VALUES = [
    0.0, -0.0, 1.0, -1.0, 0.0625, 0.125, 0.375, -0.0625, 2.5, 0.5, 1.5, -2.5, 0.0005, 0.00049,
    1.0005, 123.4565, 65504.0, 1e-8, -1e-8, 3.14159, 0.9995, 0.99949, 1e21, 7.25e-5,
    math.inf, -math.inf, math.nan,
    *(random.uniform(-10, 10) for _ in range(200)),
    *(random.choice([-1, 1]) * 10 ** random.uniform(-12, 12) for _ in range(200)),
    *(k / 2**j for k in range(-40, 41, 3) for j in range(1, 12)),  # exact binary fractions: ties
]  # fmt: skip


@pytest.fixture(scope="module")
def page(browser):
    page = js_kernel_page(browser)
    yield page
    page.close()


@pytest.mark.parametrize("digits", [0, 1, 2, 3, 4])
def test_fixed_is_pythons(page, digits):
    got = page.evaluate(
        "([vs, d]) => vs.map(v => py_fixed(v === 'nan' ? NaN : v === 'inf' ? Infinity :"
        " v === '-inf' ? -Infinity : v === '-0' ? -0 : v, d))",
        [[_js(v) for v in VALUES], digits],
    )
    assert got == [f"{v:.{digits}f}" for v in VALUES]


@pytest.mark.parametrize("digits", [1, 2, 5])
def test_exponent_is_pythons(page, digits):
    finite = [v for v in VALUES if math.isfinite(v) and v != 0]
    got = page.evaluate("([vs, d]) => vs.map(v => py_exp(v, d))", [finite, digits])
    assert got == [f"{v:.{digits}e}" for v in finite]


@pytest.mark.parametrize("precision", [1, 3, 6])
def test_general_is_pythons(page, precision):
    got = page.evaluate(
        "([vs, d]) => vs.map(v => py_g(v === 'nan' ? NaN : v === 'inf' ? Infinity :"
        " v === '-inf' ? -Infinity : v === '-0' ? -0 : v, d))",
        [[_js(v) for v in VALUES], precision],
    )
    assert got == [format(v, f".{precision}g") for v in VALUES]


def test_escape_and_fill_are_pythons(page):
    text = '<b>"it\'s" & {k}</b>'
    assert page.evaluate("(t) => esc(t)", text) == html.escape(text)
    template = "<p>{a} and {b}, {unknown}</p>"
    got = page.evaluate("([t, v]) => fill_template(t, v)", [template, {"a": "{b}", "b": "2"}])
    assert got == "<p>{b} and 2, {unknown}</p>"  # one pass: a filled-in "{b}" stays text


def _js(v: float):
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0 and math.copysign(1, v) < 0:
        return "-0"
    return v
