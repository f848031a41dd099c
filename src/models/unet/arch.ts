/**
 * The U-Net's architecture as data: every module with its diffusers path and sizes, derived from the config the
 * way diffusers' `UNet2DConditionModel.__init__` derives it. The loader checks checkpoints against
 * {@linkcode unetParamShapes}, and the model builds its modules from the same description, so the two cannot drift.
 * @module
 */
import type { UNetConfig } from "./config.ts";

/** `ResnetBlock2D` with a time embedding. */
export interface ResnetArch {
  path: string;
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  groups: number;
  eps: number;
  /** `output_scale_factor`. */
  scale: number;
}

/** `Transformer2DModel` holding `layers` `BasicTransformerBlock`s (GEGLU feed-forward). */
export interface TransformerArch {
  path: string;
  channels: number;
  heads: number;
  headDim: number;
  crossAttentionDim: number;
  layers: number;
  groups: number;
  linearProjection: boolean;
  upcastAttention: boolean;
}

/** A down block: resnets, optional attentions, optional stride-2 downsampler. */
export interface DownBlockArch {
  path: string;
  resnets: ResnetArch[];
  attentions: TransformerArch[];
  /** `downsamplers.0.conv`: 3×3 stride 2 with this padding. */
  downsample: { path: string; channels: number; padding: number } | null;
}

/** An up block: resnets fed by skip concatenation, optional attentions, optional nearest-2× upsampler + conv. */
export interface UpBlockArch {
  path: string;
  resnets: ResnetArch[];
  attentions: TransformerArch[];
  upsample: { path: string; channels: number } | null;
}

/** The whole U-Net. */
export interface UNetArch {
  config: UNetConfig;
  timeEmbedDim: number;
  down: DownBlockArch[];
  mid: { path: string; resnets: ResnetArch[]; attentions: TransformerArch[] };
  up: UpBlockArch[];
}

/** Derives every module's sizes from the config (diffusers v0.25 `UNet2DConditionModel`). */
export function unetArch(cfg: UNetConfig): UNetArch {
  const boc = cfg.blockOutChannels;
  const temb = boc[0] * 4;
  const groups = cfg.normNumGroups, eps = cfg.normEps;
  const resnet = (path: string, inC: number, outC: number, scale = 1): ResnetArch => ({
    path,
    inChannels: inC,
    outChannels: outC,
    tembChannels: temb,
    groups,
    eps,
    scale,
  });
  const transformer = (path: string, channels: number, heads: number, layers: number): TransformerArch => ({
    path,
    channels,
    heads,
    headDim: channels / heads,
    crossAttentionDim: cfg.crossAttentionDim,
    layers,
    groups,
    linearProjection: cfg.useLinearProjection,
    upcastAttention: cfg.upcastAttention,
  });
  const down: DownBlockArch[] = [];
  let outC = boc[0];
  cfg.downBlockTypes.forEach((type, i) => {
    const inC = outC;
    outC = boc[i];
    const final = i === boc.length - 1;
    const path = `down_blocks.${i}`;
    const resnets: ResnetArch[] = [], attentions: TransformerArch[] = [];
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      resnets.push(resnet(`${path}.resnets.${j}`, j === 0 ? inC : outC, outC));
      if (type === "CrossAttnDownBlock2D") {
        attentions.push(
          transformer(`${path}.attentions.${j}`, outC, cfg.numAttentionHeads[i], cfg.transformerLayersPerBlock[i]),
        );
      }
    }
    down.push({
      path,
      resnets,
      attentions,
      downsample: final ? null : { path: `${path}.downsamplers.0`, channels: outC, padding: cfg.downsamplePadding },
    });
  });
  const last = boc.length - 1;
  const midC = boc[last];
  const mid = {
    path: "mid_block",
    resnets: [
      resnet("mid_block.resnets.0", midC, midC, cfg.midBlockScaleFactor),
      resnet("mid_block.resnets.1", midC, midC, cfg.midBlockScaleFactor),
    ],
    attentions: [
      transformer("mid_block.attentions.0", midC, cfg.numAttentionHeads[last], cfg.transformerLayersPerBlock[last]),
    ],
  };
  const rboc = [...boc].reverse();
  const rheads = [...cfg.numAttentionHeads].reverse();
  const rlayers = [...cfg.transformerLayersPerBlock].reverse();
  const up: UpBlockArch[] = [];
  outC = rboc[0];
  cfg.upBlockTypes.forEach((type, i) => {
    const prevOut = outC;
    outC = rboc[i];
    const inC = rboc[Math.min(i + 1, boc.length - 1)];
    const final = i === boc.length - 1;
    const path = `up_blocks.${i}`;
    const n = cfg.layersPerBlock + 1;
    const resnets: ResnetArch[] = [], attentions: TransformerArch[] = [];
    for (let j = 0; j < n; j++) {
      const skip = j === n - 1 ? inC : outC;
      const resIn = j === 0 ? prevOut : outC;
      resnets.push(resnet(`${path}.resnets.${j}`, resIn + skip, outC));
      if (type === "CrossAttnUpBlock2D") {
        attentions.push(transformer(`${path}.attentions.${j}`, outC, rheads[i], rlayers[i]));
      }
    }
    up.push({ path, resnets, attentions, upsample: final ? null : { path: `${path}.upsamplers.0`, channels: outC } });
  });
  return { config: cfg, timeEmbedDim: temb, down, mid, up };
}

