"""The positions lesson's dashboard view on the real models: what it draws is what the pure
functions give, and the relative-property table's score at shift 0 is the model's own."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dashboard.lessons import positions as P
from dashboard.state import AnatomyState
from dashboard.views import positions as V
from models.runtime import STATIC_DIR, Engine

TEXT = "Return the value of the named attribute of object."


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _view(engine, **options):
    state = AnatomyState(engine=engine, lesson="positions", text=TEXT)
    state.param.update(**options)
    return state, V.PositionsLesson(state=state)


def test_the_pair_turns_with_the_options(engine):
    state, view = _view(engine, rope_pair=2, rope_position=17)
    theta = P.rope_frequencies(32, 10000.0)[2]
    arrow = view._f.arrow.data
    want = P.rotate_pair([1.0, 0.0], [17], theta)[0]
    assert [arrow["x1"][0], arrow["y1"][0]] == pytest.approx(want.tolist(), abs=1e-12)
    assert len(view._f.path.data["x"]) == V.ROPE_MAX_POSITION + 1
    assert f"At position 17 it has turned {17 * theta:.4f} radians" in view._pair_text.object
    state.rope_position = 0
    assert [view._f.arrow.data["x1"][0], view._f.arrow.data["y1"][0]] == [1.0, 0.0]
    state.rope_pair = 40  # a link's pair past d_head / 2 = 16 pairs: the last one
    assert view._f.circle.title.text.startswith("Pair 15,") and view._pair_widget.value == 15


@pytest.mark.parametrize("n", [1, 4, 6, 12])
def test_the_slopes_table_lists_every_head(engine, n):
    _, view = _view(engine, alibi_heads=n)
    cells = re.findall(
        r"<tr><td class='num'>(\d+)</td><td class='num'>([^<]+)</td>", view._slopes.object
    )
    assert [int(h) for h, _ in cells] == list(range(n))
    assert [float(s) for _, s in cells] == pytest.approx(P.alibi_slopes(n).tolist(), rel=1e-5)
    power = n & (n - 1) == 0
    assert ("is a power of two" in view._slopes.object) == power


def test_the_alibi_what_if_is_the_models_scores_plus_the_bias(engine):
    state, view = _view(engine, layer=2, head=1)
    w = P.alibi_what_if(state.forward.attn_scores[2])
    np.testing.assert_allclose(view._probs.source.data["image"][0], w.probs[1], atol=1e-7)
    causal = np.tril(np.ones_like(w.bias[1], dtype=bool))
    got = view._bias.source.data["image"][0]
    np.testing.assert_allclose(got[causal], w.bias[1][causal], atol=1e-7)
    assert np.isneginf(got[~causal]).all()


def test_the_relative_table_is_the_rope_models_own_score_at_every_shift(engine):
    state, view = _view(engine, layer=1, head=3, query=9, key=4)
    rows = re.findall(r"<td class='num'>(\d+)</td><td class='num'>\((\d+), (\d+)\)</td>"
                      r"<td class='num'>([-0-9.]+)</td>", view._relative.object)  # fmt: skip
    assert [int(r[0]) for r in rows] == list(V.SHIFTS)
    ids = engine.tokenizer("anatomy-llama").encode(TEXT)
    model_score = engine.run("anatomy-llama", ids).attn_scores[1, 3, 9, 4]
    for _, m, n, score in rows:
        assert int(m) - int(n) == 5
        assert float(score) == pytest.approx(float(model_score), abs=1e-5)


def test_the_learned_table_is_anatomy_gpts(engine):
    _, view = _view(engine)
    wpe = engine.weights("anatomy-gpt")["wpe.weight"].astype(np.float64)
    norms = np.linalg.norm(wpe, axis=1)
    np.testing.assert_allclose(
        view._f.learned.source.data["image"][0], (wpe @ wpe.T) / np.outer(norms, norms), atol=1e-6
    )
    assert view._f.pca is not None


def test_the_sinusoidal_wavelength_of_every_pair(engine):
    _, view = _view(engine)
    (line,) = view._f.sin_waves.renderers
    x, y = np.asarray(line.data_source.data["x"]), np.asarray(line.data_source.data["y"])
    d = 128
    np.testing.assert_array_equal(x, np.arange(d // 2))
    # the wavelength of sin(p / 10000^(2i/d)) in positions: one turn, 2π, over its frequency
    np.testing.assert_allclose(y, [2 * np.pi * 10000 ** (2 * i / d) for i in range(d // 2)])
