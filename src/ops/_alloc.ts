/** Checks and allocations shared by ops: dtypes, caller-given outputs, 1-D grids. */
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, type DType, fmtShape, type Tensor } from "../gpu/tensor.ts";

/** Dtypes a pure data-movement kernel copies bit-exactly (it moves 32-bit words). */
export const WORD_DTYPES: readonly DType[] = ["f32", "i32", "u32"];

/** Throws a TypeError naming the op and the tensor unless `t.dtype` is one of `dtypes`. */
export function requireDtype(op: string, t: Tensor, dtypes: readonly DType[] = ["f32"]): void {
  if (!dtypes.includes(t.dtype)) {
    throw new TypeError(`${op}: "${t.label}" ${fmtShape(t.shape)} is ${t.dtype}, expected ${dtypes.join(" or ")}`);
  }
}

/**
 * The output of an op: `given` once its shape and dtype are checked and it is known not to share a buffer with
 * any input (WebGPU forbids a buffer bound read-only and read-write in one dispatch), or a new tensor.
 */
export function outputTensor(
  rec: Recorder,
  op: string,
  shape: readonly number[],
  dtype: DType,
  given: Tensor | undefined,
  inputs: readonly Tensor[],
): Tensor {
  if (!given) return rec.alloc(shape, dtype, op);
  assertShape(`${op} output "${given.label}"`, given.shape, shape);
  if (given.dtype !== dtype) throw new TypeError(`${op}: output "${given.label}" is ${given.dtype}, expected ${dtype}`);
  for (const t of inputs) {
    if (t.buffer === given.buffer) {
      throw new TypeError(
        `${op}: output "${given.label}" shares its buffer with input "${t.label}"; use a separate tensor`,
      );
    }
  }
  return given;
}

/** Workgroup counts for `n` invocations in workgroups of `wg`, folded over x and y (kernels fold back with `p.row`). */
export function grid1dFor(rec: Recorder, n: number, wg: number): [number, number, number] {
  return grid1d(Math.ceil(n / wg), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
}
