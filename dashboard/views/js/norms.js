// LayerNorm and RMSNorm step by step, in float64, and the typed vector's parsing and notices:
// the twins of dashboard.lessons.norms (layer_norm, rms_norm, parse_vector, constant_notice)
// and dashboard.lessons.residual (overflow_notice, typed_notices), tested against them in
// Chromium on shared cases (tests/test_kernels_norms.py). Needs common.js (py_g).

const FLOAT32_MAX = 3.4028234663852886e38;

function mean_of(values) {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

// LayerNorm of one vector: (x − mean) / sqrt(var + eps) · weight + bias (weight, bias: null
// for none). Returns the statistics and the vectors on the way.
function layer_norm(x, weight, bias, eps) {
  const n = x.length;
  if (n === 0) throw new Error("normalise a vector of at least one number");
  const mean = mean_of(x);
  const centred = new Float64Array(n);
  for (let i = 0; i < n; i++) centred[i] = x[i] - mean;
  let sq = 0;
  for (const c of centred) sq += c * c;
  const variance = sq / n; // biased, as LayerNorm's
  const std = Math.sqrt(variance + eps);
  const normalised = new Float64Array(n), out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    normalised[i] = centred[i] / std;
    let v = normalised[i];
    if (weight) v *= weight[i];
    if (bias) v += bias[i];
    out[i] = v;
  }
  return {mean: mean, var: variance, std: std, normalised: normalised, out: out};
}

// RMSNorm of one vector: x / sqrt(mean(x²) + eps) · weight (null for none).
function rms_norm(x, weight, eps) {
  const n = x.length;
  if (n === 0) throw new Error("normalise a vector of at least one number");
  let sq = 0;
  for (const v of x) sq += v * v;
  const mean_square = sq / n;
  const rms = Math.sqrt(mean_square + eps);
  const normalised = new Float64Array(n), out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    normalised[i] = x[i] / rms;
    out[i] = weight ? normalised[i] * weight[i] : normalised[i];
  }
  return {mean_square: mean_square, rms: rms, normalised: normalised, out: out};
}

// Python's repr() of a string without control characters (what parse_vector's messages quote).
function py_repr(s) {
  if (s.includes("'") && !s.includes('"')) return `"${s}"`;
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

// What Python's float() reads: a decimal number (underscores between digits), inf or nan.
const DIGITS = String.raw`\d(?:_?\d)*`;
const DECIMAL = new RegExp(
  String.raw`^[+-]?(?:${DIGITS}(?:\.(?:${DIGITS})?)?|\.${DIGITS})(?:[eE][+-]?${DIGITS})?$`
);
const NOT_FINITE = /^[+-]?(?:inf|infinity|nan)$/i;

// The numbers a student typed (commas, spaces or both between them) as a Float64Array, or an
// Error whose message is parse_vector's.
function parse_vector(text, limit) {
  limit = limit == null ? 4096 : limit;
  const parts = String(text).replace(/,/g, " ").split(/\s+/).filter((p) => p);
  if (!parts.length) throw new Error("type a few numbers, e.g. 1, 2, 3, 10");
  if (parts.length > limit) throw new Error(`${parts.length} numbers is more than ${limit}`);
  const out = new Float64Array(parts.length);
  parts.forEach((p, i) => {
    let v = NaN;
    if (DECIMAL.test(p)) v = Number(p.replace(/_/g, ""));
    else if (!NOT_FINITE.test(p)) throw new Error(`${py_repr(p)} is not a number`);
    if (!Number.isFinite(v)) throw new Error(`${py_repr(p)} is not a finite number`);
    if (Math.abs(v) > FLOAT32_MAX) {
      throw new Error(
        `${p} is beyond float32's largest value (${py_g(FLOAT32_MAX, 4)}): the model's ` +
          "arithmetic would overflow to inf"
      );
    }
    out[i] = v;
  });
  return out;
}

// norms.constant_notice: what eps does to a vector whose numbers are all equal, or "".
function constant_notice(x, eps) {
  let lo = Infinity, hi = -Infinity;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (hi - lo !== 0) return "";
  const e = py_g(eps, 6);
  return (
    "Every number is the same, so the variance is 0: without eps, LayerNorm would divide " +
    `0 by 0. With eps = ${e} under the root it divides 0 by sqrt(${e}) and every ` +
    "output is 0 (then β)."
  );
}

// residual.overflow_notice: what float32 does when the squares pass its largest value, or "".
function overflow_notice(x) {
  let top = 0;
  for (const v of x) top = Math.max(top, Math.abs(v));
  if (!x.length || top * top <= FLOAT32_MAX) return "";
  return (
    `${py_g(top, 4)}² = ${py_g(top * top, 4)} is beyond float32's largest value ` +
    `(${py_g(FLOAT32_MAX, 4)}): in the model's float32 arithmetic the squares overflow to inf, ` +
    "so the variance and the mean square are inf and every output is 0 (or NaN). These " +
    "steps are in float64, which holds them."
  );
}

// residual.typed_notices
function typed_notices(x, eps) {
  return [constant_notice(x, eps), overflow_notice(x)].filter((n) => n);
}
