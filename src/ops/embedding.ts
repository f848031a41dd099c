/**
 * Embedding lookup (row gather), with tables split into row shards when they exceed one storage binding, and its
 * gradient w.r.t. the table (a deterministic scatter-add).
 * @module
 */
import src from "../../kernels/embedding.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/embedding_bwd.wgsl" with { type: "text" };
import commonSrc from "../../kernels/_embedding_common.wgsl" with { type: "text" };
import type { GpuContext } from "../gpu/context.ts";
import { defineKernel, defineKernels, includeWgsl } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, type DType, fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { outputTensor, requireDtype, WORD_DTYPES } from "./_alloc.ts";
import { accumOverride, type AccumulateOptions, clearTensor, gradTensor } from "./_grad.ts";

const snippets = { "_embedding_common.wgsl": commonSrc };
const kernel = defineKernel("embedding.wgsl", includeWgsl("embedding.wgsl", src, snippets));
const bwdKernels = defineKernels("embedding_bwd.wgsl", includeWgsl("embedding_bwd.wgsl", bwdSrc, snippets), [
  "link",
  "scatter",
]);
const WG = 64;

/** Token ids on the host: validated against the table, then uploaded for this one recording. */
export interface HostIds {
  data: Int32Array | readonly number[];
  shape: readonly number[];
}

/** Inputs of {@linkcode embedding}. */
export interface EmbeddingInputs {
  /** The table [V, D], or its row shards [V_k, D] in order (Σ V_k = V), each within one storage binding. */
  table: Tensor | readonly Tensor[];
  /** Ids of any shape: an i32 tensor (clamped into [0, V) on the GPU) or host ids (checked, RangeError if out). */
  ids: Tensor | HostIds;
}

/** Options of {@linkcode embedding}. */
export interface EmbeddingOptions {
  /** Write here instead of allocating (shape `[...ids.shape, D]`; must not share a buffer with an input). */
  out?: Tensor;
}

/**
 * `out[..., :] = table[ids[...], :]`: ids of shape S give `[...S, D]`. One dispatch per shard.
 *
 * ```ts ignore
 * const tok = uploadRowShards(ctx, weights, [49408, 768]); // 2 shards where a binding holds 128 MiB
 * const h = embedding(rec, { table: tok, ids: { data: inputIds, shape: [2, 77] } }); // [2, 77, 768]
 * ```
 */
