/**
 * Checks shared by backward functions. Gradients are caller-owned and accumulate (llm.c style): a backward
 * function writes only the gradients it is given, adding into them unless `accumulate` is false.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";

/** Options every backward function takes besides its gradient tensors. */
export interface AccumulateOptions {
  /** Add into the given gradients (default true); false overwrites them, which saves the caller a zeroing pass. */
  accumulate?: boolean;
}

/**
 * Checks a caller-given gradient: f32, the expected shape, and no buffer shared with a tensor the same dispatch
 * reads (WebGPU forbids one buffer bound read-only and read-write at once). Returns it, or undefined if not given.
 */
export function gradTensor(
  op: string,
  name: string,
  given: Tensor | undefined,
  shape: readonly number[],
  reads: readonly Tensor[],
): Tensor | undefined {
  if (!given) return undefined;
  assertShape(`${op} ${name} "${given.label}"`, given.shape, shape);
  if (given.dtype !== "f32") {
    throw new TypeError(`${op}: ${name} "${given.label}" ${fmtShape(given.shape)} is ${given.dtype}, expected f32`);
  }
  for (const t of reads) {
    if (t.buffer === given.buffer) {
      throw new TypeError(
        `${op}: ${name} "${given.label}" shares its buffer with input "${t.label}"; use a separate tensor`,
      );
    }
  }
  return given;
}

/** The `ACCUM` override constant for `accumulate` (default true). */
export function accumOverride(opts: AccumulateOptions): number {
  return opts.accumulate === false ? 0 : 1;
}

/** Zeroes exactly the tensor's elements (a view leaves the rest of its buffer alone). */
export function clearTensor(rec: Recorder, t: Tensor): void {
  rec.zero(t);
}
