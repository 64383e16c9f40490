// The precision lesson in the page: the bit explorer (rounding by rounding.js), the tensor
// picker over the histograms embedded at export, and the masked-scores table of the chosen
// layer and head. The text is the dashboard's (dashboard/views/precision.py bit_info_html):
// numbers are written as Python writes them (repr, "{:.3g}").

// repr(float(v)) as Python writes it: the shortest digits that read back to v, in fixed
// notation for 1e-4 <= |v| < 1e16, else d.ddde±XX.
function py_repr(v) {
  if (Number.isNaN(v)) return "nan";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  const [m, e] = Math.abs(v).toExponential().split("e");
  return (v < 0 ? "-" : "") + place(m.replace(".", ""), parseInt(e, 10), 16, true);
}

const py_g3 = (v) => py_g(v, 3); // format(v, ".3g")

// Significant `digits` ("1234": 1.234) times 10^exp, in fixed notation when -4 <= exp < big,
// else scientific; `point`: keep a ".0" on a whole number (as repr does).
function place(digits, exp, big, point) {
  digits = digits.replace(/0+$/, "") || "0";
  if (exp < -4 || exp >= big) {
    const frac = digits.slice(1);
    const sign = exp < 0 ? "-" : "+";
    return digits[0] + (frac ? "." + frac : "") + "e" + sign + String(Math.abs(exp)).padStart(2, "0");
  }
  let whole, frac;
  if (exp >= 0) {
    whole = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
    frac = digits.slice(exp + 1);
  } else {
    whole = "0";
    frac = "0".repeat(-exp - 1) + digits;
  }
  if (frac) return whole + "." + frac;
  return point ? whole + ".0" : whole;
}

// A value as the text box shows it (precision.typed_form): repr with no needless ".0".
function typed_form(v) {
  const s = py_repr(v);
  return s.endsWith(".0") ? s.slice(0, -2) : s;
}

const show = (v) => (v === null ? "—" : py_repr(v)); // precision._num

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

// What format `name` stores for `x`, in the words of precision.bit_info_html.
function bit_info(x, name) {
  const f = format_spec(name);
  const stored = round_value(x, name), bits = encode(x, name);
  const [below, above] = neighbours(stored, name);
  const category = Number.isNaN(stored) ? "nan" : !Number.isFinite(stored) ? "inf"
    : stored === 0 ? "zero" : Math.abs(stored) < 2 ** f.emin ? "subnormal" : "normal";
  const mant = parseInt(bits.slice(1 + f.E), 2);
  // precision.special_words: how this format stores inf and NaN, and what an all-ones
  // exponent holds when it holds a normal value
  const [inf_words, nan_words, top_words] = specials[names.indexOf(name)];
  let how;
  if (category === "normal") {
    const field = bits.slice(1, 1 + f.E), e = parseInt(field, 2) - f.bias;
    how = `= (−1)<sup>${bits[0]}</sup> · ${py_repr(1 + mant / 2 ** f.M)} · 2<sup>${e}</sup>`;
    if (!field.includes("0")) how += top_words;
  } else if (category === "inf" || category === "nan") {
    how = category === "inf" ? inf_words : nan_words;
  } else {
    how = `= (−1)<sup>${bits[0]}</sup> · ${py_repr(mant / 2 ** f.M)} · 2<sup>${f.emin}</sup>` +
      " (exponent field 0: no implicit leading 1)";
  }
  const finite = Number.isFinite(x);
  let abs = Math.abs(stored - x);
  if (!finite && x === stored) abs = 0; // the same infinity
  const rel = x === 0 ? 0 : finite ? abs / Math.abs(x) : NaN;
  const nan = category === "nan", overflow = finite && !Number.isFinite(stored);
  const flushed = finite && x !== 0 && stored === 0;
  const flags = [  // precision._flags
    ["overflow → " + (nan ? "NaN" : "inf"), overflow],
    ["flushed to zero", flushed],
    ["subnormal", x !== 0 && category === "subnormal"],
    ["rounded", finite && Number.isFinite(stored) && stored !== x && !flushed],
    ["NaN", nan && !overflow],
  ].filter(([, on]) => on).map(([t]) => `<span class='flag'>${t}</span>`);
  return `<p>stores <b class='num stored'>${show(stored)}</b> ${how}<br>` +
    `neighbours <span class='num below'>${show(below)}</span> and ` +
    `<span class='num above'>${show(above)}</span> · abs error ` +
    `<span class='num'>${py_g3(abs)}</span> · rel error ` +
    `<span class='num'>${py_g3(rel)}</span> · ` +
    (flags.join(" ") || "<span class='hint'>stored exactly</span>") + "</p>";
}

