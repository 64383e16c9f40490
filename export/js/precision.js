// The bit explorer: IEEE 754 round to nearest, ties to even, from the exact float64, for a
// format with E exponent bits and M mantissa bits (subnormals, overflow to ±inf, −0 kept).

// The unbiased exponent of a normal float64 (its bits, so exact).
function exponent_of(a) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, a);
  return ((view.getUint32(0) >>> 20) & 0x7ff) - 1023;
}

function round_to(x, E, M) {
  if (Number.isNaN(x) || x === 0 || !Number.isFinite(x)) return x;
  const bias = 2 ** (E - 1) - 1, emin = 1 - bias;
  const max = (2 - 2 ** -M) * 2 ** bias;
  const a = Math.abs(x);
  // float64 subnormals lie far below every format's smallest normal: emin applies
  const e = a < 2 ** emin ? emin : Math.max(exponent_of(a), emin);
  const q = 2 ** (e - M); // the spacing of the format's values near a
  const n = a / q; // exact: q is a power of two, n < 2^(M+1)
  let r = Math.floor(n);
  const d = n - r;
  if (d > 0.5 || (d === 0.5 && r % 2 === 1)) r += 1;
  let v = r * q;
  if (v > max) v = Infinity;
  return x < 0 ? -v : v;
}

// The bit pattern (sign first) of a value the format stores exactly.
function bits_of(v, E, M) {
  const bias = 2 ** (E - 1) - 1, emin = 1 - bias;
  const sign = v < 0 || Object.is(v, -0) ? "1" : "0";
  const a = Math.abs(v);
  let exp, mant;
  if (Number.isNaN(v)) return "0" + "1".repeat(E) + "1" + "0".repeat(M - 1);
  if (a === Infinity) { exp = 2 ** E - 1; mant = 0; }
  else if (a < 2 ** emin) { exp = 0; mant = a / 2 ** (emin - M); }
  else { const e = exponent_of(a); exp = e + bias; mant = a / 2 ** (e - M) - 2 ** M; }
  return sign + exp.toString(2).padStart(E, "0") + mant.toString(2).padStart(M, "0");
}

function value_of(bits, E, M) {
  const bias = 2 ** (E - 1) - 1;
  const s = bits[0] === "1" ? -1 : 1;
  const exp = parseInt(bits.slice(1, 1 + E), 2), mant = parseInt(bits.slice(1 + E), 2);
  if (exp === 2 ** E - 1) return mant ? NaN : s * Infinity;
  if (exp === 0) return s * mant * 2 ** (1 - bias - M);
  return s * (2 ** M + mant) * 2 ** (exp - bias - M);
}

