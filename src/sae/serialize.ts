/**
 * SAEs as safetensors: the four parameters under PyTorch's names (`W_enc` [n, d], `b_enc` [n], `W_dec` [d, n],
 * `b_pre` [d], F32) and the config as JSON in `__metadata__["config"]` (snake_case keys, as the fixture's JSON), so
 * that PyTorch reads a file with `safetensors.safe_open(path, "pt")`: `json.loads(f.metadata()["config"])`,
 * `f.get_tensor("W_dec")`. Runtime-agnostic: writing goes through `serializeSafetensors`, reading through any
 * opened {@linkcode SafetensorsFile} (src/io/sae_files.ts does the local files). A training checkpoint is an SAE
 * file plus the trainer's state under `state/` (Adam's moments, the dead-latent counter, the row order).
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { checkCheckpoint } from "../models/checkpoint.ts";
import type { SafetensorsFile, TensorToWrite } from "../safetensors/mod.ts";
import { Sae, SAE_PARAM_NAMES, type SaeConfig, saeConfig, type SaeParamName, saeParamShapes } from "./model.ts";
import type { TrainState } from "./train.ts";

/** Marks files written here (`__metadata__["diffscope"]`). */
export const SAE_FILE_KIND = "sae-topk";

/** The tensors and metadata of an SAE file; tensor data is read back from the GPU when the writer gets to it. */
export function saeToSafetensors(
  sae: Sae,
  extra: Readonly<Record<string, unknown>> = {},
): { tensors: Record<string, TensorToWrite>; metadata: Record<string, string> } {
  const c = sae.config;
  const shapes = saeParamShapes(c);
  const tensors: Record<string, TensorToWrite> = {};
  for (const name of SAE_PARAM_NAMES) {
    tensors[name] = { dtype: "F32", shape: shapes[name], data: () => sae.ctx.readF32(sae.params[name]) };
  }
  const config = { d: c.d, n_latents: c.nLatents, k: c.k, relu: c.relu, ...extra };
  return { tensors, metadata: { format: "pt", diffscope: SAE_FILE_KIND, config: JSON.stringify(config) } };
}

/** What the caller may supply when loading: config fields a bare file lacks, and a prefix of the tensor names. */
export interface SaeLoadOptions extends Partial<SaeConfig> {
  /** Prepended to each parameter name (e.g. "param/" for the test fixture `sae-topk.safetensors`). */
  prefix?: string;
}

/** The SAE config a file's metadata holds (and the rest of its JSON), or what `given` supplies for a bare file. */
export function saeConfigOf(
  st: SafetensorsFile,
  given: SaeLoadOptions = {},
): { config: SaeConfig; extra: Record<string, unknown> } {
  let json: Record<string, unknown> = {};
  if (st.metadata.config !== undefined) {
    try {
      json = JSON.parse(st.metadata.config);
    } catch (e) {
      throw new TypeError(`Cannot load SAE ${st.name}: its metadata "config" is not JSON (${(e as Error).message})`);
    }
  }
  const num = (k: string) => (typeof json[k] === "number" ? json[k] as number : undefined);
  const wEncName = `${given.prefix ?? ""}W_enc`;
  const wEnc = st.has(wEncName) ? st.info(wEncName).shape : undefined;
  const k = given.k ?? num("k");
  if (k === undefined) {
    throw new TypeError(`Cannot load SAE ${st.name}: no "k" in its metadata config; pass it ({ k })`);
  }
  const config = saeConfig({
    d: given.d ?? num("d") ?? wEnc?.[1] ?? 0,
    nLatents: given.nLatents ?? num("n_latents") ?? wEnc?.[0],
    k,
    relu: given.relu ?? (typeof json.relu === "boolean" ? json.relu : true),
  });
  const { d: _d, n_latents: _n, k: _k, relu: _r, ...extra } = json;
  return { config, extra };
}

/**
 * Loads an SAE from an opened safetensors file: every parameter must be there with the config's shape (all
 * problems are listed in one error); other tensors (training state) are ignored.
 */
export async function saeFromSafetensors(
  ctx: GpuContext,
  st: SafetensorsFile,
  given: SaeLoadOptions = {},
): Promise<{ sae: Sae; extra: Record<string, unknown> }> {
  const { config, extra } = saeConfigOf(st, given);
  const prefix = given.prefix ?? "";
  const shapes = saeParamShapes(config);
  const expected = new Map(SAE_PARAM_NAMES.map((name) => [prefix + name, shapes[name]]));
  const found = new Map<string, readonly number[]>();
  for (const name of expected.keys()) if (st.has(name)) found.set(name, st.info(name).shape);
  checkCheckpoint("SAE", st.name, expected, found);
  const data = {} as Record<SaeParamName, Float32Array>;
  for (const name of SAE_PARAM_NAMES) data[name] = await st.readF32(prefix + name);
  return { sae: Sae.fromArrays(ctx, config, data), extra };
}

/** Where a checkpoint keeps the trainer's state: tensors under this prefix, scalars in `__metadata__["train_state"]`. */
export const TRAIN_STATE_PREFIX = "state/";

