/**
 * `AutoencoderKL` (diffusers v0.25) on WebGPU. The passes read like diffusers' `Encoder` and `Decoder` and name
 * every module output by its diffusers path (`decoder.up_blocks.1.resnets.0`), which is also its hook point
 * (with the `vae.` prefix in a {@linkcode Hooks} set, which other models share).
 *
 * Full-resolution activations outgrow one storage binding (a 512×512 decode makes [1, 256, 512, 512] f32 = 256 MiB;
 * many adapters bind at most 128 MiB), so every activation is held as a list of channel parts, each within the
 * binding budget and a whole number of GroupNorm groups. GroupNorm, SiLU, upsampling and residual adds then run
 * part by part unchanged, and a convolution sums the partial convolutions of its input parts. docs/vae.md has the
 * design; where everything fits, each activation is one part and the pass is plain.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import { fmtShape, numel, reshape, type Tensor } from "../../gpu/tensor.ts";
import { Hooks, type ScopedHooks } from "../../hooks/hooks.ts";
import { add } from "../../ops/binary.ts";
import { cast } from "../../ops/cast.ts";
import { concatBackward } from "../../ops/concat.ts";
import { conv2d, planConv2d } from "../../ops/conv2d.ts";
import { groupNorm } from "../../ops/group_norm.ts";
import { matmul } from "../../ops/matmul.ts";
import { permute } from "../../ops/permute.ts";
import { softmax } from "../../ops/softmax.ts";
import { scale, silu } from "../../ops/unary.ts";
import { upsampleNearest } from "../../ops/upsample.ts";
import {
  ATTENTION_PROJECTIONS,
  type CoderArch,
  type ConvArch,
  type DecoderBlockArch,
  type EncoderBlockArch,
  shortcutArch,
  VAE_NORM_EPS,
  type VAEArch,
  type VAEAttentionArch,
  type VAEMidArch,
  type VAEResnetArch,
} from "./arch.ts";
import type { VAEConfig } from "./config.ts";
import { DiagonalGaussianDistribution, splitMoments } from "./posterior.ts";

/** Options of one encode or decode. */
export interface VAERunOptions {
  /** Hooks on module paths with the `vae.` prefix (`vae.decoder.mid_block.attentions.0`); others are ignored. */
  hooks?: Hooks;
  /**
   * Largest activation part, in bytes (default and upper bound: the device's `maxStorageBufferBindingSize`).
   * Smaller values split activations into more channel parts; tests use it to exercise the split path.
   */
  maxBindingBytes?: number;
  /**
   * Record everything into this recorder; the caller submits it once. Without it the pass submits after every
   * module, which frees each module's scratch (convolution packing buffers) before the next: what full-size
   * images need to keep memory bounded.
   */
  rec?: Recorder;
}

/** Options of {@linkcode AutoencoderKL.encodeLatents}. */
export interface EncodeLatentsOptions extends VAERunOptions {
  /** Draw the latents from the posterior with this seed instead of taking its mode (the mean). */
  seed?: number;
}

type Layout = "nchw" | "bnc";
const HOOK_STATE = { step: 0, timestep: NaN, cfg: false };

/** The VAE with its weights on the GPU. */
export class AutoencoderKL {
  /** Every hook point: module paths of the encoder, decoder, `quant_conv` and `post_quant_conv`. */
  readonly hookPoints: ReadonlySet<string>;

  constructor(readonly ctx: GpuContext, readonly arch: VAEArch, readonly params: ReadonlyMap<string, Tensor>) {
    this.hookPoints = vaeHookPoints(arch);
  }

  get config(): VAEConfig {
    return this.arch.config;
  }

  /** Frees the weights. */
  release(): void {
    for (const t of this.params.values()) this.ctx.release(t);
  }

