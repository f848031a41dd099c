/**
 * `UNet2DConditionModel` (SD v1.x/v2.x layout) on WebGPU. The forward pass reads like diffusers' modules and
 * names every module output by its diffusers path, which is also its hook point.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import { fmtShape, reshape, type Tensor } from "../../gpu/tensor.ts";
import type { ScopedHooks } from "../../hooks/hooks.ts";
import { Hooks } from "../../hooks/hooks.ts";
import { add } from "../../ops/binary.ts";
import { timestepEmbedding } from "../../ops/timestep_embedding.ts";
import { DiffOps } from "../../autodiff/ops.ts";
import { releaseForward, Tape } from "../../autodiff/tape.ts";
import type { ResnetArch, TransformerArch, UNetArch } from "./arch.ts";

/** Inputs of one U-Net evaluation. */
export interface UNetInputs {
  /** Latents [B, in_channels, H, W]. */
  sample: Tensor;
  /** Timesteps [B] (or [1], broadcast), f32: schedulers can give fractional values. */
  timesteps: Tensor;
  /** Text conditioning [B, tokens, cross_attention_dim]. */
  encoderHiddenStates: Tensor;
}

/** Options of one evaluation. */
export interface UNetForwardOptions {
  hooks?: Hooks;
  /** Denoising step index, for step-selected hooks (default 0). */
  step?: number;
  /** Timestep value, for timestep-selected hooks (default: none matches a timestep filter). */
  timestep?: number;
  /** Whether the batch is a `[uncond, cond]` CFG pair (hooks can then select a half). Default: true for even B. */
  cfg?: boolean;
  /**
   * Record the forward on this tape for a backward pass (parameters and inputs to differentiate are the ones
   * watched on it). Activations the backward needs are then kept (the tape frees them as backward passes them).
   */
  tape?: Tape;
  /**
   * With a tape: keep only each resnet's and transformer's inputs, and recompute the block's forward during
   * backward (activation checkpointing per block). Gradients are the same; activation memory drops to about one
   * block's worth, at the cost of a second forward. Gradient captures inside blocks then do not fire.
   */
  recompute?: boolean;
}

type State = { step: number; timestep: number; cfg: boolean; tape?: Tape };

/** The U-Net with its weights on the GPU. */
export class UNet2DConditionModel {
  /** Every hook point: module paths plus `<transformer>.delta`. */
  readonly hookPoints: ReadonlySet<string>;

  constructor(readonly ctx: GpuContext, readonly arch: UNetArch, readonly params: ReadonlyMap<string, Tensor>) {
    this.hookPoints = unetHookPoints(arch);
  }

  /** Frees the weights. */
  release(): void {
    for (const t of this.params.values()) this.ctx.release(t);
  }

  /**
   * Records one evaluation; returns the predicted noise [B, out_channels, H, W]. Intermediates are released
   * after `rec` is submitted; the output and hook captures are the caller's.
   */
  forward(rec: Recorder, inputs: UNetInputs, opts: UNetForwardOptions = {}): Tensor {
    const { sample, timesteps, encoderHiddenStates: ehs } = inputs;
    const cfg = this.arch.config;
    const [B, C, H, W] = sample.shape;
    if (sample.shape.length !== 4 || C !== cfg.inChannels) {
      throw new TypeError(`UNet: sample has shape ${fmtShape(sample.shape)}; expected [B, ${cfg.inChannels}, H, W]`);
    }
    const down = 2 ** (this.arch.down.length - 1);
    if (H % down || W % down) {
      throw new RangeError(`UNet: sample ${fmtShape(sample.shape)}: H and W must be multiples of ${down}`);
    }
    if (ehs.shape.length !== 3 || ehs.shape[0] !== B || ehs.shape[2] !== cfg.crossAttentionDim) {
      throw new TypeError(
        `UNet: encoder_hidden_states has shape ${
          fmtShape(ehs.shape)
        }; expected [${B}, tokens, ${cfg.crossAttentionDim}]`,
      );
    }
    if (timesteps.shape.length !== 1 || (timesteps.shape[0] !== B && timesteps.shape[0] !== 1)) {
      throw new TypeError(`UNet: timesteps has shape ${fmtShape(timesteps.shape)}; expected [${B}] or [1]`);
    }
    const hooks = (opts.hooks ?? new Hooks()).scope("unet", true);
    hooks.validate(this.hookPoints, "U-Net");
    const tape = opts.tape;
    const state: State = { step: opts.step ?? 0, timestep: opts.timestep ?? NaN, cfg: opts.cfg ?? B % 2 === 0, tape };
    this.ctx.beginScope();
    let out: Tensor | undefined;
    try {
      out = new Pass(this, new DiffOps(rec, tape), hooks, state, opts.recompute ?? false).run(sample, timesteps, ehs);
    } finally {
      releaseForward(rec, this.ctx.endScope(out ? [out] : []), tape);
    }
    return out;
  }
}

