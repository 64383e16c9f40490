// The model's scaled scores q·k/√d_head (L, H, T, T; its attn_scores output, before the mask),
// computed in the page from the embedded q (L, H, T, d) and k (L, KV, T, d) instead of being
// embedded beside them (a quarter of a megabyte less per snapshot), once per page: the sums in
// float64, kept as float32 like the model's. Args: att_q, att_k, att_shape {L, H, KV, T, d}.
function model_scores(src) {
  if (src.anatomy_scores) return src.anatomy_scores;
  const {L, H, KV, T, d} = att_shape, qv = att_q.data.values, kv = att_k.data.values;
  const out = new Float32Array(L * H * T * T), scale = 1 / Math.sqrt(d), group = H / KV;
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const q0 = (l * H + h) * T * d, k0 = (l * KV + Math.floor(h / group)) * T * d;
      const o0 = (l * H + h) * T * T;
      for (let i = 0; i < T; i++) {
        for (let j = 0; j < T; j++) {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += qv[q0 + i * d + c] * kv[k0 + j * d + c];
          out[o0 + i * T + j] = dot * scale;
        }
      }
    }
  }
  src.anatomy_scores = out;  // on the data source: every callback of the page shares it
  return out;
}