export function embedding(rec: Recorder, inputs: EmbeddingInputs, opts: EmbeddingOptions = {}): Tensor {
  const { shards, d, dtype, vocab } = tableShards("embedding", inputs.table, WORD_DTYPES);
  const ids = idsTensor(rec, "embedding", inputs.ids, vocab);
  const tokens = numel(ids.shape);
  const out = outputTensor(rec, "embedding", [...ids.shape, d], dtype, opts.out, [ids, ...shards]);
  const grid = grid1d(tokens, rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  let start = 0;
  for (const table of shards) {
    const count = table.shape[0];
    if (count > 0 && tokens > 0 && d > 0) {
      rec.dispatch(kernel, {
        read: { ids, table },
        write: { out },
        params: { tokens, row: grid[0], d, vocab, start, count },
        grid,
        overrides: { WG },
      });
    }
    start += count;
  }
  return out;
}

/** The table's shards, checked: each [rows, D] with one D and one dtype among `dtypes`, and Σ rows > 0. */
function tableShards(what: string, table: Tensor | readonly Tensor[], dtypes: readonly DType[]) {
  const shards = Array.isArray(table) ? table as readonly Tensor[] : [table as Tensor];
  if (shards.length === 0) throw new TypeError(`${what}: the table has no shards`);
  const d = shards[0].shape[1];
  const dtype = shards[0].dtype;
  for (const s of shards) {
    requireDtype(what, s, dtypes);
    if (s.shape.length !== 2 || s.shape[1] !== d || s.dtype !== dtype) {
      throw new TypeError(
        `${what}: table shards must be [rows, D] with one D and dtype; got ${
          shards.map((s) => `${fmtShape(s.shape)} ${s.dtype}`).join(", ")
        }`,
      );
    }
  }
  const vocab = shards.reduce((v, s) => v + s.shape[0], 0);
  if (vocab === 0) throw new RangeError(`${what}: the table has no rows`);
  return { shards, d, dtype, vocab };
}

/** The ids as an i32 tensor: a given one as is (the kernels clamp), host ids checked and uploaded for this recording. */
function idsTensor(rec: Recorder, what: string, given: Tensor | HostIds, vocab: number): Tensor {
  if ("buffer" in given) {
    requireDtype(`${what} ids`, given, ["i32"]);
    return given;
  }
  const { data, shape } = given;
  for (let i = 0; i < data.length; i++) {
    const id = data[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new RangeError(`${what}: id ${id} at position ${i} is outside the table's ${vocab} rows`);
    }
  }
  const ids = rec.ctx.upload(data, shape, "i32", `${what} ids`);
  rec.releaseAfterSubmit(ids);
  return ids;
}

/** Inputs of {@linkcode embeddingBackward}. */
export interface EmbeddingBackwardInputs {
  /** dL/dout, `[...ids.shape, D]`. */
  dy: Tensor;
  /** The forward's ids (a GPU tensor is clamped into the table as the forward does; host ids are checked). */
  ids: Tensor | HostIds;
}

/** Options of {@linkcode embeddingBackward}. */
export interface EmbeddingBackwardOptions extends AccumulateOptions {
  /**
   * dL/dtable, f32, as one [V, D] tensor or row shards [V_k, D] like the forward's table; nothing is computed
   * when absent. With `accumulate: false` the shards are cleared first: rows no id names get a zero gradient.
   */
  dtable?: Tensor | readonly Tensor[];
}

/** Ids whose column passes could exceed lavapipe's per-invocation loop limit (65,535) in the worst case. */
const MAX_LOOP = 60000;

/**
 * Gradient of {@linkcode embedding} w.r.t. the table: `dtable[ids[t], :] += dy[t, :]`, deterministic (each row's
 * tokens are added in order by one workgroup; see embedding_bwd.wgsl). Only rows that occur are touched. The ids
 * get no gradient. Returns the shards it wrote.
 *
 * ```ts ignore
 * embeddingBackward(rec, { dy: dTok, ids }, { dtable: dTokenEmbedding }); // [2, 77, 768] into [49408, 768] shards
 * ```
 */
export function embeddingBackward(
  rec: Recorder,
  inputs: EmbeddingBackwardInputs,
  opts: EmbeddingBackwardOptions = {},
): { dtable?: Tensor[] } {
  const what = "embedding backward";
  requireDtype(what, inputs.dy, ["f32"]);
  if (!opts.dtable) return {};
  const { shards, d, vocab } = tableShards(what, opts.dtable, ["f32"]);
  const { dy } = inputs;
  const idShape = inputs.ids.shape;
  assertShape(`${what}: dy "${dy.label}" for ids ${fmtShape(idShape)} and D = ${d}`, dy.shape, [...idShape, d]);
  const tokens = numel(idShape);
  const wg = d > 64 ? 256 : 64;
  if (tokens * Math.ceil(d / wg) > MAX_LOOP) {
    throw new RangeError(
      `${what}: ${tokens} ids × ${Math.ceil(d / wg)} column passes may exceed ${MAX_LOOP} loop iterations in one ` +
        `invocation (if every id were equal); split the ids into batches`,
    );
  }
  const reads = "buffer" in inputs.ids ? [dy, inputs.ids] : [dy];
  for (const [k, s] of shards.entries()) gradTensor(what, `dtable[${k}]`, s, s.shape, reads);
  const ids = idsTensor(rec, what, inputs.ids, vocab);
  const accum = accumOverride(opts);
  if (!accum) { for (const s of shards) clearTensor(rec, s); }
  if (tokens === 0 || d === 0) return { dtable: [...shards] };
  const links = rec.alloc([tokens], "u32", `${what} links`);
  rec.releaseAfterSubmit(links);
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  const perToken = grid1d(Math.ceil(tokens / 256), maxDim);
  rec.dispatch(bwdKernels.link, {
    read: { ids, dy },
    write: { links, dtable: shards[0] },
    params: { tokens, row: perToken[0], d, vocab, start: 0, count: 0 },
    grid: perToken,
    overrides: { WG: 256 },
  });
  const grid = grid1d(tokens, maxDim);
  let start = 0;
  for (const dtable of shards) {
    const count = dtable.shape[0];
    if (count > 0) {
      rec.dispatch(bwdKernels.scatter, {
        read: { ids, dy },
        write: { links, dtable },
        params: { tokens, row: grid[0], d, vocab, start, count },
        grid,
        overrides: { WG: wg, ACCUM: accum },
      });
    }
    start += count;
  }
  return { dtable: [...shards] };
}

/** Row counts splitting `rows` rows of `rowBytes` bytes into shards of at most `maxBytes` (as even as possible). */
export function rowShardSizes(rows: number, rowBytes: number, maxBytes: number): number[] {
  const perShard = Math.floor(maxBytes / rowBytes);
  if (perShard < 1) throw new RangeError(`rowShardSizes: one row (${rowBytes} bytes) exceeds ${maxBytes} bytes`);
  const k = Math.max(1, Math.ceil(rows / perShard));
  const base = Math.floor(rows / k), extra = rows % k;
  return Array.from({ length: k }, (_, i) => base + (i < extra ? 1 : 0));
}

/**
 * Uploads a [V, D] f32 table as row shards, each within the device's storage-binding limit (or `maxShardBytes`).
 * The result is what {@linkcode embedding} takes as `table`.
 */
export function uploadRowShards(
  ctx: GpuContext,
  data: Float32Array,
  shape: readonly [number, number],
  opts: { maxShardBytes?: number; label?: string } = {},
): Tensor[] {
  const [v, d] = shape;
  if (data.length !== v * d) throw new TypeError(`uploadRowShards: ${data.length} values for shape ${fmtShape(shape)}`);
  const max = Math.min(opts.maxShardBytes ?? Infinity, ctx.limits.maxStorageBufferBindingSize);
  let start = 0;
  return rowShardSizes(v, d * 4, max).map((rows, k) => {
    const t = ctx.upload(
      data.subarray(start * d, (start + rows) * d),
      [rows, d],
      "f32",
      `${opts.label ?? "table"}[${k}]`,
    );
    start += rows;
    return t;
  });
}
