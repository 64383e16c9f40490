// Rounding a float64 to a number format, as dashboard.lessons.precision.round_to does: round
// to nearest, ties to even, once, from the exact float64; subnormals; overflow to ±inf; NaN
// kept. fp8 e4m3fn has no infinity: overflow and ±inf give NaN, S.1111.111 is its NaN and its
// largest finite value is 448 (S.1111.110). Tested against ml_dtypes in
// tests/test_kernels_rounding.py.

const FORMAT_BITS = {
  fp32: [8, 23], fp16: [5, 10], bf16: [8, 7], fp8_e4m3: [4, 3], fp8_e5m2: [5, 2],
};

// {E, M, bias, emin, max, fn}: fn = "finite + NaN" (no inf: the all-ones exponent is normal).
function format_spec(name) {
  const [E, M] = FORMAT_BITS[name];
  const bias = 2 ** (E - 1) - 1, fn = name === "fp8_e4m3";
  const top = fn ? 2 ** E - 1 - bias : bias; // exponent of the largest finite binade
  const max = (2 - 2 ** -(fn ? M - 1 : M)) * 2 ** top; // fn: all-ones mantissa there is NaN
  return {name, E, M, bias, emin: 1 - bias, max, fn};
}

// The unbiased exponent of a normal float64 (read from its bits, so exact).
function exponent_of(a) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, a);
  return ((view.getUint32(0) >>> 20) & 0x7ff) - 1023;
}

// The value format `name` stores for the float64 `x`.
function round_value(x, name) {
  const f = format_spec(name);
  if (Number.isNaN(x)) return NaN;
  if (!Number.isFinite(x)) return f.fn ? NaN : x;
  if (x === 0) return x; // ±0 kept
  const a = Math.abs(x);
  // float64 subnormals lie far below every format's smallest normal: emin applies
  const e = Math.max(exponent_of(a), f.emin);
  const q = 2 ** (e - f.M); // the spacing of the format's values near a
  const n = a / q; // exact: q is a power of two and n a normal float64
  let r = Math.floor(n);
  const d = n - r; // exact: n has at most 53 significant bits
  if (d > 0.5 || (d === 0.5 && r % 2 === 1)) r += 1;
  let v = r * q;
  if (v > f.max) v = f.fn ? NaN : Infinity;
  return x < 0 ? -v : v; // a negative value that flushes to zero gives −0
}

// The bit pattern (sign first, as a string of 0s and 1s) that stores `x` in format `name`.
// A NaN keeps the sign of what overflowed (ml_dtypes' and numpy's casts do); a NaN typed in
// is the positive quiet NaN.
function encode(x, name) {
  const f = format_spec(name);
  const v = round_value(x, name);
  const sign = x < 0 || Object.is(x, -0) ? "1" : "0";
  const a = Math.abs(v);
  let exp, mant;
  if (Number.isNaN(v)) { exp = 2 ** f.E - 1; mant = f.fn ? 2 ** f.M - 1 : 2 ** (f.M - 1); }
  else if (a === Infinity) { exp = 2 ** f.E - 1; mant = 0; }
  else if (a < 2 ** f.emin) { exp = 0; mant = a / 2 ** (f.emin - f.M); }
  else { const e = exponent_of(a); exp = e + f.bias; mant = a / 2 ** (e - f.M) - 2 ** f.M; }
  return sign + exp.toString(2).padStart(f.E, "0") + mant.toString(2).padStart(f.M, "0");
}

// The value of a bit pattern (a string, sign first) in format `name`.
function decode(bits, name) {
  const f = format_spec(name);
  const s = bits[0] === "1" ? -1 : 1;
  const exp = parseInt(bits.slice(1, 1 + f.E), 2), mant = parseInt(bits.slice(1 + f.E), 2);
  const ones = 2 ** f.E - 1;
  if (f.fn && exp === ones && mant === 2 ** f.M - 1) return NaN;
  if (!f.fn && exp === ones) return mant ? NaN : s * Infinity;
  if (exp === 0) return s * mant * 2 ** (f.emin - f.M);
  return s * (2 ** f.M + mant) * 2 ** (exp - f.bias - f.M);
}

// The representable values just below and above the stored value `v` (null where there is
// none: past ±inf, past e4m3fn's ±448, and both for NaN), as numpy.nextafter on the dtype.
function neighbours(v, name) {
  if (Number.isNaN(v)) return [null, null];
  const f = format_spec(name), width = 1 + f.E + f.M;
  const step = (dir) => {
    if (v === 0) return dir * 2 ** (f.emin - f.M); // ±0: the smallest subnormal either side
    const bits = encode(v, name);
    const away = (dir > 0) === (bits[0] === "0"); // moving away from zero
    const mag = parseInt(bits.slice(1), 2) + (away ? 1 : -1);
    const next = decode(bits[0] + mag.toString(2).padStart(width - 1, "0"), name);
    return Number.isNaN(next) ? null : next;
  };
  return [step(-1), step(1)];
}
