/** CPU references for unary.wgsl and the erf/GELU of _gelu.wgsl, in float64. */

/** erfc(x) for x ≥ 2.5 by its continued fraction (float64-accurate there). */
function erfcTail(x: number): number {
  let k = 0;
  for (let n = 120; n >= 1; n--) k = n / 2 / (x + k);
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / (x + k);
}

/** erf(x) in float64: Taylor series below |x| = 2.5, continued fraction for erfc above. */
export function erf64(x: number): number {
  const a = Math.abs(x);
  if (Number.isNaN(x)) return NaN;
  if (a >= 2.5) return Math.sign(x) * (1 - erfcTail(a));
  let term = x, sum = x;
  for (let n = 1; n < 200; n++) {
    term *= -x * x / n;
    const t = term / (2 * n + 1);
    sum += t;
    if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
  }
  return sum * 2 / Math.sqrt(Math.PI);
}

/** erfc(x) = 1 − erf(x) in float64, without cancellation for large x. */
export function erfc64(x: number): number {
  return x >= 2.5 ? erfcTail(x) : 1 - erf64(x);
}

/** GELU, exact form x·Φ(x), in float64 (the erfc form for x < 0 keeps the tail's relative accuracy). */
export function gelu64(x: number): number {
  return x >= 0 ? x * (1 - 0.5 * erfc64(x / Math.SQRT2)) : 0.5 * x * erfc64(-x / Math.SQRT2);
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** out = op(x) elementwise. x: any shape, out: same shape. a, b: alpha/beta for scale, lo/hi for clamp. */
export function unaryRef(
  op: "scale" | "silu" | "gelu" | "quickGelu" | "clamp" | "erf",
  x: ArrayLike<number>,
  a = 1,
  b = 0,
): Float64Array {
  const f: (v: number) => number = {
    scale: (v: number) => a * v + b,
    silu: (v: number) => v * sigmoid(v),
    gelu: gelu64,
    quickGelu: (v: number) => v * sigmoid(1.702 * v),
    clamp: (v: number) => Math.min(Math.max(v, a), b),
    erf: erf64,
  }[op];
  return Float64Array.from(x, f);
}

/** φ(x), the standard normal density. */
const normalPdf = (v: number) => Math.exp(-0.5 * v * v) / Math.sqrt(2 * Math.PI);

/**
 * Gradient of unaryRef: dx = dy · op'(x), in float64. x, dy: any shape (equal), returns dx: same shape.
 * a, b: alpha for scale, lo/hi for clamp (gradient 1 on [lo, hi] including the bounds, as torch).
 */
export function unaryBackwardRef(
  op: "scale" | "silu" | "gelu" | "quickGelu" | "clamp" | "erf",
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  a = 1,
  b = 0,
): Float64Array {
  const slope: (v: number) => number = {
    scale: () => a,
    silu: (v: number) => sigmoid(v) * (1 + v * (1 - sigmoid(v))),
    gelu: (v: number) => (v >= 0 ? 1 - 0.5 * erfc64(v / Math.SQRT2) : 0.5 * erfc64(-v / Math.SQRT2)) + v * normalPdf(v),
    quickGelu: (v: number) => {
      const s = sigmoid(1.702 * v);
      return s + 1.702 * v * s * (1 - s);
    },
    clamp: (v: number) => (v >= a && v <= b ? 1 : 0),
    erf: (v: number) => 2 / Math.sqrt(Math.PI) * Math.exp(-v * v),
  }[op];
  return Float64Array.from(x, (v, i) => dy[i] * slope(v));
}
