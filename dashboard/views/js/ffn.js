// The feed-forward lesson: the selected (layer, token)'s MLP summary, picked from the embedded
// arrays that lessons.ffn.activations computed for every layer and token (nothing is
// recomputed here). Args: widgets layer, token; sources top {neurons, hidden, up, gate,
// gate_act} flattened (L, T, K), stats {near, negative} (L, T), counts (L, T, B); the plots'
// sources bars, hist, points; the Divs summary and table, and the templates of views/ffn.py.

function draw() {
  const l = layer.active, t = Number(token.value);
  const at = (l * T + t) * K, d = top.data;
  const cols = {x: [], neuron: [], up: [], hidden: []};
  if (swiglu) Object.assign(cols, {gate: [], gate_act: []});
  const rows = [];
  for (let j = 0; j < K; j++) {
    cols.x.push(j);
    cols.neuron.push(d.neurons[at + j]);
    cols.up.push(d.up[at + j]);
    cols.hidden.push(d.hidden[at + j]);
    const values = {neuron: d.neurons[at + j], up: py_fixed(d.up[at + j], 3),
                    h: py_fixed(d.hidden[at + j], 3)};
    if (swiglu) {
      cols.gate.push(d.gate[at + j]);
      cols.gate_act.push(d.gate_act[at + j]);
      values.gate = py_fixed(d.gate[at + j], 3);
      values.act = py_fixed(d.gate_act[at + j], 3);
    }
    rows.push(fill_template(row_t, values));
  }
  bars.data = cols;
  points.data = swiglu ? {gate: cols.gate.slice(), up: cols.up.slice(), neuron: cols.neuron.slice()}
                       : {gate: [], up: [], neuron: []};
  const c = counts.data.counts, count = [];
  for (let b = 0; b < B; b++) count.push(c[(l * T + t) * B + b]);
  hist.data = {...hist.data, count: count};
  fig.title.text = fill_template(title_t, {layer: l});
  const near = stats.data.near[l * T + t], neg = stats.data.negative[l * T + t];
  // views/ffn.summary_html and table_html, filled here
  const off = fill_template(off_t, {count: neg, percent: py_fixed((100 * neg) / width, 1)});
  summary.text = fill_template(summary_t, {token: esc(labels[t]), layer: l, near: near,
                                           percent: py_fixed((100 * near) / width, 1), off: off});
  table.text = fill_template(table_t, {rows: rows.join("")});
}
