/**
 * Kernel self-check: runs small cases of each kernel on the current device and compares them with the CPU
 * references. `diffscope info` prints it; the browser test runs it in Chromium. Runtime-agnostic. The `matmul`
 * and `conv2d` groups use awkward shapes (the fallback kernels); `tiled` covers the fast kernels (K, N, Ho·Wo
 * multiples of 4), whose large unrolled shaders take minutes to compile under SwiftShader, so the browser test
 * leaves that group out.
 * @module
 */
import type { GpuContext } from "./gpu/context.ts";
import { attention } from "./ops/attention.ts";
import { binary } from "./ops/binary.ts";
import { conv2d } from "./ops/conv2d.ts";
import { matmul } from "./ops/matmul.ts";
import { attentionRef } from "./ref/attention.ts";
import { binaryRef } from "./ref/binary.ts";
import { conv2dRef } from "./ref/conv2d.ts";
import { matmulRef } from "./ref/matmul.ts";
import { relL2 } from "./ref/compare.ts";
import { randn } from "./ref/random.ts";

/** One self-check case and its measured error. */
export interface CheckResult {
  name: string;
  /** Relative L2 error against the CPU reference. */
  error: number;
  tolerance: number;
  ok: boolean;
}

interface Case {
  name: string;
  tolerance: number;
  run(ctx: GpuContext): Promise<[ArrayLike<number>, ArrayLike<number>]>;
}

/** Uploads inputs, records one op, reads its output back and frees everything. */
async function runOp(
  ctx: GpuContext,
  inputs: [Float32Array, number[]][],
  op: (
    rec: ReturnType<GpuContext["recorder"]>,
    ts: ReturnType<GpuContext["upload"]>[],
  ) => ReturnType<GpuContext["upload"]>,
): Promise<Float32Array> {
  const ts = inputs.map(([d, s]) => ctx.upload(d, s));
  const rec = ctx.recorder("selfcheck");
  const out = op(rec, ts);
  await rec.submit();
  const got = await ctx.readF32(out);
  ctx.release(...ts, out);
  return got;
}

