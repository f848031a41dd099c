/**
 * The VAE's architecture as data: every module with its diffusers path and sizes, derived from the config the way
 * diffusers' `AutoencoderKL`, `Encoder` and `Decoder` (v0.25) derive them. The loader checks checkpoints against
 * {@linkcode vaeParamShapes} and the model runs the same description, so the two cannot drift.
 * @module
 */
import type { VAEConfig } from "./config.ts";

/** Every VAE GroupNorm (resnets, attention, conv_norm_out) uses this eps. */
export const VAE_NORM_EPS = 1e-6;

/** A convolution: `path.weight` [out, in, k, k], `path.bias` [out]. */
export interface ConvArch {
  path: string;
  inChannels: number;
  outChannels: number;
  kernel: 1 | 3;
}

/** `ResnetBlock2D` without a time embedding: GN → SiLU → conv1 → GN → SiLU → conv2, plus a 1×1 shortcut if needed. */
export interface VAEResnetArch {
  path: string;
  inChannels: number;
  outChannels: number;
  groups: number;
}

/** The mid block's `Attention`: one head over all channels, GroupNorm first, biased projections, residual. */
export interface VAEAttentionArch {
  path: string;
  channels: number;
  groups: number;
}

/** `UNetMidBlock2D`: resnet, attention, resnet. */
export interface VAEMidArch {
  path: string;
  resnets: [VAEResnetArch, VAEResnetArch];
  attention: VAEAttentionArch;
}

/** `DownEncoderBlock2D`: resnets, then (except last) a 3×3 stride-2 conv after padding right and bottom by one. */
export interface EncoderBlockArch {
  path: string;
  resnets: VAEResnetArch[];
  downsample: { path: string; channels: number } | null;
}

/** `UpDecoderBlock2D`: resnets, then (except last) nearest 2× upsampling and a 3×3 conv. */
export interface DecoderBlockArch {
  path: string;
  resnets: VAEResnetArch[];
  upsample: { path: string; channels: number } | null;
}

/** `Encoder` (double_z) or `Decoder`. */
export interface CoderArch<Block> {
  path: "encoder" | "decoder";
  convIn: ConvArch;
  blocks: Block[];
  mid: VAEMidArch;
  normOut: { path: string; channels: number; groups: number };
  convOut: ConvArch;
}

/** The whole `AutoencoderKL`. */
export interface VAEArch {
  config: VAEConfig;
  encoder: CoderArch<EncoderBlockArch>;
  /** 1×1 conv on the encoder's 2·latent moments. */
  quantConv: ConvArch;
  /** 1×1 conv on the latents before the decoder. */
  postQuantConv: ConvArch;
  decoder: CoderArch<DecoderBlockArch>;
}

/** Derives every module's sizes from the config. */
export function vaeArch(cfg: VAEConfig): VAEArch {
  const boc = cfg.blockOutChannels, groups = cfg.normNumGroups, L = cfg.latentChannels;
  const last = boc[boc.length - 1];
  const conv = (path: string, inChannels: number, outChannels: number, kernel: 1 | 3 = 3): ConvArch => ({
    path,
    inChannels,
    outChannels,
    kernel,
  });
  const resnet = (path: string, inChannels: number, outChannels: number): VAEResnetArch => ({
    path,
    inChannels,
    outChannels,
    groups,
  });
  const mid = (p: string): VAEMidArch => ({
    path: `${p}.mid_block`,
    resnets: [resnet(`${p}.mid_block.resnets.0`, last, last), resnet(`${p}.mid_block.resnets.1`, last, last)],
    attention: { path: `${p}.mid_block.attentions.0`, channels: last, groups },
  });

  const down: EncoderBlockArch[] = [];
  let outC = boc[0];
  boc.forEach((c, i) => {
    const inC = outC;
    outC = c;
    const path = `encoder.down_blocks.${i}`;
    down.push({
      path,
      resnets: Array.from({ length: cfg.layersPerBlock }, (_, j) => resnet(`${path}.resnets.${j}`, j ? c : inC, c)),
      downsample: i === boc.length - 1 ? null : { path: `${path}.downsamplers.0`, channels: c },
    });
  });
  const rboc = [...boc].reverse();
  const up: DecoderBlockArch[] = [];
  outC = rboc[0];
  rboc.forEach((c, i) => {
    const inC = outC;
    outC = c;
    const path = `decoder.up_blocks.${i}`;
    up.push({
      path,
      resnets: Array.from({ length: cfg.layersPerBlock + 1 }, (_, j) => resnet(`${path}.resnets.${j}`, j ? c : inC, c)),
      upsample: i === boc.length - 1 ? null : { path: `${path}.upsamplers.0`, channels: c },
    });
  });
  return {
    config: cfg,
    encoder: {
      path: "encoder",
      convIn: conv("encoder.conv_in", cfg.inChannels, boc[0]),
      blocks: down,
      mid: mid("encoder"),
      normOut: { path: "encoder.conv_norm_out", channels: last, groups },
      convOut: conv("encoder.conv_out", last, 2 * L),
    },
    quantConv: conv("quant_conv", 2 * L, 2 * L, 1),
    postQuantConv: conv("post_quant_conv", L, L, 1),
    decoder: {
      path: "decoder",
      convIn: conv("decoder.conv_in", L, last),
      blocks: up,
      mid: mid("decoder"),
      normOut: { path: "decoder.conv_norm_out", channels: boc[0], groups },
      convOut: conv("decoder.conv_out", boc[0], cfg.outChannels),
    },
  };
}

