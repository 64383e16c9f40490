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
  const off = (l * H + h) * T * T;
  const a_img = allowed_src.data.image[0], m_img = masked_src.data.image[0];
  const p_img = probs_src.data.image[0];
  let top = 0;
  const empty = [];
  for (let i = 0; i < T; i++) {
    const row = new Float64Array(T);
    let any = false;
    for (let j = 0; j < T; j++) {
      const ok = allowed_at(k, i, j, w, p);
      const s = data.data.scores[off + i * T + j];
      row[j] = ok ? s : f;
      a_img[i * T + j] = ok ? 1 : 0;
      m_img[i * T + j] = row[j];
      if (ok && Number.isFinite(s)) top = Math.max(top, Math.abs(s));
      any = any || ok;
    }
    if (!any) empty.push(i);
    const probs = softmax_row(row);
    for (let j = 0; j < T; j++) p_img[i * T + j] = probs[j];
  }
  masked_mapper.low = -(top || 1);
  masked_mapper.high = top || 1;
  for (const src of [allowed_src, masked_src, probs_src]) src.change.emit();
  explain.text = `<p>${texts[kind.active]}</p>`;
  if (empty.length) {
    story.text =
      `<p><b>Rows ${empty.join(", ")}</b> have no key left. With −∞ their softmax is 0/0 = ` +
      "<b class='nan'>NaN</b> (pink); with −10⁹ the same rows quietly become a uniform " +
      "average over keys they must not see: finite, wrong, and invisible.</p>";
  } else {
    story.text =
      "<p>Every query keeps at least one key, so −∞ and −10⁹ give the same softmax: " +
      "exp(−10⁹ − max) underflows to 0 exactly. Try the padded batch to see them part ways.</p>";
  }
}
