/**
 * matmul at the sizes Stable Diffusion 1.x runs (64×64 latent, 4096 tokens, batch 1), plus the square 1024³
 * reference and the naive kernel against the tiled one.
 */
import { gpuBench } from "./_bench.ts";
import { type Activation, matmul, type MatmulKernel } from "../src/ops/matmul.ts";
import { randn } from "../src/ref/random.ts";

function linear(
  name: string,
  T: number,
  inF: number,
  outF: number,
  act: Activation = "none",
  group?: string,
  weights: "f32" | "f16" = "f32",
  baseline?: boolean,
): void {
  gpuBench(name, { flops: 2 * T * inF * outF }, (ctx) => {
    const x = ctx.upload(randn(T * inF, 1), [T, inF]);
    const w = ctx.upload(randn(outF * inF, 2, 0.05), [outF, inF], weights);
    const bias = ctx.upload(randn(outF, 3), [outF]), out = ctx.tensor([T, outF]);
    return (rec) => void matmul(rec, x, w, { transB: true, bias, act, out });
  }, { group, baseline });
}

function square(name: string, n: number, kernel: MatmulKernel, baseline = false): void {
  gpuBench(name, { flops: 2 * n ** 3 }, (ctx) => {
    const a = ctx.upload(randn(n * n, 1), [n, n]), b = ctx.upload(randn(n * n, 2), [n, n]), out = ctx.tensor([n, n]);
    return (rec) => void matmul(rec, a, b, { kernel, out });
  }, { group: `square ${n}`, baseline });
}

square("matmul 1024×1024×1024 (tiled)", 1024, "auto");
square("matmul 384³ naive (v1)", 384, "naive", true);
square("matmul 384³ tiled (v2)", 384, "auto");
linear("Linear 320→320 on 4096 tokens (attn to_q/to_out)", 4096, 320, 320);
linear("Linear 320→2560 on 4096 tokens (GEGLU proj, half)", 4096, 320, 2560);
linear("Linear 1280→1280 on 256 tokens + GELU", 256, 1280, 1280, "gelu");
linear("Linear 768→320 on 77 tokens (attn2 to_k)", 77, 768, 320);

// f16 weight storage (weights "f16"): same math in f32, half the weight bytes read
linear("Linear 320→320 on 4096 tokens, f32 weights", 4096, 320, 320, "none", "f16 weights", "f32", true);
linear("Linear 320→320 on 4096 tokens, f16 weights", 4096, 320, 320, "none", "f16 weights", "f16");
linear("Linear 1280→1280 on 256 tokens, f16 weights", 256, 1280, 1280, "none", undefined, "f16");
