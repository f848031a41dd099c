import { gpuBench } from "./_bench.ts";
import type { GpuContext } from "../src/gpu/mod.ts";
import { conv2d } from "../src/ops/conv2d.ts";
import { conv2dBackward } from "../src/ops/conv2d_bwd.ts";

// SD v1's 64×64 ResNet conv (down_blocks.0.resnets.*.conv1): 3×3, 320 → 320, padding 1, batch 1.
// Each of forward, dx and dw is 2·Cout·Cin·9·Ho·Wo flops (packing included in the timings).
const flops = 2 * 320 * 320 * 9 * 64 * 64;
function setup(ctx: GpuContext, stride: 1 | 2 = 1) {
  const ho = 64 / stride;
  return {
    x: ctx.tensor([1, 320, 64, 64]),
    w: ctx.tensor([320, 320, 3, 3]),
    dout: ctx.tensor([1, 320, ho, ho]),
    dx: ctx.tensor([1, 320, 64, 64]),
    dw: ctx.tensor([320, 320, 3, 3]),
    dbias: ctx.tensor([320]),
  };
}

gpuBench("conv2d forward 3×3 320→320 [1,320,64,64] (reference)", { flops }, (ctx) => {
  const t = setup(ctx);
  return (rec) => void conv2d(rec, t.x, t.w, { padding: 1, out: t.dx });
}, { group: "conv2d 3×3 320 64×64" });

gpuBench("conv2d backward dx 3×3 320→320 [1,320,64,64]", { flops }, (ctx) => {
  const t = setup(ctx);
  return (rec) => void conv2dBackward(rec, t, { padding: 1, dx: t.dx });
}, { group: "conv2d 3×3 320 64×64" });

gpuBench("conv2d backward dw 3×3 320→320 [1,320,64,64]", { flops }, (ctx) => {
  const t = setup(ctx);
  return (rec) => void conv2dBackward(rec, t, { padding: 1, dw: t.dw });
}, { group: "conv2d 3×3 320 64×64" });

// The downsampler (down_blocks.0.downsamplers.0.conv): stride 2, a quarter of the flops.
gpuBench("conv2d backward dx 3×3 320→320 stride 2 [1,320,64,64]", { flops: flops / 4 }, (ctx) => {
  const t = setup(ctx, 2);
  return (rec) => void conv2dBackward(rec, t, { stride: 2, padding: 1, dx: t.dx });
}, { group: "conv2d 3×3 320 stride 2" });

gpuBench("conv2d backward dw 3×3 320→320 stride 2 [1,320,64,64]", { flops: flops / 4 }, (ctx) => {
  const t = setup(ctx, 2);
  return (rec) => void conv2dBackward(rec, t, { stride: 2, padding: 1, dw: t.dw });
}, { group: "conv2d 3×3 320 stride 2" });

gpuBench("conv2d backward dbias [1,320,64,64]", { bytes: 4 * 320 * 64 * 64 }, (ctx) => {
  const t = setup(ctx);
  return (rec) => void conv2dBackward(rec, t, { padding: 1, dbias: t.dbias });
});
