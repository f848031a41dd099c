// Attention at SD v1 sizes (512×512 images: 64×64 latents, 8 heads everywhere, text length 77). Batch and head counts
// are cut so that one iteration stays within a few seconds on lavapipe; GFLOP/s does not depend on them much.
import { gpuBench } from "./_bench.ts";
import { attention, type AttentionOptions } from "../src/ops/attention.ts";
import { randn } from "../src/ref/random.ts";

interface Shape {
  B: number;
  nq: number;
  nk: number;
  heads: number;
  dh: number;
  causal?: boolean;
}

/** Multiply-adds of QKᵀ and PV, counted as 2 FLOP each, over the (unmasked) query–key pairs. */
function flops({ B, nq, nk, heads, dh, causal }: Shape): number {
  let pairs = nq * nk;
  if (causal) pairs = Array.from({ length: nq }, (_, i) => Math.min(nk, i + 1)).reduce((a, b) => a + b, 0);
  return 4 * B * heads * pairs * dh;
}

function bench(name: string, s: Shape, opts: Partial<AttentionOptions> = {}, group?: string, baseline = false): void {
  gpuBench(name, { flops: flops(s) }, (ctx) => {
    const c = s.heads * s.dh;
    const q = ctx.upload(randn(s.B * s.nq * c, 1), [s.B, s.nq, c]);
    const k = ctx.upload(randn(s.B * s.nk * c, 2), [s.B, s.nk, c]);
    const v = ctx.upload(randn(s.B * s.nk * c, 3), [s.B, s.nk, c]);
    const out = ctx.tensor([s.B, s.nq, c]);
    return (rec) => void attention(rec, { q, k, v }, { heads: s.heads, causal: s.causal, out, ...opts });
  }, { group, baseline });
}

bench("attn1 self 4096 tok, dh 40, 1 of 8 heads (down_blocks.0)", { B: 1, nq: 4096, nk: 4096, heads: 1, dh: 40 });
bench("attn2 cross 4096×77, dh 40, 8 heads (down_blocks.0)", { B: 1, nq: 4096, nk: 77, heads: 8, dh: 40 });
bench("attn1 self 1024 tok, dh 80, 2 of 8 heads (down_blocks.1)", { B: 1, nq: 1024, nk: 1024, heads: 2, dh: 80 });
bench("attn1 self 256 tok, dh 160, 8 heads (down_blocks.2)", { B: 1, nq: 256, nk: 256, heads: 8, dh: 160 });
bench("CLIP causal 77 tok, dh 64, 12 heads, B 2", { B: 2, nq: 77, nk: 77, heads: 12, dh: 64, causal: true });

// v1 (naive) against v2 (tiled) on one shape.
const s: Shape = { B: 1, nq: 1024, nk: 1024, heads: 1, dh: 40 };
bench("v2 tiled: self 1024 tok, dh 40, 1 head", s, { variant: "tiled" }, "variants", true);
bench("v1 naive: self 1024 tok, dh 40, 1 head", s, { variant: "naive" }, "variants");
