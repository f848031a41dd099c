/** CPU reference for conv2d.wgsl (float64 accumulation). */
import { planConv2d } from "../ops/conv2d.ts";

/**
 * out = conv2d(x, w) + bias (cross-correlation, zero padding); returns the output and its shape.
 * x: [B, Cin, H, W]; w: [Cout, Cin, kh, kw]; bias: [Cout]; padding: n or [top, bottom, left, right];
 * out: [B, Cout, Ho, Wo].
 */
export function conv2dRef(
  x: Float32Array,
  xShape: number[],
  w: Float32Array,
  wShape: number[],
  opts: { bias?: Float32Array; stride?: number; padding?: number | [number, number, number, number] } = {},
): { out: Float32Array; shape: number[] } {
  const { B, Cin, H, W, Cout, kh, kw, stride, pad, Ho, Wo, shape } = planConv2d(
    xShape,
    wShape,
    opts.stride ?? 1,
    opts.padding ?? 0,
  );
  const out = new Float32Array(B * Cout * Ho * Wo);
  for (let b = 0; b < B; b++) {
    for (let co = 0; co < Cout; co++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          let s = opts.bias ? opts.bias[co] : 0;
          for (let ci = 0; ci < Cin; ci++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * stride + ky - pad[0];
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * stride + kx - pad[2];
                if (ix < 0 || ix >= W) continue;
                s += w[((co * Cin + ci) * kh + ky) * kw + kx] * x[((b * Cin + ci) * H + iy) * W + ix];
              }
            }
          }
          out[((b * Cout + co) * Ho + oy) * Wo + ox] = s;
        }
      }
    }
  }
  return { out, shape };
}
