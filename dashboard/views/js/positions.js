// The positions lesson, offline (views/positions.py). draw_pair: args pair, position (sliders),
// thetas and waves (each pair's θ and wavelength), path, arrow, circle, box, template, d,
// block, last. draw_slopes: heads, box and the slopes' templates. draw_alibi: data {scores}
// (L, H, T, T), layer, head, L, H, T, bias and probs ({image, removed, mapper, fig}), palettes.

// The sinusoidal table, n positions × d (positions.sinusoidal): sin on even dimensions, cos on
// odd ones, pair i of wavelength 2π·base^(2i/d); drawn into the image once the page opens
function draw_sinusoid() {
  const out = new Float32Array(n * d);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < d / 2; i++) {
      const angle = p / base ** ((2 * i) / d);
      out[p * d + 2 * i] = Math.sin(angle);
      out[p * d + 2 * i + 1] = Math.cos(angle);
    }
  }
  const NDArray = image.data.image[0].constructor;
  mapper.low = -1;
  mapper.high = 1;
  image.data = {...image.data, image: [new NDArray(out, [n, d])]};
}

// (1, 0) turned by position × θ: where a pair of dimensions points (positions.rotate_pair)
function turned(position, theta) {
  const a = position * theta;
  return [Math.cos(a), Math.sin(a)];
}

function draw_pair() {
  const i = pair.value, p = position.value, theta = thetas[i];
  const xs = [], ys = [];
  for (let q = 0; q <= last; q++) {
    const [x, y] = turned(q, theta);
    xs.push(x);
    ys.push(y);
  }
  path.data = {x: xs, y: ys};
  const [x1, y1] = turned(p, theta);
  arrow.data = {x0: [0], y0: [0], x1: [x1], y1: [y1]};
  circle.title.text = `Pair ${i}, position ${p}`;
  box.text = fill_template(template, {
    pair: i, d: d, theta: py_g(theta, 6), wave: py_fixed(waves[i], 1), position: p,
    angle: py_fixed(p * theta, 4), block: block, turns: py_fixed((block * theta) / (2 * Math.PI), 3),
  });
}

// Each head's ALiBi slope (positions.alibi_slopes): 2^(−8i/n) for a power of two n; else the
// slopes for the power of two m below n, then every other slope for 2m heads.
function power_slopes(n) {
  const out = [];
  for (let i = 1; i <= n; i++) out.push(2 ** ((-8 * i) / n));
  return out;
}

function alibi_slopes(n) {
  const m = 2 ** Math.floor(Math.log2(n));
  if (m === n) return power_slopes(n);
  const more = power_slopes(2 * m).filter((_, i) => i % 2 === 0);
  return power_slopes(m).concat(more.slice(0, n - m));
}

function draw_slopes() {
  const n = Math.round(heads.value);
  if (!(n >= 1 && n <= 64)) {
    box.text = "<p class='message error'>Choose between 1 and 64 heads.</p>";
    return;
  }
  const slopes = alibi_slopes(n), m = 2 ** Math.floor(Math.log2(n));
  const rule = m === n
    ? fill_template(power_t, {n: n})
    : fill_template(other_t, {n: n, m: m, rest: n - m, m2: 2 * m});
  const rows = slopes.map((s, h) => fill_template(row_t, {h: h, slope: py_g(s, 6), inv: py_g(1 / s, 4)}));
  box.text = rule + fill_template(table_t, {rows: rows.join("")});
}

// One matrix into a MatrixPlot's sources, as MatrixPlot.update does for its kind
function show_matrix(plot, values, kind, title) {
  const img = plot.image.data.image[0], gone = plot.removed.data.image[0];
  let top = 0;
  for (let at = 0; at < T * T; at++) {
    const i = Math.floor(at / T), j = at % T;
    img[at] = values[at];
    gone[at] = kind === "probs" && j > i && values[at] === 0 ? 1 : 0;
    if (kind !== "probs" && j <= i && Number.isFinite(values[at])) top = Math.max(top, Math.abs(values[at]));
  }
  plot.mapper.palette = kind === "probs" ? prob_palette : score_palette;
  plot.mapper.low = kind === "probs" ? 0 : -(top || 1);
  plot.mapper.high = kind === "probs" ? 1 : top || 1;
  plot.fig.title.text = title;
  plot.image.change.emit();
  plot.removed.change.emit();
}

// The model's scores of one head with ALiBi's −slope·(i − j) added, under the causal mask,
// and their softmax (positions.alibi_what_if)
function draw_alibi() {
  const l = layer.active, h = head.active, slope = alibi_slopes(H)[h];
  const off = (l * H + h) * T * T, scores = model_scores(data);
  const b = new Float64Array(T * T), p = new Float64Array(T * T);
  for (let i = 0; i < T; i++) {
    const row = new Float64Array(T);
    for (let j = 0; j < T; j++) {
      b[i * T + j] = j <= i ? -slope * (i - j) : -Infinity;
      row[j] = j <= i ? scores[off + i * T + j] + b[i * T + j] : -Infinity;
    }
    p.set(softmax_row(row), i * T);
  }
  show_matrix(bias, b, "scores", `Head ${h}: bias −${py_g(slope, 4)}·(i − j)`);
  show_matrix(probs, p, "probs", `Head ${h}: softmax with ALiBi`);
}
