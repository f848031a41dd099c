import { gpuBench } from "./_bench.ts";
import { stopGradDiffLoss } from "../src/autodiff/loss.ts";

const shape = [2, 4, 64, 64];
gpuBench(
  "stop-gradient loss seed + value on [2,4,64,64] (CAD erase score)",
  { bytes: 3 * 4 * 2 * 4 * 64 * 64 },
  (ctx) => {
    const x = ctx.tensor(shape);
    return (rec) => {
      const l = stopGradDiffLoss(rec, x);
      rec.releaseAfterSubmit(l.value, l.seed);
    };
  },
);
