"""The residual-stream lesson (dashboard/lessons/residual.py, dashboard/views/residual.py)
against independent implementations: torch's norms with the models' own weights reproduce
what every block feeds its attention and MLP and what the final norm feeds the head (checked
through the models' own q, mlp_up and logits outputs); the stream's norms and cosines against
torch.linalg; the Pre-LN vs Post-LN verdict against plain Python over the build's JSON record.
Then the lesson in the dashboard (the real engine) and in the snapshot."""

from __future__ import annotations

import html
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dashboard.lessons import norms as N
from dashboard.lessons import residual as R
from dashboard.state import DEFAULT_TEXT, AnatomyState
from dashboard.views import residual as V
from export.pack import unpack
from export.snapshot import build_snapshot
from models.runtime import STATIC_DIR, Engine, EngineError

MODELS = ["anatomy-gpt", "anatomy-llama"]


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def _run(engine, model, text=DEFAULT_TEXT):
    ids = engine.tokenizer(model).encode(text)
    return engine.run(model, ids, outputs="all")


def _torch_norm(cfg: dict, w: dict, key: str) -> torch.nn.Module:
    """torch's own norm of the model's kind, holding the model's weights (eps pinned)."""
    C, eps = cfg["n_embd"], cfg["layer_norm_eps"]
    if cfg["norm"] == "rmsnorm":
        m = torch.nn.RMSNorm(C, eps=eps, dtype=torch.float64)
    else:
        m = torch.nn.LayerNorm(C, eps=eps, bias=f"{key}.bias" in w, dtype=torch.float64)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(w[f"{key}.weight"].astype(np.float64)))
        if f"{key}.bias" in w:
            m.bias.copy_(torch.from_numpy(w[f"{key}.bias"].astype(np.float64)))
    return m


def _linear(x: torch.Tensor, w: dict, name: str, rows: slice = slice(None)) -> torch.Tensor:
    out = x @ torch.from_numpy(w[f"{name}.weight"][rows].astype(np.float64)).T
    if f"{name}.bias" in w:
        out = out + torch.from_numpy(w[f"{name}.bias"][rows].astype(np.float64))
    return out


