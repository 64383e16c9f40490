"""Importing Llama, Mistral and Qwen2 checkpoints (models/llama_hf.py, chosen by
models/import_hf.py), checked against transformers and tokenizers.

Tiny checkpoints are built here from configs (random, seeded; nothing is downloaded), saved
with ``save_pretrained``, and given a byte-level BPE ``tokenizer.json`` trained by the
``tokenizers`` library with Llama 3's or Qwen2's split regex. Every reference number and id
comes from Hugging Face's own forward pass and tokenizer on the same files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import tokenizers
import torch
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from models.hf import bytes_to_unicode
from models.import_hf import import_checkpoint
from models.llama_hf import (
    MAX_BLOCK,
    config_from_llama,
    load_byte_level_tokenizer,
)
from tests.bpe_support import scrambled_texts
from tests.test_hf import SAMPLES as GPT2_SAMPLES
from tests.test_hf import TRAIN_TEXT as GPT2_TRAIN_TEXT

TOL = 1e-4
# the split regexes as Hugging Face publishes them (transformers' TikTokenConverter default,
# Llama 3's; Qwen2Tokenizer's PRETOKENIZE_REGEX)
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>"]
N_VOCAB = 256 + 360  # the trainer's target: 256 bytes and the merges

# the GPT-2 import's training text, with what Llama 3's split pattern treats differently:
# digit runs (at most three digits a chunk), upper-case contractions, CR LF
TRAIN_TEXT = GPT2_TRAIN_TEXT + (
    "print(1234567890)  # 2024-06-01. Ça va?\n"
    "IT'S, THEY'LL, WE'VE.\r\nWindows line\r\n  indented line\n\n\n"
)

# the GPT-2 import's samples, with what Llama 3's pattern splits differently
SAMPLES = GPT2_SAMPLES + [
    "It's what they'll do; we've seen I'm right, you'd agree. IT'S, THEY'LL, We'Ve.",
    "naïve café déjà vu — “quotes” ‘single’ Ça",
    "numbers 1234567 3.14159 -42 0xFF 2024-06-01 1,000,000",
    "\t\ttabs\r\nCRLF\u00a0nbsp\u2028line sep\u3000ideographic space",
    "x" * 100 + " " * 40 + "\n" * 7,
]


# ---------------------------------------------------------------------------------------------
# building checkpoints


def train_tokenizer(pattern: str, ignore_merges: bool) -> tokenizers.Tokenizer:
    """A byte-level BPE as Llama 3 and Qwen2 ship it: Split(regex) then ByteLevel."""
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=N_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAIN_TEXT.splitlines(keepends=True) * 3, trainer)
    tok.add_special_tokens(SPECIALS)  # after training: ids after the ordinary tokens
    return tok


MODELS = {
    # kind: (config class, model class, split pattern, ignore_merges, config overrides)
    "llama-gqa": (LlamaConfig, LlamaForCausalLM, LLAMA3_PATTERN, True, dict(num_key_value_heads=2)),
    "mistral-mqa": (
        MistralConfig,
        MistralForCausalLM,
        LLAMA3_PATTERN,
        False,
        dict(num_key_value_heads=1, sliding_window=None),
    ),
    "qwen2-bias": (
        Qwen2Config,
        Qwen2ForCausalLM,
        QWEN2_PATTERN,
        False,
        # a model vocabulary larger than the tokenizer's, as Qwen2's is
        dict(num_key_value_heads=2, extra_vocab=5, rope_theta=1e6),
    ),
}


def make_checkpoint(kind: str, folder: Path, **changes) -> tuple[torch.nn.Module, Path]:
    """Save a random tiny ``kind`` model and its tokenizer.json in ``folder``."""
    config_cls, model_cls, pattern, ignore_merges, overrides = MODELS[kind]
    overrides = {**overrides, **changes}
    tok = train_tokenizer(pattern, ignore_merges)
    extra = overrides.pop("extra_vocab", 0)
    rope_theta = overrides.pop("rope_theta", 500.0)
    settings = dict(
        vocab_size=tok.get_vocab_size() + extra,
        hidden_size=32,
        intermediate_size=56,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=True,
        attn_implementation="eager",  # the implementation that returns attention probs
    )
    config = config_cls(**{**settings, **overrides})
    torch.manual_seed(0)
    hf = model_cls(config).eval()
    with torch.no_grad():  # away from the init (zero biases, unit norms): every part matters
        for name, p in hf.named_parameters():
            # q and k large enough that attention is far from uniform; the rest moderate, so
            # the residual stream stays small enough for the build's absolute parity check
            big = name.endswith(("q_proj.weight", "k_proj.weight"))
            p.add_((0.25 if big else 0.1) * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return hf, folder


@pytest.fixture(scope="module", params=list(MODELS))
def checkpoint(request, tmp_path_factory) -> tuple[str, torch.nn.Module, Path]:
    root = tmp_path_factory.mktemp(request.param)
    hf, folder = make_checkpoint(request.param, root / f"tiny-{request.param}")
    return request.param, hf, folder


@pytest.fixture()
def fresh(tmp_path) -> Path:
    """A valid Llama checkpoint that a test may break."""
    return make_checkpoint("llama-gqa", tmp_path / "ckpt")[1]


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text("utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), "utf-8")


def hf_tokenizer(folder: Path) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))


# ---------------------------------------------------------------------------------------------
# the model


def test_imported_model_matches_transformers(checkpoint):
    kind, hf, folder = checkpoint
    ours, _, _ = import_checkpoint(folder)
    assert ours.config.qkv_bias == kind.startswith("qwen2")
    T = 64
    ids = torch.from_numpy(np.random.default_rng(1).integers(0, hf.config.vocab_size, (2, T)))
    with torch.no_grad():
        logits, scores, probs, hidden = ours(ids)
        ref = hf(ids, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(logits, ref.logits, atol=TOL, rtol=0)
    theirs = torch.stack(ref.attentions, 1)  # (B, L, H, T, T)
    assert probs.shape == theirs.shape == (2, 2, 4, T, T)
    torch.testing.assert_close(probs, theirs, atol=TOL, rtol=0)
    # the residual stream entering each block (HF's last hidden state is after the final norm)
    torch.testing.assert_close(
        hidden[:, :-1], torch.stack(ref.hidden_states[:-1], 1), atol=TOL, rtol=0
    )
    # guard the comparison: attention far from uniform, layers different
    assert theirs[:, :, :, -1].max() > 0.1 and (theirs[:, 0] - theirs[:, 1]).abs().max() > 0.05


def test_provenance(checkpoint):
    kind, hf, folder = checkpoint
    _, tok, info = import_checkpoint(folder)
    assert info["kind"] == "huggingface-llama"
    assert info["model_type"] == hf.config.model_type == kind.split("-")[0]
    assert info["directory"] == folder.name
    assert str(folder.parent) not in json.dumps(info)  # file names only, no machine paths
    assert info["weights_file"] == "model.safetensors"
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert info["weights_sha256"] == digest
    assert info["weights_dtype"] == ["float32"]
    assert info["tokenizer_files"] == ["tokenizer.json"]
    assert info["max_position_embeddings"] == 64 and info["block_size"] == 64
    assert info["num_key_value_heads"] == hf.config.num_key_value_heads
    assert info["tokenizer_vocab_size"] == hf_tokenizer(folder).get_vocab_size()
    json.dumps(info)  # it goes into the manifest


def test_block_size_is_capped_and_recorded(tmp_path):
    """A long context (131072 positions) becomes our capped block; same numbers inside it."""
    hf, folder = make_checkpoint("qwen2-bias", tmp_path / "long", max_position_embeddings=131072)
    ours, _, info = import_checkpoint(folder)
    assert ours.config.block_size == MAX_BLOCK == 1024
    assert (info["max_position_embeddings"], info["block_size"]) == (131072, 1024)
    ids = torch.arange(0, 40).unsqueeze(0) % hf.config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0], hf(ids).logits, atol=TOL, rtol=0)


def test_a_real_qwen2_config_maps(tmp_path):
    """Qwen2-0.5B's config.json as published: sliding_window set beside use_sliding_window
    false, which transformers ignores, and so do we."""
    raw = {
        "architectures": ["Qwen2ForCausalLM"],
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "max_position_embeddings": 131072,
        "max_window_layers": 24,
        "model_type": "qwen2",
        "num_attention_heads": 14,
        "num_hidden_layers": 24,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_sliding_window": False,
        "vocab_size": 151936,
    }
    theirs = Qwen2Config(**{k: v for k, v in raw.items() if k != "torch_dtype"})
    assert theirs.sliding_window is None and set(theirs.layer_types) == {"full_attention"}
    cfg = config_from_llama(raw)
    assert (cfg.n_embd, cfg.n_head, cfg.kv_heads, cfg.hidden) == (896, 14, 2, 4864)
    assert cfg.qkv_bias and not cfg.bias and cfg.rope_base == 1e6 and cfg.block_size == 1024
    # use_sliding_window true makes transformers slide (layers from max_window_layers on)
    sliding = {**raw, "use_sliding_window": True, "max_window_layers": 0}
    assert "sliding_attention" in Qwen2Config(**sliding).layer_types
    with pytest.raises(ValueError, match="use_sliding_window"):
        config_from_llama(sliding)


# ---------------------------------------------------------------------------------------------
# the tokenizer


@pytest.fixture(scope="module", params=["llama3", "qwen2"])
def tokenizer_dir(request, tmp_path_factory) -> Path:
    pattern, ignore = {"llama3": (LLAMA3_PATTERN, True), "qwen2": (QWEN2_PATTERN, False)}[
        request.param
    ]
    folder = tmp_path_factory.mktemp(f"tok-{request.param}")
    train_tokenizer(pattern, ignore).save(str(folder / "tokenizer.json"))
    return folder


@pytest.mark.parametrize("text", SAMPLES)
def test_encode_matches_tokenizers(tokenizer_dir, text):
    tok, _ = load_byte_level_tokenizer(tokenizer_dir)
    hf = hf_tokenizer(tokenizer_dir)
    ours = tok.encode(text)
    assert ours == hf.encode(text, add_special_tokens=False).ids
    assert tok.decode(ours) == text == hf.decode(ours)


def test_encode_matches_tokenizers_on_more_text(tokenizer_dir):
    """Every line of the training text and scrambled pieces of tokens, in one comparison."""
    tok, _ = load_byte_level_tokenizer(tokenizer_dir)
    hf = hf_tokenizer(tokenizer_dir)
    texts = scrambled_texts(tok, TRAIN_TEXT.splitlines(), 400, 6)
    ours = [tok.encode(t) for t in texts]
    theirs = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert ours == theirs
    assert len({len(ids) for ids in ours}) > 5  # merges happened, at various lengths


def test_special_tokens_and_pattern_come_from_the_file(tokenizer_dir):
    tok, info = load_byte_level_tokenizer(tokenizer_dir)
    hf = hf_tokenizer(tokenizer_dir)
    assert tok.special_tokens == {s: hf.token_to_id(s) for s in SPECIALS}
    assert tok.vocab_size == hf.get_vocab_size() == info["tokenizer_vocab_size"]
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text("utf-8"))
    assert tok.pattern == data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    assert tok.decode([hf.token_to_id(SPECIALS[1])]) == SPECIALS[1]
    # digits: Llama 3 groups them by three, Qwen2 splits each
    digits = tok.encode("1234567")
    assert len(digits) == (3 if tok.pattern == LLAMA3_PATTERN else 7)


def test_merges_written_as_strings_read_the_same(tokenizer_dir, tmp_path):
    """Older tokenizer.json files write each merge as "left right", newer ones as a pair."""
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text("utf-8"))
    assert isinstance(data["model"]["merges"][0], list)
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    as_strings, _ = load_byte_level_tokenizer(tmp_path)
    as_pairs, _ = load_byte_level_tokenizer(tokenizer_dir)
    assert as_strings.ranks == as_pairs.ranks
    text = SAMPLES[len(GPT2_SAMPLES)]  # contractions in upper case too
    assert as_strings.encode(text) == hf_tokenizer(tmp_path).encode(text).ids


def test_a_tokenizer_converted_from_tiktoken_imports(tmp_path):
    """Llama 3's tokenizer.json was converted from a tiktoken rank file by transformers'
    TikTokenConverter, which lists every split of a token as a merge (so several merges make
    one id) and sets ignore_merges. Converting a rank file of ours the same way imports back
    to the same ranks and the same ids as Hugging Face's encoder."""
    import tiktoken  # noqa: F401  (the converter reads the rank file with it)
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from models.bpe import Tokenizer, train

    original = Tokenizer.from_merges(
        train(TRAIN_TEXT * 3, 256 + 300, LLAMA3_PATTERN), LLAMA3_PATTERN
    )
    rank_file, _ = original.save(tmp_path, "mine")
    converter = TikTokenConverter(str(rank_file), LLAMA3_PATTERN, extra_special_tokens=SPECIALS)
    hf = converter.converted()
    hf.save(str(tmp_path / "tokenizer.json"))
    data = json.loads((tmp_path / "tokenizer.json").read_text("utf-8"))
    assert data["model"]["ignore_merges"] and len(data["model"]["merges"]) > 300
    tok, _ = load_byte_level_tokenizer(tmp_path)
    assert tok.ranks == original.ranks
    assert tok.special_tokens == {s: hf.token_to_id(s) for s in SPECIALS}
    for text in SAMPLES:
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids


