// CAD ablation masks at the sizes of SD v1.4's feed-forward weights (C = 1280: ff.net.0.proj [10240, 1280] and
// ff.net.2 [1280, 5120]) at CAD's default ratio 0.001 (q = 1 and 5 per row; 13107 and 6553 flattened).
// GB/s counts compulsory traffic: S read once and the mask written once (8 bytes per weight); the top-k path reads
// S about five times and the radix path up to nine, so these figures understate the memory traffic.
import { gpuBench } from "./_bench.ts";
import { ablationMask, type AblationMethod, type AblationMode } from "../src/cad/ablate.ts";
import { randn } from "../src/ref/random.ts";

const cases: [shape: [number, number], mode: AblationMode, flatten: boolean, method?: AblationMethod][] = [
  [[10240, 1280], "positive", false, "topk"],
  [[10240, 1280], "positive", false, "radix"],
  [[1280, 5120], "positive", false, "topk"],
  [[1280, 5120], "positive", false, "radix"],
  [[1280, 5120], "both", false, undefined],
  [[10240, 1280], "positive", true, undefined],
  [[1280, 5120], "positive", true, undefined],
];
for (const [[rows, len], mode, flatten, method] of cases) {
  const n = rows * len;
  const name = `ablationMask [${rows},${len}] 0.001 ${mode}${flatten ? " flattened" : ""} ${method ?? "auto"}`;
  gpuBench(name, { bytes: 8 * n }, (ctx) => {
    const s = ctx.upload(randn(n, 11, 1e-6), [rows, len]); // attribution scores are small and signed
    const out = ctx.tensor([rows, len]);
    return (rec) => void ablationMask(rec, s, { ratio: 0.001, mode, flatten, method, out });
  }, { group: `[${rows},${len}]${flatten ? " flattened" : ""}` });
}
