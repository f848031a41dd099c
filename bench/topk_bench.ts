// GB/s counts compulsory traffic: x read once, values and indices written once.
import { gpuBench } from "./_bench.ts";
import { topk } from "../src/ops/topk.ts";
import { randn } from "../src/ref/random.ts";

for (const [rows, len, k] of [[4096, 5120, 20], [1024, 5120, 256], [16384, 256, 16]]) {
  gpuBench(`topk [${rows},${len}] k=${k}`, { bytes: 4 * rows * (len + 2 * k) }, (ctx) => {
    // SAE pre-activations look like noise; random rows make the radix select's histograms realistic
    const x = ctx.upload(randn(rows * len, 7), [rows, len]);
    const values = ctx.tensor([rows, k]), indices = ctx.tensor([rows, k], "u32");
    return (rec) => void topk(rec, x, { k, out: { values, indices } });
  });
}