/** Every hook point of a U-Net architecture. */
export function unetHookPoints(arch: UNetArch): Set<string> {
  const s = new Set<string>(["conv_in", "time_proj", "time_embedding", "conv_norm_out", "conv_act", "conv_out"]);
  ["linear_1", "act", "linear_2"].forEach((n) => s.add(`time_embedding.${n}`));
  const resnet = (r: ResnetArch) => {
    s.add(r.path);
    for (const n of ["norm1", "conv1", "time_emb_proj", "norm2", "dropout", "conv2"]) s.add(`${r.path}.${n}`);
    if (r.inChannels !== r.outChannels) s.add(`${r.path}.conv_shortcut`);
  };
  const transformer = (t: TransformerArch) => {
    for (const n of ["", ".delta", ".norm", ".proj_in", ".proj_out"]) s.add(t.path + n);
    for (let l = 0; l < t.layers; l++) {
      const b = `${t.path}.transformer_blocks.${l}`;
      for (
        const n of [
          "",
          ".norm1",
          ".norm2",
          ".norm3",
          ".attn1",
          ".attn2",
          ".ff",
          ".ff.net.0",
          ".ff.net.0.proj",
          ".ff.net.2",
        ]
      ) {
        s.add(b + n);
      }
      for (const a of ["attn1", "attn2"]) for (const n of ["to_q", "to_k", "to_v", "to_out.0"]) s.add(`${b}.${a}.${n}`);
    }
  };
  for (const b of arch.down) {
    s.add(b.path);
    b.resnets.forEach(resnet);
    b.attentions.forEach(transformer);
    if (b.downsample) s.add(b.downsample.path), s.add(`${b.downsample.path}.conv`);
  }
  s.add(arch.mid.path);
  arch.mid.resnets.forEach(resnet);
  arch.mid.attentions.forEach(transformer);
  for (const b of arch.up) {
    s.add(b.path);
    b.resnets.forEach(resnet);
    b.attentions.forEach(transformer);
    if (b.upsample) s.add(b.upsample.path), s.add(`${b.upsample.path}.conv`);
  }
  return s;
}

/** One forward pass: the recorder, hooks and state shared by every module. */
class Pass {
  readonly rec: Recorder;
  constructor(
    readonly model: UNet2DConditionModel,
    readonly f: DiffOps,
    readonly hooks: ScopedHooks,
    readonly state: State,
    readonly recompute = false,
  ) {
    this.rec = f.rec;
  }

  /**
   * Runs a block; with `recompute` and a tape, runs it untaped and records one node whose backward re-runs it on
   * a sub-tape (watching the block's inputs and parameters with the main tape's gradient tensors) and backprops.
   */
  block$(path: string, inputs: Tensor[], run: (p: Pass, ins: Tensor[]) => Tensor): Tensor {
    const tape = this.state.tape;
    if (!tape || !this.recompute) return run(this, inputs);
    const { model } = this;
    const params = [...model.params].filter(([n]) => n.startsWith(path + ".")).map(([, t]) => t);
    const plain = new Pass(model, new DiffOps(this.rec), this.hooks, { ...this.state, tape: undefined });
    for (const b of this.external) plain.external.add(b);
    for (const t of inputs) plain.external.add(t.buffer);
    const out = run(plain, inputs);
    const state = this.state, ctx = model.ctx;
    tape.record({
      op: `recompute ${path}`,
      inputs: [...inputs, ...params],
      outputs: [out],
      saved: inputs,
      backward(rec, [dy], dIn) {
        const sub = new Tape(ctx);
        [...inputs, ...params].forEach((t, i) => dIn[i] && sub.watch(t, dIn[i]));
        const pass = new Pass(model, new DiffOps(rec, sub), new Hooks().scope("unet", true), { ...state, tape: sub });
        for (const t of inputs) pass.external.add(t.buffer);
        ctx.beginScope();
        let o: Tensor | undefined;
        try {
          o = run(pass, inputs);
        } finally {
          releaseForward(rec, ctx.endScope(o ? [o] : []), sub);
        }
        sub.backward(rec, [[o, dy!]]);
        rec.recycle(o);
      },
    });
    return out;
  }

