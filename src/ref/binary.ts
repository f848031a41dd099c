/** CPU references for binary.wgsl and binary_bwd.wgsl. */
import { broadcastShapes, broadcastStrides, padShape } from "../ops/_shape.ts";

type Op = "add" | "sub" | "mul" | "div" | "axpby";

/** Calls `fn(i, ia, ib)` for every output element i with the indices of a and b it reads; returns the shape. */
function forEachBroadcast(
  aShape: number[],
  bShape: number[],
  fn: (i: number, ia: number, ib: number) => void,
): number[] {
  const shape = broadcastShapes("binaryRef", aShape, bShape);
  const full = padShape("binaryRef", shape, 4);
  const sa = broadcastStrides(aShape, full), sb = broadcastStrides(bShape, full);
  let i = 0;
  for (let i0 = 0; i0 < full[0]; i0++) {
    for (let i1 = 0; i1 < full[1]; i1++) {
      for (let i2 = 0; i2 < full[2]; i2++) {
        for (let i3 = 0; i3 < full[3]; i3++, i++) {
          fn(i, i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3], i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]);
        }
      }
    }
  }
  return shape;
}

function apply(op: Op, x: number, y: number, alpha: number, beta: number): number {
  return op === "add"
    ? x + y
    : op === "sub"
    ? x - y
    : op === "mul"
    ? x * y
    : op === "div"
    ? x / y
    : alpha * x + beta * y;
}

/** out = a OP b with broadcasting, in float64; returns [out, shape]. a: aShape, b: bShape. */
export function binaryRef64(
  op: Op,
  a: ArrayLike<number>,
  aShape: number[],
  b: ArrayLike<number>,
  bShape: number[],
  alpha = 1,
  beta = 1,
): [Float64Array, number[]] {
  const shape = broadcastShapes(op, aShape, bShape);
  const out = new Float64Array(shape.reduce((n, d) => n * d, 1));
  forEachBroadcast(aShape, bShape, (i, ia, ib) => (out[i] = apply(op, a[ia], b[ib], alpha, beta)));
  return [out, shape];
}

/** out = a OP b with broadcasting, rounded to f32; returns [out, shape]. a: aShape, b: bShape. */
export function binaryRef(
  op: Op,
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
  alpha = 1,
  beta = 1,
): [Float32Array, number[]] {
  const [out, shape] = binaryRef64(op, a, aShape, b, bShape, alpha, beta);
  return [Float32Array.from(out), shape];
}

/**
 * Gradients of out = a OP b given dy = dL/dout, summed over broadcast dims, in float64.
 * a: aShape, b: bShape, dy: broadcast(aShape, bShape); returns da: aShape, db: bShape.
 */
export function binaryBackwardRef(
  op: Op,
  a: ArrayLike<number>,
  aShape: number[],
  b: ArrayLike<number>,
  bShape: number[],
  dy: ArrayLike<number>,
  alpha = 1,
  beta = 1,
): { da: Float64Array; db: Float64Array } {
  const da = new Float64Array(a.length), db = new Float64Array(b.length);
  forEachBroadcast(aShape, bShape, (i, ia, ib) => {
    const g = dy[i], x = a[ia], y = b[ib];
    const [ga, gb] = op === "add"
      ? [g, g]
      : op === "sub"
      ? [g, -g]
      : op === "mul"
      ? [g * y, g * x]
      : op === "div"
      ? [g / y, -g * x / (y * y)]
      : [alpha * g, beta * g];
    da[ia] += ga;
    db[ib] += gb;
  });
  return { da, db };
}
