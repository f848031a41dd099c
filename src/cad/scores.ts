/**
 * CAD attribution scores (Nguyen et al., "Unveiling Concept Attribution in Diffusion Models"): to first order,
 * zeroing a parameter w_i changes the concept score J by −w_i·∂J/∂w_i, so S = W ⊙ ∂J/∂W ranks the parameters that
 * carry a concept. This file holds the product and the metadata of a saved score set; reading and writing files is
 * in `src/io/cad_files.ts`.
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, type Tensor } from "../gpu/tensor.ts";
import { mul } from "../ops/binary.ts";
import type { AttributionMode } from "./attribute.ts";

/** Options of {@linkcode attributionScores}. */
export interface AttributionScoresOptions {
  /** Write S here instead of allocating (not a buffer of `param` or `grad`). */
  out?: Tensor;
}

/**
 * S = param ⊙ grad (f32, same shape, no broadcasting): the attribution of every entry of one parameter.
 *
 * ```ts ignore
 * const s = attributionScores(rec, unet.get("mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight"), g);
 * ```
 */
export function attributionScores(
  rec: Recorder,
  param: Tensor,
  grad: Tensor,
  opts: AttributionScoresOptions = {},
): Tensor {
  assertShape(
    `attributionScores: gradient "${grad.label}" (parameter "${param.label}" is ${fmtShape(param.shape)})`,
    grad.shape,
    param.shape,
  );
  return mul(rec, param, grad, { out: opts.out });
}

/** One parameter's scores on the host (read from a score file, or read back), for reports. */
export interface ScoreEntry {
  /** The parameter's name (diffusers module path). */
  name: string;
  shape: readonly number[];
  /** Row-major f32 values. */
  data: Float32Array;
}

/** What a score set was computed from; saved as the safetensors `__metadata__` of a score file. */
export interface ScoreMeta {
  /** The concept prompt or word (e.g. "parachute", "a photo in the style of Van Gogh"). */
  concept: string;
  /** "erase" (J = ‖ε(z_t, c) − sg(ε(z_t, ""))‖²) or "amplify" (the denoising loss on concept images). */
  mode: AttributionMode;
  /** The scheduler timesteps the gradients were summed over. */
  timesteps: number[];
  /** Samples (rollouts or concept images) per timestep. */
  samples: number;
  /** Seed of the noise. */
  seed: number;
  /** The model (e.g. "CompVis/stable-diffusion-v1-4"). */
  model: string;
}

/** The `format` metadata value of a score file. */
export const SCORE_FORMAT = "diffscope.cad.scores/1";

/**
 * The metadata of a score file: every value a string, as safetensors requires (numbers and the timestep list as
 * JSON), plus `format`.
 */
export function scoreMetadata(meta: ScoreMeta): Record<string, string> {
  checkMeta(meta, "scoreMetadata");
  return {
    format: SCORE_FORMAT,
    concept: meta.concept,
    mode: meta.mode,
    timesteps: JSON.stringify(meta.timesteps),
    samples: String(meta.samples),
    seed: String(meta.seed),
    model: meta.model,
  };
}

/** Parses {@linkcode scoreMetadata}'s output back; `file` names the file in errors. */
export function parseScoreMetadata(md: Readonly<Record<string, string>>, file: string): ScoreMeta {
  if (md.format !== SCORE_FORMAT) {
    throw new TypeError(
      `"${file}" is not a CAD score file: metadata "format" is ${
        JSON.stringify(md.format)
      }, expected "${SCORE_FORMAT}"`,
    );
  }
  let timesteps: unknown;
  try {
    timesteps = JSON.parse(md.timesteps ?? "");
  } catch {
    timesteps = md.timesteps;
  }
  const meta = {
    concept: md.concept,
    mode: md.mode as AttributionMode,
    timesteps: timesteps as number[],
    samples: Number(md.samples),
    seed: Number(md.seed),
    model: md.model,
  };
  checkMeta(meta, `"${file}"`);
  return meta;
}

function checkMeta(m: ScoreMeta, where: string): void {
  const bad = (field: string, want: string) =>
    new TypeError(`${where}: score metadata "${field}" is ${JSON.stringify(m[field as keyof ScoreMeta])}, ${want}`);
  if (typeof m.concept !== "string") throw bad("concept", "expected a string");
  if (m.mode !== "erase" && m.mode !== "amplify") throw bad("mode", `expected "erase" or "amplify"`);
  if (!Array.isArray(m.timesteps) || !m.timesteps.every((t) => Number.isInteger(t) && t >= 0)) {
    throw bad("timesteps", "expected a list of non-negative integers");
  }
  if (!Number.isInteger(m.samples) || m.samples < 1) throw bad("samples", "expected a positive integer");
  if (!Number.isSafeInteger(m.seed)) throw bad("seed", "expected an integer");
  if (typeof m.model !== "string") throw bad("model", "expected a string");
}