type Shapes = Map<string, number[]>;

function conv(m: Shapes, c: ConvArch): void {
  m.set(`${c.path}.weight`, [c.outChannels, c.inChannels, c.kernel, c.kernel]);
  m.set(`${c.path}.bias`, [c.outChannels]);
}

function norm(m: Shapes, path: string, c: number): void {
  m.set(`${path}.weight`, [c]);
  m.set(`${path}.bias`, [c]);
}

/** The 1×1 shortcut of a resnet that changes the channel count. */
export function shortcutArch(r: VAEResnetArch): ConvArch | null {
  return r.inChannels === r.outChannels
    ? null
    : { path: `${r.path}.conv_shortcut`, inChannels: r.inChannels, outChannels: r.outChannels, kernel: 1 };
}

function resnetParams(m: Shapes, r: VAEResnetArch): void {
  norm(m, `${r.path}.norm1`, r.inChannels);
  conv(m, { path: `${r.path}.conv1`, inChannels: r.inChannels, outChannels: r.outChannels, kernel: 3 });
  norm(m, `${r.path}.norm2`, r.outChannels);
  conv(m, { path: `${r.path}.conv2`, inChannels: r.outChannels, outChannels: r.outChannels, kernel: 3 });
  const sc = shortcutArch(r);
  if (sc) conv(m, sc);
}

/** The four projections of the mid-block attention, in diffusers' current names. */
export const ATTENTION_PROJECTIONS = ["to_q", "to_k", "to_v", "to_out.0"] as const;

function midParams(m: Shapes, mid: VAEMidArch): void {
  resnetParams(m, mid.resnets[0]);
  const a = mid.attention, c = a.channels;
  norm(m, `${a.path}.group_norm`, c);
  for (const p of ATTENTION_PROJECTIONS) {
    m.set(`${a.path}.${p}.weight`, [c, c]);
    m.set(`${a.path}.${p}.bias`, [c]);
  }
  resnetParams(m, mid.resnets[1]);
}

/** The parameters of the encoder or the decoder; `resample` is a block's down- or upsampler (its 3×3 conv). */
function coderParams<Block extends { resnets: VAEResnetArch[] }>(
  m: Shapes,
  c: CoderArch<Block>,
  resample: (b: Block) => { path: string; channels: number } | null,
): void {
  conv(m, c.convIn);
  for (const b of c.blocks) {
    b.resnets.forEach((r) => resnetParams(m, r));
    const r = resample(b);
    if (r) conv(m, { path: `${r.path}.conv`, inChannels: r.channels, outChannels: r.channels, kernel: 3 });
  }
  midParams(m, c.mid);
  norm(m, c.normOut.path, c.normOut.channels);
  conv(m, c.convOut);
}

/** Every parameter of the VAE with its shape, in diffusers' state-dict names and order. */
export function vaeParamShapes(arch: VAEArch): Map<string, number[]> {
  const m: Shapes = new Map();
  coderParams(m, arch.encoder, (b) => b.downsample);
  coderParams(m, arch.decoder, (b) => b.upsample);
  conv(m, arch.quantConv);
  conv(m, arch.postQuantConv);
  return m;
}
