// The "Adam vs AdamW" lesson, offline (views/optimizers.py): optim.race's twin. The three
// surfaces (optim.SURFACES), SGD with momentum, Adam (L2) and AdamW as torch steps them, in
// float64; a run that leaves ±bound stops there. Every control runs draw().

const SURFACE = {
  bowl: {loss: ([x, y]) => 0.5 * (x * x + 25 * y * y), grad: ([x, y]) => [x, 25 * y]},
  rosenbrock: {
    loss: ([x, y]) => (1 - x) ** 2 + 100 * (y - x * x) ** 2,
    grad: ([x, y]) => [-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)],
  },
  saddle: {loss: ([x, y]) => 0.5 * x * x - 0.5 * y * y + 0.25 * y ** 4, grad: ([x, y]) => [x, y ** 3 - y]},
};

// optim.sgd_momentum_step (dampening 0)
function sgd_step(p, g0, st, h) {
  const g = g0.map((gi, i) => gi + h.weight_decay * p[i]);
  const buf = st === null ? g.slice() : st.map((b, i) => h.momentum * b + g[i]);
  return [p.map((pi, i) => pi - h.lr * (h.momentum ? buf[i] : g[i])), buf];
}

// optim._adam: the moments, their bias corrections, the step
function adam_core(p, g, st, h) {
  const [b1, b2] = h.betas, step = st === null ? 1 : st.step + 1;
  const m0 = st === null ? [0, 0] : st.m, v0 = st === null ? [0, 0] : st.v;
  const m = m0.map((mi, i) => b1 * mi + (1 - b1) * g[i]);
  const v = v0.map((vi, i) => b2 * vi + (1 - b2) * g[i] * g[i]);
  const bc1 = 1 - b1 ** step, bc2 = 1 - b2 ** step;
  const out = p.map((pi, i) => pi - (h.lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + h.eps));
  return [out, {step, m, v}];
}

function adam_step(p, g, st, h) {
  return adam_core(p, g.map((gi, i) => gi + h.weight_decay * p[i]), st, h);
}

function adamw_step(p, g, st, h) {
  return adam_core(p.map((pi) => pi * (1 - h.lr * h.weight_decay)), g, st, h);
}

// optim.race
function race(name, kind, n, h) {
  const s = SURFACE[name], step = {sgd: sgd_step, adam: adam_step, adamw: adamw_step}[kind];
  let p = surfaces[name].start.slice(), st = null;
  const path = [p.slice()], loss = [s.loss(p)], states = [];
  let diverged = null;
  for (let t = 1; t <= n; t++) {
    const [q, next] = step(p, s.grad(p), st, h);
    if (!q.every(Number.isFinite) || Math.max(...q.map(Math.abs)) > bound) {
      diverged = t;
      break;
    }
    p = q;
    st = next;
    path.push(p.slice());
    loss.push(s.loss(p));
    states.push(st);
  }
  return {path, loss, diverged, states};
}

// views/optimizers.contour
function draw_contour() {
  const name = surface.value, s = SURFACE[name], [x0, x1, y0, y1] = surfaces[name].box;
  const z = new Float64Array(grid * grid);
  let low = Infinity;
  for (let r = 0; r < grid; r++) {
    for (let c = 0; c < grid; c++) {
      const x = x0 + ((c + 0.5) * (x1 - x0)) / grid, y = y0 + ((r + 0.5) * (y1 - y0)) / grid;
      z[r * grid + c] = s.loss([x, y]);
      low = Math.min(low, z[r * grid + c]);
    }
  }
  const NDArray = image.data.image[0].constructor;
  const img = new Float64Array(grid * grid).map((_, i) => Math.log10(1 + z[i] - low));
  image.data = {image: [new NDArray(img, [grid, grid])], x: [x0], y: [y0], dw: [x1 - x0], dh: [y1 - y0]};
  fig.x_range.start = x0;
  fig.x_range.end = x1;
  fig.y_range.start = y0;
  fig.y_range.end = y1;
  fig.title.text = surfaces[name].title;
  minimum.data = {x: [surfaces[name].minimum[0]], y: [surfaces[name].minimum[1]]};
}

