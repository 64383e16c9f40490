// The "K/V heads and the cache" lesson, offline (views/kvcache.py). draw_share: the choices'
// precomputed diagrams and texts. draw_heads / tap_head: one layer's probabilities of the
// grouped-query model (probs, flattened (L, H, T, T)) into the heads' heatmaps. draw_growth:
// the chosen preset's per-token bytes (info) times the context and batch typed in.

function draw_share() {
  const c = choices[share.active];
  nodes.data = c.nodes;
  links.data = c.links;
  text.text = c.text;
  fig.title.text = c.title;
}

function draw_heads() {
  const l = layer.active, query = state.data.query[0], p = probs.data.probs, parts = [];
  for (let h = 0; h < H; h++) {
    const off = (l * H + h) * T * T;
    const img = images[h].data.image[0], gone = removed[h].data.image[0];
    let best = -1, at_best = 0;
    for (let at = 0; at < T * T; at++) {
      img[at] = p[off + at];
      gone[at] = at % T > Math.floor(at / T) && p[off + at] === 0 ? 1 : 0;
    }
    for (let j = 0; j < T; j++) {
      const v = p[off + query * T + j];
      if (v > best) { best = v; at_best = j; }  // ties: the earlier key (top_attended)
    }
    images[h].change.emit();
    removed[h].change.emit();
    selections[h].data = {x: [(T - 1) / 2, query], y: [query, query], w: [T, 1], h: [1, 1]};
    if (best > 0) parts.push(fill_template(head_t, {h, key: esc(labels[at_best]), p: py_fixed(best, 3)}));
  }
  distance.text = distances[l];
  top.text = fill_template(top_t, {query: esc(labels[query]), heads: parts.join("; ")});
}

function tap_head(h, ev) {
  const i = Math.round(ev.y);
  if (!(i >= 0 && i < T)) return;
  state.data = {query: [i]};
  draw_heads();
}

// f"{n:,}" of a whole number
function commas(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

// kvcache.human_bytes
function human_bytes(n) {
  if (n < 1024) return `${commas(Math.trunc(n))} B`;
  let exp = 0;
  while (n >= 1024 ** (exp + 1) && exp + 1 < units.length) exp++;
  const value = n / 1024 ** exp;
  const digits = value < 10 ? 2 : value < 100 ? 1 : 0;
  const fixed = py_fixed(value, digits), [whole, frac] = fixed.split(".");
  const text = commas(whole) + (frac === undefined ? "" : `.${frac}`);
  if ((text === "1,024" || text === "1,024.0") && exp + 1 < units.length) return `1.00 ${units[exp + 1]}`;
  return `${text} ${units[exp]}`;
}

// views/kvcache.unit_of
function unit_of(n) {
  let exp = 0;
  while (exp + 1 < units.length && n >= 1024 ** (exp + 1)) exp++;
  return [units[exp], 1024 ** exp];
}

// views/kvcache.parse_count: the number, or null with the field's message shown
function parse_count(box, msg, name, kept) {
  const [low, high] = limits[name], raw = box.value.trim().replace(/[,_]/g, "");
  if (/^[0-9]+$/.test(raw) && Number(raw) >= low && Number(raw) <= high) {
    show_error(msg, "");
    return Number(raw);
  }
  const shown = box.value.trim() ? `“${box.value.trim()}”` : "nothing";
  show_error(msg, fill_template(bad_t, {field: names[name], value: shown, low: commas(low),
                                        high: commas(high), kept: commas(kept)}));
  return null;
}

function draw_growth() {
  const c = parse_count(context, context_msg, "kv_context", kept.data.context[0]);
  const b = parse_count(batch, batch_msg, "kv_batch", kept.data.batch[0]);
  const n = c === null ? kept.data.context[0] : c, B = b === null ? kept.data.batch[0] : b;
  kept.data = {context: [n], batch: [B]};
  const m = info[preset.value], total = m.per_token * n * B;
  const [unit, div] = unit_of(Math.max(m.per_token * 2 * n * B, m.weights));
  const w = m.weights / div;
  source.data = {x: [0, 2 * n], one: [0, (m.per_token * 2 * n) / div],
                 batch: [0, (m.per_token * 2 * n * B) / div], weights: [w, w]};
  point.data = {x: [n], y: [total / div]};
  fig.x_range.start = 0;
  fig.x_range.end = 2 * n;
  fig.y_range.start = 0;
  fig.y_range.end = 1.1 * Math.max((m.per_token * 2 * n * B) / div, w);
  fig.left[0].axis_label = `cache (${unit})`;
  text.text = fill_template(growth_t, {
    model: esc(preset.value), per_token: human_bytes(m.per_token), layers: m.layers, kv: m.kv,
    d: m.d, context: commas(n), batch: commas(B), total: human_bytes(total),
    ratio: py_fixed(total / m.weights, 2), weights: human_bytes(m.weights),
  });
}
