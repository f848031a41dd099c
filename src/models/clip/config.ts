/**
 * CLIP configurations as Hugging Face `transformers` reads them: `CLIPTextConfig` (SD's `text_encoder/config.json`),
 * `CLIPVisionConfig`, and `CLIPConfig` (a whole CLIP model: `text_config`, `vision_config`, `projection_dim`).
 * Fields a file omits take transformers' defaults; values diffscope does not implement are rejected with an error
 * naming the field.
 * @module
 */

/** Activations CLIP checkpoints use: QuickGELU (OpenAI CLIP, SD v1) or exact GELU (OpenCLIP ViT-H, SD 2.x). */
export type ClipActivation = "quick_gelu" | "gelu";

/** What the text and vision towers share: a stack of pre-LN transformer layers. */
export interface ClipEncoderConfig {
  /** Width D of the residual stream. */
  hiddenSize: number;
  /** Width of the MLP's hidden layer (`fc1` output). */
  intermediateSize: number;
  numAttentionHeads: number;
  numHiddenLayers: number;
  /** `hidden_act`, applied between `fc1` and `fc2`. */
  hiddenAct: ClipActivation;
  layerNormEps: number;
}

/** `CLIPTextConfig`. */
export interface ClipTextConfig extends ClipEncoderConfig {
  vocabSize: number;
  /** Rows of the position embedding: the longest token sequence (77). */
  maxPositionEmbeddings: number;
  /** Output width of `text_projection` when a checkpoint has one. */
  projectionDim: number;
  /**
   * `eos_token_id`. transformers pools at the argmax of the ids when it is the legacy value 2 (as openai/CLIP does),
   * and at the first occurrence of this id otherwise; both give the first 49407 with CLIP's tokenizer.
   */
  eosTokenId: number;
}

/** `CLIPVisionConfig`. */
export interface ClipVisionConfig extends ClipEncoderConfig {
  /** Side of the square input image (224 for ViT-L/14). */
  imageSize: number;
  /** Side of a square patch (14 for ViT-L/14). */
  patchSize: number;
  numChannels: number;
}

/** `CLIPConfig`: both towers and the width of the shared embedding space. */
export interface ClipConfig {
  text: ClipTextConfig;
  vision: ClipVisionConfig;
  /** Width of `text_embeds` and `image_embeds`. */
  projectionDim: number;
}

type Json = Record<string, unknown>;

/** Thrown for a config.json diffscope cannot run. */
export class ClipConfigError extends Error {
  override name = "ClipConfigError";
}

/** transformers' `CLIPTextConfig` defaults. */
const TEXT_DEFAULTS: Json = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  eos_token_id: 2,
};

/** transformers' `CLIPVisionConfig` defaults. */
const VISION_DEFAULTS: Json = {
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
};

/** Reads typed fields of one JSON object; every error names the field and the file. */
function fieldReader(raw: Json, defaults: Json, what: string, source: string) {
  const cfg: Json = { ...defaults, ...raw };
  const fail = (field: string, why: string): never => {
    throw new ClipConfigError(`Unsupported ${what} config in ${source}: "${field}" ${why}`);
  };
  const int = (field: string, min = 1): number => {
    const v = cfg[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      fail(field, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const positive = (field: string): number => {
    const v = cfg[field];
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) {
      fail(field, `must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const encoder = (): ClipEncoderConfig => {
    const act = cfg.hidden_act;
    if (act !== "quick_gelu" && act !== "gelu") {
      fail("hidden_act", `is ${JSON.stringify(act)}; diffscope supports "quick_gelu" and "gelu" (exact)`);
    }
    const hiddenSize = int("hidden_size"), heads = int("num_attention_heads");
    if (hiddenSize % heads) fail("num_attention_heads", `(${heads}) must divide hidden_size (${hiddenSize})`);
    return {
      hiddenSize,
      intermediateSize: int("intermediate_size"),
      numAttentionHeads: heads,
      numHiddenLayers: int("num_hidden_layers"),
      hiddenAct: act as ClipActivation,
      layerNormEps: positive("layer_norm_eps"),
    };
  };
  return { cfg, fail, int, encoder };
}

/**
 * Parses a `CLIPTextConfig` (a diffusers `text_encoder/config.json`, or the `text_config` of a `CLIPConfig`).
 * `source` names the file in errors.
 */
export function parseClipTextConfig(raw: Json, source = "text_encoder/config.json"): ClipTextConfig {
  const r = fieldReader(raw, TEXT_DEFAULTS, "CLIP text", source);
  const enc = r.encoder();
  const eos = r.cfg.eos_token_id;
  if (typeof eos !== "number" || !Number.isInteger(eos) || eos < 0) {
    r.fail("eos_token_id", `must be an integer ≥ 0, got ${JSON.stringify(eos)}`);
  }
  return {
    ...enc,
    vocabSize: r.int("vocab_size"),
    maxPositionEmbeddings: r.int("max_position_embeddings"),
    projectionDim: r.int("projection_dim"),
    eosTokenId: eos as number,
  };
}

/** Parses a `CLIPVisionConfig` (the `vision_config` of a `CLIPConfig`). `source` names the file in errors. */
export function parseClipVisionConfig(raw: Json, source = "config.json"): ClipVisionConfig {
  const r = fieldReader(raw, VISION_DEFAULTS, "CLIP vision", source);
  const enc = r.encoder();
  const imageSize = r.int("image_size"), patchSize = r.int("patch_size");
  if (imageSize % patchSize) r.fail("patch_size", `(${patchSize}) must divide image_size (${imageSize})`);
  return { ...enc, imageSize, patchSize, numChannels: r.int("num_channels") };
}

/**
 * Parses a `CLIPConfig` (the `config.json` of e.g. `openai/clip-vit-large-patch14`): its `text_config` and
 * `vision_config` objects (transformers' defaults where absent) and the shared `projection_dim` (default 512),
 * which overrides the towers' own.
 */
export function parseClipConfig(raw: Json, source = "config.json"): ClipConfig {
  const sub = (field: string): Json => {
    const v = raw[field] ?? {};
    if (typeof v !== "object" || Array.isArray(v) || v === null) {
      throw new ClipConfigError(`Unsupported CLIP config in ${source}: "${field}" must be an object`);
    }
    return v as Json;
  };
  const pd = raw.projection_dim ?? 512;
  if (typeof pd !== "number" || !Number.isInteger(pd) || pd < 1) {
    throw new ClipConfigError(
      `Unsupported CLIP config in ${source}: "projection_dim" must be an integer ≥ 1, got ${JSON.stringify(pd)}`,
    );
  }
  const text = parseClipTextConfig({ ...sub("text_config"), projection_dim: pd }, `${source} (text_config)`);
  const vision = parseClipVisionConfig(sub("vision_config"), `${source} (vision_config)`);
  return { text, vision, projectionDim: pd };
}
