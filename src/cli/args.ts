/**
 * What every command of cli.ts shares: the usage error, checked readers of parsed flag values, and running a command
 * on a fresh GPU context. Deno edge code.
 * @module
 */
import { createContext, type GpuContext } from "../gpu/context.ts";

/** A bad command line: cli.ts prints the message with the usage text and exits with status 2. */
export class UsageError extends Error {}

/** Checked readers of `parseArgs` values; each failure is a {@linkcode UsageError} naming the flag and its value. */
export interface Flags {
  /** Throws unless every flag in `names` was given (non-empty). */
  require(...names: string[]): void;
  /** An integer ≥ `min` (the flag must have a value or a default). */
  int(name: string, min?: number): number;
  /** As `int`, or undefined when the flag is absent. */
  optInt(name: string, min?: number): number | undefined;
  /** A finite number (the flag must have a value or a default). */
  num(name: string): number;
  /** As `num`, or undefined when the flag is absent. */
  optNum(name: string): number | undefined;
  /** One of `choices` (or undefined when absent). */
  oneOf<T extends string>(name: string, choices: readonly T[]): T | undefined;
}

/** {@linkcode Flags} over the `values` of a `parseArgs` result. */
export function flags(values: Readonly<Record<string, unknown>>): Flags {
  const raw = (name: string) => values[name] as string | undefined;
  const optInt = (name: string, min = 0) => {
    if (raw(name) === undefined) return undefined;
    const v = Number(raw(name));
    if (!Number.isInteger(v) || v < min) {
      throw new UsageError(`--${name} must be an integer ≥ ${min}, got "${raw(name)}"`);
    }
    return v;
  };
  const optNum = (name: string) => {
    if (raw(name) === undefined) return undefined;
    const v = Number(raw(name));
    if (raw(name) === "" || !Number.isFinite(v)) throw new UsageError(`--${name} must be a number, got "${raw(name)}"`);
    return v;
  };
  const present = <T>(name: string, v: T | undefined): T => {
    if (v === undefined) throw new UsageError(`--${name} is required`);
    return v;
  };
  return {
    require(...names) {
      for (const name of names) if (values[name] === undefined || values[name] === "") present(name, undefined);
    },
    int: (name, min) => present(name, optInt(name, min)),
    optInt,
    num: (name) => present(name, optNum(name)),
    optNum,
    oneOf(name, choices) {
      const v = raw(name);
      if (v !== undefined && !(choices as readonly string[]).includes(v)) {
        throw new UsageError(`--${name} must be ${choices.join(", ")}; got "${v}"`);
      }
      return v as (typeof choices)[number] | undefined;
    },
  };
}

/** Runs a command on a fresh GPU context, prints its summary line and returns exit status 0. */
export async function withGpu(run: (ctx: GpuContext) => Promise<string>): Promise<number> {
  const ctx = await createContext();
  try {
    console.log(await run(ctx));
  } finally {
    ctx.destroy();
  }
  return 0;
}
