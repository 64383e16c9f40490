"""A Hugging Face Llama, Mistral or Qwen2 checkpoint as our module's LLaMA recipe (models/gpt.py).

``import_llama_checkpoint(directory)`` keeps ``models.hf.import_gpt2_checkpoint``'s contract
for these model types (``models.import_hf.import_checkpoint`` sends them here by
``config.json``'s ``model_type``): it returns ``(model, tokenizer, provenance)``, raises
FileNotFoundError for a missing folder or file and ValueError, naming the file or setting,
for anything it cannot represent exactly.

- ``config_from_llama(raw)`` reads ``config.json`` (model_type llama, mistral or qwen2) and
  refuses what the module cannot represent: RoPE scaling, untied embeddings, Llama's biases,
  activations other than SiLU, sliding-window attention (Mistral's ``sliding_window``, Qwen2's
  ``use_sliding_window``). Qwen2's q/k/v biases become ``qkv_bias``. Our attention keeps a
  block × block causal mask and the dashboard needs T ≤ block size, so the block is
  ``max_position_embeddings`` capped at ``MAX_BLOCK``; the provenance records both.
- ``load_llama(model, state)`` fills our module from the ``*ForCausalLM`` state dict, strictly:
  q, k and v (and Qwen2's biases) go into one projection, gate and up into the SwiGLU's two
  input layers.
- ``load_byte_level_tokenizer(folder)`` reads a byte-level BPE ``tokenizer.json`` (Llama 3 and
  Qwen2 style: a Split regex then ByteLevel, a ByteLevel decoder) into our tiktoken-style
  ``Tokenizer``, with the split regex taken from the file and ``added_tokens`` as special
  tokens. SentencePiece-style files (Llama 2, Mistral v0.1: byte fallback, "▁" for spaces),
  normalizers (Qwen2's real files have NFC) and other pre-tokenizers are refused.

Our encoder reads special-token strings in text as plain text (tiktoken's ``encode_ordinary``)
where Hugging Face's turns them into their ids, and it adds no BOS token. The split regex runs
on Python's ``regex`` module, Hugging Face's on Oniguruma; with the Llama 3 and Qwen2 patterns
they were checked to split alike, in several contexts, around every code point assigned in
Unicode 14; they differ only on characters assigned later, which ``regex`` knows and Oniguruma
does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import regex
import torch

from models.bpe import GPT2_SPLIT_PATTERN, Tokenizer
from models.gpt import GPT, GPTConfig
from models.hf import (
    CONFIG_FILE,
    TOKENIZER_JSON_FILE,
    bpe_model_from_json,
    read_checkpoint_weights,
    read_json,
    tokenizer_from_vocab,
)
from models.runtime import sha256_file

MODEL_TYPES = ("llama", "mistral", "qwen2")
# Our block: the causal mask is block × block per layer and the dashboard draws T × T maps, so
# a checkpoint's max_position_embeddings (often 32768 or 131072) is capped here.
MAX_BLOCK = 1024
SENTENCEPIECE_FILE = "tokenizer.model"
# MistralConfig's sliding_window when config.json leaves the key out
_MISTRAL_DEFAULT_WINDOW = 4096
# Text the split regex must cover completely: Hugging Face's Split keeps unmatched text as
# pieces, our encoder (findall) would drop it.
_COVERAGE_PROBE = (
    "Hello, World! It's 2024: 3.14159 x1000000 I'LL\n\n  indented\tTAB\r\nCRLF \u00a0nbsp"
    "\u3000 naïve 日本語 한국어 🙂👩\u200d💻 <|x|> \x00\x1f\x7f\u200b\u2028 _-+*/\\ trailing   "
)

# ---------------------------------------------------------------------------------------------
# the entry point


def import_llama_checkpoint(directory: str | Path) -> tuple[GPT, Tokenizer, dict]:
    """Read the Llama, Mistral or Qwen2 checkpoint in ``directory``.

    Returns ``(model, tokenizer, provenance)`` like ``models.hf.import_gpt2_checkpoint``: the model
    in eval mode with the weights as float32, the provenance naming files by their name in the
    folder and the folder by its own name only. FileNotFoundError for a missing folder or
    file; ValueError naming the file or setting for anything present but not representable.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"Hugging Face checkpoint folder not found: {folder}")
    raw = read_json(folder / CONFIG_FILE)
    config = config_from_llama(raw, source=CONFIG_FILE)

    # the tokenizer first: it is cheap to check, the weights are not
    tok, tok_info = load_byte_level_tokenizer(folder)
    top_id = max([tok.n_ordinary - 1, *tok.special_tokens.values()])
    if top_id >= config.vocab_size:
        raise ValueError(
            f"{TOKENIZER_JSON_FILE} has token id {top_id} but the model only "
            f"{config.vocab_size} embeddings ({CONFIG_FILE}: vocab_size); they do not belong "
            "together"
        )

    weights_path, state, dtypes = read_checkpoint_weights(folder)
    model = GPT(config)
    load_llama(model, state, source=weights_path.name)
    model.eval()

    info = {
        "kind": "huggingface-llama",
        "directory": folder.resolve().name,
        "model_type": raw.get("model_type"),
        "architectures": raw.get("architectures"),
        "transformers_version": raw.get("transformers_version"),
        "max_position_embeddings": raw.get("max_position_embeddings"),
        "block_size": config.block_size,
        "block_size_cap": MAX_BLOCK,
        "rope_theta": config.rope_base,
        "num_key_value_heads": config.kv_heads,
        "qkv_bias": config.qkv_bias,
        "weights_file": weights_path.name,
        "weights_sha256": sha256_file(weights_path),
        "weights_dtype": dtypes,
        **tok_info,
    }
    return model, tok, info