# -- the norms are what the models compute ------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_ln_1_of_the_stream_is_what_every_block_feeds_its_queries(engine, model):
    """For every layer: our norm (the lesson's own-norm steps) of hidden[l] equals torch's norm
    with the model's weights, and projected by the block's query weights it gives the model's
    own q (before RoPE for the LLaMA)."""
    cfg, w = engine.config(model), engine.weights(model)
    f = _run(engine, model)
    C, H = cfg["n_embd"], cfg["n_head"]
    q_model = f.q_before_rope if cfg["norm"] == "rmsnorm" else f.q
    for layer in range(cfg["n_layer"]):
        spec = R.norm_spec(cfg, w, "attn", layer)
        x = R.norm_input(f.hidden, "attn", layer)
        ours = R.both_norms(x, spec)
        own = ours.layer if spec.kind == "layernorm" else ours.rms
        ref = _torch_norm(cfg, w, f"h.{layer}.ln_1")
        with torch.no_grad():
            normed = ref(torch.from_numpy(f.hidden[layer].astype(np.float64)))
            q = _linear(normed, w, f"h.{layer}.attn.c_attn", slice(0, C))
        np.testing.assert_allclose(own.out, normed.numpy(), atol=1e-10)
        q = q.reshape(len(f.ids), H, C // H).permute(1, 0, 2).numpy()
        np.testing.assert_allclose(q, q_model[layer], atol=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_ln_2_reads_resid_mid_and_feeds_the_mlp(engine, model):
    """What the lesson's caption says: the MLP reads the stream after attention (resid_mid)
    through ln_2; torch's norm of resid_mid, projected by c_fc, is the model's mlp_up."""
    cfg, w = engine.config(model), engine.weights(model)
    f = _run(engine, model)
    for layer in range(cfg["n_layer"]):
        ref = _torch_norm(cfg, w, f"h.{layer}.ln_2")
        with torch.no_grad():
            up = _linear(ref(torch.from_numpy(f.resid_mid[layer].astype(np.float64))), w,
                         f"h.{layer}.mlp.c_fc")  # fmt: skip
        np.testing.assert_allclose(up.numpy(), f.mlp_up[layer], atol=1e-4)


@pytest.mark.parametrize("model", MODELS)
def test_the_final_norm_of_the_last_stream_gives_the_logits(engine, model):
    cfg, w = engine.config(model), engine.weights(model)
    f = _run(engine, model)
    spec = R.norm_spec(cfg, w, "final", 0)
    b = R.both_norms(R.norm_input(f.hidden, "final", 3)[-1], spec)
    own = b.layer if spec.kind == "layernorm" else b.rms
    with torch.no_grad():
        normed = _torch_norm(cfg, w, "ln_f")(torch.from_numpy(f.hidden[-1].astype(np.float64)))
        logits = normed @ torch.from_numpy(w["wte.weight"].astype(np.float64)).T
    np.testing.assert_allclose(own.out, normed[-1].numpy(), atol=1e-10)
    np.testing.assert_allclose(logits.numpy(), f.logits, atol=1e-3)


@pytest.mark.parametrize("model", MODELS)
def test_the_what_if_norm_is_torchs_other_norm_with_the_same_weight(engine, model):
    cfg, w = engine.config(model), engine.weights(model)
    f = _run(engine, model)
    spec = R.norm_spec(cfg, w, "attn", 2)
    x = f.hidden[2, 4].astype(np.float64)
    b = R.both_norms(x, spec)
    weight = torch.from_numpy(w["h.2.ln_1.weight"].astype(np.float64))
    t = torch.from_numpy(x)
    other = (
        F.rms_norm(t, (len(x),), weight, eps=cfg["layer_norm_eps"])
        if spec.kind == "layernorm"
        else F.layer_norm(t, (len(x),), weight, None, eps=cfg["layer_norm_eps"])
    )
    got = b.rms.out if spec.kind == "layernorm" else b.layer.out
    np.testing.assert_allclose(got, other.numpy(), atol=1e-12)
    assert b.own == cfg["norm"] and (spec.bias is None) == (model == "anatomy-llama")


def test_an_unknown_norm_site_is_refused():
    with pytest.raises(ValueError, match="unknown norm site 'ln_3'"):
        R.norm_key("ln_3", 0)


# -- the stream ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_the_stream_report_is_torch_linalg_over_the_interleaved_stages(engine, model):
    f = _run(engine, model)
    hidden = torch.from_numpy(f.hidden.astype(np.float64))
    mid = torch.from_numpy(f.resid_mid.astype(np.float64))
    stages = [hidden[0]]
    for layer in range(mid.shape[0]):  # after attention, then after the MLP
        stages += [mid[layer], hidden[layer + 1]]
    stages = torch.stack(stages)
    report = R.stream_report(f.hidden, f.resid_mid)
    np.testing.assert_allclose(report.norms, torch.linalg.vector_norm(stages, dim=-1), rtol=1e-12)
    delta = stages[1:] - stages[:-1]
    np.testing.assert_allclose(report.added, torch.linalg.vector_norm(delta, dim=-1), rtol=1e-12)
    cos = F.cosine_similarity(delta, stages[:-1], dim=-1, eps=0)
    np.testing.assert_allclose(report.cosines, cos, atol=1e-12)
    assert report.norms.shape == (2 * mid.shape[0] + 1, len(f.ids))
    assert len(R.stage_names(mid.shape[0])) == report.norms.shape[0]
    assert len(R.sublayer_names(mid.shape[0])) == report.added.shape[0]


def test_the_cosine_of_a_zero_vector_is_undefined_and_shapes_are_checked():
    got = R.cosine(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 2.0], [0.0, 3.0]]))
    assert math.isnan(got[0]) and got[1] == 0.0
    with pytest.raises(ValueError, match="not one model's stream"):
        R.stream_report(np.zeros((3, 2, 4)), np.zeros((3, 2, 4)))


