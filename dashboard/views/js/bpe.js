// The BPE lesson, offline. The HTML comes from the Python functions of dashboard/views/bpe.py
// as templates (T.*) with {{slots}}; these functions only choose what goes in them, from the
// embedded arrays, and escape every text they insert.

// A template with its slots replaced by vals[name], in one pass (inserted values are never
// scanned again, so a "{{" in the user's text stays text).
function fill_slots(tpl, vals) {
  return tpl.replace(/\{\{(\w+)\}\}/g, (_, name) => String(vals[name]));
}

// A token's colour class (bpe.token_kind): grey for a single byte, else by position.
function kind(id, j) {
  return id < 256 ? "byte" : `c${j % 2}`;
}

function token(id, cls, labels, titles) {
  return fill_slots(T.span, {
    id: id,
    cls: cls,
    title: esc(titles.data.title[id]),
    label: esc(labels.data.label[id]),
  });
}

// bpe.part_span: after a token holding only part of a character, which one (notes made in
// Python, B.part_note)
function part(note) {
  return note ? fill_slots(T.part, {note: esc(note)}) : "";
}

// -- how the tokenizer was learned: k merges ----------------------------------------------------
function merge_table(k) {
  const m = merges.data;
  const n = m.rank.length;
  if (n === 0) return T.no_merges;
  // bpe.table_window: the k-th merge centred, clamped to the table
  const lo = Math.min(Math.max(k - 1 - Math.floor(rows_shown / 2), 0), Math.max(n - rows_shown, 0));
  const hi = Math.min(lo + rows_shown, n);
  const label = (id) => klabels.data.label[id];
  let body = "";
  for (let i = lo; i < hi; i++) {
    body += fill_slots(i === k - 1 ? T.row_current : T.row, {
      k: i + 1,
      rank: m.rank[i],
      pair: esc(`${label(m.left[i])}  +  ${label(m.right[i])}`), // B.merge_rows' pair
      token: esc(label(m.rank[i])),
      count: m.count[i].toLocaleString("en-US"), // Python's f"{count:,}"
      part: part(m.note[i]),
    });
  }
  return fill_slots(T.table, {rows: body, first: lo + 1, last: hi, n: n});
}

function sample_at(k) {
  const sk = seg.data.k;
  let s = 0;
  while (s + 1 < sk.length && sk[s + 1] <= k) s++;
  const r = runs.data;
  let spans = "";
  let i = 0;
  for (let x = 0; x < r.start.length; x++) {
    if (r.first[x] <= s && s <= r.last[x]) {
      spans += token(r.id[x], `bpe-tok ${kind(r.id[x], i)}`, klabels, ktitles) + part(r.note[x]);
      i++;
    }
  }
  return fill_slots(T.sample, {k: k, n: seg.data.n[s], bpt: seg.data.bpt[s], spans: spans});
}

function draw_k() {
  const k = Math.min(Math.max(Math.round(kslider.value), 0), curve.data.k.length - 1);
  marker.data = {k: [k], bpt: [curve.data.bpt[k]], vocab: [curve.data.vocab[k]]};
  for (const span of spans) span.location = k;
  table.text = merge_table(k);
  sample.text = sample_at(k);
}

// -- how your text is encoded: step s (bpe.frame_html and bpe.describe) -------------------------
function draw_step() {
  const st = steps.data, ch = chunks.data;
  const n = st.chunk.length;
  const s = Math.min(Math.max(Math.round(sslider.value), 0), n);
  const active = s === 0 ? null : [st.chunk[s - 1], st.j[s - 1]];
  const final = s >= n;
  const html = [], ids = [];
  let index = 0; // token position in the final ids (the cut at the block size)
  // notes of tokens holding part of a character, by chunk, byte offset and length
  const pn = pnotes.data, notes = new Map();
  for (let i = 0; i < pn.chunk.length; i++)
    notes.set(`${pn.chunk[i]}:${pn.start[i]}:${pn.length[i]}`, pn.note[i]);
  const nbytes = stitles.data.nbytes;
  ch.states.forEach((states, c) => {
    let parts;
    if (active === null || c > active[0]) parts = states[0];
    else if (c < active[0]) parts = states[states.length - 1];
    else parts = states[active[1] + 1];
    parts = Array.from(parts);
    ids.push(...parts);
    const here = active !== null && active[0] === c;
    const new_at = here && ch.animated[c] ? st.position[s - 1] : null;
    const spans = [];
    if (!ch.animated[c] && (active === null || active[0] < c) && parts.length > 1) {
      spans.push(ch.pending[c]); // a long chunk before its one step: one grey run
      parts = [];
    }
    let at = 0; // byte offset of parts[j] in the chunk
    for (let j = 0; j < parts.length; j++) {
      if (!ch.animated[c] && j >= Math.max(max_tokens, 0) + cut_shown) {
        spans.push(fill_slots(T.more, {n: parts.length - j}));
        break;
      }
      let cls = `bpe-tok ${kind(parts[j], j)}`;
      if (j === new_at) cls += " new";
      if (final && max_tokens >= 0 && index >= max_tokens) cls += " cut";
      if (final) index++;
      spans.push(token(parts[j], cls, slabels, stitles) + part(notes.get(`${c}:${at}:${nbytes[parts[j]]}`)));
      at += nbytes[parts[j]];
    }
    html.push(fill_slots(here ? T.chunk_active : T.chunk, {spans: spans.join("")}));
  });
  segments.data = {id: ids};
  trace.text = html.length ? fill_slots(T.trace, {chunks: html.join("")}) : T.no_text;
  let head = T.zero;
  if (active !== null) {
    const c = active[0];
    const label = (id) => slabels.data.label[id];
    let what = T.long;
    if (ch.animated[c]) {
      what = st.whole[s - 1]
        ? fill_slots(T.whole, {new: st.new[s - 1]})
        : fill_slots(T.merge, {left: esc(label(st.left[s - 1])), right: esc(label(st.right[s - 1])),
                         new: st.new[s - 1]})
          + (st.note[s - 1] ? fill_slots(T.step_note, {note: esc(st.note[s - 1])}) : "");
    }
    head = fill_slots(T.head, {step: s, chunk: c + 1, shown: esc(ch.shown[c]), what: what});
  }
  text.text = head + (final ? T.tail : "");
}
