/**
 * kernels/sae_layout.wgsl (layout prediction) at SD v1 sizes (n = 5120, k = 20): the top feature of every position
 * of a 64×64 grid, and the IoU counts of a CFG-sized batch (8 images of 16×16, one concept set per image) in one
 * dispatch.
 */
import { gpuBench } from "./_bench.ts";
import { layoutCounts, topFeature } from "../src/sae/layout.ts";
import { quadrantMask } from "../src/sae/steer.ts";

const n = 5120, k = 20;

gpuBench(`sae layout top feature: 64×64 positions, k=${k}`, { bytes: 4096 * (k * 8 + 4) }, (ctx) => {
  const values = ctx.upload(new Float32Array(4096 * k).fill(1), [4096, k]);
  const indices = ctx.upload(Uint32Array.from({ length: 4096 * k }, (_, i) => i % n), [4096, k], "u32");
  return (rec) => rec.recycle(topFeature(rec, { values, indices }));
});

gpuBench("sae layout IoU counts: 8 images × 16×16, a 3-id set per image", { bytes: 8 * 256 * 4 + 256 * 4 }, (ctx) => {
  const images = 8, hw = 256;
  const top = ctx.upload(Int32Array.from({ length: images * hw }, (_, i) => i % 7), [images * hw], "i32");
  const sets = ctx.upload(Int32Array.from({ length: images * 3 }, (_, i) => i % 5), [images, 3], "i32");
  const mask = ctx.upload(quadrantMask("top-left", [16, 16]), [hw]);
  return (rec) => rec.recycle(layoutCounts(rec, top, sets, mask, hw));
});

gpuBench(
  `sae layout: top feature + IoU counts, 64×64 positions, k=${k}`,
  { bytes: 4096 * k * 8 + 4096 * 12 },
  (ctx) => {
    const values = ctx.upload(new Float32Array(4096 * k).fill(1), [4096, k]);
    const indices = ctx.upload(Uint32Array.from({ length: 4096 * k }, (_, i) => i % n), [4096, k], "u32");
    const set = ctx.upload(Int32Array.from([1, 2, 3]), [3], "i32");
    const mask = ctx.upload(quadrantMask("top-left", [64, 64]), [4096]);
    return (rec) => {
      const top = topFeature(rec, { values, indices });
      const counts = layoutCounts(rec, top, set, mask, 4096);
      rec.recycle(top, counts);
    };
  },
);
