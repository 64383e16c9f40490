// The BPE lesson: replay the first k steps of the encode trace and draw the segmentation.

function draw() {
  const k = Math.round(slider.value);
  const parts = initial.map((ids) => ids.slice());
  const st = schedule.data;
  let last = null;
  for (let s = 0; s < Math.min(k, st.chunk.length); s++) {
    parts[st.chunk[s]] = Array.from(st.parts[s]);
    last = s;
  }
  const label = (id) => vocab.data.label[id];
  const ids = [], labs = [], chunks = [];
  let chips = "";
  parts.forEach((chunk_ids, c) => {
    for (const id of chunk_ids) {
      ids.push(id);
      labs.push(label(id));
      chunks.push(c);
      const fresh = last !== null && st.chunk[last] === c && st.new[last] === id;
      chips += `<span class='chip${fresh ? " new" : ""}' title='id ${id}'>${esc(label(id))}</span>`;
    }
    chips += "<span class='gap'> </span>";
  });
  segments.data = {id: ids, label: labs, chunk: chunks};
  view.text = `<div class='chips'>${chips}</div><p class='hint'>${ids.length} tokens</p>`;
  if (last === null) {
    info.text = "<p>No merges yet: one token per byte.</p>";
  } else if (st.whole[last]) {
    info.text =
      `<p>Merge ${k} of ${st.chunk.length}: the whole chunk is token ${st.new[last]} ` +
      `<b class='tok'>${esc(label(st.new[last]))}</b> (tiktoken's shortcut).</p>`;
  } else {
    info.text =
      `<p>Merge ${k} of ${st.chunk.length}: <b class='tok'>${esc(label(st.left[last]))}</b> + ` +
      `<b class='tok'>${esc(label(st.right[last]))}</b> → ` +
      `<b class='tok'>${esc(label(st.new[last]))}</b> (token ${st.new[last]}).</p>`;
  }
}
