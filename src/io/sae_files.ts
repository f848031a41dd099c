/**
 * SAE files on the local disk (Deno only): saving and loading an SAE as safetensors (src/sae/serialize.ts gives the
 * layout PyTorch reads), periodic training checkpoints (the SAE alone, or with the full training state to resume
 * from), and a training source over an [N, d] activations file.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { openSafetensors, type SafetensorsFile } from "../safetensors/mod.ts";
import type { Sae, SaeConfig } from "../sae/model.ts";
import {
  saeFromSafetensors,
  type SaeLoadOptions,
  saeToSafetensors,
  trainStateFromSafetensors,
  trainStateToSafetensors,
} from "../sae/serialize.ts";
import { type ActivationSource, safetensorsActivations } from "../sae/sources.ts";
import type { ResolvedTrainConfig, SaeCheckpoint, TrainState } from "../sae/train.ts";
import { fileSource, openSafetensorsFile, writeSafetensorsFile } from "./safetensors_file.ts";

/**
 * Writes `sae` to `path` (atomically: a partial file is renamed into place once complete). `extra` goes into the
 * metadata's config JSON beside d, n_latents, k and relu (training settings, the step).
 *
 * ```ts ignore
 * await saveSaeFile("mid_block_k10.safetensors", sae, { k_aux: 256, step: 2000 });
 * ```
 */
export async function saveSaeFile(
  path: string,
  sae: Sae,
  extra: Readonly<Record<string, unknown>> = {},
): Promise<void> {
  const { tensors, metadata } = saeToSafetensors(sae, extra);
  await writeSafetensorsFile(path, tensors, metadata);
}

/**
 * Loads an SAE written by {@linkcode saveSaeFile}, or any file with the four tensors (pass `k` if it has no config,
 * and `prefix` if its names carry one, as the fixture's `param/W_enc`).
 */
export async function loadSaeFile(
  ctx: GpuContext,
  path: string | URL,
  given: SaeLoadOptions = {},
): Promise<{ sae: Sae; extra: Record<string, unknown> }> {
  await using st = await openSafetensorsFile(path);
  return await saeFromSafetensors(ctx, st, given);
}

/**
 * An `onCheckpoint` for `trainSAE` that writes `<dir>/<prefix><step>.safetensors` (the directory is created), with the
 * training config (snake_case keys, as PyTorch code spells them), 1/Var(x) and the step in the metadata.
 */
export function checkpointWriter(dir: string, prefix = "sae_step"): (c: SaeCheckpoint) => Promise<void> {
  return async ({ sae, step, config, mseScale }) => {
    await Deno.mkdir(dir, { recursive: true });
    await saveSaeFile(`${dir}/${prefix}${step}.safetensors`, sae, {
      mse_scale: mseScale,
      step,
      ...trainConfigJson(config),
    });
  };
}

/**
 * The training settings of a resolved config as JSON for a file's metadata: snake_case keys (as PyTorch code spells
 * them), without the SAE's own d, n_latents, k and relu; an lr schedule is written as "schedule".
 */
export function trainConfigJson(config: ResolvedTrainConfig): Record<string, unknown> {
  const { d: _d, nLatents: _n, k: _k, relu: _r, ...rest } = config;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(rest)) {
    out[key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = typeof v === "function" ? "schedule" : v;
  }
  return out;
}

/**
 * Writes a checkpoint to resume training from (atomically): the SAE's tensors, so `loadSaeFile` reads it as an SAE,
 * plus the training state (see `trainStateToSafetensors`); `extra` goes into the config JSON.
 *
 * ```ts ignore
 * await trainSAE(ctx, src, config, {
 *   checkpointEvery: 1000,
 *   onCheckpoint: async (c) => saveTrainCheckpoint("run.ckpt.safetensors", c.sae.config, await c.state()),
 * });
 * ```
 */
export async function saveTrainCheckpoint(
  path: string,
  config: SaeConfig,
  state: TrainState,
  extra: Readonly<Record<string, unknown>> = {},
): Promise<void> {
  const { tensors, metadata } = trainStateToSafetensors(config, state, extra);
  await writeSafetensorsFile(path, tensors, metadata);
}

/** Reads a checkpoint written by {@linkcode saveTrainCheckpoint}: the state to pass as `trainSAE`'s `resume`. */
export async function loadTrainCheckpoint(
  path: string | URL,
): Promise<{ state: TrainState; config: SaeConfig; extra: Record<string, unknown> }> {
  await using st = await openSafetensorsFile(path);
  return await trainStateFromSafetensors(st);
}

/** An activation source over a local safetensors file; close it when training is done. */
export interface ActivationFile extends ActivationSource {
  readonly file: SafetensorsFile;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens an [N, d] activations file (`name` may be omitted when it holds one tensor) as a training source whose
 * batches are read row by row, never loading the whole file.
 *
 * ```ts ignore
 * await using acts = await openActivationsFile("mid_block_deltas.safetensors");
 * const { sae } = await trainSAE(ctx, acts, { d: acts.d, k: 10 });
 * ```
 */
export async function openActivationsFile(path: string | URL, name?: string): Promise<ActivationFile> {
  const bytes = await fileSource(path);
  try {
    const file = await openSafetensors(bytes);
    const src = safetensorsActivations(bytes, file, name);
    const close = () => file.close();
    return { rows: src.rows, d: src.d, batch: src.batch, file, close, [Symbol.asyncDispose]: close };
  } catch (e) {
    bytes.close();
    throw e;
  }
}
