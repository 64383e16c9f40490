// Helpers shared by every lesson's callbacks (prepended to each CustomJS body).

// Text for HTML: every user-derived string goes through this before it reaches a Div.
function esc(s) {
  const map = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
  return String(s).replace(/[&<>"']/g, (c) => map[c]);
}

// A number for the page: fixed digits, with NaN and infinities spelled out.
function fmt(v, digits) {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "∞";
  if (v === -Infinity) return "−∞";
  return v.toFixed(digits);
}

// Show a message in a Div (class "message error"), or hide it with "".
function show_error(box, text) {
  box.text = text ? `<p>${esc(text)}</p>` : "";
  box.visible = Boolean(text);
}

// Softmax of one row (float64); masked entries are -Infinity. A row with nothing allowed
// gives NaN, as in torch: 0/0.
function softmax_row(row) {
  let m = -Infinity;
  for (const v of row) if (v > m) m = v;
  const out = new Float64Array(row.length);
  let sum = 0;
  for (let j = 0; j < row.length; j++) {
    out[j] = Math.exp(row[j] - m);
    sum += out[j];
  }
  for (let j = 0; j < row.length; j++) out[j] /= sum;
  return out;
}

// Tick positions: every label when they fit on `pixels`, else every k-th (plots.thinned_ticks).
function thinned(n, pixels, per_label) {
  const step = Math.max(1, Math.ceil((n * per_label) / Math.max(pixels, 1)));
  const out = [];
  for (let i = 0; i < n; i += step) out.push(i);
  return out;
}
