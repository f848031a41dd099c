/**
 * CPU references for conv2d_bwd.wgsl (float64 throughout), and a float64 forward for finite differences.
 * Shapes: x [B, Cin, H, W]; w [Cout, Cin, kh, kw]; bias, dbias [Cout]; dout [B, Cout, Ho, Wo];
 * dx like x; dw like w. padding: n or [top, bottom, left, right].
 */
import { type Conv2dPlan, planConv2d } from "../ops/conv2d.ts";

/** The forward's geometry options. */
export interface Conv2dGeometry {
  stride?: 1 | 2;
  padding?: number | [number, number, number, number];
}

function plan(xShape: number[], wShape: number[], geo: Conv2dGeometry): Conv2dPlan {
  return planConv2d(xShape, wShape, geo.stride ?? 1, geo.padding ?? 0);
}

/** out = conv2d(x, w) + bias in float64 (inputs may be float64 too): out [B, Cout, Ho, Wo]. */
export function conv2dRef64(
  x: ArrayLike<number>,
  xShape: number[],
  w: ArrayLike<number>,
  wShape: number[],
  opts: Conv2dGeometry & { bias?: ArrayLike<number> } = {},
): Float64Array {
  const { B, Cin, H, W, Cout, kh, kw, stride, pad, Ho, Wo } = plan(xShape, wShape, opts);
  const out = new Float64Array(B * Cout * Ho * Wo);
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
  return out;
}

/**
 * dx[b, ci, iy, ix] = Σ w[co, ci, ky, kx] · dout[b, co, oy, ox] over every forward term that read x[b, ci, iy, ix]
 * (scattered from the forward's loops, the opposite direction of the GPU's gather).
 */
export function conv2dDxRef(
  dout: ArrayLike<number>,
  w: ArrayLike<number>,
  xShape: number[],
  wShape: number[],
  geo: Conv2dGeometry = {},
): Float64Array {
  const { B, Cin, H, W, Cout, kh, kw, stride, pad, Ho, Wo } = plan(xShape, wShape, geo);
  const dx = new Float64Array(B * Cin * H * W);
  for (let b = 0; b < B; b++) {
    for (let co = 0; co < Cout; co++) {
      for (let oy = 0; oy < Ho; oy++) {
        for (let ox = 0; ox < Wo; ox++) {
          const g = dout[((b * Cout + co) * Ho + oy) * Wo + ox];
          for (let ci = 0; ci < Cin; ci++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * stride + ky - pad[0];
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * stride + kx - pad[2];
                if (ix < 0 || ix >= W) continue;
                dx[((b * Cin + ci) * H + iy) * W + ix] += g * w[((co * Cin + ci) * kh + ky) * kw + kx];
              }
            }
          }
        }
      }
    }
  }
  return dx;
}

/** dw[co, ci, ky, kx] = Σ_{b, oy, ox} dout[b, co, oy, ox] · x[b, ci, oy·s + ky − pt, ox·s + kx − pl]. */
export function conv2dDwRef(
  dout: ArrayLike<number>,
  x: ArrayLike<number>,
  xShape: number[],
  wShape: number[],
  geo: Conv2dGeometry = {},
): Float64Array {
  const { B, Cin, H, W, Cout, kh, kw, stride, pad, Ho, Wo } = plan(xShape, wShape, geo);
  const dw = new Float64Array(Cout * Cin * kh * kw);
  for (let co = 0; co < Cout; co++) {
    for (let ci = 0; ci < Cin; ci++) {
      for (let ky = 0; ky < kh; ky++) {
        for (let kx = 0; kx < kw; kx++) {
          let s = 0;
          for (let b = 0; b < B; b++) {
            const d = (b * Cout + co) * Ho * Wo, xi = (b * Cin + ci) * H * W;
            for (let oy = 0; oy < Ho; oy++) {
              const iy = oy * stride + ky - pad[0];
              if (iy < 0 || iy >= H) continue;
              for (let ox = 0; ox < Wo; ox++) {
                const ix = ox * stride + kx - pad[2];
                if (ix < 0 || ix >= W) continue;
                s += dout[d + oy * Wo + ox] * x[xi + iy * W + ix];
              }
            }
          }
          dw[((co * Cin + ci) * kh + ky) * kw + kx] = s;
        }
      }
    }
  }
  return dw;
}

/** dbias[co] = Σ_{b, oy, ox} dout[b, co, oy, ox]; dout: [B, Cout, Ho, Wo] given as its shape. */
export function conv2dDbiasRef(dout: ArrayLike<number>, doutShape: number[]): Float64Array {
  const [B, Cout, Ho, Wo] = doutShape;
  const db = new Float64Array(Cout);
  for (let b = 0; b < B; b++) {
    for (let co = 0; co < Cout; co++) {
      const at = (b * Cout + co) * Ho * Wo;
      for (let i = 0; i < Ho * Wo; i++) db[co] += dout[at + i];
    }
  }
  return db;
}
