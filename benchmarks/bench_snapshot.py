"""Snapshot size and first render in headless Chromium, beside a peer: a Bokeh INLINE page
holding one figure with one point (the floor any self-contained Bokeh page pays), written the
same way. Writes benchmarks/results/snapshot.json and prints one summary line.

    python -m benchmarks.bench_snapshot [--runs 5]

Goal (issue 7): at most 5 MB for the default model, a 64-token text and all lessons; first
render under 2 s. "First render": from navigation start to every lesson's first draw done
(the document_ready callbacks have filled the attention heatmap's detail and the bars),
measured inside the page with performance.now().
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from bokeh.document import Document
from bokeh.plotting import figure
from playwright.sync_api import sync_playwright

from dashboard.views import registry
from export.snapshot import build_snapshot, inline_html, write_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import launch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "snapshot.json"
# 64 tokens of the default model (checked below)
TEXT = (
    "Return the value of the named attribute of object. If the attribute does not exist, "
    "an exception is raised and the default is returned instead; name must be a string. "
    "The file is opened in text mode unless the mode says binary, and the encoding defaults to"
)
SNAPSHOT_READY = """() => {
  if (!window.Bokeh || !Bokeh.documents.length) return false;
  const d = Bokeh.documents[0];
  const bars = d.get_model_by_name("sampling-bars"), seg = d.get_model_by_name("bpe-segments");
  const ok = bars && bars.data.tid.length > 0 && seg && seg.data.id.length > 0;
  return ok ? performance.now() : false;
}"""
PEER_READY = """() => {
  if (!window.Bokeh || !Bokeh.documents.length || !Bokeh.index) return false;
  return Object.keys(Bokeh.index).length > 0 ? performance.now() : false;
}"""


def first_render_ms(browser, path: Path, ready_js: str) -> float:
    """Milliseconds from navigation start to ``ready_js`` holding, in a fresh page, offline."""
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    url = path.as_uri()
    page.route("**/*", lambda r: r.continue_() if r.request.url == url else r.abort())
    page.goto(url, wait_until="commit")
    handle = page.wait_for_function(ready_js, polling=5, timeout=60_000)
    ms = float(handle.json_value())
    page.close()
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    engine = Engine(STATIC_DIR)
    n_tokens = len(engine.tokenizer(engine.default_model).encode(TEXT))
    with tempfile.TemporaryDirectory() as tmp:
        snap, peer = Path(tmp) / "snapshot.html", Path(tmp) / "peer.html"
        t0 = time.perf_counter()
        write_snapshot(build_snapshot(TEXT, engine=engine), snap)
        build_s = time.perf_counter() - t0
        empty = figure(width=300, height=300)
        empty.scatter([0], [0])
        peer_doc = Document()
        peer_doc.add_root(empty)
        peer.write_text(inline_html(peer_doc, "peer", ""), "utf-8")  # no external files either
        sizes = {p.name: p.stat().st_size for p in (snap, peer)}
        times: dict[str, list[float]] = {"snapshot": [], "peer": []}
        with sync_playwright() as pw:
            browser = launch(pw)
            first_render_ms(browser, peer, PEER_READY)  # warm the browser's caches of itself
            for _ in range(args.runs):  # interleaved, so both see the same machine load
                times["peer"].append(first_render_ms(browser, peer, PEER_READY))
                times["snapshot"].append(first_render_ms(browser, snap, SNAPSHOT_READY))
            browser.close()
    med = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "text_tokens": n_tokens,
        "lessons": registry.course(),
        "size_bytes": {
            "snapshot": sizes["snapshot.html"],
            "peer_bokeh_inline_empty_figure": sizes["peer.html"],
            "ratio": round(sizes["snapshot.html"] / sizes["peer.html"], 2),
            "goal_max": 3_000_000,
        },
        "first_render_ms": {
            "runs": args.runs,
            "snapshot_median": round(med["snapshot"], 1),
            "snapshot_max": round(max(times["snapshot"]), 1),
            "peer_median": round(med["peer"], 1),
            "ratio": round(med["snapshot"] / med["peer"], 2),
            "goal_max": 1500,
        },
        "build_s": round(build_s, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"snapshot ({n_tokens} tokens, all lessons): {sizes['snapshot.html'] / 1e6:.2f} MB "
        f"({result['size_bytes']['ratio']}x an empty Bokeh page, goal ≤ 3 MB); first render "
        f"median {med['snapshot']:.0f} ms vs {med['peer']:.0f} ms for the empty page "
        f"({result['first_render_ms']['ratio']}x, goal ≤ 1500 ms); built in {build_s:.1f} s"
    )


if __name__ == "__main__":
    main()
