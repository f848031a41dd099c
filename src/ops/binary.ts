/**
 * Elementwise binary ops with broadcasting: add, sub, mul, div and axpby (alpha·a + beta·b), and their gradients.
 * @module
 */
import src from "../../kernels/binary.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/binary_bwd.wgsl" with { type: "text" };
import columnSumSrc from "../../kernels/_column_sum.wgsl" with { type: "text" };
import { defineKernel, defineKernels, includeWgsl } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { outputTensor, requireDtype } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, clearTensor, gradTensor } from "./_grad.ts";
import { broadcastShapes, broadcastStrides, padShape, stridesOf } from "./_shape.ts";

const kernel = defineKernel("binary.wgsl", src);
const bwdKernels = defineKernels(
  "binary_bwd.wgsl",
  includeWgsl("binary_bwd.wgsl", bwdSrc, { "_column_sum.wgsl": columnSumSrc }),
  ["main", "same"],
);
const WG = 256;
const OPS = { add: 0, sub: 1, mul: 2, div: 3, axpby: 4 } as const;

/** Which binary op. */
export type BinaryOp = keyof typeof OPS;

/** Options of {@linkcode binary}. */
export interface BinaryOptions {
  /** Write here instead of allocating (it must not share a buffer with an input: WebGPU forbids that aliasing). */
  out?: Tensor;
  /** Coefficients of `axpby`. */
  alpha?: number;
  beta?: number;
}

