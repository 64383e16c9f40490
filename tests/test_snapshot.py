"""The snapshot builder and its command line, without a browser: bad input, atomic writes,
escaping, truncation, size, and no torch on the way (tests/test_browser_snapshot.py opens
the files in Chromium)."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.state import DEFAULT_TEXT
from export.pack import unpack, unpack_data
from export.snapshot import (
    LESSONS,
    SnapshotError,
    build_snapshot,
    export_snapshot,
    parse_lessons,
    snapshot_of_state,
)
from models.runtime import STATIC_DIR, Engine

ROOT = Path(__file__).resolve().parent.parent
# 64 tokens of the corpus's register, for the size contract (checked below)
TEXT_64 = (
    "Return the value of the named attribute of object. If the attribute does not exist, "
    "an exception is raised and the default is returned instead; name must be a string. "
    "The file is opened in text mode unless the mode says binary, and the encoding defaults to"
)


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "export", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


def test_cli_writes_a_snapshot_and_never_imports_torch(tmp_path):
    out = tmp_path / "snap.html"
    code = (
        "import sys; from export.cli import main; "
        f"rc = main(['--text', 'Hello there', '--out', {str(out)!r}]); "
        "bad = [m for m in ('torch', 'onnx', 'onnxscript', 'transformers') if m in sys.modules]; "
        "print('IMPORTED', bad); sys.exit(rc)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "IMPORTED []" in run.stdout
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "snap-title" in unpack(page)
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left


@pytest.mark.parametrize(
    "args, words",
    [
        (["--text", "hi", "--lessons", "attention,nope"], ["unknown lesson", "'nope'", "bpe"]),
        (["--text", "hi", "--model", "gpt-17"], ["unknown model", "gpt-17", "anatomy-gpt"]),
        (["--text", ""], ["text is empty"]),
        (["--text", "   \n "], ["text is empty"]),
        (["--text", "hi", "--lessons", ","], ["no lesson"]),
        (["--out", "x.html"], ["--text"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, args, words):
    out = tmp_path / "snap.html"
    run = cli(*args, *([] if "--out" in args else ["--out", str(out)]), cwd=tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr
    for w in words:
        assert w in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_leaves_nothing_behind(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    for out in (tmp_path / "missing" / "a.html", blocker / "a.html", tmp_path):
        run = cli("--text", "hi", "--lessons", "bpe", "--out", str(out))  # one lesson: quick
        assert run.returncode == 2, out
        assert run.stderr.startswith("error: cannot write") and run.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_existing_file_is_replaced_only_when_complete(tmp_path, engine, monkeypatch):
    out = tmp_path / "snap.html"
    out.write_text("old")
    import export.snapshot as snap

    def broken(*_a, **_k):
        raise SnapshotError("the text is empty")

    monkeypatch.setattr(snap, "build_snapshot", broken)
    with pytest.raises(SnapshotError):
        snap.export_snapshot(out, "hi")
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]
    monkeypatch.undo()
    export_snapshot(out, "hi", lessons="bpe", engine=engine)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_lesson_names():
    assert parse_lessons(None) == list(LESSONS)
    assert parse_lessons("bpe, attention,bpe") == ["bpe", "attention"]
    assert parse_lessons(["temperature"]) == ["sampling"]  # the old name works too
    with pytest.raises(SnapshotError, match="unknown lesson 'Attention'"):
        parse_lessons("Attention")


def _markup(page: str) -> str:
    """The page without its scripts' bodies (the JSON document is inside a script)."""
    return re.sub(r"(<script\b[^>]*>).*?</script>", r"\1</script>", page, flags=re.S)


def test_nothing_external_and_an_inline_favicon(engine):
    page = unpack(build_snapshot(DEFAULT_TEXT, engine=engine))
    tags = _markup(page)
    assert re.findall(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=", tags) == [
        '<link rel="icon" href='
    ]
    assert '<link rel="icon" href="data:,">' in tags
    assert "cdn." not in page.lower() or "cdn.bokeh.org" not in tags


def _find_text(node, name: str):
    """The ``text`` of the model called ``name`` in the page's document JSON."""
    if isinstance(node, dict):
        attrs = node.get("attributes", {})
        if isinstance(attrs, dict) and attrs.get("name") == name:
            return attrs["text"]
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_text(child, name)
        if found is not None:
            return found
    return None


def test_html_in_the_text_is_escaped(engine):
    text = "<script>alert('x')</script> & <b>bold</b>"
    page = build_snapshot(text, lessons="bpe", engine=engine)
    (body,) = unpack_data(page).values()  # the Bokeh document
    header = _find_text(json.loads(html.unescape(body)), "snapshot-header")
    assert "<b>bold" not in header and "<script" not in header
    chips = re.findall(r"<span class='chip'[^>]*>([^<]*)</span>", header)
    # every token is there, escaped: unescaping the chips gives the text back (· = space)
    assert html.unescape("".join(chips)) == text.replace(" ", "·")
    assert "<script>alert" not in _markup(unpack(page))


def test_long_text_is_truncated_with_a_notice(engine):
    text = TEXT_64 * 4
    n = len(engine.tokenizer(engine.default_model).encode(text))
    page = unpack(build_snapshot(text, lessons="temperature", engine=engine))
    assert f"Your text is {n} tokens long" in page and "only the first 128 tokens" in page


def test_size_of_the_default_model_64_tokens_all_lessons(engine):
    ids = engine.tokenizer(engine.default_model).encode(TEXT_64)
    assert len(ids) == 64
    page = build_snapshot(TEXT_64, engine=engine)
    assert len(page.encode("utf-8")) <= 3_000_000  # DESIGN.md: all lessons, 64 tokens


def test_the_snapshot_starts_from_the_dashboard_state(engine, monkeypatch):
    """Every option of every lesson is passed on, read from the session generically."""
    import export.snapshot as snap
    from dashboard.state import AnatomyState
    from dashboard.views import registry

    state = AnatomyState(engine=engine)
    state.param.update(lesson="sampling", layer=2, head=1, query=3, stage="scaled",
                       mask="sliding", window=5, temperature=0.7, top_k=7,
                       top_p=0.9, value=0.1)  # fmt: skip
    seen = {}
    monkeypatch.setattr(snap, "build_snapshot", lambda text, **kw: seen.update(kw, text=text))
    snapshot_of_state(state)
    assert seen["lesson"] == "sampling" and seen["text"] == state.text
    assert seen["options"] == {n: getattr(state, n) for n in registry.option_names()}
    assert seen["options"]["value"] == 0.1 and seen["options"]["top_k"] == 7
