/**
 * Faithfulness of attribution scores (CAD's check): ablate random small sets of components, measure the true
 * change of the erase score J on the scored points, and correlate it with the first-order prediction −ΣS.
 * The CAD paper reports Pearson r ≈ 0.5 on SD v1.4. Runtime-agnostic.
 * @module
 */
import { stopGradDiffLoss } from "../autodiff/loss.ts";
import { concat } from "../ops/concat.ts";
import type { StableDiffusionPipeline } from "../pipeline/stable_diffusion.ts";
import type { NoiseScheduler } from "../schedulers/base.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { rng } from "../ref/random.ts";
import type { ScoredPoint } from "./attribute.ts";

/** One random ablation and its effect. */
export interface FaithfulnessSample {
  param: string;
  /** Flat indices zeroed. */
  indices: number[];
  /** −ΣS over the set: the first-order change of J. */
  predicted: number;
  /** J(ablated) − J(original), measured (both branches recomputed with the ablated weights, as CAD measures). */
  actual: number;
  /**
   * The change of J with ε(z, c_base) held at the original weights' value: the quantity the stop-gradient
   * score differentiates, so it tests the gradients themselves.
   */
  actualFixedBase: number;
}

/** The check's result. */
export interface FaithfulnessResult {
  /** Pearson correlation of predicted and actual changes (CAD's reported number). */
  pearson: number;
  /** Pearson correlation of predicted and `actualFixedBase` changes. */
  pearsonFixedBase: number;
  baseline: number;
  samples: FaithfulnessSample[];
}

/** Pearson correlation of two equally long lists. */
export function pearson(a: readonly number[], b: readonly number[]): number {
  const n = a.length, ma = a.reduce((s, v) => s + v, 0) / n, mb = b.reduce((s, v) => s + v, 0) / n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) ** 2, sbb += (b[i] - mb) ** 2;
  return sab / Math.sqrt(saa * sbb);
}

/**
 * J = Σ over points of ‖ε(z, c) − ε(z, c_base)‖² with the current weights (forward only). With `fixedBase`
 * (one [1, C, h, w] tensor per point), ε(z, c_base) is taken from there instead of recomputed.
 */
export async function eraseScore(
  pipe: StableDiffusionPipeline,
  ddim: NoiseScheduler,
  cond: Tensor,
  points: readonly ScoredPoint[],
  fixedBase?: readonly Float32Array[],
): Promise<number> {
  const ctx = pipe.ctx;
  let total = 0;
  for (let i = 0; i < points.length; i++) {
    const pt = points[i];
    const rec = ctx.recorder("erase score");
    const z = ctx.upload(pt.latents, pt.shape);
    const batch = concat(rec, [z, z], { axis: 0 });
    const input = ddim.scaleModelInput(rec, batch, pt.step);
    const ts = ctx.upload(new Float32Array(2).fill(pt.timestep), [2]);
    const eps = pipe.unet.forward(rec, { sample: input, timesteps: ts, encoderHiddenStates: cond }, { cfg: false });
    const loss = stopGradDiffLoss(rec, fixedBase ? withSecondHalf(rec, eps, fixedBase[i]) : eps);
    rec.releaseAfterSubmit(...new Set([z, batch, input, ts, eps, loss.seed]));
    await rec.submit();
    total += (await ctx.readF32(loss.value))[0];
    ctx.release(loss.value);
  }
  return total;
}

/** A copy of `x` [2, …] whose second half is `second` (host data). */
function withSecondHalf(rec: Recorder, x: Tensor, second: Float32Array): Tensor {
  const out = rec.alloc(x.shape, "f32", "held base");
  const per = second.length * 4;
  rec.copy(x, out, per);
  const held = rec.ctx.upload(second, [second.length]);
  rec.copy(held, { ...out, offset: per }, per);
  rec.releaseAfterSubmit(held, out);
  return out;
}

/** ε(z, c_base) of every point with the current weights (host copies). */
async function baseOutputs(
  pipe: StableDiffusionPipeline,
  ddim: NoiseScheduler,
  cond: Tensor,
  points: readonly ScoredPoint[],
): Promise<Float32Array[]> {
  const ctx = pipe.ctx, out: Float32Array[] = [];
  for (const pt of points) {
    const rec = ctx.recorder("base outputs");
    const z = ctx.upload(pt.latents, pt.shape);
    const batch = concat(rec, [z, z], { axis: 0 });
    const input = ddim.scaleModelInput(rec, batch, pt.step);
    const ts = ctx.upload(new Float32Array(2).fill(pt.timestep), [2]);
    const eps = pipe.unet.forward(rec, { sample: input, timesteps: ts, encoderHiddenStates: cond }, { cfg: false });
    rec.releaseAfterSubmit(...new Set([z, batch, input, ts]));
    await rec.submit();
    const all = await ctx.readF32(eps);
    out.push(all.slice(all.length / 2));
    ctx.release(eps);
  }
  return out;
}

/**
 * Ablates `sets` random sets of `setSize` entries (each within one scored parameter, chosen uniformly), measuring
 * J before and after each and restoring the weights bit for bit.
 */
export async function faithfulness(
  pipe: StableDiffusionPipeline,
  ddim: NoiseScheduler,
  cond: Tensor,
  points: readonly ScoredPoint[],
  scores: ReadonlyMap<string, Float32Array>,
  opts: { sets: number; setSize?: number; seed?: number; onSet?: (i: number) => void },
): Promise<FaithfulnessResult> {
  if (points.length === 0) {
    throw new RangeError("faithfulness: no scored points (run the attribution with keepLatents)");
  }
  const ctx = pipe.ctx, r = rng(opts.seed ?? 0), size = opts.setSize ?? 16;
  const names = [...scores.keys()];
  const baseline = await eraseScore(pipe, ddim, cond, points);
  const held = await baseOutputs(pipe, ddim, cond, points);
  const samples: FaithfulnessSample[] = [];
  for (let s = 0; s < opts.sets; s++) {
    const name = names[Math.floor(r.uniform() * names.length)];
    const param = pipe.unet.params.get(name)!, S = scores.get(name)!;
    const original = await ctx.readF32(param);
    const picked = new Set<number>();
    while (picked.size < Math.min(size, S.length)) picked.add(Math.floor(r.uniform() * S.length));
    const indices = [...picked].sort((a, b) => a - b);
    const edited = original.slice();
    let predicted = 0;
    for (const i of indices) edited[i] = 0, predicted -= S[i];
    ctx.write(param, edited);
    const actual = (await eraseScore(pipe, ddim, cond, points)) - baseline;
    const actualFixedBase = (await eraseScore(pipe, ddim, cond, points, held)) - baseline;
    ctx.write(param, original);
    samples.push({ param: name, indices, predicted, actual, actualFixedBase });
    opts.onSet?.(s);
  }
  const predicted = samples.map((x) => x.predicted);
  return {
    pearson: pearson(predicted, samples.map((x) => x.actual)),
    pearsonFixedBase: pearson(predicted, samples.map((x) => x.actualFixedBase)),
    baseline,
    samples,
  };
}
