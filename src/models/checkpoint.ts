/**
 * Checking a checkpoint's tensor names and shapes against what a model's config expects, before anything is
 * uploaded: every missing, unexpected and mis-shaped tensor is listed in one error.
 * @module
 */
import { fmtShape } from "../gpu/tensor.ts";

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
