/**
 * CLIP on WebGPU: SD's text encoder (transformers' `CLIPTextModel`), the vision tower and a whole `CLIPModel`
 * for CLIP scores, with every module output hookable by its transformers path.
 *
 * ```ts ignore
 * import { loadTextEncoder } from "./mod.ts";
 * const te = await loadTextEncoder(ctx, files); // text_encoder/config.json + model.safetensors
 * const hooks = new Hooks();
 * const cap = hooks.capture("text_encoder.text_model.encoder.layers.5");
 * const rec = ctx.recorder();
 * const { lastHiddenState } = te.forward(rec, { data: tok.inputIds, shape: tok.shape }, { hooks });
 * await rec.submit();
 * ```
 * @module
 */
export * from "./config.ts";
export * from "./arch.ts";
export * from "./text.ts";
export * from "./vision.ts";
export * from "./score.ts";
export * from "./load.ts";
export * from "./random.ts";
