/**
 * Writing safetensors: the header, then each tensor's bytes as its own chunk, so a file of many GB is streamed rather
 * than built in one buffer.
 *
 * Layout: tensors go in insertion order (a `Record`'s key order, where integer-like names come first, or a `Map`'s),
 * stably grouped by element size — 8-byte dtypes, then 4, 2, 1 — so with the header padded with spaces to a multiple
 * of 8 bytes (as the reference does) every tensor starts at a multiple of its element size and readers can view it in
 * place. The reference implementation sorts by dtype then name, which also aligns; any order that tiles the data
 * section is valid. The header lists tensors in data order, `__metadata__` first (omitted when empty).
 * @module
 */
import { fmtShape } from "../gpu/tensor.ts";
import {
  isSafetensorsDtype,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDtype,
  SafetensorsError,
  shapeBytes,
} from "./format.ts";

/** Tensor bytes: any typed array or DataView, or a function producing them when the writer gets to this tensor. */
export type TensorData = ArrayBufferView | (() => ArrayBufferView | Promise<ArrayBufferView>);

/** One tensor to write. Its byte count must equal dtype size × shape product. */
export interface TensorToWrite {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /**
   * The bytes (little-endian), or a function called once when the writer reaches this tensor (e.g. a GPU readback),
   * so only one tensor need be in memory at a time; async functions need async iteration.
   */
  readonly data: TensorData;
}

/** Where a written tensor lands. */
export interface WrittenTensor {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** From the start of the file. */
  readonly byteOffset: number;
  readonly byteLength: number;
}

/**
 * A serialized file as chunks: the header, then one chunk per tensor. Iterate synchronously when every `data` is
 * bytes or a synchronous function, asynchronously otherwise. Each iteration calls data functions again.
 */
export interface SafetensorsChunks extends Iterable<Uint8Array>, AsyncIterable<Uint8Array> {
  /** Total size of the file. */
  readonly byteLength: number;
  /** The first chunk: the 8-byte length and the padded JSON. */
  readonly header: Uint8Array;
  /** Tensors in data order. */
  readonly tensors: readonly WrittenTensor[];
}

/** Options for {@linkcode serializeSafetensors}. */
export interface SerializeOptions {
  /** The file name used in error messages. */
  name?: string;
}

/** Tensors keyed by name: a record (key order) or a map (insertion order). */
export type TensorsToWrite = Readonly<Record<string, TensorToWrite>> | ReadonlyMap<string, TensorToWrite>;

/**
 * Lays out `tensors` and builds the header; validates every name, dtype, shape, byte count (of bytes given directly)
 * and metadata value first, throwing {@linkcode SafetensorsError}. Bytes produced by functions are checked when
 * iterated.
 */
export function serializeSafetensors(
  tensors: TensorsToWrite,
  metadata: Readonly<Record<string, string>> = {},
  opts: SerializeOptions = {},
): SafetensorsChunks {
  const file = opts.name ?? "<safetensors>";
  const fail = (p: string) => new SafetensorsError("write", file, p);
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw fail(`metadata ${JSON.stringify(k)} is ${JSON.stringify(v)}, not a string`);
  }

  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors as Record<string, TensorToWrite>);
  const items = entries.map(([name, t]) => {
    const what = `tensor ${JSON.stringify(name)}`;
    if (name === "__metadata__") throw fail(`"__metadata__" is reserved and cannot name a tensor`);
    if (!t || !isSafetensorsDtype(t.dtype)) {
      throw fail(
        `${what} has unknown dtype ${JSON.stringify(t?.dtype)} (known: ${
          Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")
        })`,
      );
    }
    if (
      !Array.isArray(t.shape) ||
      !(t.shape as readonly unknown[]).every((d) => Number.isSafeInteger(d) && (d as number) >= 0)
    ) {
      throw fail(`${what} has shape ${JSON.stringify(t.shape)}: expected a list of non-negative integers`);
    }
    let byteLength: number;
    try {
      byteLength = shapeBytes(t.dtype, t.shape);
    } catch (e) {
      throw fail(`${what} has ${(e as Error).message}`);
    }
    if (typeof t.data !== "function") checkBytes(name, t, byteLength, t.data, fail);
    return { name, dtype: t.dtype, shape: [...t.shape], data: t.data, byteLength, byteOffset: 0 };
  });
  const size = (i: { dtype: SafetensorsDtype }) => SAFETENSORS_DTYPE_BYTES[i.dtype];
  items.sort((a, b) => size(b) - size(a)); // stable: insertion order within each element size

  let pos = 0;
  const json: string[] = [];
  if (Object.keys(metadata).length) json.push(`"__metadata__":${JSON.stringify(metadata)}`);
  for (const it of items) {
    json.push(
      `${JSON.stringify(it.name)}:${
        JSON.stringify({ dtype: it.dtype, shape: it.shape, data_offsets: [pos, pos + it.byteLength] })
      }`,
    );
    it.byteOffset = pos;
    pos += it.byteLength;
  }
  const text = new TextEncoder().encode(`{${json.join(",")}}`);
  const padded = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20); // spaces, valid trailing JSON whitespace
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(text, 8);
  for (const it of items) it.byteOffset += header.byteLength;

  return {
    byteLength: header.byteLength + pos,
    header,
    tensors: items.map(({ name, dtype, shape, byteOffset, byteLength }) => ({
      name,
      dtype,
      shape,
      byteOffset,
      byteLength,
    })),
    *[Symbol.iterator]() {
      yield header;
      for (const it of items) {
        const d = typeof it.data === "function" ? it.data() : it.data;
        if (typeof (d as { then?: unknown } | null)?.then === "function") {
          Promise.resolve(d).catch(() => {}); // its outcome is moot now; keep a rejection from going unhandled
          throw fail(`tensor ${JSON.stringify(it.name)} comes from an async function: iterate with for await`);
        }
        yield checkBytes(it.name, it, it.byteLength, d, fail);
      }
    },
    async *[Symbol.asyncIterator]() {
      yield header;
      for (const it of items) {
        const d = typeof it.data === "function" ? await it.data() : it.data;
        yield checkBytes(it.name, it, it.byteLength, d, fail);
      }
    },
  };
}

/** The whole file in one buffer, for small files; every `data` must be bytes or a synchronous function. */
export function encodeSafetensors(
  tensors: TensorsToWrite,
  metadata?: Readonly<Record<string, string>>,
  opts?: SerializeOptions,
): Uint8Array {
  const chunks = serializeSafetensors(tensors, metadata, opts);
  const out = new Uint8Array(chunks.byteLength);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

function checkBytes(
  name: string,
  t: { dtype: SafetensorsDtype; shape: readonly number[] },
  need: number,
  data: unknown,
  fail: (p: string) => Error,
): Uint8Array {
  const what = `tensor ${JSON.stringify(name)}`;
  if (!ArrayBuffer.isView(data)) throw fail(`${what} data is ${describe(data)}, not a typed array`);
  if (data.byteLength !== need) {
    throw fail(`${what} has ${data.byteLength} bytes but dtype ${t.dtype} × shape ${fmtShape(t.shape)} needs ${need}`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function describe(x: unknown): string {
  return x === null
    ? "null"
    : Array.isArray(x)
    ? "an array"
    : typeof x === "object"
    ? `a ${x.constructor?.name}`
    : typeof x;
}
