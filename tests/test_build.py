"""`python -m models.build`: the manifest contract, up-to-date skipping, user corpora, errors."""

import json

import pytest

from models.build import main
from models.runtime import Engine, sha256_file

MANIFEST_FIELDS = {
    "name",
    "file",
    "sha256",
    "config",
    "n_params",
    "tokenizer",
    "corpus",
    "training",
    "parity_max_abs_error",
    "exported",
    "weights_file",
    "samples",
    "decode",
    "positions",
    "outputs",
    "weights_sha256",
}


def test_manifest_has_every_field(quick_build, quick_manifest):
    """Every recipe, each with every field; the first built is the default."""
    names = [m["name"] for m in quick_manifest["models"]]
    assert names == ["quick-gpt", "quick-llama", "quick-moe"]
    assert quick_manifest["default_model"] == "quick-gpt"
    for entry in quick_manifest["models"]:
        assert entry.keys() >= MANIFEST_FIELDS
        assert entry["sha256"] == sha256_file(quick_build / entry["file"])
        assert entry["decode"]["sha256"] == sha256_file(quick_build / entry["decode"]["file"])
        for key in ("steps", "train_loss", "val_loss", "unigram_entropy"):
            assert key in entry["training"]
        assert entry["corpus"]["source"].startswith("docstrings of the Python")
        assert max(entry["parity_max_abs_error"].values()) <= 1e-4
        assert entry["decode"]["parity_max_abs_error"] <= 1e-4
    gpt, llama, moe = quick_manifest["models"]
    assert llama["config"]["positions"] == "rope" and gpt["config"]["positions"] == "learned"
    assert abs(llama["n_params"] / gpt["n_params"] - 1) <= 0.05
    # the mixture of experts: more weights in all, the LLaMA's (and its routers') per token
    assert (
        gpt["n_active_params"] == gpt["n_params"] and llama["n_active_params"] == llama["n_params"]
    )
    c = moe["config"]
    assert (c["mlp"], c["n_expert"], c["expert_top_k"]) == ("moe", 4, 2)
    routers = c["n_layer"] * c["n_expert"] * c["n_embd"]
    assert moe["n_active_params"] == llama["n_params"] + routers < moe["n_params"]
    assert {"router_logits", "experts", "expert_weights"} <= set(moe["outputs"])
    assert moe["parity_max_abs_error"]["experts"] == 0.0
    t = moe["training"]
    assert 0 < t["balance_loss"] < c["n_expert"] and t["router_aux_loss_coef"] == 0.01
    assert len(t["expert_share"]) == c["n_layer"]
    assert all(abs(sum(row) - 1) < 1e-3 and len(row) == 4 for row in t["expert_share"])
    assert "balance_loss" not in llama["training"]
    # the RoPE model is measured to twice its block; the learned one cannot be
    block = gpt["config"]["block_size"]
    assert len(llama["positions"]["loss"]) == 2 * block and len(gpt["positions"]["loss"]) == block
    assert gpt["positions"]["mean_past_block"] is None
    # the build's Pre-LN vs Post-LN measurement, beside the models
    summary = quick_manifest["experiments"]["norm_position"]
    record = json.loads((quick_build / summary["file"]).read_text())
    assert summary["sha256"] == sha256_file(quick_build / summary["file"])
    assert set(record["runs"]) == {"pre", "post"} == set(summary["val_loss"])
    for run in record["runs"].values():
        assert len(run["loss"]) == len(run["grad_norm"]) == record["training"]["steps"]
        assert len(run["init_block_grad_norms"]) == record["config"]["n_layer"]


def test_an_export_change_re_exports_the_saved_weights_without_training(tmp_path, capsys):
    out = tmp_path / "static"
    assert main(["--quick", "--recipe", "llama", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["models"]
    entry["build"]["export_key"] = "an older exporter"
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["--quick", "--recipe", "llama", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "re-exporting" in printed and "[train] 0s" not in printed and "train:" not in printed
    again = json.loads((out / "manifest.json").read_text())["models"][0]
    assert again["training"] == entry["training"] and again["samples"] == entry["samples"]
    assert again["build"]["export_key"] != "an older exporter"
    # weights that are not the recorded ones are retrained, not trusted
    (out / again["weights_file"]).write_bytes(b"garbage")
    assert main(["--quick", "--recipe", "llama", "--out", str(out)]) == 0
    assert "parameters" in capsys.readouterr().out  # the training step's first line


def test_name_needs_one_recipe(tmp_path, capsys):
    assert main(["--quick", "--name", "mine", "--out", str(tmp_path)]) == 2
    assert "--recipe" in capsys.readouterr().err


def test_loss_by_position_reads_the_same_windows_for_both_models():
    import dataclasses

    import numpy as np
    import torch

    from models.gpt import GPT, GPTConfig
    from models.train import loss_by_position

    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(50, size=400)
    learned = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=16))
    rope = GPT(
        GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=16, positions="rope")
    )
    r = loss_by_position(rope, ids, 16, stride=17)
    g = loss_by_position(learned, ids, 8, stride=17)
    assert r["windows"] == g["windows"] == 399 // 17 and len(r["loss"]) == 16
    # by hand, window by window: -log p(next token) at each position, then the mean; the
    # RoPE model read past its block by the same weights with a longer mask
    longer = GPT(dataclasses.replace(rope.config, block_size=16))
    longer.load_state_dict(rope.state_dict())
    for model, record, length in ((longer, r, 16), (learned, g, 8)):
        by_hand = np.zeros(length)
        for w in range(record["windows"]):
            x = torch.from_numpy(ids[17 * w : 17 * w + length]).long()[None]
            with torch.no_grad():
                lp = torch.log_softmax(model(x)[0][0].double(), -1)
            by_hand -= [lp[t, ids[17 * w + t + 1]].item() for t in range(length)]
        np.testing.assert_allclose(record["loss"], by_hand / record["windows"], atol=1e-6)
    with pytest.raises(ValueError, match="learned positions stop at 8"):
        loss_by_position(learned, ids, 16, stride=17)
    with pytest.raises(ValueError, match="overlap"):
        loss_by_position(rope, ids, 16, stride=10)


def test_second_run_is_up_to_date(quick_build, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in quick_build.iterdir()}
    assert main(["--quick", "--out", str(quick_build)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in quick_build.iterdir()} == before


def test_user_corpus(tmp_path):
    corpus = tmp_path / "mine.txt"
    corpus.write_text("The cat sat on the mat. The dog sat on the log.\n\n" * 400)
    out = tmp_path / "static"
    args = ["--quick", "--recipe", "gpt", "--corpus", str(corpus), "--name", "mine"]
    assert main([*args, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["models"]
    assert entry["corpus"]["source"] == "file mine.txt"
    engine = Engine(out)
    tok = engine.tokenizer("mine")
    ids = tok.encode("The cat sat on the mat.")
    assert len(ids) < len("The cat sat on the mat."), "BPE learned merges from the user corpus"
    assert engine.run("mine", ids).logits.shape == (len(ids), entry["config"]["vocab_size"])


def test_missing_corpus_is_a_clear_error(tmp_path, capsys):
    code = main(["--quick", "--corpus", "/nonexistent/corpus.txt", "--out", str(tmp_path)])
    assert code == 2
    assert "corpus file not found: /nonexistent/corpus.txt" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists(), "no partial manifest"


def test_from_hf_needs_a_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--from-hf", str(tmp_path), "--out", str(tmp_path)])
    assert "--from-hf needs --name" in capsys.readouterr().err
