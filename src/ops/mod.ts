/**
 * Every op: forward kernels and their backward, each validating shapes before encoding.
 * @module
 */
export * from "./attention.ts";
export * from "./axpy.ts";
export * from "./binary.ts";
export * from "./cfg.ts";
export * from "./concat.ts";
export * from "./conv2d.ts";
export * from "./conv2d_bwd.ts";
export * from "./embedding.ts";
export * from "./fill.ts";
export * from "./from_rgba8.ts";
export * from "./geglu.ts";
export * from "./group_norm.ts";
export * from "./layer_norm.ts";
export * from "./lincomb.ts";
export * from "./matmul.ts";
export * from "./permute.ts";
export * from "./reduce.ts";
export * from "./resize.ts";
export * from "./softmax.ts";
export * from "./timestep_embedding.ts";
export * from "./topk.ts";
export * from "./unary.ts";
export * from "./upsample.ts";
