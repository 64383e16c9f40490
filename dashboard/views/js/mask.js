// The mask lesson: attention.variant_mask and restage on the embedded scaled scores.

// May query i attend to key j under the chosen mask?
function allowed_at(k, i, j, w, p) {
  if (k === "none") return true;
  if (j > i) return false; // every other variant is causal
  if (k === "sliding") return j > i - w;
  if (k === "padding") return j >= p;
  return true;
}

function draw() {
  const l = layer.active, h = head.active, k = kinds[kind.active];
  const w = Math.round(win.value), p = Math.min(Math.round(pad.value), T);
  const f = fills[fill.active] === null ? -Infinity : fills[fill.active];
  win.visible = k === "sliding";
  pad.visible = k === "padding";
  const off = (l * H + h) * T * T, scores = model_scores(data);
  const a_img = allowed_src.data.image[0], m_img = masked_src.data.image[0];
  const s_img = scores_src.data.image[0], p_img = probs_src.data.image[0];
  const gone = probs_removed.data.image[0];
  let top = 0, all_top = 0, diff = 0;
  const empty = [];
  for (let i = 0; i < T; i++) {
    const row = new Float64Array(T), row_inf = new Float64Array(T), row_big = new Float64Array(T);
    let any = false;
    for (let j = 0; j < T; j++) {
      const ok = allowed_at(k, i, j, w, p);
      const s = scores[off + i * T + j];
      row[j] = ok ? s : f;
      row_inf[j] = ok ? s : -Infinity;
      row_big[j] = ok ? s : -1e9;
      a_img[i * T + j] = ok ? 1 : 0;
      m_img[i * T + j] = row[j];
      s_img[i * T + j] = s;
      if (ok && Number.isFinite(s)) top = Math.max(top, Math.abs(s));
      if (Number.isFinite(s)) all_top = Math.max(all_top, Math.abs(s));
      any = any || ok;
    }
    const probs = softmax_row(row);
    for (let j = 0; j < T; j++) {
      p_img[i * T + j] = probs[j];
      // a removed key that got no weight is drawn masked (plots.removed_cells)
      gone[i * T + j] = a_img[i * T + j] === 0 && probs[j] === 0 ? 1 : 0;
    }
    if (!any) {
      empty.push(i);
      continue;
    }
    // −∞ against −10⁹ on the rows that keep a key (lessons.attention.fill_comparison)
    const a = softmax_row(row_inf), b = softmax_row(row_big);
    for (let j = 0; j < T; j++) diff = Math.max(diff, Math.abs(a[j] - b[j]));
  }
  masked_mapper.low = -(top || 1);
  masked_mapper.high = top || 1;
  // in classroom mode the raw scores share the masked scores' colour bar (MatrixPlot.update)
  const raw = shared_bar ? top || 1 : all_top || 1;
  scores_mapper.low = -raw;
  scores_mapper.high = raw;
  for (const src of [allowed_src, scores_src, masked_src, probs_src, probs_removed]) {
    src.change.emit();
  }
  explain.text = `<p>${texts[kind.active]}</p>`;
  story.text = empty.length
    ? fill_template(story_empty, {rows: empty.join(", ")})
    : fill_template(story_full, {diff: py_exp(diff, 1)});
}
