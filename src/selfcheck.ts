/**
 * Kernel self-check: runs small cases of each kernel on the current device and compares them with the CPU
 * references. `diffscope info` prints it; the browser test runs it in Chromium. Runtime-agnostic.
 * @module
 */
import type { GpuContext } from "./gpu/context.ts";
import { binary } from "./ops/binary.ts";
import { binaryRef } from "./ref/binary.ts";
import { relL2 } from "./ref/compare.ts";
import { randn } from "./ref/random.ts";

/** One self-check case and its measured error. */
export interface CheckResult {
  name: string;
  /** Relative L2 error against the CPU reference. */
  error: number;
  tolerance: number;
  ok: boolean;
}

interface Case {
  name: string;
  tolerance: number;
  run(ctx: GpuContext): Promise<[ArrayLike<number>, ArrayLike<number>]>;
}

const CASES: Record<string, Case[]> = {
  binary: [{
    name: "add broadcast [3,5,7]+[5,1]",
    tolerance: 1e-6,
    async run(ctx) {
      const a = randn(105, 1), b = randn(5, 2);
      const ta = ctx.upload(a, [3, 5, 7]), tb = ctx.upload(b, [5, 1]);
      const rec = ctx.recorder("selfcheck");
      const out = binary(rec, "add", ta, tb);
      await rec.submit();
      const got = await ctx.readF32(out);
      ctx.release(ta, tb, out);
      return [got, binaryRef("add", a, [3, 5, 7], b, [5, 1])[0]];
    },
  }],
};

/** Names of the op groups the self-check covers. */
export const SELF_CHECK_OPS: readonly string[] = Object.keys(CASES);

/** Runs the self-check for the given op groups (all by default). */
export async function selfCheck(ctx: GpuContext, ops: readonly string[] = SELF_CHECK_OPS): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const op of ops) {
    const cases = CASES[op];
    if (!cases) throw new RangeError(`selfCheck: unknown op "${op}" (known: ${SELF_CHECK_OPS.join(", ")})`);
    for (const c of cases) {
      const [got, want] = await c.run(ctx);
      const error = relL2(got, want);
      results.push({ name: `${op}: ${c.name}`, error, tolerance: c.tolerance, ok: error < c.tolerance });
    }
  }
  return results;
}
