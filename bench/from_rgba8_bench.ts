/**
 * kernels/from_rgba8.wgsl at SD sizes: a batch of 512×512 input images unpacked to planar [B, 3, H, W] in [−1, 1]
 * (pooled collection's input), and a 512×512 mask in "auto" mode (the alpha scan plus the mask) and "luminance".
 */
import { gpuBench } from "./_bench.ts";
import { fromRgba8, maskFromRgba8 } from "../src/ops/from_rgba8.ts";

const H = 512, W = 512;
gpuBench(`from_rgba8 planar: [4,${H},${W}] RGBA8 → [4,3,${H},${W}] f32 in [−1, 1]`, {
  bytes: 4 * H * W * (4 + 12),
}, (ctx) => {
  const px = ctx.upload(new Uint32Array(4 * H * W).fill(0xff808080), [4, H, W], "u32");
  const out = ctx.tensor([4, 3, H, W]);
  return (rec) => void fromRgba8(rec, px, { scale: 1 / 127.5, shift: -1, out });
});
for (const mode of ["auto", "luminance"] as const) {
  // auto reads the pixels twice (the alpha scan, then the mask)
  const reads = mode === "auto" ? 2 : 1;
  gpuBench(`from_rgba8 mask (${mode}): ${H}×${W} RGBA8 → f32`, { bytes: H * W * (4 * reads + 4) }, (ctx) => {
    const px = ctx.upload(new Uint32Array(H * W).fill(0xff808080), [H, W], "u32");
    const out = ctx.tensor([H, W]);
    return (rec) => void maskFromRgba8(rec, px, { mode, out });
  });
}
