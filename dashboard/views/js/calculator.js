// The calculator, offline (views/calculator.py): dashboard/lessons/scale.py's arithmetic in
// BigInt (exact, as Python's ints), over the fields' texts, filling calculator.py's templates.
// Args: spec (JSON text: presets with their fields as text, each family's fields, formats,
// names, units, templates); keys, inputs, boxes, notes (every field, in ALL_FIELDS then
// ALL_SWITCHES order); counts and count_notes (context length, batch); preset and cache
// (Selects); summary, note; out (the result Divs, named by out_keys); bars, fig, xaxis (the bar
// figure); record (every number shown, as decimal text).

const SPEC = JSON.parse(spec);
const LIMIT = BigInt(SPEC.limit);
const T = SPEC.templates;
const SPACE = /^[ \t\r\n]+|[ \t\r\n]+$/g;
const INTEGER = /^[+-]?[0-9]+$/;
const NUMBER = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

// f"{n:,}" of an integer
function commas(n) {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

// repr(v) of a Python float: the shortest digits that read back as v (toExponential gives the
// same), in fixed notation from 1e-4 up to 1e16, else d.ddde±XX
function py_repr(v) {
  if (typeof v === "bigint") return String(v);
  if (typeof v === "string") return `'${v}'`;
  if (Number.isNaN(v)) return "nan";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  const sign = v < 0 || Object.is(v, -0) ? "-" : "";
  const [m, e] = Math.abs(v).toExponential().split("e");
  const digits = m.replace(".", ""), x = Number(e);
  if (x >= -4 && x < 16) {
    if (x < 0) return `${sign}0.${"0".repeat(-x - 1)}${digits}`;
    const whole = digits.slice(0, x + 1).padEnd(x + 1, "0");
    return `${sign}${whole}.${digits.slice(x + 1) || "0"}`;
  }
  const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${mantissa}e${x < 0 ? "-" : "+"}${String(Math.abs(x)).padStart(2, "0")}`;
}

// scale.whole: a count as a BigInt, or null
function whole(v) {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
  return null;
}

function empty(v) {
  return v === null || v === undefined || (typeof v === "string" && !v.trim());
}

// -- reading the fields (calculator.parse_text, parse_count, read_inputs) ------------------------
function parse_text(name, text) {
  const t = text.replace(SPACE, "");
  if (!t) return [null, null];
  if ([...t].length > SPEC.max_chars) return [t, `${name}: more than ${SPEC.max_chars} characters`];
  let value;
  if (INTEGER.test(t)) value = BigInt(t);
  else if (NUMBER.test(t)) value = Number(t);
  else return [t, `${name}: must be a whole number, not “${t}”`];
  const n = whole(value);
  if (n !== null && n > LIMIT) return [value, `${name}: must be at most ${commas(LIMIT)}`];
  return [value, null];
}

function parse_count(name, text, low) {
  const [value, message] = parse_text(name, text);
  if (message) return [null, message];
  if (value === null) return [null, `${name}: empty`];
  const n = whole(value);
  if (n === null) return [null, `${name}: must be a whole number, not ${py_repr(value)}`];
  if (n < BigInt(low)) return [null, `${name}: must be at least ${low}`];
  return [n, null];
}

// scale.validate: one message per bad field, each starting with the field's name
function validate(config) {
  const [required, optional] = SPEC.fields[config.model_type];
  const messages = [], values = {};
  const field = (name, needed) => {
    if (!(name in config) || empty(config[name])) {
      if (needed) messages.push(`${name}: ${name in config ? "empty" : "missing"}`);
      return null;
    }
    const n = whole(config[name]);
    if (n === null) messages.push(`${name}: must be a whole number, not ${py_repr(config[name])}`);
    else if (n <= 0n) messages.push(`${name}: must be positive, not ${n}`);
    else return n;
    return null;
  };
  for (const name of required) values[name] = field(name, true);
  for (const name of optional) values[name] = field(name, false);
  if (config.model_type === "gpt2") {
    const width = values.n_embd, heads = values.n_head;
    if (width && heads && width % heads) {
      messages.push(`n_head: ${heads} heads do not divide n_embd = ${width}`);
    }
    return messages;
  }
  const width = values.hidden_size, heads = values.num_attention_heads;
  if (width && heads && values.head_dim === null && width % heads) {
    messages.push(`num_attention_heads: ${heads} heads do not divide hidden_size = ${width}`);
  }
  const kv = values.num_key_value_heads;
  if (heads && kv && heads % kv) {
    messages.push(
      `num_key_value_heads: ${kv} key/value heads do not divide num_attention_heads = ${heads}`);
  }
  if (config.model_type === "mixtral") {
    const experts = values.num_local_experts, active = values.num_experts_per_tok;
    if (experts && active && active > experts) {
      messages.push(`num_experts_per_tok: ${active} is more than num_local_experts = ${experts}`);
    }
  }
  return messages;
}

function read_inputs(model_type, texts, switches, context, batch) {
  const [required, optional, names] = SPEC.fields[model_type];
  const keys = [...required, ...optional];
  const config = {model_type}, messages = new Map();
  for (const key of keys) {
    const [value, message] = parse_text(key, texts[key] ?? "");
    config[key] = value;
    if (message) messages.set(key, [message]);
  }
  for (const key of names) config[key] = Boolean(switches[key]);
  const own = new Set(messages.keys());
  for (const message of validate(config)) {
    const key = message.split(":")[0];
    if (own.has(key)) continue;
    if (!messages.has(key)) messages.set(key, []);
    messages.get(key).push(message);
  }
  const [n_context, m_context] = parse_count("context", context, 0);
  if (m_context) messages.set("context", [m_context]);
  const [n_batch, m_batch] = parse_count("batch", batch, 1);
  if (m_batch) messages.set("batch", [m_batch]);
  const ordered = new Map();
  for (const key of [...keys, "context", "batch"]) if (messages.has(key)) ordered.set(key, messages.get(key));
  for (const [key, value] of messages) if (!ordered.has(key)) ordered.set(key, value);
  return {config, context: n_context, batch: n_batch, messages: ordered};
}

// -- scale.py's arithmetic ------------------------------------------------------------------------
function shape_of(c) {
  const get = (name, fallback) => (empty(c[name]) ? fallback : whole(c[name]));
  if (c.model_type === "gpt2") {
    const width = get("n_embd"), heads = get("n_head");
    return {
      model_type: "gpt2", vocab: get("vocab_size"), width, layers: get("n_layer"), heads,
      kv_heads: heads, head_dim: width / heads, ffn: get("n_inner", 4n * width),
      positions: get("n_positions"), tied: c.tie_word_embeddings !== false, experts: 1n,
      active_experts: 1n,
    };
  }
  const width = get("hidden_size"), heads = get("num_attention_heads");
  const moe = c.model_type === "mixtral";
  return {
    model_type: c.model_type, vocab: get("vocab_size"), width, layers: get("num_hidden_layers"),
    heads, kv_heads: get("num_key_value_heads", heads), head_dim: get("head_dim", width / heads),
    ffn: get("intermediate_size"), positions: 0n, tied: c.tie_word_embeddings === true,
    experts: moe ? get("num_local_experts") : 1n, active_experts: moe ? get("num_experts_per_tok") : 1n,
  };
}

function count_params(c) {
  const s = shape_of(c), C = s.width, q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
  const out = {embeddings: s.vocab * C};
  let norm;
  if (s.model_type === "gpt2") {
    out.position_embeddings = s.positions * C;
    out.attention = s.layers * (C * 3n * C + 3n * C + (C * C + C));
    out.mlp = s.layers * (C * s.ffn + s.ffn + (s.ffn * C + C));
    norm = 2n * C;
  } else {
    let attention = C * q + 2n * C * kv + q * C;
    if (s.model_type === "qwen2") attention += q + 2n * kv;
    else if (s.model_type === "llama" && c.attention_bias === true) attention += q + 2n * kv + C;
    out.attention = s.layers * attention;
    let mlp = 3n * C * s.ffn;
    if (s.model_type === "llama" && c.mlp_bias === true) mlp += 2n * s.ffn + C;
    if (s.model_type === "mixtral") {
      out.experts = s.layers * s.experts * mlp;
      out.router = s.layers * s.experts * C;
    } else {
      out.mlp = s.layers * mlp;
    }
    norm = C;
  }
  out.norms = (2n * s.layers + 1n) * norm;
  out.lm_head = s.tied ? 0n : C * s.vocab;
  out.total = Object.values(out).reduce((a, b) => a + b, 0n);
  return out;
}

// math.ceil(n * per) as Python computes it: exact for a whole `per`, else in float64
function times(n, per) {
  return Number.isInteger(per) ? n * BigInt(per) : BigInt(Math.ceil(Number(n) * per));
}

function kv_cache_bytes(c, tokens, batch, per) {
  const s = shape_of(c);
  return times(2n * s.layers * s.kv_heads * s.head_dim * tokens * batch, per);
}

function training_bytes(n, mixed) {
  const parts = mixed
    ? {weights: 2n * n, gradients: 2n * n, master_weights: 4n * n}
    : {weights: 4n * n, gradients: 4n * n, master_weights: 0n};
  parts.adam_m = 4n * n;
  parts.adam_v = 4n * n;
  parts.total = Object.values(parts).reduce((a, b) => a + b, 0n);
  return parts;
}

function matmul_weights_per_token(c) {
  const s = shape_of(c), C = s.width, q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
  let per_layer;
  if (s.model_type === "gpt2") per_layer = C * 3n * C + C * C + 2n * C * s.ffn;
  else {
    per_layer = C * q + 2n * C * kv + q * C + s.active_experts * 3n * C * s.ffn;
    if (s.experts > 1n) per_layer += s.experts * C;
  }
  return s.layers * per_layer + C * s.vocab;
}

function flops_per_token(c, context) {
  const s = shape_of(c);
  return 2n * matmul_weights_per_token(c) + 2n * s.layers * context * (s.heads * s.head_dim);
}

function calculate(config, context, batch, cache) {
  const formats = new Map(SPEC.formats), per = formats.get(cache);
  const params = count_params(config), n = params.total, weights = {};
  for (const [name, bytes] of SPEC.formats) weights[name] = times(n, bytes);
  return {
    config, shape: shape_of(config), params, weights,
    kv: kv_cache_bytes(config, context, batch, per), kv_token: kv_cache_bytes(config, 1n, 1n, per),
    training: {fp32: training_bytes(n, false), mixed: training_bytes(n, true)},
    flops: flops_per_token(config, context), flops0: flops_per_token(config, 0n),
    met: matmul_weights_per_token(config), context, batch, cache, per,
  };
}

function numbers(z) {
  const out = [];
  for (const [k, v] of Object.entries(z.params)) out.push([`params.${k}`, v]);
  for (const [k, v] of Object.entries(z.weights)) out.push([`weights.${k}`, v]);
  out.push(["kv", z.kv], ["kv_token", z.kv_token], ["flops", z.flops], ["flops0", z.flops0],
           ["met", z.met]);
  for (const mode of ["fp32", "mixed"]) {
    for (const [k, v] of Object.entries(z.training[mode])) out.push([`training.${mode}.${k}`, v]);
  }
  return out;
}

// -- the texts (calculator.readable and the *_html functions) -----------------------------------
function unit_of(n, kind) {
  const [step, names] = SPEC.units[kind];
  let k = 0;
  while (k + 1 < names.length && n >= BigInt(step) ** BigInt(k + 1)) k++;
  return [k, Number(BigInt(step) ** BigInt(k)), names[k]];
}

function readable(n, kind) {
  const [k, size, unit] = unit_of(n, kind);
  return k === 0 ? `${commas(n)}${unit}` : `${py_fixed(Number(n) / size, 2)}${unit}`;
}

function share(part, total) {
  return `${py_fixed((Number(part) / Number(total)) * 100, 1)}%`;
}

function component_name(key, z) {
  return key === "lm_head" && z.shape.tied ? "LM head (tied)" : SPEC.components[key];
}

function headline_html(z) {
  return fill_template(T.headline, {
    params: readable(z.params.total, "params"), weights: readable(z.weights.bf16, "bytes"),
    kv: readable(z.kv, "bytes"), batch: commas(z.batch), context: commas(z.context),
    cache: z.cache, training: readable(z.training.mixed.total, "bytes"),
  });
}

function shape_html(z) {
  const s = z.shape;
  const experts = s.experts > 1n
    ? fill_template(T.experts, {experts: s.experts, active: s.active_experts}) : "";
  return fill_template(T.shape, {
    kind: SPEC.classes[s.model_type], layers: commas(s.layers), width: commas(s.width),
    heads: commas(s.heads), kv_heads: commas(s.kv_heads), head_dim: commas(s.head_dim),
    ffn: commas(s.ffn), experts, vocab: commas(s.vocab),
  });
}

function params_html(z) {
  const total = z.params.total, rows = [];
  for (const [k, v] of Object.entries(z.params)) {
    if (k === "total") continue;
    rows.push(fill_template(T.param_row, {name: component_name(k, z), exact: commas(v), share: share(v, total)}));
  }
  return fill_template(T.param_table, {style: SPEC.table_style, rows: rows.join(""), exact: commas(total), readable: readable(total, "params")});
}

function weights_html(z) {
  const rows = Object.entries(z.weights).map(([f, v]) =>
    fill_template(T.weight_row, {fmt: f, readable: readable(v, "bytes"), exact: commas(v)}));
  return fill_template(T.weight_table, {style: SPEC.table_style, rows: rows.join("")});
}

function positions_of(c) {
  let value = c.model_type === "gpt2" ? c.n_positions ?? null : null;
  if (value === null) value = c.max_position_embeddings ?? null;
  return value === null ? null : whole(value);
}

function kv_html(z) {
  const s = z.shape;
  let text = fill_template(T.kv, {
    batch: commas(z.batch), context: commas(z.context), cache: z.cache,
    readable: readable(z.kv, "bytes"), exact: commas(z.kv), layers: commas(s.layers),
    kv_heads: commas(s.kv_heads), head_dim: commas(s.head_dim), per: String(z.per),
    per_token: readable(z.kv_token, "bytes"),
  });
  if (s.kv_heads < s.heads) {
    text += fill_template(T.gqa, {heads: commas(s.heads), kv_heads: commas(s.kv_heads), ratio: commas(s.heads / s.kv_heads)});
  }
  const positions = positions_of(z.config);
  if (positions !== null && z.context > positions) {
    text += fill_template(T.past, {context: commas(z.context), positions: commas(positions)});
  }
  return text;
}

function training_html(z) {
  const rows = SPEC.training.map(([k, label]) => fill_template(T.train_row, {
    part: label, fp32: readable(z.training.fp32[k], "bytes"), mixed: readable(z.training.mixed[k], "bytes"),
  }));
  return fill_template(T.train_table, {style: SPEC.table_style, rows: rows.join("")});
}

function flops_html(z) {
  let text = fill_template(T.flops, {
    flops: readable(z.flops, "flops"), context: commas(z.context), exact: commas(z.flops),
    flops0: readable(z.flops0, "flops"),
  });
  const s = z.shape;
  if (s.experts > 1n) {
    text += fill_template(T.moe, {
      active: s.active_experts, experts: s.experts, met: readable(z.met, "params"),
      total: readable(z.params.total, "params"),
    });
  }
  return text;
}

function summary_html(messages) {
  const names = [...messages.keys()], said = [];
  for (const list of messages.values()) for (const m of list) said.push(fill_template(T.field_message, {text: esc(m)}));
  return fill_template(T.summary, {
    fields: esc(names.join(", ")), to_fix: names.length === 1 ? "needs fixing" : "need fixing",
    messages: said.join(""),
  });
}

function field_message_html(messages) {
  return messages.map((m) => {
    const at = m.indexOf(": ");
    return fill_template(T.field_message, {text: esc((at >= 0 ? m.slice(at + 2) : "") || m)});
  }).join("");
}

function say(box, messages) {
  box.text = field_message_html(messages);
  box.visible = messages.length > 0;
}

// -- the page --------------------------------------------------------------------------------------
function show(z) {
  const html = {
    headline: headline_html(z), shape: shape_html(z), params: params_html(z),
    weights: weights_html(z), kv: kv_html(z), training: training_html(z), flops: flops_html(z),
  };
  out_keys.forEach((k, i) => { out[i].text = html[k]; });
  // the bars (calculator.bars_data): in the unit of the total, the first component on top
  const [, size, unit] = unit_of(z.params.total, "params");
  const parts = Object.entries(z.params).filter(([k]) => k !== "total");
  const names = parts.map(([k]) => component_name(k, z));
  const x = parts.map(([, v]) => Number(v) / size);
  fig.y_range.factors = [...names].reverse();
  fig.x_range.end = Math.max(...x) * 1.45;
  xaxis.axis_label = SPEC.axis[unit];
  bars.data = {name: names, x, label: parts.map(([, v]) => readable(v, "params"))};
  const shown = numbers(z);
  record.data = {key: shown.map(([k]) => k), value: shown.map(([, v]) => String(v))};
}

function draw() {
  const model_type = SPEC.presets[preset.value].model_type;
  const switches = new Set(SPEC.switches), texts = {}, on = {};
  keys.forEach((k, i) => {
    if (switches.has(k)) on[k] = inputs[i].value === "true";
    else texts[k] = inputs[i].value_input;
  });
  const r = read_inputs(model_type, texts, on, counts[0].value_input, counts[1].value_input);
  keys.forEach((k, i) => say(notes[i], r.messages.get(k) || []));
  say(count_notes[0], r.messages.get("context") || []);
  say(count_notes[1], r.messages.get("batch") || []);
  summary.text = r.messages.size ? summary_html(r.messages) : "";
  summary.visible = r.messages.size > 0;
  if (r.messages.size) return; // the last valid figures stay
  show(calculate(r.config, r.context, r.batch, cache.value));
}

// Fill the fields from the chosen preset (edits to the last one are dropped), then draw once
function load() {
  const p = SPEC.presets[preset.value];
  const [required, optional, names] = SPEC.fields[p.model_type];
  const shown = new Set([...required, ...optional, ...names]);
  preset.__loading = true;
  try {
    keys.forEach((k, i) => {
      if (k in p.switches) inputs[i].value = p.switches[k] ? "true" : "false";
      else if (k in p.texts) {
        inputs[i].value = p.texts[k];
        inputs[i].value_input = p.texts[k];
      }
    });
  } finally {
    preset.__loading = false;
  }
  boxes.forEach((b, i) => { b.visible = shown.has(keys[i]); });
  note.text = p.note;
  draw();
}

function changed(obj) {
  if (obj === preset) load();
  else if (!preset.__loading) draw();
}
