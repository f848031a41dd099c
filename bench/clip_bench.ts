/**
 * SD v1's text encoder (CLIP ViT-L/14's text tower: 12 layers, 768 wide, QuickGELU) at full size with random
 * weights, one forward of 2 prompts × 77 tokens as classifier-free guidance runs it.
 */
import { benchCtx, gpuBench } from "./_bench.ts";
import { parseClipTextConfig } from "../src/models/clip/config.ts";
import { randomTextEncoder } from "../src/models/clip/random.ts";

const sd14 = JSON.parse(
  await Deno.readTextFile(new URL("../../shared/fixtures/sd14/sd14-text-encoder.json", import.meta.url)),
);
const cfg = parseClipTextConfig(sd14.config, "sd14-text-encoder.json");
const te = benchCtx ? await randomTextEncoder(benchCtx, cfg, { seed: 1 }) : null;

const B = 2, T = 77, D = cfg.hiddenSize, F = cfg.intermediateSize;
// per token and layer: q, k, v, out (4·D²) and fc1, fc2 (2·D·F) multiply-adds, plus QKᵀ and PV over T keys
const flops = 2 * B * T * cfg.numHiddenLayers * (4 * D * D + 2 * D * F + 2 * T * D);
const ids = Int32Array.from(
  { length: B * T },
  (_, i) => (i % T === 0 ? 49406 : i % T < 9 ? (i * 7919) % 49406 : 49407),
);

gpuBench(`SD v1 text encoder forward, ${B}×${T} tokens (random weights)`, { flops }, () => (rec) => {
  const out = te!.forward(rec, { data: ids, shape: [B, T] });
  rec.releaseAfterSubmit(out.lastHiddenState, out.pooledOutput);
});
