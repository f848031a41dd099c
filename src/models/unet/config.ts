/**
 * `UNet2DConditionModel` configuration as diffusers reads `unet/config.json`, restricted to what SD v1.x and
 * v2.x checkpoints use. Fields a checkpoint omits take diffusers' defaults; values we do not implement are
 * rejected with an error naming the field.
 * @module
 */

/** The resolved U-Net configuration. */
export interface UNetConfig {
  sampleSize: number;
  inChannels: number;
  outChannels: number;
  centerInputSample: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: ("CrossAttnDownBlock2D" | "DownBlock2D")[];
  upBlockTypes: ("CrossAttnUpBlock2D" | "UpBlock2D")[];
  blockOutChannels: number[];
  layersPerBlock: number;
  downsamplePadding: number;
  midBlockScaleFactor: number;
  normNumGroups: number;
  normEps: number;
  crossAttentionDim: number;
  /** Transformer blocks per Transformer2DModel, per down block (up blocks use it reversed). */
  transformerLayersPerBlock: number[];
  /** Attention heads per down block, resolved the way diffusers does (see {@linkcode parseUNetConfig}). */
  numAttentionHeads: number[];
  useLinearProjection: boolean;
  upcastAttention: boolean;
}

type Json = Record<string, unknown>;

/** Thrown for a config.json diffscope cannot run. */
export class UNetConfigError extends Error {
  override name = "UNetConfigError";
}

const DEFAULTS: Json = {
  sample_size: null,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  only_cross_attention: false,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  act_fn: "silu",
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  attention_head_dim: 8,
  num_attention_heads: null,
  use_linear_projection: false,
  upcast_attention: false,
};

/** Fields whose only supported value is their default (diffusers' value for SD v1/v2). */
const MUST_EQUAL: Json = {
  mid_block_type: "UNetMidBlock2DCrossAttn",
  only_cross_attention: false,
  act_fn: "silu",
  dual_cross_attention: false,
  class_embed_type: null,
  addition_embed_type: null,
  num_class_embeds: null,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  resnet_time_scale_shift: "default",
  resnet_skip_time_act: false,
  resnet_out_scale_factor: 1,
  time_embedding_type: "positional",
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  time_cond_proj_dim: null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  attention_type: "default",
  cross_attention_norm: null,
  mid_block_only_cross_attention: null,
  reverse_transformer_layers_per_block: null,
  class_embeddings_concat: false,
};

/**
 * Parses a diffusers `unet/config.json` object. `source` names the file in errors.
 *
 * Heads: diffusers (≤ 0.25 and since) reads an int `attention_head_dim` with no `num_attention_heads` as the number
 * of heads (a historical misnaming kept for compatibility): SD v1's `attention_head_dim: 8` means 8 heads of
 * C/8 channels, and SD v2's `[5, 10, 20, 20]` means 5…20 heads of 64.
 */
export function parseUNetConfig(raw: Json, source = "unet/config.json"): UNetConfig {
  const cfg: Json = { ...DEFAULTS, ...raw };
  const fail = (field: string, why: string): never => {
    throw new UNetConfigError(`Unsupported U-Net config in ${source}: "${field}" ${why}`);
  };
  for (const [field, want] of Object.entries(MUST_EQUAL)) {
    if (!(field in raw)) continue;
    const got = raw[field];
    if (JSON.stringify(got) !== JSON.stringify(want) && !(want === 1 && got === 1.0)) {
      fail(field, `is ${JSON.stringify(got)}; diffscope supports only ${JSON.stringify(want)}`);
    }
  }
  const int = (field: string, min = 0): number => {
    const v = cfg[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      fail(field, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const num = (field: string): number => {
    const v = cfg[field];
    if (typeof v !== "number" || !Number.isFinite(v)) fail(field, `must be a number, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const bool = (field: string): boolean => {
    const v = cfg[field];
    if (typeof v !== "boolean") fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  };
  const intList = (field: string): number[] => {
    const v = cfg[field];
    if (!Array.isArray(v) || v.some((x) => !Number.isInteger(x) || x < 1)) {
      fail(field, `must be a list of positive integers, got ${JSON.stringify(v)}`);
    }
    return v as number[];
  };
  const blockOutChannels = intList("block_out_channels");
  const nBlocks = blockOutChannels.length;
  const perBlock = (field: string): number[] => {
    const v = cfg[field];
    if (typeof v === "number") {
      if (!Number.isInteger(v) || v < 1) fail(field, `must be a positive integer, got ${v}`);
      return new Array(nBlocks).fill(v);
    }
    const list = intList(field);
    if (list.length !== nBlocks) fail(field, `has ${list.length} entries; block_out_channels has ${nBlocks}`);
    return list;
  };
  const down = cfg.down_block_types as string[];
  const up = cfg.up_block_types as string[];
  if (!Array.isArray(down) || down.length !== nBlocks) fail("down_block_types", `must list ${nBlocks} block types`);
  if (!Array.isArray(up) || up.length !== nBlocks) fail("up_block_types", `must list ${nBlocks} block types`);
  for (const t of down) {
    if (t !== "CrossAttnDownBlock2D" && t !== "DownBlock2D") fail("down_block_types", `contains unsupported "${t}"`);
  }
  for (const t of up) {
    if (t !== "CrossAttnUpBlock2D" && t !== "UpBlock2D") fail("up_block_types", `contains unsupported "${t}"`);
  }

  const numAttentionHeads = perBlock(cfg.num_attention_heads != null ? "num_attention_heads" : "attention_head_dim");
  const groups = int("norm_num_groups", 1);
  for (const c of blockOutChannels) {
    if (c % groups) fail("norm_num_groups", `(${groups}) must divide every block_out_channels entry (${c})`);
  }
  blockOutChannels.forEach((c, i) => {
    if (c % numAttentionHeads[i]) {
      fail(
        "attention_head_dim",
        `gives ${numAttentionHeads[i]} heads, which do not divide ${c} channels of block ${i}`,
      );
    }
  });
  const crossDim = cfg.cross_attention_dim;
  if (typeof crossDim !== "number") {
    fail(
      "cross_attention_dim",
      `must be an integer (per-block lists are not supported), got ${JSON.stringify(crossDim)}`,
    );
  }
  return {
    sampleSize: typeof cfg.sample_size === "number" ? cfg.sample_size : 64,
    inChannels: int("in_channels", 1),
    outChannels: int("out_channels", 1),
    centerInputSample: bool("center_input_sample"),
    flipSinToCos: bool("flip_sin_to_cos"),
    freqShift: num("freq_shift"),
    downBlockTypes: down as UNetConfig["downBlockTypes"],
    upBlockTypes: up as UNetConfig["upBlockTypes"],
    blockOutChannels,
    layersPerBlock: int("layers_per_block", 1),
    downsamplePadding: int("downsample_padding"),
    midBlockScaleFactor: num("mid_block_scale_factor"),
    normNumGroups: groups,
    normEps: num("norm_eps"),
    crossAttentionDim: int("cross_attention_dim", 1),
    transformerLayersPerBlock: perBlock("transformer_layers_per_block"),
    numAttentionHeads,
    useLinearProjection: bool("use_linear_projection"),
    upcastAttention: bool("upcast_attention"),
  };
}
