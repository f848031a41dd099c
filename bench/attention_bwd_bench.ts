// Attention backward at SD v1 sizes (512×512 images: 64×64 latents, 8 heads everywhere, text length 77). Batch and
// head counts are cut so that one iteration stays within seconds on lavapipe (the 4096-token self-attention of one
// head is the exception: it is the case that matters and takes several seconds).
import { gpuBench } from "./_bench.ts";
import {
  attention,
  attentionBackward,
  type AttentionBackwardOptions,
  type AttentionWithLse,
} from "../src/ops/attention.ts";
import { randn } from "../src/ref/random.ts";

interface Shape {
  B: number;
  nq: number;
  nk: number;
  heads: number;
  dh: number;
  causal?: boolean;
}

/**
 * FLOPs counted as FlashAttention-2 does: 2.5× the forward's (QKᵀ and PV), i.e. five matmul-sized products (S, dP,
 * dV, dK, dQ) of 2 FLOP per multiply-add over the unmasked pairs. The kernels run seven (S and dP twice), so the
 * arithmetic actually done is 3.5× the forward's.
 */
function flops({ B, nq, nk, heads, dh, causal }: Shape): number {
  let pairs = nq * nk;
  if (causal) pairs = Array.from({ length: nq }, (_, i) => Math.min(nk, i + 1)).reduce((a, b) => a + b, 0);
  return 2.5 * 4 * B * heads * pairs * dh;
}

type Which = "all" | "dq" | "dkdv";

function bench(
  name: string,
  s: Shape,
  opts: Pick<AttentionBackwardOptions, "variant"> & { which?: Which } = {},
  group?: string,
  baseline = false,
): void {
  const { which = "all", variant } = opts;
  const share = which === "all" ? 1 : which === "dq" ? 2 / 5 : 3 / 5; // dQ: S, dQ; dK/dV: dP, dV, dK
  gpuBench(name, { flops: flops(s) * share }, (ctx) => {
    const c = s.heads * s.dh;
    const q = ctx.upload(randn(s.B * s.nq * c, 1), [s.B, s.nq, c]);
    const k = ctx.upload(randn(s.B * s.nk * c, 2), [s.B, s.nk, c]);
    const v = ctx.upload(randn(s.B * s.nk * c, 3), [s.B, s.nk, c]);
    const dout = ctx.upload(randn(s.B * s.nq * c, 4), [s.B, s.nq, c]);
    const dq = which === "dkdv" ? undefined : ctx.tensor(q.shape);
    const dk = which === "dq" ? undefined : ctx.tensor(k.shape);
    const dv = which === "dq" ? undefined : ctx.tensor(v.shape);
    const opts = { heads: s.heads, causal: s.causal };
    let fwd: AttentionWithLse | null = null;
    return (rec) => {
      // The first (untimed) iteration also records the forward that produces o and lse.
      fwd ??= attention(rec, { q, k, v }, { ...opts, saveLse: true });
      const { out: o, lse } = fwd;
      attentionBackward(rec, { q, k, v, o, lse, dout }, { ...opts, dq, dk, dv, accumulate: false, variant });
    };
  }, { group, baseline });
}

bench("attn1 self 4096 tok, dh 40, 1 of 8 heads (down_blocks.0)", { B: 1, nq: 4096, nk: 4096, heads: 1, dh: 40 });
bench("attn2 cross 4096×77, dh 40, 8 heads (down_blocks.0)", { B: 1, nq: 4096, nk: 77, heads: 8, dh: 40 });
bench("attn1 self 1024 tok, dh 80, 2 of 8 heads (down_blocks.1)", { B: 1, nq: 1024, nk: 1024, heads: 2, dh: 80 });
bench("attn1 self 256 tok, dh 160, 8 heads (down_blocks.2)", { B: 1, nq: 256, nk: 256, heads: 8, dh: 160 });
bench("CLIP causal 77 tok, dh 64, 12 heads, B 2", { B: 2, nq: 77, nk: 77, heads: 12, dh: 64, causal: true });

// v1 (naive) against v2 (tiled), and the two kernels of v2 on their own, on one shape.
const s: Shape = { B: 1, nq: 1024, nk: 1024, heads: 1, dh: 40 };
bench("v2 tiled: self 1024 tok, dh 40, 1 head", s, { variant: "tiled" }, "variants", true);
bench("v1 naive: self 1024 tok, dh 40, 1 head", s, { variant: "naive" }, "variants");
bench("v2 dq only: self 1024 tok, dh 40, 1 head", s, { which: "dq" }, "variants");
bench("v2 dk, dv only: self 1024 tok, dh 40, 1 head", s, { which: "dkdv" }, "variants");
