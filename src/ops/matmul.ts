/**
 * Batched matrix product with a fused bias + activation epilogue (the Linear layers, attention projections and
 * the GEMM inside conv2d all go through here).
 * @module
 */
import src from "../../kernels/matmul.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { broadcastShapes, broadcastStrides, padShape } from "./_shape.ts";

const kernels = defineKernels("matmul.wgsl", src, ["main", "naive"]);
/** Output rows × columns one workgroup of the tiled kernel computes (8 invocations of 32×32, 2 by 4). */
const WG_TILE_M = 64, WG_TILE_N = 128;
const ACTS = { none: 0, silu: 1, gelu: 2, quick_gelu: 3 } as const;

/** Activation applied in the epilogue. `gelu` is the exact (erf) form; `quick_gelu` is x·σ(1.702x) (CLIP). */
export type Activation = keyof typeof ACTS;

/** Which kernel computes the product. */
export type MatmulKernel = "auto" | "tiled" | "naive";

/** Options of {@linkcode matmul}. */
export interface MatmulOptions {
  /** Added to every row of the product, shape [N] (or to every column, shape [M], with `biasPerRow`). */
  bias?: Tensor;
  /** The bias holds one value per row of the output (shape [M]), as for a 1×1 convolution. */
  biasPerRow?: boolean;
  /** `a` is stored [..., K, M] and used transposed. */
  transA?: boolean;
  /** `b` is stored [..., N, K] and used transposed (nn.Linear's weight [out, in]). */
  transB?: boolean;
  /** Applied after alpha and bias. Default "none". */
  act?: Activation;
  /** Multiplies the product before the bias. Default 1. */
  alpha?: number;
  /** Write here instead of allocating; shape [...batch, M, N]. */
  out?: Tensor;
  /** Kernel choice: "auto" (default) takes the tiled kernel whenever the layout allows vec4 loads. */
  kernel?: MatmulKernel;
}

/** The dimensions a matmul resolves to: what the kernels and the CPU reference both need. */
export interface MatmulPlan {
  M: number;
  N: number;
  K: number;
  /** Output batch shape (broadcast of both inputs' batch dims). */
  batch: number[];
  /** Output shape [...batch, M, N]. */
  shape: number[];
  /** Batch strides of a and b in elements, padded to 4 dims (0 where broadcast). */
  sa: number[];
  sb: number[];
  /** Output batch shape padded to 4 dims. */
  bshape: number[];
}

/** Resolves and validates the shapes of `a @ b` (a: [...,M,K] or [...,K,M]; b: [...,K,N] or [...,N,K]). */
export function planMatmul(
  aShape: readonly number[],
  bShape: readonly number[],
  transA = false,
  transB = false,
): MatmulPlan {
  if (aShape.length < 2 || bShape.length < 2) {
    throw new TypeError(`matmul: a ${fmtShape(aShape)} and b ${fmtShape(bShape)} must both have rank ≥ 2`);
  }
  const [ar, ac] = aShape.slice(-2), [br, bc] = bShape.slice(-2);
  const [M, K] = transA ? [ac, ar] : [ar, ac];
  const [Kb, N] = transB ? [bc, br] : [br, bc];
  if (K !== Kb) {
    throw new TypeError(
      `matmul: inner dimensions differ: a ${fmtShape(aShape)}${transA ? "ᵀ" : ""} has K=${K}, ` +
        `b ${fmtShape(bShape)}${transB ? "ᵀ" : ""} has K=${Kb}`,
    );
  }
  const aBatch = aShape.slice(0, -2), bBatch = bShape.slice(0, -2);
  const batch = broadcastShapes("matmul batch dims", aBatch, bBatch);
  if (batch.length > 4) throw new RangeError(`matmul: ${batch.length} batch dims ${fmtShape(batch)}; at most 4`);
  const bshape = padShape("matmul", batch, 4);
  const sa = broadcastStrides(aBatch, bshape).map((s) => s * M * K);
  const sb = broadcastStrides(bBatch, bshape).map((s) => s * K * N);
  return { M, N, K, batch, shape: [...batch, M, N], sa, sb, bshape };
}

