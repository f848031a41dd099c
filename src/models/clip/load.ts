/**
 * Loading CLIP towers: SD's text encoder from a diffusers folder (`text_encoder/config.json` +
 * `text_encoder/model[.fp16].safetensors`), or a whole `CLIPModel` (`config.json` + `model.safetensors`, e.g.
 * `openai/clip-vit-large-patch14` for CLIP scores). Names and shapes are all checked before anything is uploaded;
 * the token embedding is uploaded as row shards that each fit one storage binding.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { uploadRowShards } from "../../ops/embedding.ts";
import { checkCheckpoint, checkWeightStorage, storedAsF16, uploadF16, type WeightStorage } from "../checkpoint.ts";
import { type ModelFiles, openFirst, readJson, weightFiles } from "../files.ts";
import { safetensorsSource, type TensorSource } from "../checkpoint.ts";
import { CLIP_IGNORED_TENSORS, clipModelParamShapes, clipTextParamShapes } from "./arch.ts";
import { type ClipConfig, type ClipTextConfig, parseClipConfig, parseClipTextConfig } from "./config.ts";
import { ClipModel } from "./score.ts";
import { ClipTextModel } from "./text.ts";
import { ClipVisionModel } from "./vision.ts";

const TOKEN_EMBEDDING = "text_model.embeddings.token_embedding.weight";

/** Options of {@linkcode loadTextEncoder} and {@linkcode loadClipModel}. */
export interface LoadClipOptions {
  /** Folder inside the model folder (default "text_encoder" for the text encoder, "" for a CLIP model). */
  subfolder?: string;
  /** Prefer `model.<variant>.safetensors` (e.g. "fp16"). */
  variant?: string;
  /** Prefix of the model's hook paths (default "text_encoder" for the text encoder, "clip" for a CLIP model). */
  hookPrefix?: string;
  /** Called after each tensor is uploaded. */
  onProgress?: (done: number, total: number, name: string) => void;
  /** Largest row shard of the token embedding in bytes (default: the device's storage-binding limit). */
  maxShardBytes?: number;
  /** "f16" stores the linear weights as f16 (half the memory; inference only). Default "f32". */
  weights?: WeightStorage;
}

/** The source's shapes without the buffers transformers keeps beside the parameters (`position_ids`). */
function parameterShapes(source: TensorSource): Map<string, readonly number[]> {
  return new Map([...source.shapes].filter(([n]) => !CLIP_IGNORED_TENSORS.has(n)));
}

/** Uploads every expected tensor (the token embedding as row shards); frees what it made when one read fails. */
async function uploadAll(
  ctx: GpuContext,
  source: TensorSource,
  expected: Map<string, number[]>,
  opts: LoadClipOptions,
): Promise<{ params: Map<string, Tensor>; tokenEmbedding: Tensor[] }> {
  const half = checkWeightStorage(ctx, "CLIP", opts.weights) === "f16";
  const params = new Map<string, Tensor>();
  let tokenEmbedding: Tensor[] = [];
  let done = 0;
  try {
    for (const [name, shape] of expected) {
      if (name === TOKEN_EMBEDDING) {
        tokenEmbedding = uploadRowShards(ctx, await source.readF32(name), shape as [number, number], {
          maxShardBytes: opts.maxShardBytes,
          label: name,
        });
      } else if (half && storedAsF16(name, shape)) {
        params.set(name, await uploadF16(ctx, source, name, shape));
      } else {
        params.set(name, ctx.upload(await source.readF32(name), shape, "f32", name));
      }
      opts.onProgress?.(++done, expected.size, name);
    }
  } catch (e) {
    ctx.release(...params.values(), ...tokenEmbedding);
    throw e;
  }
  return { params, tokenEmbedding };
}

/**
 * Builds a text tower from named tensors, after checking every name and shape against the config.
 * `text_projection.weight` is loaded when the source has it (`CLIPTextModelWithProjection`).
 */
export async function textEncoderFromSource(
  ctx: GpuContext,
  config: ClipTextConfig,
  source: TensorSource,
  opts: LoadClipOptions = {},
): Promise<ClipTextModel> {
  const found = parameterShapes(source);
  const expected = clipTextParamShapes(config, { projection: found.has("text_projection.weight") });
  checkCheckpoint("CLIP text encoder", source.name, expected, found);
  const { params, tokenEmbedding } = await uploadAll(ctx, source, expected, opts);
  return new ClipTextModel(ctx, config, params, tokenEmbedding, { hookPrefix: opts.hookPrefix ?? "text_encoder" });
}

function joinPath(sub: string, file: string): string {
  return sub ? `${sub.replace(/\/+$/, "")}/${file}` : file;
}

/**
 * Loads the text encoder of a diffusers folder (SD v1: CLIP ViT-L/14's text tower, 12 layers, QuickGELU; SD 2.x:
 * OpenCLIP ViT-H's, 23 layers, GELU).
 *
 * ```ts ignore
 * const te = await loadTextEncoder(ctx, localModelFiles("./stable-diffusion-v1-4"));
 * ```
 */
export async function loadTextEncoder(
  ctx: GpuContext,
  files: ModelFiles,
  opts: LoadClipOptions = {},
): Promise<ClipTextModel> {
  const sub = opts.subfolder ?? "text_encoder";
  const cfgPath = joinPath(sub, "config.json");
  const config = parseClipTextConfig(await readJson(files, cfgPath), `${files.name}/${cfgPath}`);
  const [st] = await openFirst(files, weightFiles(joinPath(sub, "model"), opts.variant));
  try {
    return await textEncoderFromSource(ctx, config, safetensorsSource(st), opts);
  } finally {
    await st.close();
  }
}

/** Builds a whole CLIP model from named tensors, after checking every name and shape against the config. */
export async function clipModelFromSource(
  ctx: GpuContext,
  config: ClipConfig,
  source: TensorSource,
  opts: LoadClipOptions = {},
): Promise<ClipModel> {
  const expected = clipModelParamShapes(config);
  checkCheckpoint("CLIP model", source.name, expected, parameterShapes(source));
  expected.delete("logit_scale");
  const { params, tokenEmbedding } = await uploadAll(ctx, source, expected, opts);
  const logitScale = (await source.readF32("logit_scale"))[0];
  const part = (test: (n: string) => boolean) => new Map([...params].filter(([n]) => test(n)));
  const hookPrefix = opts.hookPrefix ?? "clip";
  const isText = (n: string) => n.startsWith("text_model.") || n === "text_projection.weight";
  const text = new ClipTextModel(ctx, config.text, part(isText), tokenEmbedding, { hookPrefix });
  const vision = new ClipVisionModel(ctx, config.vision, part((n) => !isText(n)), { hookPrefix });
  return new ClipModel(ctx, config, text, vision, logitScale);
}

/** Loads a transformers `CLIPModel` folder (`config.json` + `model.safetensors`), by default at the folder's root. */
export async function loadClipModel(
  ctx: GpuContext,
  files: ModelFiles,
  opts: LoadClipOptions = {},
): Promise<ClipModel> {
  const sub = opts.subfolder ?? "";
  const cfgPath = joinPath(sub, "config.json");
  const config = parseClipConfig(await readJson(files, cfgPath), `${files.name}/${cfgPath}`);
  const [st] = await openFirst(files, weightFiles(joinPath(sub, "model"), opts.variant));
  try {
    return await clipModelFromSource(ctx, config, safetensorsSource(st), opts);
  } finally {
    await st.close();
  }
}
