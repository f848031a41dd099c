/**
 * `AutoencoderKL` configuration as diffusers (v0.25) reads `vae/config.json`. Fields a checkpoint omits take
 * diffusers' defaults; values diffscope does not implement are rejected with an error naming the field.
 * @module
 */

/** The resolved VAE configuration. */
export interface VAEConfig {
  /** Image channels (3). */
  inChannels: number;
  /** Decoded image channels (3). */
  outChannels: number;
  /** Channels per resolution level, encoder order (SD: 128, 256, 512, 512). */
  blockOutChannels: number[];
  /** Resnets per encoder block; decoder blocks have one more. */
  layersPerBlock: number;
  /** Latent channels (4); the encoder outputs twice as many (mean and log-variance). */
  latentChannels: number;
  /** Groups of every GroupNorm. */
  normNumGroups: number;
  /** Image size the checkpoint was trained at (informative). */
  sampleSize: number;
  /** Latents fed to the U-Net are `mode · scalingFactor` (SD v1: 0.18215). */
  scalingFactor: number;
}

type Json = Record<string, unknown>;

/** Thrown for a config.json diffscope cannot run. */
export class VAEConfigError extends Error {
  override name = "VAEConfigError";
}

const DEFAULTS: Json = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D"],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
};

/** Fields whose only supported value is diffusers' default (the SD v1/v2 VAE). */
const MUST_EQUAL: Json = {
  act_fn: "silu",
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
  shift_factor: null,
};

/** Parses a diffusers `vae/config.json` object. `source` names the file in errors. */
export function parseVAEConfig(raw: Json, source = "vae/config.json"): VAEConfig {
  const cfg: Json = { ...DEFAULTS, ...raw };
  const fail = (field: string, why: string): never => {
    throw new VAEConfigError(`Unsupported VAE config in ${source}: "${field}" ${why}`);
  };
  if ("_class_name" in raw && raw._class_name !== "AutoencoderKL") {
    fail("_class_name", `is ${JSON.stringify(raw._class_name)}; diffscope supports only "AutoencoderKL"`);
  }
  for (const [field, want] of Object.entries(MUST_EQUAL)) {
    if (field in raw && JSON.stringify(raw[field]) !== JSON.stringify(want)) {
      fail(field, `is ${JSON.stringify(raw[field])}; diffscope supports only ${JSON.stringify(want)}`);
    }
  }
  const int = (field: string, min: number): number => {
    const v = cfg[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      fail(field, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  };
  const boc = cfg.block_out_channels;
  if (!Array.isArray(boc) || boc.length === 0 || boc.some((c) => !Number.isInteger(c) || c < 1)) {
    fail("block_out_channels", `must be a non-empty list of positive integers, got ${JSON.stringify(boc)}`);
  }
  const blockOutChannels = boc as number[];
  const n = blockOutChannels.length;
  const types = (field: string, want: string): void => {
    const v = cfg[field];
    if (!Array.isArray(v) || v.length !== n) fail(field, `must list ${n} block types (one per block_out_channels)`);
    for (const t of v as unknown[]) if (t !== want) fail(field, `contains unsupported ${JSON.stringify(t)}`);
  };
  types("down_block_types", "DownEncoderBlock2D");
  types("up_block_types", "UpDecoderBlock2D");
  const groups = int("norm_num_groups", 1);
  for (const c of blockOutChannels) {
    if (c % groups) fail("norm_num_groups", `(${groups}) must divide every block_out_channels entry (${c})`);
  }
  const scaling = cfg.scaling_factor;
  if (typeof scaling !== "number" || !(scaling > 0) || !Number.isFinite(scaling)) {
    fail("scaling_factor", `must be a positive number, got ${JSON.stringify(scaling)}`);
  }
  return {
    inChannels: int("in_channels", 1),
    outChannels: int("out_channels", 1),
    blockOutChannels,
    layersPerBlock: int("layers_per_block", 1),
    latentChannels: int("latent_channels", 1),
    normNumGroups: groups,
    sampleSize: typeof cfg.sample_size === "number" ? cfg.sample_size : 32,
    scalingFactor: scaling as number,
  };
}
