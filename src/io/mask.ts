/**
 * Region masks from PNG files (Deno edge): one value in [0, 1] per pixel, for steering regions and layout IoU.
 * @module
 */
import { type DecodedImage, readPng } from "./png.ts";

/** A mask image on the host: [height, width] row-major, values in [0, 1]. */
export interface MaskImage {
  data: Float32Array;
  width: number;
  height: number;
}

/**
 * The mask of a decoded image: its alpha channel when some pixel is not opaque (a cut-out), else its luminance
 * (Rec. 601: 0.299 R + 0.587 G + 0.114 B), scaled to [0, 1]: white (or opaque) = inside.
 */
export function maskFromImage(img: DecodedImage): MaskImage {
  const { pixels, width, height } = img;
  const data = new Float32Array(width * height);
  const useAlpha = pixels.some((p) => p >>> 24 !== 255);
  for (let i = 0; i < data.length; i++) {
    const p = pixels[i];
    data[i] = useAlpha
      ? (p >>> 24) / 255
      : (0.299 * (p & 255) + 0.587 * ((p >>> 8) & 255) + 0.114 * ((p >>> 16) & 255)) / 255;
  }
  return { data, width, height };
}

/** Reads a PNG mask (see {@linkcode maskFromImage}); errors name the path. */
export async function readMaskPng(path: string): Promise<MaskImage> {
  return maskFromImage(await readPng(path));
}
