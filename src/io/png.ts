/**
 * PNG images (fast-png): generated images written atomically, and user images and masks read as RGBA8.
 * @module
 */
import { decode, encode } from "fast-png";
import { writeFileAtomic } from "./files.ts";

/** Encodes packed RGBA8 pixels (u32 each, R in the low byte) of one H×W image as PNG bytes. */
export function encodePng(pixels: Uint32Array, width: number, height: number): Uint8Array {
  if (pixels.length !== width * height) {
    throw new RangeError(`encodePng: ${pixels.length} pixels for ${width}×${height}`);
  }
  const rgba = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength); // little-endian: R G B A
  return encode({ width, height, data: rgba, channels: 4, depth: 8 });
}

/** Writes one PNG atomically. */
export async function writePng(path: string, pixels: Uint32Array, width: number, height: number): Promise<void> {
  await writeFileAtomic(path, encodePng(pixels, width, height));
}

/** A decoded image: packed RGBA8 pixels (u32 each, R in the low byte), row-major. */
export interface DecodedImage {
  pixels: Uint32Array;
  width: number;
  height: number;
}

/**
 * Decodes PNG bytes to RGBA8 (grey, grey+alpha and RGB are expanded; 16-bit samples keep their high byte; palette
 * images are expanded by fast-png). `name` is used in errors.
 */
export function decodePng(bytes: Uint8Array, name = "PNG"): DecodedImage {
  let img;
  try {
    img = decode(bytes);
  } catch (e) {
    throw new TypeError(`${name} is not a readable PNG: ${(e as Error).message}`);
  }
  const { width, height } = img;
  const n = width * height;
  let ch = img.channels;
  let data = img.data as Uint8Array | Uint16Array;
  if (img.palette) {
    const pal = img.palette, idx = data;
    const out = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) {
      const p = pal[idx[i]] ?? [0, 0, 0, 255];
      out[4 * i] = p[0], out[4 * i + 1] = p[1], out[4 * i + 2] = p[2], out[4 * i + 3] = p[3] ?? 255;
    }
    data = out, ch = 4;
  }
  const shift = img.depth === 16 ? 8 : 0;
  const pixels = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const s = (c: number) => data[i * ch + c] >> shift;
    const [r, g, b] = ch >= 3 ? [s(0), s(1), s(2)] : [s(0), s(0), s(0)];
    const a = ch === 4 ? s(3) : ch === 2 ? s(1) : 255;
    pixels[i] = (r | (g << 8) | (b << 16) | (a << 24)) >>> 0;
  }
  return { pixels, width, height };
}

/** Reads and decodes a PNG file; every failure (a missing file as much as a broken one) names the path. */
export async function readPng(path: string): Promise<DecodedImage> {
  let bytes;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`, { cause: e });
  }
  return decodePng(bytes, path);
}
