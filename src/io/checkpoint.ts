/**
 * Small f32 checkpoints (named tensors + string metadata) for resumable runs, written atomically.
 * @module
 */
import { openSafetensorsFile, writeSafetensorsFile } from "./safetensors_file.ts";
import type { TensorToWrite } from "../safetensors/writer.ts";

/** Writes the tensors (flat f32, shape [n]) and metadata. */
export async function writeCheckpoint(
  path: string,
  tensors: ReadonlyMap<string, Float32Array>,
  meta: Record<string, string>,
): Promise<void> {
  const out: Record<string, TensorToWrite> = {};
  for (const [n, d] of tensors) out[n] = { dtype: "F32", shape: [d.length], data: d };
  await writeSafetensorsFile(path, out, meta);
}

/** Reads a checkpoint written by {@linkcode writeCheckpoint}. */
export async function readF32Checkpoint(
  path: string,
): Promise<{ tensors: Map<string, Float32Array>; meta: Readonly<Record<string, string>> }> {
  await using st = await openSafetensorsFile(path);
  const tensors = new Map<string, Float32Array>();
  for (const n of st.names) tensors.set(n, await st.readF32(n));
  return { tensors, meta: st.metadata };
}
