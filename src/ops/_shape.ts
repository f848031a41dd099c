/** Shape helpers shared by ops: broadcasting and strides. */
import { fmtShape } from "../gpu/tensor.ts";

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** NumPy broadcast of two shapes; throws naming both when incompatible. */
export function broadcastShapes(what: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1, db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new TypeError(`${what}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Pads a shape on the left with 1s to `rank` dims; throws when it has more. */
export function padShape(what: string, shape: readonly number[], rank: number): number[] {
  if (shape.length > rank) throw new RangeError(`${what}: rank ${shape.length} > ${rank} is not supported`);
  return [...new Array(rank - shape.length).fill(1), ...shape];
}

/** Strides of `shape` seen from the (padded) output shape: 0 along broadcast dimensions. */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const padded = [...new Array(outShape.length - shape.length).fill(1), ...shape];
  const st = stridesOf(padded);
  return padded.map((d, i) => (d === 1 && outShape[i] !== 1 ? 0 : st[i]));
}
