/**
 * Elementwise binary ops with broadcasting: add, sub, mul, div and axpby (alpha·a + beta·b).
 * @module
 */
import src from "../../kernels/binary.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { numel, type Tensor } from "../gpu/tensor.ts";
import { outputTensor } from "./_alloc.ts";
import { broadcastShapes, broadcastStrides, padShape } from "./_shape.ts";

const kernel = defineKernel("binary.wgsl", src);
const WG = 256;
const OPS = { add: 0, sub: 1, mul: 2, div: 3, axpby: 4 } as const;

/** Which binary op. */
export type BinaryOp = keyof typeof OPS;

/** Options of {@linkcode binary}. */
export interface BinaryOptions {
  /** Write here instead of allocating (it must not share a buffer with an input: WebGPU forbids that aliasing). */
  out?: Tensor;
  /** Coefficients of `axpby`. */
  alpha?: number;
  beta?: number;
}

/** `out = a OP b` with NumPy broadcasting (rank ≤ 4), f32. */
export function binary(rec: Recorder, op: BinaryOp, a: Tensor, b: Tensor, opts: BinaryOptions = {}): Tensor {
  for (const t of [a, b]) if (t.dtype !== "f32") throw new TypeError(`${op}: "${t.label}" is ${t.dtype}, expected f32`);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = outputTensor(rec, op, shape, "f32", opts.out, [a, b]);
  const full = padShape(op, shape, 4);
  const n = numel(shape);
  const grid = grid1d(Math.ceil(n / WG), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(kernel, {
    read: { a, b },
    write: { out },
    params: {
      n,
      row: grid[0],
      alpha: opts.alpha ?? 1,
      beta: opts.beta ?? 1,
      shape: full,
      sa: broadcastStrides(a.shape, full),
      sb: broadcastStrides(b.shape, full),
    },
    grid,
    overrides: { OP: OPS[op], WG },
  });
  return out;
}

/** `a + b` (broadcasting). */
export const add = (rec: Recorder, a: Tensor, b: Tensor, opts?: BinaryOptions): Tensor =>
  binary(rec, "add", a, b, opts);
/** `a * b` (broadcasting). */
export const mul = (rec: Recorder, a: Tensor, b: Tensor, opts?: BinaryOptions): Tensor =>
  binary(rec, "mul", a, b, opts);
