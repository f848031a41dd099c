/** CPU reference for matmul.wgsl (float64 accumulation). */
import { numel } from "../gpu/tensor.ts";
import { type Activation, planMatmul } from "../ops/matmul.ts";

/** erf(x) to ~1e-15: Maclaurin series for |x| < 3, continued fraction of erfc beyond (JS has no Math.erf). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax, sum = ax;
    for (let n = 1; n < 100; n++) {
      term *= -ax * ax / n;
      const d = term / (2 * n + 1);
      sum += d;
      if (Math.abs(d) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * sum * 2 / Math.sqrt(Math.PI);
  }
  // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …)))), evaluated bottom-up
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + (n / 2) / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

/** The activations of the matmul epilogue, in float64. */
export function activationRef(act: Activation, x: number): number {
  switch (act) {
    case "silu":
      return x / (1 + Math.exp(-x));
    case "gelu":
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "quick_gelu":
      return x / (1 + Math.exp(-1.702 * x));
    default:
      return x;
  }
}

/** Options of {@linkcode matmulRef}, as for `matmul`. */
export interface MatmulRefOptions {
  bias?: Float32Array;
  biasPerRow?: boolean;
  transA?: boolean;
  transB?: boolean;
  act?: Activation;
  alpha?: number;
}

/**
 * out = act(alpha · a @ b + bias); returns the output and its shape.
 * a: aShape = [...batch, M, K] (or [..., K, M] with transA); b: bShape = [...batch, K, N] (or [..., N, K] with
 * transB); bias: [N] ([M] with biasPerRow); out: [...broadcast batch, M, N].
 */
export function matmulRef(
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
  opts: MatmulRefOptions = {},
): { out: Float32Array; shape: number[] } {
  const { transA = false, transB = false, act = "none", alpha = 1, bias } = opts;
  const { M, N, K, shape, sa, sb, bshape } = planMatmul(aShape, bShape, transA, transB);
  const out = new Float32Array(numel(shape));
  const batches = numel(bshape);
  for (let z = 0; z < batches; z++) {
    const idx = [
      Math.floor(z / (bshape[1] * bshape[2] * bshape[3])),
      Math.floor(z / (bshape[2] * bshape[3])) % bshape[1],
      Math.floor(z / bshape[3]) % bshape[2],
      z % bshape[3],
    ];
    const ao = idx.reduce((s, v, i) => s + v * sa[i], 0), bo = idx.reduce((s, v, i) => s + v * sb[i], 0);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          s += a[ao + (transA ? k * M + m : m * K + k)] * b[bo + (transB ? n * K + k : k * N + n)];
        }
        out[(z * M + m) * N + n] = activationRef(act, alpha * s + (bias ? bias[opts.biasPerRow ? m : n] : 0));
      }
    }
  }
  return { out, shape };
}
