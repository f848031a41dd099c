/** CPU references for binary.wgsl. */
import { broadcastShapes, broadcastStrides, padShape } from "../ops/_shape.ts";
import { numel } from "../gpu/tensor.ts";

/** out = a OP b with broadcasting; returns [out, shape]. a: aShape, b: bShape. */
export function binaryRef(
  op: "add" | "sub" | "mul" | "div" | "axpby",
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
  alpha = 1,
  beta = 1,
): [Float32Array, number[]] {
  const shape = broadcastShapes(op, aShape, bShape);
  const full = padShape(op, shape, 4);
  const sa = broadcastStrides(aShape, full), sb = broadcastStrides(bShape, full);
  const out = new Float32Array(numel(shape));
  let i = 0;
  for (let i0 = 0; i0 < full[0]; i0++) {
    for (let i1 = 0; i1 < full[1]; i1++) {
      for (let i2 = 0; i2 < full[2]; i2++) {
        for (let i3 = 0; i3 < full[3]; i3++, i++) {
          const x = a[i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3]];
          const y = b[i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3]];
          out[i] = op === "add"
            ? x + y
            : op === "sub"
            ? x - y
            : op === "mul"
            ? x * y
            : op === "div"
            ? x / y
            : alpha * x + beta * y;
        }
      }
    }
  }
  return [out, shape];
}
