/**
 * SAEs as safetensors: the four parameters under PyTorch's names (`W_enc` [n, d], `b_enc` [n], `W_dec` [d, n],
 * `b_pre` [d], F32) and the config as JSON in `__metadata__["config"]` (snake_case keys, as the fixture's JSON), so
 * that PyTorch reads a file with `safetensors.safe_open(path, "pt")`: `json.loads(f.metadata()["config"])`,
 * `f.get_tensor("W_dec")`. Runtime-agnostic: writing goes through `serializeSafetensors`, reading through any
 * opened {@linkcode SafetensorsFile} (src/io/sae_files.ts does the local files).
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { checkCheckpoint } from "../models/checkpoint.ts";
import type { SafetensorsFile, TensorToWrite } from "../safetensors/mod.ts";
import { Sae, SAE_PARAM_NAMES, type SaeConfig, saeConfig, type SaeParamName, saeParamShapes } from "./model.ts";

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
