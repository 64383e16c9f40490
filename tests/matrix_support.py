"""What a matrix figure draws, read from the page in both homes (live and snapshot).

``drawn_colours``: the colour each cell is painted in, from the figure's image layers, each
put through its own colour mapper (the mapping Bokeh paints with), the top opaque layer
winning. ``axis_labels``: each axis's tick labels, and which of them Bokeh's label policy
lets through at the figure's size, with the gaps between neighbouring labels' boxes.
"""

from __future__ import annotations

import numpy as np

from models.runtime import Engine
from tests.browser_support import model_data

# Every image layer of a figure through its mapper, composited: [h, w, rgba as 0..255].
JS_DRAWN = """
(name) => {
  const fig = Bokeh.documents.map(d => d.get_model_by_name(name)).find(x => x);
  const layers = fig.renderers.filter(r => r.visible && r.data_source.data.image);
  const base = layers[0].data_source.data.image[0], [h, w] = base.shape;
  const out = new Uint8ClampedArray(h * w * 4);
  for (const r of layers) {
    const img = r.data_source.data.image[0];
    const rgba = r.glyph.color_mapper.rgba_mapper.v_compute(img);
    if (img.length !== h * w) {  // a placeholder layer must not paint anything
      for (let k = 3; k < rgba.length; k += 4) if (rgba[k] !== 0) return "odd-layer";
      continue;
    }
    const d = r.data_source.data, b = layers[0].data_source.data;
    if (d.x[0] !== b.x[0] || d.y[0] !== b.y[0] || d.dw[0] !== b.dw[0] || d.dh[0] !== b.dh[0])
      return "misplaced-layer";
    for (let c = 0; c < h * w; c++)
      if (rgba[4 * c + 3] > 0) for (let k = 0; k < 4; k++) out[4 * c + k] = rgba[4 * c + k];
  }
  return {h, w, rgba: Array.from(out)};
}
"""


def drawn_colours(page, figure: str) -> np.ndarray:
    """(h, w, 4) uint8: the colour each cell of the named figure's matrix is painted in."""
    got = page.evaluate(JS_DRAWN, figure)
    assert isinstance(got, dict), got
    return np.array(got["rgba"], np.uint8).reshape(got["h"], got["w"], 4)


def rgb(colour: str) -> tuple[int, int, int]:
    """'#e6e6e6' -> (230, 230, 230)."""
    c = colour.lstrip("#")
    return tuple(int(c[k : k + 2], 16) for k in (0, 2, 4))


def painted(colours: np.ndarray, colour: str) -> np.ndarray:
    """Cells painted exactly ``colour`` (opaque)."""
    return (colours[..., :3] == rgb(colour)).all(-1) & (colours[..., 3] == 255)


# Each visible axis of a figure: its ticks, their labels, and which labels the axis's policy
# shows when Bokeh paints the figure at its present size (the filter is watched for one paint).
JS_AXIS_LABELS = """
async (name) => {
  const fig = Bokeh.documents.map(d => d.get_model_by_name(name)).find(x => x);
  const pv = Bokeh.index.find_one(fig);
  const out = {};
  const axes = [["x", fig.below[0]], ["y", fig.left[0]]].filter(([, a]) => a.visible);
  const restore = [];
  for (const [side, ax] of axes) {
    const policy = ax.major_label_policy, filter = policy.filter;
    const ov = ax.major_label_overrides;
    const labels = (t) => (ov instanceof Map ? ov.get(t) ?? ov.get(String(t)) : ov[t]) ?? null;
    out[side] = {ticks: Array.from(ax.ticker.ticks), labels: Array.from(ax.ticker.ticks, labels),
                 font: ax.major_label_text_font_size};
    policy.filter = function (indices, bboxes, dist) {
      const shown = filter.call(this, indices, bboxes, dist);
      const gaps = [];
      for (let i = 0; i + 1 < bboxes.length; i++) gaps.push(dist(i, i + 1));
      out[side].shown = [...shown];
      out[side].gaps = gaps;
      return shown;
    };
    restore.push(() => { policy.filter = filter; });
  }
  pv.request_repaint();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  restore.forEach((f) => f());
  return out;
}
"""


def grid_painted(page, above: np.ndarray, n_layer: int, n_head: int) -> np.ndarray:
    """Where the all-heads grid must be painted masked: ``above`` (one head's removed cells) in
    every tile, tiles ``gap`` cells apart as the page's grid-meta says."""
    t = above.shape[0]
    gap = model_data(page, "grid-meta", "gap")[0]
    want = np.zeros(((t + gap) * n_layer - gap, (t + gap) * n_head - gap), bool)
    for lay in range(n_layer):
        for h in range(n_head):
            y, x = lay * (t + gap), h * (t + gap)
            want[y : y + t, x : x + t] = above
    return want


def axis_labels(page, figure: str) -> dict:
    """{'x': {...}, 'y': {...}} for the named figure's visible axes (see JS_AXIS_LABELS)."""
    return page.evaluate(JS_AXIS_LABELS, figure)


def assert_every_token_labelled(page, figure: str, n: int) -> None:
    """Every row and column 0..n-1 of the figure carries a label naming its index, and at the
    figure's size every label is painted, none overlapping its neighbour."""
    axes = axis_labels(page, figure)
    assert axes, f"{figure}: no visible axis"
    for side, a in axes.items():
        where = f"{figure} {side} axis (font {a['font']})"
        assert sorted(a["ticks"]) == list(range(n)), (where, a["ticks"])
        for tick, label in zip(a["ticks"], a["labels"], strict=True):
            assert label is not None and label.split(":")[0].split(" ")[0] == str(tick), (
                where,
                tick,
                label,
            )
        assert a.get("shown") == list(range(n)), (where, a.get("shown"), a["labels"])
        assert min(a["gaps"]) >= 0, (where, a["gaps"])


def text_of(engine: Engine, base: str, n: int) -> str:
    """The longest prefix of ``base`` repeated that the default model reads as ``n`` tokens."""
    tok = engine.tokenizer(engine.default_model)
    text = base * (n // 4 + 1)
    while len(tok.encode(text)) > n:
        text = text[:-1]
    assert len(tok.encode(text)) == n, (n, text)
    return text


# Tokens that give some allowed attention probabilities far below 1e-12 (layer 2, head 1 of
# the default model): the cells a "below 1e-12 means masked" rule would grey out.
TINY_TEXT = (
    "def f(x):\n    return x * 2\n\nThe quick brown fox jumps over the lazy dog. "
    "1234567890 !@#$%^&*() "
)
SHORT_TEXT = "If the file does not exist, an exception is raised and the file is not created. "
