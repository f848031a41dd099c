/**
 * Scalar losses over model outputs, as a value (a 1-element GPU tensor) and the gradient seed dL/d(output) that
 * `Tape.backward` starts from. Gradients accumulate across backward calls in f32 (the tape's leaf gradients are
 * only zeroed when the caller says so), so a sum over timesteps and samples is a loop of forward/backward.
 * @module
 */
import src from "../../kernels/half_diff.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { binary } from "../ops/binary.ts";
import { lincomb } from "../ops/lincomb.ts";
import { scale } from "../ops/unary.ts";
import { sum } from "../ops/reduce.ts";
import { grid1dFor } from "../ops/_alloc.ts";

const halfDiff = defineKernel("half_diff.wgsl", src);

/** A loss: its value and the gradient seed for `Tape.backward([[output, seed]])`. Both are the caller's. */
export interface Loss {
  /** Scalar value, shape []. */
  value: Tensor;
  /** dL/d(output), shaped like the output. */
  seed: Tensor;
}

/** Σ output ⊙ w (the fixtures' loss); the seed is a copy of w. */
export function weightedSumLoss(rec: Recorder, output: Tensor, w: Tensor): Loss {
  assertShape("weightedSumLoss weights", w.shape, output.shape);
  const prod = binary(rec, "mul", output, w);
  const value = sum(rec, prod);
  rec.recycle(prod);
  const seed = rec.alloc(w.shape, "f32", "loss seed");
  rec.copy(w, seed);
  return { value, seed };
}

/** mean((output − target)²) (or the sum, with `reduction: "sum"`): the denoising loss when target is the noise. */
export function mseLoss(
  rec: Recorder,
  output: Tensor,
  target: Tensor,
  opts: { reduction?: "mean" | "sum" } = {},
): Loss {
  assertShape("mseLoss target", target.shape, output.shape);
  const n = opts.reduction === "sum" ? 1 : numel(output.shape);
  const diff = lincomb(rec, [[1, output], [-1, target]]);
  const sq = binary(rec, "mul", diff, diff);
  const total = sum(rec, sq);
  const value = n === 1 ? total : scale(rec, total, { alpha: 1 / n });
  const seed = scale(rec, diff, { alpha: 2 / n });
  rec.recycle(diff, sq);
  if (value !== total) rec.recycle(total);
  return { value, seed };
}

/**
 * ‖x₁ − stopgrad(x₂)‖² summed over elements, for an output x = [x₁, x₂] stacked along dim 0 (one model call on a
 * `[c, c_base]` batch). The seed is 2(x₁ − x₂) on the first half and 0 on the second.
 */
export function stopGradDiffLoss(rec: Recorder, output: Tensor): Loss {
  if (output.shape[0] % 2) throw new TypeError(`stopGradDiffLoss: batch of ${fmtShape(output.shape)} is not a pair`);
  const half = numel(output.shape) / 2;
  const seed = rec.alloc(output.shape, "f32", "loss seed");
  const grid = grid1dFor(rec, 2 * half, 256);
  rec.dispatch(halfDiff, { read: { x: output }, write: { seed }, params: { half, row: grid[0], c: 2 }, grid });
  // value = Σ (x₁ − x₂)² = Σ seed² / 4
  const sq = binary(rec, "mul", seed, seed);
  const total = sum(rec, sq);
  const value = scale(rec, total, { alpha: 0.25 });
  rec.recycle(sq, total);
  return { value, seed };
}
