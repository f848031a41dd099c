/**
 * The safetensors format itself: dtypes, the error type, and parsing plus validation of the header.
 *
 * Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 `N`, then `N` bytes of UTF-8
 * JSON `{"__metadata__": {string: string}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, …}`, then the
 * data section. Offsets are relative to the data section, which the tensors must cover exactly: no gaps, no
 * overlaps, nothing after the last tensor (the reference implementation rejects all three, and so do we).
 * @module
 */
import { fmtShape } from "../gpu/tensor.ts";

/** Bytes per element of every dtype this reader knows (sub-byte float formats are not supported). */
export const SAFETENSORS_DTYPE_BYTES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
} as const;

/** A safetensors dtype name, as written in the header. */
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_BYTES;

/** True when `s` is a dtype this library knows. */
export function isSafetensorsDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === "string" && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, s);
}

/** The header refuses lengths above this, as the reference implementation does (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** A malformed file or a tensor that cannot be written; the message names the file and the problem. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
  /** File name or URL, as given to the reader or writer. */
  readonly file: string;
  /** The problem alone, without the `Cannot read "file":` prefix. */
  readonly problem: string;
  constructor(action: "read" | "write", file: string, problem: string, options?: ErrorOptions) {
    super(`Cannot ${action} "${file}": ${problem}`, options);
    this.file = file;
    this.problem = problem;
  }
}

/** Where one tensor lies and what it holds. */
export interface SafetensorsTensorInfo {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Offset of the tensor's first byte from the start of the file (not of the data section). */
  readonly byteOffset: number;
  readonly byteLength: number;
}

/** A parsed and validated header. */
export interface SafetensorsHeader {
  /** Bytes before the data section: 8 + the JSON's length. */
  readonly dataStart: number;
  /** The `__metadata__` map (empty when the file has none). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in the order their data lies in the file. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
}

/**
 * Reads the 8-byte header length and checks it against the file size. `first8` holds the file's first bytes
 * (fewer than 8 when the file is that short).
 */
export function parseHeaderLength(first8: Uint8Array, fileSize: number, file: string): number {
  const fail = (p: string) => new SafetensorsError("read", file, p);
  if (fileSize < 8) {
    throw fail(`the file is truncated: it has ${fileSize} bytes, fewer than the 8-byte header length`);
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw fail(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (is this a safetensors file?)`);
  }
  if (8 + Number(n) > fileSize) {
    throw fail(
      `header length ${n} runs past the end of the file (${fileSize} bytes): the file is truncated or not safetensors`,
    );
  }
  return Number(n);
}

/**
 * Parses the JSON header (the `N` bytes after the length) and validates every entry and the layout of the data
 * section against `fileSize`. Throws {@linkcode SafetensorsError} naming `file` and the problem.
 */
export function parseHeader(json: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const fail = (p: string) => new SafetensorsError("read", file, p);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(json);
  } catch {
    throw fail("the header is not valid UTF-8");
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw fail(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw fail(
      `the header is not a JSON object (it is ${raw === null ? "null" : Array.isArray(raw) ? "an array" : typeof raw})`,
    );
  }

  let metadata: Record<string, string> = {};
  const entries: [string, { dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }][] = [];
  for (const [name, entry] of Object.entries(raw)) {
    if (name === "__metadata__") {
      metadata = checkMetadata(entry, fail);
      continue;
    }
    const t = `tensor ${JSON.stringify(name)}`;
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) throw fail(`${t} is not a JSON object`);
    const missing = ["dtype", "shape", "data_offsets"].filter((k) => !(k in entry));
    if (missing.length) throw fail(`${t} is missing ${missing.map((k) => `"${k}"`).join(", ")}`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (!isSafetensorsDtype(dtype)) {
      throw fail(
        `${t} has unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")})`,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw fail(`${t} has shape ${JSON.stringify(shape)}: expected a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
      throw fail(`${t} has data_offsets ${JSON.stringify(offsets)}: expected two increasing non-negative integers`);
    }
    const [begin, end] = offsets as number[];
    let need: number;
    try {
      need = shapeBytes(dtype, shape);
    } catch (e) {
      throw fail(`${t} has ${(e as Error).message}`);
    }
    if (need !== end - begin) {
      throw fail(`${t} has ${end - begin} bytes but dtype ${dtype} × shape ${fmtShape(shape)} needs ${need}`);
    }
    entries.push([name, { dtype, shape: [...shape], begin, end }]);
  }

  // The data section must be tiled exactly: sort by position and walk it.
  entries.sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  const dataStart = 8 + json.byteLength;
  const dataBytes = fileSize - dataStart;
  const tensors = new Map<string, SafetensorsTensorInfo>();
  let pos = 0, prev: string | null = null;
  for (const [name, { dtype, shape, begin, end }] of entries) {
    const t = `tensor ${JSON.stringify(name)} (data_offsets [${begin},${end}])`;
    if (begin < pos) {
      throw fail(`${t} overlaps tensor ${JSON.stringify(prev)}, which ends at ${pos}`);
    }
    if (begin > pos) {
      const where = prev !== null ? `between tensor ${JSON.stringify(prev)} (ends at ${pos}) and` : "before";
      throw fail(`the data section has a gap: ${begin - pos} unexplained bytes ${where} ${t}`);
    }
    if (end > dataBytes) {
      throw fail(
        `${t} runs past the end of the data section (${dataBytes} bytes): the file is truncated ` +
          `(it has ${fileSize} bytes, the header describes ${
            dataStart + entries.reduce((m, [, e]) => Math.max(m, e.end), 0)
          })`,
      );
    }
    tensors.set(name, { dtype, shape, byteOffset: dataStart + begin, byteLength: end - begin });
    pos = end;
    prev = name;
  }
  if (pos < dataBytes) {
    throw fail(`the data section has ${dataBytes - pos} unexplained bytes after the last tensor (it ends at ${pos})`);
  }
  return { dataStart, metadata, tensors };
}

/** Bytes a tensor of `dtype` and `shape` occupies; throws a RangeError past 2^53. */
export function shapeBytes(dtype: SafetensorsDtype, shape: readonly number[]): number {
  let n = SAFETENSORS_DTYPE_BYTES[dtype];
  for (const d of shape) n *= d;
  if (!Number.isSafeInteger(n)) throw new RangeError(`shape ${fmtShape(shape)}, too large for dtype ${dtype}`);
  return n;
}

function isCount(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0;
}

function checkMetadata(m: unknown, fail: (p: string) => Error): Record<string, string> {
  if (m === null || typeof m !== "object" || Array.isArray(m)) throw fail(`"__metadata__" is not a JSON object`);
  for (const [k, v] of Object.entries(m)) {
    if (typeof v !== "string") {
      throw fail(`"__metadata__" must map strings to strings, but ${JSON.stringify(k)} is ${JSON.stringify(v)}`);
    }
  }
  return { ...(m as Record<string, string>) };
}
