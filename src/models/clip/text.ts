/**
 * CLIP's text tower, transformers' `CLIPTextModel` (and `CLIPTextModelWithProjection`) as Stable Diffusion uses it:
 * token + position embeddings, causal pre-LN transformer layers, a final LayerNorm. `last_hidden_state` is what
 * SD's U-Net attends to; the pooled output is the row at the end-of-text token and `text_embeds` its projection.
 * Every module output is a hook point named by its transformers path.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import { fmtShape, type Tensor } from "../../gpu/tensor.ts";
import { Hooks, type ScopedHooks } from "../../hooks/hooks.ts";
import type { HostIds } from "../../ops/embedding.ts";
import { DiffOps } from "../../autodiff/ops.ts";
import { releaseForward, type Tape } from "../../autodiff/tape.ts";
import { ClipPass } from "./_encoder.ts";
import { clipTextHookPoints } from "./arch.ts";
import type { ClipTextConfig } from "./config.ts";

/** Options of one text-tower evaluation. */
export interface ClipForwardOptions {
  hooks?: Hooks;
  /** Step index for step-selected hooks (default 0: the text encoder runs once, before the first step). */
  step?: number;
  /** Whether the batch is a `[uncond, cond]` pair, so hooks may select a half (default false). */
  cfg?: boolean;
  /**
   * Record the forward on this tape for a backward pass (text tower only). What gets a gradient: the parameters
   * watched on the tape (each token-embedding row shard is its own leaf), and every module output with a gradient
   * capture (`hooks.captureGrad("text_encoder.text_model.embeddings")` gives dL/d(input embeddings) with nothing
   * watched). Activations the backward needs are kept until it passes them.
   */
  tape?: Tape;
}

/** What the text tower returns (tensors owned by the caller). */
export interface ClipTextOutput {
  /** [B, T, D] after `final_layer_norm`: SD's `encoder_hidden_states`. */
  lastHiddenState: Tensor;
  /** [B, D]: `lastHiddenState` at each prompt's end-of-text token. */
  pooledOutput: Tensor;
  /** [B, projection_dim]: `text_projection(pooledOutput)`, not normalised; only when the model has a projection. */
  textEmbeds?: Tensor;
  /** Per prompt: the pooled position. */
  eotIndex: number[];
}

/**
 * Where each prompt of ids [B, T] is pooled, as transformers does: with the legacy `eos_token_id` 2 the first
 * maximum of the ids (openai/CLIP's `text.argmax(-1)`: the eot token 49407 is the largest id), otherwise the first
 * occurrence of `eosTokenId` (the first maximum again when a row lacks it; transformers would take position 0).
 */
export function eotIndices(ids: ArrayLike<number>, shape: readonly [number, number], eosTokenId = 2): number[] {
  const [B, T] = shape;
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    let best = 0, found = -1;
    for (let t = 0; t < T; t++) {
      const id = ids[b * T + t];
      if (id > ids[b * T + best]) best = t;
      if (found < 0 && eosTokenId !== 2 && id === eosTokenId) found = t;
    }
    out.push(found >= 0 ? found : best);
  }
  return out;
}

/** The text tower with its weights on the GPU. */
export class ClipTextModel {
  /** Every hook point, without the model prefix (e.g. `text_model.encoder.layers.3.self_attn.out_proj`). */
  readonly hookPoints: ReadonlySet<string>;
  /** Hook paths of this model start with `<hookPrefix>.` ("text_encoder" for SD's, "clip" inside a CLIP model). */
  readonly hookPrefix: string;

  /**
   * @param params every parameter but the token embedding, by transformers name
   * @param tokenEmbedding `text_model.embeddings.token_embedding.weight` as row shards (see `uploadRowShards`):
   *   SD's 49408×768 f32 table exceeds a 128 MiB storage binding
   */
  constructor(
    readonly ctx: GpuContext,
    readonly config: ClipTextConfig,
    readonly params: ReadonlyMap<string, Tensor>,
    readonly tokenEmbedding: readonly Tensor[],
    opts: { hookPrefix?: string } = {},
  ) {
    this.hookPrefix = opts.hookPrefix ?? "text_encoder";
    this.hookPoints = clipTextHookPoints(config, { projection: this.hasProjection });
  }

  /** Whether `text_projection` is loaded (so `textEmbeds` is computed). */
  get hasProjection(): boolean {
    return this.params.has("text_projection.weight");
  }

  /** Frees the weights. */
  release(): void {
    for (const t of this.params.values()) this.ctx.release(t);
    this.ctx.release(...this.tokenEmbedding);
  }

  /**
   * Records one evaluation of token ids [B, T] (T ≤ max_position_embeddings; SD pads to 77). Intermediates are
   * released after `rec` is submitted; the outputs and hook captures are the caller's.
   *
   * ```ts ignore
   * const tok = tokenizer.tokenize(["a photo of a dog"]);
   * const { lastHiddenState } = textEncoder.forward(rec, { data: tok.inputIds, shape: tok.shape });
   * ```
   */
  forward(rec: Recorder, inputIds: HostIds, opts: ClipForwardOptions = {}): ClipTextOutput {
    const hooks = (opts.hooks ?? new Hooks()).scope(this.hookPrefix, false);
    hooks.validate(this.hookPoints, "CLIP text encoder");
    return this.run(rec, inputIds, hooks, opts);
  }

  /** @internal {@linkcode forward} with hooks already scoped and validated (a CLIP model validates both towers). */
  run(rec: Recorder, inputIds: HostIds, hooks: ScopedHooks, opts: ClipForwardOptions): ClipTextOutput {
    const cfg = this.config;
    const { shape, data } = inputIds;
    if (shape.length !== 2 || data.length !== shape[0] * shape[1] || shape[0] < 1) {
      throw new TypeError(
        `CLIP text encoder: input ids have shape ${fmtShape(shape)} (${data.length} values); expected [B, T]`,
      );
    }
    const [B, T] = shape;
    if (T < 1 || T > cfg.maxPositionEmbeddings) {
      throw new RangeError(
        `CLIP text encoder: input ids ${fmtShape(shape)} have ${T} tokens; 1…${cfg.maxPositionEmbeddings} fit`,
      );
    }
    const eotIndex = eotIndices(data, [B, T], cfg.eosTokenId);
    const tape = opts.tape;
    const state = { step: opts.step ?? 0, timestep: NaN, cfg: opts.cfg ?? false, tape };
    const f = new DiffOps(rec, tape);
    const pass = new ClipPass(f, this.params, hooks, state, "CLIP text encoder");
    this.ctx.beginScope();
    let out: ClipTextOutput | undefined;
    try {
      const tok = pass.out("text_model.embeddings.token_embedding", f.embedding(this.tokenEmbedding, { data, shape }));
      const pos = f.firstRows(pass.p("text_model.embeddings.position_embedding.weight"), T);
      let x = pass.out("text_model.embeddings", f.add(tok, pos));
      x = pass.encoder("text_model", x, cfg, true);
      const last = pass.layerNorm("text_model.final_layer_norm", x, cfg.layerNormEps);
      const pooled = pass.pick(last, eotIndex);
      const proj = this.hasProjection ? pass.linear("text_projection", pooled, { bias: false }) : undefined;
      out = { lastHiddenState: last, pooledOutput: pooled, textEmbeds: proj, eotIndex };
    } finally {
      const keep = out ? [out.lastHiddenState, out.pooledOutput, ...(out.textEmbeds ? [out.textEmbeds] : [])] : [];
      releaseForward(rec, this.ctx.endScope(keep), tape);
    }
    return out;
  }
}
