import { gpuBench } from "./_bench.ts";
import { axpy } from "../src/ops/axpy.ts";

const shape = [2, 320, 64, 64], n = 2 * 320 * 64 * 64;
gpuBench("axpy y += a·x [2,320,64,64] (gradient accumulation)", { bytes: 3 * 4 * n }, (ctx) => {
  const x = ctx.tensor(shape), y = ctx.tensor(shape);
  return (rec) => void axpy(rec, y, x, 0.5);
});
