import { gpuBench } from "./_bench.ts";
import { embedding, rowShardSizes } from "../src/ops/embedding.ts";

// SD v1's CLIP token embedding (49408×768 f32, 152 MB: two shards under a 128 MiB binding limit), 2 prompts × 77
const [v, d] = [49408, 768];
gpuBench("embedding 2×77 tokens from [49408,768] in shards", { bytes: 2 * 4 * 2 * 77 * d }, (ctx) => {
  const sizes = rowShardSizes(v, d * 4, Math.min(ctx.limits.maxStorageBufferBindingSize, 128 * 1024 * 1024));
  const shards = sizes.map((rows, k) => ctx.tensor([rows, d], "f32", `token_embedding[${k}]`));
  const ids = ctx.upload(Int32Array.from({ length: 154 }, (_, i) => (i * 7919) % v), [2, 77], "i32");
  const out = ctx.tensor([2, 77, d]);
  return (rec) => void embedding(rec, { table: shards, ids }, { out });
});
