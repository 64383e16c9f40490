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
}


def test_manifest_has_every_field(quick_build, quick_manifest):
    (entry,) = quick_manifest["models"]
    assert entry.keys() >= MANIFEST_FIELDS
    assert quick_manifest["default_model"] == entry["name"]
    assert entry["sha256"] == sha256_file(quick_build / entry["file"])
    for key in ("steps", "train_loss", "val_loss", "unigram_entropy"):
        assert key in entry["training"]
    assert entry["corpus"]["source"].startswith("docstrings of the Python")
    assert max(entry["parity_max_abs_error"].values()) <= 1e-4


def test_second_run_is_up_to_date(quick_build, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in quick_build.iterdir()}
    assert main(["--quick", "--out", str(quick_build)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in quick_build.iterdir()} == before


def test_user_corpus(tmp_path):
    corpus = tmp_path / "mine.txt"
    corpus.write_text("The cat sat on the mat. The dog sat on the log.\n\n" * 400)
    out = tmp_path / "static"
    assert main(["--quick", "--corpus", str(corpus), "--name", "mine", "--out", str(out)]) == 0
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