// precision.parse_value's common cases: decimals, inf, nan, ∞, the typographic minus, 2^n.
function parse_value(text) {
  const s = String(text).trim().replace(/\u2212/g, "-").replace(/\u221e/g, "inf");
  if (!s) throw new Error("type a number (e.g. 65504, 1e-8, -0, inf, nan or 2^-24)");
  const power = /^([+-]?)2\s*(?:\^|\*\*)\s*\(?\s*([+-]?\d{1,6})\s*\)?$/.exec(s);
  if (power) {
    const n = parseInt(power[2], 10);
    if (n > 1023 || n < -1074) throw new Error(`2^${n} is beyond float64; try inf or 0`);
    return (power[1] === "-" ? -1 : 1) * 2 ** n;
  }
  const hex = /^([+-]?)0x([0-9a-f]*)(?:\.([0-9a-f]*))?(?:p([+-]?\d+))?$/i.exec(s);
  if (hex && (hex[2] || hex[3])) {
    // exact binary values: the digits as one integer, scaled by a power of two
    const frac = hex[3] || "", exp = parseInt(hex[4] || "0", 10) - 4 * frac.length;
    const digits = BigInt("0x" + (hex[2] || "0") + frac);
    const v = (hex[1] === "-" ? -1 : 1) * Number(digits) * 2 ** exp;
    if (!Number.isFinite(v)) throw new Error(`'${s.slice(0, 40)}' is beyond float64's range; type inf`);
    return v;
  }
  const low = s.toLowerCase().replace(/^\+/, "");
  if (/^-?(inf|infinity)$/.test(low)) return low.startsWith("-") ? -Infinity : Infinity;
  if (/^-?nan$/.test(low)) return NaN;
  if (!/^[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(e[+-]?\d+)?$/i.test(s)) {
    throw new Error(`'${s.slice(0, 40)}' is not a number (e.g. 65504, 1e-8, -0, inf or 2^-24)`);
  }
  const v = Number(s.replace(/_/g, ""));
  if (!Number.isFinite(v)) throw new Error(`'${s.slice(0, 40)}' is beyond float64's range; type inf`);
  if (v === 0 && /[1-9]/.test(s.split(/[eE]/)[0])) {
    throw new Error(`'${s.slice(0, 40)}' is below float64's smallest subnormal; every format stores 0`);
  }
  return v;
}

function show_number(v) {
  if (Object.is(v, -0)) return "-0";
  if (Number.isNaN(v)) return "nan";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  return String(v);
}

function category(v, E) {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return "infinity";
  if (v === 0) return "zero";
  return Math.abs(v) < 2 ** (2 - 2 ** (E - 1)) ? "subnormal" : "normal";
}

// The formats shown: {name, label, E, M} from the lesson's parallel lists.
const specs = names.map((name, i) => (
  {name, label: titles[i], E: exponent_bits[i], M: mantissa_bits[i]}
));

function draw() {
  let x;
  try {
    x = parse_value(value.value);
  } catch (e) {
    show_error(error, e.message);
    return; // the last good value stays on screen
  }
  show_error(error, "");
  const cols = {x: [], y: [], bit: [], color: [], fmt: [], index: []};
  const rows = {name: [], bits: [], stored: [], error: [], category: []};
  let html = "<table class='formats'><tr><th>format</th><th>stored value</th>" +
    "<th>error (stored − typed)</th><th></th></tr>";
  specs.forEach((f, y) => {
    const stored = round_to(x, f.E, f.M);
    const b = bits_of(stored, f.E, f.M);
    for (let i = 0; i < b.length; i++) {
      const field = i === 0 ? 0 : i <= f.E ? 1 : 2; // sign, exponent, mantissa
      cols.x.push(i); cols.y.push(y); cols.bit.push(b[i]);
      cols.color.push(colors[field]); cols.fmt.push(f.name); cols.index.push(i);
    }
    const err = stored === x ? 0 : stored - x;
    rows.name.push(f.name); rows.bits.push(b); rows.stored.push(stored);
    rows.error.push(err); rows.category.push(category(stored, f.E));
    const e_text = Number.isNaN(err) ? "—" : err === 0 ? "0 (exact)" : Number.isFinite(err) ? err.toExponential(3) : "overflow";
    html += `<tr><td>${esc(f.label)}</td><td class='num'>${esc(show_number(stored))}</td>` +
      `<td class='num'>${esc(e_text)}</td><td>${category(stored, f.E)}</td></tr>`;
  });
  bits.data = cols;
  formats.data = rows;
  table.text = html + "</table>";
}

// A click on a bit flips it: the value becomes that pattern's value in that format.
function tap(ev) {
  if (ev.x == null || ev.y == null) return;
  const y = Math.round(ev.y), i = Math.round(ev.x);
  if (y < 0 || y >= specs.length || formats.data.bits.length <= y) return;
  const f = specs[y], b = formats.data.bits[y];
  if (i < 0 || i >= b.length) return;
  const flipped = b.slice(0, i) + (b[i] === "1" ? "0" : "1") + b.slice(i + 1);
  value.value = show_number(value_of(flipped, f.E, f.M));
}
