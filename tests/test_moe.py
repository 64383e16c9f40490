"""The mixture-of-experts recipe (models/gpt.py, ``mlp="moe"``) against Hugging Face's Mixtral:
``MixtralForCausalLM`` built from a config with our weights (models/mixtral_hf.py), its
``MixtralSparseMoeBlock`` and its ``load_balancing_loss_func``. On a small random model
and on the committed anatomy-moe: logits, router logits, the chosen experts, the balance
loss; the ONNX graph against torch; the manifest's counts against both models'."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

from models import corpus
from models.bpe import Tokenizer
from models.checkpoint import load_model
from models.contract import OUTPUTS, transformer_outputs
from models.export import decode_parity, export_decode, export_onnx, parity
from models.gpt import GPT, GPTConfig, MoE, load_balancing_loss
from models.mixtral_hf import as_mixtral, mixtral_config
from models.train import routing

from .conftest import STATIC

TOL = 1e-4


def moe_config(**kw) -> GPTConfig:
    recipe = dict(
        vocab_size=97,
        block_size=48,
        n_layer=2,
        n_head=4,
        n_embd=32,
        bias=False,
        norm="rmsnorm",
        positions="rope",
        mlp="moe",
        n_kv_head=2,
        mlp_hidden=24,
        n_expert=4,
        expert_top_k=2,
    )
    return GPTConfig(**{**recipe, **kw})


def random_moe(seed: int = 0, **kw) -> GPT:
    """Weights away from the init's near-zero values, so every part (the router too) matters."""
    torch.manual_seed(seed)
    model = GPT(moe_config(**kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def hf_router_logits(out, B: int, T: int) -> torch.Tensor:
    """Mixtral's router logits, one (B·T, E) tensor per layer, as ours: (B, L, T, E)."""
    return torch.stack([r.view(B, T, -1) for r in out.router_logits], 1)


def hf_top_k(router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixtral's routing (MixtralTopKRouter) from its logits: softmax, top-k, renormalised."""
    probs = F.softmax(router_logits.float(), dim=-1)
    top, idx = torch.topk(probs, k, dim=-1)
    return idx, top / top.sum(-1, keepdim=True)


# -- a small random model --------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [{}, dict(n_expert=8, expert_top_k=2), dict(n_expert=4, expert_top_k=1), dict(n_kv_head=4)],
    ids=["4-top2", "8-top2", "4-top1", "mha"],
)
def test_the_moe_recipe_is_mixtral(kw):
    ours = random_moe(**kw)
    hf = as_mixtral(ours)
    ids = torch.randint(0, 97, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mine = ours.outputs(ids)
        out = hf(ids, output_router_logits=True, output_attentions=True)
    torch.testing.assert_close(mine["logits"], out.logits, atol=TOL, rtol=0)
    theirs = hf_router_logits(out, 2, 48)
    torch.testing.assert_close(mine["router_logits"], theirs, atol=TOL, rtol=0)
    torch.testing.assert_close(mine["attn_probs"], torch.stack(out.attentions, 1), atol=TOL, rtol=0)
    idx, weights = hf_top_k(theirs, ours.config.expert_top_k)
    assert mine["experts"].dtype == torch.int64
    assert torch.equal(mine["experts"], idx), "the same experts, in the same order"
    torch.testing.assert_close(mine["expert_weights"], weights, atol=1e-6, rtol=0)
    # the balance loss of this batch: Hugging Face's aux_loss from its own router logits
    _, balance = ours.losses(ids, ids)
    torch.testing.assert_close(balance, out.aux_loss, atol=1e-6, rtol=0)


def test_the_parameter_counts_are_mixtrals():
    ours = random_moe()
    c = ours.config
    hf = as_mixtral(ours)
    assert ours.num_params() == hf.num_parameters() == sum(p.numel() for p in hf.parameters())
    # per token: every parameter but the experts a token is not sent to (3·C·I each)
    idle = c.n_layer * (c.n_expert - c.expert_top_k) * 3 * c.n_embd * c.hidden
    assert ours.num_active_params() == hf.num_parameters() - idle
    dense = GPT(moe_config(mlp="swiglu"))
    assert dense.num_active_params() == dense.num_params()


@pytest.mark.parametrize("training", [False, True], ids=["dense", "sparse"])
def test_our_moe_block_is_mixtrals_sparse_moe_block(training):
    """One block on the same input: our dense evaluation and our sparse training loop both
    give Mixtral's MixtralSparseMoeBlock output, its router's logits, experts and weights."""
    ours = random_moe()
    hf = as_mixtral(ours)
    block, theirs = ours.h[0].mlp, hf.model.layers[0].mlp
    assert isinstance(block, MoE)
    x = torch.randn(3, 17, 32, generator=torch.Generator().manual_seed(2))
    block.train(training)
    with torch.no_grad():
        y, stages = block(x)
        want = theirs(x.clone())
        logits, scores, indices = theirs.gate(x)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(stages["router_logits"].reshape(-1, 4), logits, atol=1e-6, rtol=0)
    assert torch.equal(stages["experts"].reshape(-1, 2), indices)
    torch.testing.assert_close(stages["expert_weights"].reshape(-1, 2), scores, atol=1e-6, rtol=0)


def test_the_training_path_has_the_gradients_of_the_dense_one():
    """The sparse loop (training) and the dense sum (evaluation, ONNX) are one function:
    the same loss and the same gradient for every parameter."""
    model = random_moe()
    ids = torch.randint(0, 97, (2, 48), generator=torch.Generator().manual_seed(3))
    grads = []
    for training in (True, False):
        model.train(training)
        model.zero_grad()
        ce, balance = model.losses(ids, ids.roll(-1, 1))
        (ce + 0.5 * balance).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], atol=1e-6, rtol=1e-5, msg=name)
    assert grads[0]["h.0.mlp.router.weight"].abs().sum() > 0


@pytest.mark.parametrize("E, k", [(4, 2), (8, 2), (4, 1), (6, 3)])
def test_the_load_balancing_loss_is_hugging_faces(E, k):
    gen = torch.Generator().manual_seed(E * 10 + k)
    layers = [(2.0 * torch.randn(5 * 7, E, generator=gen)).requires_grad_() for _ in range(3)]
    theirs = load_balancing_loss_func(tuple(layers), E, k)
    ours = load_balancing_loss(torch.stack(layers).view(3, 5, 7, E), k)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    # and the same gradient: what the router learns from
    g_theirs = torch.autograd.grad(theirs, layers)
    g_ours = torch.autograd.grad(ours, layers)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


def test_the_balance_loss_is_top_k_when_even_and_the_expert_count_when_collapsed():
    # half the tokens sure of experts 0 and 1, half of 2 and 3: every share and mean 1/4
    halves = torch.tensor([[9.0, 9.0, 0.0, 0.0], [0.0, 0.0, 9.0, 9.0]]).repeat(4, 1)
    assert load_balancing_loss(halves[None], 2).item() == pytest.approx(2.0, abs=1e-3)
    # a router with no preference: P even, whatever the top-k picks, so E · Σ f_e / E = k
    assert load_balancing_loss(torch.zeros(1, 8, 4), 2).item() == pytest.approx(2.0)
    # every token sure of expert 0: f_0 = 1, P_0 = 1
    collapsed = torch.tensor([[50.0, 0.0, 0.0, 0.0]]).repeat(8, 1)[None]
    assert load_balancing_loss(collapsed, 2).item() == pytest.approx(4.0, abs=1e-6)


def test_routing_counts_what_mixtral_chooses():
    """The build's record (``routing``): the balance over every validation window as Hugging
    Face computes it, and each layer's expert shares as counted from Mixtral's choices."""
    ours = random_moe()
    hf = as_mixtral(ours)
    ids = np.random.default_rng(4).integers(0, 97, size=48 * 5 + 1)
    record = routing(ours, ids, batch_size=2)
    x = torch.from_numpy(ids[: 5 * 48]).view(5, 48)
    with torch.no_grad():
        out = hf(x, output_router_logits=True)
    assert record["balance_loss"] == pytest.approx(out.aux_loss.item(), abs=1e-6)
    idx, _ = hf_top_k(torch.stack(out.router_logits), 2)  # (L, N, k)
    for layer, share in enumerate(record["expert_share"]):
        counts = np.bincount(idx[layer].reshape(-1).numpy(), minlength=4)
        np.testing.assert_allclose(share, counts / counts.sum(), atol=1e-12)


def test_the_contract_lists_the_router_outputs_for_moe_models_only():
    moe = transformer_outputs(moe_config().to_dict())
    llama = transformer_outputs(moe_config(mlp="swiglu").to_dict())
    routed = ("router_logits", "experts", "expert_weights")
    assert set(routed) <= set(moe) and not set(routed) & set(llama)
    assert not {"mlp_up", "mlp_gate", "mlp_hidden"} & set(moe)
    assert set(moe) <= set(OUTPUTS)
    assert OUTPUTS["experts"].dtype == "int64" and OUTPUTS["router_logits"].dtype == "float32"
    assert OUTPUTS["router_logits"].shape == "(batch, n_layer, T, n_expert)"
    top_k = "(batch, n_layer, T, top_k)"
    assert OUTPUTS["experts"].shape == OUTPUTS["expert_weights"].shape == top_k


def test_the_moe_recipe_exports_to_onnx_with_its_outputs(tmp_path):
    """ONNX Runtime gives torch's outputs at T = 1, half and the whole block: the floats within
    the build's tolerance, the chosen experts exactly (int64); the decode graph too."""
    model = random_moe()
    path = export_onnx(model, tmp_path / "moe.onnx")
    worst = parity(model, path)
    assert list(worst) == list(transformer_outputs(model.config.to_dict()))
    assert worst["experts"] == 0.0
    assert max(worst.values()) <= TOL, worst
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {o.name: o.type for o in session.get_outputs()}
    assert types["experts"] == "tensor(int64)" and types["router_logits"] == "tensor(float)"
    export_decode(model, tmp_path / "moe-decode.onnx")
    error, _ = decode_parity(path, tmp_path / "moe-decode.onnx", 97, 48)
    assert error <= TOL


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(expert_top_k=5), "expert_top_k"),
        (dict(expert_top_k=0), "expert_top_k"),
    ],
)
def test_a_routing_it_cannot_do_is_refused(bad, words):
    with pytest.raises(ValueError, match=words):
        moe_config(**bad)


