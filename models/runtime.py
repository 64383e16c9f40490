"""ONNX Runtime engine: the only way the dashboard runs a model. Never imports torch.

- one ``InferenceSession`` per model file per process, shared by every browser session;
- provider ``auto`` (CUDA when onnxruntime-gpu and a GPU are present, else CPU), ``cpu`` or
  ``cuda``; the provider that actually runs is reported, never assumed;
- intra-op threads bounded and not spinning, so serving never starves the Tornado loop;
- an LRU cache of forward passes keyed by model, token ids and precision, so that
  temperature, top-k and top-p changes reuse cached logits instead of re-running the model;
- the same model at lower precision (``precision="fp16"`` or ``"bf16"``): the graphs that
  ``python -m models.lowp`` writes next to the fp32 file, listed in the manifest entry's
  ``variants`` (fp16: a float16 graph; bf16: emulated with Cast round trips);
- the trained weights read from the safetensors file with numpy alone;
- a KV cache for generation (``next_logits``): the keys and values of a text, kept once
  computed, so that each further token costs the decode graph one position instead of the
  full graph the whole prefix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import onnxruntime as ort

from models import manifest as manifest_file
from models.bpe import Tokenizer
from models.contract import (
    DECODE_OUTPUTS,
    INPUT_IDS,
    PAST_K,
    PAST_V,
    TRANSFORMER_OUTPUTS,
    Forward,
    transformer_outputs,
)
from models.manifest import MANIFEST_NAME, REBUILD_HINT, STATIC_DIR

PROVIDERS = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
LOWP_HINT = "Write the lower-precision variants with `python -m models.lowp`."


class EngineError(RuntimeError):
    """A problem a person can fix (missing or corrupt file, bad request); safe to show."""


@dataclass(frozen=True)
class _Session:
    session: ort.InferenceSession
    provider: str
    notice: str  # why the provider differs from the request, or ""
    outputs: tuple[str, ...]  # the graph's output names, in its order


# Process-wide: every Engine (one per browser session, or one shared) uses the same sessions.
_SESSIONS: dict[tuple[str, str, int], _Session] = {}
_SESSIONS_LOCK = threading.Lock()


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def check_provider(request: str) -> str:
    """``request`` if it is one of PROVIDERS, else an EngineError saying which are."""
    if request not in PROVIDERS:
        raise EngineError(f"unknown provider {request!r}; choose one of {', '.join(PROVIDERS)}")
    return request


def resolve_providers(request: str, available: list[str] | None = None) -> tuple[list[str], str]:
    """Providers to ask ONNX Runtime for, and a notice when the request cannot be honoured."""
    check_provider(request)
    available = available_providers() if available is None else available
    if request == "cpu":
        return [_CPU], ""
    if _CUDA in available:
        return [_CUDA, _CPU], ""
    if request == "cuda":
        return [_CPU], (
            "CUDA was requested but this onnxruntime has no CUDA execution provider "
            "(install onnxruntime-gpu on a machine with an NVIDIA GPU); running on CPU."
        )
    return [_CPU], ""


def session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn a core waiting for work; the server needs it for the event loop.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(static_dir: Path = STATIC_DIR) -> dict:
    """The manifest, with a clear error when it is missing or unreadable."""
    try:
        return manifest_file.load_manifest(static_dir)
    except manifest_file.ManifestError as err:
        raise EngineError(str(err)) from None


# -- safetensors, read without torch -----------------------------------------------------------
_ST_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as read-only numpy arrays (file order).

    The format is small enough to read directly: an 8-byte little-endian header length, a
    JSON header (name -> dtype, shape, byte offsets into the data that follows), the data.
    Raises ``ValueError`` for a file that does not follow it."""
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(raw[8 : 8 + n])
    except ValueError as err:
        raise ValueError(f"{path}: unreadable header ({err})") from None
    data = memoryview(raw)[8 + n :]
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES[spec["dtype"]]
            shape = tuple(int(d) for d in spec["shape"])
            begin, end = (int(o) for o in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name!r} has an unusable entry {spec}") from None
        if not 0 <= begin <= end <= len(data) or end - begin != dtype.itemsize * math.prod(shape):
            raise ValueError(f"{path}: tensor {name!r} has wrong byte offsets {begin}..{end}")
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        out[name] = array
    return out