  p(name: string): Tensor {
    const t = this.model.params.get(name);
    if (!t) throw new Error(`UNet: parameter "${name}" is not loaded`);
    return t;
  }

  /**
   * Hands dead intermediates back to the recorder's pool, so later ops reuse their buffers (peak memory of a
   * forward is then a few activations, not all of them). Never called on inputs, weights or skip tensors still
   * needed; a hook that wants to keep an activation copies it (captures do).
   */
  free(...ts: Tensor[]): void {
    if (this.f.recording) return; // backward may need them; the tape frees them
    for (const t of ts) if (!this.external.has(t.buffer)) this.rec.recycle(t);
  }

  /** Buffers the pass must not recycle: its inputs. */
  readonly external = new Set<GPUBuffer>();

  /** Applies hooks to a module output. */
  out(path: string, x: Tensor, layout: "nchw" | "bnc" = "nchw"): Tensor {
    return this.hooks.active ? this.hooks.apply(this.rec, path, x, this.state, layout) : x;
  }

  linear(path: string, x: Tensor, bias = true, layout: "nchw" | "bnc" = "bnc"): Tensor {
    const y = this.f.linear(x, this.p(`${path}.weight`), bias ? this.p(`${path}.bias`) : undefined);
    return this.out(path, y, layout);
  }

  conv(path: string, x: Tensor, stride: 1 | 2 = 1, padding = 1): Tensor {
    const w = this.p(`${path}.weight`);
    return this.out(path, this.f.conv2d(x, w, { bias: this.p(`${path}.bias`), stride, padding }));
  }

  /** GroupNorm, optionally followed by SiLU (fused unless the norm's own output is hooked). */
  groupNorm(path: string, x: Tensor, groups: number, eps: number, act: boolean, actPath?: string): Tensor {
    const weight = this.p(`${path}.weight`), bias = this.p(`${path}.bias`);
    if (!this.hooks.wants(path) && !(actPath && this.hooks.wants(actPath))) {
      return this.f.groupNorm(x, { weight, bias, groups, eps, silu: act });
    }
    const n = this.out(path, this.f.groupNorm(x, { weight, bias, groups, eps }));
    if (!act) return n;
    const a = this.f.silu(n);
    return actPath ? this.out(actPath, a) : a;
  }

