// The "Next-token loss" lesson, offline (views/loss.py): a tap on a bar shows that position's
// precomputed text (texts) and moves the highlight (selected).
function tap(ev) {
  const i = Math.round(ev.x);
  if (!(i >= 0 && i < n)) return;
  text.text = texts[i];
  selected.data = {x: [i]};
}
