"""Forty students on one server: real websocket sessions typing, clicking and sliding at once.

    python -m benchmarks.load [--sessions 40] [--seconds 120] [--url URL] [--num-procs 2]

Starts ``panel_serve.py`` on 127.0.0.1 (or uses ``--url``), opens N sessions the way a browser
does (``GET /`` for the page and its session token, then the Bokeh websocket protocol: pull
the document, send widget changes as ``PATCH-DOC`` events, read the server's patches). Each
session, until the time is up: types a sentence at four keystrokes a second, moves the layer
and head pickers, switches to the sampling lesson and moves the temperature slider, once a
second, and back. An *update's latency* is the time from sending a change to the arrival of
the server's answer to it: the heatmap's token labels spelling the typed text (or a later
keystroke of it), the heatmap's title naming the new layer and head, the next-token chart's
title naming the new temperature. Errors: server ERROR messages, closed websockets, updates
not answered within 10 s, and ERROR lines in the server's log.

Then a fairness check: one session's latency alone, and again while another session tries to
flood the server with 1,000 updates a second of 10,000-character texts (the ratio is printed,
and the rate the flood achieved: the server reads it only as fast as it answers it).

Server memory (VmRSS from /proc, the server and its workers): ``before`` is measured after
warm-up sessions (two per worker process) typed the same sentences and closed (lazy imports and
the engine's bounded forward-pass cache are then in place in every worker), ``peak`` during
the run, ``after`` once every session was freed (the server's /anatomy-sessions.json says none
is live and none leaked).

``--waves N`` runs N classes one after another (the later ones for at most 20 s) and records
the memory after each: growth from class to class would be a leak; a flat line means nothing
accumulates.

Goal (issue 8, two cores): 40 sessions for 2 minutes, zero errors, p95 <= 500 ms, memory after
within 10% of before. Prints one summary line; writes benchmarks/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from dashboard.sessions import STATS_PATH, rss_kib

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "load.json"
SENTENCES = [
    "The cat sat on the mat.",
    "Attention is all you need.",
    "Return the number of items in the list.",
    "A student types a sentence.",
    "If the file does not exist, an error is raised.",
    "Every head reads the same tokens.",
]
KEY_INTERVAL_S = 0.25  # four keystrokes a second
MOVE_INTERVAL_S = 1.0  # a control moved once a second
ANSWER_TIMEOUT_S = 10.0

TOKEN = re.compile(r'"token"\s*:\s*"([^"]+)"')
Event = dict[str, Any]


class SessionError(RuntimeError):
    """The server refused, closed or failed a session."""


def walk_models(value: Any) -> Iterator[dict]:
    """Every serialised model (``{"type": "object", "id": ..., "attributes": ...}``) in a
    document or patch, at any depth."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if v.get("type") == "object" and "id" in v:
                yield v
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def plain(value: Any) -> Any:
    """Bokeh's wire encoding of a dict (``{"type": "map", "entries": [...]}``) as a dict."""
    if isinstance(value, dict) and value.get("type") == "map":
        return {k: plain(v) for k, v in value.get("entries", [])}
    return value


