/**
 * Floating-point operations of one U-Net evaluation, counted from the architecture (multiply-adds of convs,
 * linears and attention count 2; norms and elementwise work are left out, being ≪ 1% of the total). Used to turn
 * measured times into GFLOP/s and to extrapolate a benchmark run at a small size to full size.
 * @module
 */
import type { ResnetArch, TransformerArch, UNetArch } from "./arch.ts";

/** FLOPs of one evaluation on a batch of `B` latents of H×W with `T` text tokens. */
export function unetFlops(arch: UNetArch, B: number, H: number, W: number, T: number): number {
  const cfg = arch.config;
  let f = 0;
  const conv = (
    cin: number,
    cout: number,
    k: number,
    h: number,
    w: number,
  ) => (f += 2 * B * cout * cin * k * k * h * w);
  const lin = (rows: number, inF: number, outF: number) => (f += 2 * rows * inF * outF);
  const resnet = (r: ResnetArch, h: number, w: number) => {
    conv(r.inChannels, r.outChannels, 3, h, w);
    conv(r.outChannels, r.outChannels, 3, h, w);
    if (r.inChannels !== r.outChannels) conv(r.inChannels, r.outChannels, 1, h, w);
    lin(B, r.tembChannels, r.outChannels);
  };
  const transformer = (t: TransformerArch, h: number, w: number) => {
    const n = h * w, c = t.channels, inner = t.heads * t.headDim, rows = B * n;
    lin(rows, c, inner);
    for (let l = 0; l < t.layers; l++) {
      lin(rows, inner, 3 * inner); // attn1 q, k, v
      f += 2 * 2 * B * n * n * inner; // QKᵀ and PV
      lin(rows, inner, inner);
      lin(rows, inner, inner); // attn2 q
      lin(B * T, t.crossAttentionDim, 2 * inner); // attn2 k, v
      f += 2 * 2 * B * n * T * inner;
      lin(rows, inner, inner);
      lin(rows, inner, 8 * inner);
      lin(rows, 4 * inner, inner);
    }
    lin(rows, inner, c);
  };
  const boc = cfg.blockOutChannels;
  lin(B, boc[0], arch.timeEmbedDim);
  lin(B, arch.timeEmbedDim, arch.timeEmbedDim);
  conv(cfg.inChannels, boc[0], 3, H, W);
  let h = H, w = W;
  for (const b of arch.down) {
    b.resnets.forEach((r, j) => {
      resnet(r, h, w);
      if (b.attentions[j]) transformer(b.attentions[j], h, w);
    });
    if (b.downsample) {
      h = Math.ceil(h / 2), w = Math.ceil(w / 2);
      conv(b.downsample.channels, b.downsample.channels, 3, h, w);
    }
  }
  resnet(arch.mid.resnets[0], h, w);
  transformer(arch.mid.attentions[0], h, w);
  resnet(arch.mid.resnets[1], h, w);
  for (const b of arch.up) {
    b.resnets.forEach((r, j) => {
      resnet(r, h, w);
      if (b.attentions[j]) transformer(b.attentions[j], h, w);
    });
    if (b.upsample) {
      h *= 2, w *= 2;
      conv(b.upsample.channels, b.upsample.channels, 3, h, w);
    }
  }
  conv(boc[0], cfg.outChannels, 3, H, W);
  return f;
}
