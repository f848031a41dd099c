/**
 * CPU reference of the TopK SAE (src/sae/): forward, losses, the backward (by the chain rule, densely), the decoder
 * constraint, the dead-latent counter and Weiszfeld's geometric median. Float64 accumulation; top-k by
 * `topkRef` (descending, ties by lower index, as kernels/topk.wgsl).
 */
import { topkRef } from "./topk.ts";

/** SAE parameters on the host. W_enc [n, d], b_enc [n], W_dec [d, n], b_pre [d]. */
export interface SaeRefParams {
  W_enc: ArrayLike<number>;
  b_enc: ArrayLike<number>;
  W_dec: ArrayLike<number>;
  b_pre: ArrayLike<number>;
}

/** Shape and options of a reference forward. */
export interface SaeRefConfig {
  B: number;
  d: number;
  n: number;
  k: number;
  relu: boolean;
  /** AuxK slots per row (0 = none). */
  kAux: number;
  /** [n], 1 = dead (used when kAux > 0). */
  dead?: ArrayLike<number>;
}

/** Everything the reference forward computes. */
export interface SaeRefForward {
  /** x − b_pre [B, d]. */
  xc: Float64Array;
  /** pre-activations after the ReLU (when on) [B, n]. */
  pre: Float64Array;
  /** Main code [B, k]. */
  values: Float32Array;
  indices: Uint32Array;
  /** Dense z [B, n]. */
  z: Float64Array;
  /** AuxK code [B, kAux] (empty without AuxK). */
  auxValues: Float32Array;
  auxIndices: Uint32Array;
  /** x̂ [B, d], and the AuxK reconstruction (no bias) [B, d]. */
  xHat: Float64Array;
  auxRecon: Float64Array;
}

/**
 * The forward: pre = W_enc (x − b_pre) + b_enc, ReLU, top-k, x̂ = W_dec z + b_pre; AuxK: top-kAux of
 * max(pre, 0)·dead, decoded without bias. x: [B, d].
 */
export function saeForwardRef(p: SaeRefParams, x: ArrayLike<number>, c: SaeRefConfig): SaeRefForward {
  const { B, d, n, k, relu, kAux } = c;
  const xc = new Float64Array(B * d);
  for (let r = 0; r < B; r++) for (let i = 0; i < d; i++) xc[r * d + i] = x[r * d + i] - p.b_pre[i];
  const pre = new Float64Array(B * n);
  for (let r = 0; r < B; r++) {
    for (let j = 0; j < n; j++) {
      let s = p.b_enc[j];
      for (let i = 0; i < d; i++) s += p.W_enc[j * d + i] * xc[r * d + i];
      pre[r * n + j] = relu ? Math.max(s, 0) : s;
    }
  }
  // top-k on the f32-rounded pre-activations, as the GPU selects
  const values = new Float32Array(B * k), indices = new Uint32Array(B * k);
  topkRef(values, indices, Float32Array.from(pre), B, n, k);
  const z = new Float64Array(B * n);
  for (let r = 0; r < B; r++) {
    for (let s = 0; s < k; s++) z[r * n + indices[r * k + s]] = pre[r * n + indices[r * k + s]];
  }
  const auxValues = new Float32Array(B * kAux), auxIndices = new Uint32Array(B * kAux);
  if (kAux > 0) {
    const masked = new Float32Array(B * n);
    for (let t = 0; t < B * n; t++) masked[t] = Math.max(pre[t], 0) * (c.dead?.[t % n] ?? 0);
    topkRef(auxValues, auxIndices, masked, B, n, kAux);
  }
  const xHat = decodeRef(z, p.W_dec, B, d, n, p.b_pre);
  const zAux = new Float64Array(B * n);
  for (let r = 0; r < B; r++) {
    for (let s = 0; s < kAux; s++) {
      const j = auxIndices[r * kAux + s];
      zAux[r * n + j] = Math.max(pre[r * n + j], 0) * (c.dead?.[j] ?? 0);
    }
  }
  const auxRecon = decodeRef(zAux, p.W_dec, B, d, n);
  return { xc, pre, values, indices, z, auxValues, auxIndices, xHat, auxRecon };
}

