"""Background work for the views: a cancellable job with progress, and once-per-key futures.

A view must never block Tornado's event loop, so long computations (training a tokenizer,
training ``tokenizers`` for a comparison) run in daemon threads and hand back a
:class:`~concurrent.futures.Future`; the view polls it from a periodic callback. Two shapes:

- :class:`Job`: one run of ``fn(progress)`` for one session, with its progress readable at any
  time and cancelled through that same progress callback (the only place a pure function
  lets us stop it); :class:`Latest` keeps one job per purpose, a newer one cancelling the older;
- :class:`Once`: futures shared by every session of the process, one per key, computed once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised from a job's progress callback once the job is cancelled; its future holds it."""


class Job:
    """``fn(progress)`` running in a daemon thread; ``progress(done, total)`` is recorded in
    :attr:`progress` and raises :class:`Cancelled` once :meth:`cancel` was called.

    The outcome is :attr:`future`: ``fn``'s result, or the exception it raised (``Cancelled``
    when it was cancelled in time)."""

    def __init__(self, fn: Callable[[Progress], Any], total: int = 0, name: str = "job"):
        self.progress: tuple[int, int] = (0, total)
        self.cancelled = threading.Event()
        self.future: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _tick(self, done: int, total: int) -> None:
        if self.cancelled.is_set():
            raise Cancelled
        self.progress = (done, total)

    def _run(self, fn: Callable[[Progress], Any]) -> None:
        try:
            self.future.set_result(fn(self._tick))
        except BaseException as err:  # noqa: BLE001 - handed to whoever reads the future
            self.future.set_exception(err)

    @property
    def fraction(self) -> float:
        """Progress in 0..1 (0 while the total is unknown)."""
        done, total = self.progress
        return done / total if total > 0 else 0.0

    def done(self) -> bool:
        return self.future.done()

    def cancel(self) -> None:
        """Ask the job to stop: its next progress call raises :class:`Cancelled`."""
        self.cancelled.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


class Latest:
    """At most one live :class:`Job` (e.g. a session's training on pasted text): starting a
    new one cancels the one before, so only the newest result is ever taken."""

    def __init__(self) -> None:
        self.job: Job | None = None

    def start(self, fn: Callable[[Progress], Any], total: int = 0, name: str = "job") -> Job:
        self.cancel()
        self.job = Job(fn, total, name)
        return self.job

    def cancel(self) -> None:
        """Cancel the current job, if any, and forget it."""
        if self.job is not None:
            self.job.cancel()
            self.job = None

    def take(self) -> Job | None:
        """The job if it has finished (and forget it), else None."""
        job = self.job
        if job is not None and job.done():
            self.job = None
            return job
        return None


class Once:
    """Futures computed once per key for the whole process, each in a daemon thread.

    ``get(key, fn)`` starts ``fn()`` the first time ``key`` is asked for and returns the same
    future to every later caller; a failure is kept in its future like a result."""

    def __init__(self, name: str = "once"):
        self.name = name
        self._futures: dict[Hashable, Future] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, fn: Callable[[], Any]) -> Future:
        with self._lock:
            if key in self._futures:
                return self._futures[key]
            future: Future = Future()
            self._futures[key] = future

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as err:  # noqa: BLE001 - handed to whoever reads the future
                future.set_exception(err)

        threading.Thread(target=run, name=self.name, daemon=True).start()
        return future

    def clear(self) -> None:
        """Forget every future (tests)."""
        with self._lock:
            self._futures.clear()