def test_split_regex_agrees_with_oniguruma_on_assigned_characters():
    """Our split runs on Python's regex module, Hugging Face's on Oniguruma: around every
    assigned character of the Basic Multilingual Plane, in several contexts, they agree."""
    import regex

    chars = [
        chr(c)
        for c in range(0x10000)
        if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"
    ]
    for pattern in (LLAMA3_PATTERN, QWEN2_PATTERN):
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
        text = "".join(f"a{c}b {c}{c}1{c} 'S{c}\n{c}  " for c in chars)
        theirs = [piece for piece, _ in split.pre_tokenize_str(text)]
        assert regex.findall(pattern, text) == theirs


def _shifted(data: dict, new: list[tuple[str, str]]) -> None:
    """Append merges (and the tokens they make) before the added tokens, which move up."""
    vocab = data["model"]["vocab"]
    for left, right in new:
        vocab[left + right] = len(vocab)
        data["model"]["merges"].append([left, right])
    for i, added in enumerate(data["added_tokens"]):
        added["id"] = len(vocab) + i


def test_a_token_the_merges_do_not_make_whole(tmp_path):
    """Tokens "cd", "bc", then "bcd" made from (bc, d): Hugging Face's merges turn b c d into
    b + cd and stop, while tiktoken's encoder takes a chunk that is a token whole. With
    ignore_merges (Llama 3's setting) Hugging Face does the same and the import is exact;
    without it the import is refused."""
    table = bytes_to_unicode()
    b, c, d = (table[x] for x in (0x01, 0x02, 0x03))
    merges = [(c, d), (b, c), (b + c, d)]
    for ignore in (True, False):
        folder = tmp_path / str(ignore)
        folder.mkdir()
        train_tokenizer(LLAMA3_PATTERN, ignore).save(str(folder / "tokenizer.json"))
        edit_json(folder / "tokenizer.json", lambda data: _shifted(data, merges))
        text = "x1\x01\x02\x03"  # the three bytes are one chunk of their own
        if ignore:
            tok, _ = load_byte_level_tokenizer(folder)
            theirs = hf_tokenizer(folder).encode(text).ids
            assert tok.encode(text) == theirs
            assert tok.ranks[b"\x01\x02\x03"] in theirs
        else:
            with pytest.raises(ValueError, match=r"tokenizer\.json: 1 token.*ignore_merges"):
                load_byte_level_tokenizer(folder)


