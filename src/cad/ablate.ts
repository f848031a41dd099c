/**
 * CAD ablation: which weights to zero given attribution scores S = W ⊙ ∂J/∂W (see {@linkcode attributionScores}),
 * zeroing them in place, and undo patches. The rule follows `ablate_model` in the CAD repository
 * (`benchmarking/utils.py`): per output row of a Linear weight [out, in], q = ⌊ratio · in⌋ entries (ratio 0.001 by
 * default, so rows of 320 or 640 inputs lose nothing), or q = ⌊ratio · numel⌋ over the whole matrix when flattened.
 * See docs/cad.md for where this port differs from the reference (signs at S = 0, "both", ties).
 * @module
 */
import src from "../../kernels/ablate_mask.wgsl" with { type: "text" };
import type { GpuContext } from "../gpu/context.ts";
import { defineKernels } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { fill } from "../ops/fill.ts";
import { maxTopK, topk } from "../ops/topk.ts";
import type { SafetensorsFile, TensorsToWrite } from "../safetensors/mod.ts";

const kernels = defineKernels("ablate_mask.wgsl", src, [
  "negate",
  "scatter",
  "radix_hist",
  "radix_pick",
  "radix_select",
  "apply",
  "collect",
  "tally",
  "write_patch",
]);
const WG = 256;
const BINS = 256;
/** u32 slots per segment of the radix search state (STATE in ablate_mask.wgsl). */
const STATE = 8;
/** A segment longer than this is histogrammed by several workgroups. */
const SPAN = 8192;

/** Which tail of the scores to ablate. */
export type AblationMode = "positive" | "negative" | "both";
const MODES: readonly AblationMode[] = ["positive", "negative", "both"];

/** How the top q of each row (or of the matrix) are found; both give the same set. */
export type AblationMethod = "topk" | "radix";

/** Options of {@linkcode ablationMask}. */
export interface AblationOptions {
  /** Fraction of each row's inputs (of every element when flattened) ablated on each side, in [0, 1]. Default 0.001. */
  ratio?: number;
  /** "positive" (default, CAD's default for erase and amplify) zeroes the top q where S > 0; "negative" the bottom
   * q where S < 0; "both" does both, each with its own quota. */
  mode?: AblationMode;
  /** Rank the whole matrix at once (the reference's `flatten_pruning`): q = ⌊ratio · numel⌋. Default false. */
  flatten?: boolean;
  /** Force a selection method (for tests and benchmarks): "topk" needs q ≤ {@linkcode maxTopK}. Default: "topk"
   * per row when q fits, "radix" otherwise (always when flattened, since one segment would be one workgroup). */
  method?: AblationMethod;
  /** Write the mask here (f32, shaped like the scores) instead of allocating. */
  out?: Tensor;
}

/** The result of {@linkcode ablationMask}. */
export interface AblationMask {
  /** f32, shaped like the scores: 1 keeps the weight, 0 zeroes it. */
  mask: Tensor;
  /** q: entries ranked per row (per matrix when flattened) on each side. */
  quota: number;
  /** Most entries the mask can zero: segments × q × sides (fewer when signs disagree). */
  maxZeroed: number;
  /** The method used, or "none" when q = 0 (the mask is all ones). */
  method: AblationMethod | "none";
}

/** q = ⌊ratio · n⌋ in double precision, as Python's `int(ratio * n)` in the reference. */
export function ablationQuota(ratio: number, n: number): number {
  return Math.floor(ratio * n);
}

/** The parameters CAD scores and ablates: 2-D weights with "ff" in their name (the U-Net's feed-forward layers). */
export function isCadParameter(name: string, shape: readonly number[]): boolean {
  return shape.length === 2 && name.includes("ff");
}

/**
 * The CAD ablation mask of one weight matrix from its attribution scores `scores` [out, in] (f32): in each row, the
 * q = ⌊ratio · in⌋ entries with the largest S (ties: lower column first) are marked 0 if S > 0 ("positive"), the q
 * with the largest −S if S < 0 ("negative"), or both. An entry with the wrong sign is never zeroed, so a row with
 * fewer than q positive scores loses only those. Everything runs on the GPU; nothing is read back.
 *
 * ```ts ignore
 * const s = attributionScores(rec, w, g); // [1280, 5120]
 * const { mask } = ablationMask(rec, s, { ratio: 0.001 }); // 5 entries per row at most
 * applyAblation(rec, w, mask);
 * ```
 */
