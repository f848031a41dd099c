/** CLIP preprocessing sizes: SD's 512×512 images (and a 512×768 one, centre-cropped) to 224×224, bicubic. */
import { gpuBench } from "./_bench.ts";
import { centerCropBox, resize } from "../src/ops/resize.ts";

/** Bytes one resize moves: the input, the row pass's output written and read, the output. */
const bytes = (b: number, h: number, w: number, oh: number, ow: number) => 4 * b * 3 * (h * w + 2 * h * ow + oh * ow);

gpuBench("resize [4,3,512,512] → 224×224 bicubic antialiased", { bytes: bytes(4, 512, 512, 224, 224) }, (ctx) => {
  const x = ctx.tensor([4, 3, 512, 512]), out = ctx.tensor([4, 3, 224, 224]);
  return (rec) => void resize(rec, x, { size: [224, 224], out });
});
gpuBench("resize [4,3,768,512] → short side 224 + centre crop", { bytes: bytes(4, 768, 512, 224, 224) }, (ctx) => {
  const x = ctx.tensor([4, 3, 768, 512]), out = ctx.tensor([4, 3, 224, 224]);
  return (rec) => void resize(rec, x, { size: [224, 224], ...centerCropBox(768, 512, 224), out });
});
gpuBench("resize [4,3,512,512] → 224×224 bilinear", { bytes: bytes(4, 512, 512, 224, 224) }, (ctx) => {
  const x = ctx.tensor([4, 3, 512, 512]), out = ctx.tensor([4, 3, 224, 224]);
  return (rec) => void resize(rec, x, { size: [224, 224], filter: "bilinear", out });
});