# ---------------------------------------------------------------------------------------------
# config


def config_from_llama(
    raw: dict, source: str = CONFIG_FILE, max_block: int = MAX_BLOCK
) -> GPTConfig:
    """Our ``GPTConfig`` for a Llama, Mistral or Qwen2 config dict; ValueError names what we
    refuse. The block size is ``max_position_embeddings`` capped at ``max_block``."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source} must hold a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"{source}: model_type is {model_type!r}; this importer reads {', '.join(MODEL_TYPES)}"
        )

    def refuse(key: str, why: str, value: Any = None) -> None:
        value = raw.get(key) if value is None else value
        raise ValueError(f"{source}: {key}={value!r} is not supported; {why}")

    # transformers 5 writes rope_parameters {rope_type, rope_theta, ...}; older configs
    # rope_theta and rope_scaling
    rope = raw.get("rope_parameters") or {}
    if raw.get("rope_scaling") not in (None, {}):
        refuse("rope_scaling", "our rotary positions are unscaled (rope_scaling: null)")
    if rope.get("rope_type", "default") != "default":
        refuse("rope_parameters", "our rotary positions are unscaled (rope_type 'default')")
    theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
    if not raw.get("tie_word_embeddings", False):
        refuse("tie_word_embeddings", "our LM head is the token embedding (tied)")
    # Biases as each model class builds them: Llama's attention_bias puts them on q, k, v and
    # o; Mistral has none whatever the config says; Qwen2 always has them on q, k, v only.
    if model_type == "llama":
        for key in ("attention_bias", "mlp_bias"):
            if raw.get(key):
                refuse(key, "our recipe's only biases are on q, k and v (Qwen2's)")
    if raw.get("hidden_act", "silu") != "silu":
        refuse("hidden_act", "our SwiGLU gates with SiLU")
    # Sliding windows. Mistral slides when sliding_window is set (4096 when the key is
    # absent). Qwen2Config turns sliding_window into None unless use_sliding_window is true, so
    # the value a Qwen2 config carries beside use_sliding_window=false is unused.
    if model_type == "mistral":
        window = raw.get("sliding_window", _MISTRAL_DEFAULT_WINDOW)
        if window is not None:
            refuse(
                "sliding_window",
                "our attention is causal over the whole block (sliding_window: null)",
                window,
            )
    if model_type == "qwen2" and raw.get("use_sliding_window", False):
        refuse("use_sliding_window", "our attention is causal over the whole block")
    layer_types = raw.get("layer_types") or []
    if any(t != "full_attention" for t in layer_types):
        refuse("layer_types", "every layer of ours attends over the whole block (full_attention)")
    n_embd, n_head = _int(raw, "hidden_size", source), _int(raw, "num_attention_heads", source)
    head_dim = raw.get("head_dim") or n_embd // n_head
    if head_dim * n_head != n_embd:
        refuse("head_dim", "our heads split hidden_size evenly (head_dim × heads = hidden_size)")
    eps: Any = raw.get("rms_norm_eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        refuse("rms_norm_eps", "it must be a small positive number")
    return GPTConfig(
        vocab_size=_int(raw, "vocab_size", source),
        block_size=min(_int(raw, "max_position_embeddings", source), max_block),
        n_layer=_int(raw, "num_hidden_layers", source),
        n_head=n_head,
        n_embd=n_embd,
        bias=False,
        layer_norm_eps=float(eps),
        norm="rmsnorm",
        positions="rope",
        rope_base=float(theta),
        mlp="swiglu",
        n_kv_head=_int(raw, "num_key_value_heads", source, default=n_head),
        mlp_hidden=_int(raw, "intermediate_size", source),
        qkv_bias=model_type == "qwen2",
    )


def _int(raw: dict, key: str, source: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{source}: {key} must be a positive integer, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# weights


def load_llama(model: GPT, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Fill ``model`` (built by ``config_from_llama``) from a Llama, Mistral or Qwen2
    ``*ForCausalLM`` state dict, strictly: a missing, extra or wrongly shaped tensor is a
    ValueError naming it. Q/k/v biases are expected exactly when ``config.qkv_bias``."""
    state = {k.removeprefix("model."): v for k, v in state.items()}
    ours: dict[str, torch.Tensor | None] = {
        "wte.weight": state.pop("embed_tokens.weight", None),
        "ln_f.weight": state.pop("norm.weight", None),
    }
    head = state.pop("lm_head.weight", None)

    def fused(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
        return None if any(t is None for t in parts) else torch.cat(parts, 0)

    for i in range(model.config.n_layer):
        p, h = f"layers.{i}.", f"h.{i}."

        def take(name: str, p: str = p) -> torch.Tensor | None:
            return state.pop(p + name, None)

        ours[h + "attn.c_attn.weight"] = fused([take(f"self_attn.{x}_proj.weight") for x in "qkv"])
        if model.config.qkv_bias:
            ours[h + "attn.c_attn.bias"] = fused([take(f"self_attn.{x}_proj.bias") for x in "qkv"])
        ours[h + "attn.c_proj.weight"] = take("self_attn.o_proj.weight")
        ours[h + "ln_1.weight"] = take("input_layernorm.weight")
        ours[h + "ln_2.weight"] = take("post_attention_layernorm.weight")
        ours[h + "mlp.c_gate.weight"] = take("mlp.gate_proj.weight")
        ours[h + "mlp.c_fc.weight"] = take("mlp.up_proj.weight")
        ours[h + "mlp.c_proj.weight"] = take("mlp.down_proj.weight")
    state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    if missing := sorted(k for k, v in ours.items() if v is None):
        raise ValueError(f"{source}: missing the tensors for {', '.join(missing[:8])}")
    if state:
        raise ValueError(
            f"{source}: tensors our module has no place for: {', '.join(sorted(state)[:8])}"
        )
    full: dict[str, torch.Tensor] = {k: v for k, v in ours.items() if v is not None}
    if not_float := sorted(k for k, v in full.items() if not v.is_floating_point()):
        raise ValueError(f"{source}: not floating point: {', '.join(not_float[:8])}")
    if head is not None and not torch.equal(head.float(), full["wte.weight"].float()):
        raise ValueError(f"{source}: lm_head.weight differs from the embedding (untied)")
    full["lm_head.weight"] = full["wte.weight"]
    shapes = model.state_dict()
    if wrong := [k for k, v in full.items() if v.shape != shapes[k].shape]:
        raise ValueError(f"{source}: wrong shape for {', '.join(wrong[:8])}")
    with torch.no_grad():
        model.load_state_dict({k: v.float() for k, v in full.items()}, strict=True)


# ---------------------------------------------------------------------------------------------
# tokenizer


def load_byte_level_tokenizer(directory: str | Path) -> tuple[Tokenizer, dict]:
    """Our ``Tokenizer`` for the byte-level BPE ``tokenizer.json`` in ``directory``.

    Returns (tokenizer, provenance fields). The split regex comes from the file's
    ``pre_tokenizer`` (``Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)]``, or a
    lone ``ByteLevel`` with GPT-2's regex); ``added_tokens`` become special tokens. The vocab
    and merges get ``models.hf.tokenizer_from_vocab``'s checks (byte-level, ids in merge
    order). With ``model.ignore_merges`` false, Hugging Face merges a chunk that is itself a
    token like any other while tiktoken's encoder takes it whole, so every token must come out
    whole from its own bytes by the merge list. Anything else is a ValueError naming the file
    and setting; a missing file a FileNotFoundError.
    """
    folder = Path(directory)
    path = folder / TOKENIZER_JSON_FILE
    if not path.is_file():
        if (folder / SENTENCEPIECE_FILE).is_file():
            raise ValueError(
                f"{SENTENCEPIECE_FILE} (SentencePiece) is not supported and there is no "
                f"{TOKENIZER_JSON_FILE}; only byte-level BPE tokenizers (Llama 3, Qwen2 style) "
                "can be imported"
            )
        raise FileNotFoundError(
            f"{TOKENIZER_JSON_FILE} not found in {folder} (a Llama-family checkpoint needs its "
            f"byte-level BPE {TOKENIZER_JSON_FILE}: vocab.json + merges.txt lack the split regex)"
        )
    name = path.name
    data = read_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        raise ValueError(f"{name}: no tokenizer model (a JSON object under 'model')")
    if model.get("type") != "BPE":
        raise ValueError(
            f"{name}: model.type={model.get('type')!r} is not supported; only byte-level BPE"
        )
    if sign := _sentencepiece_sign(data, model):
        raise ValueError(
            f"{name} is a SentencePiece-style BPE ({sign}), as Llama 2 and Mistral v0.1 have; "
            "not supported: our tokenizer is byte-level BPE (Llama 3, Qwen2, GPT-2 style)"
        )
    if normalizer := data.get("normalizer"):
        raise ValueError(
            f"{name}: normalizer {_describe(normalizer)} is not supported; our encoder reads text "
            "as given, so text the normalizer changes would get other ids"
        )
    pattern = _split_pattern(data.get("pre_tokenizer"), name)
    decoder = data.get("decoder")
    if not isinstance(decoder, dict) or decoder.get("type") != "ByteLevel":
        raise ValueError(f"{name}: decoder {_describe(decoder)} is not supported (ByteLevel)")

    vocab, merges = bpe_model_from_json(model, name)
    special: dict[str, int] = {}
    for i, added in enumerate(data.get("added_tokens") or []):
        ok = isinstance(added, dict) and isinstance(added.get("content"), str)
        if not ok or isinstance(added.get("id"), bool) or not isinstance(added.get("id"), int):
            raise ValueError(f"{name}: added_tokens[{i}] is malformed: {added!r}")
        content, token_id = added["content"], added["id"]
        if vocab.get(content, token_id) != token_id:
            raise ValueError(
                f"{name}: added token {content!r} has id {token_id} but model.vocab gives it "
                f"{vocab[content]}"
            )
        special[content] = token_id
    tok = tokenizer_from_vocab(vocab, merges, name, name, pattern=pattern, special=special)
    ignore_merges = bool(model.get("ignore_merges", False))
    if not ignore_merges:
        _check_tokens_merge_whole(vocab, merges, special, name)
    info = {
        "tokenizer_files": [name],
        "tokenizer_merges": len(merges),
        "tokenizer_vocab_size": tok.vocab_size,
        "tokenizer_ignore_merges": ignore_merges,
    }
    return tok, info


def _split_pattern(pre: Any, name: str) -> str:
    """The one split regex a supported ``pre_tokenizer`` applies, checked to be usable."""
    expected = (
        "expected Sequence[Split(Regex, behavior Isolated), ByteLevel(add_prefix_space=false, "
        "use_regex=false)] or a lone ByteLevel(add_prefix_space=false)"
    )
    steps = pre.get("pretokenizers") if isinstance(pre, dict) else None
    if isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        byte_level, pattern = pre, GPT2_SPLIT_PATTERN  # ByteLevel's own regex is GPT-2's
    elif (
        isinstance(pre, dict)
        and pre.get("type") == "Sequence"
        and isinstance(steps, list)
        and len(steps) == 2
        and all(isinstance(s, dict) for s in steps)
        and [s.get("type") for s in steps] == ["Split", "ByteLevel"]
    ):
        split, byte_level = steps
        rx = split.get("pattern")
        if not isinstance(rx, dict) or not isinstance(rx.get("Regex"), str):
            raise ValueError(f"{name}: pre_tokenizer Split pattern {rx!r} is not a Regex")
        if split.get("behavior") != "Isolated" or split.get("invert"):
            raise ValueError(
                f"{name}: pre_tokenizer Split behavior={split.get('behavior')!r}, "
                f"invert={split.get('invert')!r} is not supported (Isolated, invert false)"
            )
        if byte_level.get("use_regex", True):
            raise ValueError(
                f"{name}: ByteLevel use_regex=true after a Split is not supported (two split "
                "regexes in a row)"
            )
        pattern = rx["Regex"]
    else:
        raise ValueError(f"{name}: pre_tokenizer {_describe(pre)} is not supported; {expected}")
    if byte_level.get("add_prefix_space"):
        raise ValueError(f"{name}: ByteLevel add_prefix_space=true is not supported")
    try:
        compiled = regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"{name}: the split regex {pattern!r} does not compile: {err}") from None
    if compiled.groups:
        # findall would return the groups instead of the matches
        raise ValueError(f"{name}: the split regex {pattern!r} has capturing groups")
    at = 0
    for m in compiled.finditer(_COVERAGE_PROBE):
        if m.start() != at:
            break
        at = m.end()
    if at != len(_COVERAGE_PROBE):
        raise ValueError(
            f"{name}: the split regex {pattern!r} leaves text unmatched (at "
            f"{_COVERAGE_PROBE[at : at + 12]!r}); Hugging Face keeps such text, our encoder "
            "would drop it"
        )
    return pattern


