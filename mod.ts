/**
 * diffscope: mechanistic interpretability of text-to-image diffusion models on WebGPU.
 *
 * Everything model-sized runs in hand-written WGSL compute kernels; this module works the same under Deno and in
 * browsers (files, processes and the CLI live in `cli.ts` and `src/io/`).
 *
 * ```ts
 * import { createContext, matmul } from "@diffscope/diffscope";
 * const ctx = await createContext();
 * ```
 * @module
 */
export * from "./src/gpu/mod.ts";
export * from "./src/ops/binary.ts";
export * from "./src/selfcheck.ts";
export * from "./src/safetensors/mod.ts";
export * from "./src/text/tokenizer.ts";
export * from "./src/schedulers/mod.ts";
export * from "./src/models/clip/mod.ts";