class WsSession:
    """One dashboard session over the websocket, as a browser would hold it."""

    def __init__(self, base_url: str, origin: str | None = None, query: str = ""):
        self.base_url = base_url.rstrip("/") + "/"
        self.origin = origin or self.base_url.rstrip("/")
        self.query = query
        self.models: dict[str, dict] = {}  # id -> {"name": type, "attributes": {...}}
        self.errors: list[str] = []  # ERROR messages from the server, unexpected closes
        self.received = 0  # PATCH-DOC messages received
        self.events: list[Event] | None = None  # set to [] to keep every incoming event
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._waiters: list[tuple[Callable[[Event], bool], asyncio.Future]] = []
        self._closing = False
        self._doc: asyncio.Future | None = None
        self._ack: asyncio.Future | None = None

    # -- opening and closing ------------------------------------------------------------------
    async def open(self, timeout: float = 60.0) -> float:
        """Load the page, connect and pull the document; seconds it took."""
        t0 = time.perf_counter()
        url = self.base_url + (f"?{self.query}" if self.query else "")
        try:
            page = await AsyncHTTPClient().fetch(url, request_timeout=timeout)
        except HTTPClientError as err:
            raise SessionError(f"GET {url}: {err}") from None
        match = TOKEN.search(page.body.decode("utf-8", "replace"))
        if not match:
            raise SessionError(f"GET {url}: no session token in the page")
        await self.connect(match.group(1), timeout)
        return time.perf_counter() - t0

    async def connect(self, token: str, timeout: float = 60.0) -> None:
        ws_url = self.base_url.replace("http", "ws", 1) + "ws"
        request = HTTPRequest(ws_url, headers={"Origin": self.origin}, request_timeout=timeout)
        self._ws = await websocket_connect(
            request, subprotocols=["bokeh", token], max_message_size=64 * 2**20
        )
        # as browsers do (Chromium sets TCP_NODELAY on every socket): without it, the second
        # and third frames of each message waited for the server's delayed acknowledgement
        self._ws.protocol.set_nodelay(True)
        loop = asyncio.get_running_loop()
        self._ack, self._doc = loop.create_future(), loop.create_future()
        self._reader = asyncio.create_task(self._read_loop())
        # as the browser does: nothing is sent before the server's ACK (before it, the server
        # has no receiver for this connection yet)
        await asyncio.wait_for(self._ack, timeout)
        await self._send("PULL-DOC-REQ", {})
        doc = await asyncio.wait_for(self._doc, timeout)
        for m in walk_models(doc):
            self._index(m)
        # the page has rendered: Panel runs its on-load callbacks
        ready = {
            "type": "event",
            "name": "document_ready",
            "values": {"type": "map", "entries": []},
        }
        await self._send(
            "PATCH-DOC",
            {"events": [{"kind": "MessageSent", "msg_type": "bokeh_event", "msg_data": ready}]},
        )

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            self._ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._reader.cancel()

    # -- the document -------------------------------------------------------------------------
    def _index(self, m: dict) -> None:
        known = self.models.setdefault(m["id"], {"name": m.get("name"), "attributes": {}})
        known["attributes"].update(m.get("attributes") or {})

    def find(self, type_name: str | None = None, **where: Any) -> list[str]:
        """Ids of the models of ``type_name`` (the class name, e.g. ``"TextAreaInput"``)
        whose attributes match ``where``; ``css_classes=x`` matches a model that has class x,
        ``labels=x`` one whose labels include x."""
        found = []
        for mid, m in self.models.items():
            if type_name and (m["name"] or "").rsplit(".", 1)[-1] != type_name:
                continue
            attrs = m["attributes"]
            ok = True
            for key, want in where.items():
                have = attrs.get(key)
                if key in ("css_classes", "labels"):
                    ok = isinstance(have, list) and want in have
                else:
                    ok = have == want
                if not ok:
                    break
            if ok:
                found.append(mid)
        return found

    def named(self, name: str) -> str:
        """The id of the newest model whose Bokeh ``name`` is ``name`` (e.g.
        "heatmap-labels"): the newest, should a name occur twice."""
        ids = [mid for mid, m in self.models.items() if m["attributes"].get("name") == name]
        if not ids:
            raise SessionError(f"no model named {name!r} in the document")
        return ids[-1]

    def children_of(self, mid: str) -> list[str]:
        """Ids of a layout's children, in order."""
        kids = self.models[mid]["attributes"].get("children") or []
        return [k["id"] for k in kids if isinstance(k, dict) and "id" in k]

    # -- changes ------------------------------------------------------------------------------
    async def change(self, mid: str, attr: str, value: Any) -> float:
        """Send one widget change, as a browser does; returns the time it was sent."""
        event = {"kind": "ModelChanged", "model": {"id": mid}, "attr": attr, "new": value}
        self.models.get(mid, {}).get("attributes", {})[attr] = value
        t = time.perf_counter()
        await self._send("PATCH-DOC", {"events": [event]})
        return t

    def expect(self, predicate: Callable[[Event], bool]) -> asyncio.Future:
        """A future resolved with the arrival time of the first incoming event matching
        ``predicate`` (set it up before sending the change it answers)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, fut))
        return fut

    # -- the wire -----------------------------------------------------------------------------
    async def _send(self, msgtype: str, content: dict) -> None:
        header = {"msgid": uuid.uuid4().hex, "msgtype": msgtype}
        for part in (header, {}, content):
            await self._ws.write_message(json.dumps(part))

    async def _read_loop(self) -> None:
        try:
            while True:
                header = await self._ws.read_message()
                if header is None:
                    break
                header = json.loads(header)
                await self._ws.read_message()  # metadata
                content = json.loads(await self._ws.read_message())
                for _ in range(2 * header.get("num_buffers", 0)):  # buffer header + payload
                    await self._ws.read_message()
                self._handle(header["msgtype"], content)
        except Exception as err:  # a broken stream is the session's error, not the loop's
            self.errors.append(f"reader: {err!r}")
        if not self._closing:
            self.errors.append(f"websocket closed by the server ({self._ws.close_code})")
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(SessionError("websocket closed"))
        for fut in (self._ack, self._doc):
            if fut is not None and not fut.done():
                fut.set_exception(SessionError("websocket closed before the document"))

    def _handle(self, msgtype: str, content: dict) -> None:
        now = time.perf_counter()
        if msgtype == "ACK" and self._ack is not None and not self._ack.done():
            self._ack.set_result(now)
        elif msgtype == "PULL-DOC-REPLY" and self._doc is not None and not self._doc.done():
            self._doc.set_result(content["doc"])
        elif msgtype == "ERROR":
            self.errors.append(f"server error: {content.get('text', content)!s:.300}")
        elif msgtype == "PATCH-DOC":
            self.received += 1
            events = content.get("events", [])
            for m in walk_models(events):
                self._index(m)
            if self.events is not None:
                self.events.extend(events)
            for ev in events:
                self._apply(ev)
                for predicate, fut in self._waiters:
                    if not fut.done() and predicate(ev):
                        fut.set_result(now)
            self._waiters = [(p, f) for p, f in self._waiters if not f.done()]

    def _apply(self, ev: Event) -> None:
        """Keep the local copy of changed attributes (layouts' children, texts)."""
        mid = (ev.get("model") or {}).get("id")
        if ev.get("kind") == "ModelChanged" and mid in self.models:
            self.models[mid]["attributes"][ev["attr"]] = ev.get("new")


def changed(mid: str, attr: str | None = None) -> Callable[[Event], bool]:
    """Predicate: an event that changes model ``mid`` (``attr``, if given)."""

    def match(ev: Event) -> bool:
        return (ev.get("model") or {}).get("id") == mid and attr in (None, ev.get("attr"))

    return match


def event_data(ev: Event) -> dict:
    """The new columns of a ColumnDataSource change (ModelChanged or ColumnDataChanged)."""
    return plain(ev.get("new") if ev.get("kind") == "ModelChanged" else ev.get("data")) or {}


def text_changed(prefix: str) -> Callable[[Event], bool]:
    """Predicate: any model's ``text`` set to a string starting with ``prefix`` (titles,
    HTML panes)."""

    def match(ev: Event) -> bool:
        new = ev.get("new")
        return ev.get("attr") == "text" and isinstance(new, str) and new.startswith(prefix)

    return match


# -- one student ------------------------------------------------------------------------------
@dataclass
class Tally:
    """Update latencies by kind, and errors, over every session."""

    latency: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, kind: str, seconds: float) -> None:
        self.latency.setdefault(kind, []).append(seconds)

    def all(self) -> np.ndarray:
        return np.array([x for xs in self.latency.values() for x in xs])


