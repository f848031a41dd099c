/**
 * GroupNorm (PyTorch semantics) with an optional fused SiLU, as in every resnet block of the SD U-Net and VAE.
 * @module
 */
import src from "../../kernels/group_norm.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";

const kernels = defineKernels("group_norm.wgsl", src, ["stats_chunk", "merge", "apply"]);
const WG = 256;
/** Elements one `stats_chunk` workgroup reduces: WG · ITEMS, with ITEMS read from the WGSL (its register array). */
const CHUNK = WG * Number(/const ITEMS: u32 = (\d+)u;/.exec(src)![1]);

/** Options of {@linkcode groupNorm}. */
export interface GroupNormOptions {
  /** Per-channel scale, shape [C]. */
  weight: Tensor;
  /** Per-channel shift, shape [C]. */
  bias: Tensor;
  /** Number of groups; must divide C. */
  groups: number;
  /** Added to the variance inside the square root. Default 1e-5 (PyTorch's). */
  eps?: number;
  /** Apply SiLU (x·sigmoid(x)) after the affine, fused. */
  silu?: boolean;
  /** Write here instead of allocating; must not share a buffer with `x`. */
  out?: Tensor;
  /** Receives per-group [mean, rstd], shape [B, groups, 2], for the backward pass (scratch otherwise). */
  stats?: Tensor;
}

/**
 * GroupNorm of `x` [B, C, ...spatial] (NCHW; spatial may be empty): biased variance per (sample, group), eps inside
 * the square root, then a per-channel affine and optionally SiLU. Statistics are two-pass per chunk and merged with
 * Chan's rule, so long groups (SD: 10 channels × 64·64) stay accurate.
 *
 * ```ts ignore
 * const h = groupNorm(rec, x, { weight, bias, groups: 32, eps: 1e-5, silu: true });
 * ```
 */
export function groupNorm(rec: Recorder, x: Tensor, opts: GroupNormOptions): Tensor {
  const { weight, bias, groups, eps = 1e-5, silu = false } = opts;
  for (const t of [x, weight, bias]) {
    if (t.dtype !== "f32") throw new TypeError(`groupNorm: "${t.label}" is ${t.dtype}, expected f32`);
  }
  if (x.shape.length < 2) throw new TypeError(`groupNorm: x ${fmtShape(x.shape)} needs at least [B, C]`);
  const [b, c] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new RangeError(`groupNorm: groups = ${groups} does not divide the ${c} channels of x ${fmtShape(x.shape)}`);
  }
  assertShape(`groupNorm weight (x is ${fmtShape(x.shape)})`, weight.shape, [c]);
  assertShape(`groupNorm bias (x is ${fmtShape(x.shape)})`, bias.shape, [c]);
  if (!(eps >= 0)) throw new RangeError(`groupNorm: eps must be ≥ 0, got ${eps}`);
  const s = numel(x.shape.slice(2));
  const n = (c / groups) * s;
  const total = numel(x.shape);
  const nGroups = b * groups;
  if (opts.out) {
    assertShape("groupNorm out", opts.out.shape, x.shape);
    if (opts.out.buffer === x.buffer) throw new TypeError(`groupNorm: out must not share a buffer with x (in-place)`);
  }
  if (opts.stats) assertShape("groupNorm stats", opts.stats.shape, [b, groups, 2]);
  const out = opts.out ?? rec.alloc(x.shape, "f32", "group_norm");
  if (total === 0) return out;
  const stats = opts.stats ?? rec.alloc([b, groups, 2], "f32", "group_norm.stats");
  const chunks = Math.ceil(n / CHUNK);
  const partial = rec.alloc([nGroups, chunks, 2], "f32", "group_norm.partial");
  rec.releaseAfterSubmit(partial);
  if (!opts.stats) rec.releaseAfterSubmit(stats);

  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const buffers = { read: { x, weight, bias }, write: { partial, stats, out } };
  const base = { n, s, c, groups: nGroups, chunks, total, eps };
  const steps = [
    [kernels.stats_chunk, nGroups * chunks, { WG }],
    [kernels.merge, nGroups, { WG }],
    [kernels.apply, Math.ceil(total / WG), { WG, SILU: silu ? 1 : 0 }],
  ] as const;
  for (const [kernel, workgroups, overrides] of steps) {
    const grid = grid1d(workgroups, maxDim);
    rec.dispatch(kernel, { ...buffers, params: { ...base, row: grid[0] }, grid, overrides });
  }
  return out;
}
