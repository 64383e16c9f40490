// The "Mixture of experts" lesson, offline (views/moe.py): the router's probabilities
// (probs, flattened (L, T, E)), the chosen experts and their weights (L, T, K) and each
// layer's shares (precomputed), redrawn for a layer and a tapped token.

function draw() {
  const l = layer.active, p = probs.data.probs, chosen = new Set();
  for (let i = 0; i < T; i++) for (let r = 0; r < K; r++) chosen.add(`${i},${experts[(l * T + i) * K + r]}`);
  const d = {x: [], y: [], p: [], line: [], label: []};
  for (let i = 0; i < T; i++) {
    for (let e = 0; e < E; e++) {
      d.x.push(e);
      d.y.push(i);
      d.p.push(p[(l * T + i) * E + e]);
      d.line.push(chosen.has(`${i},${e}`) ? outline : null);
      d.label.push(labels[i]);
    }
  }
  router.data = d;
  router_fig.title.text = `Router, layer ${l}`;
  share_src.data = {
    x: Array.from({length: E}, (_, e) => e), text: shares[l],
    val: val ? val[l] : Array(E).fill(NaN), color: Array.from({length: E}, (_, e) => colours[e % 10]),
  };
  share_fig.title.text = `Shares, layer ${l}`;
  draw_token();
}

// moe.token_html
function draw_token() {
  const l = layer.active, i = state.data.token[0], p = probs.data.probs, at = (l * T + i) * K;
  const parts = [];
  for (let e = 0; e < E; e++) parts.push(fill_template(prob_t, {e, p: py_fixed(p[(l * T + i) * E + e], 3)}));
  text.text = fill_template(token_t, {
    layer: l, token: esc(labels[i]), probs: parts.join(", "), first: experts[at],
    second: experts[at + 1], w1: py_fixed(weights[at], 3), w2: py_fixed(weights[at + 1], 3),
  });
  selected.data = {y: [i]};
}

function tap(ev) {
  const i = Math.round(ev.y);
  if (!(i >= 0 && i < T)) return;
  state.data = {token: [i]};
  draw_token();
}
