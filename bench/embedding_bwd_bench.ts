import { gpuBench } from "./_bench.ts";
import { embeddingBackward, rowShardSizes } from "../src/ops/embedding.ts";

// SD v1's CLIP token embedding gradient: 2 prompts × 77 ids (a few words, then ~70 pad tokens 49407 each) into
// [49408, 768] f32 shards. Bytes: dy read, the rows that occur read and written (accumulating).
const [v, d] = [49408, 768];
const ids = Int32Array.from({ length: 154 }, (_, i) => (i % 77 < 8 ? (i * 7919) % v : v - 1));
const rows = new Set(ids).size;
gpuBench(`embedding backward 2×77 ids (${rows} distinct rows) into [49408,768] shards`, {
  bytes: 4 * d * (154 + 2 * rows),
}, (ctx) => {
  const sizes = rowShardSizes(v, d * 4, Math.min(ctx.limits.maxStorageBufferBindingSize, 128 * 1024 * 1024));
  const shards = sizes.map((r, k) => ctx.tensor([r, d], "f32", `dtoken_embedding[${k}]`));
  const tids = ctx.upload(ids, [2, 77], "i32");
  const dy = ctx.tensor([2, 77, d]);
  return (rec) => void embeddingBackward(rec, { dy, ids: tids }, { dtable: shards });
});