def _check_tokens_merge_whole(
    vocab: dict[str, int], merges: list[tuple[str, str]], special: dict[str, int], name: str
) -> None:
    """Every multi-byte token must be what Hugging Face's merge list makes of its own bytes:
    our (tiktoken) encoder returns a chunk that is a token as that token, unmerged."""
    rank: dict[tuple[str, str], int] = {}
    for i, pair in enumerate(merges):
        rank.setdefault(pair, i)
    bad = sorted(
        (token_id, text)
        for text, token_id in vocab.items()
        if len(text) > 1 and text not in special and _merge_list_bpe(list(text), rank) != [text]
    )
    if bad:
        token_id, text = bad[0]
        raise ValueError(
            f"{name}: {len(bad)} token(s) are not what the merges make of their own bytes "
            f"(first: id {token_id}, {text!r}) and model.ignore_merges is false; our encoder "
            "would emit such a token whole where Hugging Face splits it"
        )


def _merge_list_bpe(symbols: list[str], rank: dict[tuple[str, str], int]) -> list[str]:
    """Hugging Face's BPE on one word: merge the adjacent pair listed first, leftmost on ties."""
    while len(symbols) > 1:
        best, at = len(rank), -1
        for i in range(len(symbols) - 1):
            r = rank.get((symbols[i], symbols[i + 1]), best)
            if r < best:
                best, at = r, i
        if at < 0:
            break
        symbols[at : at + 2] = [symbols[at] + symbols[at + 1]]
    return symbols


def _sentencepiece_sign(data: dict, model: dict) -> str | None:
    """What marks ``data`` as a SentencePiece-style tokenizer, or None."""
    if model.get("byte_fallback"):
        return "model.byte_fallback=true"
    for key in ("normalizer", "pre_tokenizer", "decoder"):
        text = json.dumps(data.get(key), ensure_ascii=False)
        if '"Metaspace"' in text:
            return f"{key} Metaspace"
        if "\u2581" in text:
            return f"{key} writes spaces as '\u2581'"
    return None


def _describe(component: Any) -> str:
    """A tokenizer.json component by its type (and its steps' types, for a Sequence)."""
    if not isinstance(component, dict):
        return repr(component)
    steps = component.get("pretokenizers") or component.get("normalizers")
    steps = steps or component.get("decoders")
    if isinstance(steps, list):
        inner = ", ".join(str(s.get("type")) if isinstance(s, dict) else "?" for s in steps)
        return f"{component.get('type')}[{inner}]"
    return str(component.get("type"))