def spelled(ev: Event, labels_id: str) -> str | None:
    """The text the heatmap's token labels spell ("0: The", "1: ·cat" -> "The cat"), if
    ``ev`` changes them."""
    if (ev.get("model") or {}).get("id") != labels_id:
        return None
    labels = event_data(ev).get("label")
    if not isinstance(labels, list):
        return None
    return "".join(str(lab).split(": ", 1)[-1] for lab in labels).replace("·", " ")


def labelled_group(s: WsSession, label: str) -> str:
    """The newest button group captioned ``label`` (dashboard.views.widgets.labelled)."""
    for mid in reversed(s.find("Column")):
        kids = s.children_of(mid)
        if len(kids) == 2 and s.models.get(kids[0], {}).get("attributes", {}).get("text") == label:
            return kids[1]
    raise SessionError(f"no control captioned {label!r}")


def lesson_shown(ev: Event) -> bool:
    """The answer to a lesson switch: a first visit adds the lesson to the page, a later one
    makes it visible again (dashboard/app.py keeps visited lessons, hidden)."""
    attr = ev.get("attr")
    return attr == "children" or (attr == "visible" and ev.get("new") is True)


class Student:
    """What one student does with a session: type, pick heads, slide the temperature."""

    def __init__(
        self, session: WsSession, tally: Tally, seed: int, key_interval: float = KEY_INTERVAL_S
    ):
        self.s, self.tally, self.rng = session, tally, random.Random(seed)
        self.key_interval = key_interval
        self.sentence = seed % len(SENTENCES)

    def setup(self) -> None:
        """Find the attention lesson's controls."""
        s = self.s
        self.text_box = s.find("TextAreaInput")[0]
        self.labels = s.named("heatmap-labels")
        self.layer, self.head = labelled_group(s, "Layer"), labelled_group(s, "Head")
        self.nav = s.find("RadioButtonGroup", labels="Temperature & sampling")[0]
        self.lessons = s.models[self.nav]["attributes"]["labels"]

    def _attr(self, mid: str, name: str) -> Any:
        return self.s.models[mid]["attributes"].get(name)

    async def answered(
        self, kind: str, predicate: Callable[[Event], bool], mid: str, attr: str, value: Any
    ) -> None:
        """Change one widget and time the server's answer."""
        fut = self.s.expect(predicate)
        t0 = await self.s.change(mid, attr, value)
        try:
            self.tally.add(kind, await asyncio.wait_for(fut, ANSWER_TIMEOUT_S) - t0)
        except asyncio.TimeoutError:
            self.tally.errors.append(f"{kind}={value!r:.40}: no answer in {ANSWER_TIMEOUT_S} s")

    async def type_sentence(self, sentence: str, deadline: float) -> None:
        """Type ``sentence`` key by key without waiting for the page (as people do); each
        keystroke is answered by the first labels that spell it or a later keystroke."""
        sent = []
        for n in range(1, len(sentence) + 1):
            if time.perf_counter() > deadline:
                break

            def spells(ev: Event, n: int = n) -> bool:
                text = spelled(ev, self.labels)
                return text is not None and len(text) >= n and sentence.startswith(text)

            fut = self.s.expect(spells)
            sent.append((await self.s.change(self.text_box, "value_input", sentence[:n]), fut))
            await asyncio.sleep(self.key_interval)
        for t0, fut in sent:
            try:
                left = max(0.01, t0 + ANSWER_TIMEOUT_S - time.perf_counter())
                self.tally.add("type", await asyncio.wait_for(fut, left) - t0)
            except asyncio.TimeoutError:
                self.tally.errors.append(f"type: {sentence!r} not shown in {ANSWER_TIMEOUT_S} s")

    async def move_head(self) -> None:
        """Pick another layer, then another head; each answered by the heatmap's title."""
        n_layer, n_head = (
            len(self._attr(self.layer, "labels")),
            len(self._attr(self.head, "labels")),
        )
        layer = self.rng.choice(
            [i for i in range(n_layer) if i != self._attr(self.layer, "active")]
        )
        head = self._attr(self.head, "active")
        await self.answered(
            "layer", text_changed(f"Layer {layer}, head {head}:"), self.layer, "active", layer
        )
        await asyncio.sleep(MOVE_INTERVAL_S)
        head = self.rng.choice([i for i in range(n_head) if i != head])
        await self.answered(
            "head", text_changed(f"Layer {layer}, head {head}:"), self.head, "active", head
        )

    async def move_temperature(self, moves: int = 2) -> None:
        """Open the sampling lesson, slide the temperature, come back to attention."""
        await self.answered(
            "lesson", lesson_shown, self.nav, "active", self.lessons.index("Temperature & sampling")
        )
        found = self.s.find(None, css_classes="temperature-slider")
        if not found:
            raise SessionError("no temperature slider in the sampling lesson")
        slider = found[-1]
        for _ in range(moves):
            await asyncio.sleep(MOVE_INTERVAL_S)
            now = self._attr(slider, "value")
            t = self.rng.choice([x for x in (0.25, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0) if x != now])
            mark = f"(T = {t:g})"

            def titled(ev: Event, mark: str = mark) -> bool:
                new = ev.get("new")
                return ev.get("attr") == "text" and isinstance(new, str) and new.endswith(mark)

            await self.answered("temperature", titled, slider, "value", t)
        await asyncio.sleep(MOVE_INTERVAL_S)
        await self.answered("lesson", lesson_shown, self.nav, "active", 0)
        self.setup()

    async def run(self, deadline: float) -> None:
        """Until ``deadline``: type a sentence, move the head pickers, the temperature."""
        try:
            self.setup()
            while time.perf_counter() < deadline:
                self.sentence = (self.sentence + 1) % len(SENTENCES)
                await self.type_sentence(SENTENCES[self.sentence], deadline)
                for step in (self.move_head, self.move_temperature):
                    if time.perf_counter() < deadline:
                        await asyncio.sleep(MOVE_INTERVAL_S)
                        await step()
        except (SessionError, KeyError, IndexError, ValueError) as err:
            self.tally.errors.append(f"session: {err!r:.300}")


