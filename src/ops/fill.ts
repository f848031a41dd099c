/**
 * Filling tensors on the GPU: a constant, or seeded uniform/normal numbers (see kernels/fill.wgsl).
 * @module
 */
import src from "../../kernels/fill.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, requireDtype } from "./_alloc.ts";

const kernel = defineKernel("fill.wgsl", src);
const WG = 256;

/** How to fill. */
export type FillSpec =
  | { value: number }
  | { uniform: [lo: number, hi: number]; seed: number }
  | { normal: [mean: number, std: number]; seed: number };

/** Fills `t` (f32) in place. */
export function fill(rec: Recorder, t: Tensor, spec: FillSpec): Tensor {
  requireDtype("fill", t);
  const n = numel(t.shape);
  const grid = grid1dFor(rec, n, WG);
  const [dist, a, b, seed] = "value" in spec
    ? [0, spec.value, 0, 0]
    : "uniform" in spec
    ? [1, spec.uniform[0], spec.uniform[1], spec.seed]
    : [2, spec.normal[0], spec.normal[1], spec.seed];
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`fill: seed must be a u32, got ${seed}`);
  }
  rec.dispatch(kernel, {
    write: { x: t },
    params: { n, row: grid[0], seed, a, b },
    grid,
    overrides: { DIST: dist, WG },
  });
  return t;
}
