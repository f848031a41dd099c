/**
 * Batched matrix product with a fused bias + activation epilogue (the Linear layers, attention projections and
 * the GEMM inside conv2d all go through here).
 * @module
 */
import rawSrc from "../../kernels/matmul.wgsl" with { type: "text" };
import tileSrc from "../../kernels/_tile32.wgsl" with { type: "text" };
import tileFmaSrc from "../../kernels/_tile32_fma.wgsl" with { type: "text" };
import { defineKernels, includeWgsl } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { broadcastShapes, broadcastStrides, padShape } from "./_shape.ts";
import { defineF16Kernels, requireShaderF16 } from "./_f16.ts";

const src = includeWgsl("matmul.wgsl", rawSrc, { "_tile32.wgsl": tileSrc, "_tile32_fma.wgsl": tileFmaSrc });

const ENTRIES = ["main", "naive"] as const;
const kernels = defineKernels("matmul.wgsl", src, ENTRIES);
/** The same kernels with `a` or `b` stored as f16 (a weight loaded with `weights: "f16"`). */
const f16Kernels = {
  a: defineF16Kernels("matmul.wgsl", src, "a", ENTRIES),
  b: defineF16Kernels("matmul.wgsl", src, "b", ENTRIES),
};
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
 * weight). f32, except that one of `a` and `b` may be f16 (a weight stored as f16: read as f16, multiplied and
 * accumulated in f32; needs the device feature `shader-f16`). Records one dispatch.
 *
 * ```ts
 * // nn.Linear: x [B, T, in] · weightᵀ [out, in] + bias [out]
 * const y = matmul(rec, x, weight, { transB: true, bias, act: "gelu" });
 * ```
 */
export function matmul(rec: Recorder, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const half = operandDtypes(a, b);
  if (opts.bias && opts.bias.dtype !== "f32") {
    throw new TypeError(`matmul: bias "${opts.bias.label}" is ${opts.bias.dtype}, expected f32`);
  }
  if (half) requireShaderF16(rec.ctx, `matmul with f16 "${(half === "a" ? a : b).label}"`);
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const plan = planMatmul(a.shape, b.shape, transA, transB);
  const act = opts.act ?? "none";
  if (!(act in ACTS)) throw new TypeError(`matmul: unknown activation "${act}" (${Object.keys(ACTS).join(", ")})`);
  const perRow = opts.biasPerRow ?? false;
  if (opts.bias) {
    const what = perRow ? `matmul per-row bias (a is ${fmtShape(a.shape)})` : `matmul bias (b is ${fmtShape(b.shape)})`;
    assertShape(what, opts.bias.shape, [perRow ? plan.M : plan.N]);
  }
  const out = opts.out ?? rec.alloc(plan.shape, "f32", "matmul");
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
  // vec4 loads along each operand's contiguous dim and vec4 stores along N; the k loop steps by 4, and only the
  // Aᵀ·B layout (where neither operand is loaded along K) zeroes a ragged last step, so the other three need K % 4 = 0.
  const vec4ok = (transA ? M : K) % 4 === 0 && (transB ? K : N) % 4 === 0 && N % 4 === 0 &&
    (K % 4 === 0 || (transA && !transB));
  const choice = opts.kernel ?? "auto";
  if (choice === "tiled" && !vec4ok) {
    throw new RangeError(
      `matmul: the tiled kernel needs ${tiledNeeds(transA, transB)} to be multiples of 4 ` +
        `(a ${fmtShape(a.shape)}, b ${fmtShape(b.shape)})`,
    );
  }
  const tiled = choice === "tiled" || (choice === "auto" && vec4ok);
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const split = laneSplit(M, N);
  const grid: [number, number, number] = tiled
    ? [split.grid[0], split.grid[1], batches]
    : grid1d(Math.ceil(numel(plan.shape) / 4 / 64), maxDim);
  if (grid.some((g) => g > maxDim)) {
    throw new RangeError(`matmul: a ${fmtShape(a.shape)} @ b ${fmtShape(b.shape)} needs grid [${grid}]; max ${maxDim}`);
  }
  const ks = half ? f16Kernels[half] : kernels;
  rec.dispatch(tiled ? ks.main : ks.naive, {
    read: { a, b, bias: opts.bias ?? a },
    write: { out },
    params: {
      M,
      N,
      K,
      alpha: opts.alpha ?? 1,
      act: ACTS[act],
      bias_mode: opts.bias ? (perRow ? 2 : 1) : 0,
      lanes_n: split.lanesN,
      wgx: grid[0],
      bshape,
      sa,
      sb,
    },
    grid,
    overrides: { TRANS_A: +transA, TRANS_B: +transB },
  });
  return out;
}

/** Which operand is f16 (at most one may be; the rest is f32), or null. */
function operandDtypes(a: Tensor, b: Tensor): "a" | "b" | null {
  for (const t of [a, b]) {
    if (t.dtype !== "f32" && t.dtype !== "f16") throw new TypeError(`matmul: "${t.label}" is ${t.dtype}, expected f32`);
  }
  if (a.dtype === "f16" && b.dtype === "f16") {
    throw new TypeError(`matmul: "${a.label}" and "${b.label}" are both f16; at most one operand may be (a weight)`);
  }
  return a.dtype === "f16" ? "a" : b.dtype === "f16" ? "b" : null;
}

/** The dimensions the tiled kernel needs to be multiples of 4, for the error message. */
function tiledNeeds(transA: boolean, transB: boolean): string {
  const dims = [transA && !transB ? "" : "K", transA ? "M" : "", "N"].filter((d) => d);
  return dims.join(", ");
}

/**
 * How the 8 invocations (32×32 outputs each) of a tiled matmul or conv2d workgroup split between M and N: the
 * split with the fewest workgroups, i.e. the least padding (4 along N on ties). Returns lanes along N and the
 * workgroup grid [along N, along M].
 */
export function laneSplit(M: number, N: number): { lanesN: number; grid: [number, number] } {
  let best = { lanesN: 0, grid: [0, 0] as [number, number] };
  for (const lanesN of [4, 8, 2, 1]) {
    const grid: [number, number] = [Math.ceil(N / (32 * lanesN)), Math.ceil(M / (32 * (8 / lanesN)))];
    if (!best.lanesN || grid[0] * grid[1] < best.grid[0] * best.grid[1]) best = { lanesN, grid };
  }
  return best;
}
