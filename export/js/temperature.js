// The temperature lesson: dashboard/lessons/sampling.py's pipeline in float64, on the
// embedded logits (T positions × V tokens): softmax(x / T) → top-k (on the logits, ties with
// the k-th kept) → top-p (shortest run reaching p, ties with the last kept) → renormalise.

// Python's float() on what a person types ("0,7" as 0.7; "inf", "nan"; no hex).
function parse_number(text, what) {
  const s = String(text).trim().replace(/,/g, ".");
  const word = s.toLowerCase().replace(/^\+/, "");
  if (/^-?(inf|infinity)$/.test(word)) return word.startsWith("-") ? -Infinity : Infinity;
  if (/^-?nan$/.test(word)) return NaN;
  if (!/^[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(e[+-]?\d+)?$/i.test(s)) {
    throw new Error(`${what} must be a number, not '${String(text).slice(0, 40)}'`);
  }
  return Number(s.replace(/_/g, ""));
}

function parse_top_k(text) {
  const s = String(text).trim().toLowerCase();
  if (["", "off", "none", "all"].includes(s)) return null;
  const v = parse_number(text, "top-k");
  if (!Number.isInteger(v)) throw new Error(`top-k must be a whole number ≥ 1, not '${s.slice(0, 40)}'`);
  if (v < 1) throw new Error(`top-k must be at least 1 (it keeps the k most likely tokens), not ${v}`);
  return v;
}

function parse_top_p(text) {
  const s = String(text).trim().toLowerCase();
  if (["", "off", "none"].includes(s)) return 1.0;
  const v = parse_number(text, "top-p");
  if (Number.isNaN(v)) throw new Error(`top-p must be a number in (0, 1], not '${s.slice(0, 40)}'`);
  if (!(v > 0 && v <= 1)) throw new Error(`top-p must lie in (0, 1] (1 keeps every token), not ${v}`);
  return v;
}

// Token ids from the most to the least likely; equal values by increasing id (rank_order).
function rank_order(x) {
  const idx = Array.from(x, (_, i) => i);
  return idx.sort((a, b) => x[b] - x[a] || a - b);
}

function renormalise(p, keep) {
  const out = new Float64Array(p.length);
  let sum = 0;
  for (let i = 0; i < p.length; i++) sum += keep[i] ? p[i] : 0;
  for (let i = 0; i < p.length; i++) out[i] = keep[i] ? p[i] / sum : 0;
  return out;
}

// sampling.softmax: T = 0 is a one-hot on the first maximum.
function tempered_softmax(x, t) {
  let m = -Infinity, arg = 0;
  for (let i = 0; i < x.length; i++) if (x[i] > m) { m = x[i]; arg = i; }
  const out = new Float64Array(x.length);
  if (t === 0) { out[arg] = 1; return out; }
  let sum = 0;
  for (let i = 0; i < x.length; i++) { out[i] = Math.exp((x[i] - m) / t); sum += out[i]; }
  for (let i = 0; i < x.length; i++) out[i] /= sum;
  return out;
}

// Keep every value ≥ the k-th largest (ties with the k-th all kept).
function at_least_kth(x, k) {
  if (k === null || k >= x.length) return Array.from(x, () => true);
  const sorted = Float64Array.from(x).sort();
  const kth = sorted[x.length - k];
  return Array.from(x, (v) => v >= kth);
}

// Nucleus: the shortest run from the top whose mass reaches p, plus ties with its last one.
function top_p_mask(q, p) {
  if (p >= 1) return Array.from(q, () => true);
  let total = 0;
  for (const v of q) total += v;
  const qq = Float64Array.from(q, (v) => v / total);
  const order = rank_order(qq);
  let mass = 0, n = order.length;
  for (let i = 0; i < order.length; i++) {
    mass += qq[order[i]];
    if (mass >= p) { n = i + 1; break; }
  }
  const floor = qq[order[n - 1]];
  return Array.from(qq, (v) => v >= floor);
}

function distribution(x, t, k, p) {
  const tempered = tempered_softmax(x, t);
  const k_keep = at_least_kth(x, k);
  const after_k = renormalise(tempered, k_keep);
  const p_keep = top_p_mask(after_k, p);
  const final = renormalise(after_k, p_keep);
  const kept = k_keep.map((kk, i) => kk && p_keep[i]);
  return {tempered, final, kept};
}

// Read the top-k and top-p boxes; a bad value shows a message and keeps the last good one.
function read_cuts() {
  const problems = [];
  let k = cuts.data.k[0] > 0 ? cuts.data.k[0] : null, p = cuts.data.p[0];
  try { k = parse_top_k(k_input.value); } catch (e) { problems.push(e.message); }
  try { p = parse_top_p(p_input.value); } catch (e) { problems.push(e.message); }
  cuts.data = {k: [k === null ? 0 : k], p: [p]};
  show_error(error, problems.join(" "));
}

function draw() {
  const pos = Math.min(Math.max(Math.round(position.value), 0), T - 1);
  const t = Math.max(temp.value, 0);
  const k = cuts.data.k[0] > 0 ? cuts.data.k[0] : null, p = cuts.data.p[0];
  const x = new Float64Array(V);
  const all = logits.data.logits;
  for (let i = 0; i < V; i++) x[i] = all[pos * V + i];
  const d = distribution(x, t, k, p);
  const order = rank_order(x).slice(0, N);
  bars.data = {
    x: order.map((_, i) => i),
    tid: order,
    label: order.map((i) => vocab.data.label[i]),
    tempered: order.map((i) => d.tempered[i]),
    final: order.map((i) => d.final[i]),
    kept: order.map((i) => d.kept[i]),
    color: order.map((i) => (d.kept[i] ? kept_color : cut_color)),
  };
  axis.major_label_overrides = new Map(order.map((id, i) => [i, vocab.data.label[id]]));
  fig.title.text = next_titles[pos].replace("{T}", t.toFixed(2));
  let h = 0, n_kept = 0;
  for (let i = 0; i < V; i++) {
    if (d.final[i] > 0) h -= d.final[i] * Math.log(d.final[i]);
    if (d.kept[i]) n_kept += 1;
  }
  const best = order[0];
  summary.text =
    `<p>T = <b class='num'>${t.toFixed(2)}</b> · top-k <b>${k === null ? "off" : k}</b> · ` +
    `top-p <b>${p}</b>: keep ${n_kept} of ${V} tokens. Entropy ` +
    `<b class='num'>${h.toFixed(3)}</b> nats (about ${Math.exp(h).toFixed(1)} equally likely ` +
    `choices). Most likely: <b class='tok'>${esc(vocab.data.label[best])}</b> ` +
    `(${(100 * d.final[best]).toFixed(1)}%).</p>`;
}
