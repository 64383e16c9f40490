"""Tests of dashboard/views/jobs.py: progress, cancellation by a newer job, errors surfaced,
once per key. Threads are gated with events, so no test depends on timing."""

from __future__ import annotations

import threading

import pytest

from dashboard.views.jobs import Cancelled, Job, Latest, Once


def _gated(steps: int, gate: threading.Event, reached: threading.Event | None = None):
    """A job body: ``steps`` progress calls, waiting at the gate after the first."""

    def fn(progress):
        progress(0, steps)
        if reached is not None:
            reached.set()
        gate.wait(10)
        for i in range(1, steps + 1):
            progress(i, steps)
        return f"done {steps}"

    return fn


def test_progress_is_readable_while_running_and_the_result_arrives():
    gate, reached = threading.Event(), threading.Event()
    job = Job(_gated(4, gate, reached), total=4)
    assert reached.wait(10)
    assert job.progress == (0, 4) and job.fraction == 0.0 and not job.done()
    gate.set()
    assert job.future.result(timeout=10) == "done 4"
    assert job.progress == (4, 4) and job.fraction == 1.0 and job.done()


def test_a_newer_job_cancels_the_older_through_its_progress():
    latest = Latest()
    gate, reached = threading.Event(), threading.Event()
    first = latest.start(_gated(3, gate, reached), total=3)
    assert reached.wait(10)
    second = latest.start(lambda progress: "second")
    assert first.cancelled.is_set() and latest.job is second
    gate.set()
    first.join(10)
    with pytest.raises(Cancelled):
        first.future.result(timeout=10)
    assert first.progress == (0, 3)  # it stopped at its next progress call
    second.join(10)
    assert latest.take() is second and latest.job is None
    assert second.future.result() == "second"


def test_take_leaves_a_running_job_alone():
    latest = Latest()
    gate = threading.Event()
    job = latest.start(_gated(1, gate))
    assert latest.take() is None and latest.job is job
    gate.set()
    job.join(10)
    assert latest.take() is job


def test_errors_are_surfaced_in_the_future():
    def broken(progress):
        raise ValueError("the text is empty")

    job = Job(broken)
    job.join(10)
    with pytest.raises(ValueError, match="the text is empty"):
        job.future.result()
    once = Once()
    future = once.get("bad", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        future.result(timeout=10)
    assert once.get("bad", lambda: 1) is future  # the failure is kept, not retried


def test_once_per_key_shared_by_every_caller():
    once = Once()
    calls = []
    gate = threading.Event()

    def compute(key):
        def fn():
            calls.append(key)
            gate.wait(10)
            return key * 2

        return fn

    a = once.get(1, compute(1))
    threads = [threading.Thread(target=lambda: once.get(1, compute(1))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    b = once.get(2, compute(2))
    assert once.get(1, compute(1)) is a and b is not a
    gate.set()
    assert a.result(timeout=10) == 2 and b.result(timeout=10) == 4
    assert sorted(calls) == [1, 2]
    once.clear()
    assert once.get(1, compute(1)) is not a
