/**
 * Loading a VAE from a diffusers folder (`vae/config.json` + `vae/diffusion_pytorch_model[.fp16].safetensors`) or
 * from any named-tensor source. Older SD v1.x VAE checkpoints name the mid-block attention's projections
 * `query`/`key`/`value`/`proj_attn` (sometimes as 1×1 conv weights [C, C, 1, 1]); they are renamed and reshaped
 * to diffusers' current `to_q`/`to_k`/`to_v`/`to_out.0` [C, C] as diffusers does on load. Names and shapes are all
 * checked before anything is uploaded.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import { type ModelFiles, openFirst, readJson, weightFiles } from "../files.ts";
import {
  safetensorsSource,
  type TensorSource,
  uploadChecked,
  type UploadOptions,
  type WeightStorage,
} from "../checkpoint.ts";
import { vaeArch, vaeParamShapes } from "./arch.ts";
import { parseVAEConfig, type VAEConfig } from "./config.ts";
import { AutoencoderKL } from "./model.ts";

/** Options of {@linkcode loadVAE}. */
export interface LoadVAEOptions {
  /** Folder inside the model folder (default "vae"). */
  subfolder?: string;
  /** Prefer `diffusion_pytorch_model.<variant>.safetensors` (e.g. "fp16"). */
  variant?: string;
  /** Called after each tensor is uploaded. */
  onProgress?: (done: number, total: number, name: string) => void;
  /** "f16" stores the conv and attention weights as f16 (half the memory; inference only). Default "f32". */
  weights?: WeightStorage;
}

/** Loads the VAE of a diffusers folder. */
export async function loadVAE(ctx: GpuContext, files: ModelFiles, opts: LoadVAEOptions = {}): Promise<AutoencoderKL> {
  const sub = opts.subfolder ?? "vae";
  const config = parseVAEConfig(await readJson(files, `${sub}/config.json`), `${files.name}/${sub}/config.json`);
  const [st] = await openFirst(files, weightFiles(`${sub}/diffusion_pytorch_model`, opts.variant));
  try {
    return await vaeFromSource(ctx, config, safetensorsSource(st), opts);
  } finally {
    await st.close();
  }
}

const LEGACY_ATTENTION: Record<string, string> = {
  query: "to_q",
  key: "to_k",
  value: "to_v",
  proj_attn: "to_out.0",
};
const ATTENTION_PARAM =
  /^((?:encoder|decoder)\.mid_block\.attentions\.0)\.(query|key|value|proj_attn|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/;

/**
 * The source with the mid-block attention's legacy names mapped to diffusers' current ones and 1×1-conv-shaped
 * projection weights [C, C, 1, 1] seen as [C, C] (same data). A legacy name whose current twin is also present is
 * left alone (and reported as unexpected).
 */
export function withCurrentAttentionNames(source: TensorSource): TensorSource {
  const shapes = new Map<string, readonly number[]>();
  const from = new Map<string, string>();
  for (const [name, shape] of source.shapes) {
    const m = ATTENTION_PARAM.exec(name);
    let target = name, s = shape;
    if (m) {
      const current = `${m[1]}.${LEGACY_ATTENTION[m[2]] ?? m[2]}.${m[3]}`;
      if (current === name || !source.shapes.has(current)) target = current;
      if (m[3] === "weight" && s.length === 4 && s[2] === 1 && s[3] === 1) s = [s[0], s[1]];
    }
    shapes.set(target, s);
    from.set(target, name);
  }
  const read = source.read?.bind(source);
  return {
    name: source.name,
    shapes,
    readF32: (n) => source.readF32(from.get(n) ?? n),
    read: read && (async (n) => ({ ...await read(from.get(n) ?? n), shape: shapes.get(n)! })),
  };
}

/** Builds a VAE from named tensors, after checking every name and shape against the config. */
export async function vaeFromSource(
  ctx: GpuContext,
  config: VAEConfig,
  source: TensorSource,
  opts: UploadOptions = {},
): Promise<AutoencoderKL> {
  const arch = vaeArch(config);
  const expected = vaeParamShapes(arch);
  const src = withCurrentAttentionNames(source);
  const params = await uploadChecked(ctx, "VAE", expected, { ...src, name: source.name }, opts);
  return new AutoencoderKL(ctx, arch, params);
}