// Python's repr of a float (the "kept" value, check_hyper's messages): the shortest round
// trip, as both write it, in Python's notation (an exponent below 1e-4 and from 1e16 on)
function py_repr(v) {
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  const a = Math.abs(v);
  if (a >= 1e16 || a < 1e-4) {
    const [m, e] = v.toExponential().split("e"), n = Number(e);
    return `${m}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
  }
  const t = String(v);
  return t.includes(".") ? t : `${t}.0`;
}

// float(text) as Python reads it: JavaScript's Number() also takes 0x10, 0b1 and "" (as 0)
function py_float(text) {
  const raw = text.trim().replace(/_/g, "");
  if (raw === "" || /^[+-]?0[xob]/i.test(raw)) return NaN;
  return Number(raw);
}

// views/optimizers.field_message
function field_message(name, text, values) {
  const raw = text.trim(), value = py_float(text);
  const kept = py_repr(values[name]);
  if (!Number.isFinite(value)) {
    return fill_template(bad_t, {field: fields[name], value: raw ? `“${text.trim()}”` : "nothing", kept});
  }
  const v = {...values, [name]: value}, problems = [];
  const fine = (x) => Number.isFinite(x);
  if (!(v.opt_lr > 0)) problems.push(`learning rate: ${py_repr(v.opt_lr)} is not > 0`);
  if (!(v.opt_beta1 >= 0 && v.opt_beta1 < 1)) problems.push(`β1: ${py_repr(v.opt_beta1)} is not in [0, 1)`);
  if (!(v.opt_beta2 >= 0 && v.opt_beta2 < 1)) problems.push(`β2: ${py_repr(v.opt_beta2)} is not in [0, 1)`);
  if (!(v.opt_eps > 0)) problems.push(`ε: ${py_repr(v.opt_eps)} is not > 0`);
  if (!(v.opt_decay >= 0)) problems.push(`weight decay: ${py_repr(v.opt_decay)} is not ≥ 0`);
  if (!(fine(v.opt_momentum) && v.opt_momentum >= 0 && v.opt_momentum < 1)) {
    problems.push(`momentum: ${py_repr(v.opt_momentum)} is not in [0, 1)`);
  }
  const mine = problems.filter((p) => p.startsWith(checked[name]));
  return mine.length ? `${mine[0]}; kept ${kept}.` : "";
}

function draw() {
  const values = {};
  for (const n of Object.keys(fields)) values[n] = kept.data[n][0];
  for (const n of Object.keys(fields)) {
    const message = field_message(n, inputs[n].value, values);
    show_error(messages[n], message);
    if (!message) values[n] = py_float(inputs[n].value);
  }
  const data = {};
  for (const n of Object.keys(fields)) data[n] = [values[n]];
  kept.data = data;
  const name = surface.value, n = steps.value, at = Math.min(inspect.value, n);
  const betas = [values.opt_beta1, values.opt_beta2];
  const h = {
    sgd: {lr: values.opt_lr, momentum: values.opt_momentum, weight_decay: values.opt_decay},
    adam: {lr: values.opt_lr, betas, eps: values.opt_eps, weight_decay: values.opt_decay},
  };
  h.adamw = h.adam;
  const low = SURFACE[name].loss(surfaces[name].minimum), runs = {}, parts = [];
  for (const k of ["sgd", "adam", "adamw"]) {
    const r = race(name, k, n, h[k]);
    runs[k] = r;
    paths[k].data = {x: r.path.map((p) => p[0]), y: r.path.map((p) => p[1])};
    const t = Math.min(at, r.path.length - 1);
    marks[k].data = {x: [r.path[t][0]], y: [r.path[t][1]]};
    losses[k].data = {x: r.loss.map((_, i) => i), y: r.loss.map((l) => Math.max(l - low, 0) + 1e-12)};
    const how = r.diverged !== null ? fill_template(diverged_t, {t: r.diverged})
      : fill_template(finished_t, {loss: py_g(r.loss[r.loss.length - 1], 4), steps: n});
    parts.push(fill_template(run_t, {colour: colours[k], name: names[k], how}));
  }
  result.text = fill_template(result_t, {runs: parts.join("; ")});
  // optimizers.state_html
  const rows = [], pair = (a) => `${py_g(a[0], 4)}, ${py_g(a[1], 4)}`;
  for (const k of ["adam", "adamw"]) {
    const r = runs[k];
    if (!r.states.length) continue;
    const t = Math.min(at, r.states.length), st = r.states[t - 1], p = r.path[t];
    const bc1 = 1 - betas[0] ** st.step, bc2 = 1 - betas[1] ** st.step;
    rows.push(fill_template(row_t, {
      name: names[k], m: pair(st.m), v: pair(st.v), mhat: pair(st.m.map((x) => x / bc1)),
      vhat: pair(st.v.map((x) => x / bc2)), p: pair(p),
    }));
  }
  state.text = fill_template(table_t, {
    t: at, bc1: py_g(1 - betas[0] ** at, 4), bc2: py_g(1 - betas[1] ** at, 4), rows: rows.join(""),
  });
  if (surface.value !== fig.title.anatomy_surface) {
    fig.title.anatomy_surface = surface.value;
    draw_contour();
  }
}
