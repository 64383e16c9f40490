// The sampling lesson in the snapshot: the dashboard's panels (dashboard/views/sampling.py)
// redrawn from the embedded logits with the kernel of softmax.js. Each function below mirrors
// the Python it names; the words come from Python's templates (args parts, fragments, ...).

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

const fmt_g = (v) => py_g(v, 6); // f"{v:g}"

const fmt_k = (k) => (k === null ? "off" : String(k)); // sampling._fmt_k
const fmt_prob = (p) => (p === 0 || p >= 1e-4 ? py_fixed(p, 4) : py_exp(p, 1)); // _prob
const percent = (p) => (p <= 0 ? "" : p >= 0.005 ? `${py_fixed(100 * p, 0)}%` : "<1%"); // _percent


// -- reading the controls ---------------------------------------------------------------------
// The top-k and top-p boxes; a bad value shows a message naming the last good one, which
// stays in use (SamplingLesson._typed).
function read_cuts() {
  const problems = [];
  let k = cuts.data.k[0] > 0 ? cuts.data.k[0] : null, p = cuts.data.p[0];
  const refused = (e, name, value) => fill_template(still_using, {error: e.message, name, value});
  try { k = parse_top_k(k_input.value); } catch (e) { problems.push(refused(e, "top-k", fmt_k(k))); }
  try { p = parse_top_p(p_input.value); } catch (e) { problems.push(refused(e, "top-p", fmt_g(p))); }
  cuts.data = {k: [k === null ? 0 : k], p: [p]};
  show_error(error, problems.join(" "));
}

function settings() {
  return {
    pos: Math.min(Math.max(Math.round(position.value), 0), T - 1),
    t: Math.max(temp.value, 0),
    k: cuts.data.k[0] > 0 ? cuts.data.k[0] : null,
    p: cuts.data.p[0],
  };
}

// sampling.matching_preset, as an index of the buttons (the last one is "Custom").
function matching_preset(t, k, p) {
  const i = preset_values.findIndex(([pt, pk, pp]) => pt === t && pk === k && pp === p);
  return i < 0 ? preset_values.length : i;
}

// A preset's button: set T, top-k and top-p (the boxes' own callbacks wait till the end).
function apply_preset() {
  const values = preset_values[presets.active];
  if (!values) return; // "Custom" changes nothing
  const [t, k, p] = values;
  presets.applying = true;
  try {
    temp.value = t;
    k_input.value = k === null ? "" : String(k);
    p_input.value = fmt_g(p);
  } finally {
    presets.applying = false;
  }
}

// -- drawing ----------------------------------------------------------------------------------
// SamplingLesson._draw's rows, then NextTokenBars.update.
function draw_bars(x, d, s) {
  const order = rank_order(x);
  const rank = new Int32Array(V);
  order.forEach((id, r) => { rank[id] = r + 1; });
  const chosen = s.pos + 1 < ids.length ? ids[s.pos + 1] : null;
  const shown = order.slice(0, top_n);
  if (chosen !== null && !shown.includes(chosen)) shown.push(chosen);
  const label = shown.map((i) => vocab.data.label[i]);
  const final = shown.map((i) => d.final[i]), tempered = shown.map((i) => d.tempered[i]);
  const top = shown.map((_, j) => Math.max(tempered[j], final[j]));
  const tick = shown.map((i, j) => (rank[i] <= top_n ? label[j] : `${label[j]} #${rank[i]}`));
  const n = shown.length;
  const highest = Math.max(...top);
  bars_fig.y_range.end = 1.15 * (nice.find((v) => v >= highest) ?? 1);
  const ticks = thinned(n, bar_px, per_label);
  ticker.ticks = ticks;
  axis.major_label_overrides = new Map(ticks.map((i) => [i, tick[i]]));
  marker_chosen.data = {x: shown.flatMap((i, j) => (i === chosen ? [j] : [])),
                        y: shown.flatMap((i) => (i === chosen ? [0] : []))};
  bars_fig.x_range.start = -0.5;
  bars_fig.x_range.end = n - 0.5;
  bars_fig.title.text = fill_template(titles[s.pos], {T: fmt_g(s.t)});
  bars.data = {
    x: shown.map((_, j) => j),
    label,
    tick,
    tid: shown,
    rank: shown.map((i) => rank[i]),
    tempered,
    final,
    color: shown.map((i) => (i === chosen ? accent : d.kept[i] ? kept_color : cut_color)),
    hatch: shown.map((i) => (d.kept[i] ? " " : "/")),
    kept: shown.map((i) => d.kept[i]),
    chosen: shown.map((i) => i === chosen),
    top,
    pct: final.map(percent),
  };
  return {order, rank, chosen};
}