  /**
   * Encodes images [B, in_channels, H, W] (values in [−1, 1]) into the posterior over latents
   * [B, latent_channels, H/2ⁿ, W/2ⁿ] (n = levels − 1; odd sizes round down). The caller owns (and releases) it.
   */
  async encode(image: Tensor, opts: VAERunOptions = {}): Promise<DiagonalGaussianDistribution> {
    this.#check("encode", "image", image, this.config.inChannels);
    const pass = new Pass(this, opts);
    const [mean, logvar] = await pass.run(async () => {
      const h = await pass.encoder(whole(image));
      const m = pass.merge(pass.conv(this.arch.quantConv, h), "quant_conv");
      const r = splitMoments(pass.rec, m.parts[0]);
      return [r.mean, r.logvar];
    });
    return new DiagonalGaussianDistribution(this.ctx, mean, logvar);
  }

  /** Decodes latents [B, latent_channels, h, w] into images [B, out_channels, 2ⁿh, 2ⁿw] (unclamped). */
  async decode(z: Tensor, opts: VAERunOptions = {}): Promise<Tensor> {
    this.#check("decode", "latents", z, this.config.latentChannels);
    const pass = new Pass(this, opts);
    const [out] = await pass.run(async () => {
      const h = await pass.decoder(pass.conv(this.arch.postQuantConv, whole(z)));
      return [pass.merge(h, "decoder.conv_out").parts[0]];
    });
    return out;
  }

  /** The U-Net's latents for images in [−1, 1]: the posterior's mode (or a seeded sample) × `scaling_factor`. */
  async encodeLatents(image: Tensor, opts: EncodeLatentsOptions = {}): Promise<Tensor> {
    const posterior = await this.encode(image, opts);
    try {
      const rec = opts.rec ?? this.ctx.recorder("vae.encodeLatents");
      const z = opts.seed === undefined ? posterior.mode() : posterior.sample(rec, opts.seed);
      const out = scale(rec, z, { alpha: this.config.scalingFactor, out: this.ctx.tensor(z.shape, "f32", "latents") });
      if (z !== posterior.mean) rec.releaseAfterSubmit(z);
      rec.releaseAfterSubmit(posterior.mean, posterior.logvar);
      if (!opts.rec) await rec.submit();
      return out;
    } catch (e) {
      posterior.release();
      throw e;
    }
  }

  /** Images from the U-Net's latents: `decode(latents / scaling_factor)`. */
  async decodeLatents(latents: Tensor, opts: VAERunOptions = {}): Promise<Tensor> {
    this.#check("decodeLatents", "latents", latents, this.config.latentChannels);
    const rec = opts.rec ?? this.ctx.recorder("vae.decodeLatents");
    const z = scale(rec, latents, { alpha: 1 / this.config.scalingFactor, out: this.ctx.tensor(latents.shape) });
    if (!opts.rec) await rec.submit();
    try {
      return await this.decode(z, opts);
    } finally {
      if (opts.rec) opts.rec.releaseAfterSubmit(z);
      else this.ctx.release(z);
    }
  }

  #check(op: string, what: string, t: Tensor, channels: number): void {
    if (t.shape.length !== 4 || t.shape[1] !== channels || t.dtype !== "f32") {
      throw new TypeError(
        `VAE ${op}: ${what} "${t.label}" is ${t.dtype} ${fmtShape(t.shape)}; expected f32 [B, ${channels}, H, W]`,
      );
    }
  }
}

/** Every hook point of a VAE architecture. */
export function vaeHookPoints(arch: VAEArch): Set<string> {
  const s = new Set<string>(["quant_conv", "post_quant_conv"]);
  const resnet = (r: VAEResnetArch) => {
    s.add(r.path);
    for (const n of ["norm1", "conv1", "norm2", "dropout", "conv2"]) s.add(`${r.path}.${n}`);
    const sc = shortcutArch(r);
    if (sc) s.add(sc.path);
  };
  const mid = (m: VAEMidArch) => {
    s.add(m.path);
    m.resnets.forEach(resnet);
    const a = m.attention.path;
    s.add(a);
    s.add(`${a}.group_norm`);
    for (const p of ATTENTION_PROJECTIONS) s.add(`${a}.${p}`);
  };
  for (const c of [arch.encoder, arch.decoder] as CoderArch<EncoderBlockArch | DecoderBlockArch>[]) {
    for (const n of ["conv_in", "conv_norm_out", "conv_act", "conv_out"]) s.add(`${c.path}.${n}`);
    mid(c.mid);
    for (const b of c.blocks) {
      s.add(b.path);
      b.resnets.forEach(resnet);
      const sampler = "downsample" in b ? b.downsample : (b as DecoderBlockArch).upsample;
      if (sampler) s.add(sampler.path), s.add(`${sampler.path}.conv`);
    }
  }
  return s;
}

