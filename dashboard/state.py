"""The shared, linked state of one browser session, and the engine every session shares.

Every view reads and writes one :class:`AnatomyState`: the text, the model, the selected
layer, head, query and key, the lesson and its options. Changing a parameter anywhere
updates every view that depends on it, and (through :meth:`AnatomyState.sync_url`) the URL
query string, so that a copied link reproduces the exact view.

The derived values (token ids, their labels, the forward pass, a notice or an error) are
recomputed here, once per change of text or model, so views never tokenise or run the model
themselves. Bad input never raises out of this module: it becomes ``message`` and ``status``.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import urllib.parse
from typing import Any

import param

from dashboard.views import registry
from models.contract import Forward
from models.manifest import static_dir
from models.reading import read_text
from models.runtime import Engine, EngineError

# In the corpus's own register (docstrings), so the tokenizer splits it into whole words, and
# with repeats ("the file", "is not") that show heads looking back at earlier occurrences.
DEFAULT_TEXT = "If the file does not exist, an exception is raised and the file is not created."
DEFAULT_LESSON = registry.DEFAULT_LESSON

# The shell's own parameters -> URL query keys; the lessons' options add theirs (registry).
SHELL_KEYS = {"lesson": "lesson", "text": "text", "model": "model", "classroom": "classroom"}


def url_keys() -> dict[str, str]:
    """Every state parameter mirrored in the URL -> its query key."""
    return {**SHELL_KEYS, **registry.url_keys()}


# -- the engine: one per process, shared by every browser session ---------------------------------
ENV_PROVIDER = "ANATOMY_PROVIDER"
ENV_MODEL = "ANATOMY_MODEL"
ENV_CLASSROOM = "ANATOMY_CLASSROOM"

_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine, created on first use.

    A failure is not cached: after ``make build`` fixes a missing model, a reload works
    without restarting the server. Raises :class:`EngineError` with a message for the page.
    """
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            provider = os.environ.get(ENV_PROVIDER, "auto")
            _ENGINE = Engine(static_dir(), provider=provider)  # checks the provider's name
        return _ENGINE


def clear_engine_cache() -> None:
    """Drop the shared engine's cached forward passes (the server does when its last session
    closes: nobody is left to reuse them). Creates no engine."""
    with _ENGINE_LOCK:
        engine = _ENGINE
    if engine is not None:
        engine.clear_cache()


def engine_cache_bytes() -> int:
    """Bytes of forward passes the shared engine caches (0 before it exists)."""
    with _ENGINE_LOCK:
        return _ENGINE.cached_bytes if _ENGINE is not None else 0


