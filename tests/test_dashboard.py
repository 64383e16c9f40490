"""The dashboard's state and lesson logic, without a browser."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from dashboard.lessons.attention import fill_comparison, head_stage, query_detail, variant_mask
from dashboard.state import AnatomyState
from models.reading import token_labels
from models.runtime import Engine
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def engine(quick_build):
    return Engine(quick_build)


def make(engine, **kw):
    return AnatomyState(engine=engine, lessons=["attention", "mask"], **kw)


def test_a_page_opens_on_the_last_token_unless_the_link_says_otherwise(engine):
    from panel.io.location import Location

    s = make(engine, text="the cat sat")
    assert s.query == s.key == len(s.ids) - 1  # the token whose next one is predicted
    linked = make(engine, text="the cat sat")
    linked.sync_url(Location(search="?q=1"))
    assert linked.query == 1


def test_derived_tokens_and_forward(engine):
    s = make(engine, text="the cat the")
    assert s.status == "ok" and s.forward is not None
    assert s.ids == engine.tokenizer(s.model).encode("the cat the")
    assert len(set(s.labels)) == len(s.labels)  # unique even when a token repeats
    assert s.labels[0].startswith("0: ")
    assert s.forward.attn_probs.shape[-1] == len(s.ids)


def test_empty_text_is_a_prompt_not_an_error(engine):
    s = make(engine, text="")
    assert s.status == "empty" and "Type a sentence" in s.message and s.forward is None
    s.text = "hello"
    assert s.status == "ok" and s.forward is not None


def test_long_text_is_truncated_with_a_notice(engine):
    block = engine.config(engine.default_model)["block_size"]
    s = make(engine, text="word " * (3 * block))
    assert len(s.ids) == block
    assert f"only the first {block} tokens" in s.notice


@pytest.mark.parametrize(
    "text",
    ["😀🎉 emoji", "漢字かな交じり", "שלום עולם", "tab\tnew\nline\x00\x07", "<b>x</b><script>"],
)
def test_any_unicode_runs(engine, text):
    s = make(engine, text=text)
    assert s.status == "ok", s.message
    assert engine.tokenizer(s.model).decode(s.ids) == text


def test_selection_is_clamped_to_the_new_shapes(engine):
    s = make(engine, text="a b c d e f g h")
    s.query = len(s.ids) - 1
    s.text = "a b"
    assert s.query == len(s.ids) - 1
    s.head = 99
    assert s.head == engine.config(s.model)["n_head"] - 1


def test_missing_model_is_a_message(tmp_path):
    s = AnatomyState(engine=None, lessons=["attention"])
    # no engine could be built from an empty folder: the state carries the message
    from models.runtime import EngineError

    with pytest.raises(EngineError) as err:
        Engine(tmp_path)
    s._engine_error = str(err.value)
    s._engine = None
    s._update()
    assert s.status == "error" and "manifest.json" in s.message


def test_url_round_trip(engine):
    from panel.io.location import Location

    s = make(engine)
    loc = Location(search="?text=one+two+three&layer=1&head=1&q=2&lesson=mask&stage=scaled")
    s.sync_url(loc)
    assert (s.text, s.layer, s.head, s.query, s.lesson, s.stage) == (
        "one two three",
        1,
        1,
        2,
        "mask",
        "scaled",
    )
    s.head = 0
    s2 = make(engine)
    s2.sync_url(Location(search=loc.search))
    assert (s2.text, s2.layer, s2.head, s2.query, s2.lesson, s2.stage) == (
        "one two three",
        1,
        0,
        2,
        "mask",
        "scaled",
    )


def test_bad_url_values_are_skipped_not_fatal(engine):
    from panel.io.location import Location

    s = make(engine)
    s.sync_url(Location(search="?text=hi+there&model=nope&layer=-3&stage=bogus&classroom=true"))
    assert s.text == "hi there" and s.classroom is True
    assert s.model == engine.default_model and s.stage == "probs"
    assert "Ignored" in s.notice and "nope" in s.notice


def test_steps(engine):
    s = make(engine, text="a b c", query=0)
    s.step_query(-1)
    assert s.query == 0
    s.step_query(10)
    assert s.query == len(s.ids) - 1
    s.step_lesson(1)
    assert s.lesson == "mask"
    s.step_lesson(1)
    assert s.lesson == "attention"


def test_labels_keep_html_as_text():
    assert token_labels(["<b>", "x"]) == ["0: <b>", "1: x"]


def test_head_stage_matches_model(engine):
    s = make(engine, text="the cat sat on the mat")
    f = s.forward
    probs = torch.softmax(torch.from_numpy(head_stage(f.attn_scores[0, 0], None, "masked")), -1)
    np.testing.assert_allclose(probs.numpy(), f.attn_probs[0, 0], atol=1e-5)


def test_fill_comparison_against_torch():
    rng = np.random.default_rng(1)
    scaled = rng.standard_normal((6, 6))
    allowed = variant_mask("padding", 6, pad=2)
    c = fill_comparison(scaled, allowed)
    t = torch.from_numpy(scaled)
    m = torch.from_numpy(allowed)
    p_inf = torch.softmax(t.masked_fill(~m, float("-inf")), -1).numpy()
    p_big = torch.softmax(t.masked_fill(~m, -1e9), -1).numpy()
    assert c["empty_rows"] == [0, 1] == c["nan_rows"] == c["uniform_rows"]
    assert np.isnan(p_inf[:2]).all() and np.allclose(p_big[:2], 1 / 6)
    np.testing.assert_allclose(c["probs_inf"][2:], p_inf[2:], atol=1e-12)
    assert c["max_abs_diff"] == pytest.approx(np.abs(p_inf[2:] - p_big[2:]).max(), abs=1e-15)


def test_query_detail():
    scaled = np.array([[1.0, 9.0], [0.5, 2.0]])
    probs = torch.softmax(
        torch.tensor(scaled).masked_fill(
            torch.triu(torch.ones(2, 2, dtype=bool), 1), float("-inf")
        ),
        -1,
    ).numpy()
    d = query_detail(scaled, probs, 1, 0)
    assert d["score"] == 0.5 and d["allowed"] and d["top"][0][0] == 1
    assert not query_detail(scaled, probs, 0, 1)["allowed"]


def test_app_never_imports_torch(quick_build):
    code = (
        "import os, sys; os.environ['ANATOMY_STATIC'] = sys.argv[1];"
        "import panel_serve, dashboard.app;"
        "from dashboard.state import AnatomyState;"
        "from dashboard.views import LESSONS;"
        "s = AnatomyState(lessons=list(LESSONS)); assert s.status == 'ok', s.message;"
        "[LESSONS[n].view(state=s) for n in LESSONS];"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')];"
        "assert not bad, bad; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(quick_build)], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("classroom", [False, True])
def test_header_shows_model_provider_and_time(engine, classroom):
    from dashboard.app import Shell

    state = make(engine, classroom=classroom)
    shell = Shell(state=state)
    header = shell.header_info.object
    f = state.forward
    assert state.model in header
    # the provider the session really has, not the one asked for
    provider = engine.provider(state.model)
    assert (provider.removesuffix("ExecutionProvider") if classroom else provider) in header
    assert f"{1000 * f.seconds:.1f} ms" in header and f"({len(f.ids)} tokens)" in header
    state.text = "A shorter text."  # a new forward pass: the header follows it
    assert f"({len(state.forward.ids)} tokens)" in shell.header_info.object
    assert len(state.forward.ids) != len(f.ids)


def test_top_k_and_top_p_travel_in_the_url(engine):
    from panel.io.location import Location

    s = make(engine)
    loc = Location(search="?topk=7&topp=0.9&temperature=0.5")
    s.sync_url(loc)
    assert (s.top_k, s.top_p, s.temperature) == (7, 0.9, 0.5)
    s.top_k, s.top_p = None, 0.75  # back to the URL: top-k off again
    assert "topk" not in loc.search and "null" not in loc.search  # off: not in the link
    s2 = make(engine)
    s2.sync_url(Location(search=loc.search))
    assert (s2.top_k, s2.top_p) == (None, 0.75)
    # out-of-range values in a link are skipped with a notice, the rest applies
    s3 = make(engine)
    s3.sync_url(Location(search="?topk=0&topp=1.5&layer=1"))
    assert (s3.top_k, s3.top_p, s3.layer) == (None, 1.0, 1)
    assert "topk=0" in s3.notice and "topp=1.5" in s3.notice


def test_lessons_off_screen_wait_and_catch_up(engine):
    from dashboard.app import Shell

    state = AnatomyState(engine=engine, lessons=["attention", "mask", "sampling"])
    shell = Shell(state=state)
    attention = shell._views["attention"]
    state.lesson = "mask"
    mask = shell._views["mask"]
    assert (attention.shown, mask.shown) == (False, True)

    state.text = "A new sentence for the mask."
    n = len(state.ids)
    heatmap = attention._heatmap.labels.data["label"]
    assert len(mask._probs.labels.data["label"]) == n  # the lesson on screen follows at once
    assert heatmap != state.labels  # the hidden one has not drawn...
    state.layer = 1
    state.lesson = "attention"  # ...until it is shown: then it shows the current state
    assert attention._heatmap.labels.data["label"] == state.labels
    np.testing.assert_array_equal(
        attention._heatmap.source.data["image"][0], state.forward.attn_probs[1, state.head]
    )
    assert "Layer 1" in attention._heatmap.figure.title.text


def test_the_page_document_is_the_same_when_built_frozen():
    """create_app's page goes into its document with the model graph frozen (one walk instead
    of one per root): the document must hold exactly what Panel's own server_doc puts there."""
    from bokeh.document import Document
    from panel.io.state import set_curdoc

    import dashboard.views  # noqa: F401 - registers the lessons
    from dashboard.app import create_app

    def build(frozen: bool) -> tuple[list[str], dict]:
        doc = Document()
        with set_curdoc(doc):
            page = create_app()
            if not frozen:
                page.server_doc = type(page).server_doc.__get__(page)  # Panel's own
            page.server_doc(doc)
        kinds = sorted(type(m).__name__ for m in doc.models)
        assert {m.id for m in doc.models} == {m.id for r in doc.roots for m in r.references()}
        return kinds, {type(r).__name__: len(list(r.references())) for r in doc.roots}

    assert build(frozen=True) == build(frozen=False)


def test_option_select_ignores_values_that_are_not_options():
    """What the browser sends for the model and tensor pickers: an option is taken, anything
    else (only a crafted message can send it) is dropped without an error."""
    from dashboard.views.widgets import OptionSelect

    select = OptionSelect(options=["anatomy-gpt", "mine"], value="anatomy-gpt")
    select._process_events({"value": "/etc/passwd"})
    assert select.value == "anatomy-gpt"
    select._process_events({"value": "mine"})
    assert select.value == "mine"


@pytest.mark.parametrize("classroom", [False, True])
def test_building_every_lesson_warns_nothing(engine, classroom):
    """A teacher's terminal shows the URL, not a Panel warning per page (a FlexBox with a
    fixed width inside a stretching layout used to print one for every student)."""
    import param

    from dashboard.app import Shell, build_template
    from dashboard.views import LESSONS

    before = param.parameterized.warning_count
    state = make(engine, classroom=classroom)
    build_template(Shell(state=state))
    for name in LESSONS:
        LESSONS[name].view(state=state).__panel__()
    assert param.parameterized.warning_count == before
