// The "Embeddings, Q, K and V" lesson, offline. Args: the model's outputs q (L, H, T, d),
// k and v (L, KV, T, d) flattened, attention {probs} (L, H, T, T), hidden (L + 1, T,
// C), embed {token, position, normed} (T, C) each (position zeros, has_position false: RoPE); the sizes L, H, KV, T, d, C; the widgets layer and
// head; picked {query, key}; the figures' sources, mappers and selections; the texts' slots
// and templates (views/qkv.py).

// q·k term by term, in float64: the products, their sum and the sum over √d (qkv.dot_product)
function dot_terms(q, k) {
  const products = new Float64Array(q.length);
  let total = 0;
  for (let i = 0; i < q.length; i++) {
    products[i] = q[i] * k[i];
    total += products[i];
  }
  const scale = Math.sqrt(q.length);
  return {products, total, scale, score: total / scale};
}

// One query's output of one head: its probabilities (T) over the value rows (T × d), float64
// (qkv.head_output)
function head_output(probs, v, n, d) {
  const out = new Float64Array(d);
  for (let j = 0; j < n; j++) {
    const p = probs[j];
    for (let c = 0; c < d; c++) out[c] += p * v[j * d + c];
  }
  return out;
}

// The query head's key/value head: consecutive query heads share one (attention.kv_head)
function kv_of(h) {
  return Math.floor(h / (H / KV));
}

// rows × cols values of a flat float32 array from `start`, without a copy. (Not subarray:
// Bokeh's arrays are its own Float32Array subclass, whose subarray keeps the whole array.)
function rows_of(arr, start, rows, cols) {
  return new Float32Array(arr.buffer, arr.byteOffset + 4 * start, rows * cols);
}

// Draw `values` (rows × cols, row-major) into a RowMatrix's sources (plots.RowMatrix.update)
function show_matrix(m, values, rows, cols, selected, title) {
  const NDArray = m.source.data.image[0].constructor;
  const flat = new Float32Array(rows * cols);
  let top = 0;
  for (let at = 0; at < rows * cols; at++) {
    flat[at] = values[at];
    if (Number.isFinite(values[at])) top = Math.max(top, Math.abs(values[at]));
  }
  m.mapper.low = -(top || 1);
  m.mapper.high = top || 1;
  m.source.data = {...m.source.data, image: [new NDArray(flat, [rows, cols])]};
  m.selection.data = {
    x: selected.map(() => (cols - 1) / 2), y: selected, w: selected.map(() => cols),
    h: selected.map(() => 1),
  };
  if (title !== null) m.figure.title.text = title;
}

function draw() {
  const l = layer.active, h = head.active, kv = kv_of(h);
  const i = picked.data.query[0], j = picked.data.key[0];
  const per_head = T * d;
  // the embedding rows of the query token: token row (+ position row), the stream, its norm
  const parts = [embed.data.token];
  if (has_position) parts.push(embed.data.position);
  parts.push(hidden.data.values, embed.data.normed);  // hidden[0]: the first T × C of it
  const strip = new Float64Array(parts.length * C);
  parts.forEach((p, r) => strip.set(rows_of(p, i * C, 1, C), r * C));
  show_matrix(figs.embed, strip, parts.length, C, [], `Embedding of ${labels[i]}`);
  const q_at = (l * H + h) * per_head, kv_at = (l * KV + kv) * per_head;
  show_matrix(figs.q, rows_of(q.data.values, q_at, T, d), T, d, [i], `Q, head ${h}: ${T}×${d}`);
  show_matrix(figs.k, rows_of(k.data.values, kv_at, T, d), T, d, [j], `K, kv head ${kv}: ${T}×${d}`);
  show_matrix(figs.v, rows_of(v.data.values, kv_at, T, d), T, d, [j], `V, kv head ${kv}: ${T}×${d}`);
  // the width in heads: every head's q of the query, and every head's output concatenated
  const heads = new Float64Array(2 * H * d);
  for (let g = 0; g < H; g++) {
    heads.set(rows_of(q.data.values, (l * H + g) * per_head + i * d, 1, d), g * d);
    const p = rows_of(attention.data.probs, ((l * H + g) * T + i) * T, 1, T);
    const vg = rows_of(v.data.values, (l * KV + kv_of(g)) * per_head, T, d);
    heads.set(head_output(p, vg, T, d), H * d + g * d);
  }
  show_matrix(figs.heads, heads, 2, H * d, [], `${labels[i]}: ${H} heads × ${d} = ${H * d} wide`);
  // the pair's dot product, term by term, beside the model's score
  const dp = dot_terms(rows_of(q.data.values, q_at + i * d, 1, d), rows_of(k.data.values, kv_at + j * d, 1, d));
  let big = 0;
  for (const x of dp.products) big = Math.max(big, Math.abs(x));
  dot_fig.x_range.start = -0.5;
  dot_fig.x_range.end = d - 0.5;
  dot_fig.y_range.start = -1.1 * (big || 1);
  dot_fig.y_range.end = 1.1 * (big || 1);
  dot_bars.data = {
    x: Array.from(dp.products, (_, c) => c), top: Array.from(dp.products),
    color: Array.from(dp.products, (x) => (x >= 0 ? colors[0] : colors[1])),
  };
  // its weight: the causal softmax of the query's scores against keys 0..i (qkv.pair_weight),
  // beside the model's own probability (the scores are not embedded: that is the check)
  let weight = 0;
  if (j <= i) {
    const qi = rows_of(q.data.values, q_at + i * d, 1, d), row = [];
    for (let key = 0; key <= i; key++) row.push(dot_terms(qi, rows_of(k.data.values, kv_at + key * d, 1, d)).score);
    weight = softmax_row(row)[j];
  }
  const model = attention.data.probs[((l * H + h) * T + i) * T + j];
  dot_text.text = fill_template(dot_t, {
    query: esc(labels[i]), key: esc(labels[j]), layer: l, head: h, d: d,
    total: py_fixed(dp.total, 4), scale: py_fixed(dp.scale, 4), score: py_fixed(dp.score, 4),
    weight: py_fixed(weight, 4), model: py_fixed(model, 4),
    diff: py_exp(Math.abs(weight - model), 1), masked: j > i ? masked_t : "",
  });
  share.text = share_texts[h];
}

function tap_row(ev, which) {
  const r = Math.round(ev.y);
  if (!(r >= 0 && r < T)) return;
  const query = which === "query" ? r : picked.data.query[0];
  let key = which === "key" ? r : picked.data.key[0];
  // as the dashboard's state: a query moved before its key takes the key along (a causal
  // query sees keys up to itself); a key picked after the query stays, to show the mask
  if (which === "query" && key > query) key = query;
  picked.data = {query: [query], key: [key]};
  draw();
}
