"""Pack a snapshot's scripts and data: gzipped into the file, unpacked by the page.

BokehJS alone (bokeh.min.js and bokeh-widgets.min.js) is 1.65 MB of text, more than half of
what the 3 MB budget of an all-lessons snapshot allows, and it compresses to a third of that;
the Bokeh document's JSON repeats every callback's shared code. So the page carries every
executable ``<script>`` and the text of every JSON ``<script>`` gzipped and base64-encoded in
one inert ``<script type="application/gzip">`` element, and a small loader unpacks it with the
browser's own ``DecompressionStream``, puts the JSON back where it was and runs the scripts in
their order. Still one file, still nothing fetched. Browsers without ``DecompressionStream``
(before Chrome 80, Firefox 113, Safari 16.4) get a message in the page saying so instead of a
blank one.
"""

from __future__ import annotations

import base64
import gzip
import json
import re

PAYLOAD_ID = "anatomy-scripts"
# Scripts join with a character no script of Bokeh's or ours contains (checked when packing).
SEPARATOR = "\x00"
# Every script element, in order (one match per element, so a "<script>" inside another's body
# is never taken for a tag); the ones that run have no attributes (Bokeh writes them so).
SCRIPT = re.compile(r"<script([^>]*)>(.*?)</script>\s*", re.S)
DATA_ID = re.compile(r'^\s*type="application/json"\s+id="([^"]+)"\s*$')

LOADER = """<script>
(async () => {
  const say = (text) => {
    const p = document.createElement("p");
    p.className = "anatomy-unpack-error";
    p.textContent = text;
    document.body.prepend(p);
  };
  if (typeof DecompressionStream === "undefined") {
    say("This snapshot needs a newer browser (Chrome 80, Firefox 113, Safari 16.4 or later):"
        + " it unpacks its scripts with DecompressionStream, which this one lacks.");
    return;
  }
  if (document.readyState === "loading") {  // the elements it fills must all be there
    await new Promise((done) => document.addEventListener("DOMContentLoaded", done, {once: true}));
  }
  try {
    const packed = atob(document.getElementById("PAYLOAD_ID").textContent.trim());
    const bytes = new Uint8Array(packed.length);
    for (let i = 0; i < packed.length; i++) bytes[i] = packed.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const [data, ...scripts] = (await new Response(stream).text()).split("\\u0000");
    for (const [id, text] of Object.entries(JSON.parse(data))) {
      document.getElementById(id).textContent = text;  // what Bokeh reads its document from
    }
    for (const body of scripts) {
      const script = document.createElement("script");
      script.textContent = body;  // an inline script runs as it is inserted, in order
      document.body.appendChild(script);
    }
  } catch (err) {
    say("This snapshot's scripts could not be unpacked (" + err + "); the file may be damaged:"
        + " export it again.");
  }
})();
</script>
""".replace("PAYLOAD_ID", PAYLOAD_ID)


def pack_scripts(page: str) -> str:
    """``page`` with its executable scripts replaced by one gzipped payload and the loader
    (at the place of the last of them) and the text of its JSON scripts moved into the same
    payload (their elements stay, empty, for the loader to fill)."""
    runs, data = [], {}
    for m in SCRIPT.finditer(page):
        if not m.group(1).strip():
            runs.append(m)
        elif (named := DATA_ID.match(m.group(1))) is not None:
            data[named.group(1)] = m
    if not runs:
        return page
    bodies = [m.group(2) for m in runs]
    if any(SEPARATOR in body for body in bodies):
        raise ValueError("a script contains the separator of packed scripts")
    texts = json.dumps({name: m.group(2) for name, m in data.items()})  # \u0000 escaped
    packed = SEPARATOR.join([texts, *bodies]).encode("utf-8")
    packed = gzip.compress(packed, compresslevel=9, mtime=0)
    payload = (
        f'<script type="application/gzip" id="{PAYLOAD_ID}">'
        f"{base64.b64encode(packed).decode('ascii')}</script>\n"
    )
    last = runs[-1].start()
    cuts = sorted([(m.start(), m.end()) for m in runs] + [m.span(2) for m in data.values()])
    pieces, at = [], 0
    for start, end in cuts:
        pieces += [page[at:start], payload + LOADER if start == last else ""]
        at = end
    return "".join(pieces) + page[at:]


def _unpacked(page: str) -> list[str] | None:
    match = re.search(rf'<script type="application/gzip" id="{PAYLOAD_ID}">(.*?)</script>', page)
    if match is None:
        return None
    return gzip.decompress(base64.b64decode(match.group(1))).decode("utf-8").split(SEPARATOR)


def unpack_scripts(page: str) -> list[str]:
    """The scripts a packed page runs, in order (for tests and inspection)."""
    parts = _unpacked(page)
    if parts is None:
        return [m.group(2) for m in SCRIPT.finditer(page) if not m.group(1).strip()]
    return parts[1:]


def unpack_data(page: str) -> dict[str, str]:
    """The text of each JSON script of a packed page (element id -> text): the Bokeh
    document is one of them."""
    parts = _unpacked(page)
    if parts is None:
        return {
            named.group(1): m.group(2)
            for m in SCRIPT.finditer(page)
            if (named := DATA_ID.match(m.group(1))) is not None
        }
    return json.loads(parts[0])


def unpack(page: str) -> str:
    """A packed page as it was before packing, but for where its scripts stand (all of them
    at the place of the loader): what tests read the text of a snapshot from."""
    parts = _unpacked(page)
    if parts is None:
        return page
    for name, text in json.loads(parts[0]).items():
        empty = f'<script type="application/json" id="{name}"></script>'
        page = page.replace(empty, empty.replace("></", f">{text}</"), 1)
    scripts = "".join(f"<script>{body}</script>\n" for body in parts[1:])
    start = page.index(f'<script type="application/gzip" id="{PAYLOAD_ID}">')
    end = page.index("</script>", page.index("<script>", start)) + len("</script>\n")
    return page[:start] + scripts + page[end:]