/**
 * A training checkpoint as safetensors: the SAE's four tensors (so any SAE loader reads it), and under `state/`
 * `adam/<param>.exp_avg`, `adam/<param>.exp_avg_sq` (F32), `dead_counter` [n] and `order/perm` [rows] (U32); the
 * step, Adam's step count, 1/Var(x) and the order's position and rng state as JSON in `train_state`.
 */
export function trainStateToSafetensors(
  config: SaeConfig,
  state: TrainState,
  extra: Readonly<Record<string, unknown>> = {},
): { tensors: Record<string, TensorToWrite>; metadata: Record<string, string> } {
  const shapes = saeParamShapes(config);
  const tensors: Record<string, TensorToWrite> = {};
  for (const name of SAE_PARAM_NAMES) tensors[name] = { dtype: "F32", shape: shapes[name], data: state.params[name] };
  for (const [name, v] of Object.entries(state.adam.moments)) {
    const param = name.replace(/\.exp_avg(_sq)?$/, "") as SaeParamName;
    tensors[`${TRAIN_STATE_PREFIX}adam/${name}`] = { dtype: "F32", shape: shapes[param] ?? [v.length], data: v };
  }
  if (state.deadCounter) {
    tensors[`${TRAIN_STATE_PREFIX}dead_counter`] = {
      dtype: "U32",
      shape: [state.deadCounter.length],
      data: state.deadCounter,
    };
  }
  const { perm, at, rand } = state.order;
  tensors[`${TRAIN_STATE_PREFIX}order/perm`] = { dtype: "U32", shape: [perm.length], data: perm };
  const scalars = {
    step: state.step,
    adam_step: state.adam.step,
    mse_scale: state.mseScale,
    order_at: at,
    order_rand: rand,
  };
  const config_ = { d: config.d, n_latents: config.nLatents, k: config.k, relu: config.relu, ...extra };
  return {
    tensors,
    metadata: {
      format: "pt",
      diffscope: SAE_FILE_KIND,
      config: JSON.stringify(config_),
      train_state: JSON.stringify(scalars),
    },
  };
}

/**
 * Reads a checkpoint written with {@linkcode trainStateToSafetensors} back into a {@linkcode TrainState} (host
 * arrays), with the SAE config and the rest of its config JSON. Every missing or mis-shaped tensor is named.
 */
export async function trainStateFromSafetensors(
  st: SafetensorsFile,
): Promise<{ state: TrainState; config: SaeConfig; extra: Record<string, unknown> }> {
  const { config, extra } = saeConfigOf(st);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(st.metadata.train_state ?? "null");
  } catch (e) {
    throw new TypeError(
      `Cannot resume from ${st.name}: its metadata "train_state" is not JSON (${(e as Error).message})`,
    );
  }
  const scalars = ["step", "adam_step", "mse_scale", "order_at", "order_rand"];
  const bad = json === null ? scalars : scalars.filter((k) => typeof json[k] !== "number");
  if (bad.length) {
    throw new TypeError(
      `Cannot resume from ${st.name}: it is not a training checkpoint (its metadata "train_state" lacks ${
        bad.join(", ")
      })`,
    );
  }
  const shapes = saeParamShapes(config);
  const P = TRAIN_STATE_PREFIX;
  const permName = `${P}order/perm`, deadName = `${P}dead_counter`;
  const rows = st.has(permName) ? st.info(permName).shape[0] : 0;
  const expected = new Map<string, number[]>([[permName, [rows]]]);
  for (const name of SAE_PARAM_NAMES) {
    expected.set(name, shapes[name]);
    expected.set(`${P}adam/${name}.exp_avg`, shapes[name]);
    expected.set(`${P}adam/${name}.exp_avg_sq`, shapes[name]);
  }
  if (st.has(deadName)) expected.set(deadName, [config.nLatents]);
  const found = new Map<string, readonly number[]>();
  for (const name of st.names) found.set(name, st.info(name).shape);
  checkCheckpoint("a training state", st.name, expected, found);
  const u32 = async (name: string) => {
    const t = await st.read(name);
    if (t.dtype !== "U32") throw new TypeError(`Cannot resume from ${st.name}: "${name}" is ${t.dtype}, not U32`);
    return new Uint32Array(t.data.slice().buffer);
  };
  const params = {} as Record<SaeParamName, Float32Array>;
  const moments: Record<string, Float32Array> = {};
  for (const name of SAE_PARAM_NAMES) {
    params[name] = await st.readF32(name);
    for (const m of ["exp_avg", "exp_avg_sq"]) moments[`${name}.${m}`] = await st.readF32(`${P}adam/${name}.${m}`);
  }
  const num = (k: string) => json[k] as number;
  const state: TrainState = {
    step: num("step"),
    mseScale: num("mse_scale"),
    params,
    adam: { step: num("adam_step"), moments },
    deadCounter: st.has(deadName) ? await u32(deadName) : null,
    order: { perm: await u32(permName), at: num("order_at"), rand: num("order_rand") },
  };
  return { state, config, extra };
}
