/**
 * Opening a safetensors file from any {@linkcode ByteSource}: the header is read and validated up front, then each
 * tensor is read on its own, so a multi-GB checkpoint never sits in memory whole.
 * @module
 */
import { float32Of, int32Of, type SafetensorsTensor } from "./convert.ts";
import {
  parseHeader,
  parseHeaderLength,
  SafetensorsError,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
} from "./format.ts";
import type { ByteSource } from "./source.ts";

/** An open safetensors file: its header, and tensors read on demand. */
export interface SafetensorsFile {
  /** The name used in messages (file name or URL). */
  readonly name: string;
  /** File size in bytes. */
  readonly size: number;
  /** Tensor names, in the order their data lies in the file. */
  readonly names: readonly string[];
  /** The `__metadata__` map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The validated header (offsets of every tensor). */
  readonly header: SafetensorsHeader;
  /** True when the file holds a tensor of that name. */
  has(name: string): boolean;
  /** Dtype, shape and byte range of one tensor; throws a SafetensorsError for an unknown name. */
  info(name: string): SafetensorsTensorInfo;
  /** Reads one tensor's bytes (a single ranged read of exactly its bytes). */
  read(name: string): Promise<SafetensorsTensor>;
  /** Reads one float tensor (F32, F16, BF16, F64) as f32. */
  readF32(name: string): Promise<Float32Array>;
  /** Reads one integer tensor (I32, I64 range-checked, …) as i32. */
  readI32(name: string): Promise<Int32Array>;
  /** Closes the source (a file handle); reads fail afterwards. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Reads and validates the header of a safetensors file. `name` (default: the source's) appears in every error.
 * Throws {@linkcode SafetensorsError} for a malformed file; the source stays open then (its owner closes it).
 *
 * ```ts
 * import { encodeSafetensors, memorySource, openSafetensors } from "./mod.ts";
 * const bytes = encodeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * const st = await openSafetensors(memorySource(bytes), "w.safetensors");
 * console.log(st.info("w").shape, await st.readF32("w")); // [2] Float32Array [1, 2]
 * ```
 */
export async function openSafetensors(source: ByteSource, name?: string): Promise<SafetensorsFile> {
  const file = name ?? source.name ?? "<safetensors>";
  const fail = (p: string) => new SafetensorsError("read", file, p);
  const first = source.size >= 8 ? await source.read(0, 8) : new Uint8Array(8);
  const n = parseHeaderLength(first, source.size, file);
  const header = parseHeader(await source.read(8, n), source.size, file);
  const names = [...header.tensors.keys()];

  const info = (t: string) => {
    const i = header.tensors.get(t);
    if (!i) throw fail(`it has no tensor ${JSON.stringify(t)} (${names.length} tensors${suggest(t, names)})`);
    return i;
  };
  const read = async (t: string): Promise<SafetensorsTensor> => {
    const { dtype, shape, byteOffset, byteLength } = info(t);
    const data = await source.read(byteOffset, byteLength);
    if (data.byteLength !== byteLength) {
      throw fail(`reading tensor ${JSON.stringify(t)} gave ${data.byteLength} of ${byteLength} bytes (file changed?)`);
    }
    return { name: t, dtype, shape, data };
  };
  const close = async () => void await source.close?.();
  return {
    name: file,
    size: source.size,
    names,
    metadata: header.metadata,
    header,
    has: (t) => header.tensors.has(t),
    info,
    read,
    readF32: async (t) => float32Of(await read(t), fail),
    readI32: async (t) => int32Of(await read(t), fail),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** `; similar: "a.weight", "a.bias"` listing names that share `t`'s prefix up to its last dot or slash. */
function suggest(t: string, names: readonly string[]): string {
  const stem = t.replace(/[./][^./]*$/, "");
  if (stem === t || !stem) return "";
  const near = names.filter((n) => n.startsWith(stem)).slice(0, 3);
  return near.length ? `; similar: ${near.map((n) => JSON.stringify(n)).join(", ")}` : "";
}
