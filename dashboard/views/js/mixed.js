// The "Mixed precision" lesson, offline (views/mixed.py): a step or a scale shows that pair's
// precomputed text (texts[step][k]) and shifts the step's binades (every[step], at scale 1) by k,
// coloured as fate_of_binade colours them (bounds: fp16's sub, tiny and top exponents).
function draw() {
  const i = steps.active, k = scale.value;
  text.text = texts[i][k];
  whole.text = tables[i];
  const b = every[i];
  const fate = (e) => e < bounds.sub - 1 ? "flushed" : e < bounds.tiny ? "subnormal"
    : e <= bounds.top ? "normal" : "overflow";
  const x = b.x.map((v) => v + k);
  const f = x.map((v) => fate(Math.floor(v)));
  source.data = {x: x, top: b.top, color: f.map((v) => colors[v]), fate: f};
}
