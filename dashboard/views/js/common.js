// Helpers shared by every lesson's callbacks (prepended to each CustomJS body).

// Text for HTML: every user-derived string goes through this before it reaches a Div
// (the entities of Python's html.escape, so both homes write the same HTML).
function esc(s) {
  const map = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"};
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

// -- Python's formats, where a Python twin writes the same text --------------------------
// JavaScript rounds the exact binary value to nearest like Python, except on an exact tie
// (Python: half to even; JavaScript: away from zero). A tie shows in the exact decimal
// expansion: the dropped digits are 5 then zeros (any other double differs from a tie within
// its first 20 or so digits, well inside the 100 shown here).
const is_tie = (dropped) => /^50*$/.test(dropped);

// f"{v:.{digits}e}": two exponent digits at least ("1.2e-05").
function py_exp(v, digits) {
  if (!Number.isFinite(v)) return py_fixed(v, 0);
  let [m, e] = v.toExponential(digits).split("e");
  const sig = Math.abs(v).toPrecision(100).replace(/e.*$/, "").replace(".", "").replace(/^0+/, "");
  if (is_tie(sig.slice(digits + 1)) && Number(sig[digits]) % 2 === 0) {
    // keep the even digit (toExponential rounded it up: no carry, the exponent stands)
    const kept = sig.slice(0, digits + 1);
    m = (v < 0 ? "-" : "") + kept[0] + (digits ? `.${kept.slice(1)}` : "");
  }
  const n = Number(e);
  return `${m}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
}

// f"{v:.{digits}f}" (toFixed also differs for -0, and writes 1e21 and above with an exponent).
function py_fixed(v, digits) {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
  if (Object.is(v, -0)) return `-${(0).toFixed(digits)}`;
  if (Math.abs(v) >= 1e21) return `${BigInt(v)}${digits ? "." + "0".repeat(digits) : ""}`;
  const exact = Math.abs(v).toFixed(100), dot = exact.indexOf(".");
  const cut = dot + 1 + digits; // the first digit dropped
  if (!is_tie(exact.slice(cut))) return v.toFixed(digits);
  const kept = exact.slice(0, digits === 0 ? dot : cut);
  if (Number(kept[kept.length - 1]) % 2 === 1) return v.toFixed(digits); // up: to even
  return (v < 0 ? "-" : "") + kept;
}

// format(v, f".{precision}g"): rounded to `precision` significant digits (half to even), in
// fixed notation when the exponent X is in [-4, precision), trailing zeros dropped.
function py_g(v, precision) {
  if (!Number.isFinite(v)) return py_fixed(v, 0);
  if (v === 0) return Object.is(v, -0) ? "-0" : "0";
  const p = Math.max(precision, 1);
  const [m, e] = py_exp(v, p - 1).split("e");
  const x = Number(e), trim = (t) => (t.includes(".") ? t.replace(/\.?0+$/, "") : t);
  if (x >= -4 && x < p) return trim(py_fixed(v, p - 1 - x));
  return `${trim(m)}e${e}`;
}

// A template written once in Python with {name} slots: each slot of `values` filled, in one
// pass (a filled-in value is not read again); unknown slots stay as they are. (Not named
// `fill`: a callback argument of that name, the mask lesson's, would hide it.)
function fill_template(template, values) {
  return template.replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
}
