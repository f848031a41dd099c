/** CPU references for attention.wgsl and attention_bwd.wgsl: the full softmax of each row, in float64. */

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
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  s: AttentionRefShape,
): { out: Float32Array; lse: Float32Array } {
  const { out, lse } = attentionRef64(q, k, v, s);
  return { out: new Float32Array(out), lse: new Float32Array(lse) };
}

/** {@linkcode attentionRef} without rounding the results to f32 (for finite differences). */
export function attentionRef64(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  s: AttentionRefShape,
): { out: Float64Array; lse: Float64Array } {
  const { B, nq, nk, heads, dh, dv } = s;
  const scale = s.scale ?? 1 / Math.sqrt(dh);
  const rows = s.rows ?? Array.from({ length: nq }, (_, i) => i);
  const R = rows.length, cq = heads * dh, cv = heads * dv;
  const out = new Float64Array(B * R * cv), lse = new Float64Array(B * heads * R);
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

/** Sizes and options of {@linkcode attentionBackwardRef}: those of the forward, plus the keys to compute. */
export interface AttentionBackwardRefShape extends AttentionRefShape {
  /** Key rows of dk and dv to compute (default: all); the outputs hold only these rows, in this order. */
  keys?: readonly number[];
}

/**
 * Gradients of {@linkcode attentionRef64} given dout = ∂L/∂out, straight from the definitions (docs/attention.md):
 * P = softmax(scale · q kᵀ [+ mask]), dP = dout vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)), dq = scale · dS k, dk = scale ·
 * dSᵀ q, dv = Pᵀ dout, per batch and head. Rows not asked for are skipped, but dk and dv need every query row.
 * q: [B, nq, heads·dh], k: [B, nk, heads·dh], v: [B, nk, heads·dv], dout: [B, nq, heads·dv]
 * → dq: [B, R, heads·dh] (R = rows.length, nq without `rows`), dk: [B, K, heads·dh], dv: [B, K, heads·dv]
 *   (K = keys.length, nk without `keys`).
 */
export function attentionBackwardRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dout: ArrayLike<number>,
  s: AttentionBackwardRefShape,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { B, nq, nk, heads, dh, dv: dvDim } = s;
  const scale = s.scale ?? 1 / Math.sqrt(dh);
  const rows = s.rows ?? Array.from({ length: nq }, (_, i) => i);
  const keys = s.keys ?? Array.from({ length: nk }, (_, j) => j);
  const R = rows.length, K = keys.length, cq = heads * dh, cv = heads * dvDim;
  const dq = new Float64Array(B * R * cq), dk = new Float64Array(B * K * cq), dv = new Float64Array(B * K * cv);
  const rowSlot = new Map(rows.map((i, r) => [i, r]));
  const prob = new Float64Array(nk), dp = new Float64Array(nk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < nq; i++) {
        const r = rowSlot.get(i);
        if (r === undefined && K === 0) continue;
        const seen = s.causal ? Math.min(nk, i + 1) : nk;
        const qi = (b * nq + i) * cq + h * dh, gi = (b * nq + i) * cv + h * dvDim;
        let max = -Infinity;
        for (let j = 0; j < seen; j++) {
          const kj = (b * nk + j) * cq + h * dh;
          let d = 0;
          for (let c = 0; c < dh; c++) d += q[qi + c] * k[kj + c];
          prob[j] = d * scale;
          if (prob[j] > max) max = prob[j];
        }
        let sum = 0;
        for (let j = 0; j < seen; j++) sum += prob[j] = Math.exp(prob[j] - max);
        let rowDot = 0; // D_i = Σ_j P_ij dP_ij
        for (let j = 0; j < seen; j++) {
          prob[j] /= sum;
          const vj = (b * nk + j) * cv + h * dvDim;
          let d = 0;
          for (let c = 0; c < dvDim; c++) d += dout[gi + c] * v[vj + c];
          dp[j] = d;
          rowDot += prob[j] * d;
        }
        if (r !== undefined) {
          const at = (b * R + r) * cq + h * dh;
          for (let j = 0; j < seen; j++) {
            const ds = scale * prob[j] * (dp[j] - rowDot), kj = (b * nk + j) * cq + h * dh;
            for (let c = 0; c < dh; c++) dq[at + c] += ds * k[kj + c];
          }
        }
        keys.forEach((j, kk) => {
          if (j >= seen) return;
          const ds = scale * prob[j] * (dp[j] - rowDot);
          const atK = (b * K + kk) * cq + h * dh, atV = (b * K + kk) * cv + h * dvDim;
          for (let c = 0; c < dh; c++) dk[atK + c] += ds * q[qi + c];
          for (let c = 0; c < dvDim; c++) dv[atV + c] += prob[j] * dout[gi + c];
        });
      }
    }
  }
  return { dq, dk, dv };
}
