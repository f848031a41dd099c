/**
 * diffusers' `AutoencoderKL` (the Stable Diffusion VAE) on WebGPU: config parsing, the architecture as data,
 * loading (with legacy attention names), seeded random weights, and the encoder/decoder passes.
 *
 * ```ts ignore
 * const vae = await loadVAE(ctx, localModelFiles("stable-diffusion-v1-4"));
 * const image = await vae.decodeLatents(latents); // [1, 4, 64, 64] → [1, 3, 512, 512], values ≈ [−1, 1]
 * ```
 * @module
 */
export * from "./config.ts";
export * from "./arch.ts";
export * from "./model.ts";
export * from "./posterior.ts";
export * from "./load.ts";
export * from "./random.ts";
export * from "./flops.ts";
