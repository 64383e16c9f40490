"""The snapshot's sampling kernel (dashboard/views/js/softmax.js) against its Python twin,
dashboard.lessons.sampling (itself tested against torch and Hugging Face in
test_lesson_sampling.py): one list of cases through both, probabilities within 1e-12, the
kept set exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dashboard.lessons import sampling as S
from dashboard.state import DEFAULT_TEXT
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import js_kernel_page

pytestmark = pytest.mark.browser

INF = math.inf


def _real_row() -> list[float]:
    engine = Engine(STATIC_DIR)
    model = engine.default_model
    ids = engine.tokenizer(model).encode(DEFAULT_TEXT)
    return engine.run(model, ids).logits[-1].astype(np.float64).tolist()


REAL = _real_row()
TIED_K = [3.0, 1.0, 2.0, 2.0, 2.0, 0.0]  # k = 2 cuts inside the three 2.0s
TIED_P = [2.0, 1.0, 1.0, 1.0, 0.0]  # p = 0.6 is reached inside the three 1.0s
TIED_MAX = [1.0, 5.0, 5.0, 0.0]
DYADIC = [math.log(4), math.log(2), 0.0, 0.0]  # probabilities 1/2, 1/4, 1/8, 1/8 exactly

# (name, logits, T, top-k, top-p)
CASES = [
    ("tie at the k-th", TIED_K, 1.0, 2, 1.0),
    ("tie at the k-th, T=0", TIED_K, 0.0, 2, 1.0),
    ("tie at the p cut", TIED_P, 1.0, None, 0.6),
    ("tie at the p cut, cooler", TIED_P, 0.5, 4, 0.75),
    ("T=0 greedy, tied maxima", TIED_MAX, 0.0, None, 1.0),
    ("T=0 with top-k", TIED_MAX, 0.0, 3, 1.0),
    ("T=0 with top-p", TIED_MAX, 0.0, None, 0.5),
    ("tiny T shares tied maxima", TIED_MAX, 1e-300, None, 1.0),
    ("tiny T with cuts", TIED_MAX, 1e-9, 2, 0.4),
    ("huge T is uniform", TIED_K, 1e300, None, 1.0),
    ("huge T with top-p", TIED_K, 1e12, None, 0.5),
    ("k >= vocab", TIED_K, 1.0, 6, 1.0),
    ("k > vocab", TIED_K, 0.7, 100, 0.9),
    ("mass reaches p exactly", DYADIC, 1.0, None, 0.75),
    ("p = 1", TIED_P, 1.3, None, 1.0),
    ("p tiny keeps the top", TIED_P, 1.0, None, 1e-12),
    ("p tiny keeps tied tops", TIED_MAX, 2.0, None, 1e-12),
    ("-inf logits", [-INF, 2.0, -INF, 1.0, 0.0], 1.0, None, 1.0),
    ("-inf logits with cuts", [-INF, 2.0, -INF, 1.0, 0.0], 0.8, 2, 0.9),
    ("-inf logits, T=0", [-INF, -INF, 3.0, -INF], 0.0, 4, 0.5),
    ("huge logits", [1e30, -1e30, 1e30, 0.0], 1.0, None, 0.7),
    ("real row", REAL, 1.0, None, 1.0),
    ("real row, balanced", REAL, 0.7, None, 0.9),
    ("real row, creative", REAL, 1.2, 50, 0.98),
    ("real row, cool and cut", REAL, 0.3, 5, 0.5),
    ("real row, greedy with cuts", REAL, 0.0, 7, 0.3),
    ("real row, hot", REAL, 5.0, 1000, 0.999),
]

JS_DISTRIBUTION = """([x, t, k, p]) => {
  const d = distribution(x, t, k, p);
  return {tempered: Array.from(d.tempered), after_k: Array.from(d.after_k),
          final: Array.from(d.final), kept: d.kept, entropy: entropy(d.final)};
}"""

JS_CURVES = """([x, temps, n, k, p]) => {
  const c = temperature_curves(x, temps, n, k, p);
  return {ids: c.ids, probs: c.probs, entropy: c.entropy};
}"""


@pytest.fixture(scope="module")
def page(browser):
    page = js_kernel_page(browser, "softmax")
    yield page
    page.close()


@pytest.mark.parametrize(("name", "x", "t", "k", "p"), CASES, ids=[c[0] for c in CASES])
def test_distribution_matches_python(page, name, x, t, k, p):
    got = page.evaluate(JS_DISTRIBUTION, [x, t, k, p])
    want = S.distribution(x, t, k, p)
    assert got["kept"] == want.kept.tolist()
    for part in ("tempered", "after_k", "final"):
        np.testing.assert_allclose(got[part], getattr(want, part), rtol=0, atol=1e-12)
    assert got["entropy"] == pytest.approx(want.entropy, abs=1e-12)


def test_the_cases_exercise_the_rules(page):
    """The shared cases are the edge cases they are named after (not all alike)."""
    kept = {name: S.distribution(x, t, k, p).kept for name, x, t, k, p in CASES}
    assert kept["tie at the k-th"].tolist() == [True, False, True, True, True, False]
    assert kept["tie at the p cut"].tolist() == [True, True, True, True, False]
    assert kept["T=0 with top-k"].sum() == 3 and kept["T=0 with top-p"].sum() == 1
    assert kept["mass reaches p exactly"].tolist() == [True, True, False, False]
    assert kept["p tiny keeps tied tops"].tolist() == [False, True, True, False]
    assert kept["real row, creative"].sum() < 50 < len(REAL)


@pytest.mark.parametrize(
    ("x", "k", "p"),
    [(REAL, None, 1.0), (REAL, 4, 1.0), (REAL, None, 0.8), (REAL, 10, 0.9), (TIED_P, 2, 0.6)],
)
def test_temperature_curves_match_python(page, x, k, p):
    temps = S.default_temperatures(5.0, 101).tolist()
    got = page.evaluate(JS_CURVES, [x, temps, 5, k, p])
    want = S.temperature_curves(x, temps, 5, k, p)
    assert got["ids"] == want.ids.tolist()
    np.testing.assert_allclose(got["probs"], want.probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["entropy"], want.entropy, rtol=0, atol=1e-12)


def test_rank_order_puts_ties_in_id_order(page):
    x = [1.0, 3.0, 1.0, -INF, 3.0, 2.0]
    assert page.evaluate("(x) => rank_order(x)", x) == S.rank_order(x).tolist()


@pytest.mark.parametrize("bad", [[-INF, -INF], [math.nan, 0.0], [INF, 0.0]])
def test_unusable_logits_are_refused_by_both(page, bad):
    with pytest.raises(ValueError):
        S.distribution(bad, 1.0)
    refused = page.evaluate(
        "(x) => { try { distribution(x, 1, null, 1); return null; }"
        " catch (e) { return e.message; } }",
        bad,
    )
    assert refused and ("logit" in refused)
