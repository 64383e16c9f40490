"""ONNX Runtime engine: the only way the dashboard runs a model. Never imports torch.

- one ``InferenceSession`` per model file per process, shared by every browser session;
- provider ``auto`` (CUDA when onnxruntime-gpu and a GPU are present, else CPU), ``cpu`` or
  ``cuda``; the provider that actually runs is reported, never assumed;
- intra-op threads bounded and not spinning, so serving never starves the Tornado loop;
- an LRU cache of forward passes keyed by model and token ids, so that temperature, top-k
  and top-p changes reuse cached logits instead of re-running the model.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.bpe import Tokenizer

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MANIFEST_NAME = "manifest.json"
OUTPUTS = ("logits", "attn_scores", "attn_probs", "hidden")
PROVIDERS = ("auto", "cpu", "cuda")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
REBUILD_HINT = "Rebuild the models with `make build`."


class EngineError(RuntimeError):
    """A problem a person can fix (missing or corrupt file, bad request); safe to show."""


@dataclass(frozen=True)
class Forward:
    """One forward pass, batch dimension removed."""

    model: str
    ids: tuple[int, ...]
    logits: np.ndarray  # (T, vocab)
    attn_scores: np.ndarray  # (n_layer, n_head, T, T), q·k/√d before the mask
    attn_probs: np.ndarray  # (n_layer, n_head, T, T)
    hidden: np.ndarray  # (n_layer + 1, T, d_model)
    seconds: float  # wall time of the ONNX Runtime call
    provider: str  # the execution provider that ran it


@dataclass(frozen=True)
class _Session:
    session: ort.InferenceSession
    provider: str
    notice: str  # why the provider differs from the request, or ""


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
    path = Path(static_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"{path} not found. {REBUILD_HINT}") from None
    except (OSError, ValueError) as err:
        raise EngineError(f"{path} is not valid JSON ({err}). {REBUILD_HINT}") from None
    if not isinstance(manifest, dict) or not manifest.get("models"):
        raise EngineError(f"{path} lists no models. {REBUILD_HINT}")
    return manifest


class Engine:
    """Runs the manifest's models. Cheap to create; sessions are shared per process."""

    def __init__(
        self,
        static_dir: str | Path = STATIC_DIR,
        provider: str = "auto",
        threads: int = 2,
        cache_size: int = 256,
    ):
        self.static_dir = Path(static_dir)
        self.provider_request = check_provider(provider)
        self.threads = threads
        self.manifest = load_manifest(self.static_dir)
        self._entries = {m["name"]: m for m in self.manifest["models"]}
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], Forward] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._tokenizers: dict[str, Tokenizer] = {}
        self.forward_calls = 0  # ONNX Runtime runs, not cache hits (tests count these)

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

    # -- sessions and tokenizers --------------------------------------------------------------
    def _session(self, model: str) -> _Session:
        entry = self.entry(model)
        path = self.static_dir / entry["file"]
        key = (str(path), self.provider_request, self.threads)
        with _SESSIONS_LOCK:
            if key not in _SESSIONS:
                _SESSIONS[key] = self._open(path, entry)
            return _SESSIONS[key]

    def _open(self, path: Path, entry: dict) -> _Session:
        if not path.is_file():
            raise EngineError(f"model file {path} is missing. {REBUILD_HINT}")
        expected = entry.get("sha256")
        if expected and sha256_file(path) != expected:
            raise EngineError(
                f"model file {path} does not match the manifest (sha256 differs): it is "
                f"corrupt or from another build. {REBUILD_HINT}"
            )
        providers, notice = resolve_providers(self.provider_request)
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(self.threads), providers=providers
            )
        except Exception as err:  # ORT raises several types for unreadable graphs
            raise EngineError(
                f"model file {path} could not be loaded ({err}). {REBUILD_HINT}"
            ) from None
        used = session.get_providers()[0]
        if providers[0] == _CUDA and used != _CUDA:
            notice = "The CUDA execution provider failed to start; running on CPU."
        names = {o.name for o in session.get_outputs()}
        if missing := [n for n in OUTPUTS if n not in names]:
            raise EngineError(f"model file {path} lacks outputs {missing}. {REBUILD_HINT}")
        return _Session(session, used, notice)

    def provider(self, model: str) -> str:
        """The execution provider that actually runs ``model`` (e.g. CPUExecutionProvider)."""
        return self._session(model).provider

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

    def run(self, model: str, ids) -> Forward:
        """Forward pass of ``model`` over ``ids`` (cached by model and ids)."""
        ids = self.validate_ids(model, ids)
        key = (model, ids)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        s = self._session(model)
        feed = {"input_ids": np.asarray([ids], dtype=np.int64)}
        t0 = time.perf_counter()
        outs = s.session.run(list(OUTPUTS), feed)
        seconds = time.perf_counter() - t0
        result = Forward(model, ids, *(o[0] for o in outs), seconds=seconds, provider=s.provider)
        with self._lock:
            self.forward_calls += 1
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result