export function ablationMask(rec: Recorder, scores: Tensor, opts: AblationOptions = {}): AblationMask {
  const { ratio = 0.001, mode = "positive", flatten = false } = opts;
  const what = `ablationMask: scores "${scores.label}" ${fmtShape(scores.shape)}`;
  if (scores.dtype !== "f32") throw new TypeError(`${what} are ${scores.dtype}, expected f32`);
  if (scores.shape.length !== 2) {
    throw new TypeError(`${what} must be 2-D [out, in] (CAD ablates Linear weights)`);
  }
  if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`${what}: ratio ${ratio} must lie in [0, 1]`);
  if (!MODES.includes(mode)) {
    throw new TypeError(`${what}: unknown mode ${JSON.stringify(mode)} (modes: ${MODES.join(", ")})`);
  }
  const n = numel(scores.shape);
  const [segs, len] = flatten ? [1, n] : scores.shape;
  const quota = ablationQuota(ratio, len);
  const limit = maxTopK(rec.ctx.limits);
  const method = opts.method ?? (!flatten && quota <= limit ? "topk" : "radix");
  if (method !== "topk" && method !== "radix") {
    throw new TypeError(`${what}: unknown method ${JSON.stringify(method)} (methods: topk, radix)`);
  }
  if (method === "topk" && quota > limit) {
    throw new RangeError(`${what}: method "topk" handles q ≤ ${limit} on this device, but q = ${quota}; use "radix"`);
  }
  if (opts.out) {
    assertShape(
      `ablationMask out "${opts.out.label}" (scores ${fmtShape(scores.shape)})`,
      opts.out.shape,
      scores.shape,
    );
    if (opts.out.dtype !== "f32") throw new TypeError(`ablationMask: out "${opts.out.label}" is ${opts.out.dtype}`);
    if (opts.out.buffer === scores.buffer) throw new TypeError(`ablationMask: out must not share a buffer with scores`);
  }
  const mask = opts.out ?? rec.alloc(scores.shape, "f32", "ablation mask");
  fill(rec, mask, { value: 1 });
  const sides = mode === "both" ? [false, true] : [mode === "negative"];
  if (quota === 0 || n === 0) return { mask, quota, maxZeroed: 0, method: "none" };
  for (const negative of sides) {
    if (method === "topk") topkSide(rec, scores, mask, segs, len, quota, negative);
    else radixSide(rec, scores, mask, segs, len, quota, negative);
  }
  return { mask, quota, maxZeroed: segs * quota * sides.length, method };
}