/** An activation [B, C, H, W] held as consecutive channel parts [B, c_i, H, W], Σ c_i = C. */
export interface ChannelSplit {
  shape: number[];
  parts: Tensor[];
}

function whole(t: Tensor): ChannelSplit {
  return { shape: [...t.shape], parts: [t] };
}

/**
 * Channel counts of the parts that hold an activation of `shape` [B, C, H, W] within `budget` bytes each: as few,
 * as even parts as possible, each a whole number of the `groups` GroupNorm groups (when `groups` divides C). A
 * part is sized as convolution packs it (channels rounded up to a multiple of 4).
 */
export function channelParts(shape: readonly number[], budget: number, groups: number): number[] {
  const [B, C, H, W] = shape;
  const unit = C % groups === 0 ? C / groups : 1;
  const perChannel = B * H * W * 4;
  const fits = (c: number) => perChannel * Math.ceil(c / 4) * 4 <= budget;
  const units = C / unit;
  let maxUnits = units;
  while (maxUnits > 0 && !fits(maxUnits * unit)) maxUnits--;
  if (maxUnits === 0) {
    throw new RangeError(
      `VAE: an activation ${fmtShape(shape)} cannot be split into parts of ${budget} bytes or less (one part of ` +
        `${unit} channel(s) needs ${perChannel * Math.ceil(unit / 4) * 4}); decode fewer or smaller images at once`,
    );
  }
  const n = Math.ceil(units / maxUnits);
  const base = Math.floor(units / n), extra = units % n;
  return Array.from({ length: n }, (_, i) => (base + (i < extra ? 1 : 0)) * unit);
}

/** One encode or decode: the recorder, hooks, split budget and the tensors this pass owns. */
class Pass {
  rec: Recorder;
  readonly hooks: ScopedHooks;
  /** Device limit on one binding. */
  readonly limit: number;
  /** Largest activation part. */
  readonly budget: number;
  readonly #callerRec: boolean;
  /** Buffers allocated by this pass and not yet recycled: only these may be recycled. */
  readonly #owned = new Set<GPUBuffer>();

  constructor(readonly model: AutoencoderKL, opts: VAERunOptions) {
    const ctx = model.ctx;
    this.hooks = (opts.hooks ?? new Hooks()).scope("vae", false);
    this.hooks.validate(model.hookPoints, "VAE");
    this.limit = ctx.limits.maxStorageBufferBindingSize;
    const b = opts.maxBindingBytes ?? this.limit;
    if (!(b > 0)) throw new RangeError(`VAE: maxBindingBytes must be positive, got ${b}`);
    this.budget = Math.min(b, this.limit);
    this.#callerRec = opts.rec !== undefined;
    this.rec = opts.rec ?? ctx.recorder("vae");
  }

  get ctx(): GpuContext {
    return this.model.ctx;
  }

