/**
 * Initialising a TopK SAE on the GPU, seeded: the weights (SDLens' tied init or Revelio's untied kaiming init), and
 * b_pre from data (Weiszfeld's geometric median, kernels/sae_geomedian.wgsl, or the mean).
 * @module
 */
import src from "../../kernels/sae_geomedian.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";
import { fill } from "../ops/fill.ts";
import { transpose } from "../ops/permute.ts";
import { constrainDecoder, type Sae } from "./model.ts";

const K = defineKernels("sae_geomedian.wgsl", src, ["weights", "wsum", "update"]);
const WG = 64;
/** Points one `wsum` invocation sums. */
const CHUNK = 256;

/** How the weights start. */
export type WeightInit =
  /** SDLens / OpenAI: W_enc as nn.Linear(d, n) (uniform ±1/√d), W_dec = W_encᵀ with unit columns, b_enc = 0. */
  | "tied"
  /**
   * Revelio's k-SAE: PyTorch's kaiming_uniform_ on its [d, n] encoder (fan-in n: ±√(6/n)) and, independently, on
   * its [n, d] decoder (fan-in d: ±√(6/d)), whose directions are then normalised; b_enc = 0.
   */
  | "kaiming";

/**
 * Records the weight init of `sae` from `seed` (kernels/fill.wgsl's counter-based generator, so the result does not
 * depend on the device). b_pre is left to {@linkcode geometricMedian} or {@linkcode columnMean}.
 */
export function initSaeWeights(rec: Recorder, sae: Sae, opts: { scheme?: WeightInit; seed?: number } = {}): void {
  const { d, nLatents: n } = sae.config;
  const { W_enc, b_enc, W_dec } = sae.params;
  const scheme = opts.scheme ?? "tied";
  const seed = opts.seed ?? 0;
  if (scheme === "tied") {
    const bound = 1 / Math.sqrt(d);
    fill(rec, W_enc, { uniform: [-bound, bound], seed });
    transpose(rec, W_enc, 0, 1, { out: W_dec });
  } else if (scheme === "kaiming") {
    const be = Math.sqrt(6 / n), bd = Math.sqrt(6 / d);
    fill(rec, W_enc, { uniform: [-be, be], seed });
    fill(rec, W_dec, { uniform: [-bd, bd], seed: (seed + 0x9e3779b9) >>> 0 });
  } else {
    throw new TypeError(`initSaeWeights: unknown scheme "${scheme}" (tied, kaiming)`);
  }
  constrainDecoder(rec, W_dec);
  rec.zero(b_enc);
}

/** Options of {@linkcode geometricMedian}. */
export interface GeometricMedianOptions {
  /** Weiszfeld iterations (default 100). */
  iterations?: number;
  /** Distances are floored at eps (default 1e-6). */
  eps?: number;
  /** Write here ([d]) instead of allocating. */
  out?: Tensor;
}

function checkPoints(what: string, points: Tensor, out?: Tensor): [number, number] {
  requireDtype(what, points);
  if (points.shape.length !== 2 || points.shape[0] < 1) {
    throw new TypeError(`${what}: points ${fmtShape(points.shape)} must be [N ≥ 1, d]`);
  }
  const [N, d] = points.shape;
  if (d > 60_000) throw new RangeError(`${what}: d = ${d} exceeds 60000`);
  if (Math.ceil(N / CHUNK) > 60_000) throw new RangeError(`${what}: ${N} points exceed ${60_000 * CHUNK}`);
  if (out) {
    requireDtype(what, out);
    assertShape(`${what}: out "${out.label}" (points ${fmtShape(points.shape)})`, out.shape, [d]);
  }
  return [N, d];
}

/** y ← Σ w·x / Σ w over the points, by fixed-order partial sums. */
function weightedMean(rec: Recorder, points: Tensor, w: Tensor, y: Tensor, eps: number): void {
  const [N, d] = points.shape;
  const chunks = Math.ceil(N / CHUNK);
  const partial = rec.alloc([chunks, d + 1], "f32", "geomedian.partial");
  const base = { rows: N, d, chunk: CHUNK, chunks, eps };
  let grid = grid1dFor(rec, chunks * (d + 1), WG);
  rec.dispatch(K.wsum, {
    read: { points, w },
    write: { partial_out: partial },
    params: { ...base, row: grid[0] },
    grid,
  });
  grid = grid1dFor(rec, d, WG);
  rec.dispatch(K.update, { read: { partial }, write: { guess_out: y }, params: { ...base, row: grid[0] }, grid });
  rec.recycle(partial);
}

/**
 * The geometric median of `points` [N, d] by Weiszfeld's iteration from the mean (SDLens' b_pre init: at most 100
 * iterations, eps 1e-6). Always runs every iteration (the reference's early stop, a relative change of the
 * objective below 1e-20, does not happen in f32 before the iterate stops moving).
 */
export function geometricMedian(rec: Recorder, points: Tensor, opts: GeometricMedianOptions = {}): Tensor {
  const [N, d] = checkPoints("geometricMedian", points, opts.out);
  const iterations = opts.iterations ?? 100, eps = opts.eps ?? 1e-6;
  if (!Number.isInteger(iterations) || iterations < 0) {
    throw new RangeError(`geometricMedian: iterations must be a non-negative integer, got ${iterations}`);
  }
  const y = opts.out ?? rec.alloc([d], "f32", "geometric_median");
  const w = rec.alloc([N], "f32", "geomedian.w");
  fill(rec, w, { value: 1 });
  weightedMean(rec, points, w, y, eps);
  for (let it = 0; it < iterations; it++) {
    const grid = grid1dFor(rec, N, WG);
    rec.dispatch(K.weights, {
      read: { points, guess: y },
      write: { weights_out: w },
      params: { rows: N, d, chunk: CHUNK, chunks: 0, eps, row: grid[0] },
      grid,
    });
    weightedMean(rec, points, w, y, eps);
  }
  rec.recycle(w);
  return y;
}

/** The mean of `points` [N, d] over its rows (Revelio's b_dec init), by the same fixed-order sums. */
export function columnMean(rec: Recorder, points: Tensor, opts: { out?: Tensor } = {}): Tensor {
  return geometricMedian(rec, points, { ...opts, iterations: 0 });
}