# ---------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_scaling"),
        (dict(rope_parameters={"rope_type": "llama3", "factor": 8.0}), "rope_parameters"),
        (dict(tie_word_embeddings=False), "tie_word_embeddings"),
        (dict(attention_bias=True), "attention_bias"),
        (dict(hidden_act="gelu"), "hidden_act"),
        (dict(layer_types=["full_attention", "sliding_attention"]), "layer_types"),
    ],
)
def test_config_settings_we_cannot_represent_are_named(fresh, change, words):
    edit_json(fresh / "config.json", lambda data: data.update(change))
    with pytest.raises(ValueError, match=rf"config\.json: {words}"):
        import_checkpoint(fresh)


def test_sliding_windows_are_refused(tmp_path):
    _, qwen = make_checkpoint("qwen2-bias", tmp_path / "qwen")
    edit_json(qwen / "config.json", lambda d: d.update(use_sliding_window=True, sliding_window=8))
    with pytest.raises(ValueError, match=r"config\.json: use_sliding_window=True"):
        import_checkpoint(qwen)
    _, mistral = make_checkpoint("mistral-mqa", tmp_path / "mistral")
    edit_json(mistral / "config.json", lambda d: d.update(sliding_window=16))
    with pytest.raises(ValueError, match=r"config\.json: sliding_window=16"):
        import_checkpoint(mistral)
    # MistralConfig's default when the key is absent is a 4096 window, refused as well
    edit_json(mistral / "config.json", lambda d: d.pop("sliding_window"))
    assert MistralConfig().sliding_window == 4096
    with pytest.raises(ValueError, match=r"config\.json: sliding_window=4096"):
        import_checkpoint(mistral)


