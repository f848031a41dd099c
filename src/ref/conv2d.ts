/** CPU reference for conv2d.wgsl (float64 accumulation). */
import { conv2dRef64 } from "./conv2d_bwd.ts";
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
  const { shape } = planConv2d(xShape, wShape, opts.stride ?? 1, opts.padding ?? 0);
  const geo = { ...opts, stride: (opts.stride ?? 1) as 1 | 2 };
  return { out: Float32Array.from(conv2dRef64(x, xShape, w, wShape, geo)), shape };
}
