/**
 * PNG output for generated images (fast-png's encoder), written atomically.
 * @module
 */
import { encode } from "fast-png";
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
