"""A classroom in miniature: real websocket sessions against a real server, then freed.

The short version of ``python -m benchmarks.load``: a few sessions for a few seconds, each
typing, picking heads and sliding the temperature through the Bokeh websocket protocol,
exactly as a browser tab does. Asserted: no errors anywhere (client or server log), every
kind of update answered, and after the tabs close every session is destroyed and its state
collected. No timing is asserted; the figures are the benchmark's job.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from benchmarks import load
from dashboard.sessions import STATS_PATH


@pytest.fixture(scope="module")
def server():
    # a short unused-session lifetime, so that closed tabs are freed within the test
    with load.server(num_procs=1, lifetime=1.0) as (url, proc, log):
        yield url, proc, log


def test_short_load_has_no_errors_and_frees_every_session(server):
    url, _proc, log = server
    before = load.fetch_stats(url)

    async def scenario():
        result = await load.run_load(url, n_sessions=3, seconds=5)
        return result, await load.wait_freed(url, timeout=30)

    result, freed = asyncio.run(scenario())
    assert result["errors"] == 0, result["error_samples"]
    assert result["sessions"] == 3
    kinds = result["latency_by_kind_ms"]
    assert kinds["type"]["n"] >= 3 * 5, kinds  # each session typed for five seconds
    assert load.log_errors(log) == []
    # every page opened was destroyed after its websocket closed...
    assert freed["live"] == 0 and not freed.get("timed_out"), freed
    assert freed["closed"] - before["closed"] == freed["opened"] - before["opened"] >= 3
    # ...and its AnatomyState collected: no state of a closed session is still reachable
    # (at most the very last one, which Panel's current-document context may still name)
    assert freed["leaked"] <= 1, freed
    # and with the class gone, the engine's cached forward passes went too
    assert freed["cache_kib"] == 0, freed


def test_pages_are_settled_and_still_freed(server):
    """Open pages are exempt from full garbage collections (sessions.settle_objects), and
    that never keeps a closed page alive: the states of closed tabs are collected."""
    url, _proc, _log = server
    before = load.fetch_stats(url)

    async def scenario():
        sessions = [load.WsSession(url) for _ in range(2)]
        for s in sessions:
            await s.open()
        while_open = await asyncio.get_running_loop().run_in_executor(None, load.fetch_stats, url)
        for s in sessions:
            await s.close()
        return while_open, await load.wait_freed(url, timeout=30)

    while_open, freed = asyncio.run(scenario())
    assert while_open["live"] == 2
    # two more pages' objects were exempted while they were open
    assert while_open["settled"] > before["settled"], (before, while_open)
    assert freed["live"] == 0 and not freed.get("timed_out"), freed
    assert freed["leaked"] <= 1, freed
    assert freed["settled"] < while_open["settled"], (while_open, freed)


def test_stats_endpoint_says_nothing_private(server):
    url, _proc, _log = server
    with urllib.request.urlopen(url.rstrip("/") + STATS_PATH, timeout=5) as r:
        stats = json.loads(r.read())
        assert r.headers["Content-Type"].startswith("application/json")
    assert set(stats) == {
        "pid", "live", "opened", "closed", "leaked", "collecting", "cache_kib", "settled",
        "waiting", "rss_kib",
    }  # fmt: skip
    assert all(isinstance(v, int) for v in stats.values())


def test_the_command_line_server_runs_on_the_c_allocator(server):
    """python panel_serve.py re-executes itself once with PYTHONMALLOC=malloc (its docstring
    says why), keeping its process id and options."""
    url, proc, _log = server
    environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    assert b"PYTHONMALLOC=malloc" in environ
    assert b"--session-lifetime" in cmdline and b"panel_serve.py" in cmdline[1]
    assert load.fetch_stats(url)["pid"] == proc.pid


def test_several_worker_processes_serve_sessions():
    """--num-procs 2: two forked workers answer pages and websockets (each opens its own ONNX
    Runtime session after the fork; the parent never runs the model)."""
    with load.server(num_procs=2, lifetime=1.0) as (url, proc, log):
        pids = {load.fetch_stats(url)["pid"] for _ in range(30)}
        assert proc.pid not in pids  # the parent only supervises
        assert load.tree_rss_kib(proc.pid) > load.tree_rss_kib(next(iter(pids)))

        async def scenario():
            return await load.run_load(url, n_sessions=4, seconds=3)

        result = asyncio.run(scenario())
        assert result["errors"] == 0, result["error_samples"]
        assert result["latency_by_kind_ms"]["type"]["n"] >= 4
        assert load.log_errors(log) == []


def test_this_bokeh_supports_batched_changes():
    # dashboard/sessions.py leans on Bokeh internals for its 2-3x lower latency under load:
    # a Bokeh without them must fail here, not silently serve a class slowly
    from bokeh.document import Document

    from dashboard.sessions import batching_supported

    assert batching_supported(Document())


def test_closed_pages_wait_for_enough_of_them_while_others_are_open(monkeypatch):
    """release_memory's full collection pauses every open page of the worker: while pages
    are open it waits for enough closed ones; when the last page closes it always runs, and
    what it collects is really gone."""
    import gc
    import weakref

    from dashboard import sessions

    class Page:  # a closed page: unreachable, but only through a reference cycle
        def __init__(self):
            self.me = self

    monkeypatch.setattr(sessions, "_STATES", {})
    monkeypatch.setattr(sessions, "_CLOSED", [])
    monkeypatch.setattr(sessions, "_GONE", [])
    open_pages = [Page() for _ in range(10)]
    sessions._STATES.update({str(i): weakref.ref(p) for i, p in enumerate(open_pages)})

    def close(n: int) -> None:
        for _ in range(n):
            page = Page()
            sessions._CLOSED.append(weakref.ref(page))
            del page

    gc.disable()  # no automatic collection behind the test's back
    try:
        close(3)
        assert sessions.release_memory() is False  # 3 closed, 10 open: not worth a pause
        assert sessions.stats()["waiting"] == 3
        close(7)
        assert sessions.release_memory() is True  # as many closed as open
        stats = sessions.stats()
        assert stats["waiting"] == 0 and stats["leaked"] == 0
        close(2)
        sessions._STATES.clear()  # the class has left
        assert sessions.release_memory() is True
        assert sessions.stats()["waiting"] == 0
    finally:
        gc.enable()
        gc.unfreeze()


def test_browser_changes_are_applied_without_panels_wait():
    """Panel schedules each browser change 50 ms later (its debounce); batch_changes applies
    it at once, and leaves every other timeout alone."""
    import functools

    import panel as pn
    from bokeh.document import Document

    from dashboard.sessions import CHANGE_DELAY_MS, batch_changes

    doc = Document()
    scheduled = []
    doc.add_timeout_callback = lambda callback, ms: scheduled.append((callback, ms))
    doc._session_context = lambda: object()  # as in a server session
    batch_changes(doc)
    box = pn.widgets.TextInput()
    assert box._debounce > 0  # Panel's own wait, which this removes
    # what Panel does when a browser changes the box
    box._server_change(doc, "ref", None, "value_input", "", "typed")
    assert len(scheduled) == 1
    callback, ms = scheduled[0]
    assert ms == CHANGE_DELAY_MS == 0
    assert callback.__wrapped__.func.__name__ == "_change_coroutine"
    # other timeouts keep theirs
    doc.add_timeout_callback(functools.partial(print), 250)
    assert scheduled[-1][1] == 250


NODELAY_PROBE = """
import asyncio, gc, json, socket, time
import panel as pn
from panel.io.server import WSHandler
from benchmarks import load
from dashboard import sessions
from dashboard.app import create_app