def test_the_dims_written_out_are_the_first_and_the_largest():
    x = [0.1, -0.2, 0.3, 0.0, -9.0, 9.0]
    assert R.shown_dims(x, 3) == [0, 1, 2, 4]  # |−9| first among the tied largest
    assert R.shown_dims(x, 8) == [0, 1, 2, 3, 4, 5]
    assert R.shown_dims([5.0, 1.0], 3) == [0, 1]


def test_typed_notices_say_what_eps_and_float32_do():
    (const,) = R.typed_notices([2.0, 2.0, 2.0], 1e-5)
    assert "variance is 0" in const and "eps = 1e-05" in const
    (over,) = R.typed_notices([3e20, 1.0], 1e-5)
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(3e20) * np.float32(3e20))  # numpy's float32 agrees
    assert "overflow to inf" in over and "3.403e+38" in over
    assert R.typed_notices([1e19, 1.0], 1e-5) == []  # 1e38 still fits float32
    assert np.isfinite(np.float32(1e19) * np.float32(1e19))


# -- Pre-LN vs Post-LN ----------------------------------------------------------------------------
def _record() -> dict:
    manifest = json.loads((STATIC_DIR / "manifest.json").read_text())
    name = manifest["experiments"]["norm_position"]["file"]
    return json.loads((STATIC_DIR / name).read_text())


def test_the_verdict_is_the_records_numbers():
    raw = _record()
    runs = raw["runs"]
    rec = R.read_norm_position(STATIC_DIR, json.loads((STATIC_DIR / "manifest.json").read_text()))
    unigram = 5.9603  # checked against the manifest below
    v = R.verdict(rec, unigram)
    val = {o: runs[o]["val_loss"] for o in ("pre", "post")}
    better = min(val, key=val.get)
    worse = "post" if better == "pre" else "pre"
    assert (v.better, v.worse) == (better, worse)
    assert v.gap == pytest.approx(val[worse] - val[better], abs=1e-12)
    assert v.diverged == [o for o in ("pre", "post") if runs[o]["diverged"]]

    # plain loops: the mean of the last 20 training losses, and where the better run got there
    def mean20(loss, i):
        window = loss[max(0, i - 19) : i + 1]
        return sum(window) / len(window)

    lb, lw = runs[better]["loss"], runs[worse]["loss"]
    final = mean20(lw, len(lw) - 1)
    step = next(i for i in range(len(lb)) if mean20(lb, i) <= final + 1e-12)
    assert v.caught_up == step and v.final_smoothed[worse] == pytest.approx(final, abs=1e-9)
    for o in ("pre", "post"):
        g = runs[o]["init_block_grad_norms"]
        assert v.init_range[o] == (min(g), max(g))
        assert v.init_first_over_rest[o] == pytest.approx(g[0] / max(g[1:]))
        assert v.below_unigram[o] == (val[o] < unigram)
    manifest = json.loads((STATIC_DIR / "manifest.json").read_text())
    assert {m["training"]["unigram_entropy"] for m in manifest["models"]} == {unigram}
    assert manifest["experiments"]["norm_position"]["val_loss"] == val


def test_the_verdict_text_states_what_was_measured(engine):
    raw = _record()
    _, text = V.record_texts(engine, "anatomy-gpt")
    runs = raw["runs"]
    assert f"{runs['post']['val_loss']:.3f}" in text and f"{runs['pre']['val_loss']:.3f}" in text
    slower = "Post-LN" if runs["post"]["val_loss"] > runs["pre"]["val_loss"] else "Pre-LN"
    assert f"<b>{slower} trained slower</b>" in text
    if not any(r["diverged"] for r in runs.values()):
        assert "Neither run diverged" in text
    assert f"for {raw['training']['steps']} steps" in text
    assert f"{min(runs['post']['init_block_grad_norms']):.3g}" in text


