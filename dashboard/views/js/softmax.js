// The sampling kernel: dashboard/lessons/sampling.py's pipeline in float64, rule for rule
// (tests/test_kernels_softmax.py runs both on shared cases). softmax(x / T) → top-k (on the
// logits, ties with the k-th kept) → top-p (shortest run from the top reaching p, ties with
// the last kept) → renormalise; T = 0 is greedy (one-hot on the first maximum).

// Token ids from the most to the least likely; equal values by increasing id (rank_order).
function rank_order(x) {
  const idx = Array.from(x, (_, i) => i);
  return idx.sort((a, b) => x[b] - x[a] || a - b);
}

function renormalise(p, keep) {
  const out = new Float64Array(p.length);
  let sum = 0;
  for (let i = 0; i < p.length; i++) if (keep[i]) out[i] = p[i];
  for (const v of out) sum += v;
  for (let i = 0; i < p.length; i++) out[i] /= sum;
  return out;
}

// softmax(x / T); the maximum is subtracted first, so nothing overflows and -inf gives 0.
function tempered_softmax(x, t) {
  let m = -Infinity, arg = 0;
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]) || x[i] === Infinity) throw new Error("logits must be finite or -inf");
    if (x[i] > m) { m = x[i]; arg = i; }
  }
  if (m === -Infinity) throw new Error("every logit is -inf: no token is possible");
  const out = new Float64Array(x.length);
  if (t === 0) { out[arg] = 1; return out; }
  let sum = 0;
  for (let i = 0; i < x.length; i++) { out[i] = Math.exp((x[i] - m) / t); sum += out[i]; }
  for (let i = 0; i < x.length; i++) out[i] /= sum;
  return out;
}

// Keep every value ≥ the k-th largest (ties with the k-th all kept); k null: keep all.
function at_least_kth(x, k) {
  if (k === null || k >= x.length) return Array.from(x, () => true);
  const kth = Float64Array.from(x).sort()[x.length - k];
  return Array.from(x, (v) => v >= kth);
}

// The smallest probability top-p keeps, from probabilities sorted high to low.
function nucleus_floor(descending, p) {
  let mass = 0;
  for (let i = 0; i < descending.length; i++) {
    mass += descending[i];
    if (mass >= p) return descending[i];
  }
  return descending[descending.length - 1]; // rounding kept the mass below p: keep all
}

function top_p_mask(q, p) {
  if (p >= 1) return Array.from(q, () => true);
  let total = 0;
  for (const v of q) total += v;
  const qq = Float64Array.from(q, (v) => v / total);
  const floor = nucleus_floor(Float64Array.from(rank_order(qq), (i) => qq[i]), p);
  return Array.from(qq, (v) => v >= floor);
}

// One row through the pipeline (sampling.distribution): k null is off, p = 1 is off.
function distribution(x, t, k, p) {
  const tempered = tempered_softmax(x, t);
  const k_keep = at_least_kth(x, k);
  const after_k = renormalise(tempered, k_keep);
  const p_keep = top_p_mask(after_k, p);
  const final = renormalise(after_k, p_keep);
  const kept = k_keep.map((kk, i) => kk && p_keep[i]);
  return {tempered, after_k, final, kept};
}

// Shannon entropy in nats (0 · log 0 = 0).
function entropy(p) {
  let h = 0;
  for (const v of p) if (v > 0) h -= v * Math.log(v);
  return Math.max(h, 0);
}

// sampling.temperature_curves: for each T, the probabilities of the top_n tokens and the
// entropy of what is sampled from. Sorted once: dividing by T > 0 keeps the order.
function temperature_curves(x, temps, top_n, k, p) {
  const order = rank_order(x);
  const xs = Float64Array.from(order, (i) => x[i]);
  const k_keep = at_least_kth(xs, k);
  const n = Math.min(top_n, x.length);
  const probs = [], h = [];
  for (const t of temps) {
    let q = renormalise(tempered_softmax(xs, t), k_keep);
    if (p < 1) {
      const floor = nucleus_floor(q, p);
      q = renormalise(q, Array.from(q, (v) => v >= floor));
    }
    probs.push(Array.from(q.subarray(0, n)));
    h.push(entropy(q));
  }
  return {ids: order.slice(0, n), probs, entropy: h};
}
