import { gpuBench } from "./_bench.ts";
import { unary, type UnaryOp } from "../src/ops/unary.ts";

// the U-Net's activations at 64×64 (first down block, batch 2 for classifier-free guidance)
const shape = [2, 320, 64, 64];
const n = 2 * 320 * 64 * 64;
for (const op of ["scale", "silu", "gelu", "quickGelu"] as UnaryOp[]) {
  gpuBench(`unary ${op} [2,320,64,64]`, { bytes: 2 * 4 * n }, (ctx) => {
    const x = ctx.tensor(shape), out = ctx.tensor(shape);
    return (rec) => void unary(rec, op, x, { out, alpha: 0.5 });
  }, { group: "unary" });
}
gpuBench("unary silu in place [2,320,64,64]", { bytes: 2 * 4 * n }, (ctx) => {
  const x = ctx.tensor(shape);
  return (rec) => void unary(rec, "silu", x, { out: x });
}, { group: "unary" });