  /** Runs `body` in a tensor scope; everything it allocated except its results is released after submission. */
  async run(body: () => Promise<Tensor[]>): Promise<Tensor[]> {
    this.ctx.beginScope();
    let out: Tensor[];
    try {
      out = await body();
    } catch (e) {
      const all = this.ctx.endScope();
      if (this.#callerRec) this.rec.releaseAfterSubmit(...all);
      else this.ctx.release(...all);
      throw e;
    }
    this.rec.releaseAfterSubmit(...this.ctx.endScope(out));
    if (!this.#callerRec) await this.rec.submit();
    return out;
  }

  /** Between modules: submits what was recorded (freeing its scratch) and goes on with `live` only. */
  async boundary(live: ChannelSplit): Promise<void> {
    if (this.#callerRec) return;
    const all = this.ctx.endScope();
    const keep = new Set(live.parts.map((t) => t.buffer));
    this.ctx.beginScope();
    for (const t of all) if (keep.has(t.buffer)) this.ctx.adopt(t);
    const done = this.rec;
    done.releaseAfterSubmit(...all.filter((t) => !keep.has(t.buffer)));
    this.rec = this.ctx.recorder("vae");
    await done.submit();
  }

  p(name: string): Tensor {
    const t = this.model.params.get(name);
    if (!t) throw new Error(`VAE: parameter "${name}" is not loaded`);
    return t;
  }

  alloc(shape: readonly number[], label: string): Tensor {
    const t = this.rec.alloc(shape, "f32", label);
    this.#owned.add(t.buffer);
    return t;
  }

  /** Declares tensors dead from here on; those this pass allocated go back to the recorder's pool. */
  free(...xs: (ChannelSplit | Tensor)[]): void {
    for (const x of xs) {
      for (const t of "parts" in x ? x.parts : [x]) {
        if (this.#owned.delete(t.buffer)) this.rec.recycle(t);
      }
    }
  }

  counts(shape: readonly number[]): number[] {
    return channelParts(shape, this.budget, this.model.config.normNumGroups);
  }

  /** `x` re-split into parts of `counts` channels (copies; returns `x` when already so). */
  rechunk(x: ChannelSplit, counts: readonly number[]): ChannelSplit {
    const have = x.parts.map((t) => t.shape[1]);
    if (have.length === counts.length && have.every((c, i) => c === counts[i])) return x;
    const [B, , H, W] = x.shape, S = H * W;
    const parts: Tensor[] = [];
    let t0 = 0;
    for (const c of counts) {
      const dst = this.alloc([B, c, H, W], "vae.part");
      let s0 = 0;
      x.parts.forEach((src, i) => {
        const lo = Math.max(s0, t0), hi = Math.min(s0 + have[i], t0 + c);
        for (let b = 0; hi > lo && b < B; b++) {
          this.rec.copy(
            { ...src, offset: src.offset + 4 * S * (b * have[i] + lo - s0) },
            { ...dst, offset: dst.offset + 4 * S * (b * c + lo - t0) },
            4 * S * (hi - lo),
          );
        }
        s0 += have[i];
      });
      parts.push(dst);
      t0 += c;
    }
    return { shape: x.shape, parts };
  }

  /** `x` as one tensor, which must fit a binding (attention, hooks, the final outputs). */
  merge(x: ChannelSplit, path: string): ChannelSplit {
    if (x.parts.length === 1) return x;
    const bytes = numel(x.shape) * 4;
    if (bytes > this.limit) {
      throw new RangeError(
        `VAE: "${path}" needs its output ${fmtShape(x.shape)} (${bytes} bytes) as one tensor, over this device's ` +
          `maxStorageBufferBindingSize (${this.limit}); use a smaller image`,
      );
    }
    const m = this.rechunk(x, [x.shape[1]]);
    this.free(x);
    return m;
  }

  /** Applies hooks to a module output (as one tensor: hooks see whole activations). */
  out(path: string, x: ChannelSplit, layout: Layout = "nchw"): ChannelSplit {
    if (!this.hooks.wants(path)) return x;
    const m = this.merge(x, path);
    return whole(this.hooks.apply(this.rec, path, m.parts[0], HOOK_STATE, layout));
  }

  /** A contiguous range of rows (first dimension) of a tensor, copied. */
  rows(t: Tensor, r0: number, n: number): Tensor {
    const per = numel(t.shape.slice(1));
    const dst = this.alloc([n, ...t.shape.slice(1)], `${t.label}[${r0}:${r0 + n}]`);
    this.rec.copy({ ...t, offset: t.offset + 4 * per * r0 }, dst, 4 * per * n);
    return dst;
  }

  /** Convolution `path` (weight [Cout, Cin, k, k]) of a split activation; its output is split for the budget. */
  conv(
    c: ConvArch,
    x: ChannelSplit,
    stride: 1 | 2 = 1,
    padding: number | [number, number, number, number] = 1,
  ): ChannelSplit {
    const w = this.p(`${c.path}.weight`), bias = this.p(`${c.path}.bias`);
    const pad = c.kernel === 1 ? 0 : padding;
    const plan = planConv2d(x.shape, w.shape, stride, pad);
    const [B, Cout, Ho, Wo] = plan.shape;
    const inC = x.parts.map((t) => t.shape[1]);
    const outC = this.counts(plan.shape);
    const rec = this.rec;
    if (inC.length === 1 && outC.length === 1) {
      const y = conv2d(rec, x.parts[0], w, { bias, stride, padding: pad, out: this.alloc(plan.shape, c.path) });
      return this.out(c.path, whole(y));
    }
    // Input parts need the matching input-channel slices of w; output parts take row ranges of those. The slicing
    // moves 32-bit words, so an f16 weight is widened first (a scratch copy, for large images only).
    const wf = w.dtype === "f16" ? cast(rec, w, { to: "f32", out: this.alloc(w.shape, `${c.path}.weight f32`) }) : w;
    let wIn = [wf];
    if (inC.length > 1) {
      wIn = inC.map((ci) => this.alloc([Cout, ci, w.shape[2], w.shape[3]], `${c.path}.weight part`));
      concatBackward(rec, wf, { dxs: wIn, axis: 1, accumulate: false });
    }
    const parts: Tensor[] = [];
    let o0 = 0;
    for (const oc of outC) {
      const b = outC.length === 1 ? bias : this.rows(bias, o0, oc);
      let acc: Tensor | null = null;
      wIn.forEach((wi, i) => {
        const wij = outC.length === 1 ? wi : this.rows(wi, o0, oc);
        const y = conv2d(rec, x.parts[i], wij, {
          bias: i === 0 ? b : undefined,
          stride,
          padding: pad,
          out: this.alloc([B, oc, Ho, Wo], c.path),
        });
        if (wij !== wi) this.free(wij);
        if (acc) {
          const sum = add(rec, acc, y, { out: this.alloc(y.shape, c.path) });
          this.free(acc, y);
          acc = sum;
        } else acc = y;
      });
      if (b !== bias) this.free(b);
      parts.push(acc!);
      o0 += oc;
    }
    if (wIn[0] !== wf) this.free(...wIn);
    if (wf !== w) this.free(wf);
    return this.out(c.path, { shape: plan.shape, parts });
  }

  /** GroupNorm (eps 1e-6), optionally with SiLU: fused unless the norm's own output is hooked. */
  groupNorm(path: string, x: ChannelSplit, act: boolean, actPath?: string): ChannelSplit {
    const C = x.shape[1], G = this.model.config.normNumGroups, unit = C / G;
    const xs = this.rechunk(x, this.counts(x.shape));
    const weight = this.p(`${path}.weight`), bias = this.p(`${path}.bias`);
    const fused = act && !this.hooks.wants(path) && !(actPath && this.hooks.wants(actPath));
    const parts: Tensor[] = [];
    let c0 = 0;
    for (const t of xs.parts) {
      const c = t.shape[1], one = c === C;
      const w = one ? weight : this.rows(weight, c0, c), b = one ? bias : this.rows(bias, c0, c);
      parts.push(
        groupNorm(this.rec, t, {
          weight: w,
          bias: b,
          groups: c / unit,
          eps: VAE_NORM_EPS,
          silu: fused,
          out: this.alloc(t.shape, path),
        }),
      );
      if (!one) this.free(w, b);
      c0 += c;
    }
    if (xs !== x) this.free(xs);
    let y: ChannelSplit = { shape: x.shape, parts };
    if (!act || fused) return fused ? y : this.out(path, y);
    y = this.out(path, y);
    const a = { shape: y.shape, parts: y.parts.map((t) => silu(this.rec, t, { out: this.alloc(t.shape, "silu") })) };
    this.free(y);
    return actPath ? this.out(actPath, a) : a;
  }

  add(a: ChannelSplit, b: ChannelSplit): ChannelSplit {
    const bs = this.rechunk(b, a.parts.map((t) => t.shape[1]));
    const parts = a.parts.map((t, i) => add(this.rec, t, bs.parts[i], { out: this.alloc(t.shape, "add") }));
    if (bs !== b) this.free(bs);
    return { shape: a.shape, parts };
  }

  /** ResnetBlock2D without a time embedding (output_scale_factor 1; dropout is the identity at inference). */
  resnet(r: VAEResnetArch, x: ChannelSplit): ChannelSplit {
    const P = r.path;
    const conv = (name: string, inC: number, h: ChannelSplit) =>
      this.conv({ path: `${P}.${name}`, inChannels: inC, outChannels: r.outChannels, kernel: 3 }, h);
    let h = this.groupNorm(`${P}.norm1`, x, true);
    let next = conv("conv1", r.inChannels, h);
    this.free(h);
    h = this.groupNorm(`${P}.norm2`, next, true, `${P}.dropout`);
    this.free(next);
    next = conv("conv2", r.outChannels, h);
    this.free(h);
    const sc = shortcutArch(r);
    const skip = sc ? this.conv(sc, x) : x;
    const y = this.add(skip, next);
    this.free(next, x);
    if (skip !== x) this.free(skip);
    return this.out(P, y);
  }

  /** diffusers `Attention` as the VAE uses it: GN, one head over all C channels, biased projections, residual. */
  attention(a: VAEAttentionArch, x: ChannelSplit): ChannelSplit {
    const P = a.path, rec = this.rec;
    const xm = this.merge(x, P).parts[0];
    const [B, C, H, W] = xm.shape, N = H * W;
    let n = groupNorm(rec, xm, {
      weight: this.p(`${P}.group_norm.weight`),
      bias: this.p(`${P}.group_norm.bias`),
      groups: a.groups,
      eps: VAE_NORM_EPS,
      out: this.alloc(xm.shape, `${P}.group_norm`),
    });
    n = this.out(`${P}.group_norm`, whole(n)).parts[0];
    const t = permute(rec, reshape(n, [B, C, N]), [0, 2, 1], { out: this.alloc([B, N, C], `${P}.tokens`) });
    this.free(n);
    const [q, k, v] = ["to_q", "to_k", "to_v"].map((p) => this.linear(`${P}.${p}`, t));
    this.free(t);
    const o = this.sdpa(q, k, v);
    this.free(q, k, v);
    const proj = this.linear(`${P}.to_out.0`, o);
    this.free(o);
    const back = permute(rec, proj, [0, 2, 1], { out: this.alloc([B, C, N], P) });
    this.free(proj);
    const y = add(rec, reshape(back, xm.shape), xm, { out: this.alloc(xm.shape, P) });
    this.free(back, xm);
    return this.out(P, whole(y));
  }

  /** nn.Linear on [B, N, C] tokens. */
  linear(path: string, x: Tensor): Tensor {
    const w = this.p(`${path}.weight`);
    const y = matmul(this.rec, x, w, {
      transB: true,
      bias: this.p(`${path}.bias`),
      out: this.alloc([...x.shape.slice(0, -1), w.shape[0]], path),
    });
    return this.out(path, whole(y), "bnc").parts[0];
  }

  /**
   * softmax(q kᵀ / √C) v for one head of C channels (the attention op's head-size limit is below SD's 512), over
   * blocks of query rows so that each block's scores [B, rows, N] fit the budget.
   */
  sdpa(q: Tensor, k: Tensor, v: Tensor): Tensor {
    const rec = this.rec;
    const [B, N, C] = q.shape;
    const alpha = 1 / Math.sqrt(C);
    const rows = Math.min(N, Math.floor(this.budget / (4 * B * N)));
    if (rows < 1) {
      throw new RangeError(`VAE attention: one row of scores [${B}, 1, ${N}] exceeds ${this.budget} bytes`);
    }
    const block = (qb: Tensor): Tensor => {
      const r = qb.shape[1];
      const s = matmul(rec, qb, k, { transB: true, alpha, out: this.alloc([B, r, N], "attention.scores") });
      const pr = softmax(rec, s, { out: this.alloc(s.shape, "attention.probs") });
      this.free(s);
      const o = matmul(rec, pr, v, { out: this.alloc([B, r, C], "attention.out") });
      this.free(pr);
      return o;
    };
    if (rows === N) return block(q);
    const out = this.alloc([B, N, C], "attention.out");
    for (let r0 = 0; r0 < N; r0 += rows) {
      const r = Math.min(rows, N - r0);
      const qb = this.alloc([B, r, C], "attention.q block");
      const at = (t: Tensor, b: number, row: number, n: number) => ({ ...t, offset: t.offset + 4 * C * (b * n + row) });
      for (let b = 0; b < B; b++) rec.copy(at(q, b, r0, N), at(qb, b, 0, r), 4 * C * r);
      const ob = block(qb);
      for (let b = 0; b < B; b++) rec.copy(at(ob, b, 0, r), at(out, b, r0, N), 4 * C * r);
      this.free(qb, ob);
    }
    return out;
  }

  upsample(x: ChannelSplit): ChannelSplit {
    const [B, C, H, W] = x.shape;
    const shape = [B, C, 2 * H, 2 * W];
    const xs = this.rechunk(x, this.counts(shape));
    const parts = xs.parts.map((t) =>
      upsampleNearest(this.rec, t, { out: this.alloc([B, t.shape[1], 2 * H, 2 * W], "upsample") })
    );
    if (xs !== x) this.free(xs);
    return { shape, parts };
  }

  async mid(m: VAEMidArch, x: ChannelSplit): Promise<ChannelSplit> {
    let h = this.resnet(m.resnets[0], x);
    await this.boundary(h);
    h = this.attention(m.attention, h);
    await this.boundary(h);
    h = this.resnet(m.resnets[1], h);
    h = this.out(m.path, h);
    await this.boundary(h);
    return h;
  }

  /** conv_norm_out → SiLU (`conv_act`) → conv_out. */
  head(c: CoderArch<unknown>, x: ChannelSplit): ChannelSplit {
    const h = this.groupNorm(c.normOut.path, x, true, `${c.path}.conv_act`);
    this.free(x);
    const y = this.conv(c.convOut, h);
    this.free(h);
    return y;
  }

  /** diffusers `Encoder`: image → moments [B, 2·latent, h, w] (before quant_conv). */
  async encoder(image: ChannelSplit): Promise<ChannelSplit> {
    const e = this.model.arch.encoder;
    let h = this.conv(e.convIn, image);
    await this.boundary(h);
    for (const b of e.blocks) {
      for (const r of b.resnets) {
        h = this.resnet(r, h);
        await this.boundary(h);
      }
      if (b.downsample) {
        const d = b.downsample;
        const conv = { path: `${d.path}.conv`, inChannels: d.channels, outChannels: d.channels, kernel: 3 as const };
        const y = this.conv(conv, h, 2, [0, 1, 0, 1]); // Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) first
        this.free(h);
        h = this.out(d.path, y);
      }
      h = this.out(b.path, h);
      await this.boundary(h);
    }
    h = await this.mid(e.mid, h);
    return this.head(e, h);
  }

  /** diffusers `Decoder`: latents (after post_quant_conv) → image. */
  async decoder(z: ChannelSplit): Promise<ChannelSplit> {
    const d = this.model.arch.decoder;
    let h = this.conv(d.convIn, z);
    this.free(z);
    await this.boundary(h);
    h = await this.mid(d.mid, h);
    for (const b of d.blocks) {
      for (const r of b.resnets) {
        h = this.resnet(r, h);
        await this.boundary(h);
      }
      if (b.upsample) {
        const u = b.upsample;
        const up = this.upsample(h);
        this.free(h);
        const conv = { path: `${u.path}.conv`, inChannels: u.channels, outChannels: u.channels, kernel: 3 as const };
        h = this.out(u.path, this.conv(conv, up));
        this.free(up);
      }
      h = this.out(b.path, h);
      await this.boundary(h);
    }
    return this.head(d, h);
  }
}
