/**
 * Loading a U-Net from a diffusers folder (`unet/config.json` + `unet/diffusion_pytorch_model[.fp16].safetensors`)
 * or from any named-tensor source. Names and shapes are all checked before anything is uploaded.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import {
  safetensorsSource,
  type TensorSource,
  uploadChecked,
  type UploadOptions,
  type WeightStorage,
} from "../checkpoint.ts";
export { safetensorsSource, type TensorSource, type UploadOptions, type WeightStorage };
import { type ModelFiles, openFirst, readJson, weightFiles } from "../files.ts";
import { unetArch, unetParamShapes } from "./arch.ts";
import { parseUNetConfig, type UNetConfig } from "./config.ts";
import { UNet2DConditionModel } from "./model.ts";

/** Options of {@linkcode loadUNet}. */
export interface LoadUNetOptions {
  /** Folder inside the model folder (default "unet"). */
  subfolder?: string;
  /** Prefer `diffusion_pytorch_model.<variant>.safetensors` (e.g. "fp16"). */
  variant?: string;
  /** Called after each tensor is uploaded. */
  onProgress?: (done: number, total: number, name: string) => void;
  /** "f16" stores the linear and conv weights as f16 (half the memory; inference only). Default "f32". */
  weights?: WeightStorage;
}

/** Loads the U-Net of a diffusers folder. */
export async function loadUNet(
  ctx: GpuContext,
  files: ModelFiles,
  opts: LoadUNetOptions = {},
): Promise<UNet2DConditionModel> {
  const sub = opts.subfolder ?? "unet";
  const config = parseUNetConfig(await readJson(files, `${sub}/config.json`), `${files.name}/${sub}/config.json`);
  const [st] = await openFirst(files, weightFiles(`${sub}/diffusion_pytorch_model`, opts.variant));
  try {
    return await unetFromSource(ctx, config, safetensorsSource(st), opts);
  } finally {
    await st.close();
  }
}

/** Builds a U-Net from named tensors, after checking every name and shape against the config. */
export async function unetFromSource(
  ctx: GpuContext,
  config: UNetConfig,
  source: TensorSource,
  opts: UploadOptions = {},
): Promise<UNet2DConditionModel> {
  const arch = unetArch(config);
  const params = await uploadChecked(ctx, "U-Net", unetParamShapes(arch), source, opts);
  return new UNet2DConditionModel(ctx, arch, params);
}