  run(sample: Tensor, timesteps: Tensor, ehs: Tensor): Tensor {
    const { arch } = this.model;
    const cfg = arch.config;
    const rec = this.rec;
    for (const t of [sample, timesteps, ehs]) this.external.add(t.buffer);
    let x = sample;
    if (cfg.centerInputSample) x = this.f.scale(x, 2, -1); // 2·x − 1
    // time embedding: sinusoidal projection, then linear → SiLU → linear
    const B = sample.shape[0];
    // diffusers broadcasts one timestep to the batch: t + zeros[B]
    const t = timesteps.shape[0] === B ? timesteps : add(rec, timesteps, rec.ctx.tensor([B], "f32", "zeros"));
    const tproj = this.out(
      "time_proj",
      timestepEmbedding(rec, t, cfg.blockOutChannels[0], {
        flipSinToCos: cfg.flipSinToCos,
        downscaleFreqShift: cfg.freqShift,
      }),
      "bnc",
    );
    const l1 = this.linear("time_embedding.linear_1", tproj);
    const a1 = this.out("time_embedding.act", this.f.silu(l1), "bnc");
    const temb = this.out("time_embedding", this.linear("time_embedding.linear_2", a1), "bnc");
    const tembAct = this.f.silu(temb); // every resnet's time_emb_proj sees SiLU(temb)
    this.free(tproj, l1, a1, temb);

    const x0 = x;
    x = this.conv("conv_in", x);
    if (x0 !== sample) this.free(x0);
    const skips: Tensor[] = [x];
    for (const b of arch.down) {
      b.resnets.forEach((r, j) => {
        x = this.resnet(r, x, tembAct); // its input is a skip: kept
        if (b.attentions[j]) {
          const y = this.transformer(b.attentions[j], x, ehs);
          this.free(x);
          x = y;
        }
        skips.push(x);
      });
      if (b.downsample) {
        const d = b.downsample;
        const pad = d.padding === 0 ? [0, 1, 0, 1] : d.padding;
        x = this.out(d.path, this.convPadded(`${d.path}.conv`, x, 2, pad));
        skips.push(x);
      }
      x = this.out(b.path, x);
    }
    const mid = arch.mid;
    let m = this.resnet(mid.resnets[0], x, tembAct);
    if (!skips.includes(x)) this.free(x);
    x = this.transformer(mid.attentions[0], m, ehs);
    this.free(m);
    m = this.resnet(mid.resnets[1], x, tembAct);
    this.free(x);
    x = this.out(mid.path, m);
    for (const b of arch.up) {
      b.resnets.forEach((r, j) => {
        const skip = skips.pop()!;
        const cat = this.f.concat([x, skip], 1);
        this.free(x, skip);
        x = this.resnet(r, cat, tembAct);
        this.free(cat);
        if (b.attentions[j]) {
          const y = this.transformer(b.attentions[j], x, ehs);
          this.free(x);
          x = y;
        }
      });
      if (b.upsample) {
        const u = this.f.upsample2x(x);
        this.free(x);
        x = this.out(b.upsample.path, this.conv(`${b.upsample.path}.conv`, u));
        this.free(u);
      }
      x = this.out(b.path, x);
    }
    const n = this.groupNorm("conv_norm_out", x, cfg.normNumGroups, cfg.normEps, true, "conv_act");
    this.free(x, tembAct);
    const out = this.conv("conv_out", n);
    this.free(n);
    return out;
  }

  convPadded(path: string, x: Tensor, stride: 1 | 2, padding: number | number[]): Tensor {
    const w = this.p(`${path}.weight`);
    const pad = typeof padding === "number" ? padding : padding as [number, number, number, number];
    return this.out(path, this.f.conv2d(x, w, { bias: this.p(`${path}.bias`), stride, padding: pad }));
  }

  /** ResnetBlock2D (recomputed in backward when asked). */
  resnet(r: ResnetArch, x: Tensor, tembAct: Tensor): Tensor {
    return this.block$(r.path, [x, tembAct], (p, [a, t]) => p.resnetBody(r, a, t));
  }

  /** Transformer2DModel (recomputed in backward when asked). */
  transformer(t: TransformerArch, x: Tensor, ehs: Tensor): Tensor {
    return this.block$(t.path, [x, ehs], (p, [a, e]) => p.transformerBody(t, a, e));
  }

  /** ResnetBlock2D: GN → SiLU → conv1 (+ time projection) → GN → SiLU → conv2, plus the (1×1) shortcut. */
  resnetBody(r: ResnetArch, x: Tensor, tembAct: Tensor): Tensor {
    const P = r.path;
    const n1 = this.groupNorm(`${P}.norm1`, x, r.groups, r.eps, true);
    const c1 = this.conv(`${P}.conv1`, n1);
    const t = this.linear(`${P}.time_emb_proj`, tembAct); // [B, out]
    const h = this.f.add(c1, reshape(t, [t.shape[0], t.shape[1], 1, 1]));
    this.free(n1, c1, t);
    const n2 = this.groupNorm(`${P}.norm2`, h, r.groups, r.eps, true, `${P}.dropout`); // dropout: identity here
    const c2 = this.conv(`${P}.conv2`, n2);
    this.free(h, n2);
    const sc = r.inChannels !== r.outChannels ? this.convPadded(`${P}.conv_shortcut`, x, 1, 0) : x;
    const sum = this.f.add(sc, c2);
    const y = r.scale === 1 ? sum : this.f.scale(sum, 1 / r.scale);
    if (y !== sum) this.free(sum);
    this.free(c2);
    if (sc !== x) this.free(sc);
    return this.out(P, y);
  }

