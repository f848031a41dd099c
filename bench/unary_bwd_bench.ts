import { gpuBench } from "./_bench.ts";
import { unaryBackward, type UnaryOp } from "../src/ops/unary.ts";

// the U-Net's activations at 64×64 (first down block, batch 2): read x and dy, read and write dx (accumulating)
const shape = [2, 320, 64, 64];
const n = 2 * 320 * 64 * 64;
for (const op of ["silu", "gelu", "quickGelu", "clamp"] as UnaryOp[]) {
  gpuBench(`unary ${op} backward [2,320,64,64] (accumulate)`, { bytes: 4 * 4 * n }, (ctx) => {
    const x = ctx.tensor(shape), dy = ctx.tensor(shape), dx = ctx.tensor(shape);
    return (rec) => void unaryBackward(rec, op, { dy, x }, { dx, lo: -1, hi: 1 });
  }, { group: "unary backward" });
}
gpuBench("unary silu backward [2,320,64,64] (overwrite)", { bytes: 3 * 4 * n }, (ctx) => {
  const x = ctx.tensor(shape), dy = ctx.tensor(shape), dx = ctx.tensor(shape);
  return (rec) => void unaryBackward(rec, "silu", { dy, x }, { dx, accumulate: false });
}, { group: "unary backward" });
