"""Import a local Hugging Face checkpoint: bring your own model.

``import_gpt2_checkpoint(directory)`` reads a folder written by ``save_pretrained`` (or downloaded
from the Hub by the user, beforehand: this module never touches the network) and returns our
``GPT`` with the checkpoint's weights, our ``Tokenizer`` with its vocabulary, and a provenance
dict for the manifest. ``python -m models.build --from-hf DIR --name NAME`` then exports it like
any model we train, through ``models.import_hf.import_checkpoint``, which picks the importer
by ``config.json``'s ``model_type``: ``gpt2`` is read here, ``llama``, ``mistral`` and ``qwen2``
by models/llama_hf.py (the LLaMA recipe, a byte-level BPE ``tokenizer.json``). The weight-file
and tokenizer helpers below are shared by both importers.

What is read for GPT-2, and why each check exists:

- ``config.json``: GPT-2's hyper-parameters. Options our decoder cannot represent (cross
  attention, per-layer attention scaling, an MLP width other than 4 × n_embd, activations other
  than the two GELUs) are refused with a ValueError naming the option, rather than imported into
  a model that would silently compute something else.
- ``model.safetensors`` (preferred) or ``pytorch_model.bin``: GPT-2 stores its linear layers as
  ``Conv1D`` with weights shaped (in, out); ``nn.Linear`` wants (out, in), so they are transposed.
  Every parameter of ours must be filled and every tensor of theirs used (the causal-mask
  buffers of old checkpoints aside), as ``load_state_dict(strict=True)`` demands.
- ``vocab.json`` + ``merges.txt`` (or, as written by transformers 5, ``tokenizer.json``): token
  strings are bytes in disguise (GPT-2's byte-to-unicode table). Our encoder follows tiktoken
  (merge the adjacent pair whose concatenation has the lowest rank), Hugging Face follows the
  merge list (merge the adjacent pair listed first). They agree when token ids follow merge
  order (a token may be the result of several merges, as in files converted from tiktoken,
  which list every split of a token), which GPT-2's files do; the import checks it instead of
  assuming it.

"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from models.bpe import ENDOFTEXT, GPT2_SPLIT_PATTERN, Tokenizer
from models.gpt import GPT, GPTConfig
from models.runtime import sha256_file

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "pytorch_model.bin"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_JSON_FILE = "tokenizer.json"

# GPT2Config's defaults, for keys an older or hand-written config.json leaves out.
_GPT2_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
}
# Hugging Face activation name -> nn.GELU's ``approximate``. gelu_new and gelu_pytorch_tanh are
# the same tanh formula; "gelu" is the exact erf GELU.
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}

# Parameters stored by GPT-2's Conv1D as (in, out); every other weight already has our layout.
_CONV1D_WEIGHT = re.compile(r"^h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
# Buffers older checkpoints saved alongside the weights (the causal mask and the fill value
# for masked scores); our model builds its own mask, so they carry nothing to import.
_IGNORED_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
_PREFIX = "transformer."

# ---------------------------------------------------------------------------------------------
# the entry point


def import_gpt2_checkpoint(directory: str | Path) -> tuple[GPT, Tokenizer, dict]:
    """Read the GPT-2 checkpoint in ``directory``; return ``(model, tokenizer, provenance)``.
    (``models.import_hf.import_checkpoint`` sends each model type to its importer.)

    The model is in eval mode with the checkpoint's weights (as float32). The provenance dict
    names files by their name inside the folder and the folder by its own name only, so that a
    manifest does not record paths of the machine it was built on.

    Raises FileNotFoundError for a missing folder or file and ValueError for anything present
    but unusable (bad JSON, an option our model cannot represent, missing or extra weights, a
    vocabulary that does not follow merge order); each message names the file or setting.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"Hugging Face checkpoint folder not found: {folder}")
    raw_config = read_json(folder / CONFIG_FILE)
    config = config_from_hf(raw_config, source=CONFIG_FILE)

    # the tokenizer first: it is cheap to check, the weights are not
    tok, tok_files, n_merges = load_tokenizer(folder)
    if tok.vocab_size > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tok.vocab_size} tokens ({' + '.join(tok_files)}) but the model "
            f"only {config.vocab_size} embeddings ({CONFIG_FILE}: vocab_size); they do not belong "
            "together"
        )

    weights_path, state, dtypes = read_checkpoint_weights(folder)
    model = GPT(config)
    load_into(model, state, source=weights_path.name)
    model.eval()

    info = {
        "kind": "huggingface-gpt2",
        "directory": folder.resolve().name,
        "model_type": raw_config.get("model_type"),
        "architectures": raw_config.get("architectures"),
        "activation_function": raw_config.get(
            "activation_function", _GPT2_DEFAULTS["activation_function"]
        ),
        "transformers_version": raw_config.get("transformers_version"),
        "weights_file": weights_path.name,
        "weights_sha256": sha256_file(weights_path),
        "weights_dtype": dtypes,
        "tokenizer_files": tok_files,
        "tokenizer_merges": n_merges,
        "tokenizer_vocab_size": tok.vocab_size,
    }
    return model, tok, info


