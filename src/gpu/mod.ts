/**
 * The thin WebGPU runtime: context, tensors, kernels and the recorder.
 * @module
 */
export * from "./context.ts";
export * from "./kernel.ts";
export * from "./recorder.ts";
export * from "./tensor.ts";