const CASES: Record<string, Case[]> = {
  binary: [{
    name: "add broadcast [3,5,7]+[5,1]",
    tolerance: 1e-6,
    async run(ctx) {
      const a = randn(105, 1), b = randn(5, 2);
      const ta = ctx.upload(a, [3, 5, 7]), tb = ctx.upload(b, [5, 1]);
      const rec = ctx.recorder("selfcheck");
      const out = binary(rec, "add", ta, tb);
      await rec.submit();
      const got = await ctx.readF32(out);
      ctx.release(ta, tb, out);
      return [got, binaryRef("add", a, [3, 5, 7], b, [5, 1])[0]];
    },
  }],
  matmul: [
    ...([[1, 77, 33, 65, false, false], [3, 17, 40, 31, false, true], [2, 63, 64, 65, true, false]] as const).map(
      ([B, M, K, N, transA, transB]) => ({
        name: `[${B},${M},${K}]·[${K},${N}]${transA ? " Aᵀ" : ""}${transB ? " Bᵀ" : ""} + bias, GELU`,
        tolerance: 1e-5,
        async run(ctx: GpuContext): Promise<[ArrayLike<number>, ArrayLike<number>]> {
          const aShape = transA ? [B, K, M] : [B, M, K], bShape = transB ? [N, K] : [K, N];
          const a = randn(B * M * K, 3), b = randn(K * N, 4, 0.2), bias = randn(N, 5);
          const opts = { transA, transB, act: "gelu" as const };
          const got = await runOp(
            ctx,
            [[a, aShape], [b, bShape], [bias, [N]]],
            (rec, [ta, tb, tbias]) => matmul(rec, ta, tb, { ...opts, bias: tbias }),
          );
          return [got, matmulRef(a, aShape, b, bShape, { ...opts, bias }).out];
        },
      }),
    ),
  ],
  conv2d: [
    ...([
      [2, 5, 7, 9, 13, 3, 1, 1],
      [1, 6, 4, 11, 10, 3, 2, [0, 1, 0, 1]],
      [2, 12, 16, 7, 7, 1, 1, 0],
    ] as const).map(([B, Cin, Cout, H, W, k, stride, padding]) => ({
      name: `[${B},${Cin},${H},${W}] ${k}×${k}→${Cout} stride ${stride} pad ${JSON.stringify(padding)}`,
      tolerance: 1e-5,
      async run(ctx: GpuContext): Promise<[ArrayLike<number>, ArrayLike<number>]> {
        const x = randn(B * Cin * H * W, 9), w = randn(Cout * Cin * k * k, 10, 0.3), bias = randn(Cout, 11);
        const pad = (typeof padding === "number" ? padding : [...padding]) as number | [number, number, number, number];
        const got = await runOp(
          ctx,
          [[x, [B, Cin, H, W]], [w, [Cout, Cin, k, k]], [bias, [Cout]]],
          (rec, [tx, tw, tb]) => conv2d(rec, tx, tw, { bias: tb, stride, padding: pad }),
        );
        return [got, conv2dRef(x, [B, Cin, H, W], w, [Cout, Cin, k, k], { bias, stride, padding: pad }).out];
      },
    })),
  ],
  tiled: [
    {
      name: "matmul [2,64,96]·[96,128]ᵀ + bias, SiLU (32×32 register tiles)",
      tolerance: 1e-5,
      async run(ctx: GpuContext): Promise<[ArrayLike<number>, ArrayLike<number>]> {
        const a = randn(2 * 64 * 96, 12), b = randn(128 * 96, 13, 0.2), bias = randn(128, 14);
        const got = await runOp(
          ctx,
          [[a, [2, 64, 96]], [b, [128, 96]], [bias, [128]]],
          (rec, [ta, tb, tc]) => matmul(rec, ta, tb, { transB: true, bias: tc, act: "silu" }),
        );
        return [got, matmulRef(a, [2, 64, 96], b, [128, 96], { transB: true, bias, act: "silu" }).out];
      },
    },
    {
      name: "conv2d [1,8,12,12] 3×3→16 pad 1 (implicit GEMM)",
      tolerance: 1e-5,
      async run(ctx: GpuContext): Promise<[ArrayLike<number>, ArrayLike<number>]> {
        const x = randn(8 * 144, 15), w = randn(16 * 8 * 9, 16, 0.3), bias = randn(16, 17);
        const got = await runOp(
          ctx,
          [[x, [1, 8, 12, 12]], [w, [16, 8, 3, 3]], [bias, [16]]],
          (rec, [tx, tw, tb]) => conv2d(rec, tx, tw, { bias: tb, padding: 1 }),
        );
        return [got, conv2dRef(x, [1, 8, 12, 12], w, [16, 8, 3, 3], { bias, padding: 1 }).out];
      },
    },
  ],
  attention: [
    ...([[2, 77, 13, 3, 40, false], [1, 100, 100, 2, 16, false], [2, 77, 77, 2, 64, true]] as const).map(
      ([B, nq, nk, heads, dh, causal]) => ({
        name: `B${B} ${nq}×${nk} tokens, ${heads} heads of ${dh}${causal ? ", causal" : ""}`,
        tolerance: 1e-5,
        async run(ctx: GpuContext): Promise<[ArrayLike<number>, ArrayLike<number>]> {
          const q = randn(B * nq * heads * dh, 6), k = randn(B * nk * heads * dh, 7), v = randn(B * nk * heads * dh, 8);
          const got = await runOp(
            ctx,
            [[q, [B, nq, heads * dh]], [k, [B, nk, heads * dh]], [v, [B, nk, heads * dh]]],
            (rec, [tq, tk, tv]) => attention(rec, { q: tq, k: tk, v: tv }, { heads, causal }),
          );
          return [got, attentionRef(q, k, v, { B, nq, nk, heads, dh, dv: dh, causal }).out];
        },
      }),
    ),
  ],
};

/** Names of the op groups the self-check covers. */
export const SELF_CHECK_OPS: readonly string[] = Object.keys(CASES);

/** Runs the self-check for the given op groups (all by default). */
export async function selfCheck(ctx: GpuContext, ops: readonly string[] = SELF_CHECK_OPS): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const op of ops) {
    const cases = CASES[op];
    if (!cases) throw new RangeError(`selfCheck: unknown op "${op}" (known: ${SELF_CHECK_OPS.join(", ")})`);
    for (const c of cases) {
      const [got, want] = await c.run(ctx);
      const error = relL2(got, want);
      results.push({ name: `${op}: ${c.name}`, error, tolerance: c.tolerance, ok: error < c.tolerance });
    }
  }
  return results;
}