# ---------------------------------------------------------------------------------------------
# config


def config_from_hf(raw: dict, source: str = CONFIG_FILE) -> GPTConfig:
    """Our ``GPTConfig`` for a Hugging Face GPT-2 config dict; ValueError names what we refuse."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source} must hold a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    if model_type != "gpt2":
        raise ValueError(
            f"{source}: model_type is {model_type!r}; this importer reads GPT-2 checkpoints "
            "(model_type 'gpt2'); import_checkpoint sends Llama-family ones to models.llama_hf"
        )

    def get(key: str) -> Any:
        return raw.get(key, _GPT2_DEFAULTS[key])

    sizes = {}
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        value = get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{source}: {key} must be a positive integer, got {value!r}")
        sizes[key] = value
    n_embd, n_head = sizes["n_embd"], sizes["n_head"]
    if n_embd % n_head:
        raise ValueError(f"{source}: n_embd={n_embd} is not a multiple of n_head={n_head}")

    n_inner = get("n_inner")
    if n_inner is not None and n_inner != 4 * n_embd:
        raise ValueError(
            f"{source}: n_inner={n_inner} is not supported; our MLP is 4 × n_embd = {4 * n_embd} "
            "wide"
        )
    activation = get("activation_function")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{source}: activation_function={activation!r} is not supported; "
            f"choose one of {', '.join(ACTIVATIONS)}"
        )
    if get("scale_attn_by_inverse_layer_idx"):
        raise ValueError(
            f"{source}: scale_attn_by_inverse_layer_idx=true is not supported; our attention "
            "scales scores by 1/√d_head only"
        )
    if not get("scale_attn_weights"):
        raise ValueError(
            f"{source}: scale_attn_weights=false is not supported; our attention always scales "
            "scores by 1/√d_head"
        )
    if get("add_cross_attention"):
        raise ValueError(
            f"{source}: add_cross_attention=true is not supported; our decoder has no "
            "cross-attention"
        )
    eps = get("layer_norm_epsilon")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(
            f"{source}: layer_norm_epsilon must be a small positive number, got {eps!r}"
        )
    # reorder_and_upcast_attn only changes the order of float operations (same result in fp32),
    # so it is accepted.
    return GPTConfig(
        vocab_size=sizes["vocab_size"],
        block_size=sizes["n_positions"],
        n_layer=sizes["n_layer"],
        n_head=n_head,
        n_embd=n_embd,
        bias=True,  # GPT-2 has biases on every linear layer and LayerNorm
        layer_norm_eps=float(eps),
        gelu_approximate=ACTIVATIONS[activation],
    )


# ---------------------------------------------------------------------------------------------
# weights


def read_checkpoint_weights(folder: Path) -> tuple[Path, dict[str, torch.Tensor], list[str]]:
    """The folder's weights file, its tensors, and their dtypes (for the provenance)."""
    path = find_weights(folder)
    state = read_weights(path)
    return path, state, sorted({str(t.dtype).removeprefix("torch.") for t in state.values()})


