"""Pre-LN and Post-LN blocks against torch's own TransformerEncoderLayer (norm_first True and
False) holding the same weights, with a causal mask."""

import pytest
import torch

from models.gpt import GPT, GPTConfig


def _torch_layer(block, config: GPTConfig, norm_first: bool) -> torch.nn.TransformerEncoderLayer:
    C = config.n_embd
    layer = torch.nn.TransformerEncoderLayer(
        C,
        config.n_head,
        dim_feedforward=config.hidden,
        dropout=0.0,
        activation="gelu",  # exact erf GELU, as ours
        layer_norm_eps=config.layer_norm_eps,
        batch_first=True,
        norm_first=norm_first,
    ).eval()
    with torch.no_grad():  # q, k, v stacked in that order in both
        layer.self_attn.in_proj_weight.copy_(block.attn.c_attn.weight)
        layer.self_attn.in_proj_bias.copy_(block.attn.c_attn.bias)
        layer.self_attn.out_proj.weight.copy_(block.attn.c_proj.weight)
        layer.self_attn.out_proj.bias.copy_(block.attn.c_proj.bias)
        layer.linear1.weight.copy_(block.mlp.c_fc.weight)
        layer.linear1.bias.copy_(block.mlp.c_fc.bias)
        layer.linear2.weight.copy_(block.mlp.c_proj.weight)
        layer.linear2.bias.copy_(block.mlp.c_proj.bias)
        for ours, theirs in ((block.ln_1, layer.norm1), (block.ln_2, layer.norm2)):
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
    return layer


@pytest.mark.parametrize("position, norm_first", [("pre", True), ("post", False)])
def test_our_block_is_torchs_encoder_layer_with_a_causal_mask(position, norm_first):
    config = GPTConfig(
        vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, norm_position=position
    )
    torch.manual_seed(0)
    model = GPT(config).eval()
    with torch.no_grad():  # non-trivial norms, so that where they sit matters
        for block in model.h:
            for ln in (block.ln_1, block.ln_2):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 11, 32, generator=torch.Generator().manual_seed(1))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(11)
    for block in model.h:
        layer = _torch_layer(block, config, norm_first)
        with torch.no_grad():
            ours, stages = block(x)
            theirs = layer(x, src_mask=mask, is_causal=True)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        x = ours
    # and the two orders are different models with the same weights
    other = GPT(
        GPTConfig(**{**config.to_dict(), "norm_position": "post" if position == "pre" else "pre"})
    )
    other.load_state_dict(model.state_dict())
    ids = torch.randint(50, (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert not torch.allclose(model(ids)[0], other.eval()(ids)[0], atol=1e-3)


def test_a_norm_position_it_does_not_know_is_refused():
    with pytest.raises(ValueError, match="norm_position must be one of"):
        GPTConfig(norm_position="sandwich")


def _blocks_by_hand(model: GPT) -> list[float]:
    """Each block's gradient norm, summed parameter by parameter (not concatenated)."""
    return [
        sum(float((p.grad.double() ** 2).sum()) for p in block.parameters()) ** 0.5
        for block in model.h
    ]


def test_block_grad_norms_are_each_blocks_own():
    from models.train import block_grad_norms

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=3, n_head=2, n_embd=16))
    ids = torch.randint(40, (2, 9), generator=torch.Generator().manual_seed(0))
    model.loss(ids[:, :-1], ids[:, 1:]).backward()
    assert block_grad_norms(model) == pytest.approx(_blocks_by_hand(model), rel=1e-6)


def test_the_committed_measurement_starts_where_torch_says():
    """Both runs' first step recomputed from scratch: the seed's initial weights, the first
    batch the seeded sampler draws, the loss and every block's gradient norm; the rest of the
    record is whole (a value per step) and summarised in the manifest."""
    import json

    import numpy as np

    from models import corpus
    from models.bpe import Tokenizer
    from models.runtime import sha256_file
    from tests.conftest import STATIC

    manifest = json.loads((STATIC / "manifest.json").read_text())
    summary = manifest["experiments"]["norm_position"]
    path = STATIC / summary["file"]
    assert sha256_file(path) == summary["sha256"]
    record = json.loads(path.read_text())
    cfg, training = record["config"], record["training"]
    assert (cfg["n_layer"], training["warmup_steps"]) == (8, 0)
    tok = Tokenizer.load(STATIC, "anatomy-gpt-bpe")
    train_text = corpus.split(corpus.load().text)[0]
    data = torch.from_numpy(np.asarray(tok.encode(train_text), dtype=np.int64))
    for position, run in record["runs"].items():
        assert len(run["loss"]) == len(run["grad_norm"]) == training["steps"]
        assert summary["val_loss"][position] == run["val_loss"]
        torch.manual_seed(training["seed"])
        model = GPT(GPTConfig(**{**cfg, "norm_position": position})).train()
        gen = torch.Generator().manual_seed(training["seed"])
        block, batch = cfg["block_size"], training["batch_size"]
        starts = torch.randint(len(data) - block - 1, (batch,), generator=gen)
        x = torch.stack([data[s : s + block] for s in starts])
        y = torch.stack([data[s + 1 : s + 1 + block] for s in starts])
        logits = model(x)[0]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
        )
        loss.backward()
        assert run["loss"][0] == pytest.approx(loss.item(), abs=1e-4)
        assert run["init_block_grad_norms"] == pytest.approx(_blocks_by_hand(model), abs=1e-4)
