"""Importing a Hugging Face GPT-2 checkpoint (models/hf.py), checked against transformers.

Tiny GPT-2s are built from configs here (random, seeded; nothing is downloaded), saved the way
Hugging Face saves them, imported, exported to ONNX and run by our Engine. The reference for
every number is transformers' own forward pass and tokenizer on the same files.

The tokenizer is made like GPT-2's: our BPE trainer's merges, written as vocab.json/merges.txt
with the 256 byte tokens in GPT-2's byte-to-unicode order (so byte b is not id b) and
``<|endoftext|>`` last.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

from models.bpe import ENDOFTEXT, GPT2_SPLIT_PATTERN, train
from models.build import main as build_main
from models.export import max_abs_diff
from models.hf import (
    bytes_to_unicode,
    config_from_hf,
    load_tokenizer,
    read_safetensors,
)
from models.import_hf import import_checkpoint
from models.runtime import Engine, load_manifest
from tests.bpe_support import scrambled_texts

TOL = 1e-4
BLOCK = 32
N_LAYER = 2
N_MERGES = 200

TRAIN_TEXT = """\
The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away again.
Transformers read tokens, attend to earlier tokens, and predict the next token.
Attention weights are a softmax over scaled dot products of queries and keys.
def attention(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return scores.softmax(dim=-1) @ v

for i in range(10):
    print(f"step {i}: loss={1.0 / (i + 1):.3f}")
Les modèles de langue apprennent des régularités. Café, naïve, déjà vu.
日本語の文章も少し入れておきます。東京は日本の首都です。
中文句子：我们今天学习注意力机制。
Emoji too: 🙂 🚀 👩‍💻 🎉🎉 — and some   spaces,	tabs and
newlines.   It's, they'll, we've, I'm, you'd, she's.
"""

SAMPLES = [
    "Hello world",
    " Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x ** 2  # square\n",
    "    indented\n\n\n  trailing   ",
    "It's what they'll do; we've seen I'm right, you'd agree.",
    "Emoji 🙂🚀 and a family 👨‍👩‍👧 and flags 🇫🇷",
    "日本語の文章、中文句子。한국어 문장.",
    "naïve café déjà vu — “quotes” ‘single’",
    "numbers 1234567 3.14159 -42 0xFF",
    "\t\ttabs\r\nCRLF\u00a0nbsp\u2028line sep",
    "<html><body>&amp; a < b > c</body></html>",
    "x" * 100,
    "",
]


# ---------------------------------------------------------------------------------------------
# building checkpoints


def _unicode(b: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[x] for x in b)


def write_tokenizer(folder: Path) -> int:
    """Write vocab.json + merges.txt in GPT-2's layout; return the vocabulary size."""
    merges = train(TRAIN_TEXT, 256 + N_MERGES, pattern=GPT2_SPLIT_PATTERN)
    assert len(merges) == N_MERGES
    # GPT-2's vocab.json starts with the 256 byte tokens in bytes_to_unicode order ("!" is 0)
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    token_bytes = {i: bytes([i]) for i in range(256)}  # the trainer's ids are byte values
    lines = ["#version: 0.2"]
    for m in merges:
        token_bytes[m.rank] = m.token
        vocab[_unicode(m.token)] = m.rank
        left, right = (_unicode(token_bytes[p]) for p in m.pair)
        lines.append(f"{left} {right}")
    vocab[ENDOFTEXT] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", "utf-8")
    return len(vocab)


def make_hf_model(vocab_size: int, activation: str = "gelu_new", seed: int = 0):
    """A random GPT-2 whose weights are large enough that attention is far from uniform."""
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=BLOCK,
        n_embd=32,
        n_layer=N_LAYER,
        n_head=2,
        activation_function=activation,
        bos_token_id=vocab_size - 1,
        eos_token_id=vocab_size - 1,
        attn_implementation="eager",  # the only implementation that returns attention probs
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # lm_head is tied to wte: one tensor, changed once
            p.add_(torch.randn_like(p) * 0.3)
    return model


def save_checkpoint(model, folder: Path, fmt: str, tokenizer_from: Path) -> Path:
    """Save ``model`` as Hugging Face does: safetensors, or an old-style pytorch_model.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        model.save_pretrained(folder)
    else:
        # The layout of the original GPT-2 pytorch_model.bin: no "transformer." prefix, no
        # lm_head, the causal-mask buffers saved with the weights.
        model.config.save_pretrained(folder)
        state = {
            k.removeprefix("transformer."): v.clone()
            for k, v in model.state_dict().items()
            if k != "lm_head.weight"
        }
        mask = torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK)
        for i in range(model.config.n_layer):
            state[f"h.{i}.attn.bias"] = mask
            state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
        torch.save(state, folder / "pytorch_model.bin")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tokenizer_from / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gpt2-tokenizer")
    write_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def vocab_size(tokenizer_dir) -> int:
    return len(json.loads((tokenizer_dir / "vocab.json").read_text("utf-8")))


VARIANTS = {
    "safetensors-gelu_new": ("safetensors", "gelu_new"),
    "bin-gelu_new": ("bin", "gelu_new"),
    "safetensors-gelu": ("safetensors", "gelu"),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, tmp_path_factory, tokenizer_dir, vocab_size):
    """(HF model, checkpoint dir, static dir with the imported export) for one variant."""
    fmt, activation = VARIANTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model = make_hf_model(vocab_size, activation)
    ckpt = save_checkpoint(model, root / "tiny-gpt2", fmt, tokenizer_dir)
    static = root / "static"
    assert build_main(["--from-hf", str(ckpt), "--name", "tiny", "--out", str(static)]) == 0
    return model, ckpt, static


def hf_forward(model, ids: list[int]):
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    return out


# ---------------------------------------------------------------------------------------------
# the model: our ONNX export vs transformers


@pytest.mark.slow
@pytest.mark.parametrize("T", [1, 13, BLOCK])
def test_onnx_matches_transformers(exported, vocab_size, T):
    model, _, static = exported
    ids = np.random.default_rng(T).integers(0, vocab_size, T).tolist()
    ours = Engine(static, provider="cpu").run("tiny", ids)
    ref = hf_forward(model, ids)

    assert max_abs_diff(ours.logits, ref.logits[0].numpy()) <= TOL
    hf_probs = torch.cat(ref.attentions, 0).numpy()  # L x (1, H, T, T) -> (L, H, T, T)
    assert ours.attn_probs.shape == hf_probs.shape == (N_LAYER, 2, T, T)
    assert max_abs_diff(ours.attn_probs, hf_probs) <= TOL
    # HF's hidden_states: the embeddings, then the output of every block but the last, then
    # ln_f(last block's output). Ours holds the last block's output *before* ln_f, so the
    # first n_layer entries compare directly, and the last after applying the same ln_f.
    hf_hidden = torch.cat(ref.hidden_states, 0).numpy()
    assert ours.hidden.shape == hf_hidden.shape == (N_LAYER + 1, T, 32)
    assert max_abs_diff(ours.hidden[:N_LAYER], hf_hidden[:N_LAYER]) <= TOL
    ln_f = model.transformer.ln_f
    with torch.no_grad():
        normed = ln_f(torch.from_numpy(ours.hidden[N_LAYER])).numpy()
    assert max_abs_diff(normed, hf_hidden[N_LAYER]) <= TOL


@pytest.mark.slow
def test_attention_is_not_trivial(exported, vocab_size):
    """Guard the comparison above: random weights must give peaked, varied attention."""
    model, _, static = exported
    ids = np.random.default_rng(0).integers(0, vocab_size, BLOCK).tolist()
    probs = Engine(static, provider="cpu").run("tiny", ids).attn_probs
    assert probs[:, :, -1].max() > 0.3  # far from uniform (1/32) on the last row
    assert np.abs(probs[0] - probs[1]).max() > 0.1  # the two layers differ
    assert np.all(np.triu(probs[0, 0], k=1) == 0)  # causal


@pytest.mark.slow
def test_manifest_records_the_source(exported, vocab_size):
    model, ckpt, static = exported
    entry = next(m for m in load_manifest(static)["models"] if m["name"] == "tiny")
    source = entry["source"]
    assert source["kind"] == "huggingface-gpt2"
    assert source["directory"] == ckpt.name  # the folder's name, not its absolute path
    assert str(ckpt.parent) not in json.dumps(source)
    weights = "model.safetensors" if (ckpt / "model.safetensors").exists() else "pytorch_model.bin"
    assert source["weights_file"] == weights
    assert source["activation_function"] == model.config.activation_function
    cfg = entry["config"]
    expected_gelu = "none" if model.config.activation_function == "gelu" else "tanh"
    assert cfg["gelu_approximate"] == expected_gelu
    assert (cfg["vocab_size"], cfg["block_size"], cfg["n_layer"], cfg["n_embd"]) == (
        vocab_size,
        BLOCK,
        N_LAYER,
        32,
    )
    assert entry["tokenizer"]["special_tokens"] == {ENDOFTEXT: vocab_size - 1}
    assert max(entry["parity_max_abs_error"].values()) <= TOL


def test_unprefixed_keys_match_in_torch(tmp_path, tokenizer_dir, vocab_size):
    """A bare GPT2Model state dict (no "transformer." prefix, no lm_head) imports too."""
    from safetensors.torch import save_file

    model = make_hf_model(vocab_size, seed=1)
    folder = tmp_path / "bare"
    save_checkpoint(model, folder, "safetensors", tokenizer_dir)
    state = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items()}
    del state["lm_head.weight"]
    save_file(state, folder / "model.safetensors")
    ours, _, _ = import_checkpoint(folder)
    ids = list(range(0, vocab_size, 23))[:BLOCK]
    with torch.no_grad():
        logits = ours(torch.tensor([ids]))[0]
    assert max_abs_diff(logits.numpy(), hf_forward(model, ids).logits.numpy()) <= TOL


# ---------------------------------------------------------------------------------------------
# the tokenizer


def test_byte_tokens_follow_gpt2_order(tokenizer_dir):
    tok, files, n_merges = load_tokenizer(tokenizer_dir)
    assert files == ["vocab.json", "merges.txt"] and n_merges == N_MERGES
    ranks = tok.ranks
    assert ranks[b"!"] == 0 and ranks[b"\x00"] == 188 and ranks[b" "] == 220  # as in GPT-2
    from tokenizers import pre_tokenizers

    assert set(bytes_to_unicode().values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert tok.special_tokens == {ENDOFTEXT: 256 + N_MERGES}


@pytest.mark.parametrize("text", SAMPLES)
def test_encode_matches_transformers(tokenizer_dir, text):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    tok, _, _ = load_tokenizer(tokenizer_dir)
    ours = tok.encode(text)
    # transformers 5's GPT2Tokenizer ignores vocab_file=/merges_file= keyword arguments (it
    # takes vocab=/merges=), so it is built from the folder, the way users load it.
    hf = GPT2Tokenizer.from_pretrained(str(tokenizer_dir))
    assert ours == hf.encode(text, add_special_tokens=False)
    # and the tokenizers library directly from the two files
    raw = HFTokenizer(
        models.BPE.from_file(str(tokenizer_dir / "vocab.json"), str(tokenizer_dir / "merges.txt"))
    )
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert ours == raw.encode(text).ids
    assert tok.decode(ours) == text


def test_encode_matches_transformers_on_more_text(tokenizer_dir):
    """Every line of the training text and scrambled pieces of tokens, in one comparison."""
    tok, _, _ = load_tokenizer(tokenizer_dir)
    hf = GPT2Tokenizer.from_pretrained(str(tokenizer_dir))
    texts = scrambled_texts(tok, TRAIN_TEXT.splitlines(), 500, 5)
    ours = [tok.encode(t) for t in texts]
    theirs = [hf.encode(t, add_special_tokens=False) for t in texts]
    assert ours == theirs


@pytest.mark.slow
def test_saved_tokenizer_round_trips_and_matches_tiktoken(exported, tokenizer_dir):
    import tiktoken

    _, _, static = exported
    saved = Engine(static).tokenizer("tiny")
    direct, _, _ = load_tokenizer(tokenizer_dir)
    assert saved.ranks == direct.ranks and saved.special_tokens == direct.special_tokens
    assert saved.pattern == GPT2_SPLIT_PATTERN
    enc = tiktoken.Encoding(
        "tiny",
        pat_str=saved.pattern,
        mergeable_ranks=saved.ranks,
        special_tokens=saved.special_tokens,
    )
    for text in SAMPLES:
        assert saved.encode(text) == enc.encode_ordinary(text)


def test_tokenizer_json_is_read_when_vocab_and_merges_are_absent(tmp_path, tokenizer_dir):
    """transformers 5's save_pretrained writes tokenizer.json only; it imports the same."""
    GPT2Tokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(tmp_path))
    assert (tmp_path / "tokenizer.json").is_file()
    assert not (tmp_path / "vocab.json").exists()
    tok, files, _ = load_tokenizer(tmp_path)
    direct, _, _ = load_tokenizer(tokenizer_dir)
    assert files == ["tokenizer.json"]
    assert tok.ranks == direct.ranks and tok.special_tokens == direct.special_tokens