// The typed value in every format: bits (filled = 1, as the dashboard's solid buttons), the
// stored values and what each stores.
function draw_value() {
  let x;
  try {
    x = parse_value(value.value);
  } catch (e) {
    show_error(error, e.message);
    return; // the last good value stays on screen
  }
  show_error(error, "");
  const cols = {x: [], y: [], bit: [], color: [], alpha: [], text_color: [], fmt: [], index: []};
  const rows = {name: [], bits: [], stored: []};
  let text = "";
  names.forEach((name, y) => {
    const f = format_spec(name), b = encode(x, name);
    for (let i = 0; i < b.length; i++) {
      const c = field_colors[i === 0 ? 0 : i <= f.E ? 1 : 2]; // sign, exponent, mantissa
      cols.x.push(i); cols.y.push(y); cols.bit.push(b[i]); cols.color.push(c);
      cols.alpha.push(b[i] === "1" ? 1 : 0); cols.text_color.push(b[i] === "1" ? "#ffffff" : c);
      cols.fmt.push(name); cols.index.push(i);
    }
    rows.name.push(name); rows.bits.push(b); rows.stored.push(round_value(x, name));
    text += `<div class='precision-info-${name}'><b>${esc(titles[y])}</b>${bit_info(x, name)}</div>`;
  });
  bits.data = cols;
  formats.data = rows;
  info.text = text;
}

// A click on a bit flips it: the value becomes that pattern's value in that format.
function tap(ev) {
  if (ev.x == null || ev.y == null) return;
  const y = Math.round(ev.y), i = Math.round(ev.x);
  if (y < 0 || y >= names.length || formats.data.bits.length <= y) return;
  const b = formats.data.bits[y];
  if (i < 0 || i >= b.length) return;
  const flipped = b.slice(0, i) + (b[i] === "1" ? "0" : "1") + b.slice(i + 1);
  value.value = typed_form(decode(flipped, names[y]));
}

// The histogram of the chosen tensor, from the table embedded at export.
function show_tensor() {
  const t = tensors.data, k = t.name.indexOf(picker.value);
  if (k < 0) return;
  const top = Array.from(t.bars[k]), lo = t.lo[k];
  hist.data = {
    left: top.map((_, i) => lo + i * step),
    right: top.map((_, i) => lo + (i + 1) * step),
    top,
  };
  const [left, right, bottom, band_top] = t.bands[k].map((c) => Array.from(c));
  hist_bands.data = {...hist_bands.data, left, right, bottom, top: band_top};
  hist_figure.x_range.setv({start: lo, end: t.hi[k]});
  hist_figure.y_range.setv({start: 0, end: t.ymax[k]});
  hist_figure.title.text = t.title[k];
  counts.text = t.counts[k];
}

// The chosen head's table: the template with its varying cells filled in.
function show_mask() {
  const cells = mask_cells[layer.active * n_head + head.active], k = mask_varying.length;
  mask.text = mask_template.replace(/@(\w+?)(\d*)@/g, (_, key, n) => {
    if (key === "layer") return String(layer.active);
    if (key === "head") return String(head.active);
    return cells[Number(n) * k + mask_varying.indexOf(key)];
  });
}

// One callback for every control: what changed says what to redraw.
function dispatch(obj) {
  if (obj === value) draw_value();
  else if (obj === picker) show_tensor();
  else if (obj === layer || obj === head) show_mask();
  else if (obj && obj.event_name === "tap") tap(obj);
  else { draw_value(); show_tensor(); show_mask(); } // the page has loaded
}
