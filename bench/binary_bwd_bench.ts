import { gpuBench } from "./_bench.ts";
import { binaryBackward } from "../src/ops/binary.ts";

// SD v1 at 64×64, batch 2 (classifier-free guidance): the gradients of a residual add, a conv bias and the time
// embedding added to every pixel. Bytes: what must move (dy read once, gradients read if accumulated and written).
const shape = [2, 320, 64, 64];
const n = 2 * 320 * 64 * 64;
gpuBench("binary add backward da, db (overwrite: two copies)", { bytes: 4 * 4 * n }, (ctx) => {
  const [a, b, dy, da, db] = [0, 1, 2, 3, 4].map(() => ctx.tensor(shape));
  return (rec) => void binaryBackward(rec, "add", { dy, a, b }, { da, db, accumulate: false });
}, { group: "residual" });
gpuBench("binary add backward da, db (accumulate)", { bytes: 6 * 4 * n }, (ctx) => {
  const [a, b, dy, da, db] = [0, 1, 2, 3, 4].map(() => ctx.tensor(shape));
  return (rec) => void binaryBackward(rec, "add", { dy, a, b }, { da, db });
}, { group: "residual" });
gpuBench("binary mul backward da, db (accumulate)", { bytes: 8 * 4 * n }, (ctx) => {
  const [a, b, dy, da, db] = [0, 1, 2, 3, 4].map(() => ctx.tensor(shape));
  return (rec) => void binaryBackward(rec, "mul", { dy, a, b }, { da, db });
}, { group: "residual" });
gpuBench("binary add backward db: bias [320,1,1] (Σ over B·H·W = 8192)", { bytes: 4 * n }, (ctx) => {
  const a = ctx.tensor(shape), dy = ctx.tensor(shape), b = ctx.tensor([320, 1, 1]), db = ctx.tensor([320, 1, 1]);
  return (rec) => void binaryBackward(rec, "add", { dy, a, b }, { db });
}, { group: "broadcast" });
gpuBench("binary add backward db: time embedding [2,320,1,1] (Σ over H·W)", { bytes: 4 * n }, (ctx) => {
  const a = ctx.tensor(shape), dy = ctx.tensor(shape), b = ctx.tensor([2, 320, 1, 1]), db = ctx.tensor([2, 320, 1, 1]);
  return (rec) => void binaryBackward(rec, "add", { dy, a, b }, { db });
}, { group: "broadcast" });
gpuBench("binary mul backward db: scalar [1] (Σ over 2.6M, two passes)", { bytes: 2 * 4 * n }, (ctx) => {
  const a = ctx.tensor(shape), dy = ctx.tensor(shape), b = ctx.tensor([1]), db = ctx.tensor([1]);
  return (rec) => void binaryBackward(rec, "mul", { dy, a, b }, { db });
}, { group: "broadcast" });
