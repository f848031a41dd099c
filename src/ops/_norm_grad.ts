/** The weight and bias gradients shared by GroupNorm's and LayerNorm's backward: sums of [M, 2, C] partials. */
import src from "../../kernels/_norm_param_grad.wgsl" with { type: "text" };
import columnSumSrc from "../../kernels/_column_sum.wgsl" with { type: "text" };
import { defineKernel, includeWgsl } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";

const kernel = defineKernel(
  "_norm_param_grad.wgsl",
  includeWgsl("_norm_param_grad.wgsl", src, { "_column_sum.wgsl": columnSumSrc }),
);
const TX = 32, TY = 8;

/**
 * `dbias[c] (+)= Σ_m partial[m, 0, c]` and `dweight[c] (+)= Σ_m partial[m, 1, c]`, for the gradients given.
 * partial: [m, 2, c] (Σ g, Σ g·x̂ over slices of the batch); `accum` is the ACCUM override (1 adds, 0 overwrites).
 */
export function normParamGrads(
  rec: Recorder,
  partial: Tensor,
  m: number,
  c: number,
  grads: { dweight?: Tensor; dbias?: Tensor },
  accum: number,
): void {
  const grid = grid1d(Math.ceil(c / TX), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  for (const [which, grad] of [[0, grads.dbias], [1, grads.dweight]] as const) {
    if (!grad) continue;
    rec.dispatch(kernel, {
      read: { partial },
      write: { grad },
      params: { m, c, row: grid[0] },
      grid,
      overrides: { TX, TY, WHICH: which, ACCUM: accum },
    });
  }
}
