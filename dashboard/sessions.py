"""Browser sessions on one server process: counted, freed when their tab closes, idle ones
discarded.

Every page a browser opens is a Bokeh server session holding one :class:`AnatomyState`, its
views and their plots. Bokeh discards a session once no browser has been connected to it for
``UNUSED_LIFETIME_S`` (it checks every ``CHECK_UNUSED_S``); then Panel calls the callbacks
registered with ``pn.state.on_session_destroyed``. Ours forgets the session and, shortly after
the last of a burst of closings (or, while others are open, once enough have closed), collects
the garbage and hands freed heap back to the operating system, so that a server's memory
returns to where it was after a class leaves.

:func:`stats` says how many sessions this process holds and how many states are still alive
(weak references: a state that outlives its session is a leak); :class:`StatsHandler` serves
it as JSON at ``STATS_PATH`` for the load benchmark and the tests. The counts are not
secret: no text, no ids.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import json
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import panel as pn
from panel.io.document import hold
from panel.io.state import set_curdoc
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from dashboard.state import clear_engine_cache, engine_cache_bytes

# Bokeh's defaults are 15 s and 17 s; a classroom's tabs close in bursts, so check more often.
UNUSED_LIFETIME_S = 15.0
CHECK_UNUSED_S = 5.0
TRIM_DELAY_S = 1.0  # collect once per burst of closings, not once per session
COLLECT_AFTER = 8  # while pages are open, closed pages that justify a full collection
STATS_PATH = "/anatomy-sessions.json"
CHANGE_DELAY_MS = 0  # before a browser change is applied (Panel's default: 50 ms)

_LOCK = threading.Lock()
_STATES: dict[str, weakref.ref] = {}  # live session id -> its state
_CLOSED: list[weakref.ref] = []  # states of destroyed sessions, not yet through a full collection
_GONE: list[weakref.ref] = []  # states still reachable after a full collection: leaks
_COUNTS = {"opened": 0, "closed": 0}
_TRIM: dict[str, Any] = {"pending": False, "last": 0.0}


def server_options(
    unused_lifetime_s: float = UNUSED_LIFETIME_S, check_unused_s: float = CHECK_UNUSED_S
) -> dict[str, Any]:
    """Keyword arguments for ``pn.serve``: idle-session cleanup and the stats endpoint.
    Also makes the server's websockets send without delay (:func:`no_delay_websockets`)."""
    no_delay_websockets()
    return dict(
        unused_session_lifetime_milliseconds=int(1000 * unused_lifetime_s),
        check_unused_sessions_milliseconds=int(1000 * check_unused_s),
        extra_patterns=[(STATS_PATH, StatsHandler)],
    )


def no_delay_websockets() -> None:
    """Let the server's websockets send each message as soon as it is written (TCP_NODELAY).

    Bokeh writes a message as three websocket frames (header, metadata, content). With
    Nagle's algorithm on, the kernel holds back the later frames until the browser has
    acknowledged the first, and a receiver may delay its acknowledgement by up to 40 ms: an
    answer that follows the server's "OK" to the browser's change waited for it in the
    socket. Tornado recommends ``set_nodelay(True)`` for interactive websockets; Bokeh and
    Panel leave it off. Measured (one session typing one key at a time, idle server): the
    heatmap's answer arrived in 22 ms instead of 44 ms. Applies to every websocket the server
    opens after the call (once is enough; later calls do nothing).
    """
    from panel.io.server import WSHandler

    if getattr(WSHandler.open, "_anatomy_nodelay", False):
        return
    opened = WSHandler.open

    @functools.wraps(opened)
    def open_without_delay(self, *args, **kwargs):
        self.set_nodelay(True)
        return opened(self, *args, **kwargs)

    open_without_delay._anatomy_nodelay = True
    WSHandler.open = open_without_delay


def register(state: object) -> str | None:
    """Count ``state`` as the current server session's; forget it when the session ends.

    Outside a server session (tests, the static export) nothing happens and None is returned.
    """
    doc = pn.state.curdoc
    ctx = getattr(doc, "session_context", None) if doc is not None else None
    if ctx is None:
        return None
    sid = ctx.id
    with _LOCK:
        _STATES[sid] = weakref.ref(state)
        _COUNTS["opened"] += 1
    pn.state.on_session_destroyed(_destroyed)
    batch_changes(doc)
    return sid


# Panel's coroutines that apply one browser change (a widget value, a tap) to the session.
_CHANGE_COROUTINES = ("_change_coroutine", "_event_coroutine")


def batch_changes(doc) -> None:
    """Apply each browser change of this session at once, inside one Panel ``hold``,
    recomputing the document's set of models at most once.

    At once: Panel waits 50 ms (``Syncable._debounce``) before applying a change, to gather
    the ones that arrive together. That is 50 ms added to every answer a student sees, and it
    gathers nothing here: a change waiting its turn on a busy server already absorbs the next
    ones to the same widget (Panel merges them while one is pending), and the hold sends a
    change's effects as one message. Measured (one session typing one key at a time, idle
    server): the heatmap's answer arrived in 22 ms instead of 62 ms.

    One keystroke updates a dozen plot properties; whenever one of them holds Bokeh models
    (a new axis ticker, a layout's children), Bokeh walks the whole document to recompute its
    set of models: tens of ms on a page of a few hundred models, several times per keystroke.
    Deferred, the walk happens once per change and only if needed, and the held events leave
    together. Measured (benchmarks/load.py, 40 sessions, two workers on two cores): p95 683 ms
    without, 256 ms with.

    It leans on Bokeh internals (the model manager's freeze counter); where they are missing
    it does nothing, and tests/test_load.py fails on a Bokeh that no longer has them.
    """
    if not batching_supported(doc):
        return
    add = doc.add_timeout_callback

    def add_timeout_callback(callback, timeout_milliseconds):
        func = getattr(callback, "func", None)
        if getattr(func, "__name__", "") not in _CHANGE_COROUTINES:
            return add(callback, timeout_milliseconds)

        @functools.wraps(callback)
        async def held():
            with set_curdoc(doc), _recompute_once(doc.models), hold(doc):
                await callback()

        return add(held, CHANGE_DELAY_MS)

    doc.add_timeout_callback = add_timeout_callback


