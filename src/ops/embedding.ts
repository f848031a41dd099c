/**
 * Embedding lookup (row gather), with tables split into row shards when they exceed one storage binding.
 * @module
 */
import src from "../../kernels/embedding.wgsl" with { type: "text" };
import type { GpuContext } from "../gpu/context.ts";
import { defineKernel } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import { outputTensor, requireDtype, WORD_DTYPES } from "./_alloc.ts";

const kernel = defineKernel("embedding.wgsl", src);
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
  const shards = Array.isArray(inputs.table) ? inputs.table as readonly Tensor[] : [inputs.table as Tensor];
  if (shards.length === 0) throw new TypeError("embedding: the table has no shards");
  const d = shards[0].shape[1];
  const dtype = shards[0].dtype;
  for (const s of shards) {
    requireDtype("embedding", s, WORD_DTYPES);
    if (s.shape.length !== 2 || s.shape[1] !== d || s.dtype !== dtype) {
      throw new TypeError(
        `embedding: table shards must be [rows, D] with one D and dtype; got ${
          shards.map((s) => `${fmtShape(s.shape)} ${s.dtype}`).join(", ")
        }`,
      );
    }
  }
  const vocab = shards.reduce((v, s) => v + s.shape[0], 0);
  if (vocab === 0) throw new RangeError("embedding: the table has no rows");
  let ids: Tensor;
  if ("buffer" in inputs.ids) {
    ids = inputs.ids;
    requireDtype("embedding ids", ids, ["i32"]);
  } else {
    const { data, shape } = inputs.ids;
    for (let i = 0; i < data.length; i++) {
      const id = data[i];
      if (!Number.isInteger(id) || id < 0 || id >= vocab) {
        throw new RangeError(`embedding: id ${id} at position ${i} is outside the table's ${vocab} rows`);
      }
    }
    ids = rec.ctx.upload(data, shape, "i32", "embedding ids");
    rec.releaseAfterSubmit(ids);
  }
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