@pytest.mark.parametrize(
    "change", [dict(bias=True), dict(norm="layernorm"), dict(mlp="swiglu"), dict(qkv_bias=True)]
)
def test_a_config_mixtral_does_not_build_is_named(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        mixtral_config(moe_config(**change))


# -- the committed anatomy-moe ---------------------------------------------------------------
@pytest.fixture(scope="module")
def entry(static_manifest) -> dict:
    found = [m for m in static_manifest["models"] if m["name"] == "anatomy-moe"]
    if not found:
        pytest.fail("static/manifest.json has no anatomy-moe: run `python -m models.build`")
    return found[0]


@pytest.fixture(scope="module")
def built(entry) -> GPT:
    return load_model(STATIC / entry["weights_file"], entry["config"])


@pytest.fixture(scope="module")
def val_windows(entry) -> np.ndarray:
    """The validation split in the block-sized windows the build evaluated."""
    tok = Tokenizer.load(STATIC, entry["tokenizer"]["name"])
    ids = np.asarray(tok.encode(corpus.split(corpus.load().text)[1]), dtype=np.int64)
    block = entry["config"]["block_size"]
    n = (len(ids) - 1) // block
    return ids[: n * block + 1], n


def test_anatomy_moe_is_mixtral(entry, built, val_windows):
    """The committed weights in Mixtral, on real validation text: the same logits, router
    logits and experts."""
    ids, _ = val_windows
    x = torch.from_numpy(ids[: 4 * 128]).view(4, 128)
    hf = as_mixtral(built)
    with torch.no_grad():
        mine = built.outputs(x)
        out = hf(x, output_router_logits=True)
    torch.testing.assert_close(mine["logits"], out.logits, atol=TOL, rtol=0)
    theirs = hf_router_logits(out, 4, 128)
    torch.testing.assert_close(mine["router_logits"], theirs, atol=TOL, rtol=0)
    idx, weights = hf_top_k(theirs, entry["config"]["expert_top_k"])
    assert torch.equal(mine["experts"], idx)
    torch.testing.assert_close(mine["expert_weights"], weights, atol=1e-6, rtol=0)
    assert entry["n_params"] == built.num_params() == hf.num_parameters()
    c = built.config
    idle = c.n_layer * (c.n_expert - c.expert_top_k) * 3 * c.n_embd * c.hidden
    assert entry["n_active_params"] == hf.num_parameters() - idle


def test_anatomy_moe_onnx_matches_torch(entry, built):
    errors = parity(built, STATIC / entry["file"], seed=1)
    assert list(errors) == entry["outputs"]
    assert errors["experts"] == 0.0 and max(errors.values()) <= TOL, errors
    assert entry["parity_max_abs_error"]["experts"] == 0.0


def test_anatomy_moe_manifest_losses_recomputed_with_onnx_runtime(entry, val_windows):
    """val_loss, the validation balance loss (Hugging Face's function on the ONNX file's
    router logits) and every layer's expert shares (counted from its ``experts``)."""
    ids, n = val_windows
    block, c = entry["config"]["block_size"], entry["config"]
    session = ort.InferenceSession(str(STATIC / entry["file"]), providers=["CPUExecutionProvider"])
    x, y = ids[: n * block].reshape(n, block), ids[1 : n * block + 1].reshape(n, block)
    nll, logits, chosen = 0.0, [], []
    for i in range(0, n, 32):
        out, router, experts = session.run(
            ["logits", "router_logits", "experts"], {"input_ids": x[i : i + 32]}
        )
        lp = torch.log_softmax(torch.from_numpy(out).double(), -1)
        nll -= lp.gather(-1, torch.from_numpy(y[i : i + 32])[..., None]).sum().item()
        logits.append(router)
        chosen.append(experts)
    assert entry["training"]["val_loss"] == pytest.approx(nll / (n * block), abs=2e-4)
    router = np.concatenate(logits).transpose(1, 0, 2, 3)  # (L, N, T, E)
    per_layer = tuple(torch.from_numpy(r.reshape(-1, c["n_expert"])) for r in router)
    balance = load_balancing_loss_func(per_layer, c["n_expert"], c["expert_top_k"]).item()
    assert entry["training"]["val_balance_loss"] == pytest.approx(balance, abs=2e-4)
    experts = np.concatenate(chosen).transpose(1, 0, 2, 3)
    for layer, share in enumerate(entry["training"]["expert_share"]):
        counts = np.bincount(experts[layer].reshape(-1), minlength=c["n_expert"])
        np.testing.assert_allclose(share, counts / counts.sum(), atol=1e-4)
    assert 0 < entry["training"]["balance_loss"] < c["n_expert"]


def test_anatomy_moe_is_anatomy_llama_with_experts(entry, static_manifest):
    """The same data, settings and attention as anatomy-llama; each expert half its MLP, so
    the two experts a token uses hold as many weights as the LLaMA's MLP."""
    llama = next(m for m in static_manifest["models"] if m["name"] == "anatomy-llama")
    settings = ("steps", "batch_size", "lr", "min_lr", "warmup_steps", "weight_decay", "seed")
    assert [entry["training"][k] for k in settings] == [llama["training"][k] for k in settings]
    assert entry["corpus"] == llama["corpus"]
    m, lm = entry["config"], llama["config"]
    for key in ("n_layer", "n_head", "n_kv_head", "n_embd", "norm", "positions", "bias"):
        assert m[key] == lm[key], key
    assert (m["mlp"], m["n_expert"], m["expert_top_k"]) == ("moe", 4, 2)
    assert m["mlp_hidden"] * m["expert_top_k"] == lm["mlp_hidden"]
    # active: the LLaMA's parameters plus the routers (n_layer · n_expert · n_embd)
    routers = m["n_layer"] * m["n_expert"] * m["n_embd"]
    assert entry["n_active_params"] == llama["n_params"] + routers
    assert entry["decode"]["parity_max_abs_error"] <= TOL
