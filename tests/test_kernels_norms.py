"""The snapshot's norm kernel (dashboard/views/js/norms.js) against its Python twins,
dashboard.lessons.norms and dashboard.lessons.residual (themselves tested against torch in
test_lesson_norms_ffn.py and test_lesson_residual.py): one list of cases through both, every
step within 1e-12, the typed vector's messages and notices word for word."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard.lessons import norms as N
from dashboard.lessons import residual as R
from dashboard.state import DEFAULT_TEXT
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import js_kernel_page

pytestmark = pytest.mark.browser


def _real() -> tuple[list[float], dict[str, list[float]]]:
    """The GPT's stream entering block 1 at the last token, and that block's ln_1 weights."""
    engine = Engine(STATIC_DIR)
    ids = engine.tokenizer("anatomy-gpt").encode(DEFAULT_TEXT)
    x = engine.run("anatomy-gpt", ids).hidden[1, -1].astype(np.float64)
    w = engine.weights("anatomy-gpt")
    return x.tolist(), {
        "weight": w["h.1.ln_1.weight"].astype(np.float64).tolist(),
        "bias": w["h.1.ln_1.bias"].astype(np.float64).tolist(),
    }


REAL, REAL_W = _real()
RNG = np.random.default_rng(7)
WIDE = (RNG.normal(size=64) * 40 + 3).tolist()

# (name, x, weight or None, bias or None, eps)
CASES = [
    ("small ints", [1.0, 2.0, 3.0, 10.0], None, None, 1e-5),
    ("constant", [5.0, 5.0, 5.0, 5.0], None, None, 1e-5),
    ("zeros", [0.0, 0.0, 0.0], None, None, 1e-6),
    ("one number", [3.5], None, None, 1e-5),
    ("tiny", [1e-4, -2e-4, 3e-4], None, None, 1e-5),
    ("huge", [3e20, -1e20, 2.0], None, None, 1e-5),
    ("wide, weighted", WIDE, [0.5 + i / 64 for i in range(64)], [i / 100 for i in range(64)], 1e-5),
    ("real, the GPT's ln_1", REAL, REAL_W["weight"], REAL_W["bias"], 1e-5),
    ("real, RMSNorm what-if", REAL, REAL_W["weight"], None, 1e-5),
]

JS_NORMS = """([x, w, b, eps]) => {
  const ln = layer_norm(x, w, b, eps), rn = rms_norm(x, w, eps);
  return {mean: ln.mean, var: ln.var, std: ln.std, ln_norm: Array.from(ln.normalised),
          ln_out: Array.from(ln.out), ms: rn.mean_square, rms: rn.rms,
          rn_norm: Array.from(rn.normalised), rn_out: Array.from(rn.out)};
}"""

JS_PARSE = """([text, eps]) => {
  try {
    const x = parse_vector(text);
    return {x: Array.from(x), notices: typed_notices(x, eps), dims: shown_dims(x, 3)};
  } catch (e) { return {error: e.message}; }
}"""


@pytest.fixture(scope="module")
def page(browser):
    page = js_kernel_page(browser, "norms", "residual")
    yield page
    page.close()


@pytest.mark.parametrize(("name", "x", "w", "b", "eps"), CASES, ids=[c[0] for c in CASES])
def test_both_norms_match_python(page, name, x, w, b, eps):
    got = page.evaluate(JS_NORMS, [x, w, b, eps])
    ln, rn = N.layer_norm(x, w, b, eps=eps), N.rms_norm(x, w, eps=eps)
    scale = max(1.0, float(np.max(np.abs(x))) ** 2)  # the statistics grow with x²
    assert got["mean"] == pytest.approx(float(ln.mean[0]), rel=1e-12, abs=1e-12)
    assert got["var"] == pytest.approx(float(ln.var[0]), rel=1e-12, abs=1e-12 * scale)
    assert got["std"] == pytest.approx(float(ln.std[0]), rel=1e-12)
    assert got["ms"] == pytest.approx(float(rn.mean_square[0]), rel=1e-12)
    assert got["rms"] == pytest.approx(float(rn.rms[0]), rel=1e-12)
    for key, want in (
        ("ln_norm", ln.normalised),
        ("ln_out", ln.out),
        ("rn_norm", rn.normalised),
        ("rn_out", rn.out),
    ):
        np.testing.assert_allclose(got[key], want, rtol=0, atol=1e-12, err_msg=key)


def test_the_cases_are_the_edge_cases_they_are_named_after():
    assert N.layer_norm([5.0] * 4, eps=1e-5).var[0] == 0  # variance 0: eps alone under the root
    assert np.all(N.layer_norm([5.0] * 4, eps=1e-5).out == 0)
    assert float(np.max(np.abs([3e20, -1e20, 2.0]))) ** 2 > N.FLOAT32_MAX
    with np.errstate(over="ignore"):  # what float32 makes of the square: numpy's word
        assert np.isinf(np.float32(3e20) ** 2)


@pytest.mark.parametrize(
    "text",
    [
        "1, 2, 3, 10",
        "1 2,3 ,, 10",
        "  -0.5e-3, +2., .25, 1_000 ",
        "5, 5, 5, 5",
        "0 0 0",
        "3e20, -1e20, 2",
        "1e19 1",
        "7",
        "",
        "   ,, ",
        "abc",
        "1, two, 3",
        "1, it's",
        "0x10",
        "1__0",
        "1e_5",
        "inf",
        "-Infinity",
        "nan",
        "1e400",
        "4e38",
        "-3.5e38",
        "3.4e38",
        " ".join(["1"] * 4097),
    ],
)
def test_typed_vectors_read_the_same_with_the_same_messages(page, text):
    got = page.evaluate(JS_PARSE, [text, 1e-5])
    try:
        x = N.parse_vector(text)
    except ValueError as err:
        assert got == {"error": str(err)}
        return
    assert "error" not in got, got
    np.testing.assert_array_equal(got["x"], x)
    assert got["notices"] == R.typed_notices(x, 1e-5)
    assert got["dims"] == R.shown_dims(x, 3)


def test_the_parse_cases_cover_every_message(page):
    words = set()
    for text in ["", "abc", "nan", "4e38", " ".join(["1"] * 4097), "5 5", "3e20 1"]:
        got = page.evaluate(JS_PARSE, [text, 1e-5])
        words.add(got.get("error", " ".join(got.get("notices", [])))[:12])
    assert len(words) == 7, words
