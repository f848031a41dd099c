/**
 * f16 weight operands: variants of an f32 kernel whose weight binding holds f16, made from the same WGSL text. The
 * kernels read every element of a substitutable binding through a conversion (`vec4<f32>(w[i])`, `f32(w[i][j])`:
 * the identity on f32), so swapping the element type of its declaration is the whole change; math and
 * accumulation stay f32.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { defineKernels, type KernelSpec } from "../gpu/kernel.ts";

/** `source` with storage binding `name` declared as f16 (`array<f16>` or `array<vec4<f16>>`) and f16 enabled. */
export function withF16Binding(file: string, source: string, name: string): string {
  const decl = new RegExp(`(var\\s*<\\s*storage\\s*,\\s*read\\s*>\\s*${name}\\s*:\\s*array<(?:vec4<)?)f32\\b`);
  if (!decl.test(source)) throw new Error(`${file}: no read-only f32 storage binding "${name}" to store as f16`);
  return `enable f16; ${source.replace(decl, "$1f16")}`; // on line 1: error line numbers stay those of the file
}

/** The entry points of `file` with binding `name` holding f16; the file name in messages says so. */
export function defineF16Kernels<const E extends readonly string[]>(
  file: string,
  source: string,
  name: string,
  entries: E,
): Record<E[number], KernelSpec> {
  return defineKernels(`${file} [${name}: f16]`, withF16Binding(file, source, name), entries);
}

/** Throws unless the device can run f16 kernels (the `shader-f16` feature). */
export function requireShaderF16(ctx: GpuContext, what: string): void {
  if (!ctx.hasF16) {
    throw new TypeError(
      `${what} needs f16 weights support, but this device lacks the WebGPU feature "shader-f16"; ` +
        `load the weights as "f32" instead`,
    );
  }
}
