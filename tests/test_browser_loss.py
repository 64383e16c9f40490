"""The next-token loss lesson in the dashboard's view and in a real Chromium offline: every
bar is torch's cross-entropy of the model's logits against the next token, the summary its
mean and e^mean, and a tap in the page shows the Python view's text for that position."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from playwright.sync_api import expect

from dashboard.state import AnatomyState
from dashboard.views import loss as V
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_get, open_offline

TEXT = "Return the value of the named attribute of object. If the attribute does not exist"


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _torch_losses(engine, model):
    ids = engine.tokenizer(model).encode(TEXT)
    logits = torch.from_numpy(engine.run(model, ids).logits.astype(np.float64))
    return ids, torch.nn.functional.cross_entropy(
        logits[:-1], torch.tensor(ids[1:]), reduction="none"
    )


@pytest.mark.parametrize("model", ["anatomy-gpt", "anatomy-llama"])
def test_the_view_scores_every_next_token(engine, model):
    ids, want = _torch_losses(engine, model)
    state = AnatomyState(engine=engine, lesson="loss", text=TEXT, model=model)
    state.query = 4
    view = V.LossLesson(state=state)
    np.testing.assert_allclose(view._f.source.data["top"], want.numpy(), rtol=1e-9)
    mean = float(want.mean())
    assert f"mean loss <b>{mean:.3f}</b> nats" in view._summary.object
    assert f"= <b>{np.exp(mean):.1f}</b>" in view._summary.object
    assert f"loss −ln p = <b>{float(want[4]):.3f}</b>" in view._position.object
    assert f"p = {float(torch.exp(-want[4])):.4f}" in view._position.object
    worst = int(torch.argmax(want))
    assert f"<td class='num'>{worst}</td>" in view._table.object
    assert view._f.source.data["color"][worst] == view.style.accent
    state.query = len(ids) - 1
    assert "is the last token: its next token is not in the text" in view._position.object
    assert view._f.selected.data["x"] == [len(ids) - 2]


def test_a_one_token_text_says_there_is_no_target(engine):
    state = AnatomyState(engine=engine, lesson="loss", text="Return")
    view = V.LossLesson(state=state)
    assert view._message.visible and "no next token" in view._message.object
    state.text = TEXT
    assert not view._message.visible


@pytest.mark.browser
def test_the_snapshot_shows_each_positions_text(browser, engine, tmp_path):
    path = tmp_path / "loss.html"
    export_snapshot(path, TEXT, lessons="loss")
    page = open_offline(browser, path, 'doc.get_model_by_name("loss-position") != null')
    assert page.requests == [page.url_] and page.errors == []
    model = engine.default_model
    ids, want = _torch_losses(engine, model)
    bars = model_get(page, "loss-bars", "data")
    np.testing.assert_allclose(bars["top"], want.numpy(), rtol=1e-6)
    box = page.evaluate(
        "() => { const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name("
        "'loss-figure')); const f = v.frame.bbox, r = v.el.getBoundingClientRect();"
        " return {x: r.left + f.left, y: r.top + f.top, w: f.width, h: f.height,"
        " xs: v.frame.x_range.start, xe: v.frame.x_range.end}; }"
    )
    from dashboard.views.loss import position_html, vocab_of
    from models.reading import read_text

    reading = read_text(engine, model, TEXT)
    logits = engine.run(model, reading.ids).logits
    vocab = vocab_of(engine.tokenizer(model))
    for t in (3, 11):
        x = box["x"] + (t - box["xs"]) / (box["xe"] - box["xs"]) * box["w"]
        page.mouse.click(x, box["y"] + box["h"] - 3)
        expect(page.locator(".loss-position")).to_contain_text(f"(position {t})")
        assert model_get(page, "loss-position", "text") == position_html(
            logits, reading.ids, reading.labels, vocab, t
        )
    assert page.errors == []
    page.close()
