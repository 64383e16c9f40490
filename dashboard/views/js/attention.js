// The attention lesson: heatmap of one (layer, head) at a stage, the all-heads grid, and the
// selected query's bars. Args: data {probs} flattened (L, H, T, T) and the scores' (scores.js); widgets layer,
// head, stage; the plots' sources (image, removed, selection, grid_sel, grid_meta, grid_src,
// grid_removed, bars) and models.

function head_offset(l, h) {
  return (l * H + h) * T * T;
}

// The selected head's matrix at stage `st`, as float32 (what the image glyph draws).
function stage_matrix(l, h, st) {
  const off = head_offset(l, h);
  const sc = model_scores(data), pr = data.data.probs;
  const out = new Float32Array(T * T);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      const at = i * T + j;
      if (st === "probs") out[at] = pr[off + at];
      else if (st === "masked" && j > i) out[at] = -Infinity;
      else out[at] = sc[off + at];
    }
  }
  return out;
}

// 1 where the causal mask removed key j from query i and it got no weight (plots.removed_cells)
function removed_at(i, j, p) {
  return j > i && p === 0 ? 1 : 0;
}

function draw() {
  const l = layer.active, h = head.active, st = stages[stage.active];
  const m = stage_matrix(l, h, st);
  const img = image.data.image[0], gone = removed.data.image[0];
  let top = 0;
  for (let at = 0; at < T * T; at++) {
    img[at] = m[at];
    // over the probabilities the mask is drawn from the mask: a tiny probability may be 0.0 too
    gone[at] = st === "probs" ? removed_at(Math.floor(at / T), at % T, m[at]) : 0;
    if (st !== "probs" && Number.isFinite(m[at])) top = Math.max(top, Math.abs(m[at]));
  }
  if (st === "probs") {
    mapper.palette = prob_palette;
    mapper.low = 0; // every probability, 0.0 included, takes the palette
    mapper.high = 1;
  } else {
    mapper.palette = score_palette;
    mapper.low = -(top || 1);
    mapper.high = top || 1;
  }
  fig.title.text = `Layer ${l}, head ${h}: ${stage_labels[stage.active]}`;
  image.change.emit();
  removed.change.emit();
  // the grid's outline on the selected tile (HeadGrid.select)
  const size = T + grid_meta.data.gap[0], c = (T - 1) / 2;
  grid_sel.data = {x: [h * size + c], y: [l * size + c], w: [T + 0.6], h: [T + 0.6]};
  draw_query();
}

// Every head's probabilities tiled into the grid's one image (HeadGrid.update), NaN gaps, and
// the keys the mask removed tiled the same way into the image drawn over it.
function draw_grid() {
  const gap = grid_meta.data.gap[0], size = T + gap;
  const height = L * size - gap, width = H * size - gap;
  const flat = new Float32Array(height * width).fill(NaN);
  const gone = new Uint8Array(height * width);
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const off = head_offset(l, h);
      // (no subarray: on Bokeh's ndarray subclass it would not slice)
      for (let i = 0; i < T; i++) {
        const at = (l * size + i) * width + h * size;
        for (let j = 0; j < T; j++) {
          const p = data.data.probs[off + i * T + j];
          flat[at + j] = p;
          gone[at + j] = removed_at(i, j, p);
        }
      }
    }
  }
  // the placeholders Python sent are Bokeh ndarrays: make ones of the same kinds, full size
  const NDArray = grid_src.data.image[0].constructor;
  grid_src.data = {...grid_src.data, image: [new NDArray(flat, [height, width])]};
  const Mask = grid_removed.data.image[0].constructor;
  grid_removed.data = {...grid_removed.data, image: [new Mask(gone, [height, width])]};
}

// The selected query's probabilities as bars, the outline on its row and cell, and the text.
function draw_query() {
  const l = layer.active, h = head.active;
  const q = picked.data.query[0], k = picked.data.key[0];
  const off = head_offset(l, h);
  const row = [], colors = [], xs = [];
  for (let j = 0; j < T; j++) {
    const p = data.data.probs[off + q * T + j];
    row.push(Number.isNaN(p) ? 0 : p);
    colors.push(j === k ? accent : bar_color);
    xs.push(j);
  }
  bars.data = {x: xs, top: row, label: labels.slice(), color: colors};
  bars_fig.title.text = bar_titles[q];
  selection.data = {x: [(T - 1) / 2, k], y: [q, q], w: [T, 1], h: [1, 1]};
  const score = model_scores(data)[off + q * T + k];
  // lessons.attention.top_attended: the 5 likeliest keys, ties to the earlier one, p > 0
  const order = row.map((p, j) => j).sort((a, b) => row[b] - row[a] || a - b).slice(0, 5);
  let entropy = 0;
  for (const p of row) if (p > 0) entropy -= p * Math.log2(p);
  const rows = order
    .filter((j) => row[j] > 0)
    .map((j) => fill_template(row_t, {token: esc(labels[j]), prob: py_fixed(row[j], 3),
                             width: py_fixed(100 * row[j], 1)}))
    .join("");
  // the texts of views/attention.detail_html, filled here
  detail.text =
    fill_template(pair_t, {query: esc(labels[q]), key: esc(labels[k]), score: py_fixed(score, 3),
                  prob: py_fixed(row[k], 3), masked: k <= q ? "" : masked_t}) +
    fill_template(top_t, {entropy: py_fixed(Math.max(0, entropy), 2), rows: rows});
}

// A click on the heatmap picks the (query, key) cell under it.
function tap_heatmap(ev) {
  if (ev.x == null || ev.y == null) return;
  const i = Math.round(ev.y), j = Math.round(ev.x);
  if (i < 0 || i >= T || j < 0 || j >= T) return;
  picked.data = {query: [i], key: [j]};
  draw_query();
}

// A click on the grid selects the tile's layer and head (HeadGrid.tile_at); setting the
// buttons' `active` redraws through their own callbacks.
function tap_grid(ev) {
  if (ev.x == null || ev.y == null) return;
  const gap = grid_meta.data.gap[0], size = T + gap;
  const col = Math.floor((ev.x + 0.5) / size), rw = Math.floor((ev.y + 0.5) / size);
  const inside = ev.x + 0.5 - col * size < T + gap / 2 && ev.y + 0.5 - rw * size < T + gap / 2;
  if (!inside || rw < 0 || rw >= L || col < 0 || col >= H) return;
  if (layer.active !== rw) layer.active = rw;
  if (head.active !== col) head.active = col;
}