/**
 * `out = act(alpha · a @ b + bias)`, batched with broadcasting over leading dims (b may be an unbatched
 * weight). f32 only. Records one dispatch.
 *
 * ```ts
 * // nn.Linear: x [B, T, in] · weightᵀ [out, in] + bias [out]
 * const y = matmul(rec, x, weight, { transB: true, bias, act: "gelu" });
 * ```
 */
export function matmul(rec: Recorder, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  for (const t of [a, b, opts.bias]) {
    if (t && t.dtype !== "f32") throw new TypeError(`matmul: "${t.label}" is ${t.dtype}, expected f32`);
  }
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const plan = planMatmul(a.shape, b.shape, transA, transB);
  const act = opts.act ?? "none";
  if (!(act in ACTS)) throw new TypeError(`matmul: unknown activation "${act}" (${Object.keys(ACTS).join(", ")})`);
  const perRow = opts.biasPerRow ?? false;
  if (opts.bias) {
    const what = perRow ? `matmul per-row bias (a is ${fmtShape(a.shape)})` : `matmul bias (b is ${fmtShape(b.shape)})`;
    assertShape(what, opts.bias.shape, [perRow ? plan.M : plan.N]);
  }
  const out = opts.out ?? rec.ctx.tensor(plan.shape, "f32", "matmul");
  assertShape(`matmul output of ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`, out.shape, plan.shape);
  if (out.buffer === a.buffer || out.buffer === b.buffer || out.buffer === opts.bias?.buffer) {
    throw new TypeError(`matmul: the output "${out.label}" must not alias an input`);
  }
  let { M, N, K, sa, sb, bshape } = plan;
  if (numel(plan.shape) === 0) return out;
  // An unbatched b and a row-major a: the batch folds into M (one taller matrix, fewer ragged tiles).
  if (!transA && !perRow && sb.every((s) => s === 0) && sa.every((s, i) => s === 0 ? bshape[i] === 1 : true)) {
    M *= numel(plan.batch);
    sa = [0, 0, 0, 0];
    bshape = [1, 1, 1, 1];
  }
  const batches = numel(bshape);
  // The tiled kernel steps K four at a time on both operands (vec4 columns or 4-row groups), so K % 4 = 0 always.
  const vec4ok = K % 4 === 0 && (transA ? M : K) % 4 === 0 && (transB ? K : N) % 4 === 0;
  const choice = opts.kernel ?? "auto";
  if (choice === "tiled" && !vec4ok) {
    throw new RangeError(
      `matmul: the tiled kernel needs K${transA ? ", M" : ""}${transB ? "" : ", N"} to be multiples of 4 ` +
        `(a ${fmtShape(a.shape)}, b ${fmtShape(b.shape)})`,
    );
  }
  const tiled = choice === "tiled" || (choice === "auto" && vec4ok);
  const grid: [number, number, number] = tiled
    ? [Math.ceil(N / WG_TILE_N), Math.ceil(M / WG_TILE_M), batches]
    : [Math.ceil(N / 8), Math.ceil(M / 8), batches];
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  if (grid.some((g) => g > maxDim)) {
    throw new RangeError(`matmul: a ${fmtShape(a.shape)} @ b ${fmtShape(b.shape)} needs grid [${grid}]; max ${maxDim}`);
  }
  rec.dispatch(tiled ? kernels.main : kernels.naive, {
    read: { a, b, bias: opts.bias ?? a },
    write: { out },
    params: {
      M,
      N,
      K,
      alpha: opts.alpha ?? 1,
      act: ACTS[act],
      bias_mode: opts.bias ? (perRow ? 2 : 1) : 0,
      bshape,
      sa,
      sb,
    },
    grid,
    overrides: { TRANS_A: +transA, TRANS_B: +transB },
  });
  return out;
}
