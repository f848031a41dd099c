import { gpuBench } from "./_bench.ts";
import { guidance, toRgba8 } from "../src/ops/cfg.ts";

gpuBench("guidance u + g(c − u) on [2,4,64,64]", { bytes: 3 * 4 * 4 * 64 * 64 }, (ctx) => {
  const x = ctx.tensor([2, 4, 64, 64]), out = ctx.tensor([1, 4, 64, 64]);
  return (rec) => void guidance(rec, x, 7.5, { out });
});
gpuBench("toRgba8 [1,3,512,512]", { bytes: 4 * 4 * 512 * 512 }, (ctx) => {
  const x = ctx.tensor([1, 3, 512, 512]);
  return (rec) => rec.releaseAfterSubmit(toRgba8(rec, x));
});
