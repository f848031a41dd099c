/** CPU reference for timestep_embedding.wgsl. */

/**
 * diffusers' `get_timestep_embedding` in float64 on torch's f32 intermediates: the frequency table and the argument
 * `scale·(t·freq)` are rounded to f32 where torch rounds them, sin/cos are then exact. timesteps: [B],
 * returns out: [B, dim]. With `exact`, nothing is rounded (the pure float64 formula).
 */
export function timestepEmbeddingRef(
  timesteps: ArrayLike<number>,
  dim: number,
  opts: { flipSinToCos?: boolean; downscaleFreqShift?: number; scale?: number; maxPeriod?: number; exact?: boolean } =
    {},
): Float64Array {
  const { flipSinToCos = false, downscaleFreqShift = 1, scale = 1, maxPeriod = 10000, exact = false } = opts;
  const half = Math.floor(dim / 2);
  const round = exact ? (v: number) => v : Math.fround;
  // torch: exponent = -math.log(max_period) * arange(half, f32) / (half - shift); freq = exp(exponent), all f32
  const c = round(-Math.log(maxPeriod)), den = round(half - downscaleFreqShift);
  const freq = Array.from({ length: half }, (_, j) => round(Math.exp(round(round(c * j) / den))));
  const out = new Float64Array(timesteps.length * dim);
  for (let b = 0; b < timesteps.length; b++) {
    for (let j = 0; j < half; j++) {
      const a = round(scale * round(round(timesteps[b]) * freq[j]));
      const [first, second] = flipSinToCos ? [Math.cos(a), Math.sin(a)] : [Math.sin(a), Math.cos(a)];
      out[b * dim + j] = first;
      out[b * dim + half + j] = second;
    }
  }
  return out;
}