# ---------------------------------------------------------------------------------------------
# the safetensors reader


def test_safetensors_reader_rejects_truncated_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.randn(10, 10)}, tmp_path / "t.safetensors")
    data = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-8])
    with pytest.raises(ValueError, match=r"t\.safetensors is not a valid safetensors file"):
        read_safetensors(tmp_path / "t.safetensors")


# ---------------------------------------------------------------------------------------------
# errors


@pytest.fixture()
def checkpoint(tmp_path, tokenizer_dir, vocab_size) -> Path:
    """A fresh, valid checkpoint that a test may break."""
    return save_checkpoint(
        make_hf_model(vocab_size), tmp_path / "ckpt", "safetensors", tokenizer_dir
    )


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text("utf-8"))
    config.update(changes)
    path.write_text(json.dumps(config), "utf-8")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model_type", "llama"),
        ("n_inner", 64),
        ("scale_attn_by_inverse_layer_idx", True),
        ("scale_attn_weights", False),
        ("add_cross_attention", True),
        ("activation_function", "relu"),
        ("n_head", 5),
    ],
)
def test_unsupported_config_is_refused(key, value):
    raw = {"model_type": "gpt2", "n_embd": 32, "n_head": 2, key: value}
    with pytest.raises(ValueError, match=key):
        config_from_hf(raw)


