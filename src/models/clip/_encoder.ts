/**
 * What CLIP's text and vision towers share: one forward pass's plumbing (weights by name, hooks on every module
 * output, the differentiable op set) and the pre-LN transformer layer (`CLIPEncoderLayer`).
 * @module
 */
import type { DiffOps } from "../../autodiff/ops.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import { reshape, type Tensor } from "../../gpu/tensor.ts";
import type { GradSink, ScopedHooks } from "../../hooks/hooks.ts";
import type { Activation } from "../../ops/matmul.ts";
import type { ClipEncoderConfig } from "./config.ts";

/** Hook state of a CLIP forward (it runs once per generation: step 0 unless the caller says otherwise). */
export interface ClipHookState {
  step: number;
  timestep: number;
  cfg: boolean;
  /** The tape recording this forward, for gradient captures. */
  tape?: GradSink;
}

/** One forward pass of a CLIP tower: the ops (recording on a tape or not), the weights, the hooks. */
export class ClipPass {
  readonly rec: Recorder;
  constructor(
    readonly f: DiffOps,
    readonly params: ReadonlyMap<string, Tensor>,
    readonly hooks: ScopedHooks,
    readonly state: ClipHookState,
    /** For messages. */
    readonly model: string,
  ) {
    this.rec = f.rec;
  }

  p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`${this.model}: parameter "${name}" is not loaded`);
    return t;
  }

  /**
   * Applies the hooks of a module output ([B, tokens, D] or [B, D]). When recording, a gradient capture starts
   * tracking at its module output, so dL/d(output) is captured even when nothing upstream is watched (e.g. the
   * gradient w.r.t. `text_model.embeddings`).
   */
  out(path: string, x: Tensor): Tensor {
    if (!this.hooks.active) return x;
    if (this.f.tape && this.#wantsGrad(path)) this.f.tape.track(x);
    return this.hooks.apply(this.rec, path, x, this.state, "bnc");
  }

  #wantsGrad(path: string): boolean {
    const { hooks, prefix, bare } = this.hooks;
    return [`${prefix}.${path}`, ...(bare ? [path] : [])].some((p) => hooks.entries(p)?.some((e) => e.grad));
  }

  /** nn.Linear (weight [out, in]), optionally with a fused activation when nobody hooks the pre-activation. */
  linear(path: string, x: Tensor, opts: { bias?: boolean; act?: Activation } = {}): Tensor {
    const w = this.p(`${path}.weight`), b = (opts.bias ?? true) ? this.p(`${path}.bias`) : undefined;
    return this.out(path, this.f.linearAct(x, w, b, opts.act ?? "none"));
  }

  layerNorm(path: string, x: Tensor, eps: number): Tensor {
    return this.out(path, this.f.layerNorm(x, { weight: this.p(`${path}.weight`), bias: this.p(`${path}.bias`), eps }));
  }

  /** Rows `index[b]` of each batch item of x [B, T, D] → [B, D] (a gather over the flattened rows). */
  pick(x: Tensor, index: readonly number[]): Tensor {
    const [B, T, D] = x.shape;
    const ids = index.map((t, b) => b * T + t);
    return this.f.embedding(reshape(x, [B * T, D]), { data: ids, shape: [B] });
  }

  /** `<prefix>.encoder`: every layer in turn; the output is hooked as `<prefix>.encoder` too. */
  encoder(prefix: string, x: Tensor, cfg: ClipEncoderConfig, causal: boolean): Tensor {
    for (let l = 0; l < cfg.numHiddenLayers; l++) x = this.layer(`${prefix}.encoder.layers.${l}`, x, cfg, causal);
    return this.out(`${prefix}.encoder`, x);
  }

  /** `CLIPEncoderLayer`: x + attn(LN1(x)), then x + mlp(LN2(x)). */
  layer(P: string, x: Tensor, cfg: ClipEncoderConfig, causal: boolean): Tensor {
    const f = this.f, eps = cfg.layerNormEps;
    const n1 = this.layerNorm(`${P}.layer_norm1`, x, eps);
    const q = this.linear(`${P}.self_attn.q_proj`, n1);
    const k = this.linear(`${P}.self_attn.k_proj`, n1);
    const v = this.linear(`${P}.self_attn.v_proj`, n1);
    const a = f.attention(q, k, v, { heads: cfg.numAttentionHeads, causal });
    const o = this.out(`${P}.self_attn`, this.linear(`${P}.self_attn.out_proj`, a));
    x = f.add(x, o);
    const n2 = this.layerNorm(`${P}.layer_norm2`, x, eps);
    let h: Tensor;
    if (this.hooks.wants(`${P}.mlp.fc1`) || this.hooks.wants(`${P}.mlp.activation_fn`)) {
      h = this.linear(`${P}.mlp.fc1`, n2);
      h = this.out(`${P}.mlp.activation_fn`, f.activation(h, cfg.hiddenAct));
    } else {
      h = this.linear(`${P}.mlp.fc1`, n2, { act: cfg.hiddenAct });
    }
    h = this.out(`${P}.mlp`, this.linear(`${P}.mlp.fc2`, h));
    return this.out(P, f.add(x, h));
  }
}