def test_other_model_types_are_refused_with_the_supported_list(fresh):
    edit_json(fresh / "config.json", lambda d: d.update(model_type="mamba"))
    with pytest.raises(ValueError, match=r"'mamba'.*gpt2, llama, mistral, qwen2"):
        import_checkpoint(fresh)


def test_missing_files(fresh):
    (fresh / "tokenizer.json").rename(fresh / "tokenizer.json.bak")
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        import_checkpoint(fresh)
    (fresh / "tokenizer.model").write_bytes(b"\x0a\x00")  # a SentencePiece model, alone
    with pytest.raises(ValueError, match=r"tokenizer\.model \(SentencePiece\)"):
        import_checkpoint(fresh)
    (fresh / "tokenizer.json.bak").rename(fresh / "tokenizer.json")
    (fresh / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors or pytorch_model\.bin"):
        import_checkpoint(fresh)


def _sentencepiece_json() -> dict:
    """A Llama 2 style tokenizer.json as transformers converts it (old layout): "▁" prepended
    and written for spaces by the normalizer, byte fallback in the model."""
    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"], show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT.splitlines(), trainer)
    return json.loads(tok.to_str())


def _metaspace(data: dict) -> None:
    """Newer conversions: a Metaspace pre-tokenizer instead of the normalizer."""
    meta = tokenizers.Tokenizer(models.BPE())
    meta.pre_tokenizer = pre_tokenizers.Metaspace()
    data.update(normalizer=None, pre_tokenizer=json.loads(meta.to_str())["pre_tokenizer"])
    data["model"]["byte_fallback"] = False


@pytest.mark.parametrize(
    "change, words",
    [
        ("sentencepiece", r"SentencePiece-style BPE \(model\.byte_fallback=true\)"),
        ("sentencepiece-no-fallback", r"SentencePiece-style BPE \(normalizer writes spaces"),
        ("metaspace", r"SentencePiece-style BPE \(pre_tokenizer Metaspace\)"),
        ("nfc", r"normalizer NFC is not supported"),
        ("wordpiece", r"model\.type='WordPiece'"),
        ("plain-bytelevel-with-prefix", r"add_prefix_space=true"),
        ("digits", r"pre_tokenizer Sequence\[Digits, ByteLevel\] is not supported"),
        ("merge-order", r"tokenizer\.json: merge 11 .*merge order"),
        ("no-decoder", r"decoder None is not supported"),
    ],
)
def test_tokenizers_we_cannot_represent_are_named(fresh, change, words):
    def edit(data: dict) -> None:
        if change == "sentencepiece":
            data.clear()
            data.update(_sentencepiece_json())
        elif change == "sentencepiece-no-fallback":
            data.clear()
            data.update(_sentencepiece_json())
            data["model"]["byte_fallback"] = False
        elif change == "metaspace":
            _metaspace(data)
        elif change == "nfc":
            data["normalizer"] = json.loads(_with_normalizer(normalizers.NFC()))["normalizer"]
        elif change == "wordpiece":
            data["model"]["type"] = "WordPiece"
        elif change == "plain-bytelevel-with-prefix":
            data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True}
        elif change == "digits":
            data["pre_tokenizer"]["pretokenizers"][0] = {"type": "Digits"}
        elif change == "merge-order":
            merges = data["model"]["merges"]
            merges[9], merges[10] = merges[10], merges[9]  # the ids made now decrease
        elif change == "no-decoder":
            data["decoder"] = None

    edit_json(fresh / "tokenizer.json", edit)
    with pytest.raises(ValueError, match=words):
        import_checkpoint(fresh)