def find_weights(folder: Path) -> Path:
    """The weights file: safetensors first (no pickle involved), else the torch pickle."""
    for name in (SAFETENSORS_FILE, TORCH_FILE):
        if (folder / name).is_file():
            return folder / name
    for index in (f"{SAFETENSORS_FILE}.index.json", f"{TORCH_FILE}.index.json"):
        if (folder / index).is_file():
            raise ValueError(
                f"{folder / index}: sharded checkpoints are not supported; save the model as one "
                f"file (save_pretrained(..., max_shard_size='100GB'))"
            )
    raise FileNotFoundError(f"no weights in {folder}: expected {SAFETENSORS_FILE} or {TORCH_FILE}")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``pytorch_model.bin`` state dict."""
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        # weights_only: unpickle tensors and containers only, never arbitrary objects
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe pickles
        # torch's own message suggests weights_only=False, which we never do: say what failed
        raise ValueError(
            f"{path.name} could not be read as a torch state dict ({type(err).__name__}): the "
            "file is corrupt or holds objects other than tensors, which are not unpickled"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path.name} does not hold a flat dict of named tensors")
    return state


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, with a ValueError naming the file if it is unreadable."""
    path = Path(path)
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path.name} is not a valid safetensors file: {err}") from None


def convert_state_dict(
    state: dict[str, torch.Tensor], source: str = "weights"
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Rename and re-lay GPT-2's tensors as ours; returns (state dict, untied lm_head or None).

    Keys may carry GPT2LMHeadModel's ``transformer.`` prefix or not (a bare GPT2Model);
    Conv1D weights are transposed; the old attention mask buffers are dropped.
    """
    out: dict[str, torch.Tensor] = {}
    lm_head = None
    for key, tensor in state.items():
        if key == "lm_head.weight":
            lm_head = tensor
            continue
        name = key.removeprefix(_PREFIX)
        if _IGNORED_BUFFER.match(name):
            continue
        if name in out:
            raise ValueError(f"{source}: {name!r} appears both with and without '{_PREFIX}'")
        out[name] = tensor.t() if _CONV1D_WEIGHT.match(name) and tensor.dim() == 2 else tensor
    return out, lm_head


def load_into(model: GPT, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Fill every parameter of ``model`` from GPT-2 ``state``, strictly.

    ValueError lists missing, unexpected and wrongly shaped tensors, or an untied LM head (our
    LM head *is* the token embedding, so a different one cannot be represented).
    """
    ours, lm_head = convert_state_dict(state, source)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing = sorted(expected.keys() - ours.keys())
    unexpected = sorted(ours.keys() - expected.keys())
    wrong = sorted(
        f"{k}: {tuple(ours[k].shape)} (ours {tuple(expected[k])})"
        for k in expected.keys() & ours.keys()
        if ours[k].shape != expected[k]
    )
    problems = []
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {_listing(wrong)}")
    if problems:
        raise ValueError(f"{source} does not fit a GPT-2 with this config: " + "; ".join(problems))
    for k, t in ours.items():
        if not t.is_floating_point():
            raise ValueError(f"{source}: {k} has dtype {t.dtype}, expected floating point")
    wte = ours["wte.weight"]
    if lm_head is not None and not (
        lm_head.shape == wte.shape and torch.equal(lm_head.float(), wte.float())
    ):
        raise ValueError(
            f"{source}: lm_head.weight differs from the token embedding (wte); untied LM heads "
            "are not supported (our LM head is tied to wte, as in GPT-2)"
        )
    ours["lm_head.weight"] = wte
    with torch.no_grad():
        model.load_state_dict(ours, strict=True)  # copies and casts to our float32


def _listing(names: list[str], limit: int = 8) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ---------------------------------------------------------------------------------------------
# tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (openai/gpt-2 ``encoder.py``).

    Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, ...) get
    the characters from U+0100 on, in byte order. The table's order is also the order of the
    256 single-byte tokens in GPT-2's vocabulary, which is why byte b is not token id b there.
    """
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def load_tokenizer(directory: str | Path) -> tuple[Tokenizer, list[str], int]:
    """Our tokenizer for the GPT-2 tokenizer files in ``directory``.

    Reads ``vocab.json`` + ``merges.txt``, or ``tokenizer.json`` when those are absent (what
    transformers 5's ``save_pretrained`` writes). Returns (tokenizer, files read, merge count).

    ``<|endoftext|>`` becomes a special token with its vocab id. Like tiktoken's
    ``encode_ordinary``, our ``encode`` reads that string in text as plain characters, where
    Hugging Face's tokenizer turns it into the special id.
    """
    folder = Path(directory)
    vocab_path, merges_path = folder / VOCAB_FILE, folder / MERGES_FILE
    json_path = folder / TOKENIZER_JSON_FILE
    if not vocab_path.is_file() and not merges_path.is_file() and json_path.is_file():
        vocab, merges = _read_tokenizer_json(json_path)
        files = [TOKENIZER_JSON_FILE]
        vocab_name = merges_name = TOKENIZER_JSON_FILE
    else:
        for path in (vocab_path, merges_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"tokenizer file not found: {path} (a GPT-2 checkpoint needs {VOCAB_FILE} and "
                    f"{MERGES_FILE}, or {TOKENIZER_JSON_FILE})"
                )
        vocab = read_json(vocab_path)
        merges = _read_merges(merges_path)
        files = [VOCAB_FILE, MERGES_FILE]
        vocab_name, merges_name = VOCAB_FILE, MERGES_FILE
    tok = tokenizer_from_vocab(vocab, merges, vocab_name, merges_name)
    return tok, files, len(merges)


def tokenizer_from_vocab(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    vocab_name: str = VOCAB_FILE,
    merges_name: str = MERGES_FILE,
    pattern: str = GPT2_SPLIT_PATTERN,
    special: dict[str, int] | None = None,
) -> Tokenizer:
    """Our ``Tokenizer`` from a byte-level vocab (token string -> id) and merge list, checked.

    ``pattern`` is the split regex (GPT-2's unless given); ``special`` the special tokens
    (string -> id), which ``vocab`` may also list. Without ``special``, ``<|endoftext|>`` is
    special if ``vocab`` has it and every other entry must be byte-level (GPT-2's files).

    Checks, each a ValueError naming the file: the vocabulary is byte-level (every string maps
    back to bytes, all 256 bytes present), every merge's parts and result are tokens, the
    results' ids never decrease with the merge's line (so tiktoken's lowest-rank-first order is
    the merge list's order; equal ids are several merges making one token), and every
    multi-byte token is the result of a merge (tiktoken would otherwise produce tokens Hugging
    Face never does).
    """
    if not isinstance(vocab, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in vocab.items()
    ):
        raise ValueError(f"{vocab_name} must map token strings to integer ids")
    decoder = {c: b for b, c in bytes_to_unicode().items()}
    if special is None:
        special = {ENDOFTEXT: vocab[ENDOFTEXT]} if ENDOFTEXT in vocab else {}
        only = f"{ENDOFTEXT} is the only special token supported"
    else:
        only = "special tokens must be listed as such (added_tokens)"
    ranks: dict[bytes, int] = {}
    for text, token_id in vocab.items():
        if text in special:
            continue
        try:
            ranks[bytes(decoder[c] for c in text)] = token_id
        except KeyError:
            raise ValueError(
                f"{vocab_name}: token {text!r} (id {token_id}) is not a byte-level token; {only}"
            ) from None

    missing_bytes = [b for b in range(256) if bytes([b]) not in ranks]
    if missing_bytes:
        raise ValueError(
            f"{vocab_name} lacks {len(missing_bytes)} of the 256 single-byte tokens "
            f"(first: byte {missing_bytes[0]:#04x}); not a byte-level GPT-2 vocabulary"
        )

    n = len(ranks)
    if sorted(ranks.values()) != list(range(n)):
        listed = ", ".join(f"{t} (id {i})" for t, i in list(special.items())[:3])
        where = f", and {listed} after them" if special else ""
        raise ValueError(
            f"{vocab_name}: the {n} byte-level tokens must have the ids 0..{n - 1}, each once"
            f"{where}"
        )

    made: set[bytes] = set()
    last_id, last_line = -1, 0
    for line, (left, right) in enumerate(merges, 1):
        for part in (left, right, left + right):
            if part not in vocab:
                raise ValueError(
                    f"{merges_name}: merge {line} ({left!r} + {right!r}) uses {part!r}, which "
                    f"is not in {vocab_name}"
                )
        new_id = vocab[left + right]
        if new_id < last_id:
            raise ValueError(
                f"{merges_name}: merge {line} ({left!r} + {right!r}) makes id {new_id}, below "
                f"the id {last_id} made by merge {last_line}; token ids must follow merge order "
                "for our (tiktoken-style) encoder to match Hugging Face's"
            )
        last_id, last_line = new_id, line
        made.add(bytes(decoder[c] for c in left + right))
    unmade = sorted((token_id, b) for b, token_id in ranks.items() if len(b) > 1 and b not in made)
    if unmade:
        token_id, b = unmade[0]
        raise ValueError(
            f"{vocab_name}: {len(unmade)} multi-byte token(s) are made by no merge in "
            f"{merges_name} (first: id {token_id}, bytes {b!r})"
        )
    try:
        return Tokenizer(ranks, pattern, special)
    except ValueError as err:
        # e.g. ids with gaps, or <|endoftext|> placed among the ordinary tokens
        raise ValueError(f"{vocab_name}: {err}") from None


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """``merges.txt``: an optional ``#version`` line, then ``left right`` per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path.name} is not UTF-8 text ({err})") from None
    merges = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if lineno == 1 and line.startswith("#version"):
            continue
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{path.name}, line {lineno}: expected 'left right', got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def _read_tokenizer_json(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges from a ``tokenizers`` JSON file, if it is a plain byte-level GPT-2 BPE."""
    data = read_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise ValueError(f"{path.name}: model.type must be 'BPE' for a GPT-2 tokenizer")
    pre = data.get("pre_tokenizer") or {}
    byte_level = isinstance(pre, dict) and pre.get("type") == "ByteLevel"
    if not byte_level or not pre.get("use_regex", True):
        raise ValueError(
            f"{path.name}: pre_tokenizer must be ByteLevel with GPT-2's split regex, got {pre!r}"
        )
    if pre.get("add_prefix_space"):
        raise ValueError(f"{path.name}: add_prefix_space=true is not supported (GPT-2 uses false)")
    if data.get("normalizer"):
        raise ValueError(f"{path.name}: a normalizer is not supported (GPT-2 has none)")
    vocab, merges = bpe_model_from_json(model, path.name)
    for added in data.get("added_tokens") or []:
        if isinstance(added, dict) and "content" in added and "id" in added:
            vocab.setdefault(added["content"], added["id"])
    return vocab, merges


def bpe_model_from_json(model: dict, name: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges of a ``tokenizer.json``'s BPE ``model``, refusing options that change
    what the merges produce (subword prefixes and suffixes, dropout); errors name ``name``."""
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(key):
            raise ValueError(f"{name}: model.{key}={model[key]!r} is not supported")
    vocab = model.get("vocab") or {}
    if not isinstance(vocab, dict):
        raise ValueError(f"{name}: model.vocab must map token strings to ids")
    merges = []
    for i, m in enumerate(model.get("merges") or [], 1):
        # tokenizers writes merges as ["left", "right"]; older files as "left right"
        pair = m.split(" ") if isinstance(m, str) else m
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
        if not ok:
            raise ValueError(f"{name}: model.merges[{i - 1}] is malformed: {m!r}")
        merges.append((pair[0], pair[1]))
    return dict(vocab), merges


# ---------------------------------------------------------------------------------------------
# files


def read_json(path: Path) -> Any:
    """The JSON in ``path``; FileNotFoundError or ValueError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in {path.parent}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path.name} is not valid JSON: {err}") from None