def test_a_diverged_run_is_named_and_not_called_slower():
    raw = _record()
    raw["runs"]["pre"]["loss"][300:] = [None] * (len(raw["runs"]["pre"]["loss"]) - 300)
    raw["runs"]["pre"]["val_loss"], raw["runs"]["pre"]["diverged"] = None, True
    rec = R.norm_position(raw)
    v = R.verdict(rec, 5.96)
    assert v.diverged == ["pre"] and v.better == "post" and v.caught_up is None
    text = V.verdict_html(rec, v, 5.96)
    assert "<b>Pre-LN diverged</b>" in text and "trained slower" not in text


def test_a_missing_record_says_how_to_make_it(tmp_path):
    with pytest.raises(ValueError, match="no Pre-LN vs Post-LN measurement.*make build"):
        R.read_norm_position(tmp_path, {"experiments": {}})
    with pytest.raises(ValueError, match="is missing: run `make build`"):
        R.read_norm_position(tmp_path, {"experiments": {"norm_position": {"file": "x.json"}}})
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ValueError, match="unreadable"):
        R.read_norm_position(tmp_path, {"experiments": {"norm_position": {"file": "x.json"}}})


# -- the dashboard ------------------------------------------------------------------------------
def _view(engine, **params) -> tuple[AnatomyState, V.ResidualLesson]:
    state = AnatomyState(engine=engine, lesson="residual", **params)
    return state, V.ResidualLesson(state=state)


def test_the_view_draws_the_selected_tokens_stream(engine):
    state, view = _view(engine)
    f = _run(engine, state.model)
    for q in (state.query, 0, 5):
        state.query = q
        norms = np.linalg.norm(f.hidden[:, q].astype(np.float64), axis=-1)
        assert view._selected.data["y"][0] == pytest.approx(norms[0], rel=1e-12)
        assert view._selected.data["y"][-1] == pytest.approx(norms[-1], rel=1e-12)
        attn = f.resid_mid[1, q].astype(np.float64) - f.hidden[1, q]
        assert view._added.data["top"][2] == pytest.approx(np.linalg.norm(attn), rel=1e-9)
        cos = F.cosine_similarity(
            torch.from_numpy(attn), torch.from_numpy(f.hidden[1, q].astype(np.float64)), dim=0
        )
        assert view._cos.data["top"][2] == pytest.approx(float(cos), abs=1e-12)
        assert html.escape(state.labels[q]) in view._token.object
        assert f"{norms[0]:.4g} after the embeddings" in view._token.object


@pytest.mark.parametrize("model", MODELS)
def test_layer_token_and_site_redraw_the_steps_with_the_right_numbers(engine, model):
    state, view = _view(engine, model=model)
    f = _run(engine, model)
    w = engine.weights(model)
    for layer, q, site in ((0, 3, "attn"), (2, 1, "attn"), (3, 6, "final")):
        state.param.update(layer=layer, query=q, norm_site=site)
        x = torch.from_numpy(f.hidden[-1 if site == "final" else layer, q].astype(np.float64))
        key = "ln_f" if site == "final" else f"h.{layer}.ln_1"
        out = _torch_norm(engine.config(model), w, key)(x).detach().numpy()
        np.testing.assert_allclose(view._steps.data["out"], out, atol=1e-10)
        np.testing.assert_allclose(view._steps.data["x"], x.numpy(), rtol=0)
        text = view._steps_html.object
        if model == "anatomy-gpt":
            assert f"mean μ = {float(x.mean()):.4g}<" in text
            assert f"= {float(x.var(unbiased=False)):.4g}<" in text
            assert text.index("LayerNorm: anatomy-gpt") < text.index("RMSNorm, what if")
        else:
            assert f"mean of x² = {float((x**2).mean()):.4g}<" in text
            assert text.index("RMSNorm: anatomy-llama") < text.index("LayerNorm, what if")
        assert f"own {key} " in text
        assert f"dim 0: {float(x[0]):.4g} " in text


