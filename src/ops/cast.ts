/**
 * Float storage conversions on the GPU (see kernels/cast.wgsl): f32 → f16 and bf16 → f16 for loading weights as
 * f16, f16 → f32 for the rare op that reads f32 weights only.
 * @module
 */
import src from "../../kernels/cast.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";

const kernels = defineKernels("cast.wgsl", src, ["f32_to_f16", "bf16_to_f16", "f16_to_f32"]);
const WG = 256;

/** Options of {@linkcode cast}. */
export interface CastOptions {
  /** The dtype to convert to: "f16" from f32 (or from bf16 words, see `bf16`), "f32" from f16. */
  to: "f16" | "f32";
  /**
   * `x` is a u32 tensor of ⌈n/2⌉ words holding n bfloat16 values (a BF16 checkpoint tensor's raw bytes), and this
   * is the shape they form. Only with `to: "f16"`.
   */
  bf16Shape?: readonly number[];
  /** Write here instead of allocating. */
  out?: Tensor;
}

/**
 * Converts `x` to another float storage format; records one dispatch. Rounding to f16 is the device's
 * (round-to-nearest on the devices we know); values beyond f16's range have no defined result.
 *
 * ```ts ignore
 * const w16 = cast(rec, w32, { to: "f16" });
 * ```
 */
export function cast(rec: Recorder, x: Tensor, opts: CastOptions): Tensor {
  const { to, bf16Shape } = opts;
  let shape = x.shape, entry;
  if (bf16Shape) {
    if (to !== "f16") throw new TypeError(`cast: bf16 words convert to f16 only, not ${to}`);
    requireDtype("cast (bf16 words)", x, ["u32"]);
    if (numel(x.shape) !== Math.ceil(numel(bf16Shape) / 2)) {
      throw new TypeError(
        `cast: "${x.label}" ${fmtShape(x.shape)} holds ${2 * numel(x.shape)} bf16 halves, not the ` +
          `${numel(bf16Shape)} of ${fmtShape(bf16Shape)}`,
      );
    }
    shape = bf16Shape;
    entry = kernels.bf16_to_f16;
  } else if (to === "f16") {
    requireDtype("cast to f16", x, ["f32"]);
    entry = kernels.f32_to_f16;
  } else if (to === "f32") {
    requireDtype("cast to f32", x, ["f16"]);
    entry = kernels.f16_to_f32;
  } else {
    throw new TypeError(`cast: unknown target dtype "${to}" (f16 or f32)`);
  }
  const out = outputTensor(rec, "cast", shape, to, opts.out, [x]);
  const n = numel(shape);
  if (n === 0) return out;
  const grid = grid1dFor(rec, Math.ceil(n / 2), WG);
  rec.dispatch(entry, { read: { src: x }, write: { dst: out }, params: { n, row: grid[0] }, grid });
  return out;
}