def batching_supported(doc) -> bool:
    """Whether this Bokeh's document has what :func:`batch_changes` relies on."""
    models = getattr(doc, "models", None)
    return isinstance(getattr(models, "_freeze_count", None), int) and callable(
        getattr(models, "invalidate", None)
    )


@contextmanager
def _recompute_once(models) -> Iterator[None]:
    """Like Bokeh's ``models.freeze()`` (nested freezes, e.g. Panel's, do not recompute),
    except that on exit the document's models are recomputed only if something asked for
    it (``invalidate``): a change that touched no model reference walks nothing."""
    dirty = False

    def invalidate() -> None:
        nonlocal dirty
        dirty = True

    models.invalidate = invalidate  # shadows the method for this change only
    models._freeze_count += 1  # Bokeh's own counter: nested freezes then skip their walk
    try:
        yield
    finally:
        models._freeze_count -= 1
        del models.invalidate
        if dirty:
            models.invalidate()


def settle_objects() -> None:
    """Exempt the objects alive now from Python's full garbage collections, until a session
    closes (:func:`release_memory` then collects everything once and settles the rest again).

    Call it right after building something long-lived: a page, a lesson's first view. A full
    collection walks every object the process holds; with twenty pages per worker that is
    ~600,000 objects and a 300-550 ms pause every few seconds, in which every session of the
    worker waits (measured during benchmarks/load.py: 18 such pauses in 76 s, 5.3 s in all).
    Pages live until their tab closes, so walking them again finds nothing. Young garbage is
    collected first so that it is not exempted. Outside a server session it does nothing.
    """
    doc = pn.state.curdoc
    if doc is None or getattr(doc, "session_context", None) is None:
        return
    gc.collect(1)
    gc.freeze()


def _destroyed(session_context) -> None:
    with _LOCK:
        ref = _STATES.pop(session_context.id, None)
        if ref is None:
            return
        _COUNTS["closed"] += 1
        _CLOSED.append(ref)
        if _TRIM["pending"]:
            return
        _TRIM["pending"] = True
    IOLoop.current().call_later(TRIM_DELAY_S, release_memory)


def release_memory() -> bool:
    """Collect the closed pages (sessions are full of reference cycles) and give free heap
    pages back to the operating system (glibc's ``malloc_trim``; elsewhere a no-op).

    A full collection walks every object of the process, the open pages too: a pause of up to
    half a second for everyone on this worker. So while pages are open it waits until the
    closed ones number ``COLLECT_AFTER`` and at least as many as the open ones (the work per
    closed page then stays bounded), and it always runs once the last page has closed. With
    several workers this matters at a class's start: a page's first request and its websocket
    may reach different workers (Bokeh's sessions live in one process), and the page built for
    the request is dropped unused a few seconds later, about half of them with two workers.
    Returns whether it collected."""
    with _LOCK:
        _TRIM["pending"] = False
        live = len(_STATES)
        waiting = sum(1 for r in _CLOSED if r() is not None)
    if live and waiting < max(COLLECT_AFTER, live):
        return False
    if not live:  # the class has left: its cached forward passes help nobody
        clear_engine_cache()
    gc.unfreeze()  # the closed sessions' objects are among the frozen ones (settle_objects)
    gc.collect()
    gc.freeze()  # the survivors: the other sessions' pages, still in use
    _malloc_trim()
    with _LOCK:
        _GONE[:] = [r for r in _GONE + _CLOSED if r() is not None]
        _CLOSED.clear()
        _TRIM["last"] = time.time()
    return True


@functools.cache
def _libc_malloc_trim():
    """glibc's ``malloc_trim``, or None. Looked up once: ``find_library`` runs a subprocess,
    which has no place on the event loop at every class's end."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


def _malloc_trim() -> None:
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)


def stats() -> dict[str, int]:
    """This process's sessions: live now, opened and closed since start, ``leaked``: states
    of closed sessions still reachable after a full collection, and ``waiting``: closed ones
    not through a full collection yet (see :func:`release_memory`)."""
    with _LOCK:
        return {
            "pid": os.getpid(),
            "live": len(_STATES),
            "opened": _COUNTS["opened"],
            "closed": _COUNTS["closed"],
            "leaked": sum(1 for r in _GONE if r() is not None),
            "waiting": sum(1 for r in _CLOSED if r() is not None),  # closed, not collected yet
            "collecting": int(_TRIM["pending"]),
            "cache_kib": engine_cache_bytes() // 1024,  # cached forward passes
            "settled": gc.get_freeze_count(),  # objects exempt from full collections
        }


def rss_kib(pid: int | None = None) -> int:
    """Resident memory of a process in KiB, from /proc (Linux); 0 where unavailable."""
    try:
        with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class StatsHandler(RequestHandler):
    """``GET STATS_PATH``: :func:`stats` and this process's resident memory, as JSON."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps({**stats(), "rss_kib": rss_kib()}))