def _with_normalizer(normalizer) -> str:
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizer
    return tok.to_str()


def test_weights_that_do_not_fit_are_named(fresh):
    from safetensors.torch import load_file, save_file

    path = fresh / "model.safetensors"
    state = load_file(path)
    good = copy.copy(state)
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, path)
    with pytest.raises(ValueError, match=r"model\.safetensors: missing .*h\.1\.mlp\.c_fc"):
        import_checkpoint(fresh)
    # a Llama has no q/k/v biases: a checkpoint that has them does not fit
    state = {**good, "model.layers.0.self_attn.q_proj.bias": torch.zeros(32)}
    save_file(state, path)
    with pytest.raises(ValueError, match=r"no place for: layers\.0\.self_attn\.q_proj\.bias"):
        import_checkpoint(fresh)
    state = {**good, "lm_head.weight": good["model.embed_tokens.weight"] + 1}
    save_file(state, path)
    with pytest.raises(ValueError, match=r"lm_head\.weight differs"):
        import_checkpoint(fresh)


# ---------------------------------------------------------------------------------------------
# the build


def test_build_exports_an_imported_llama(tmp_path):
    import onnxruntime as ort

    from models.build import main

    hf, folder = make_checkpoint("llama-gqa", tmp_path / "tiny-llama")
    out = tmp_path / "out"
    assert main(["--from-hf", str(folder), "--name", "tiny-llama", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    entry = next(m for m in manifest["models"] if m["name"] == "tiny-llama")
    assert entry["source"]["kind"] == "huggingface-llama"
    assert entry["tokenizer"]["pattern"] == LLAMA3_PATTERN
    assert max(entry["parity_max_abs_error"].values()) <= TOL
    session = ort.InferenceSession(str(out / entry["file"]), providers=["CPUExecutionProvider"])
    ids = hf_tokenizer(folder).encode(SAMPLES[2]).ids
    feed = {session.get_inputs()[0].name: np.array([ids], dtype=np.int64)}
    logits = session.run(["logits"], feed)[0]
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits.numpy()
    assert np.abs(logits - ref).max() <= TOL