async def flood(s: WsSession, stop: asyncio.Event, rate: float = 1000, chars: int = 10_000) -> int:
    """Send ``rate`` text changes a second of ``chars`` characters each, never waiting for
    the page; returns how many were sent."""
    rng = random.Random(0)
    words = "".join(rng.choice(SENTENCES) + " " for _ in range(chars // 10))[:chars]
    box, sent, t0 = s.find("TextAreaInput")[0], 0, time.perf_counter()
    while not stop.is_set():
        await s.change(box, "value_input", f"{sent} {words}"[:chars])
        sent += 1
        await asyncio.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
    return sent


# -- the server -------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch_stats(url: str) -> dict:
    """The server's /anatomy-sessions.json (from whichever worker answers)."""
    with urllib.request.urlopen(url.rstrip("/") + STATS_PATH, timeout=5) as r:
        return json.loads(r.read())


def tree_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants (the worker processes), in KiB."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(rss_kib(p) for p in tree)


@contextmanager
def server(num_procs: int = 1, lifetime: float = 5.0, extra: tuple[str, ...] = ()):
    """``panel_serve.py`` on a free port of 127.0.0.1; yields (URL, process, log path). The
    log is deleted when the block ends."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="anatomy-load-", suffix=".log")[1])
    cmd = [sys.executable, str(ROOT / "panel_serve.py"), "--port", str(port)]
    cmd += ["--num-procs", str(num_procs), "--session-lifetime", str(lifetime), *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        # its own process group: the workers go down with it
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        t0 = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                fetch_stats(url)
                break
            except OSError:
                if time.perf_counter() - t0 > 90:
                    raise TimeoutError(f"{url} did not answer in 90 s") from None
                time.sleep(0.1)
        yield url, proc, log
    finally:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, 9)
            proc.wait()
        log.unlink(missing_ok=True)  # read it inside the block


def log_errors(log: Path) -> list[str]:
    """ERROR lines and tracebacks in the server's output."""
    lines = log.read_text(errors="replace").splitlines()
    return [ln for ln in lines if re.search(r"\bERROR\b|Traceback", ln)]


async def wait_freed(url: str, timeout: float = 60.0) -> dict:
    """Poll the server until no session is live or being collected; its last stats."""
    loop = asyncio.get_running_loop()
    t0, last = time.perf_counter(), {}
    seen: dict[int, dict] = {}
    while time.perf_counter() - t0 < timeout:
        last = await loop.run_in_executor(None, fetch_stats, url)
        seen[last["pid"]] = last
        if all(s["live"] == 0 and s["collecting"] == 0 for s in seen.values()):
            return {**last, "waited_s": round(time.perf_counter() - t0, 2)}
        await asyncio.sleep(0.25)
    return {**last, "waited_s": round(time.perf_counter() - t0, 2), "timed_out": True}


# -- the benchmark ----------------------------------------------------------------------------
def pct(xs, q: float) -> float:
    return round(1000 * float(np.percentile(xs, q)), 1) if len(xs) else float("nan")


async def open_sessions(url: str, n: int, tally: Tally) -> tuple[list[WsSession], list[float]]:
    """Open ``n`` sessions at once (a class following the same link)."""
    sessions = [WsSession(url) for _ in range(n)]
    results = await asyncio.gather(*(s.open() for s in sessions), return_exceptions=True)
    opened, times = [], []
    for s, r in zip(sessions, results, strict=True):
        if isinstance(r, BaseException):
            tally.errors.append(f"open: {r!r:.300}")
        else:
            opened.append(s)
            times.append(r)
    return opened, times


async def run_load(
    url: str, n_sessions: int, seconds: float, rss: Callable[[], int] | None = None
) -> dict:
    """N students for ``seconds`` against ``url``; latencies, errors, sessions, memory."""
    tally = Tally()
    peak = [rss() if rss else 0]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss() if rss else 0)
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    sessions, open_times = await open_sessions(url, n_sessions, tally)
    deadline = time.perf_counter() + seconds
    students = [Student(s, tally, seed=i) for i, s in enumerate(sessions)]
    await asyncio.gather(*(st.run(deadline) for st in students))
    for s in sessions:
        tally.errors.extend(s.errors)
        await s.close()
    stop.set()
    await sampler
    lat = tally.all()
    return {
        "sessions": len(sessions),
        "seconds": seconds,
        "updates": int(len(lat)),
        "errors": len(tally.errors),
        "error_samples": tally.errors[:10],
        "latency_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "max": pct(lat, 100)},
        "latency_by_kind_ms": {
            k: {"n": len(v), "p50": pct(v, 50), "p95": pct(v, 95)}
            for k, v in sorted(tally.latency.items())
        },
        "open_s": {"p50": pct(open_times, 50) / 1000, "max": pct(open_times, 100) / 1000},
        "patches_received": sum(s.received for s in sessions),
        "peak_rss_kib": peak[0],
    }


async def warm_up(url: str, n_sessions: int = 1) -> list[str]:
    """``n_sessions`` at once (so that every worker process gets some) type every sentence
    and visit every control once, then close."""
    tally = Tally()
    opened, _ = await open_sessions(url, n_sessions, tally)
    if len(opened) < n_sessions:
        raise SessionError(f"the warm-up sessions did not open: {tally.errors}")

    async def visit(st: Student) -> None:
        st.setup()
        for sentence in SENTENCES:
            await st.type_sentence(sentence, time.perf_counter() + 60)
        await st.move_head()
        await st.move_temperature(moves=1)

    students = [Student(s, tally, seed=i, key_interval=0.02) for i, s in enumerate(opened)]
    await asyncio.gather(*(visit(st) for st in students))
    errors = list(tally.errors)
    for s in opened:
        errors += s.errors
        await s.close()
    return errors


async def fairness(url: str, seconds: float) -> dict:
    """One session's layer/head latency alone, then while another floods the server."""

    async def probe(st: Student, until: float) -> list[float]:
        before = len(st.tally.latency.get("layer", []))
        while time.perf_counter() < until:
            await st.move_head()
        return st.tally.latency.get("layer", [])[before:]

    tally = Tally()
    opened, _ = await open_sessions(url, 2, tally)
    if len(opened) < 2:
        raise SessionError(f"the fairness sessions did not open: {tally.errors}")
    victim, flooder = opened
    st = Student(victim, tally, seed=1)
    st.setup()
    alone = await probe(st, time.perf_counter() + seconds)
    stop = asyncio.Event()
    flooding = asyncio.create_task(flood(flooder, stop))
    t0 = time.perf_counter()
    flooded = await probe(st, t0 + seconds)
    stop.set()
    sent = await flooding
    rate = sent / (time.perf_counter() - t0)
    errors = tally.errors + victim.errors + flooder.errors
    for s in (victim, flooder):
        await s.close()
    return {
        "alone_ms": {"n": len(alone), "p50": pct(alone, 50), "p95": pct(alone, 95)},
        "flooded_ms": {"n": len(flooded), "p50": pct(flooded, 50), "p95": pct(flooded, 95)},
        "p50_ratio": round(pct(flooded, 50) / pct(alone, 50), 2),
        "p95_ratio": round(pct(flooded, 95) / pct(alone, 95), 2),
        "flood_updates_per_s": round(rate),
        "flood_chars": 10_000,
        "errors": len(errors),
        "error_samples": errors[:5],
    }


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


async def benchmark(args: argparse.Namespace, url: str, pid: int | None) -> dict:
    rss = (lambda: tree_rss_kib(pid)) if pid else None
    cold = rss() if rss else 0
    warm_errors = await warm_up(url, 2 * (args.num_procs or os.cpu_count() or 1))
    await wait_freed(url)
    before = rss() if rss else 0
    result = await run_load(url, args.sessions, args.seconds, rss)
    freed = await wait_freed(url)
    await asyncio.sleep(1.0)
    after = rss() if rss else 0
    result["errors"] += len(warm_errors)
    result["freed"] = freed
    # later classes: does memory keep growing (a leak) or stay at the first class's level?
    waves = [mib(after)]
    for _ in range(args.waves - 1):
        again = await run_load(url, args.sessions, min(args.seconds, 20), rss)
        result["errors"] += again["errors"]
        result["error_samples"] += again["error_samples"]
        await wait_freed(url)
        await asyncio.sleep(1.0)
        waves.append(mib(rss() if rss else 0))
    result["memory_mib"] = {
        "cold": mib(cold),
        "before": mib(before),
        "peak": mib(result.pop("peak_rss_kib")),
        "after": mib(after),
        "after_vs_before": round(after / before - 1, 4) if before else None,
        "after_each_class": waves,
    }
    if args.flood_seconds > 0:
        result["fairness"] = await fairness(url, args.flood_seconds)
    return result


def summary(r: dict) -> str:
    m, lat = r["memory_mib"], r["latency_ms"]
    line = (
        f"load: {r['sessions']} sessions x {r['seconds']:g} s, {r['updates']} updates, "
        f"{r['errors']} errors, latency p50 {lat['p50']} ms p95 {lat['p95']} ms, server memory "
        f"before {m['before']} MiB peak {m['peak']} MiB after {m['after']} MiB "
        f"({100 * (m['after_vs_before'] or 0):+.1f}%)"
    )
    if f := r.get("fairness"):
        line += (
            f"; a flooded neighbour: p50 {f['alone_ms']['p50']} -> {f['flooded_ms']['p50']} ms "
            f"({f['p50_ratio']}x; the flood got {f['flood_updates_per_s']} texts a second in)"
        )
    return line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=40)
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--url", help="an already running server (memory is then not measured)")
    p.add_argument(
        "--num-procs", type=int, default=2, help="worker processes of the server (make classroom's)"
    )
    p.add_argument("--session-lifetime", type=float, default=5.0, help="server's, seconds")
    p.add_argument("--flood-seconds", type=float, default=10, help="0 skips the fairness check")
    p.add_argument("--waves", type=int, default=1, help="classes one after another (memory)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if args.url:
        result = asyncio.run(benchmark(args, args.url, None))
        server_errors: list[str] = []
    else:
        with server(args.num_procs, args.session_lifetime) as (url, proc, log):
            result = asyncio.run(benchmark(args, url, proc.pid))
            server_errors = log_errors(log)
    result["server_log_errors"] = len(server_errors)
    result["server_log_samples"] = server_errors[:5]
    result["errors"] += len(server_errors)
    result["goal"] = {"sessions": 40, "seconds": 120, "errors": 0, "p95_ms": 500, "memory": 0.10}
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    result["num_procs"] = args.num_procs
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
