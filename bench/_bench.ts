/**
 * GPU benchmark plumbing on top of `Deno.bench`: each iteration records the work, submits it once and waits for
 * the queue, and the achieved throughput (GFLOP/s or GB/s) is printed per case when the run ends, since
 * `deno bench` itself reports only time per iteration.
 */
import { createContext, type GpuContext, type Recorder } from "../src/gpu/mod.ts";

/** One shared context for all benches of a process (null without an adapter: benches then register as ignored). */
export const benchCtx: GpuContext | null = await createContext().catch((e) => {
  console.warn(`no WebGPU adapter, benches ignored: ${e.message}`);
  return null;
});

interface Row {
  name: string;
  work: number;
  unit: "GFLOP/s" | "GB/s";
  best: number;
  total: number;
  n: number;
}
const rows: Row[] = [];

/** What one iteration achieves: floating-point operations or bytes moved. */
export type Work = { flops: number } | { bytes: number };

/**
 * Registers a GPU bench. `setup` runs once (allocate inputs) and returns the function that records one iteration.
 * Timing covers record + submit + completion; the first (pipeline-building) iteration is a warm-up.
 */
export function gpuBench(
  name: string,
  work: Work,
  setup: (ctx: GpuContext) => (rec: Recorder) => void,
  opts: { group?: string; baseline?: boolean } = {},
): void {
  const row: Row = {
    name,
    work: "flops" in work ? work.flops : work.bytes,
    unit: "flops" in work ? "GFLOP/s" : "GB/s",
    best: Infinity,
    total: 0,
    n: 0,
  };
  rows.push(row);
  let step: ((rec: Recorder) => void) | null = null;
  Deno.bench({
    name,
    group: opts.group,
    baseline: opts.baseline,
    ignore: benchCtx === null,
    warmup: 1,
    n: 3,
    async fn(b) {
      const ctx = benchCtx!;
      step ??= setup(ctx);
      if (row.n === 0) { // build pipelines outside the timed region
        const rec = ctx.recorder();
        step(rec);
        await rec.submit();
        await ctx.sync();
      }
      b.start();
      const t0 = performance.now();
      const rec = ctx.recorder();
      step(rec);
      await rec.submit();
      await ctx.sync();
      const dt = (performance.now() - t0) / 1000;
      b.end();
      row.best = Math.min(row.best, dt);
      row.total += dt;
      row.n++;
    },
  });
}

/** Records a measurement made outside `gpuBench` (e.g. another library) so it prints in the same table. */
export function recordThroughput(name: string, work: Work, seconds: number): void {
  rows.push({
    name,
    work: "flops" in work ? work.flops : work.bytes,
    unit: "flops" in work ? "GFLOP/s" : "GB/s",
    best: seconds,
    total: seconds,
    n: 1,
  });
}

globalThis.addEventListener("unload", () => {
  const done = rows.filter((r) => r.n > 0);
  if (!done.length) return;
  console.log("\nachieved throughput (best iteration):");
  for (const r of done) {
    const v = r.work / r.best / 1e9;
    console.log(`  ${r.name.padEnd(56)} ${v.toFixed(3).padStart(10)} ${r.unit}   (${(r.best * 1000).toFixed(2)} ms)`);
  }
});
