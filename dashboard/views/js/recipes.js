// The recipes lesson: the loss-per-position lines at the chosen bucket width, bucketed here
// from each model's loss per position exactly as lessons.recipes.bucket_columns does (the
// snapshot test checks every width against Python's statistics.mean).

// Buckets of w consecutive positions (the last one shorter when w does not divide the
// length): each bucket's centre, first and last position, mean loss, and the model's name.
function bucket_columns(loss, w, model) {
  const cols = {x: [], first: [], last: [], loss: [], model: []};
  for (let s = 0; s < loss.length; s += w) {
    const e = Math.min(s + w, loss.length) - 1;
    let sum = 0;
    for (let i = s; i <= e; i++) sum += loss[i];
    cols.x.push((s + e) / 2);
    cols.first.push(s);
    cols.last.push(e);
    cols.loss.push(sum / (e - s + 1));
    cols.model.push(model);
  }
  return cols;
}

function draw() {
  const w = widths[buttons.active];
  for (let i = 0; i < sources.length; i++) sources[i].data = bucket_columns(losses[i], w, names[i]);
  if (label) label.y = heights[buttons.active]; // the top of the lines (recipes.label_height)
  caption.text = fill_template(template, {width: w, s: w === 1 ? "" : "s", block: block});
}
