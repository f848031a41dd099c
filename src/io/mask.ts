/**
 * Region masks from PNG files (Deno edge): one value in [0, 1] per pixel, for steering regions, layout IoU and
 * feature labels. The PNG is decoded on the host; the conversion to a mask runs on the GPU (kernels/from_rgba8.wgsl):
 * the alpha channel when some pixel is not opaque (a cut-out), else the luminance (white = inside).
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { maskFromRgba8, type MaskMode } from "../ops/from_rgba8.ts";
import { type DecodedImage, readPng } from "./png.ts";

export type { MaskMode };

/** A mask image on the host: [height, width] row-major, values in [0, 1]. */
export interface MaskImage {
  data: Float32Array;
  width: number;
  height: number;
}

/** Prefixes `name` to an error's message unless it already names it. */
function naming(name: string, e: unknown): Error {
  const msg = (e as Error)?.message ?? String(e);
  return msg.includes(name) ? e as Error : new Error(`${name}: ${msg}`, { cause: e });
}

/**
 * The mask of a decoded image as a GPU tensor f32 [height, width] in [0, 1] (`mode` default "auto": alpha when some
 * pixel is not opaque, else Rec. 601 luminance), persisted: the caller releases it. Errors name `name`.
 */
export async function maskFromImage(
  ctx: GpuContext,
  img: DecodedImage,
  name: string,
  opts: { mode?: MaskMode } = {},
): Promise<Tensor> {
  const { pixels, width, height } = img;
  let px: Tensor | undefined, out: Tensor | undefined;
  try {
    if (!(width > 0 && height > 0) || pixels.length !== width * height) {
      throw new RangeError(`mask image ${width}×${height} has ${pixels.length} pixels`);
    }
    px = ctx.upload(pixels, [height, width], "u32", name);
    const rec = ctx.recorder(`mask ${name}`);
    out = ctx.persist(maskFromRgba8(rec, px, { mode: opts.mode }));
    await rec.submit();
    return out;
  } catch (e) {
    ctx.release(out);
    throw naming(name, e);
  } finally {
    ctx.release(px);
  }
}

/**
 * Reads a PNG mask straight to the GPU: f32 [height, width] in [0, 1] (see {@linkcode maskFromImage}), persisted (the
 * caller releases it). Errors name the path.
 */
export async function readMask(ctx: GpuContext, path: string, opts: { mode?: MaskMode } = {}): Promise<Tensor> {
  return await maskFromImage(ctx, await readPng(path), path, opts);
}

/**
 * Reads a PNG mask to the host ({@linkcode MaskImage}): the conversion runs on the GPU and only the mask is read
 * back. Errors name the path.
 */
export async function readMaskPng(ctx: GpuContext, path: string): Promise<MaskImage> {
  const img = await readPng(path);
  const { width, height } = img;
  const t = await maskFromImage(ctx, img, path);
  try {
    return { data: await ctx.readF32(t), width, height };
  } catch (e) {
    throw naming(path, e);
  } finally {
    ctx.release(t);
  }
}