class Engine:
    """Runs the manifest's models. Cheap to create; sessions are shared per process."""

    def __init__(
        self,
        static_dir: str | Path = STATIC_DIR,
        provider: str = "auto",
        threads: int = 2,
        cache_size: int = 256,
        cache_bytes: int = 64 << 20,
    ):
        self.static_dir = Path(static_dir)
        self.provider_request = check_provider(provider)
        self.threads = threads
        self.manifest = load_manifest(self.static_dir)
        self._entries = {m["name"]: m for m in self.manifest["models"]}
        self._cache: OrderedDict[tuple, Forward] = OrderedDict()
        self._cache_size = cache_size
        # a 128-token pass is ~2 MB (logits, scores, probabilities, hidden): bound the bytes
        # too, or a class typing away would keep hundreds of MB after it has left
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._tokenizers: dict[str, Tokenizer] = {}
        self._weights: dict[str, dict[str, np.ndarray]] = {}
        self.forward_calls = 0  # ONNX Runtime runs, not cache hits (tests count these)
        # the KV cache: (model, ids) -> (k, v) of those ids, each (1, n_layer, n_kv, T, d)
        self._kv: OrderedDict[tuple[str, tuple[int, ...]], tuple[np.ndarray, ...]] = OrderedDict()
        self._kv_bytes = 0
        self.decode_calls = 0  # decode-graph steps run (tests count these)

    # -- the manifest -------------------------------------------------------------------------
    @property
    def model_names(self) -> list[str]:
        return list(self._entries)

    @property
    def default_model(self) -> str:
        name = self.manifest.get("default_model")
        return name if name in self._entries else self.model_names[0]

    def entry(self, model: str) -> dict:
        """The manifest's record of ``model``: config, losses, parity, provenance."""
        try:
            return self._entries[model]
        except KeyError:
            raise EngineError(
                f"unknown model {model!r}; the manifest has {', '.join(self.model_names)}"
            ) from None

    def config(self, model: str) -> dict:
        return self.entry(model)["config"]

    def precisions(self, model: str) -> list[str]:
        """The precisions ``model`` can run at: fp32, and each variant the manifest lists."""
        variants = self.entry(model).get("variants") or {}
        return ["fp32"] + [p for p in PRECISIONS[1:] if p in variants]

    def variant(self, model: str, precision: str) -> dict:
        """The manifest's record of a lower-precision graph: file, sha256, how it was made
        (``native_ops``, ``emulated_ops``, ``description``)."""
        if precision not in PRECISIONS[1:]:
            raise EngineError(
                f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        record = (self.entry(model).get("variants") or {}).get(precision)
        if not record:
            raise EngineError(
                f"{model} has no {precision} variant in {self.static_dir / MANIFEST_NAME}. "
                f"{LOWP_HINT}"
            )
        return record

    # -- sessions and tokenizers --------------------------------------------------------------
    def _session(self, model: str, precision: str = "fp32") -> _Session:
        if precision == "fp32":
            record, hint = self.entry(model), REBUILD_HINT
        else:
            record, hint = self.variant(model, precision), LOWP_HINT
        return self.shared_session(self.static_dir / record["file"], record, hint)

    def shared_session(
        self,
        path: Path,
        record: dict,
        hint: str = REBUILD_HINT,
        required: tuple[str, ...] = TRANSFORMER_OUTPUTS,
    ) -> _Session:
        """The process's session of ``path``, opened (and checked) the first time."""
        key = (str(path), self.provider_request, self.threads)
        with _SESSIONS_LOCK:
            if key not in _SESSIONS:
                _SESSIONS[key] = self._open(path, record, hint, required)
            return _SESSIONS[key]

    def _open(
        self,
        path: Path,
        entry: dict,
        hint: str = REBUILD_HINT,
        required: tuple[str, ...] = TRANSFORMER_OUTPUTS,
    ) -> _Session:
        if not path.is_file():
            raise EngineError(f"model file {path} is missing. {hint}")
        expected = entry.get("sha256")
        if expected and sha256_file(path) != expected:
            raise EngineError(
                f"model file {path} does not match the manifest (sha256 differs): it is "
                f"corrupt or from another build. {hint}"
            )
        providers, notice = resolve_providers(self.provider_request)
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(self.threads), providers=providers
            )
        except Exception as err:  # ORT raises several types for unreadable graphs
            raise EngineError(f"model file {path} could not be loaded ({err}). {hint}") from None
        used = session.get_providers()[0]
        if providers[0] == _CUDA and used != _CUDA:
            notice = "The CUDA execution provider failed to start; running on CPU."
        names = [o.name for o in session.get_outputs()]
        if missing := [n for n in required if n not in names]:
            raise EngineError(f"model file {path} lacks outputs {missing}. {hint}")
        return _Session(session, used, notice, tuple(names))

    def provider(self, model: str, precision: str = "fp32") -> str:
        """The execution provider that actually runs ``model`` (e.g. CPUExecutionProvider)."""
        return self._session(model, precision).provider

    def provider_notice(self, model: str) -> str:
        return self._session(model).notice

    def tokenizer(self, model: str) -> Tokenizer:
        if model not in self._tokenizers:
            spec = self.entry(model)["tokenizer"]
            try:
                self._tokenizers[model] = Tokenizer.load(self.static_dir, spec["name"])
            except (OSError, ValueError) as err:
                raise EngineError(f"tokenizer for {model!r}: {err}. {REBUILD_HINT}") from None
        return self._tokenizers[model]

    def weights(self, model: str) -> dict[str, np.ndarray]:
        """``model``'s trained weights (name -> read-only array), read once, without torch."""
        if model not in self._weights:
            name = self.entry(model).get("weights_file")
            if not name:
                raise EngineError(f"the manifest lists no weights file for {model}. {REBUILD_HINT}")
            try:
                self._weights[model] = read_safetensors(self.static_dir / name)
            except (OSError, ValueError) as err:
                raise EngineError(f"weights of {model}: {err}. {REBUILD_HINT}") from None
        return self._weights[model]

    # -- running ------------------------------------------------------------------------------
    def validate_ids(self, model: str, ids) -> tuple[int, ...]:
        cfg = self.config(model)
        ids = tuple(int(i) for i in ids)
        if not ids:
            raise EngineError("no tokens to run: type some text")
        if len(ids) > cfg["block_size"]:
            raise EngineError(
                f"{len(ids)} tokens is more than the model's block size ({cfg['block_size']})"
            )
        if min(ids) < 0 or max(ids) >= cfg["vocab_size"]:
            raise EngineError(f"token ids must lie in [0, {cfg['vocab_size']})")
        return ids

    def outputs(self, model: str, precision: str = "fp32") -> tuple[str, ...]:
        """The named outputs ``model``'s graph has (models/contract.py), in its order."""
        return self._session(model, precision).outputs

    def require(self, model: str, names) -> None:
        """Raise EngineError naming the outputs of ``names`` that ``model``'s graph lacks: ones
        a model of its kind does not compute (a mixture of experts has no single MLP's
        ``mlp_hidden``; GPT-2's learned positions no ``q_before_rope``), or ones its file
        predates (a rebuild writes them)."""
        missing = [n for n in names if n not in self.outputs(model)]
        if not missing:
            return
        ours = transformer_outputs(self.config(model))
        if absent := [n for n in missing if n not in ours]:
            c = self.config(model)
            raise EngineError(
                f"{model} has no {', '.join(absent)} output: a model of its kind does not "
                f"compute it (positions: {c.get('positions', 'learned')}, MLP: "
                f"{c.get('mlp', 'gelu')})"
            )
        raise EngineError(
            f"{model}'s model file has no {', '.join(missing)} output "
            f"(it was exported before the lessons inside a block). {REBUILD_HINT}"
        )

    def run(
        self, model: str, ids, precision: str = "fp32", outputs: str | tuple = "core"
    ) -> Forward:
        """Forward pass of ``model`` over ``ids`` (cached by model, ids, precision, outputs).

        ``outputs``: "core" (the four every lesson reads: logits, attention scores and
        probabilities, the residual stream), "all" (every output the file has: q, k, v, the
        heads, the MLP or the router...), or a tuple of names. Arrays are float32 but for a
        mixture of experts' ``experts`` (int64 ids). ``precision`` "fp16" or "bf16" runs the
        variant graph (``python -m models.lowp``); its outputs are float32 arrays holding
        fp16 / bf16 values."""
        if precision not in PRECISIONS:
            raise EngineError(
                f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        ids = self.validate_ids(model, ids)
        s = self._session(model, precision)
        names = self._output_names(model, s, outputs)
        key = (model, ids, precision, names)
        with self._lock:
            for k in (key, (model, ids, precision, s.outputs)):  # everything answers a part
                if k in self._cache:
                    self._cache.move_to_end(k)
                    hit = self._cache[k]
                    if k == key:
                        return hit
                    return dataclasses.replace(hit, outputs={n: hit.outputs[n] for n in names})
        feed = {INPUT_IDS: np.asarray([ids], dtype=np.int64)}
        t0 = time.perf_counter()
        outs = s.session.run(list(names), feed)
        seconds = time.perf_counter() - t0
        result = Forward(
            model,
            ids,
            {name: o[0] for name, o in zip(names, outs, strict=True)},
            seconds=seconds,
            provider=s.provider,
            precision=precision,
        )
        with self._lock:
            self.forward_calls += 1
            if key in self._cache:  # another thread ran the same pass meanwhile
                self._cached_bytes -= self._cache[key].nbytes
            self._cache[key] = result
            self._cached_bytes += result.nbytes
            while len(self._cache) > 1 and (
                len(self._cache) > self._cache_size or self._cached_bytes > self._cache_bytes
            ):
                self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return result

    @staticmethod
    def _output_names(model: str, s: _Session, outputs) -> tuple[str, ...]:
        if outputs == "core":
            return TRANSFORMER_OUTPUTS
        if outputs == "all":
            return s.outputs
        names = tuple(outputs) if isinstance(outputs, (tuple, list)) else ()
        if not names or any(not isinstance(n, str) for n in names):
            raise EngineError(f"outputs must be 'core', 'all' or a tuple of names, not {outputs!r}")
        if missing := [n for n in names if n not in s.outputs]:
            raise EngineError(
                f"{model} has no output {', '.join(map(repr, missing))}; it has "
                f"{', '.join(s.outputs)}. {REBUILD_HINT}"
            )
        return names

    # -- generation with a KV cache -----------------------------------------------------------
    def has_decoder(self, model: str) -> bool:
        """Whether ``model`` has a decode graph (generation with a KV cache)."""
        return bool((self.entry(model).get("decode") or {}).get("file"))

    def _decoder(self, model: str) -> _Session:
        record = self.entry(model)["decode"]
        return self.shared_session(
            self.static_dir / record["file"], record, required=DECODE_OUTPUTS
        )

    def next_logits(self, model: str, ids) -> np.ndarray:
        """The logits (vocab,) of the token after ``ids``, for generation.

        When the keys and values of ``ids`` without its last token are in the KV cache (the
        previous step left them), only the last token runs, through the decode graph;
        otherwise the full graph reads the whole text once and its ``k`` and ``v`` fill the
        cache. Either way the keys and values of ``ids`` are kept for the next step. A model
        without a decode graph (an older file) runs the full graph every time."""
        ids = self.validate_ids(model, ids)
        if not self.has_decoder(model):
            return self.run(model, ids).logits[-1]
        past = self._kv_get((model, ids[:-1])) if len(ids) > 1 else None
        if past is None:
            f = self.run(model, ids, outputs=("logits", "k", "v"))
            logits, k, v = f.logits[-1], f.k[None], f.v[None]
        else:
            s = self._decoder(model)
            feed = {INPUT_IDS: np.asarray([ids[-1:]], dtype=np.int64), PAST_K: past[0]}
            feed[PAST_V] = past[1]
            out, k, v = s.session.run(list(DECODE_OUTPUTS), feed)
            logits = out[0, -1]
            with self._lock:
                self.decode_calls += 1
        self._kv_put((model, ids), (k, v))
        return logits

    def _kv_get(self, key) -> tuple[np.ndarray, ...] | None:
        with self._lock:
            if key in self._kv:
                self._kv.move_to_end(key)
                return self._kv[key]
        return None

    def _kv_put(self, key, kv: tuple[np.ndarray, ...]) -> None:
        with self._lock:
            if key in self._kv:
                self._kv_bytes -= sum(a.nbytes for a in self._kv[key])
            self._kv[key] = kv
            self._kv_bytes += sum(a.nbytes for a in kv)
            # a step's cache is read once, by the next step: keep a little, bounded by bytes
            while len(self._kv) > 1 and self._kv_bytes > self._cache_bytes // 4:
                _, old = self._kv.popitem(last=False)
                self._kv_bytes -= sum(a.nbytes for a in old)

    @property
    def cached_bytes(self) -> int:
        """Bytes of the forward passes held in the cache."""
        return self._cached_bytes

    def clear_cache(self) -> None:
        """Forget every cached forward pass (the server does when its last session closes)."""
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0
            self._kv.clear()
            self._kv_bytes = 0