/** out [B, d] = z [B, n] · W_decᵀ (W_dec [d, n]) + bias [d]. */
function decodeRef(
  z: Float64Array,
  W_dec: ArrayLike<number>,
  B: number,
  d: number,
  n: number,
  bias?: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(B * d);
  for (let r = 0; r < B; r++) {
    for (let i = 0; i < d; i++) {
      let s = bias ? bias[i] : 0;
      for (let j = 0; j < n; j++) {
        const v = z[r * n + j];
        if (v !== 0) s += v * W_dec[i * n + j];
      }
      out[r * d + i] = s;
    }
  }
  return out;
}

/** Loss forms, as in src/sae/loss.ts. */
export interface SaeRefLossOptions {
  rec: "sum" | "scaled" | "normalized";
  aux: "sum" | "normalized" | "none";
  auxAlpha: number;
  mseScale: number;
}

/** Losses, metrics and dL/dx̂, dL/dê of a batch. x, xHat, auxRecon: [B, d]. */
export interface SaeRefLoss {
  loss: number;
  recLoss: number;
  auxLoss: number;
  /** Σ e² / B. */
  mse: number;
  fvu: number;
  explainedVariance: number;
  /** dL/dx̂ [B, d] and dL/dê [B, d]. */
  dxHat: Float64Array;
  dAux: Float64Array;
}

/** The losses of src/sae/loss.ts in float64 (normalised forms with a zero denominator give 0). */
export function saeLossRef(
  x: ArrayLike<number>,
  xHat: ArrayLike<number>,
  auxRecon: ArrayLike<number>,
  B: number,
  d: number,
  o: SaeRefLossOptions,
): SaeRefLoss {
  const N = B * d;
  const e = new Float64Array(N);
  for (let t = 0; t < N; t++) e[t] = x[t] - xHat[t];
  const colVar = (v: ArrayLike<number>) => {
    const out = new Float64Array(d);
    for (let i = 0; i < d; i++) {
      let m = 0;
      for (let r = 0; r < B; r++) m += v[r * d + i];
      m /= B;
      for (let r = 0; r < B; r++) out[i] += (v[r * d + i] - m) ** 2;
    }
    return out;
  };
  const sxxCol = colVar(x), seeCol = colVar(e);
  const sxx = sxxCol.reduce((a, b) => a + b, 0), see = seeCol.reduce((a, b) => a + b, 0);
  let sse = 0, saux = 0;
  for (let t = 0; t < N; t++) {
    sse += e[t] ** 2;
    saux += (auxRecon[t] - e[t]) ** 2;
  }
  let ev = 0, evn = 0;
  for (let i = 0; i < d; i++) {
    if (sxxCol[i] > 0) {
      ev += 1 - seeCol[i] / sxxCol[i];
      evn++;
    }
  }
  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a / b) ? a / b : 0);
  let recLoss = sse / B, cRec = 2 / B;
  if (o.rec === "scaled") [recLoss, cRec] = [o.mseScale * sse / N, 2 * o.mseScale / N];
  if (o.rec === "normalized") [recLoss, cRec] = [ratio(sse, sxx), ratio(2, sxx)];
  const alpha = o.aux === "none" ? 0 : o.auxAlpha;
  let auxLoss = saux / B, cAux = 2 * alpha / B;
  if (o.aux === "normalized") [auxLoss, cAux] = [ratio(saux, see), ratio(2 * alpha, see)];
  if (o.aux === "none") [auxLoss, cAux] = [0, 0];
  const dxHat = new Float64Array(N), dAux = new Float64Array(N);
  for (let t = 0; t < N; t++) {
    dxHat[t] = -cRec * e[t];
    dAux[t] = cAux * (auxRecon[t] - e[t]);
  }
  return {
    loss: recLoss + alpha * auxLoss,
    recLoss,
    auxLoss,
    mse: sse / B,
    fvu: sse / sxx,
    explainedVariance: ev / evn,
    dxHat,
    dAux,
  };
}

/** Parameter gradients, shaped like the parameters. */
export interface SaeRefGrads {
  W_enc: Float64Array;
  b_enc: Float64Array;
  W_dec: Float64Array;
  b_pre: Float64Array;
}

/**
 * The backward by the chain rule over dense z: gradients of L given dL/dx̂ and dL/dê (from `saeLossRef`), through the
 * main and AuxK codes of `f`. The W_dec gradient is raw (no projection).
 */