type Shapes = Map<string, number[]>;

function linear(m: Shapes, path: string, inF: number, outF: number, bias = true): void {
  m.set(`${path}.weight`, [outF, inF]);
  if (bias) m.set(`${path}.bias`, [outF]);
}

function conv(m: Shapes, path: string, inC: number, outC: number, k: number): void {
  m.set(`${path}.weight`, [outC, inC, k, k]);
  m.set(`${path}.bias`, [outC]);
}

function norm(m: Shapes, path: string, c: number): void {
  m.set(`${path}.weight`, [c]);
  m.set(`${path}.bias`, [c]);
}

function resnetParams(m: Shapes, r: ResnetArch): void {
  norm(m, `${r.path}.norm1`, r.inChannels);
  conv(m, `${r.path}.conv1`, r.inChannels, r.outChannels, 3);
  linear(m, `${r.path}.time_emb_proj`, r.tembChannels, r.outChannels);
  norm(m, `${r.path}.norm2`, r.outChannels);
  conv(m, `${r.path}.conv2`, r.outChannels, r.outChannels, 3);
  if (r.inChannels !== r.outChannels) conv(m, `${r.path}.conv_shortcut`, r.inChannels, r.outChannels, 1);
}

function transformerParams(m: Shapes, t: TransformerArch): void {
  const c = t.channels, inner = t.heads * t.headDim;
  norm(m, `${t.path}.norm`, c);
  if (t.linearProjection) linear(m, `${t.path}.proj_in`, c, inner);
  else conv(m, `${t.path}.proj_in`, c, inner, 1);
  for (let l = 0; l < t.layers; l++) {
    const b = `${t.path}.transformer_blocks.${l}`;
    norm(m, `${b}.norm1`, inner);
    for (const [attn, kvDim] of [["attn1", inner], ["attn2", t.crossAttentionDim]] as const) {
      linear(m, `${b}.${attn}.to_q`, inner, inner, false);
      linear(m, `${b}.${attn}.to_k`, kvDim, inner, false);
      linear(m, `${b}.${attn}.to_v`, kvDim, inner, false);
      linear(m, `${b}.${attn}.to_out.0`, inner, inner);
    }
    norm(m, `${b}.norm2`, inner);
    norm(m, `${b}.norm3`, inner);
    linear(m, `${b}.ff.net.0.proj`, inner, inner * 8);
    linear(m, `${b}.ff.net.2`, inner * 4, inner);
  }
  if (t.linearProjection) linear(m, `${t.path}.proj_out`, inner, c);
  else conv(m, `${t.path}.proj_out`, inner, c, 1);
}

/** Every parameter the U-Net has, with its shape, in diffusers' state-dict names. */
export function unetParamShapes(arch: UNetArch): Map<string, number[]> {
  const cfg = arch.config, boc = cfg.blockOutChannels;
  const m: Shapes = new Map();
  conv(m, "conv_in", cfg.inChannels, boc[0], 3);
  linear(m, "time_embedding.linear_1", boc[0], arch.timeEmbedDim);
  linear(m, "time_embedding.linear_2", arch.timeEmbedDim, arch.timeEmbedDim);
  for (const b of arch.down) {
    b.resnets.forEach((r, j) => {
      resnetParams(m, r);
      if (b.attentions[j]) transformerParams(m, b.attentions[j]);
    });
    if (b.downsample) conv(m, `${b.downsample.path}.conv`, b.downsample.channels, b.downsample.channels, 3);
  }
  for (const b of arch.up) {
    b.resnets.forEach((r, j) => {
      resnetParams(m, r);
      if (b.attentions[j]) transformerParams(m, b.attentions[j]);
    });
    if (b.upsample) conv(m, `${b.upsample.path}.conv`, b.upsample.channels, b.upsample.channels, 3);
  }
  resnetParams(m, arch.mid.resnets[0]);
  transformerParams(m, arch.mid.attentions[0]);
  resnetParams(m, arch.mid.resnets[1]);
  norm(m, "conv_norm_out", boc[0]);
  conv(m, "conv_out", boc[0], cfg.outChannels, 3);
  return m;
}
