/**
 * A tensor is a GPU buffer with a shape and a dtype, nothing more (as in gpu.cpp). Strides are always
 * contiguous row-major; ops that need another layout say so in their options.
 * @module
 */

/** Element types a tensor can hold on the GPU. */
export type DType = "f32" | "f16" | "i32" | "u32";

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, f16: 2, i32: 4, u32: 4 };

/** A contiguous, row-major tensor living in one GPU buffer. */
export interface Tensor {
  readonly buffer: GPUBuffer;
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Where in `buffer` the first element sits, in bytes (views into a shared buffer). */
  readonly offset: number;
  readonly label: string;
}

/** Number of elements of a shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes the tensor's elements occupy (without padding). */
export function byteLength(t: Pick<Tensor, "shape" | "dtype">): number {
  return numel(t.shape) * DTYPE_BYTES[t.dtype];
}

/** `[2,3,4]` as text, for error messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

/** Throws a TypeError naming both shapes unless they are equal. */
export function assertShape(what: string, got: readonly number[], want: readonly number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new TypeError(`${what}: shape ${fmtShape(got)} does not match expected ${fmtShape(want)}`);
  }
}

/** Throws a TypeError unless the shape is a list of non-negative integers. */
export function checkShape(what: string, shape: readonly number[]): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new TypeError(`${what}: invalid shape ${JSON.stringify(shape)}`);
  }
}

// ---- f16 <-> f32 conversion on the CPU (uploads and readbacks only; never model math) ----

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** Rounds one f32 to the nearest f16 bit pattern (round-to-nearest-even, with subnormals and inf/NaN). */
export function f32ToF16Bits(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h; // a rounding carry into the exponent lands on the next binade, or on inf
}

/** Expands one f16 bit pattern to a number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Converts f32 values to packed f16 bits. */
export function toF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
  return out;
}

/** Converts packed f16 bits to f32 values. */
export function fromF16(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16BitsToF32(src[i]);
  return out;
}

/** bfloat16 bits to f32 (the upper half of an f32). */
export function fromBF16(src: Uint16Array): Float32Array {
  const u = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) u[i] = src[i] << 16;
  return new Float32Array(u.buffer);
}

/** The same buffer seen with another shape of equal element count (no copy). */
export function reshape(t: Tensor, shape: readonly number[]): Tensor {
  if (numel(shape) !== numel(t.shape)) {
    throw new TypeError(`reshape "${t.label}": ${fmtShape(t.shape)} cannot become ${fmtShape(shape)}`);
  }
  return { ...t, shape: [...shape] };
}
