/**
 * Gradient-norm clipping on the GPU, without a readback (see kernels/grad_norm.wgsl).
 * @module
 */
import src from "../../kernels/grad_norm.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";

const K = defineKernels("grad_norm.wgsl", src, ["sumsq", "sumsq4", "combine", "apply", "apply4"]);
const WG = 256;
/** Elements (vec4s when aligned) each `sumsq` invocation adds serially: a workgroup makes one partial of WG · PER. */
const PER = 16;
/** `combine` loops ⌈partials / WG⌉ times; lavapipe stops an invocation after 65,535 loop iterations. */
const MAX_PARTIALS = WG * 60_000;

/** Options of {@linkcode gradNorm} and {@linkcode clipGradNorm}. */
export interface GradNormOptions {
  /** Write the norm here (f32, shape `[]`) instead of allocating it, e.g. a buffer kept for logging. */
  out?: Tensor;
}

/** A tensor seen as vec4s when its length and offset allow (4× fewer loads and partial sums), else as f32s. */
function lanes(g: Tensor): { vec: boolean; count: number } {
  const n = numel(g.shape);
  const vec = n % 4 === 0 && g.offset % 16 === 0;
  return { vec, count: vec ? n / 4 : n };
}

/** The dispatches shared by gradNorm and clipGradNorm; returns the norm and the scale buffer (scratch). */
function recordNorm(
  rec: Recorder,
  what: string,
  grads: readonly Tensor[],
  maxNorm: number,
  opts: GradNormOptions,
): { norm: Tensor; scale: Tensor } {
  // views of one buffer are fine (a flat gradient buffer); the same elements twice would be counted twice
  const ranges = new Map<GPUBuffer, [number, number, Tensor][]>();
  let count = 0;
  for (const g of grads) {
    requireDtype(what, g);
    const lo = g.offset, hi = g.offset + 4 * numel(g.shape);
    const list = ranges.get(g.buffer) ?? [];
    const other = list.find(([a, b]) => lo < b && a < hi);
    if (other) {
      throw new TypeError(
        `${what}: gradients "${other[2].label}" ${fmtShape(other[2].shape)} and "${g.label}" ${fmtShape(g.shape)} ` +
          `overlap in one buffer`,
      );
    }
    list.push([lo, hi, g]);
    ranges.set(g.buffer, list);
    count += Math.ceil(lanes(g).count / (WG * PER));
  }
  if (count > MAX_PARTIALS) {
    throw new RangeError(`${what}: ${count} partial sums exceed ${MAX_PARTIALS}; the gradients are too large`);
  }
  if (opts.out) {
    requireDtype(what, opts.out);
    assertShape(`${what} out "${opts.out.label}"`, opts.out.shape, []);
    if (ranges.has(opts.out.buffer)) {
      throw new TypeError(`${what}: out "${opts.out.label}" shares a buffer with a gradient`);
    }
  }
  const norm = opts.out ?? rec.alloc([], "f32", "grad_norm");
  const scale = rec.alloc([], "f32", "grad_norm.scale");
  const partials = rec.alloc([Math.max(1, count)], "f32", "grad_norm.partials");
  let base = 0;
  for (const g of grads) {
    const { vec, count: n } = lanes(g);
    if (n === 0) continue;
    const grid = grid1dFor(rec, n, WG * PER);
    rec.dispatch(vec ? K.sumsq4 : K.sumsq, {
      read: vec ? { g4: g } : { g },
      write: { partials_out: partials },
      params: { n, row: grid[0], base, max_norm: 0 },
      grid,
      overrides: { WG, PER },
    });
    base += Math.ceil(n / (WG * PER));
  }
  rec.dispatch(K.combine, {
    read: { partials },
    write: { norm, scale_out: scale },
    params: { n: count, row: 1, base: 0, max_norm: maxNorm },
    grid: [1],
    overrides: { WG },
  });
  rec.recycle(partials);
  return { norm, scale };
}

/**
 * The global L2 norm `√(Σ_tensors Σ g²)` of `grads`, as an f32 tensor of shape `[]` on the GPU (read it back to
 * log it). Nothing is modified.
 */
export function gradNorm(rec: Recorder, grads: readonly Tensor[], opts: GradNormOptions = {}): Tensor {
  const { norm, scale } = recordNorm(rec, "gradNorm", grads, 0, opts);
  rec.recycle(scale);
  return norm;
}

/**
 * Scales every gradient by `min(1, maxNorm / (norm + 1e-6))`, where `norm` is the global L2 norm over all of them
 * (`torch.nn.utils.clip_grad_norm_`). Everything stays on the GPU: the factor lives in a one-element buffer that
 * the scaling kernel reads, and below the threshold the gradients are left untouched (bit-for-bit). Returns the
 * norm before clipping (f32, shape `[]`) for logging. A non-finite norm (overflowing or NaN gradients) is not
 * detected here: check the returned norm.
 *
 * ```ts ignore
 * const norm = clipGradNorm(rec, [gradW, gradB], 1.0);
 * adam.step(rec);
 * await rec.submit();
 * console.log("grad norm", (await ctx.readF32(norm))[0]);
 * ```
 */
export function clipGradNorm(
  rec: Recorder,
  grads: readonly Tensor[],
  maxNorm: number,
  opts: GradNormOptions = {},
): Tensor {
  if (!Number.isFinite(maxNorm) || maxNorm < 0) {
    throw new RangeError(`clipGradNorm: maxNorm must be a finite number ≥ 0, got ${maxNorm}`);
  }
  const { norm, scale } = recordNorm(rec, "clipGradNorm", grads, maxNorm, opts);
  for (const g of grads) {
    const { vec, count: n } = lanes(g);
    if (n === 0) continue;
    const grid = grid1dFor(rec, n, WG);
    const params = { n, row: grid[0], base: 0, max_norm: 0 };
    if (vec) rec.dispatch(K.apply4, { read: { scale }, write: { gw4: g }, params, grid, overrides: { WG } });
    else rec.dispatch(K.apply, { read: { scale }, write: { gw: g }, params, grid, overrides: { WG } });
  }
  rec.recycle(scale);
  return norm;
}
