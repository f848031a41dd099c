/**
 * CLIP's parameters and hook points as data, derived from the config the way transformers' `CLIPTextModel`,
 * `CLIPVisionModel` and `CLIPModel` build their modules. Loaders check checkpoints against these lists and the
 * models read their weights by the same names, so the two cannot drift.
 * @module
 */
import type { ClipConfig, ClipEncoderConfig, ClipTextConfig, ClipVisionConfig } from "./config.ts";

type Shapes = Map<string, number[]>;

function linear(m: Shapes, path: string, inF: number, outF: number, bias = true): void {
  m.set(`${path}.weight`, [outF, inF]);
  if (bias) m.set(`${path}.bias`, [outF]);
}

function norm(m: Shapes, path: string, d: number): void {
  m.set(`${path}.weight`, [d]);
  m.set(`${path}.bias`, [d]);
}

/** `<prefix>.encoder.layers.N`: pre-LN self-attention and MLP blocks, every Linear with a bias. */
function encoderParams(m: Shapes, prefix: string, cfg: ClipEncoderConfig): void {
  const d = cfg.hiddenSize;
  for (let l = 0; l < cfg.numHiddenLayers; l++) {
    const p = `${prefix}.encoder.layers.${l}`;
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) linear(m, `${p}.self_attn.${proj}`, d, d);
    norm(m, `${p}.layer_norm1`, d);
    linear(m, `${p}.mlp.fc1`, d, cfg.intermediateSize);
    linear(m, `${p}.mlp.fc2`, cfg.intermediateSize, d);
    norm(m, `${p}.layer_norm2`, d);
  }
}

/**
 * Every parameter of a `CLIPTextModel` (`text_model.*`), plus `text_projection.weight` [projection_dim, D] with
 * `projection: true` (`CLIPTextModelWithProjection`, `CLIPModel`).
 */
export function clipTextParamShapes(cfg: ClipTextConfig, opts: { projection?: boolean } = {}): Map<string, number[]> {
  const m: Shapes = new Map();
  const d = cfg.hiddenSize;
  m.set("text_model.embeddings.token_embedding.weight", [cfg.vocabSize, d]);
  m.set("text_model.embeddings.position_embedding.weight", [cfg.maxPositionEmbeddings, d]);
  encoderParams(m, "text_model", cfg);
  norm(m, "text_model.final_layer_norm", d);
  if (opts.projection) linear(m, "text_projection", d, cfg.projectionDim, false);
  return m;
}

/** Patches per image side and in all, for a vision config. */
export function patchGrid(cfg: ClipVisionConfig): { side: number; patches: number } {
  const side = cfg.imageSize / cfg.patchSize;
  return { side, patches: side * side };
}

/**
 * Every parameter of a `CLIPVisionModel` (`vision_model.*`), plus `visual_projection.weight` with `projectionDim`
 * (`CLIPVisionModelWithProjection`, `CLIPModel`).
 */
export function clipVisionParamShapes(
  cfg: ClipVisionConfig,
  opts: { projectionDim?: number } = {},
): Map<string, number[]> {
  const m: Shapes = new Map();
  const d = cfg.hiddenSize, p = cfg.patchSize;
  m.set("vision_model.embeddings.class_embedding", [d]);
  m.set("vision_model.embeddings.patch_embedding.weight", [d, cfg.numChannels, p, p]);
  m.set("vision_model.embeddings.position_embedding.weight", [patchGrid(cfg).patches + 1, d]);
  norm(m, "vision_model.pre_layrnorm", d); // sic: transformers' spelling
  encoderParams(m, "vision_model", cfg);
  norm(m, "vision_model.post_layernorm", d);
  if (opts.projectionDim) linear(m, "visual_projection", d, opts.projectionDim, false);
  return m;
}

/** Every parameter of a `CLIPModel`: both towers, both projections and the scalar `logit_scale`. */
export function clipModelParamShapes(cfg: ClipConfig): Map<string, number[]> {
  return new Map([
    ...clipTextParamShapes(cfg.text, { projection: true }),
    ...clipVisionParamShapes(cfg.vision, { projectionDim: cfg.projectionDim }),
    ["logit_scale", []],
  ]);
}

/**
 * Tensors some checkpoints carry that are not parameters: transformers' `position_ids` buffers (I64 `arange`),
 * accepted and ignored by the loaders.
 */
export const CLIP_IGNORED_TENSORS: ReadonlySet<string> = new Set([
  "text_model.embeddings.position_ids",
  "vision_model.embeddings.position_ids",
]);

/** The module outputs inside `<prefix>.encoder`: each layer, its norms, attention (and projections) and MLP. */
function encoderHookPoints(s: Set<string>, prefix: string, layers: number): void {
  s.add(`${prefix}.encoder`);
  for (let l = 0; l < layers; l++) {
    const p = `${prefix}.encoder.layers.${l}`;
    for (
      const n of [
        "",
        ".layer_norm1",
        ".self_attn",
        ".self_attn.q_proj",
        ".self_attn.k_proj",
        ".self_attn.v_proj",
        ".self_attn.out_proj",
        ".layer_norm2",
        ".mlp",
        ".mlp.fc1",
        ".mlp.activation_fn",
        ".mlp.fc2",
      ]
    ) {
      s.add(p + n);
    }
  }
}

/** Every hook point of a text tower (paths without the model prefix, e.g. `text_model.encoder.layers.3.mlp`). */
export function clipTextHookPoints(cfg: ClipTextConfig, opts: { projection?: boolean } = {}): Set<string> {
  const s = new Set(["text_model.embeddings", "text_model.embeddings.token_embedding", "text_model.final_layer_norm"]);
  encoderHookPoints(s, "text_model", cfg.numHiddenLayers);
  if (opts.projection) s.add("text_projection");
  return s;
}

/** Every hook point of a vision tower (`vision_model.…`, and `visual_projection` with a projection). */
export function clipVisionHookPoints(cfg: ClipVisionConfig, opts: { projection?: boolean } = {}): Set<string> {
  const s = new Set(["vision_model.embeddings", "vision_model.pre_layrnorm", "vision_model.post_layernorm"]);
  encoderHookPoints(s, "vision_model", cfg.numHiddenLayers);
  if (opts.projection) s.add("visual_projection");
  return s;
}
