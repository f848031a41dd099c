/**
 * CLIP's vision tower, transformers' `CLIPVisionModel` (with `visual_projection`, as in `CLIPModel`): a ViT with a
 * class token, `pre_layrnorm`, pre-LN transformer layers, and `post_layernorm` on the class token.
 * Every module output is a hook point named by its transformers path.
 * @module
 */
import type { GpuContext } from "../../gpu/context.ts";
import type { Recorder } from "../../gpu/recorder.ts";
import { fmtShape, reshape, type Tensor } from "../../gpu/tensor.ts";
import { Hooks, type ScopedHooks } from "../../hooks/hooks.ts";
import { add } from "../../ops/binary.ts";
import { matmul } from "../../ops/matmul.ts";
import { permute } from "../../ops/permute.ts";
import { DiffOps } from "../../autodiff/ops.ts";
import { ClipPass } from "./_encoder.ts";
import { clipVisionHookPoints, patchGrid } from "./arch.ts";
import type { ClipVisionConfig } from "./config.ts";
import type { ClipForwardOptions } from "./text.ts";

/** What the vision tower returns (tensors owned by the caller). */
export interface ClipVisionOutput {
  /** [B, patches + 1, D]: the encoder's output (before `post_layernorm`, as transformers returns it). */
  lastHiddenState: Tensor;
  /** [B, D]: `post_layernorm` of the class token. */
  pooledOutput: Tensor;
  /** [B, projection_dim]: `visual_projection(pooledOutput)`, not normalised; only with a projection. */
  imageEmbeds?: Tensor;
}

/** The vision tower with its weights on the GPU. */
export class ClipVisionModel {
  /** Every hook point, without the model prefix (e.g. `vision_model.encoder.layers.0.mlp`). */
  readonly hookPoints: ReadonlySet<string>;
  readonly hookPrefix: string;

  constructor(
    readonly ctx: GpuContext,
    readonly config: ClipVisionConfig,
    readonly params: ReadonlyMap<string, Tensor>,
    opts: { hookPrefix?: string } = {},
  ) {
    this.hookPrefix = opts.hookPrefix ?? "image_encoder";
    this.hookPoints = clipVisionHookPoints(config, { projection: this.hasProjection });
  }

  /** Whether `visual_projection` is loaded (so `imageEmbeds` is computed). */
  get hasProjection(): boolean {
    return this.params.has("visual_projection.weight");
  }

  /** Frees the weights. */
  release(): void {
    for (const t of this.params.values()) this.ctx.release(t);
  }

  /**
   * Records one evaluation of pixel values [B, C, S, S] (S = `image_size`), already resized and normalised (see
   * `clipPreprocess`). Intermediates are released after `rec` is submitted; outputs and captures are the caller's.
   */
  forward(rec: Recorder, pixelValues: Tensor, opts: ClipForwardOptions = {}): ClipVisionOutput {
    const hooks = (opts.hooks ?? new Hooks()).scope(this.hookPrefix, false);
    hooks.validate(this.hookPoints, "CLIP vision encoder");
    return this.run(rec, pixelValues, hooks, opts);
  }

  /** @internal {@linkcode forward} with hooks already scoped and validated. */
  run(rec: Recorder, pixelValues: Tensor, hooks: ScopedHooks, opts: ClipForwardOptions): ClipVisionOutput {
    const cfg = this.config;
    const S = cfg.imageSize, C = cfg.numChannels, p = cfg.patchSize, D = cfg.hiddenSize;
    const [B] = pixelValues.shape;
    const want = [B, C, S, S];
    if (pixelValues.shape.length !== 4 || pixelValues.shape.some((d, i) => d !== want[i]) || B < 1) {
      throw new TypeError(
        `CLIP vision encoder: pixel values have shape ${fmtShape(pixelValues.shape)}; expected [B, ${C}, ${S}, ${S}]`,
      );
    }
    const { side: g, patches: N } = patchGrid(cfg);
    const state = { step: opts.step ?? 0, timestep: NaN, cfg: opts.cfg ?? false };
    const pass = new ClipPass(new DiffOps(rec), this.params, hooks, state, "CLIP vision encoder");
    this.ctx.beginScope();
    let out: ClipVisionOutput | undefined;
    try {
      // The patch embedding is a conv with stride = kernel = patch: non-overlapping patches, i.e. a GEMM of the
      // patches unfolded as rows [B·N, C·p·p] with the weight seen as [D, C·p·p].
      const cols = permute(rec, reshape(pixelValues, [B, C, g, p, g, p]), [0, 2, 4, 1, 3, 5]);
      const w = pass.p("vision_model.embeddings.patch_embedding.weight");
      const patches = matmul(rec, reshape(cols, [B, N, C * p * p]), reshape(w, [D, C * p * p]), { transB: true });
      // [class; patches] per image, by copies (the class token is one row per image)
      const cls = pass.p("vision_model.embeddings.class_embedding");
      const tokens = rec.alloc([B, N + 1, D], "f32", "vision tokens");
      const row = D * 4;
      for (let b = 0; b < B; b++) {
        rec.copy(cls, { ...tokens, offset: b * (N + 1) * row }, row);
        rec.copy({ ...patches, offset: b * N * row }, { ...tokens, offset: (b * (N + 1) + 1) * row }, N * row);
      }
      const pos = pass.p("vision_model.embeddings.position_embedding.weight");
      let x = pass.out("vision_model.embeddings", add(rec, tokens, pos));
      x = pass.layerNorm("vision_model.pre_layrnorm", x, cfg.layerNormEps);
      x = pass.encoder("vision_model", x, cfg, false);
      const pooled = pass.layerNorm(
        "vision_model.post_layernorm",
        pass.pick(x, new Array(B).fill(0)),
        cfg.layerNormEps,
      );
      const proj = this.hasProjection ? pass.linear("visual_projection", pooled, { bias: false }) : undefined;
      out = { lastHiddenState: x, pooledOutput: pooled, imageEmbeds: proj };
    } finally {
      const keep = out ? [out.lastHiddenState, out.pooledOutput, ...(out.imageEmbeds ? [out.imageEmbeds] : [])] : [];
      rec.releaseAfterSubmit(...this.ctx.endScope(keep));
    }
    return out;
  }
}
