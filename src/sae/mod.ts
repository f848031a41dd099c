/**
 * Sparse autoencoders on the GPU: the TopK SAE of SDLens / OpenAI (and Revelio's k-SAE), its sparse decode and
 * sparse backward, losses and metrics, init (tied weights, geometric-median b_pre), a seeded, resumable trainer with
 * AuxK; activation collection (per position over generations, or Revelio's pooled vector per real image); feature
 * statistics, top images, heat maps and mask labels; steering generation with features (`steerSae`); and layout
 * prediction from the first step's codes.
 *
 * ```ts ignore
 * import { createContext } from "../gpu/mod.ts";
 * import { tensorSource, trainSAE } from "./mod.ts";
 *
 * const ctx = await createContext();
 * const acts = ctx.upload(deltas, [rows, 1280]); // e.g. mid-block Δ activations
 * const { sae, history } = await trainSAE(ctx, tensorSource(acts), { d: 1280, k: 10, steps: 2000 });
 * ```
 * @module
 */
export * from "./model.ts";
export * from "./sparse.ts";
export * from "./dense.ts";
export * from "./loss.ts";
export * from "./init.ts";
export * from "./sources.ts";
export * from "./serialize.ts";
export * from "./train.ts";
export * from "./positions.ts";
export * from "./steer.ts";
export * from "./layout.ts";
export * from "./explain.ts";
export * from "./collect.ts";
export * from "./collect_pooled.ts";