def test_supported_config_maps(checkpoint):
    raw = json.loads((checkpoint / "config.json").read_text("utf-8"))
    cfg = config_from_hf({**raw, "n_inner": 128, "activation_function": "gelu_pytorch_tanh"})
    assert (cfg.block_size, cfg.n_embd, cfg.n_head, cfg.layer_norm_eps) == (BLOCK, 32, 2, 1e-5)
    assert cfg.gelu_approximate == "tanh" and cfg.bias


def test_unsupported_config_file_fails_the_build(checkpoint, tmp_path, capsys):
    _edit_config(checkpoint, scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(ValueError, match=r"config\.json.*scale_attn_by_inverse_layer_idx"):
        import_checkpoint(checkpoint)
    out = tmp_path / "static"
    assert build_main(["--from-hf", str(checkpoint), "--name", "x", "--out", str(out)]) == 2
    assert "scale_attn_by_inverse_layer_idx" in capsys.readouterr().err


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        import_checkpoint(tmp_path / "no-such-folder")


def test_missing_weights_file(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors or pytorch_model\.bin"):
        import_checkpoint(checkpoint)


def test_missing_tokenizer_file(checkpoint):
    (checkpoint / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"merges\.txt"):
        import_checkpoint(checkpoint)


def test_bad_json(checkpoint):
    (checkpoint / "config.json").write_text("{not json", "utf-8")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        import_checkpoint(checkpoint)


def test_tokenizer_larger_than_model_vocab(tmp_path, tokenizer_dir, vocab_size):
    folder = save_checkpoint(
        make_hf_model(vocab_size - 10), tmp_path / "small", "safetensors", tokenizer_dir
    )
    with pytest.raises(ValueError, match=rf"{vocab_size} tokens.*{vocab_size - 10}.*vocab_size"):
        import_checkpoint(folder)


def test_merges_out_of_id_order(checkpoint):
    path = checkpoint / "merges.txt"
    lines = path.read_text("utf-8").splitlines()
    lines[10], lines[11] = lines[11], lines[10]  # two independent merges: ids now decrease
    path.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(ValueError, match=r"merges\.txt: merge 11 .*merge order"):
        import_checkpoint(checkpoint)


def test_merge_of_unknown_token(checkpoint):
    path = checkpoint / "merges.txt"
    path.write_text(path.read_text("utf-8") + "zz qq\n", "utf-8")
    with pytest.raises(ValueError, match=r"merges\.txt: merge .*'zz'.*not in vocab\.json"):
        import_checkpoint(checkpoint)


def test_token_made_by_no_merge(checkpoint):
    path = checkpoint / "merges.txt"
    lines = path.read_text("utf-8").splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n", "utf-8")  # drop the last merge
    with pytest.raises(ValueError, match=r"vocab\.json: 1 multi-byte token.*no merge"):
        import_checkpoint(checkpoint)


def test_weights_missing_and_unexpected(checkpoint):
    from safetensors.torch import load_file, save_file

    state = load_file(checkpoint / "model.safetensors")
    del state["transformer.h.1.mlp.c_fc.bias"]
    state["transformer.h.0.attn.q_attn.weight"] = torch.zeros(32, 32)
    save_file(state, checkpoint / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing h\.1\.mlp\.c_fc\.bias.*unexpected h\.0\.attn"):
        import_checkpoint(checkpoint)


def test_untied_lm_head_is_refused(checkpoint):
    from safetensors.torch import load_file, save_file

    state = load_file(checkpoint / "model.safetensors")
    state["lm_head.weight"] = state["transformer.wte.weight"] + 1.0
    save_file(state, checkpoint / "model.safetensors")
    with pytest.raises(ValueError, match=r"lm_head\.weight differs"):
        import_checkpoint(checkpoint)
    # an lm_head equal to wte (a checkpoint saved with its tied copy) is fine
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    save_file(state, checkpoint / "model.safetensors")
    import_checkpoint(checkpoint)


def test_corrupt_pytorch_bin(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    (checkpoint / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin could not be read"):
        import_checkpoint(checkpoint)


def test_endoftext_among_ordinary_tokens(checkpoint):
    path = checkpoint / "vocab.json"
    vocab = json.loads(path.read_text("utf-8"))
    vocab = {t: i + (i >= 100) for t, i in vocab.items() if t != ENDOFTEXT}
    vocab[ENDOFTEXT] = 100  # our ids are ranks: ordinary tokens first, specials after them
    path.write_text(json.dumps(vocab), "utf-8")
    with pytest.raises(ValueError, match=r"vocab\.json: .*ids 0\.\..*<\|endoftext\|> \(id 100\)"):
        import_checkpoint(checkpoint)
