/** conv2d at the sizes the SD 1.x UNet and VAE run (batch 1), and the naive kernel against the implicit GEMM. */
import { gpuBench } from "./_bench.ts";
import { conv2d, type Conv2dKernel, type Conv2dOptions, planConv2d } from "../src/ops/conv2d.ts";
import { randn } from "../src/ref/random.ts";
import { numel } from "../src/gpu/tensor.ts";

function conv(
  name: string,
  x: number[],
  w: number[],
  opts: Conv2dOptions = {},
  kernel: Conv2dKernel = "auto",
  group?: string,
  baseline?: boolean,
  weights: "f32" | "f16" = "f32",
): void {
  const plan = planConv2d(x, w, opts.stride, opts.padding);
  const flops = 2 * numel(plan.shape) * w[1] * w[2] * w[3];
  gpuBench(name, { flops }, (ctx) => {
    const tx = ctx.upload(randn(numel(x), 1), x), tw = ctx.upload(randn(numel(w), 2, 0.05), w, weights);
    const bias = ctx.upload(randn(w[0], 3), [w[0]]), out = ctx.tensor(plan.shape);
    return (rec) => void conv2d(rec, tx, tw, { ...opts, bias, out, kernel });
  }, { group, baseline });
}

conv("conv 3×3 320→320 at 64×64 (UNet down 0)", [1, 320, 64, 64], [320, 320, 3, 3], { padding: 1 });
conv("conv 3×3 640→640 at 32×32 (UNet down 1)", [1, 640, 32, 32], [640, 640, 3, 3], { padding: 1 });
conv("conv 3×3 4→320 at 64×64 (conv_in)", [1, 4, 64, 64], [320, 4, 3, 3], { padding: 1 });
conv("conv 1×1 320→320 at 64×64 (proj_in, plain GEMM)", [1, 320, 64, 64], [320, 320, 1, 1]);
conv("conv 3×3 s2 128→128 256→128, pad (0,1,0,1) (VAE down)", [1, 128, 256, 256], [128, 128, 3, 3], {
  stride: 2,
  padding: [0, 1, 0, 1],
});
conv("conv 3×3 64→64 at 32×32 naive (v1)", [1, 64, 32, 32], [64, 64, 3, 3], { padding: 1 }, "naive", "v1 vs v2", true);
conv("conv 3×3 64→64 at 32×32 implicit GEMM (v2)", [1, 64, 32, 32], [64, 64, 3, 3], { padding: 1 }, "auto", "v1 vs v2");
// f16 weight storage (weights "f16"): the pack of w reads f16, the GEMM is unchanged
const C64 = [[1, 320, 64, 64], [320, 320, 3, 3]];
conv("conv 3×3 320→320 at 64×64, f32 weights", C64[0], C64[1], { padding: 1 }, "auto", "f16 weights", true);
conv("conv 3×3 320→320 at 64×64, f16 weights", C64[0], C64[1], { padding: 1 }, "auto", "f16 weights", false, "f16");
conv(
  "conv 1×1 320→320 at 64×64, f16 weights (GEMM, w as a)",
  [1, 320, 64, 64],
  [320, 320, 1, 1],
  {},
  "auto",
  undefined,
  false,
  "f16",
);
