/** CPU reference for attention.wgsl: the full softmax of each row, accumulated in float64. */

/** Sizes and options of {@linkcode attentionRef}. */
export interface AttentionRefShape {
  B: number;
  nq: number;
  nk: number;
  heads: number;
  dh: number;
  dv: number;
  causal?: boolean;
  /** Defaults to 1/√dh. */
  scale?: number;
  /** Query rows to compute (default: all), for long sequences; the outputs hold only these rows, in this order. */
  rows?: readonly number[];
}

/**
 * out = softmax(scale · q kᵀ [+ causal mask]) v per batch and head; lse = log Σ_j exp(scale · q_i·k_j).
 * q: [B, nq, heads·dh], k: [B, nk, heads·dh], v: [B, nk, heads·dv]
 * → out: [B, R, heads·dv], lse: [B, heads, R], where R = rows.length (nq without `rows`).
 */
export function attentionRef(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  s: AttentionRefShape,
): { out: Float32Array; lse: Float32Array } {
  const { B, nq, nk, heads, dh, dv } = s;
  const scale = s.scale ?? 1 / Math.sqrt(dh);
  const rows = s.rows ?? Array.from({ length: nq }, (_, i) => i);
  const R = rows.length, cq = heads * dh, cv = heads * dv;
  const out = new Float32Array(B * R * cv), lse = new Float32Array(B * heads * R);
  const scores = new Float64Array(nk), acc = new Float64Array(dv);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let r = 0; r < R; r++) {
        const i = rows[r];
        const seen = s.causal ? Math.min(nk, i + 1) : nk;
        const qi = (b * nq + i) * cq + h * dh;
        let max = -Infinity;
        for (let j = 0; j < seen; j++) {
          const kj = (b * nk + j) * cq + h * dh;
          let d = 0;
          for (let c = 0; c < dh; c++) d += q[qi + c] * k[kj + c];
          scores[j] = d * scale;
          if (scores[j] > max) max = scores[j];
        }
        let sum = 0;
        acc.fill(0);
        for (let j = 0; j < seen; j++) {
          const p = Math.exp(scores[j] - max);
          sum += p;
          const vj = (b * nk + j) * cv + h * dv;
          for (let c = 0; c < dv; c++) acc[c] += p * v[vj + c];
        }
        const o = (b * R + r) * cv + h * dv;
        for (let c = 0; c < dv; c++) out[o + c] = acc[c] / sum;
        lse[(b * heads + h) * R + r] = max + Math.log(sum);
      }
    }
  }
  return { out, lse };
}
