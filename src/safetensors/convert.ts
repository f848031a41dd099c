/**
 * Raw tensor bytes to the typed arrays the GPU runtime uploads: `Float32Array` for float dtypes, `Int32Array` for
 * integer ones (token ids, timesteps, indices). Assumes a little-endian host, as every WebGPU platform is.
 * @module
 */
import { fmtShape, fromBF16, fromF16, numel } from "../gpu/tensor.ts";
import { SAFETENSORS_DTYPE_BYTES, type SafetensorsDtype } from "./format.ts";

/** A tensor as stored: dtype, shape and its raw little-endian bytes. */
export interface SafetensorsTensor {
  /** The tensor's name in its file (for messages); absent for tensors built by hand. */
  readonly name?: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** Builds the error for a conversion problem (the reader wraps them in a SafetensorsError naming the file). */
export type ConversionFail = (problem: string, kind: "type" | "range") => Error;

const standalone = (fn: string): ConversionFail => (p, kind) =>
  kind === "type" ? new TypeError(`${fn}: ${p}`) : new RangeError(`${fn}: ${p}`);

// Native Float16Array where the runtime has it (Deno 2, recent browsers): ~2.5× faster than the scalar fallback.
const Float16 = typeof Float16Array === "function" ? Float16Array : undefined;

/**
 * The tensor's values as f32: F32 (a view on `data` when aligned, not a copy), F16, BF16 and F64 (rounded).
 * Throws a TypeError for other dtypes.
 */
export function toFloat32(t: SafetensorsTensor): Float32Array {
  return float32Of(t, standalone("toFloat32"));
}

/**
 * The tensor's values as i32: I32 (a view on `data` when aligned), I64 and U64/U32 (each value checked to fit, the
 * error naming the tensor and the first value that does not), I16, U16, I8, U8 and BOOL (widened).
 */
export function toInt32(t: SafetensorsTensor): Int32Array {
  return int32Of(t, standalone("toInt32"));
}

/** {@linkcode toFloat32} with the caller's errors. */
export function float32Of(t: SafetensorsTensor, fail: ConversionFail): Float32Array {
  const n = checkLength(t, fail);
  switch (t.dtype) {
    case "F32":
      return new Float32Array(...aligned(t.data, 4), n);
    case "F16":
      return Float16
        ? new Float32Array(new Float16(...aligned(t.data, 2), n))
        : fromF16(new Uint16Array(...aligned(t.data, 2), n));
    case "BF16":
      return fromBF16(new Uint16Array(...aligned(t.data, 2), n));
    case "F64":
      return new Float32Array(new Float64Array(...aligned(t.data, 8), n));
    default:
      throw fail(
        `${label(t)} has dtype ${t.dtype}; toFloat32 converts F32, F16, BF16 and F64${hint(t, "toInt32")}`,
        "type",
      );
  }
}

/** {@linkcode toInt32} with the caller's errors. */
export function int32Of(t: SafetensorsTensor, fail: ConversionFail): Int32Array {
  const n = checkLength(t, fail);
  const [buf, at] = aligned(t.data, SAFETENSORS_DTYPE_BYTES[t.dtype]);
  const outOfRange = (i: number, v: bigint | number) =>
    fail(`${label(t)} (${t.dtype}) holds ${v} at index ${i}, outside the int32 range`, "range");
  switch (t.dtype) {
    case "I32":
      return new Int32Array(buf, at, n);
    case "I64":
    case "U64": {
      // Each value is (lo, hi) as i32 words; it fits in i32 iff hi is the sign extension of lo (i64) or 0 (u64).
      const w = new Int32Array(buf, at, 2 * n), out = new Int32Array(n);
      const signed = t.dtype === "I64";
      for (let i = 0; i < n; i++) {
        const lo = w[2 * i], hi = w[2 * i + 1];
        if (hi !== (signed ? lo >> 31 : 0) || (!signed && lo < 0)) {
          const big = signed
            ? BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo >>> 0))
            : (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
          throw outOfRange(i, big);
        }
        out[i] = lo;
      }
      return out;
    }
    case "U32": {
      const u = new Uint32Array(buf, at, n);
      const i = u.findIndex((v) => v > 0x7fffffff);
      if (i >= 0) throw outOfRange(i, u[i]);
      return new Int32Array(u);
    }
    case "I16":
      return Int32Array.from(new Int16Array(buf, at, n));
    case "U16":
      return Int32Array.from(new Uint16Array(buf, at, n));
    case "I8":
      return Int32Array.from(new Int8Array(t.data.buffer, t.data.byteOffset, n));
    case "U8":
    case "BOOL":
      return Int32Array.from(t.data.subarray(0, n));
    default:
      throw fail(
        `${label(t)} has dtype ${t.dtype}; toInt32 converts integer and BOOL dtypes${hint(t, "toFloat32")}`,
        "type",
      );
  }
}

/** Points to the other converter when it handles this dtype. */
function hint(t: SafetensorsTensor, other: "toInt32" | "toFloat32"): string {
  const isInt = /^(I|U)\d+$|^BOOL$/.test(t.dtype), isFloat = /^(F|BF)\d+$/.test(t.dtype);
  return (other === "toInt32" ? isInt : isFloat) ? ` (use ${other})` : "";
}

function label(t: SafetensorsTensor): string {
  return t.name === undefined ? "tensor" : `tensor ${JSON.stringify(t.name)}`;
}

function checkLength(t: SafetensorsTensor, fail: ConversionFail): number {
  const n = numel(t.shape), need = n * SAFETENSORS_DTYPE_BYTES[t.dtype];
  if (t.data.byteLength !== need) {
    throw fail(
      `${label(t)} has ${t.data.byteLength} bytes but dtype ${t.dtype} × shape ${fmtShape(t.shape)} needs ${need}`,
      "type",
    );
  }
  return n;
}

/** `[buffer, byteOffset]` of `data` when it starts at a multiple of `bytes` (read in place), else of an aligned copy. */
function aligned(data: Uint8Array, bytes: number): [ArrayBufferLike, number] {
  return data.byteOffset % bytes === 0 ? [data.buffer, data.byteOffset] : [data.slice().buffer, 0];
}