  /** Transformer2DModel: GN → proj_in → blocks → proj_out, plus the input; `.delta` is the residual update. */
  transformerBody(t: TransformerArch, x: Tensor, ehs: Tensor): Tensor {
    const P = t.path;
    const [B, C, H, W] = x.shape;
    const inner = t.heads * t.headDim;
    const n = this.out(
      `${P}.norm`,
      this.f.groupNorm(x, {
        weight: this.p(`${P}.norm.weight`),
        bias: this.p(`${P}.norm.bias`),
        groups: t.groups,
        eps: 1e-6,
      }),
    );
    // each step's input is dead once the step has run
    const step = (f: (a: Tensor) => Tensor) => (a: Tensor) => {
      const b = f(a);
      this.free(a);
      return b;
    };
    let h: Tensor;
    if (t.linearProjection) {
      h = step((a) => this.linear(`${P}.proj_in`, a))(this.f.permute(reshape(n, [B, C, H * W]), [0, 2, 1]));
      this.free(n);
    } else {
      h = step((a) => this.f.permute(reshape(a, [B, inner, H * W]), [0, 2, 1]))(
        this.convPadded(`${P}.proj_in`, n, 1, 0),
      );
      this.free(n);
    }
    for (let l = 0; l < t.layers; l++) h = step((a) => this.block(`${P}.transformer_blocks.${l}`, t, a, ehs))(h);
    if (t.linearProjection) {
      h = step((a) => reshape(this.f.permute(a, [0, 2, 1]), [B, C, H, W]))(
        step((a) => this.linear(`${P}.proj_out`, a))(h),
      );
    } else {
      h = step((a) => this.convPadded(`${P}.proj_out`, reshape(a, [B, inner, H, W]), 1, 0))(
        step((a) => this.f.permute(a, [0, 2, 1]))(h),
      );
    }
    // h is the residual update Δ = output − input
    const deltaPath = `${P}.delta`;
    if (this.hooks.wants(deltaPath)) h = this.out(deltaPath, h);
    const y = this.f.add(h, x);
    this.free(h);
    return this.out(P, y);
  }

  /** BasicTransformerBlock: self-attention, cross-attention and GEGLU feed-forward, each pre-norm and residual. */
  block(P: string, t: TransformerArch, h: Tensor, ehs: Tensor): Tensor {
    const ln = (name: string, x: Tensor) =>
      this.out(
        `${P}.${name}`,
        this.f.layerNorm(x, { weight: this.p(`${P}.${name}.weight`), bias: this.p(`${P}.${name}.bias`), eps: 1e-5 }),
        "bnc",
      );
    // residual branch: y = x + sub(norm(x)); the norm output and the branch output die right after
    const residual = (x: Tensor, sub: (n: Tensor) => Tensor, norm: string) => {
      const n = ln(norm, x);
      const d = sub(n);
      this.free(n);
      const y = this.f.add(d, x);
      this.free(d);
      return y;
    };
    const h1 = residual(h, (n) => this.attn(`${P}.attn1`, t, n, n), "norm1");
    const h2 = residual(h1, (n) => this.attn(`${P}.attn2`, t, n, ehs), "norm2");
    this.free(h1);
    const h3 = residual(h2, (n) => {
      const p = this.linear(`${P}.ff.net.0.proj`, n);
      const g = this.out(`${P}.ff.net.0`, this.f.geglu(p), "bnc");
      this.free(p);
      const o = this.out(`${P}.ff`, this.linear(`${P}.ff.net.2`, g), "bnc");
      this.free(g);
      return o;
    }, "norm3");
    this.free(h2);
    return this.out(P, h3, "bnc");
  }

  /** diffusers `Attention`: to_q/to_k/to_v (no bias), scaled dot-product over heads, to_out.0. */
  attn(P: string, t: TransformerArch, x: Tensor, context: Tensor): Tensor {
    const q = this.linear(`${P}.to_q`, x, false);
    const k = this.linear(`${P}.to_k`, context, false);
    const v = this.linear(`${P}.to_v`, context, false);
    const o = this.f.attention(q, k, v, { heads: t.heads });
    this.free(q, k, v);
    const y = this.out(P, this.linear(`${P}.to_out.0`, o), "bnc");
    this.free(o);
    return y;
  }
}