def test_a_typed_vector_is_stepped_through_and_bad_input_keeps_the_state(engine):
    state, view = _view(engine)
    view.vector_input.value = "2, 4, 4, 4, 5, 5, 7, 9"
    assert state.typed_vector == "2, 4, 4, 4, 5, 5, 7, 9"
    t = torch.tensor([2.0, 4, 4, 4, 5, 5, 7, 9], dtype=torch.float64)
    ln = F.layer_norm(t, (8,), eps=1e-5)
    assert "mean μ = 5<" in view._typed_html.object  # mean 5, variance 4: by hand
    assert "mean of (x − μ)² = 4<" in view._typed_html.object
    assert f"= {float(ln[0]):.4g}</p>" in view._typed_html.object
    good = view._typed_html.object
    for bad, said in (
        ("", "type a few numbers"),
        ("1, x, 3", "&#x27;x&#x27; is not a number"),
        ("1e39", "beyond float32&#x27;s largest value"),
        ("nan", "is not a finite number"),
    ):
        view.vector_input.value = bad
        assert view._typed_error.visible and said in view._typed_error.object, bad
        assert state.typed_vector == "2, 4, 4, 4, 5, 5, 7, 9" and view._typed_html.object == good
    view.vector_input.value = "3, 3, 3"
    assert not view._typed_error.visible
    assert view._typed_notice.visible and "eps = 1e-05" in view._typed_notice.object
    assert "→ ÷ 0.003162 = 0</p>" in view._typed_html.object  # sqrt(1e-5), by hand
    view.vector_input.value = "3e20, -1e20, 2"
    assert "overflow to inf" in view._typed_notice.object
    state.typed_vector = "1 2"  # a link sets it: the box follows
    assert view.vector_input.value == "1 2" and "(2 dimensions)" in view._typed_html.object


def test_a_links_bad_vector_is_shown_with_its_message(engine):
    from panel.io.location import Location

    state = AnatomyState(engine=engine, lesson="residual")
    state.sync_url(Location(search="?lesson=residual&vector=1%2C+oops"))
    view = V.ResidualLesson(state=state)
    assert "&#x27;oops&#x27; is not a number" in view._typed_error.object
    assert view._typed_error.visible


def test_one_token_works(engine):
    state, view = _view(engine, text="the")
    assert len(state.ids) == 1 and state.status == "ok"
    assert len(view._selected.data["y"]) == 2 * engine.config(state.model)["n_layer"] + 1
    assert "Token <b class='tok'>" in view._token.object and view._steps_html.object


def test_a_model_file_without_resid_mid_is_explained(engine, monkeypatch):
    state, view = _view(engine)
    names = tuple(n for n in engine.outputs(state.model) if n != "resid_mid")
    monkeypatch.setattr(engine, "outputs", lambda model, precision="fp32": names)
    state.text = "A new text"
    assert view._stream_error.visible
    assert "has no resid_mid output" in view._stream_error.object
    assert "make build" in view._stream_error.object
    assert view._steps_html.object and view._typed_html.object  # the rest still works
    with pytest.raises(EngineError):
        state.outputs("resid_mid")
    page = html.unescape(unpack(build_snapshot("A new text", engine=engine, lessons="residual")))
    assert "has no resid_mid output" in page


def test_html_in_a_token_is_escaped(engine):
    state, view = _view(engine, text="<b>x</b>")
    state.query = 0
    assert "<b>x" not in view._token.object.replace("<b class='tok'>", "")
    assert "&lt;" in view._token.object


# -- the snapshot -------------------------------------------------------------------------------
def test_the_snapshot_embeds_the_weights_and_the_verdict(engine):
    page = html.unescape(unpack(build_snapshot(DEFAULT_TEXT, engine=engine, lessons="residual")))
    for name in ("residual-weights", "residual-stream-norms", "output-hidden", "residual-loss"):
        assert f'"{name}"' in page, name
    assert "trained slower" in page and "Pre-LN vs Post-LN" in page
    assert N.parse_vector(V.ResidualOptions.typed_vector).size == 4
