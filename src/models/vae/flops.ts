/**
 * Floating-point operations of a VAE pass (2 per multiply-add of convolutions, projections and attention
 * products; norms and elementwise work are left out), for throughput figures.
 * @module
 */
import { type ConvArch, shortcutArch, type VAEArch, type VAEMidArch, type VAEResnetArch } from "./arch.ts";

function conv(c: ConvArch, h: number, w: number): number {
  return 2 * c.outChannels * c.inChannels * c.kernel * c.kernel * h * w;
}

function resnet(r: VAEResnetArch, h: number, w: number): number {
  const k3 = (i: number, o: number) => 2 * o * i * 9 * h * w;
  const sc = shortcutArch(r);
  return k3(r.inChannels, r.outChannels) + k3(r.outChannels, r.outChannels) + (sc ? conv(sc, h, w) : 0);
}

function mid(m: VAEMidArch, h: number, w: number): number {
  const n = h * w, c = m.attention.channels;
  return resnet(m.resnets[0], h, w) + resnet(m.resnets[1], h, w) + 4 * 2 * n * c * c + 2 * 2 * n * n * c;
}

/** FLOPs of decoding latents of h × w (B = 1). */
export function vaeDecodeFlops(arch: VAEArch, h: number, w: number): number {
  const d = arch.decoder;
  let f = conv(arch.postQuantConv, h, w) + conv(d.convIn, h, w) + mid(d.mid, h, w);
  for (const b of d.blocks) {
    for (const r of b.resnets) f += resnet(r, h, w);
    if (b.upsample) {
      h *= 2, w *= 2;
      f += 2 * b.upsample.channels ** 2 * 9 * h * w;
    }
  }
  return f + conv(d.convOut, h, w);
}

/** FLOPs of encoding an image of H × W (B = 1). */
export function vaeEncodeFlops(arch: VAEArch, H: number, W: number): number {
  const e = arch.encoder;
  let h = H, w = W;
  let f = conv(e.convIn, h, w);
  for (const b of e.blocks) {
    for (const r of b.resnets) f += resnet(r, h, w);
    if (b.downsample) {
      h = Math.floor((h - 2) / 2) + 1, w = Math.floor((w - 2) / 2) + 1; // pad (0, 1, 0, 1), 3×3 stride 2
      f += 2 * b.downsample.channels ** 2 * 9 * h * w;
    }
  }
  return f + mid(e.mid, h, w) + conv(e.convOut, h, w) + conv(arch.quantConv, h, w);
}