export function saeBackwardRef(
  p: SaeRefParams,
  f: SaeRefForward,
  dxHat: ArrayLike<number>,
  dAux: ArrayLike<number>,
  c: SaeRefConfig,
): SaeRefGrads {
  const { B, d, n, k, relu, kAux } = c;
  const g: SaeRefGrads = {
    W_enc: new Float64Array(n * d),
    b_enc: new Float64Array(n),
    W_dec: new Float64Array(d * n),
    b_pre: new Float64Array(d),
  };
  const dpre = new Float64Array(B * n);
  const slot = (r: number, j: number, v: number, dy: ArrayLike<number>, gate: boolean) => {
    let dz = 0;
    for (let i = 0; i < d; i++) {
      dz += dy[r * d + i] * p.W_dec[i * n + j];
      g.W_dec[i * n + j] += v * dy[r * d + i];
    }
    if (gate) dpre[r * n + j] += dz;
  };
  for (let r = 0; r < B; r++) {
    for (let s = 0; s < k; s++) {
      const j = f.indices[r * k + s];
      slot(r, j, f.z[r * n + j], dxHat, relu ? f.pre[r * n + j] > 0 : true);
    }
    for (let s = 0; s < kAux; s++) {
      const j = f.auxIndices[r * kAux + s];
      const v = Math.max(f.pre[r * n + j], 0) * (c.dead?.[j] ?? 0);
      slot(r, j, v, dAux, v > 0);
    }
    for (let i = 0; i < d; i++) g.b_pre[i] += dxHat[r * d + i];
  }
  for (let r = 0; r < B; r++) {
    for (let j = 0; j < n; j++) {
      const gp = dpre[r * n + j];
      if (gp === 0) continue;
      g.b_enc[j] += gp;
      for (let i = 0; i < d; i++) {
        g.W_enc[j * d + i] += gp * f.xc[r * d + i];
        g.b_pre[i] -= gp * p.W_enc[j * d + i];
      }
    }
  }
  return g;
}

/** The decoder constraint on W_dec [d, n] (in place): unit columns, then the gradient's parallel part removed. */
export function constrainDecoderRef(
  W: Float64Array | Float32Array,
  grad: Float64Array | Float32Array | null,
  d: number,
  n: number,
): void {
  for (let j = 0; j < n; j++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += W[i * n + j] ** 2;
    const norm = Math.sqrt(ss);
    if (norm > 0) { for (let i = 0; i < d; i++) W[i * n + j] /= norm; }
    if (!grad) continue;
    let dot = 0;
    for (let i = 0; i < d; i++) dot += grad[i * n + j] * W[i * n + j];
    for (let i = 0; i < d; i++) grad[i * n + j] -= dot * W[i * n + j];
  }
}

/** One update of the dead-latent counter (in place) from a main code [B, k]; returns the dead mask [n]. */
export function deadUpdateRef(
  counter: Uint32Array,
  values: ArrayLike<number>,
  indices: ArrayLike<number>,
  deadSteps: number,
  threshold = 1e-3,
): Float32Array {
  const fired = new Uint8Array(counter.length);
  for (let t = 0; t < values.length; t++) if (values[t] > threshold) fired[indices[t]] = 1;
  const mask = new Float32Array(counter.length);
  for (let j = 0; j < counter.length; j++) {
    counter[j] = (fired[j] ? 0 : counter[j]) + 1;
    mask[j] = counter[j] > deadSteps ? 1 : 0;
  }
  return mask;
}

/** Weiszfeld's geometric median of points [N, d]: start at the mean, `iters` steps with distances floored at eps. */
export function geometricMedianRef(
  points: ArrayLike<number>,
  N: number,
  d: number,
  iters = 100,
  eps = 1e-6,
): Float64Array {
  let y = new Float64Array(d);
  for (let r = 0; r < N; r++) for (let i = 0; i < d; i++) y[i] += points[r * d + i] / N;
  for (let it = 0; it < iters; it++) {
    const num = new Float64Array(d);
    let den = 0;
    for (let r = 0; r < N; r++) {
      let ss = 0;
      for (let i = 0; i < d; i++) ss += (points[r * d + i] - y[i]) ** 2;
      const w = 1 / Math.max(Math.sqrt(ss), eps);
      den += w;
      for (let i = 0; i < d; i++) num[i] += w * points[r * d + i];
    }
    y = num.map((v) => v / den);
  }
  return y;
}