def reset_engine() -> None:
    """Forget the shared engine (tests, or after the static folder changes)."""
    global _ENGINE
    with _ENGINE_LOCK:
        _ENGINE = None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class SessionState(registry.Selection):
    """One browser session's linked state, less the lessons' options (:func:`state_class`
    adds them). Views watch it; widgets write to it."""

    # -- what the user chooses (mirrored in the URL) ----------------------------------------------
    lesson = param.Selector(default=DEFAULT_LESSON, objects=[DEFAULT_LESSON], doc="Lesson shown.")
    text = param.String(default=DEFAULT_TEXT, doc="The text the model reads.")
    model = param.Selector(default=None, objects=[], doc="The model from the manifest.")
    classroom = param.Boolean(default=False, doc="Dark, large, projector-friendly theme.")

    # -- derived from text and model (never in the URL) ------------------------------------------
    ids = param.List(default=[], precedence=-1, doc="Token ids the model reads.")
    tokens = param.List(default=[], precedence=-1, doc="Readable token strings.")
    labels = param.List(default=[], precedence=-1, doc="Unique labels, e.g. '3: the'.")
    forward = param.Parameter(default=None, precedence=-1, doc="models.runtime.Forward or None.")
    status = param.Selector(
        default="empty", objects=["ok", "empty", "error"], precedence=-1, doc="ok/empty/error"
    )
    message = param.String(default="", precedence=-1, doc="Prompt or error for the page.")
    notice = param.String(default="", precedence=-1, doc="Truncation or link notices.")
    provider = param.String(default="", precedence=-1, doc="Execution provider that runs.")

    def __init__(self, engine: Engine | None = None, lessons: list[str] | None = None, **params):
        self._engine = engine
        self._engine_error = ""
        if engine is None:
            try:
                self._engine = get_engine()
            except EngineError as err:
                self._engine_error = str(err)
        lessons = list(lessons or registry.course() or [DEFAULT_LESSON])
        self.param.lesson.objects = lessons
        self.param.lesson.check_on_set = True
        if "lesson" in params:
            params["lesson"] = registry.resolve(params["lesson"]) or params["lesson"]
        if params.get("lesson") not in lessons:
            params["lesson"] = DEFAULT_LESSON if DEFAULT_LESSON in lessons else lessons[0]
        if self._engine is not None:
            self.param.model.objects = self._engine.model_names
            self.param.model.check_on_set = True  # an unknown model in a link is refused
            wanted = params.get("model") or os.environ.get(ENV_MODEL)
            params["model"] = (
                wanted if wanted in self._engine.model_names else self._engine.default_model
            )
        else:
            params.pop("model", None)
        super().__init__(**params)
        self._update()
        # Open on the last token, whose next token the model predicts (and where sampling
        # appends): query 0's row is a single bar at 1. A link's q (applied later) still wins.
        last = max(len(self.ids) - 1, 0)
        self.param.update(
            {k: last for k in ("query", "key") if k not in params},
        )

    # -- derived values ---------------------------------------------------------------------------
    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def config(self) -> dict[str, Any]:
        """The selected model's config (n_layer, n_head, block_size, ...), or {} without one."""
        if self._engine is None or self.model is None:
            return {}
        try:
            return self._engine.config(self.model)
        except EngineError:
            return {}

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    def outputs(self, *names: str) -> Forward:
        """The reading's forward pass with the named outputs (``q``, ``mlp_hidden``, ...; see
        models.contract), for the lessons that look inside a block: one more engine call,
        cached by the engine. Raises EngineError (its message says what to do) when there is
        no reading or the model file lacks one of them."""
        if self._engine is None or self.status != "ok":
            raise EngineError(self.message or "no text has been read")
        self._engine.require(self.model, names)
        return self._engine.run(self.model, self.ids, outputs=tuple(names))

    @param.depends("text", "model", watch=True)
    def _update(self) -> None:
        """Read the text with the model (models.reading); never raises."""
        if self._engine is None:
            self._set_derived(status="error", message=self._engine_error)
            return
        r = read_text(self._engine, self.model, self.text)
        if not r.ok:
            self._set_derived(status=r.status, message=r.message)
            return
        self._set_derived(
            status="ok",
            ids=r.ids,
            tokens=r.tokens,
            labels=r.labels,
            forward=r.forward,
            provider=r.provider,
            notice=self._notice(r.notices),
        )

    def _notice(self, reading: list[str] | None = None) -> str:
        """The reading's notices (kept until the next reading) and the link's, each once."""
        if reading is not None:
            self._reading_notices = list(reading)
        return " ".join([*getattr(self, "_reading_notices", []), *self._url_notices_text()])

    def _url_notices_text(self) -> list[str]:
        """What the link held that is not in use, each value named once (``apply_query``)."""
        # read with getattr: Parameterized.__init__ may call watchers before they are set
        bad, moved = getattr(self, "_bad", []), getattr(self, "_moved", [])
        said = [f"Ignored unusable link values: {', '.join(bad)}."] if bad else []
        if moved:
            said.append(f"Out of range in the link: {', '.join(moved)}.")
        return [" ".join(said)] if said else []

    def _set_derived(self, **values: Any) -> None:
        """Update the derived values together (one event per view), then keep the selection
        inside the new shapes."""
        defaults = dict(ids=[], tokens=[], labels=[], forward=None, message="", notice="")
        defaults.update(values)
        if defaults["notice"] == "" and self._url_notices_text():
            defaults["notice"] = self._notice([])
        clamp = self._clamped(len(defaults["ids"]))
        with param.parameterized.batch_call_watchers(self):
            self.param.update(**defaults, **clamp)

    def _clamped(self, n_tokens: int) -> dict[str, int]:
        """Selections that no longer exist (fewer tokens, smaller model) move to the last one."""
        cfg = self.config
        limits = {
            "layer": int(cfg.get("n_layer", 1)),
            "head": int(cfg.get("n_head", 1)),
            "query": max(n_tokens, 1),
            "key": max(n_tokens, 1),
        }
        return {k: n - 1 for k, n in limits.items() if getattr(self, k) > n - 1}

    @param.depends("layer", "head", "query", "key", watch=True)
    def _keep_in_range(self) -> None:
        if clamp := self._clamped(len(self.ids)):
            self.param.update(**clamp)

    @param.depends("query", watch=True)
    def _key_follows_query(self) -> None:
        # Under a causal mask a query sees keys up to itself only: keep the key visible.
        if self.key > self.query:
            self.key = self.query

    # -- helpers for views ------------------------------------------------------------------------
    def step_query(self, delta: int) -> None:
        """Move the selected query token by ``delta`` (keyboard arrows), staying in range."""
        if self.ids:
            self.query = min(max(self.query + delta, 0), len(self.ids) - 1)

    def options(self) -> dict[str, Any]:
        """Every lesson option's value (what a snapshot of this session starts from)."""
        return {name: getattr(self, name) for name in registry.option_names()}

    def step_lesson(self, delta: int) -> None:
        """Go to the next or previous lesson in the course, wrapping around."""
        lessons = list(self.param.lesson.objects)
        i = lessons.index(self.lesson) if self.lesson in lessons else 0
        self.lesson = lessons[(i + delta) % len(lessons)]

    # -- the URL ----------------------------------------------------------------------------------
    def apply_query(self, values: dict[str, Any]) -> None:
        """Apply URL values one by one, so one bad value (an unknown model, a negative layer)
        is reported and skipped instead of discarding the whole link."""
        bad, moved = [], []
        keys = url_keys()
        location = getattr(self, "_location", None)  # the link as it is now
        search = location.search if location is not None else ""
        written = dict(urllib.parse.parse_qsl(search.lstrip("?")))
        for name, value in values.items():
            key = keys.get(name, name)
            as_written = written.get(key, value)  # Panel reads "-1" as -1.0, "-1e9" as a number
            if _textual(self.param[name]) and key in written:
                value = as_written
            try:
                if name == "lesson" and isinstance(value, str):
                    value = registry.resolve(value) or value  # old names still link
                if isinstance(value, str) and not _textual(self.param[name]):
                    value = self.param[name].deserialize(value)
                self.param.update(**{name: value})
            except Exception:
                bad.append(f"{key}={as_written!s:.40}")
            else:
                if getattr(self, name) != value:  # kept in range (a layer the model lacks)
                    moved.append(f"{key}={as_written!s:.40} (using {getattr(self, name)})")
        # the link is read more than once (here, then as the browser reports it): each value
        # is named once
        self._bad = list(dict.fromkeys([*getattr(self, "_bad", []), *bad]))
        self._moved = list(dict.fromkeys([*getattr(self, "_moved", []), *moved]))
        if bad or moved:
            self.notice = self._notice()

    def sync_url(self, location) -> None:
        """Mirror the state in ``location``'s query string (``pn.state.location``), both ways."""
        self._location = location
        keys = url_keys()
        location.sync(self, keys, on_error=self.apply_query)
        # An option that is off (None, top-k's "off") leaves the link instead of reading
        # "topk=null" there: a fresh page starts with it off anyway.
        optional = [n for n in keys if self.param[n].allow_None and n != "model"]

        def drop_off(event) -> None:
            query = urllib.parse.parse_qsl(location.search.lstrip("?"))
            kept = [(k, v) for k, v in query if k != keys[event.name]]
            if event.new is None and len(kept) != len(query):
                location.search = "?" + urllib.parse.urlencode(kept)

        self.param.watch(drop_off, optional)

        # The address bar holds the values in use: a link's unusable or out-of-range values
        # are replaced (the notice says which), not kept until someone copies the link.
        def in_use(_event=None) -> None:
            fixed = self._query_in_use(location.search)
            if fixed != location.search:
                location.search = fixed

        location.param.watch(in_use, "search")
        in_use()

    def _query_in_use(self, search: str) -> str:
        """``search`` with each of the state's keys holding the value in use (written as
        Panel's location writes it); other keys are left as they are."""
        names = {key: name for name, key in url_keys().items()}
        query = []
        for key, written in urllib.parse.parse_qsl(search.lstrip("?"), keep_blank_values=True):
            name = names.get(key)
            if name is None:
                query.append((key, written))
                continue
            value = getattr(self, name)
            if value is None:
                continue  # an option that is off leaves the link (see drop_off)
            value = self.param[name].serialize(value)
            query.append((key, value if isinstance(value, str) else json.dumps(value)))
        return "?" + urllib.parse.urlencode(query) if query else ""


def _textual(p: param.Parameter) -> bool:
    """A parameter whose link value is its text as written (the text, or a choice among
    strings such as fill=-inf, which JSON would read as a number or refuse)."""
    if isinstance(p, param.String):
        return True
    return isinstance(p, param.Selector) and all(isinstance(o, str) for o in p.objects)


def state_class() -> type[SessionState]:
    """The session state with every registered lesson's options composed in."""
    return _state_class(registry.composed_options())


@functools.cache
def _state_class(options: type) -> type[SessionState]:
    return type("AnatomyState", (SessionState, options), {"__doc__": SessionState.__doc__})


AnatomyState = state_class()
