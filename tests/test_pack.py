"""The snapshot's packed scripts: the same scripts, in the same order, unpacked by a real
Chromium; a browser that cannot unpack them, or a damaged file, says so in the page."""

from __future__ import annotations

import base64
import gzip
import re

import pytest
from bokeh.document import Document
from bokeh.embed import file_html
from bokeh.models import Div
from bokeh.resources import INLINE

from export.pack import PAYLOAD_ID, pack_scripts, unpack, unpack_data, unpack_scripts
from export.snapshot import inline_html
from tests.browser_support import open_offline

PAGE = """<html><head><script>window.order = ["a"];</script>
<script type="application/json" id="data">{"text": "<script>alert(1)<\\/script>"}</script>
</head><body><p>hello</p><script>window.order.push("b");</script>
<script>window.order.push(JSON.parse(document.getElementById("data").textContent).text);
</script></body></html>"""


def test_the_scripts_are_kept_in_order_and_the_data_is_untouched():
    packed = pack_scripts(PAGE)
    assert unpack_scripts(packed) == [
        'window.order = ["a"];',
        'window.order.push("b");',
        'window.order.push(JSON.parse(document.getElementById("data").textContent).text);\n',
    ]
    # the JSON's "<script>" inside its string is data, not a tag: packed whole, its element
    # left empty for the loader to fill, and no script is left in the clear
    assert unpack_data(packed) == {"data": '{"text": "<script>alert(1)<\\/script>"}'}
    assert unpack_data(PAGE) == unpack_data(packed)
    assert '<script type="application/json" id="data"></script>' in packed
    assert "window.order" not in packed and "alert" not in packed
    assert packed.index('id="data"') < packed.index(PAYLOAD_ID) < packed.index("async")
    assert "<p>hello</p>" in packed


def test_unpacking_gives_the_page_back():
    back = unpack(pack_scripts(PAGE))
    assert unpack_data(back) == unpack_data(PAGE)
    assert unpack_scripts(back) == unpack_scripts(PAGE)
    assert PAYLOAD_ID not in back and "<p>hello</p>" in back
    assert unpack(PAGE) == PAGE


def test_packing_is_deterministic_and_smaller_for_bokeh():
    page = file_html(Div(text="x"), INLINE, "t")
    packed = pack_scripts(page)
    assert packed == pack_scripts(page)  # no time stamp in the gzip header
    assert len(packed) < len(page) / 2  # BokehJS compresses to about a third
    originals = [m.group(2) for m in re.finditer(r"<script([^>]*)>(.*?)</script>", page, re.S)
                 if not m.group(1).strip()]  # fmt: skip
    assert unpack_scripts(packed) == originals
    assert "BEGIN bokeh.min.js" in unpack_scripts(packed)[0]


def test_a_page_without_scripts_is_unchanged():
    page = "<html><body><p>no scripts</p></body></html>"
    assert pack_scripts(page) == page and unpack_scripts(page) == []


def test_a_script_containing_the_separator_is_refused():
    with pytest.raises(ValueError, match="separator"):
        pack_scripts("<script>var s = '\x00';</script>")


def _write(tmp_path, page, name="page.html"):
    path = tmp_path / name
    path.write_text(page, encoding="utf-8")
    return path


@pytest.mark.browser
def test_chromium_runs_the_packed_scripts_in_order(browser, tmp_path):
    doc = Document()
    doc.add_root(Div(text="packed", name="d"))
    path = _write(tmp_path, inline_html(doc, "t", page_css=""))  # the snapshot's own writer
    page = open_offline(browser, path, 'doc.get_model_by_name("d") != null')
    assert page.requests == [page.url_] and page.errors == []
    assert page.locator("text=packed").count() == 1
    page.close()
    page = browser.new_page()
    page.goto(_write(tmp_path, pack_scripts(PAGE), "order.html").as_uri())
    page.wait_for_function("() => window.order && window.order.length === 3")
    assert page.evaluate("window.order") == ["a", "b", "<script>alert(1)</script>"]
    page.close()


@pytest.mark.browser
def test_a_browser_without_decompression_is_told_so(browser, tmp_path):
    path = _write(tmp_path, pack_scripts(PAGE))
    page = browser.new_page()
    page.add_init_script("delete window.DecompressionStream;")
    page.goto(path.as_uri())
    message = page.locator(".anatomy-unpack-error")
    message.wait_for()
    assert "needs a newer browser" in message.inner_text()
    assert page.evaluate("window.order") is None  # nothing ran half-way
    page.close()


@pytest.mark.browser
def test_a_damaged_file_is_told_so(browser, tmp_path):
    packed = pack_scripts(PAGE)
    good = re.search(rf'id="{PAYLOAD_ID}">(.*?)<', packed).group(1)
    cut = base64.b64encode(gzip.decompress(base64.b64decode(good))[:5]).decode()  # not gzip
    path = _write(tmp_path, packed.replace(good, cut))
    page = browser.new_page()
    page.goto(path.as_uri())
    message = page.locator(".anatomy-unpack-error")
    message.wait_for()
    said = message.inner_text()
    assert "could not be unpacked" in said and "export it again" in said
    assert page.evaluate("window.order") is None
    page.close()
