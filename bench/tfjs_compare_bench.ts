/**
 * diffscope vs TensorFlow.js's WebGPU backend, in one process on the same adapter: matmul 1024³ and a 3×3 conv
 * 320→320 at 64×64 (batch 1, the UNet's most common conv).
 *
 * The two libraries are timed in alternation (one op of each per iteration, best of all iterations), so a
 * machine shared with other work slows both alike; timing one library's runs after the other's let the load
 * of the moment decide the ratio. Both sides warm up first (pipeline compilation). tfjs is synchronised with
 * `await tensor.data()`, which adds a readback of the result (4-5 MB, about 1% of the op); diffscope with
 * `ctx.sync()`. The table printed at the end has both libraries' GFLOP/s side by side, then the ratios.
 *
 * Run: XDG_RUNTIME_DIR=/tmp/xdg deno bench -A bench/tfjs_compare_bench.ts
 *
 * tfjs in Deno needs nothing special: importing `@tensorflow/tfjs-backend-webgpu` registers the backend against
 * `navigator.gpu`, which Deno provides, and `tf.setBackend("webgpu")` + `await tf.ready()` select it (tfjs-core
 * also registers the CPU backend, so the explicit setBackend matters). tfjs requests its own device on the
 * same adapter.
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-webgpu";
import { benchCtx, recordThroughput } from "./_bench.ts";
import type { GpuContext, Recorder } from "../src/gpu/mod.ts";
import { matmul } from "../src/ops/matmul.ts";
import { conv2d } from "../src/ops/conv2d.ts";
import { randn } from "../src/ref/random.ts";

const tfReady = benchCtx !== null && await tf.setBackend("webgpu").catch((e) => {
  console.warn(`tfjs WebGPU backend failed to initialise: ${e.message}`);
  return false;
});
if (tfReady) await tf.ready();

const ratios: string[] = [];

/**
 * One bench per op: each iteration times one tfjs op (waiting for its data) and one diffscope recording
 * (waiting for the queue), in alternation. Deno's own table reports the pair; the best of each goes to the
 * throughput table.
 */
function compare(
  name: string,
  flops: number,
  tfOp: () => () => tf.Tensor,
  dsOp: (ctx: GpuContext) => (rec: Recorder) => void,
): void {
  let tfRun: (() => tf.Tensor) | null = null, dsRun: ((rec: Recorder) => void) | null = null;
  let tfBest = Infinity, dsBest = Infinity;
  const timeTf = async () => {
    const t0 = performance.now();
    const y = tfRun!();
    await y.data();
    y.dispose();
    return (performance.now() - t0) / 1000;
  };
  const timeDs = async (ctx: GpuContext) => {
    const t0 = performance.now();
    const rec = ctx.recorder();
    dsRun!(rec);
    await rec.submit();
    await ctx.sync();
    return (performance.now() - t0) / 1000;
  };
  Deno.bench({
    name: `${name}: tfjs-webgpu + diffscope, alternating`,
    ignore: !tfReady,
    warmup: 0,
    n: 3,
    async fn() {
      const ctx = benchCtx!;
      if (!tfRun || !dsRun) {
        tfRun = tfOp();
        dsRun = dsOp(ctx);
        await timeTf(); // warm-up: pipelines
        await timeDs(ctx);
      }
      tfBest = Math.min(tfBest, await timeTf());
      dsBest = Math.min(dsBest, await timeDs(ctx));
    },
  });
  globalThis.addEventListener("beforeunload", () => {
    if (tfBest === Infinity) return;
    recordThroughput(`tfjs-webgpu ${name}`, { flops }, tfBest);
    recordThroughput(`diffscope   ${name}`, { flops }, dsBest);
    ratios.push(`  ${name.padEnd(40)} diffscope / tfjs = ${(tfBest / dsBest).toFixed(2)}×`);
  });
}

const MM = 1024;
compare("matmul 1024×1024×1024", 2 * MM ** 3, () => {
  const a = tf.tensor2d(randn(MM * MM, 1), [MM, MM]), b = tf.tensor2d(randn(MM * MM, 2), [MM, MM]);
  return () => tf.matMul(a, b);
}, (ctx) => {
  const a = ctx.upload(randn(MM * MM, 1), [MM, MM]), b = ctx.upload(randn(MM * MM, 2), [MM, MM]);
  const out = ctx.tensor([MM, MM]);
  return (rec) => void matmul(rec, a, b, { out });
});

const [C, HW] = [320, 64];
compare("conv2d 3×3 320→320 at 64×64", 2 * HW * HW * C * C * 9, () => {
  const x = tf.tensor4d(randn(HW * HW * C, 3), [1, HW, HW, C]); // NHWC, tfjs's layout
  const w = tf.tensor4d(randn(9 * C * C, 4, 0.05), [3, 3, C, C]); // [kh, kw, Cin, Cout]
  return () => tf.conv2d(x, w, 1, "same");
}, (ctx) => {
  const x = ctx.upload(randn(C * HW * HW, 3), [1, C, HW, HW]), w = ctx.upload(randn(C * C * 9, 4, 0.05), [C, C, 3, 3]);
  const out = ctx.tensor([1, C, HW, HW]);
  return (rec) => void conv2d(rec, x, w, { padding: 1, out });
});

globalThis.addEventListener("unload", () => {
  if (ratios.length) {
    console.log(`\nspeed-up over tfjs-webgpu (best iterations, same run, same adapter):\n${ratios.join("\n")}`);
  }
});
