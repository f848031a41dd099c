/**
 * Checking a checkpoint's tensor names and shapes against what a model's config expects, before anything is
 * uploaded: every missing, unexpected and mis-shaped tensor is listed in one error.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { fmtShape, type Tensor } from "../gpu/tensor.ts";
import type { SafetensorsFile } from "../safetensors/reader.ts";
import { fill } from "../ops/fill.ts";

/** Thrown when a checkpoint does not fit its config. */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

/** The differences between expected and found tensors. */
export interface CheckpointDiff {
  missing: string[];
  unexpected: string[];
  misShaped: { name: string; expected: number[]; found: readonly number[] }[];
}

/** Compares a checkpoint's names and shapes with the expected ones. */
export function diffCheckpoint(
  expected: Map<string, number[]>,
  found: ReadonlyMap<string, readonly number[]>,
): CheckpointDiff {
  const d: CheckpointDiff = { missing: [], unexpected: [], misShaped: [] };
  for (const [name, shape] of expected) {
    const f = found.get(name);
    if (!f) d.missing.push(name);
    else if (f.length !== shape.length || f.some((x, i) => x !== shape[i])) {
      d.misShaped.push({ name, expected: shape, found: f });
    }
  }
  for (const name of found.keys()) if (!expected.has(name)) d.unexpected.push(name);
  return d;
}

/** Throws one {@linkcode CheckpointError} listing every problem, or returns when names and shapes all match. */
export function checkCheckpoint(
  what: string,
  file: string,
  expected: Map<string, number[]>,
  found: ReadonlyMap<string, readonly number[]>,
): void {
  const d = diffCheckpoint(expected, found);
  const n = d.missing.length + d.unexpected.length + d.misShaped.length;
  if (n === 0) return;
  const lines = [`Cannot load ${what} from "${file}": ${n} tensor(s) do not match the config`];
  for (const m of d.missing) lines.push(`  missing:    ${m} (expected ${fmtShape(expected.get(m)!)})`);
  for (const u of d.unexpected) lines.push(`  unexpected: ${u} ${fmtShape(found.get(u)!)}`);
  for (const s of d.misShaped) {
    lines.push(`  mis-shaped: ${s.name} has shape ${fmtShape(s.found)}, config expects ${fmtShape(s.expected)}`);
  }
  throw new CheckpointError(lines.join("\n"));
}

/** Named tensors to build a model from (a checkpoint file, a fixture, or anything that can read by name). */
export interface TensorSource {
  /** For messages. */
  readonly name: string;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  readF32(name: string): Promise<Float32Array>;
}

/** The tensors of a safetensors file whose names start with `prefix` (the prefix is stripped). */
export function safetensorsSource(st: SafetensorsFile, prefix = ""): TensorSource {
  const shapes = new Map<string, readonly number[]>();
  for (const n of st.names) if (n.startsWith(prefix)) shapes.set(n.slice(prefix.length), st.info(n).shape);
  return { name: st.name, shapes, readF32: (n) => st.readF32(prefix + n) };
}

/**
 * Checks every name and shape of `source` against `expected`, then uploads the tensors one at a time (f32);
 * on failure, whatever was uploaded is released.
 */
export async function uploadChecked(
  ctx: GpuContext,
  what: string,
  expected: Map<string, number[]>,
  source: TensorSource,
  onProgress?: (done: number, total: number, name: string) => void,
): Promise<Map<string, Tensor>> {
  checkCheckpoint(what, source.name, expected, source.shapes);
  const params = new Map<string, Tensor>();
  let done = 0;
  try {
    for (const [name, shape] of expected) {
      params.set(name, ctx.upload(await source.readF32(name), shape, "f32", name));
      onProgress?.(++done, expected.size, name);
    }
  } catch (e) {
    for (const t of params.values()) ctx.release(t);
    throw e;
  }
  return params;
}

/**
 * Seeded random weights filled on the GPU, for benchmarks and model-sized tests: biases 0, norm weights 1, other
 * weights N(0, 1/fan_in) so activations keep a sane scale.
 */
export async function randomParams(
  ctx: GpuContext,
  shapes: Map<string, number[]>,
  seed = 0,
): Promise<Map<string, Tensor>> {
  const params = new Map<string, Tensor>();
  let i = 0;
  try {
    for (const [name, shape] of shapes) {
      const t = ctx.tensor(shape, "f32", name);
      params.set(name, t);
      const rec = ctx.recorder("random weights");
      if (name.endsWith(".bias")) fill(rec, t, { value: 0 });
      else if (/norm[^.]*\.weight$/.test(name)) fill(rec, t, { value: 1 });
      else {
        const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
        fill(rec, t, { normal: [0, 1 / Math.sqrt(fanIn)], seed: (seed * 7919 + i++) >>> 0 });
      }
      await rec.submit(); // one tensor per submit: model-sized fills stay within the driver's timeouts
    }
  } catch (e) {
    for (const t of params.values()) ctx.release(t);
    throw e;
  }
  await ctx.sync();
  return params;
}
