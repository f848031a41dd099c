/**
 * What CLIP's text and vision towers share: one forward pass's plumbing (weights by name, hooks on every module
 * output) and the pre-LN transformer layer (`CLIPEncoderLayer`).
 * @module
 */
import type { Recorder } from "../../gpu/recorder.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import type { ScopedHooks } from "../../hooks/hooks.ts";
import { attention } from "../../ops/attention.ts";
import { add } from "../../ops/binary.ts";
import { embedding } from "../../ops/embedding.ts";
import { layerNorm } from "../../ops/layer_norm.ts";
import { type Activation, matmul } from "../../ops/matmul.ts";
import { gelu, quickGelu } from "../../ops/unary.ts";
import { reshape } from "../../gpu/tensor.ts";
import type { ClipEncoderConfig } from "./config.ts";

/** Hook state of a CLIP forward (it runs once per generation: step 0 unless the caller says otherwise). */
export interface ClipHookState {
  step: number;
  timestep: number;
  cfg: boolean;
}

/** One forward pass of a CLIP tower: the recorder, the weights, the hooks. */
export class ClipPass {
  constructor(
    readonly rec: Recorder,
    readonly params: ReadonlyMap<string, Tensor>,
    readonly hooks: ScopedHooks,
    readonly state: ClipHookState,
    /** For messages. */
    readonly model: string,
  ) {}

  p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`${this.model}: parameter "${name}" is not loaded`);
    return t;
  }

  /** Applies the hooks of a module output ([B, tokens, D] or [B, D]). */
  out(path: string, x: Tensor): Tensor {
    return this.hooks.active ? this.hooks.apply(this.rec, path, x, this.state, "bnc") : x;
  }

  /** nn.Linear (weight [out, in]), optionally with a fused activation when nobody hooks the pre-activation. */
  linear(path: string, x: Tensor, opts: { bias?: boolean; act?: Activation } = {}): Tensor {
    const bias = opts.bias ?? true;
    const y = matmul(this.rec, x, this.p(`${path}.weight`), {
      transB: true,
      bias: bias ? this.p(`${path}.bias`) : undefined,
      act: opts.act,
    });
    return this.out(path, y);
  }

  layerNorm(path: string, x: Tensor, eps: number): Tensor {
    const y = layerNorm(this.rec, x, { weight: this.p(`${path}.weight`), bias: this.p(`${path}.bias`), eps });
    return this.out(path, y);
  }

  /** Rows `index[b]` of each batch item of x [B, T, D] → [B, D] (a gather over the flattened rows). */
  pick(x: Tensor, index: readonly number[]): Tensor {
    const [B, T, D] = x.shape;
    const ids = index.map((t, b) => b * T + t);
    return embedding(this.rec, { table: reshape(x, [B * T, D]), ids: { data: ids, shape: [B] } });
  }

  /** `<prefix>.encoder`: every layer in turn; the output is hooked as `<prefix>.encoder` too. */
  encoder(prefix: string, x: Tensor, cfg: ClipEncoderConfig, causal: boolean): Tensor {
    for (let l = 0; l < cfg.numHiddenLayers; l++) x = this.layer(`${prefix}.encoder.layers.${l}`, x, cfg, causal);
    return this.out(`${prefix}.encoder`, x);
  }

  /** `CLIPEncoderLayer`: x + attn(LN1(x)), then x + mlp(LN2(x)). */
  layer(P: string, x: Tensor, cfg: ClipEncoderConfig, causal: boolean): Tensor {
    const rec = this.rec, eps = cfg.layerNormEps;
    const n1 = this.layerNorm(`${P}.layer_norm1`, x, eps);
    const q = this.linear(`${P}.self_attn.q_proj`, n1);
    const k = this.linear(`${P}.self_attn.k_proj`, n1);
    const v = this.linear(`${P}.self_attn.v_proj`, n1);
    const a = attention(rec, { q, k, v }, { heads: cfg.numAttentionHeads, causal });
    const o = this.out(`${P}.self_attn`, this.linear(`${P}.self_attn.out_proj`, a));
    x = add(rec, x, o);
    const n2 = this.layerNorm(`${P}.layer_norm2`, x, eps);
    let h: Tensor;
    if (this.hooks.wants(`${P}.mlp.fc1`) || this.hooks.wants(`${P}.mlp.activation_fn`)) {
      h = this.linear(`${P}.mlp.fc1`, n2);
      h = this.out(`${P}.mlp.activation_fn`, cfg.hiddenAct === "gelu" ? gelu(rec, h) : quickGelu(rec, h));
    } else {
      h = this.linear(`${P}.mlp.fc1`, n2, { act: cfg.hiddenAct });
    }
    h = this.out(`${P}.mlp`, this.linear(`${P}.mlp.fc2`, h));
    return this.out(P, add(rec, x, h));
  }
}