// SamplingLesson._draw_curves and TemperatureCurves.update, then TemperatureCurves.mark.
function draw_curves(x, d, s) {
  const c = temperature_curves(x, temps, curve_n, s.k, s.p);
  const plain = s.k !== null || s.p < 1 ? temperature_curves(x, temps, 1, null, 1) : null;
  lines.forEach((src, i) => {
    const on = i < c.ids.length;
    src.data = {x: on ? temps : [], y: on ? c.probs.map((row) => row[i]) : []};
    if (on) items[i].label = {value: vocab.data.label[c.ids[i]]};
    items[i].visible = on;
  });
  h_line.data = {x: temps, y: c.entropy};
  h_plain.data = plain ? {x: temps, y: plain.entropy} : {x: [], y: []};
  plain_item.visible = plain !== null;
  let top = Math.max(...c.entropy, 0);
  if (plain) top = Math.max(top, ...plain.entropy);
  top = Math.max(top * 1.08, 0.5);
  h_range.start = 0;
  h_range.end = top;
  choices.start = 1;
  choices.end = Math.exp(top);
  const shown = Math.min(s.t, slider_max);
  span.location = h_span.location = shown;
  const probs = c.ids.map((i) => d.final[i]);
  marker.data = {x: probs.map(() => shown), y: probs, color: colors.slice(0, probs.length)};
  h_marker.data = {x: [shown], y: [entropy(d.final)]};
}

// sampling.summary_html with live=False.
function draw_summary(d, s, bars_info) {
  const {rank, chosen} = bars_info;
  const h = entropy(d.final);
  let n_kept = 0, kept_mass = 0;
  for (let i = 0; i < V; i++) if (d.kept[i]) { n_kept += 1; kept_mass += d.tempered[i]; }
  const note = s.t === 0 ? "greedy" : s.t > slider_max ? "past" : "";
  const continues = chosen === null ? "end_offline" : "next";
  const never = chosen !== null && !d.kept[chosen] ? "never" : "";
  const values = {
    entropy: py_fixed(h, 3), bits: py_fixed(h / Math.LN2, 3), choices: py_fixed(Math.exp(h), 2), T: fmt_g(s.t), max: fmt_g(slider_max),
    k: fmt_k(s.k), p: fmt_g(s.p), n_kept, V, kept_mass: py_fixed(100 * kept_mass, 1),
  };
  if (chosen !== null) {
    Object.assign(values, {
      token: esc(vocab.data.label[chosen]), rank: rank[chosen],
      prob: fmt_prob(d.final[chosen]), tempered: fmt_prob(d.tempered[chosen]),
    });
  }
  const text = fill_template(parts, {note: fragments[note], continues: fragments[continues]});
  summary.text = fill_template(fill_template(text, {never: fragments[never]}), values);
}

// SamplingLesson._show_preset: the matching button lit, its text beside it.
function draw_preset(s) {
  const i = matching_preset(s.t, s.k, s.p);
  if (presets.active !== i) {
    presets.applying = true;
    try { presets.active = i; } finally { presets.applying = false; }
  }
  preset_text.text = i < preset_values.length
    ? fill_template(preset_text_template, {name: preset_names[i], explain: preset_explain[i]})
    : fill_template(custom_text_template, {T: fmt_g(s.t), k: fmt_k(s.k), p: fmt_g(s.p)});
}

function draw() {
  const s = settings();
  // a copy: subarray() of Bokeh's typed arrays (a subclass) does not give a view
  const all = logits.data.logits, x = new Float64Array(V);
  for (let i = 0; i < V; i++) x[i] = all[s.pos * V + i];
  const d = distribution(x, s.t, s.k, s.p);
  const info = draw_bars(x, d, s);
  draw_curves(x, d, s);
  draw_summary(d, s, info);
  draw_preset(s);
}

// Every control and the page's first draw run this one callback.
function on_change(source) {
  if (presets.applying) return;
  if (source === presets) apply_preset();
  read_cuts();
  draw();
}