/** Elementwise grid of `n` invocations. */
function grid(rec: Recorder, n: number, wg = WG): [number, number, number] {
  return grid1d(Math.ceil(n / wg), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
}

/** The top-k path: topk.wgsl ranks S (or neg(S)) per row, `scatter` zeroes the right-signed picks. */
function topkSide(
  rec: Recorder,
  scores: Tensor,
  mask: Tensor,
  rows: number,
  len: number,
  q: number,
  negative: boolean,
): void {
  let ranked = scores;
  if (negative) {
    ranked = rec.alloc([rows, len], "f32", "ablation −S");
    const g = grid(rec, rows * len);
    rec.dispatch(kernels.negate, {
      read: { x: scores },
      write: { y: ranked },
      params: params({ n: rows * len, row: g[0] }),
      grid: g,
    });
  }
  const top = topk(rec, { ...ranked, shape: [rows, len] }, { k: q });
  const g = grid(rec, rows * q);
  rec.dispatch(kernels.scatter, {
    read: { top_values: top.values, top_indices: top.indices },
    write: { mask },
    params: params({ n: rows * q, len, k: q, row: g[0] }),
    grid: g,
  });
  rec.recycle(top.values, top.indices);
  if (negative) rec.recycle(ranked);
}

/**
 * The radix path: per segment, the q-th largest key of (value desc, index asc) byte by byte (4 value bytes, then as
 * many index bytes as `len` needs; passes after the search ends return at once), then an elementwise select.
 */
function radixSide(
  rec: Recorder,
  scores: Tensor,
  mask: Tensor,
  segs: number,
  len: number,
  q: number,
  negative: boolean,
): void {
  const hist = rec.alloc([segs, BINS], "u32", "ablation histogram");
  const state = rec.alloc([segs, STATE], "u32", "ablation threshold");
  rec.zero(hist);
  const chunks = Math.ceil(len / SPAN);
  const span = Math.ceil(len / chunks);
  let wg = 64; // about 16 elements per invocation, as topk.ts
  while (wg < WG && wg * 16 < span) wg *= 2;
  const digits: [word: number, shift: number][] = [[0, 24], [0, 16], [0, 8], [0, 0]];
  for (let b = Math.ceil(Math.log2(Math.max(len, 2)) / 8) - 1; b >= 0; b--) digits.push([1, 8 * b]);
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const gh = grid1d(segs * chunks, maxDim), gp = grid1d(segs, maxDim);
  const overrides = { WG: wg, NEG: negative ? 1 : 0 };
  digits.forEach(([word, shift], d) => {
    const first = d === 0 ? 1 : 0;
    rec.dispatch(kernels.radix_hist, {
      read: { x: scores, cut: state },
      write: { hist },
      params: params({ len, segs, chunks, span, k: q, row: gh[0], word, shift, first }),
      grid: gh,
      overrides,
    });
    rec.dispatch(kernels.radix_pick, {
      write: { hist, state },
      params: params({ segs, k: q, row: gp[0], word, shift, first }),
      grid: gp,
    });
  });
  const n = segs * len, g = grid(rec, n);
  rec.dispatch(kernels.radix_select, {
    read: { x: scores, cut: state },
    write: { mask },
    params: params({ n, len, segs, row: g[0] }),
    grid: g,
    overrides: { NEG: negative ? 1 : 0 },
  });
  rec.recycle(hist, state);
}

/** The uniform of ablate_mask.wgsl (one struct for every entry point), unused fields 0. */
function params(v: Partial<Record<ParamName, number>>): Record<ParamName, number> {
  const out = {} as Record<ParamName, number>;
  for (const k of PARAM_NAMES) out[k] = v[k] ?? 0;
  return out;
}
const PARAM_NAMES = ["n", "len", "segs", "chunks", "span", "k", "row", "word", "shift", "first", "cap"] as const;
type ParamName = typeof PARAM_NAMES[number];

function maskOf(m: Tensor | AblationMask): Tensor {
  return "mask" in m ? m.mask : m;
}

function checkTarget(what: string, param: Tensor, mask: Tensor): void {
  if (param.dtype !== "f32") throw new TypeError(`${what}: parameter "${param.label}" is ${param.dtype}, expected f32`);
  if (mask.dtype !== "f32") throw new TypeError(`${what}: mask "${mask.label}" is ${mask.dtype}, expected f32`);
  assertShape(
    `${what}: mask "${mask.label}" (parameter "${param.label}" is ${fmtShape(param.shape)})`,
    mask.shape,
    param.shape,
  );
  if (param.buffer === mask.buffer) throw new TypeError(`${what}: the parameter and the mask share a buffer`);
}

/**
 * Zeroes `param` in place wherever the mask is 0 (writing +0; other entries are untouched). Keep a copy or an
 * {@linkcode ablationPatch} first to undo it.
 */
export function applyAblation(rec: Recorder, param: Tensor, mask: Tensor | AblationMask): Tensor {
  const keep = maskOf(mask);
  checkTarget("applyAblation", param, keep);
  const n = numel(param.shape), g = grid(rec, n);
  rec.dispatch(kernels.apply, { read: { keep }, write: { param }, params: params({ n, row: g[0] }), grid: g });
  return param;
}

/** How many entries the mask zeroes, as a u32 tensor [1] (read it back for reports). */
export function countZeroed(rec: Recorder, mask: Tensor | AblationMask): Tensor {
  const keep = maskOf(mask);
  if (keep.dtype !== "f32") throw new TypeError(`countZeroed: mask "${keep.label}" is ${keep.dtype}, expected f32`);
  const count = rec.alloc([1], "u32", "ablation count");
  rec.zero(count);
  const n = numel(keep.shape), g = grid(rec, n);
  rec.dispatch(kernels.tally, { read: { keep }, write: { count }, params: params({ n, row: g[0] }), grid: g });
  return count;
}

/** One parameter's part of an undo patch: where the ablation wrote zeros and what was there. */
export interface AblationPatchEntry {
  /** The parameter's name (diffusers module path, e.g. `mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight`). */
  name: string;
  shape: number[];
  /** Flat (row-major) indices, ascending. */
  indices: Int32Array;
  /** The original values at those indices, bit for bit. */
  values: Float32Array;
}

/**
 * The entries of `param` that `mask` zeroes, with their current values: record it **before** applying the ablation.
 * Submits its own recording and reads back only the listed entries.
 */
export async function ablationPatch(
  ctx: GpuContext,
  name: string,
  param: Tensor,
  mask: Tensor | AblationMask,
): Promise<AblationPatchEntry> {
  const keep = maskOf(mask);
  checkTarget(`ablationPatch "${name}"`, param, keep);
  let cap = "mask" in mask ? mask.maxZeroed : -1;
  if (cap < 0) {
    const rec = ctx.recorder("ablation count");
    const c = countZeroed(rec, keep);
    await rec.submit();
    cap = (await ctx.read(c))[0];
    ctx.release(c);
  }
  const rec = ctx.recorder("ablation patch");
  const size = Math.max(cap, 1);
  const idx = ctx.tensor([size], "u32", "patch indices"), bits = ctx.tensor([size], "u32", "patch values");
  const count = ctx.tensor([1], "u32", "patch count");
  const n = numel(param.shape), g = grid(rec, n);
  rec.dispatch(kernels.collect, {
    read: { keep, param_in: param },
    write: { found_idx: idx, found_bits: bits, count },
    params: params({ n, row: g[0], cap }),
    grid: g,
  });
  await rec.submit();
  try {
    const found = (await ctx.read(count))[0];
    if (found > cap) throw new Error(`ablationPatch "${name}": the mask zeroes ${found} entries, more than ${cap}`);
    const gotIdx = (await ctx.read(idx)).subarray(0, found) as Uint32Array;
    const gotBits = (await ctx.read(bits)).subarray(0, found) as Uint32Array;
    const order = Array.from(gotIdx.keys()).sort((a, b) => gotIdx[a] - gotIdx[b]);
    const indices = new Int32Array(found), values = new Float32Array(found);
    const valueBits = new Uint32Array(values.buffer); // move bits, never numbers: NaN payloads survive
    order.forEach((j, i) => {
      indices[i] = gotIdx[j];
      valueBits[i] = gotBits[j];
    });
    return { name, shape: [...param.shape], indices, values };
  } finally {
    ctx.release(idx, bits, count);
  }
}

/** Options of {@linkcode applyPatch}. */
export interface ApplyPatchOptions {
  /** true writes the saved values back (undo); false (default) zeroes the listed entries (redo the ablation). */
  restore?: boolean;
}

/** Writes a patch entry into `param` in place: zeros (ablate) or the saved values (restore, bit for bit). */
export function applyPatch(
  rec: Recorder,
  param: Tensor,
  entry: AblationPatchEntry,
  opts: ApplyPatchOptions = {},
): Tensor {
  const what = `applyPatch "${entry.name}"`;
  if (param.dtype !== "f32") throw new TypeError(`${what}: parameter "${param.label}" is ${param.dtype}, expected f32`);
  assertShape(`${what}: parameter "${param.label}"`, param.shape, entry.shape);
  const n = entry.indices.length, size = numel(param.shape);
  if (entry.values.length !== n) {
    throw new TypeError(`${what}: ${n} indices but ${entry.values.length} values`);
  }
  for (const i of entry.indices) {
    if (!(i >= 0 && i < size)) throw new RangeError(`${what}: index ${i} lies outside ${fmtShape(param.shape)}`);
  }
  if (n === 0) return param;
  const ctx = rec.ctx;
  const idx = ctx.upload(entry.indices, [n], "i32", "patch indices");
  const bits = ctx.upload(new Uint32Array(entry.values.buffer, entry.values.byteOffset, n), [n], "u32", "patch values");
  const g = grid(rec, n);
  rec.dispatch(kernels.write_patch, {
    read: { patch_idx: idx, patch_bits: bits },
    write: { param },
    params: params({ n, row: g[0] }),
    grid: g,
    overrides: { RESTORE: opts.restore ? 1 : 0 },
  });
  rec.releaseAfterSubmit(idx, bits);
  return param;
}

/** Safetensors `__metadata__` key naming the patch format. */
const PATCH_FORMAT = "diffscope.cad.patch/1";

/** A whole undo patch: one entry per ablated parameter, plus free-form metadata (ratio, mode, concept…). */
export interface AblationPatch {
  entries: AblationPatchEntry[];
  meta: Record<string, string>;
}

/**
 * The safetensors layout of a patch: `<name>/indices` (I32) and `<name>/values` (F32) per parameter; the shapes and
 * the format go in the metadata (`format`, `shapes`), beside the caller's keys.
 */
export function ablationPatchTensors(
  patch: AblationPatch,
): { tensors: TensorsToWrite; metadata: Record<string, string> } {
  const tensors = new Map<string, { dtype: "I32" | "F32"; shape: number[]; data: ArrayBufferView }>();
  const shapes: Record<string, number[]> = {};
  for (const e of patch.entries) {
    if (e.name in shapes) throw new TypeError(`ablationPatchTensors: parameter "${e.name}" appears twice`);
    shapes[e.name] = e.shape;
    tensors.set(`${e.name}/indices`, { dtype: "I32", shape: [e.indices.length], data: e.indices });
    tensors.set(`${e.name}/values`, { dtype: "F32", shape: [e.values.length], data: e.values });
  }
  return { tensors, metadata: { ...patch.meta, format: PATCH_FORMAT, shapes: JSON.stringify(shapes) } };
}

/** Reads a patch written with {@linkcode ablationPatchTensors} from an open safetensors file. */
export async function readAblationPatch(file: SafetensorsFile): Promise<AblationPatch> {
  const { format, shapes: shapesJson, ...meta } = file.metadata;
  if (format !== PATCH_FORMAT) {
    throw new TypeError(`"${file.name}" is not a CAD patch: metadata "format" is ${JSON.stringify(format)}`);
  }
  const shapes = JSON.parse(shapesJson ?? "{}") as Record<string, number[]>;
  const entries: AblationPatchEntry[] = [];
  for (const [name, shape] of Object.entries(shapes)) {
    const indices = await file.readI32(`${name}/indices`);
    const raw = await file.read(`${name}/values`);
    if (raw.dtype !== "F32") throw new TypeError(`"${file.name}": "${name}/values" is ${raw.dtype}, expected F32`);
    // a copy of the bytes, not a conversion through numbers
    const values = new Float32Array(raw.data.slice().buffer, 0, raw.data.byteLength / 4);
    if (values.length !== indices.length) {
      throw new TypeError(`"${file.name}": "${name}" has ${indices.length} indices but ${values.length} values`);
    }
    entries.push({ name, shape, indices, values });
  }
  return { entries, meta };
}

/** Applies (or with `restore`, undoes) patch entries on a model's parameters, looked up by name. */
export function applyPatches(
  rec: Recorder,
  params: ReadonlyMap<string, Tensor>,
  entries: readonly AblationPatchEntry[],
  opts: ApplyPatchOptions = {},
): void {
  for (const e of entries) {
    const p = params.get(e.name);
    if (!p) throw new Error(`the patch names "${e.name}", which this model does not have`);
    applyPatch(rec, p, e, opts);
  }
}
