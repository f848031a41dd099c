/**
 * Reading and writing safetensors, the checkpoint format of Stable Diffusion and diffusers, in any runtime.
 *
 * A file is opened from a {@linkcode ByteSource} (bytes in memory, a `Blob`/`File`, HTTP range requests; a Deno file
 * in `src/io/safetensors_file.ts`): the header is validated, then tensors are read one at a time.
 *
 * ```ts
 * import { encodeSafetensors, memorySource, openSafetensors, toInt32 } from "./mod.ts";
 *
 * const bytes = encodeSafetensors(
 *   {
 *     "conv_in.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
 *     "timesteps": { dtype: "I64", shape: [2], data: new BigInt64Array([981n, 1n]) },
 *   },
 *   { format: "pt" },
 * );
 * const st = await openSafetensors(memorySource(bytes), "model.safetensors");
 * console.log(st.names, st.metadata); // ["timesteps", "conv_in.weight"] { format: "pt" }
 * const w = await st.readF32("conv_in.weight"); // Float32Array(6)
 * const t = toInt32(await st.read("timesteps")); // Int32Array [981, 1]
 * ```
 * @module
 */
export * from "./format.ts";
export * from "./source.ts";
export * from "./reader.ts";
export * from "./convert.ts";
export * from "./writer.ts";
