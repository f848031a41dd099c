/**
 * Linear combinations of same-shape tensors with scalar coefficients: `out = Σ cₖ·xₖ` (see kernels/lincomb.wgsl).
 * The noise schedulers express every step and input scaling this way.
 * @module
 */
import src from "../../kernels/lincomb.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, outputTensor, requireDtype } from "./_alloc.ts";

const kernel = defineKernel("lincomb.wgsl", src);
const WG = 256;
/** Tensors one dispatch combines. */
const MAX_TERMS = 4;

/** One term of a combination: a coefficient and the tensor it multiplies. */
export type LincombTerm = readonly [coefficient: number, x: Tensor];

/** Options of {@linkcode lincomb}. */
export interface LincombOptions {
  /** Write here instead of allocating (it must not share a buffer with any term). */
  out?: Tensor;
  /** Label of the allocated output. */
  label?: string;
}

/**
 * `out = Σₖ cₖ·xₖ` over f32 tensors of one shape. Up to four terms take one dispatch; longer sums chain dispatches
 * (the partial sum becomes the first term of the next), through a scratch tensor released after submit.
 *
 * ```ts ignore
 * const prev = lincomb(rec, [[1 / Math.sqrt(a), sample], [-Math.sqrt(1 / a - 1), eps]]);
 * ```
 */
export function lincomb(rec: Recorder, terms: readonly LincombTerm[], opts: LincombOptions = {}): Tensor {
  if (terms.length === 0) throw new RangeError("lincomb: no terms given");
  const shape = terms[0][1].shape;
  terms.forEach(([c, x], k) => {
    requireDtype("lincomb", x);
    if (k > 0) assertShape(`lincomb term ${k} "${x.label}" vs term 0 "${terms[0][1].label}"`, x.shape, shape);
    if (typeof c !== "number" || !Number.isFinite(c)) {
      throw new RangeError(`lincomb: coefficient ${k} (of "${x.label}" ${fmtShape(x.shape)}) is ${c}, not finite`);
    }
  });
  const out = opts.out
    ? outputTensor(rec, "lincomb", shape, "f32", opts.out, terms.map((t) => t[1]))
    : rec.alloc(shape, "f32", opts.label ?? "lincomb");
  // Chain: the first dispatch sums four terms, each later one adds up to three more to the partial sum.
  let acc: Tensor | null = null;
  for (let k = 0; k < terms.length;) {
    const take = acc ? MAX_TERMS - 1 : MAX_TERMS;
    const group: LincombTerm[] = acc ? [[1, acc], ...terms.slice(k, k + take)] : terms.slice(k, k + take);
    k += take;
    const dst = k >= terms.length ? out : rec.alloc(shape, "f32", "lincomb:partial");
    dispatchGroup(rec, group, dst);
    if (acc) rec.releaseAfterSubmit(acc);
    acc = dst;
  }
  return out;
}

function dispatchGroup(rec: Recorder, group: readonly LincombTerm[], out: Tensor): void {
  const n = numel(out.shape);
  const grid = grid1dFor(rec, n, WG);
  const xs = [0, 1, 2, 3].map((k) => group[k]?.[1] ?? rec.ctx.placeholder);
  rec.dispatch(kernel, {
    read: { x0: xs[0], x1: xs[1], x2: xs[2], x3: xs[3] },
    write: { out },
    params: { n, row: grid[0], c: [0, 1, 2, 3].map((k) => group[k]?.[0] ?? 0) },
    grid,
    overrides: { TERMS: group.length, WG },
  });
}
