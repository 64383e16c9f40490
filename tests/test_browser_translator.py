"""The encoder-decoder lessons: the views draw the translator's own attention (checked
against the torch module with the committed weights), bad numbers get a message and keep the
last view, a person types a number and steps the decode in a served page, and the snapshot
swaps the same data offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from playwright.sync_api import expect
from safetensors.torch import load_file

from dashboard.state import AnatomyState
from dashboard.views import translator as V
from export.snapshot import export_snapshot
from models import numbers as N
from models.runtime import STATIC_DIR, Engine
from models.translation import open_translator
from models.translator import Translator, TranslatorConfig
from tests.browser_support import model_get, model_set, open_offline, serve

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def torch_model(engine):
    entry = engine.manifest["translator"]
    model = Translator(TranslatorConfig(**entry["config"]))
    model.load_state_dict(load_file(str(STATIC_DIR / entry["weights_file"])))
    return model.eval()


def _torch_attention(model, digits: str, tokens: list[str]):
    src = torch.tensor([N.source_ids(digits)])
    tgt = torch.tensor([[N.TARGET_IDS[t] for t in tokens]])
    with torch.no_grad():
        memory, enc = model.encode(src)
        _, self_attn, cross = model.decode(tgt, memory)
    return enc[:, 0].numpy(), self_attn[:, 0].numpy(), cross[:, 0].numpy()


def _image(view) -> np.ndarray:
    return np.asarray(view._heat.source.data["image"][0])


def _ticks(fig, axis: str) -> list[str]:
    a = getattr(fig, axis)[0]
    return [a.major_label_overrides[i] for i in a.ticker.ticks]


def test_each_lesson_draws_the_models_own_attention(engine, torch_model):
    state = AnatomyState(engine=engine, lesson="encoder")
    enc_v, dec_v, cross_v = (
        V.EncoderLesson(state=state),
        V.DecoderLesson(state=state),
        V.CrossLesson(state=state),
    )
    state.tr_number = "700010"
    for layer, head in ((0, 0), (1, 3), (1, 1)):
        state.param.update(tr_layer=layer, tr_head=head)
        words = N.word_tokens(700010)
        enc, self_attn, cross = _torch_attention(torch_model, "700010", [N.START, *words])
        np.testing.assert_allclose(_image(enc_v), enc[layer, head], atol=1e-5)
        np.testing.assert_allclose(_image(dec_v), self_attn[layer, head], atol=1e-5)
        np.testing.assert_allclose(_image(cross_v), cross[layer, head], atol=1e-5)
        assert cross_v._heat.figure.title.text == f"Cross-attention, L{layer} H{head}"
    # causal: nothing above the diagonal; the encoder's rows all spread over every digit
    assert np.allclose(np.triu(_image(dec_v), 1), 0)
    assert (_image(enc_v) > 0).all()
    assert _ticks(cross_v._heat.figure, "xaxis") == [
        "7·100k",
        "0·10k",
        "0·1k",
        "0·100",
        "1·10",
        "0·1",
    ]
    assert _ticks(cross_v._heat.figure, "yaxis") == [*N.word_tokens(700010), N.END]
    assert "✓ correct" in cross_v._verdict.object
    assert "seven hundred thousand ten" in cross_v._verdict.object


def test_the_decode_is_revealed_step_by_step(engine):
    state = AnatomyState(engine=engine, lesson="cross", tr_number="1204")
    view = V.CrossLesson(state=state)
    n = len(N.word_tokens(1204)) + 1
    for step in (1, 3, n):
        state.tr_step = step
        assert _image(view).shape == (step, 4)
        assert view._text.object.count("<li>") == step
        assert f"Step {step} of {n}" in view._text.object
    assert len(_ticks(view._heat.figure, "yaxis")) == n  # the frame holds every row throughout


def test_teacher_forcing_and_free_running_feed_different_words(engine):
    state = AnatomyState(engine=engine, lesson="decoder", tr_number="0042")
    view = V.DecoderLesson(state=state)
    forced_rows = _ticks(view._heat.figure, "yaxis")
    assert forced_rows == [N.START, "forty-", "two"]  # the reference words of 42
    assert "p(true next)" in view._text.object and "✗ (true:" in view._text.object
    state.tr_feed = "free"
    free_rows = _ticks(view._heat.figure, "yaxis")
    got = open_translator(engine).translate("0042")
    assert free_rows == [N.START, *got.tokens[:-1]] != forced_rows
    assert "✗ wrong" in view._verdict.object and "leading zero" in view._verdict.object


@pytest.mark.parametrize(
    ("typed", "message"),
    [("12a", "not a number in digits"), ("", "Type a number"), ("1234567", "beyond")],
)
def test_a_bad_number_gets_a_message_and_the_last_view_stays(engine, typed, message):
    state = AnatomyState(engine=engine, lesson="cross", tr_number="42")
    view = V.CrossLesson(state=state)
    before = _image(view).copy()
    view.number_input.value = typed
    assert view._error.visible and message in view._error.object
    assert state.tr_number == "42"
    np.testing.assert_array_equal(_image(view), before)
    view.number_input.value = "12,345"
    assert not view._error.visible and state.tr_number == "12,345"
    assert "twelve thousand three hundred forty-five" in view._verdict.object


def test_a_link_with_a_bad_number_says_so(engine):
    state = AnatomyState(engine=engine, lesson="encoder", tr_number="<b>x</b>")
    view = V.EncoderLesson(state=state)
    assert view._error.visible and "&lt;b&gt;" in view._error.object
    assert "one thousand two hundred four" in view._verdict.object  # the default stands


def test_a_build_without_a_translator_says_so(tmp_path):
    manifest = json.loads((STATIC_DIR / "manifest.json").read_text())
    del manifest["translator"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    for name in ("anatomy-gpt.onnx", "anatomy-gpt-bpe.tiktoken", "anatomy-gpt-bpe.json"):
        (tmp_path / name).symlink_to(STATIC_DIR / name)
    state = AnatomyState(engine=Engine(tmp_path), lesson="encoder")
    view = V.EncoderLesson(state=state)
    assert view._problem.visible and "no translator" in view._problem.object


def test_the_dashboard_translates_what_is_typed_and_steps_the_decode(browser):
    with serve() as (url, _proc):
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{url}?lesson=cross&trs=2")
        page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.some(d => d.get_model_by_name('tr-cross'))",
            timeout=30_000,
        )
        box = page.locator(".tr-number input")
        box.fill("999999")
        box.press("Enter")
        expect(page.locator(".tr-verdict-pane")).to_contain_text(
            "nine hundred ninety-nine thousand nine hundred ninety-nine", timeout=15_000
        )
        shape = """() => { const d = Bokeh.documents.find(d => d.get_model_by_name('tr-cross'));
          const s = d.get_model_by_name('tr-cross-image'); return [s.data.dh[0], s.data.dw[0]]; }"""
        page.wait_for_function(f"() => ({shape})()[1] === 6")
        assert page.evaluate(shape) == [2, 6]
        handle = page.locator(".tr-step .noUi-handle")
        handle.focus()
        for _ in range(3):
            handle.press("ArrowRight")
        page.wait_for_function(f"() => ({shape})()[0] === 5")
        assert "trs=5" in page.url and "num=999999" in page.url
        box.fill("12a")
        box.press("Enter")
        expect(page.locator(".tr-error")).to_contain_text("not a number in digits")
        assert page.evaluate(shape) == [5, 6]
        page.close()


@pytest.mark.parametrize("lesson", ["encoder", "decoder", "cross"])
def test_the_snapshot_swaps_the_same_data(engine, browser, tmp_path, lesson):
    path = tmp_path / f"{lesson}.html"
    export_snapshot(path, "Return the value.", lessons=[lesson])
    page = open_offline(browser, path, f'doc.get_model_by_name("tr-{lesson}") != null')
    runtime = open_translator(engine)
    options = model_get(page, f"tr-{lesson}-number", "options")
    assert options[0] == V.DEFAULT_NUMBER and "0042" in options and len(options) == len(V.EXAMPLES)
    cases = (("700010", 1, 2, 3, "free"), ("0042", 0, 3, 10, "forced"), ("42", 1, 0, 2, "free"))
    for number, layer, head, step, feed in cases:
        model_set(page, f"tr-{lesson}-number", "value", number)
        model_set(page, f"tr-{lesson}-layer", "active", layer)
        model_set(page, f"tr-{lesson}-head", "active", head)
        if lesson == "cross":
            model_set(page, "tr-cross-step", "value", step)
        if lesson == "decoder":
            model_set(page, "tr-decoder-feed", "active", list(V.FEEDS).index(feed))
        t, f = V.translation(runtime, number), V.forced(runtime, number)
        args, title, text = V.view_data(lesson, t, f, V._Pick(layer, head, step, feed))
        assert model_get(page, f"tr-{lesson}-text", "text") == text
        assert model_get(page, f"tr-{lesson}-verdict", "text") == V.verdict_html(t)
        img, rows, cols = page.evaluate(
            f"""() => {{ const d = Bokeh.documents[0];
              const s = d.get_model_by_name('tr-{lesson}-image');
              return [Array.from(s.data.image[0]), s.data.dh[0], s.data.dw[0]]; }}"""
        )
        matrix, row_labels, col_labels, shown = args
        shown = len(row_labels) if shown is None else min(shown, len(row_labels))
        assert (rows, cols) == (shown, len(col_labels))
        np.testing.assert_allclose(
            np.reshape(img, (rows, cols)), np.asarray(matrix)[:shown], atol=1e-4
        )
        labels = page.evaluate(
            f"""() => {{ const fig = Bokeh.documents[0].get_model_by_name('tr-{lesson}');
              const a = fig.left[0];
              return a.ticker.ticks.map(i => a.major_label_overrides.get(i)); }}"""
        )
        assert labels == row_labels
        got_title = page.evaluate(
            f"() => Bokeh.documents[0].get_model_by_name('tr-{lesson}').title.text"
        )
        assert got_title == title
    expect(page.locator("body")).not_to_contain_text("Traceback")
    assert page.errors == []
    page.close()