port = load.free_port()
server = pn.serve({"/": create_app}, port=port, address="127.0.0.1", show=False,
                  threaded=True, start=True, **sessions.server_options())
for _ in range(300):
    try:
        load.fetch_stats(f"http://127.0.0.1:{port}/")
        break
    except OSError:
        time.sleep(0.1)

async def probe():
    s = load.WsSession(f"http://127.0.0.1:{port}/")
    await s.open()
    handlers = [o for o in gc.get_objects() if isinstance(o, WSHandler) and o.ws_connection]
    flags = [h.ws_connection.stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
             for h in handlers]
    await s.close()
    return flags

print(json.dumps(asyncio.run(probe())))
server.stop()
"""


def test_the_servers_websockets_send_without_delay():
    """Every websocket the server opens has Nagle's algorithm off (TCP_NODELAY), so the
    frames of an answer are not held back waiting for the browser's acknowledgement. Run in
    its own process: a server in this one would leave Panel's global state behind."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", NODELAY_PROBE],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    flags = json.loads(out.stdout.strip().splitlines()[-1])
    assert flags and all(flags), flags


def test_no_process_wide_busy_spinner():
    # Panel's busy indicator is shared by every session of a process: each event would
    # update all of them (quadratic in the class size)
    from dashboard.app import create_app

    assert create_app().busy_indicator is None
