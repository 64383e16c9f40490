// The encoder-decoder lessons, offline (views/translator.py): the number, layer, head, feed
// (decoder) and step (cross-attention) pick one number's precomputed matrix and texts from
// `data` (snapshot_data); the page only slices and joins them.
function draw() {
  const e = data[number.options.indexOf(number.value)];
  const l = layer.active, h = head.active;
  let rows = e.rows, cols = e.cols, mats = e.mats, html = null;
  if (e.feeds) {
    const f = e.feeds[feed.active];
    rows = f.rows; cols = f.rows; mats = f.mats; html = f.text;
  }
  let shown = rows.length;
  if (e.headers) {
    shown = Math.min(step.value, rows.length);
    html = e.headers[shown - 1] + "<ol class='tr-steps'>" + e.items[l][h].slice(0, shown).join("")
      + "</ol>";
  } else if (e.texts) {
    html = e.texts[l][h];
  }
  verdict.text = e.verdict;
  text.text = html;
  const m = mats[l][h].slice(0, shown);
  const flat = new Float32Array(shown * cols.length);
  m.forEach((r, i) => r.forEach((v, j) => { flat[i * cols.length + j] = v; }));
  const NDArray = source.data.image[0].constructor;
  source.data = {image: [new NDArray(flat, [shown, cols.length])], x: [-0.5], y: [-0.5],
    dw: [cols.length], dh: [shown]};
  fig.x_range.start = -0.5; fig.x_range.end = cols.length - 0.5;
  fig.y_range.start = rows.length - 0.5; fig.y_range.end = -0.5;
  const label = (axis, names) => {
    axis.ticker.ticks = names.map((_, i) => i);
    axis.major_label_overrides = new Map(names.map((n, i) => [i, n]));
  };
  label(fig.below[0], cols);
  label(fig.left[0], rows);
  fig.title.text = titles + ", L" + l + " H" + h;
}
