/**
 * Sinusoidal timestep embedding, as diffusers' `get_timestep_embedding` (the U-Net's `time_proj`).
 * @module
 */
import src from "../../kernels/timestep_embedding.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";

const kernel = defineKernel("timestep_embedding.wgsl", src);
const WG = 256;
const MAX_HALF = 4 * 256; // the uniform's frequency table: array<vec4<f32>, 256>

/** Options of {@linkcode timestepEmbedding}; defaults are diffusers' (SD v1 uses flip true, shift 0). */
export interface TimestepEmbeddingOptions {
  /** Put cos before sin (diffusers `flip_sin_to_cos`, default false). */
  flipSinToCos?: boolean;
  /** Subtracted from half the dim in the frequency denominator (diffusers `downscale_freq_shift`, default 1). */
  downscaleFreqShift?: number;
  /** Multiplies the arguments (default 1). */
  scale?: number;
  /** Longest period (default 10000). */
  maxPeriod?: number;
  /** Write here instead of allocating ([B, dim]; must not share a buffer with `timesteps`). */
  out?: Tensor;
}

/**
 * `freq_j = exp(−ln(maxPeriod)·j/(half − shift))` for `j < half = ⌊dim/2⌋`, each step rounded to f32 as torch
 * computes it (the float64 exponential rounded once is what torch's f32 `exp` returns).
 */
export function timestepFrequencies(dim: number, shift = 1, maxPeriod = 10000): Float32Array {
  const half = Math.floor(dim / 2);
  const f = Math.fround;
  const c = f(-Math.log(maxPeriod)), den = f(half - shift);
  return Float32Array.from({ length: half }, (_, j) => f(Math.exp(f(f(c * j) / den))));
}

/**
 * `timesteps: [B] f32 → [B, dim]` sinusoidal embedding, matching diffusers' `get_timestep_embedding` (dim ≤ 2049).
 *
 * It has no backward: the embedding has no parameters and the U-Net is never differentiated w.r.t. its timesteps
 * (gradients flow into `time_embedding.linear_1` and onwards, whose input this is). Should it ever be needed:
 * `∂out[b, j]/∂t_b = scale·freq_j·cos(a_bj)` for a sin column and `−scale·freq_j·sin(a_bj)` for a cos column.
 *
 * ```ts ignore
 * const emb = timestepEmbedding(rec, t, 320, { flipSinToCos: true, downscaleFreqShift: 0 }); // SD's time_proj
 * ```
 */
export function timestepEmbedding(
  rec: Recorder,
  timesteps: Tensor,
  dim: number,
  opts: TimestepEmbeddingOptions = {},
): Tensor {
  requireDtype("timestepEmbedding", timesteps, ["f32"]);
  if (timesteps.shape.length !== 1) {
    throw new TypeError(`timestepEmbedding: timesteps ${fmtShape(timesteps.shape)} must be 1-D [B]`);
  }
  const half = Math.floor(dim / 2);
  if (!Number.isInteger(dim) || dim < 1 || half > MAX_HALF) {
    throw new RangeError(`timestepEmbedding: dim must be an integer in [1, ${2 * MAX_HALF + 1}], got ${dim}`);
  }
  const shift = opts.downscaleFreqShift ?? 1, maxPeriod = opts.maxPeriod ?? 10000;
  if (half > 0 && !(half - shift > 0)) {
    throw new RangeError(`timestepEmbedding: half the dim (${half}) minus downscaleFreqShift (${shift}) must be > 0`);
  }
  const [b] = timesteps.shape;
  const out = outputTensor(rec, "timestepEmbedding", [b, dim], "f32", opts.out, [timesteps]);
  const n = b * dim;
  const grid = grid1dFor(rec, n, WG);
  rec.dispatch(kernel, {
    read: { timesteps },
    write: { out },
    params: {
      n,
      row: grid[0],
      dim,
      half,
      flip: opts.flipSinToCos ? 1 : 0,
      scale: opts.scale ?? 1,
      freq: [...timestepFrequencies(dim, shift, maxPeriod)],
    },
    grid,
    overrides: { WG },
  });
  return out;
}
