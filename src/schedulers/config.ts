/**
 * Reading a diffusers `scheduler_config.json`: a JSON parser that accepts the `NaN`/`Infinity` tokens Python's
 * `json.dump` writes (DPM-Solver configs carry `"lambda_min_clipped": -Infinity`), and a reader that fills in each
 * class's diffusers v0.25.0 defaults and rejects values diffscope does not implement, naming the field.
 * @module
 */

/** A scheduler config as parsed from JSON: field name → value. */
export type RawSchedulerConfig = Readonly<Record<string, unknown>>;

/** What the model predicts: the noise ε, or v = α·ε − σ·x₀ (SD 2.x 768-px models). */
export type PredictionType = "epsilon" | "v_prediction";
/** How inference timesteps are spread over the training timesteps (Table 2 of arXiv:2305.08891). */
export type TimestepSpacing = "leading" | "trailing" | "linspace";
/** Training β schedules. */
export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";

/** Fields every supported scheduler reads (diffusers names, so configs round-trip). */
export interface CommonConfig {
  /** Training timesteps N (1000 for SD). */
  readonly num_train_timesteps: number;
  /** β at t = 0 and at t = N − 1 (ignored by `squaredcos_cap_v2` and when `trained_betas` is given). */
  readonly beta_start: number;
  readonly beta_end: number;
  readonly beta_schedule: BetaSchedule;
  /** Explicit βs, overriding the schedule. */
  readonly trained_betas: readonly number[] | null;
  readonly prediction_type: PredictionType;
  readonly timestep_spacing: TimestepSpacing;
  /** Added to "leading" timesteps (SD v1: 1, giving 981 … 1 rather than 980 … 0). */
  readonly steps_offset: number;
}

const SENTINEL = "\u0000diffscope-number:";

/**
 * Parses a scheduler config file. Besides standard JSON it accepts bare `NaN`, `Infinity` and `-Infinity`
 * (Python's `json` writes them); throws naming `source` when the text is not JSON or not an object.
 */
export function parseSchedulerConfig(text: string, source = "scheduler config"): Record<string, unknown> {
  let out = "", inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      out += ch;
      if (ch === "\\") out += text[++i] ?? "";
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    const m = inString ? null : /^(-?Infinity|NaN)/.exec(text.slice(i, i + 9));
    if (m) {
      out += JSON.stringify(SENTINEL + m[1]);
      i += m[1].length - 1;
    } else out += ch;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(
      out,
      (_k, v) => typeof v === "string" && v.startsWith(SENTINEL) ? +v.slice(SENTINEL.length) : v,
    );
  } catch (e) {
    throw new SyntaxError(`Cannot parse ${source}: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new TypeError(`Cannot parse ${source}: expected a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** Reads fields of one config with diffusers' defaults; every error names the class, the source and the field. */
export class ConfigReader {
  constructor(readonly className: string, readonly raw: RawSchedulerConfig, readonly source?: string) {}

  /** Throws `Ctor` with "<class> (<source>): <field> <message>". */
  fail(field: string, message: string, Ctor: ErrorConstructor = RangeError): never {
    const where = this.source ? `${this.className} (${this.source})` : this.className;
    throw new Ctor(`${where}: ${field} ${message}`);
  }

  #get(field: string): unknown {
    return this.raw[field];
  }

  /** A number (an integer if `integer`), or `dflt` when absent. */
  number(field: string, dflt: number, integer = false): number {
    const v = this.#get(field) ?? dflt;
    if (typeof v !== "number" || Number.isNaN(v)) {
      this.fail(field, `must be a number, got ${JSON.stringify(v)}`, TypeError);
    }
    if (integer && !Number.isInteger(v)) this.fail(field, `must be an integer, got ${v}`);
    return v;
  }

  /** A boolean, or `dflt` when absent or null. */
  bool(field: string, dflt: boolean): boolean {
    const v = this.#get(field) ?? dflt;
    if (typeof v !== "boolean") this.fail(field, `must be true or false, got ${JSON.stringify(v)}`, TypeError);
    return v;
  }

  /** One of `allowed`, or `dflt` when absent or null; any other value is "not supported". */
  oneOf<T extends string | number>(field: string, dflt: T, allowed: readonly T[]): T {
    const v = this.#get(field) ?? dflt;
    if (!allowed.includes(v as T)) {
      const list = allowed.map((a) => JSON.stringify(a)).join(", ");
      this.fail(field, `${JSON.stringify(v)} is not supported (supported: ${list})`);
    }
    return v as T;
  }

  /** A field diffscope implements only at one value (e.g. `thresholding: false`); absent means `dflt`. */
  only<T extends string | number | boolean | null>(field: string, dflt: T, supported: T): T {
    const v = this.#get(field) ?? dflt;
    if (v !== supported) {
      this.fail(field, `${JSON.stringify(v)} is not supported (only ${JSON.stringify(supported)} is implemented)`);
    }
    return v as T;
  }

  /** The fields every scheduler shares; `spacing` is the class's default `timestep_spacing`. */
  common(spacing: TimestepSpacing): CommonConfig {
    const trained = this.#get("trained_betas") ?? null;
    if (trained !== null && (!Array.isArray(trained) || trained.some((b) => typeof b !== "number"))) {
      this.fail("trained_betas", "must be null or a list of numbers", TypeError);
    }
    const num_train_timesteps = this.number("num_train_timesteps", 1000, true);
    if (num_train_timesteps < 2) this.fail("num_train_timesteps", `must be at least 2, got ${num_train_timesteps}`);
    if (trained && trained.length !== num_train_timesteps) {
      this.fail("trained_betas", `has ${trained.length} values, num_train_timesteps is ${num_train_timesteps}`);
    }
    this.only("rescale_betas_zero_snr", false, false);
    const steps_offset = this.number("steps_offset", 0, true);
    return {
      num_train_timesteps,
      beta_start: this.number("beta_start", 0.0001),
      beta_end: this.number("beta_end", 0.02),
      beta_schedule: this.oneOf<BetaSchedule>("beta_schedule", "linear", [
        "linear",
        "scaled_linear",
        "squaredcos_cap_v2",
      ]),
      trained_betas: trained as number[] | null,
      prediction_type: this.oneOf<PredictionType>("prediction_type", "epsilon", ["epsilon", "v_prediction"]),
      timestep_spacing: this.oneOf<TimestepSpacing>("timestep_spacing", spacing, ["leading", "trailing", "linspace"]),
      steps_offset,
    };
  }
}
