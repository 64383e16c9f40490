"""The precision lesson's snapshot in a real Chromium, offline: the value chosen at export is
shown, every format's bits (fp8 included) are ml_dtypes' and numpy's, the colours are the
dashboard's, the tensor picker redraws the histogram with numpy's counts of the engine's own
outputs, the runs and the masked-scores tables are there, and no error reaches the console.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import torch

from dashboard.views import precision as V
from export.snapshot import export_snapshot
from models.runtime import STATIC_DIR, Engine
from tests.browser_support import model_data, open_offline
from tests.browser_support import model_get as _get
from tests.browser_support import model_set as _set

pytestmark = pytest.mark.browser

TEXT = "Return the value of the named attribute <b>x</b> & y"
VALUE = 0.1
DTYPES = {
    "fp32": (np.float32, np.uint32),
    "fp16": (np.float16, np.uint16),
    "bf16": (ml_dtypes.bfloat16, np.uint16),
    "fp8_e4m3": (ml_dtypes.float8_e4m3fn, np.uint8),
    "fp8_e5m2": (ml_dtypes.float8_e5m2, np.uint8),
}


@pytest.fixture(scope="module")
def engine():
    return Engine(STATIC_DIR)


@pytest.fixture(scope="module")
def forward(engine):
    model = engine.default_model
    return engine.run(model, engine.tokenizer(model).encode(TEXT))


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "precision.html"
    export_snapshot(path, TEXT, lessons="precision", options={"value": VALUE, "layer": 1})
    page = open_offline(
        browser, path, 'doc.get_model_by_name("precision-formats").data.bits.length > 0'
    )
    yield page
    page.close()


def _bits(value: float, name: str) -> str:
    dt, uint = DTYPES[name]
    src = np.float64 if name in ("fp32", "fp16") else np.float32  # ml_dtypes: via float32
    with np.errstate(over="ignore", invalid="ignore"):
        pattern = int(np.array([value], src).astype(dt).view(uint)[0])
    return format(pattern, f"0{8 * np.dtype(uint).itemsize}b")


def test_the_value_chosen_at_export_is_shown_in_every_format(page):
    assert _get(page, "precision-value", "value") == "0.1"
    assert model_data(page, "precision-formats", "name") == list(DTYPES)
    assert model_data(page, "precision-formats", "bits") == [_bits(VALUE, n) for n in DTYPES]
    stored = model_data(page, "precision-formats", "stored")
    for name, s in zip(DTYPES, stored, strict=True):
        dt, uint = DTYPES[name]
        want = np.array([int(_bits(VALUE, name), 2)], uint).view(dt).astype(np.float64)[0]
        assert s == want, name
    # the fp8 rows are drawn: 8 cells each, on rows 3 and 4
    ys = model_data(page, "precision-bits", "y")
    assert ys.count(3) == 8 and ys.count(4) == 8
    assert page.errors == []


@pytest.mark.parametrize(
    "text", ["0.1", "-0", "1e-8", "70000", "464", "448", "2^-24", "nan", "-inf", "inf"]
)
def test_each_format_says_what_it_stores_as_the_dashboard_does(page, text):
    from dashboard.lessons.precision import parse_value

    _set(page, "precision-value", "value", text)
    page.wait_for_timeout(50)
    info = _get(page, "precision-info", "text")
    x = parse_value(text)
    for name in DTYPES:
        assert V.bit_info_html(x, name) in info, (text, name)
    assert model_data(page, "precision-formats", "bits") == [_bits(x, n) for n in DTYPES]
    assert page.errors == []


def test_fp8_bits_flip_when_clicked(page):
    _set(page, "precision-value", "value", "1.5")
    page.wait_for_timeout(600)  # not a double click with an earlier one
    pos = page.evaluate(
        """([x, y]) => {
          const m = Bokeh.documents[0].get_model_by_name("precision-bits-figure");
          const v = Bokeh.index.find_one(m);
          v.el.scrollIntoView({block: "center"});  // a click lands only inside the window
          const r = v.canvas_view.el.getBoundingClientRect();
          return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)];
        }""",
        [4, 3],  # e4m3 row, bit 4: the exponent's last bit
    )
    page.mouse.click(*pos)
    pattern = int(_bits(1.5, "fp8_e4m3"), 2) ^ (1 << (7 - 4))
    want = float(np.array([pattern], np.uint8).view(ml_dtypes.float8_e4m3fn).astype(float)[0])
    page.wait_for_function(
        f"() => Bokeh.documents[0].get_model_by_name('precision-value').value === '{want!r}'"
    )
    assert model_data(page, "precision-formats", "bits")[3] == format(pattern, "08b")
    assert page.errors == []


def test_bit_colours_are_the_dashboards(page):
    _set(page, "precision-value", "value", "-3")
    page.wait_for_timeout(50)
    fmt = model_data(page, "precision-bits", "fmt")
    color = model_data(page, "precision-bits", "color")
    index = model_data(page, "precision-bits", "index")
    for name in DTYPES:
        fields = V.bit_fields_of(name)
        got = [c for f, c in zip(fmt, color, strict=True) if f == name]
        assert got == [V.FIELD_COLORS[k] for k in fields], name
        assert [i for f, i in zip(fmt, index, strict=True) if f == name] == list(range(len(got)))

    def hue(c):  # red sign, blue exponent, green mantissa: the brief's colours
        r, g, b = (int(c[i : i + 2], 16) for i in (1, 3, 5))
        return max(("red", r), ("green", g), ("blue", b), key=lambda t: t[1])[0]

    assert [hue(V.FIELD_COLORS[k]) for k in ("sign", "exponent", "mantissa")] == [
        "red",
        "blue",
        "green",
    ]
    # filled for a 1 and outlined for a 0, as the dashboard's solid and outline buttons
    bits = model_data(page, "precision-bits", "bit")
    alpha = model_data(page, "precision-bits", "alpha")
    assert [a for a in alpha] == [1 if b == "1" else 0 for b in bits]
    assert page.errors == []


def _hist(page):
    left = model_data(page, "precision-hist", "left")
    right = model_data(page, "precision-hist", "right")
    return np.array(left + right[-1:]), model_data(page, "precision-hist", "top")


def _numpy_counts(values, edges):
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v) & (v != 0)]
    return np.histogram(np.log10(np.abs(v)), bins=edges)[0].tolist()


def test_the_tensor_picker_changes_the_histogram(page, forward, engine):
    edges, top = _hist(page)
    assert _get(page, "precision-tensor", "value") == "hidden"
    assert top == _numpy_counts(forward.hidden, edges)
    for name in ("attn_scores", "logits"):
        _set(page, "precision-tensor", "value", name)
        page.wait_for_timeout(50)
        edges, got = _hist(page)
        assert got == _numpy_counts(getattr(forward, name), edges), name
        assert sum(got) == int(np.count_nonzero(getattr(forward, name)))
        assert f"{getattr(forward, name).size:,} values" in page.evaluate(
            "() => Bokeh.documents[0].get_model_by_name('precision-hist-figure').title.text"
        )
    _set(page, "precision-tensor", "value", V.ALL_WEIGHTS)
    page.wait_for_timeout(50)
    weights = safetensors.numpy.load_file(str(STATIC_DIR / "anatomy-gpt.safetensors"))
    w = np.concatenate([a.astype(np.float64).ravel() for a in weights.values()])
    edges, got = _hist(page)
    assert got == _numpy_counts(w, edges)
    # the fp16 row: how many weights become subnormal in fp16, by torch's cast
    t = torch.from_numpy(w.astype(np.float32)).half().double().numpy()
    sub = int(np.count_nonzero((t != 0) & (np.abs(t) < torch.finfo(torch.float16).tiny)))
    assert f"<td class='num subnormal'>{sub:,}</td>" in _get(page, "precision-counts", "text")
    # the bands stay fp16's and bf16's range, clipped to the plot
    lo, hi = edges[0], edges[-1]
    fi = np.finfo(np.float16)
    want_left = [max(lo, math.log10(fi.smallest_subnormal)), max(lo, math.log10(fi.tiny))]
    assert model_data(page, "precision-hist-bands", "left")[:2] == pytest.approx(want_left)
    assert model_data(page, "precision-hist-bands", "right")[1] == pytest.approx(
        min(hi, math.log10(fi.max))
    )
    assert page.errors == []


def test_the_fp16_and_bf16_runs_are_shown(page, forward, engine):
    for n in ("fp16", "bf16"):
        low = engine.run(engine.default_model, forward.ids, n)
        d = (torch.from_numpy(low.hidden).double() - torch.from_numpy(forward.hidden)).abs()
        got = model_data(page, "precision-run-hidden", n)
        np.testing.assert_allclose(got, torch.amax(d, dim=(1, 2)).tolist(), rtol=1e-12)
        dp = torch.from_numpy(low.attn_probs).double() - torch.from_numpy(forward.attn_probs)
        got_p = model_data(page, "precision-run-probs", n)
        np.testing.assert_allclose(got_p, torch.amax(dp.abs(), dim=(1, 2, 3)).tolist(), rtol=1e-12)
        text = _get(page, "precision-runs", "text")
        agree = (low.logits.argmax(-1) == forward.logits.argmax(-1)).mean()
        assert f"{100 * agree:.1f}%" in text
        err = float(np.abs(low.logits.astype(np.float64) - forward.logits).max())
        assert f"<b class='num logits-error'>{err:.3g}</b>" in text
        assert "<b>x" not in text and "</b> &" not in text  # flipped tokens are escaped
    assert page.errors == []


def test_the_masked_scores_table_follows_layer_and_head(page, forward):
    # the export chose layer 1; head 0 by default
    assert _get(page, "precision-layer", "active") == 1
    want = V.mask_html(V.mask_cells(forward.attn_scores[1, 0]), 1, 0)
    assert _get(page, "precision-mask", "text") == want
    _set(page, "precision-layer", "active", 3)
    _set(page, "precision-head", "active", 2)
    page.wait_for_timeout(50)
    text = _get(page, "precision-mask", "text")
    assert text == V.mask_html(V.mask_cells(forward.attn_scores[3, 2]), 3, 2)
    # fp16 cannot store -1e10: its row says so, and the padding row is NaN there
    assert "<td class='num'>-1e+10</td><td>fp16</td><td class='num'>-inf</td>" in text
    assert "<td>yes: −inf</td><td class='nan' style='white-space: nowrap'>row 0</td>" in text
    assert "<th>rows that are NaN</th>" in text and "key 0 masked for every query" in text
    # −inf fills: torch's softmax with key 0 padded for every query (and causal) makes
    # query 0's row NaN, and only it
    t = forward.attn_scores.shape[-1]
    keep = ~(torch.triu(torch.ones(t, t, dtype=torch.bool), 1) | (torch.arange(t) == 0)[None])
    x = torch.from_numpy(forward.attn_scores[3, 2]).masked_fill(~keep, -math.inf)
    rows = torch.nonzero(torch.isnan(torch.softmax(x, -1)).any(-1)).flatten().tolist()
    assert rows == [0]
    # −inf in each of the three formats, and −1e10 in fp16, where it becomes −inf
    with np.errstate(over="ignore"):
        assert float(np.float16(-1e10)) == -math.inf and np.isfinite(np.float32(-1e10))
    assert text.count("<td class='nan' style='white-space: nowrap'>row 0</td>") == 4
    assert page.errors == []


def test_the_legend_names_the_colours_the_bits_are_drawn_in(page):
    _set(page, "precision-value", "value", "-1.5")
    page.wait_for_timeout(50)
    legend = _get(page, "precision-legend", "text")
    fmt = model_data(page, "precision-bits", "fmt")
    color = model_data(page, "precision-bits", "color")
    drawn = [c for f, c in zip(fmt, color, strict=True) if f == "fp16"]
    # fp16: bit 0 the sign, 1-5 the exponent, 6-15 the mantissa (IEEE binary16)
    for index, field in ((0, "sign"), (3, "exponent"), (9, "mantissa")):
        assert f"style='color: {drawn[index]}'>■</span> {field}" in legend, field
    assert "filled = 1, outlined = 0" in legend
    # in the page, between the value box and the bits
    boxes = page.evaluate(
        """() => ["precision-value", "precision-legend", "precision-bits-figure"].map(n => {
          const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(n));
          const r = v.el.getBoundingClientRect(); return [r.top, r.bottom];
        })"""
    )
    assert boxes[0][1] <= boxes[1][0] and boxes[1][1] <= boxes[2][0], boxes
    assert page.errors == []


def test_the_formats_table_reads_for_people(page):
    text = _get(page, "precision-formats-table", "text")
    assert "True" not in text and "False" not in text
    assert "3.40282 × 10³⁸" in text and "e+38" not in text
    # the headers' words do not run together: each header's text ends 8 px or more before
    # the next one's begins
    boxes = page.evaluate(
        """() => {
          const v = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(
            "precision-formats-table"));
          const table = v.shadow_el.querySelector("table.precision-formats");
          return Array.from(table.rows[0].cells).slice(1).map(th => {
            const r = document.createRange(); r.selectNodeContents(th);
            const b = r.getBoundingClientRect(); return [b.left, b.right];
          });
        }"""
    )
    assert len(boxes) == 5
    for (_, right), (left, _) in zip(boxes, boxes[1:], strict=False):
        assert left - right >= 8, boxes
    assert page.errors == []


def test_inf_and_nan_are_explained_by_their_bits(page):
    _set(page, "precision-value", "value", "inf")
    page.wait_for_timeout(50)
    info = _get(page, "precision-info", "text")
    assert "(inf: exponent all ones, mantissa 0)" in info
    # e4m3fn stores inf as NaN, 0 1111 111 (ml_dtypes): exponent and mantissa all ones
    assert _bits(math.inf, "fp8_e4m3") == "01111111"
    assert "(NaN: exponent and mantissa all ones)" in info
    _set(page, "precision-value", "value", "448")  # 0 1111 110: a normal value
    page.wait_for_timeout(50)
    assert _bits(448.0, "fp8_e4m3") == "01111110"
    assert "exponent 1111 still holds normal values" in _get(page, "precision-info", "text")
    assert page.errors == []
