// The residual-stream lesson's snapshot: the selected token's line and bars, the norms' steps
// on its real vector (hidden[layer] or hidden[L], with the model's weights), and a typed
// vector. Needs common.js and norms.js. Args: hidden {values} (L+1, T, D) float32; stream
// {norms} (2L+1, T); subl {added, cosines} (2L, T); weights {weight, bias} (L+1, D): h.l.ln_1
// then ln_f; the widgets and sources named in views/residual.py snapshot(). The HTML is
// views/residual.py's (token_html, layer_norm_html, rms_norm_html, both_html), written here.

const g4 = (v) => py_g(v, 4);

function vec_norm(v) {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

// residual.shown_dims: the first `first`, and the largest |x| (earliest of ties) if not in them
function shown_dims(x, first) {
  const dims = [];
  for (let i = 0; i < Math.min(first, x.length); i++) dims.push(i);
  let big = 0;
  for (let i = 1; i < x.length; i++) if (Math.abs(x[i]) > Math.abs(x[big])) big = i;
  return x.length && !dims.includes(big) ? [...dims, big] : dims;
}

function norm_block(title, steps, lines, x, out) {
  const size =
    `<p class='norm-dim'>‖x‖ = ${g4(vec_norm(x))} → ‖output‖ = ${g4(vec_norm(out))} ` +
    `(${x.length} dimensions)</p>`;
  return `<div class='norm-block'><p><b>${title}</b></p><ol>${steps.join("")}</ol>` +
    `${lines.join("")}${size}</div>`;
}

function layer_norm_html(x, s, title, weight, bias, dims, e) {
  const steps = [
    `<li>mean μ = ${g4(s.mean)}</li>`,
    `<li>variance σ² = mean of (x − μ)² = ${g4(s.var)}</li>`,
    `<li>divide x − μ by √(σ² + ε) = √(${g4(s.var)} + ${e}) = ${g4(s.std)}</li>`,
  ];
  if (weight) steps.push("<li>multiply by γ</li>");
  if (bias) steps.push("<li>add β</li>");
  const lines = dims.map((i) => {
    const n = s.normalised[i];
    let line = `dim ${i}: ${g4(x[i])} − ${g4(s.mean)} = ${g4(x[i] - s.mean)} → ÷ ${g4(s.std)} = ${g4(n)}`;
    if (weight) line += ` → × ${g4(weight[i])} = ${g4(n * weight[i])}`;
    if (bias) line += ` → + ${g4(bias[i])} = ${g4(s.out[i])}`;
    return `<p class='norm-dim'>${line}</p>`;
  });
  return norm_block(title, steps, lines, x, s.out);
}

function rms_norm_html(x, s, title, weight, dims, e) {
  const steps = [
    `<li>mean square = mean of x² = ${g4(s.mean_square)}</li>`,
    `<li>divide x by √(mean square + ε) = √(${g4(s.mean_square)} + ${e}) = ${g4(s.rms)}</li>`,
  ];
  if (weight) steps.push("<li>multiply by the weight</li>");
  const lines = dims.map((i) => {
    let line = `dim ${i}: ${g4(x[i])} ÷ ${g4(s.rms)} = ${g4(s.normalised[i])}`;
    if (weight) line += ` → × ${g4(weight[i])} = ${g4(s.out[i])}`;
    return `<p class='norm-dim'>${line}</p>`;
  });
  return norm_block(title, steps, lines, x, s.out);
}

// Both norms' steps on x, the model's own first (own: "layernorm", "rmsnorm" or null).
function both_html(x, ln, rn, titles, weight, bias, dims, own) {
  const e = py_g(eps, 6);
  const a = layer_norm_html(x, ln, titles.layernorm, weight, bias, dims, e);
  const b = rms_norm_html(x, rn, titles.rmsnorm, weight, dims, e);
  return (own || "layernorm") === "layernorm" ? a + b : b + a;
}

function selected_token() {
  return Math.min(Math.max(Number(token.value) || 0, 0), T - 1);
}

// The selected token's line, bars and sentence (views/residual.py token_html).
function draw_token() {
  const t = selected_token(), S = 2 * L + 1;
  const n = stream.data.norms, ad = subl.data.added, co = subl.data.cosines;
  const ys = [], tops = [], coss = [];
  for (let k = 0; k < S; k++) ys.push(n[k * T + t]);
  let big = 0;
  for (let k = 0; k < 2 * L; k++) {
    tops.push(ad[k * T + t]);
    coss.push(co[k * T + t]);
    if (tops[k] > tops[big]) big = k;
  }
  selected.data = {x: [...Array(S).keys()], y: ys};
  added.data = {...added.data, top: tops};
  cos.data = {...cos.data, top: coss};
  token_div.text =
    `<p>Token <b class='tok'>${esc(labels[t])}</b>: the stream's norm is ${g4(ys[0])} after ` +
    `the embeddings and ${g4(ys[S - 1])} after the last block. The largest addition is layer ` +
    `${sublayer_names[big]} (norm ${g4(tops[big])}, cosine ${g4(coss[big])} with the stream it ` +
    "joins).</p>";
}

// The norm at the chosen site on the selected token's vector, with the model's weights.
function draw_steps() {
  const t = selected_token(), final = sites[site.active] === "final";
  const l = final ? L : layer.active; // the stream entering block l, or after the last
  const w = l * D; // weights row: h.l.ln_1, or ln_f at row L
  const x = new Float64Array(D), weight = new Float64Array(D), bias = new Float64Array(D);
  const h = hidden.data.values, off = (l * T + t) * D;
  for (let i = 0; i < D; i++) {
    x[i] = h[off + i];
    weight[i] = weights.data.weight[w + i];
    bias[i] = weights.data.bias[w + i];
  }
  const b = has_bias ? bias : null;
  const ln = layer_norm(x, weight, b, eps), rn = rms_norm(x, weight, eps);
  const own = kind === "layernorm" ? ln : rn, other = kind === "layernorm" ? rn : ln;
  steps.data = {dim: [...Array(D).keys()], x: Array.from(x),
                normalised: Array.from(own.normalised), out: Array.from(own.out),
                other: Array.from(other.out)};
  const ti = own_titles[l], to = other_titles[l];
  const titles = kind === "layernorm" ? {layernorm: ti, rmsnorm: to} : {layernorm: to, rmsnorm: ti};
  steps_div.text = both_html(x, ln, rn, titles, weight, b, shown_dims(x, first_dims), kind);
}

// The typed vector's steps, or its message (the last good steps stay on show).
function draw_typed() {
  let x;
  try {
    x = parse_vector(vector.value);
  } catch (e) {
    show_error(typed_error, e.message);
    return;
  }
  show_error(typed_error, "");
  const notes = typed_notices(x, eps);
  typed_notice.text = notes.map((n) => `<p>${esc(n)}</p>`).join("");
  typed_notice.visible = notes.length > 0;
  const titles = {layernorm: typed_titles[0], rmsnorm: typed_titles[1]};
  typed_div.text = both_html(x, layer_norm(x, null, null, eps), rms_norm(x, null, eps), titles,
                             null, null, shown_dims(x, typed_dims), null);
}

function dispatch(obj) {
  if (obj === token) { draw_token(); draw_steps(); }
  else if (obj === layer || obj === site) draw_steps();
  else if (obj === vector) draw_typed();
  else { draw_token(); draw_steps(); draw_typed(); } // the page has loaded
}
