/**
 * diffscope: mechanistic interpretability of text-to-image diffusion models on WebGPU.
 *
 * Everything model-sized runs in hand-written WGSL compute kernels; this module works the same under Deno and in
 * browsers (files, processes and the CLI live in `cli.ts`, `src/io/` and `src/cli/`).
 *
 * ```ts ignore
 * import { createContext, Hooks, loadPipeline, urlModelFiles } from "@diffscope/diffscope";
 * const ctx = await createContext();
 * const pipe = await loadPipeline(ctx, urlModelFiles("/models/sd-v1-4/"));
 * const hooks = new Hooks();
 * const delta = hooks.capture("mid_block.attentions.0.delta", { steps: [0], half: "cond" });
 * const { pixels } = await pipe.generate({ prompt: "a photo of a dog", steps: 25, seed: 1, hooks });
 * ```
 * @module
 */
export * from "./src/gpu/mod.ts";
export * from "./src/ops/mod.ts";
export * from "./src/autodiff/tape.ts";
export * from "./src/autodiff/ops.ts";
export * from "./src/autodiff/loss.ts";
export * from "./src/autodiff/select.ts";
export * from "./src/optim/mod.ts";
export * from "./src/hooks/hooks.ts";
export * from "./src/safetensors/mod.ts";
export * from "./src/text/tokenizer.ts";
export { createScheduler, NoiseScheduler, SCHEDULER_CLASSES } from "./src/schedulers/mod.ts";
export * from "./src/models/files.ts";
export * from "./src/models/checkpoint.ts";
export * from "./src/models/unet/config.ts";
export * from "./src/models/unet/arch.ts";
export * from "./src/models/unet/model.ts";
export * from "./src/models/unet/load.ts";
export * from "./src/models/unet/random.ts";
export * from "./src/models/clip/mod.ts";
export * from "./src/models/vae/mod.ts";
export * from "./src/pipeline/stable_diffusion.ts";
export * from "./src/cad/mod.ts";
export * from "./src/selfcheck.ts";
export * from "./src/info.ts";
export * from "./src/sae/mod.ts";
