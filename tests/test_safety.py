"""What a hostile or careless client can do to the server: nothing beyond its own session.

Each test talks to a real ``panel_serve.py`` over the real websocket protocol (the client of
``benchmarks.load``): a foreign origin is refused, a model is chosen from the manifest only
(never a path from a link or a crafted message), text comes back as text, and a session
that floods the server does not stop another session from being served.
"""

from __future__ import annotations

import asyncio
import html
import time
import urllib.parse

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from benchmarks import load
from benchmarks.load import Student, Tally, WsSession, spelled

PATHS = ["../../etc/passwd", "/etc/passwd", "static/anatomy-gpt.onnx"]


@pytest.fixture(scope="module")
def server():
    with load.server(num_procs=1, lifetime=1.0) as (url, proc, log):
        yield url, log


def run(coro):
    return asyncio.run(coro)


async def handshake(url: str, origin: str) -> int:
    """Status of a websocket handshake on /ws carrying ``origin`` (101 when accepted)."""
    request = HTTPRequest(url.replace("http", "ws", 1) + "ws", headers={"Origin": origin})
    try:
        ws = await websocket_connect(request, subprotocols=["bokeh", "not-a-token"])
    except HTTPClientError as err:
        return err.code
    ws.close()
    return 101


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1.evil.example:80"])
def test_foreign_websocket_origin_is_refused(server, origin):
    url, _ = server
    assert run(handshake(url, origin)) == 403
    assert run(handshake(url, url.rstrip("/"))) == 101  # the server's own origin is accepted


def notices(s: WsSession) -> str:
    """Every HTML pane's text in the document, unescaped once (Panel escapes pane text)."""
    texts = [m["attributes"].get("text") for m in s.models.values()]
    return " ".join(html.unescape(t) for t in texts if isinstance(t, str))


@pytest.mark.parametrize("path", PATHS)
def test_model_path_in_a_link_is_refused_with_a_notice(server, path):
    url, log = server

    async def scenario():
        s = WsSession(url, query=urllib.parse.urlencode({"model": path, "text": "hello"}))
        await s.open()
        select = s.models[s.find("CustomSelect")[0]]["attributes"]
        page = notices(s)
        await s.close()
        return select, page

    select, page = run(scenario())
    assert select["value"] in select["options"] and select["value"] != path
    assert "Ignored unusable link values" in page and f"model={path}" in page
    assert "root:" not in page  # nothing of /etc/passwd reached the page


@pytest.mark.parametrize("path", PATHS)
def test_model_path_over_the_websocket_is_refused(server, path):
    """A crafted message sets the model picker to a path: the session keeps its model from
    the manifest and goes on answering, and the server logs no error for it."""
    url, log = server
    logged = len(load.log_errors(log))

    async def scenario():
        s = WsSession(url)
        await s.open()
        select = s.find("CustomSelect")[0]
        model = s.models[select]["attributes"]["value"]
        s.events = []
        await s.change(select, "value", path)
        st = Student(s, Tally(), seed=0)
        st.setup()
        await st.type_sentence("still here", time.perf_counter() + 30)
        await s.close()
        return model, s.models[select]["attributes"], notices(s), s.events, st.tally, s.errors

    model, select, page, events, tally, errors = run(scenario())
    assert tally.errors == [] and errors == []
    assert len(tally.latency["type"]) == len("still here")  # the session still answers
    assert f"model <b>{model}</b>" in page  # the header still names the manifest's model
    assert not any(path in str(ev) or "root:" in str(ev) for ev in events)
    assert load.log_errors(log)[logged:] == []


def test_text_comes_back_as_text(server):
    """HTML typed in the box reaches the page only escaped: no pane's markup carries it."""
    url, _ = server
    text = "<b>bold</b> <script>alert(1)</script>"

    async def scenario():
        s = WsSession(url)
        await s.open()
        st = Student(s, Tally(), seed=0)
        st.setup()
        s.events = seen = []
        fut = s.expect(lambda ev: spelled(ev, st.labels) == text)
        await s.change(st.text_box, "value_input", text)
        await asyncio.wait_for(fut, 30)
        await s.close()
        return seen

    seen = run(scenario())
    markup = [ev["new"] for ev in seen if ev.get("attr") == "text" and isinstance(ev["new"], str)]
    assert markup, "no pane was updated"
    assert not any("<script>" in m or "<b>bold" in m for m in markup)


def test_a_flooding_session_slows_only_itself(server):
    """One session tries to send 10,000-character texts a thousand times a second; another,
    ordinary session is still served throughout (how much slower: benchmarks/load.py's
    ratio)."""
    url, log = server
    logged = len(load.log_errors(log))

    async def scenario():
        tally = Tally()
        victim, flooder = WsSession(url), WsSession(url)
        for s in (victim, flooder):
            await s.open()
        st = Student(victim, tally, seed=3)
        st.setup()
        stop = asyncio.Event()
        flooding = asyncio.create_task(load.flood(flooder, stop, rate=1000, chars=10_000))
        until = time.perf_counter() + 4
        while time.perf_counter() < until:
            await st.move_head()
        await st.type_sentence("The cat sat.", time.perf_counter() + 30)
        stop.set()
        sent = await flooding
        result = (tally, sent, list(flooder.errors), list(victim.errors))
        for s in (victim, flooder):
            await s.close()
        return result

    tally, sent, flooder_errors, victim_errors = run(scenario())
    # the flood really happened: the server reads a session's messages only as fast as it
    # answers them (a full redraw each), so TCP holds the sender back to a few hundred
    # 10,000-character texts in those seconds, far beyond any typist
    assert sent > 200
    assert tally.errors == [] and victim_errors == [] and flooder_errors == []
    assert len(tally.latency["layer"]) >= 1 and len(tally.latency["type"]) == len("The cat sat.")
    assert load.log_errors(log)[logged:] == []


def test_allowed_origins_are_explicit():
    """No wildcard origin: on every interface the server accepts its own names only, and
    prints the address students should type first."""
    from panel_serve import lan_ip, origins

    allowed, urls = origins("0.0.0.0", 5006, [])
    assert "*" not in "".join(allowed) and "127.0.0.1:5006" in allowed
    ip = lan_ip()
    if ip is not None:  # a machine on a network: that address is the one to give out
        assert urls[0] == f"http://{ip}:5006/" and f"{ip}:5006" in allowed
    assert origins("127.0.0.1", 5006, [])[0] == ["127.0.0.1:5006", "localhost:5006"]
    assert origins("10.1.2.3", 80, ["teacher.example:80"])[0] == [
        "10.1.2.3:80",
        "teacher.example:80",
    ]
