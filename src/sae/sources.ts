/**
 * Where SAE training data comes from: rows of activations [N, d] on the host, on the GPU, or in a safetensors file
 * read row by row (any {@linkcode ByteSource}: memory, a `Blob`, HTTP ranges; a local file via src/io/sae_files.ts).
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { fmtShape, type Tensor } from "../gpu/tensor.ts";
import { embedding } from "../ops/embedding.ts";
import { float32Of, type SafetensorsFile } from "../safetensors/mod.ts";
import type { ByteSource } from "../safetensors/source.ts";

/** Rows of activations to train on: `batch` returns the rows at `indices` as a [indices.length, d] batch. */
export interface ActivationSource {
  /** Number of rows. */
  readonly rows: number;
  /** Width of a row. */
  readonly d: number;
  /**
   * The rows at `indices`, in that order: host floats, or a tensor recorded on `rec` (allocated with `rec.alloc`:
   * the trainer recycles it into `rec` after the step).
   */
  batch(indices: Uint32Array, rec: Recorder): Float32Array | Tensor | Promise<Float32Array | Tensor>;
}

/** A source over host floats [rows, d]. */
export function arraySource(data: Float32Array, d: number): ActivationSource {
  if (!Number.isInteger(d) || d < 1 || data.length % d !== 0) {
    throw new RangeError(`arraySource: ${data.length} values are not rows of d = ${d}`);
  }
  const rows = data.length / d;
  return {
    rows,
    d,
    batch(indices) {
      const out = new Float32Array(indices.length * d);
      for (let r = 0; r < indices.length; r++) out.set(data.subarray(indices[r] * d, indices[r] * d + d), r * d);
      return out;
    },
  };
}

/** A source over a tensor [rows, d] already on the GPU (batches are gathered there, embedding-style). */
export function tensorSource(t: Tensor): ActivationSource {
  if (t.shape.length !== 2 || t.dtype !== "f32") {
    throw new TypeError(`tensorSource: "${t.label}" ${fmtShape(t.shape)} ${t.dtype} must be f32 [rows, d]`);
  }
  const [rows, d] = t.shape;
  return {
    rows,
    d,
    batch(indices, rec) {
      return embedding(rec, { table: t, ids: { data: Int32Array.from(indices), shape: [indices.length] } });
    },
  };
}

/**
 * A source over one 2-D float tensor [N, d] of a safetensors file (F32, F16, BF16 or F64), read a batch at a time:
 * the batch's rows are read in file order, consecutive rows in one read, and returned in the order asked for.
 * `name` may be omitted when the file holds a single tensor.
 */
export function safetensorsActivations(bytes: ByteSource, st: SafetensorsFile, name?: string): ActivationSource {
  const tensorName = name ?? (st.names.length === 1 ? st.names[0] : undefined);
  if (tensorName === undefined) {
    throw new TypeError(
      `safetensorsActivations: ${st.name} holds ${st.names.length} tensors; say which (${st.names.join(", ")})`,
    );
  }
  const info = st.info(tensorName);
  if (info.shape.length !== 2) {
    throw new TypeError(`safetensorsActivations: "${tensorName}" in ${st.name} is ${fmtShape(info.shape)}, not [N, d]`);
  }
  const [rows, d] = info.shape;
  const rowBytes = info.byteLength / rows;
  const fail = (p: string, kind: "type" | "range") => (kind === "type" ? new TypeError(p) : new RangeError(p));
  float32Of({ dtype: info.dtype, shape: [0], data: new Uint8Array(0) }, fail); // rejects integer dtypes up front
  return {
    rows,
    d,
    async batch(indices) {
      const order = Uint32Array.from(indices.keys()).sort((a, b) => indices[a] - indices[b]);
      const out = new Float32Array(indices.length * d);
      for (let s = 0; s < order.length;) {
        let e = s + 1; // a run of consecutive (or repeated) rows
        while (e < order.length && indices[order[e]] - indices[order[e - 1]] <= 1) e++;
        const first = indices[order[s]], count = indices[order[e - 1]] - first + 1;
        if (first + count > rows) throw new RangeError(`safetensorsActivations: row ${first + count - 1} ≥ ${rows}`);
        const data = await bytes.read(info.byteOffset + first * rowBytes, count * rowBytes);
        const vals = float32Of({ name: tensorName, dtype: info.dtype, shape: [count, d], data }, fail);
        for (let t = s; t < e; t++) {
          const r = indices[order[t]] - first;
          out.set(vals.subarray(r * d, r * d + d), order[t] * d);
        }
        s = e;
      }
      return out;
    },
  };
}
