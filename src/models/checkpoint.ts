/**
 * Checking a checkpoint's tensor names and shapes against what a model's config expects, before anything is
 * uploaded: every missing, unexpected and mis-shaped tensor is listed in one error.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import type { SafetensorsFile } from "../safetensors/reader.ts";
import type { SafetensorsTensor } from "../safetensors/convert.ts";
import { fill } from "../ops/fill.ts";
import { cast } from "../ops/cast.ts";
import { requireShaderF16 } from "../ops/_f16.ts";

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
  /** The tensor's bytes as stored (lets f16 loading skip the CPU: F16 goes up as is, F32/BF16 convert on the GPU). */
  read?(name: string): Promise<SafetensorsTensor>;
}

/** The tensors of a safetensors file whose names start with `prefix` (the prefix is stripped). */
export function safetensorsSource(st: SafetensorsFile, prefix = ""): TensorSource {
  const shapes = new Map<string, readonly number[]>();
  for (const n of st.names) if (n.startsWith(prefix)) shapes.set(n.slice(prefix.length), st.info(n).shape);
  return { name: st.name, shapes, readF32: (n) => st.readF32(prefix + n), read: (n) => st.read(prefix + n) };
}

/**
 * How a model's weight matrices are stored on the GPU. "f16" halves their memory (SD v1.x's U-Net: 3.2 → 1.6 GiB)
 * for inference: linear and conv weights are stored as f16 and read as f16 by matmul and conv2d, which compute in
 * f32; biases, norms and embeddings stay f32. Needs the device feature `shader-f16`; gradients of f16 weights
 * cannot be taken (frozen f16 weights still pass gradients on to activations).
 */
export type WeightStorage = "f32" | "f16";

/** Options of {@linkcode uploadChecked} and of the `…FromSource` model builders. */
export interface UploadOptions {
  /** Called after each tensor is uploaded. */
  onProgress?: (done: number, total: number, name: string) => void;
  /** How weight matrices are stored (default "f32"). */
  weights?: WeightStorage;
}

/**
 * Whether a parameter is stored as f16 under `weights: "f16"`: the weight of a linear (rank 2) or a conv (rank 4),
 * which only matmul and conv2d read. Embedding tables (`*_embedding.weight`) stay f32: other ops read them.
 */
export function storedAsF16(name: string, shape: readonly number[]): boolean {
  return name.endsWith(".weight") && (shape.length === 2 || shape.length === 4) && !/_embedding\.weight$/.test(name);
}

/** Throws unless `weights` is a known storage and the device can run it. */
export function checkWeightStorage(ctx: GpuContext, what: string, weights: WeightStorage = "f32"): WeightStorage {
  if (weights !== "f32" && weights !== "f16") {
    throw new TypeError(`Cannot load ${what}: weights must be "f32" or "f16", got ${JSON.stringify(weights)}`);
  }
  if (weights === "f16") requireShaderF16(ctx, `Loading ${what} with weights "f16"`);
  return weights;
}

/**
 * Uploads one tensor as f16: F16 bytes as they are, F32 and BF16 bytes converted on the GPU (one small submit per
 * tensor, the f32/bf16 staging tensor freed after it), anything else through f32 on the CPU.
 */
export async function uploadF16(
  ctx: GpuContext,
  source: TensorSource,
  name: string,
  shape: readonly number[],
): Promise<Tensor> {
  const raw = await source.read?.(name);
  if (raw?.dtype === "F16") {
    const t = ctx.tensor(shape, "f16", name);
    writeRaw(ctx, t, raw.data);
    return t;
  }
  let staging: Tensor;
  if (raw?.dtype === "BF16") {
    staging = ctx.tensor([Math.ceil(numel(shape) / 2)], "u32", `${name} (bf16)`);
    writeRaw(ctx, staging, raw.data);
  } else {
    staging = ctx.upload(await source.readF32(name), shape, "f32", `${name} (f32)`);
  }
  const t = ctx.tensor(shape, "f16", name);
  try {
    const rec = ctx.recorder(`${name} to f16`);
    cast(rec, staging, { to: "f16", bf16Shape: staging.dtype === "u32" ? shape : undefined, out: t });
    await rec.submit();
    return t;
  } catch (e) {
    ctx.release(t);
    throw e;
  } finally {
    ctx.release(staging); // safe once submitted: WebGPU keeps it for the work already queued
  }
}

/** Copies bytes into a tensor's buffer as they are (padded to whole 32-bit words, as WebGPU writes need). */
function writeRaw(ctx: GpuContext, t: Tensor, data: Uint8Array): void {
  if (data.byteLength === 0) return;
  const bytes = data.byteLength % 4 || data.byteOffset % 4 ? new Uint8Array(Math.ceil(data.byteLength / 4) * 4) : data;
  if (bytes !== data) bytes.set(data);
  ctx.device.queue.writeBuffer(t.buffer, t.offset, bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Checks every name and shape of `source` against `expected`, then uploads the tensors one at a time (f32, or f16
 * for the weight matrices with `weights: "f16"`); on failure, whatever was uploaded is released.
 */
export async function uploadChecked(
  ctx: GpuContext,
  what: string,
  expected: Map<string, number[]>,
  source: TensorSource,
  opts: UploadOptions = {},
): Promise<Map<string, Tensor>> {
  const half = checkWeightStorage(ctx, what, opts.weights) === "f16";
  checkCheckpoint(what, source.name, expected, source.shapes);
  const params = new Map<string, Tensor>();
  let done = 0;
  try {
    for (const [name, shape] of expected) {
      params.set(
        name,
        half && storedAsF16(name, shape)
          ? await uploadF16(ctx, source, name, shape)
          : ctx.upload(await source.readF32(name), shape, "f32", name),
      );
      opts.onProgress?.(++done, expected.size, name);
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
  weights: WeightStorage = "f32",
): Promise<Map<string, Tensor>> {
  checkWeightStorage(ctx, "random weights", weights);
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
        if (weights === "f16" && storedAsF16(name, shape)) { // the same values, rounded to f16 on the GPU
          params.set(name, cast(rec, t, { to: "f16" }));
          rec.releaseAfterSubmit(t);
        }
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