/** `out = a OP b` with NumPy broadcasting (rank ≤ 4), f32. */
export function binary(rec: Recorder, op: BinaryOp, a: Tensor, b: Tensor, opts: BinaryOptions = {}): Tensor {
  for (const t of [a, b]) if (t.dtype !== "f32") throw new TypeError(`${op}: "${t.label}" is ${t.dtype}, expected f32`);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = outputTensor(rec, op, shape, "f32", opts.out, [a, b]);
  const full = padShape(op, shape, 4);
  const n = numel(shape);
  const grid = grid1d(Math.ceil(n / WG), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(kernel, {
    read: { a, b },
    write: { out },
    params: {
      n,
      row: grid[0],
      alpha: opts.alpha ?? 1,
      beta: opts.beta ?? 1,
      shape: full,
      sa: broadcastStrides(a.shape, full),
      sb: broadcastStrides(b.shape, full),
    },
    grid,
    overrides: { OP: OPS[op], WG },
  });
  return out;
}

/** `a + b` (broadcasting). */
export const add = (rec: Recorder, a: Tensor, b: Tensor, opts?: BinaryOptions): Tensor =>
  binary(rec, "add", a, b, opts);
/** `a * b` (broadcasting). */
export const mul = (rec: Recorder, a: Tensor, b: Tensor, opts?: BinaryOptions): Tensor =>
  binary(rec, "mul", a, b, opts);

/** Inputs of {@linkcode binaryBackward}: the output gradient and the forward's operands. */
export interface BinaryBackwardInputs {
  /** dL/dout, of the broadcast shape of `a` and `b`. */
  dy: Tensor;
  /** The forward's `a` (its values are read only for mul and div). */
  a: Tensor;
  /** The forward's `b` (its values are read only for mul and div). */
  b: Tensor;
}

/** Options of {@linkcode binaryBackward}: which gradients to write, and the forward's coefficients. */
export interface BinaryBackwardOptions extends AccumulateOptions {
  /** dL/da, shaped like `a` (summed over the dims `a` broadcasts along); not computed when absent. */
  da?: Tensor;
  /** dL/db, shaped like `b`; not computed when absent. */
  db?: Tensor;
  /** `axpby`'s coefficients, as given to the forward. */
  alpha?: number;
  beta?: number;
}

/** The gradients {@linkcode binaryBackward} wrote. */
export interface BinaryGradients {
  da?: Tensor;
  db?: Tensor;
}

/** Terms each invocation adds serially per pass of binary_bwd.wgsl (the rest of a pass is a tree). */
const PER = 64;

/**
 * Gradients of `out = a OP b` (broadcasting) from `dy = dL/dout`: `da += dy·∂out/∂a` summed over the dims `a`
 * broadcasts along (e.g. a bias `[C, 1, 1]` or a time embedding `[B, C, 1, 1]` against `[B, C, H, W]`), likewise
 * `db`. Only the gradients given are computed; they accumulate unless `accumulate` is false.
 *
 * ```ts ignore
 * rec.zero(dTemb);
 * binaryBackward(rec, "add", { dy, a: h, b: temb }, { da: dh, db: dTemb }); // dTemb [2,320,1,1] += Σ_hw dy
 * ```
 */
export function binaryBackward(
  rec: Recorder,
  op: BinaryOp,
  inputs: BinaryBackwardInputs,
  opts: BinaryBackwardOptions = {},
): BinaryGradients {
  const what = `${op} backward`;
  if (!(op in OPS)) throw new TypeError(`binaryBackward: unknown op "${op}" (ops: ${Object.keys(OPS).join(", ")})`);
  const { dy, a, b } = inputs;
  for (const t of [dy, a, b]) requireDtype(what, t);
  const shape = broadcastShapes(what, a.shape, b.shape);
  assertShape(`${what}: dy "${dy.label}" (a ${fmtShape(a.shape)}, b ${fmtShape(b.shape)})`, dy.shape, shape);
  const reads = [dy, a, b];
  const da = gradTensor(what, "da", opts.da, a.shape, reads);
  const db = gradTensor(what, "db", opts.db, b.shape, reads);
  const [alpha, beta] = [opts.alpha ?? 1, opts.beta ?? 1];
  const coef = { add: [1, 1], sub: [1, -1], mul: [1, 1], div: [1, -1], axpby: [alpha, beta] }[op];
  const full = padShape(what, shape, 4);
  const out: BinaryGradients = {};
  if (da) out.da = broadcastGrad(rec, op, false, inputs, da, full, coef[0], accumOverride(opts));
  if (db) out.db = broadcastGrad(rec, op, true, inputs, db, full, coef[1], accumOverride(opts));
  return out;
}

/** dT for one operand T: pass 1 reduces dy's broadcast terms, later passes sum the [chunks, K] partials. */
function broadcastGrad(
  rec: Recorder,
  op: BinaryOp,
  wrtB: boolean,
  { dy, a, b }: BinaryBackwardInputs,
  grad: Tensor,
  full: number[],
  coef: number,
  accum: number,
): Tensor {
  let kshape = padShape(op, wrtB ? b.shape : a.shape, 4);
  let rshape = full.map((d, i) => (kshape[i] === 1 ? d : 1));
  const k = numel(kshape);
  let r = numel(rshape);
  if (k === 0) return grad;
  if (r === 0) { // the output is empty: the gradient is zero
    if (!accum) clearTensor(rec, grad);
    return grad;
  }
  let opCode: number = OPS[op];
  if (r === 1 && coef === 1 && !accum && (op === "add" || op === "sub" || op === "axpby")) {
    rec.copy(dy, grad, 4 * k); // dT = dy exactly
    return grad;
  }
  let so = stridesOf(full);
  let sa = broadcastStrides(a.shape, full), sb = broadcastStrides(b.shape, full);
  let read = { dy, a, b };
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  if (numel(a.shape) === k && numel(b.shape) === k) { // no broadcasting at all: elementwise
    const grid = grid1d(Math.ceil(k / 4 / WG), maxDim);
    const zero = [0, 0, 0, 0];
    rec.dispatch(bwdKernels.same, {
      read,
      write: { grad },
      params: {
        k,
        r,
        chunks: 1,
        per: 1,
        tiles: 0,
        total: 0,
        row: grid[0],
        coef,
        kshape,
        rshape,
        rstep: zero,
        so,
        sa,
        sb,
      },
      grid,
      overrides: { OP: opCode, WRT_B: wrtB ? 1 : 0, ACCUM: accum, WG },
    });
    return grad;
  }
  for (;;) {
    // TX neighbouring elements of T side by side when T's innermost dims are the output's (coalesced reads)
    let innerKept = 1;
    for (let d = 3; d >= 0 && rshape[d] === 1; d--) innerKept *= kshape[d];
    let minTx = 1;
    while (minTx < innerKept && minTx < 32) minTx *= 2;
    let ty = 1;
    while (ty < WG / minTx && ty * PER < r) ty *= 2;
    const tx = WG / ty;
    const chunks = Math.ceil(r / (ty * PER));
    const last = chunks === 1;
    const dst = last ? grad : rec.alloc([chunks, k], "f32", `${op} backward partial sums`);
    const tiles = Math.ceil(k / tx);
    const total = chunks * tiles;
    const grid = grid1d(total, maxDim);
    const rstep = unravel(ty, rshape);
    rec.dispatch(bwdKernels.main, {
      read,
      write: { grad: dst },
      params: { k, r, chunks, per: PER, tiles, total, row: grid[0], coef, kshape, rshape, rstep, so, sa, sb },
      grid,
      overrides: { OP: opCode, WRT_B: wrtB ? 1 : 0, ACCUM: last ? accum : 0, TX: tx, TY: ty },
    });
    if (read.dy !== dy) rec.releaseAfterSubmit(read.dy);
    if (last) return grad;
    // next pass: T = [1, K] against the partials [chunks, K], an add's gradient (a and b are not read)
    read = { dy: dst, a: dst, b: dst };
    [opCode, wrtB, coef] = [OPS.add, false, 1];
    [kshape, rshape, so, sa, sb] = [[1, 1, 1, k], [1, 1, chunks, 1], [0, 0, k, 1], [0, 0, 0, 0], [0, 0, 0, 0]];
    r = chunks;
  }
}

/** `i` as a mixed-radix number over `shape` (4 dims; the leading digit is not reduced). */
function unravel(i: number, shape: readonly number[]): number[] {
  const d = [0, 0, 0, 0];
  for (let j = 3; j > 0; j--) {
    d[j] = i % shape[j];
    i = Math.floor(i / shape[j]);
  }
  d[0] = i;
  return d;
}
