// The "FlashAttention's tiles" lesson, offline (views/tiles.py): the online softmax over the
// embedded q (L, H, T, d), k and v (L, KV, T, d) and the shared attention probabilities; widgets layer, head, bq, bk; state {query, step}; the
// heatmap's image, removed, fig and rects; the output's source, mapper, fig, labels; text and
// its templates.

function view_of(arr, start, n) {
  return new Float32Array(arr.buffer, arr.byteOffset + 4 * start, n);
}

// One query block's steps, as tiles.tiled_attention (one head, causal): after each key block,
// every row's running max m, running sum l of exp(s − m), and the output so far / l. float64.
function tile_steps(qh, kh, vh, r0, r1, bk) {
  const rows = r1 - r0, scale = 1 / Math.sqrt(d), steps = [];
  const m = new Float64Array(rows).fill(-Infinity), l = new Float64Array(rows);
  const acc = new Float64Array(rows * d);
  for (let c0 = 0, kb = 0; c0 < T; c0 += bk, kb++) {
    if (c0 > r1 - 1) break;  // every key of this block is in the future
    const c1 = Math.min(c0 + bk, T);
    for (let i = 0; i < rows; i++) {
      const qi = r0 + i, s = [];
      let top = m[i];
      for (let j = c0; j < c1; j++) {
        let dot = 0;
        for (let c = 0; c < d; c++) dot += qh[qi * d + c] * kh[j * d + c];
        s.push(j > qi ? -Infinity : dot * scale);
        top = Math.max(top, s[s.length - 1]);
      }
      const alpha = Math.exp(m[i] - top);
      let sum = 0;
      for (let c = 0; c < d; c++) acc[i * d + c] *= alpha;
      s.forEach((x, jj) => {
        const p = Math.exp(x - top);
        sum += p;
        for (let c = 0; c < d; c++) acc[i * d + c] += p * vh[(c0 + jj) * d + c];
      });
      l[i] = alpha * l[i] + sum;
      m[i] = top;
    }
    const out = new Float64Array(rows * d);
    for (let i = 0; i < rows; i++) for (let c = 0; c < d; c++) out[i * d + c] = acc[i * d + c] / l[i];
    steps.push({kb, c0, c1, m: Float64Array.from(m), l: Float64Array.from(l), out});
  }
  return steps;
}

function draw() {
  const li = layer.active, h = head.active, kv = Math.floor(h / (H / KV));
  const q_size = Math.min(blocks[bq.active], T), k_size = Math.min(blocks[bk.active], T);
  const query = state.data.query[0], qb = Math.floor(query / q_size);
  const r0 = qb * q_size, r1 = Math.min(r0 + q_size, T), rows = r1 - r0;
  const per = T * d;
  const qh = view_of(q.data.values, (li * H + h) * per, per);
  const kh = view_of(k.data.values, (li * KV + kv) * per, per);
  const vh = view_of(v.data.values, (li * KV + kv) * per, per);
  const steps = tile_steps(qh, kh, vh, r0, r1, k_size);
  const index = Math.min(state.data.step[0], steps.length - 1), st = steps[index];
  // the heatmap: this head's probabilities, the tiles taken so far, the current one
  const probs = view_of(attention.data.probs, (li * H + h) * T * T, T * T);
  const img = image.data.image[0], gone = removed.data.image[0];
  for (let at = 0; at < T * T; at++) {
    img[at] = probs[at];
    gone[at] = at % T > Math.floor(at / T) && probs[at] === 0 ? 1 : 0;
  }
  image.change.emit();
  removed.change.emit();
  fig.title.text = `Layer ${li}, head ${h}: ${steps.length} tiles`;
  const r = {x: [], y: [], w: [], h: [], kind: []};
  for (let j = 0; j <= st.kb; j++) {
    const c0 = j * k_size, c1 = Math.min(c0 + k_size, T);
    r.x.push((c0 + c1 - 1) / 2);
    r.y.push((r0 + r1 - 1) / 2);
    r.w.push(c1 - c0);
    r.h.push(rows);
    r.kind.push(j === st.kb ? "current" : "done");
  }
  rects.data = r;
  // the output so far, as a RowMatrix (plots.RowMatrix.update)
  let top = 0;
  for (const x of st.out) top = Math.max(top, Math.abs(x));
  out_mapper.low = -(top || 1);
  out_mapper.high = top || 1;
  const NDArray = out_source.data.image[0].constructor;
  out_source.data = {...out_source.data, image: [new NDArray(Float32Array.from(st.out), [rows, d])],
                     dw: [d], dh: [rows]};
  out_labels.data = {label: labels.slice(r0, r1)};
  const axis = out_fig.left[0], ticks = Array.from({length: rows}, (_, i) => i);
  axis.ticker.ticks = ticks;  // every row of a block is labelled (at most 32)
  axis.major_label_overrides = new Map(ticks.map((i) => [i, labels[r0 + i]]));
  out_fig.title.text = `Output so far, rows ${r0}–${r1 - 1}`;
  out_fig.y_range.start = rows - 0.5;
  out_fig.y_range.end = -0.5;
  // the text: where we are; at the last step, the differences from the full softmax and the model
  let done = "";
  if (index === steps.length - 1) {
    // the model's own probabilities (shared with the attention lesson) over the values
    const model = new Float64Array(rows * d);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < T; j++) {
        const p = probs[(r0 + i) * T + j];
        for (let c = 0; c < d; c++) model[i * d + c] += p * vh[j * d + c];
      }
    }
    let full = 0, mine = 0;
    const full_rows = full_attention_rows(qh, kh, vh, r0, r1);
    for (let at = 0; at < rows * d; at++) {
      full = Math.max(full, Math.abs(st.out[at] - full_rows[at]));
      mine = Math.max(mine, Math.abs(st.out[at] - model[at]));
    }
    done = fill_template(done_t, {full: py_exp(full, 1), model: py_exp(mine, 1)});
  }
  const table = [];
  for (let i = 0; i < rows; i++) {
    table.push(fill_template(row_t, {token: esc(labels[r0 + i]), m: py_fixed(st.m[i], 4), l: py_fixed(st.l[i], 4)}));
  }
  text.text = fill_template(step_t, {
    qb, r0, r1: r1 - 1, kb: st.kb, nk: Math.ceil(T / k_size), c0: st.c0, c1: st.c1 - 1,
    step: index + 1, nsteps: steps.length, done,
  }) + fill_template(table_t, {rows: table.join("")});
  state.data = {query: [query], step: [index]};
}

// The rows' softmax over every key at once (tiles.full_attention), for the check at the end
function full_attention_rows(qh, kh, vh, r0, r1) {
  const out = new Float64Array((r1 - r0) * d), scale = 1 / Math.sqrt(d);
  for (let qi = r0; qi < r1; qi++) {
    const s = [];
    for (let j = 0; j <= qi; j++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += qh[qi * d + c] * kh[j * d + c];
      s.push(dot * scale);
    }
    const p = softmax_row(s);
    for (let j = 0; j <= qi; j++) for (let c = 0; c < d; c++) out[(qi - r0) * d + c] += p[j] * vh[j * d + c];
  }
  return out;
}

function move(delta) {
  state.data = {query: state.data.query, step: [Math.max(state.data.step[0] + delta, 0)]};
  draw();
}

function tap(ev) {
  const i = Math.round(ev.y);
  if (!(i >= 0 && i < T)) return;
  state.data = {query: [i], step: [0]};
  draw();
}
