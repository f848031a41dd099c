import { assertClose, gpuTest } from "./_gpu.ts";
import { attention } from "../src/ops/attention.ts";
import { attentionRef, type AttentionRefShape } from "../src/ref/attention.ts";
import { randn } from "../src/ref/random.ts";
import type { GpuContext } from "../src/gpu/mod.ts";
import assert from "assert";

interface Case extends AttentionRefShape {
  name: string;
  /** Keys per dispatch, to exercise the state carried between dispatches on small shapes. */
  span?: number;
}

const cases: Case[] = [
  { name: "cross-attention Nq=77 Nk=13, 3 heads of 40, B=2", B: 2, nq: 77, nk: 13, heads: 3, dh: 40, dv: 40 },
  { name: "self-attention 100 tokens, 4 heads of 16 (tiny U-Net)", B: 1, nq: 100, nk: 100, heads: 4, dh: 16, dv: 16 },
  { name: "self-attention 70 tokens, 2 heads of 80", B: 1, nq: 70, nk: 70, heads: 2, dh: 80, dv: 80 },
  {
    name: "cross-attention 40×77, 1 head of 160, scale 0.3",
    B: 1,
    nq: 40,
    nk: 77,
    heads: 1,
    dh: 160,
    dv: 160,
    scale: 0.3,
  },
  {
    name: "causal 77×77, 2 heads of 64, B=2 (CLIP text)",
    B: 2,
    nq: 77,
    nk: 77,
    heads: 2,
    dh: 64,
    dv: 64,
    causal: true,
  },
  { name: "causal 77×77, 3 heads of 16", B: 1, nq: 77, nk: 77, heads: 3, dh: 16, dv: 16, causal: true },
  {
    name: "causal cross 90×33 (top-left mask), dh 13 ≠ dv 6",
    B: 2,
    nq: 90,
    nk: 33,
    heads: 3,
    dh: 13,
    dv: 6,
    causal: true,
  },
  { name: "a single key", B: 1, nq: 5, nk: 1, heads: 2, dh: 40, dv: 40 },
  { name: "cross 77×13 in dispatches of 5 keys", B: 2, nq: 77, nk: 13, heads: 3, dh: 40, dv: 40, span: 5 },
  {
    name: "causal 77×77 in dispatches of 20 keys",
    B: 1,
    nq: 77,
    nk: 77,
    heads: 2,
    dh: 16,
    dv: 16,
    causal: true,
    span: 20,
  },
  {
    name: "causal 700×700, 1 head of 160 (split by the loop budget)",
    B: 1,
    nq: 700,
    nk: 700,
    heads: 1,
    dh: 160,
    dv: 160,
    causal: true,
  },
];

/** Uploads random q, k, v for a case (scores of unit scale, so the softmax is neither flat nor one-hot). */
function inputs(ctx: GpuContext, c: AttentionRefShape, seed: number) {
  const host = {
    q: randn(c.B * c.nq * c.heads * c.dh, seed),
    k: randn(c.B * c.nk * c.heads * c.dh, seed + 1),
    v: randn(c.B * c.nk * c.heads * c.dv, seed + 2),
  };
  const gpu = {
    q: ctx.upload(host.q, [c.B, c.nq, c.heads * c.dh], "f32", "q"),
    k: ctx.upload(host.k, [c.B, c.nk, c.heads * c.dh], "f32", "k"),
    v: ctx.upload(host.v, [c.B, c.nk, c.heads * c.dv], "f32", "v"),
  };
  return { host, gpu };
}

for (const [n, c] of cases.entries()) {
  for (const variant of ["tiled", "naive"] as const) {
    gpuTest(`attention ${variant}: ${c.name}`, async (ctx) => {
      const { host, gpu } = inputs(ctx, c, 10 * n);
      const rec = ctx.recorder();
      const opts = { heads: c.heads, causal: c.causal, scale: c.scale, variant, keysPerDispatch: c.span };
      const { out, lse } = attention(rec, gpu, { ...opts, saveLse: true });
      const plain = attention(rec, gpu, opts);
      await rec.submit();
      const want = attentionRef(host.q, host.k, host.v, c);
      assert.deepEqual(out.shape, [c.B, c.nq, c.heads * c.dv]);
      assert.deepEqual(lse.shape, [c.B, c.heads, c.nq]);
      assertClose(await ctx.readF32(out), want.out, 1e-5, "out");
      assertClose(await ctx.readF32(lse), want.lse, 1e-5, "lse");
      assert.deepEqual(await ctx.readF32(plain), await ctx.readF32(out), "saveLse changes the output");
      ctx.release(gpu.q, gpu.k, gpu.v, out, lse, plain);
    });
  }
}

gpuTest("attention writes into a caller-owned out", async (ctx) => {
  const c = cases[0];
  const { host, gpu } = inputs(ctx, c, 3);
  const out = ctx.tensor([c.B, c.nq, c.heads * c.dv], "f32", "mine");
  const rec = ctx.recorder();
  assert.equal(attention(rec, gpu, { heads: c.heads, out }), out);
  await rec.submit();
  assertClose(await ctx.readF32(out), attentionRef(host.q, host.k, host.v, c).out, 1e-5, "out");
  ctx.release(gpu.q, gpu.k, gpu.v, out);
});

// SD v1's 64×64-latent self-attention length. The score matrix alone would be N²·4 = 64 MiB per head.
gpuTest("attention over 4096 tokens never allocates an N² buffer and matches the reference", async (ctx) => {
  const c: AttentionRefShape = { B: 1, nq: 4096, nk: 4096, heads: 2, dh: 40, dv: 40 };
  const { host, gpu } = inputs(ctx, c, 7);
  await ctx.sync();
  ctx.resetPeak();
  const before = ctx.memory.current;
  const rec = ctx.recorder();
  const { out, lse } = attention(rec, gpu, { heads: c.heads, saveLse: true });
  await rec.submit();
  await ctx.sync();
  const nn = c.nq * c.nk * 4;
  assert.ok(ctx.memory.largestBuffer < nn, `largest buffer ${ctx.memory.largestBuffer} B ≥ N²·4 = ${nn} B`);
  assert.ok(ctx.memory.peak - before < nn, `peak grew by ${ctx.memory.peak - before} B ≥ N²·4`);
  // Whole rows, spread over the sequence (first, last, tile edges, a stride through the middle).
  const rows = [0, 1, 63, 64, 65, 2047, 4031, 4095];
  for (let i = 5; i < c.nq; i += 97) rows.push(i);
  const want = attentionRef(host.q, host.k, host.v, { ...c, rows });
  const all = await ctx.readF32(out), allLse = await ctx.readF32(lse);
  const cv = c.heads * c.dv;
  const got = new Float32Array(rows.length * cv), gotLse = new Float32Array(c.heads * rows.length);
  rows.forEach((i, r) => {
    got.set(all.subarray(i * cv, (i + 1) * cv), r * cv);
    for (let h = 0; h < c.heads; h++) gotLse[h * rows.length + r] = allLse[h * c.nq + i];
  });
  assertClose(got, want.out, 1e-5, `out (${rows.length} rows)`);
  assertClose(gotLse, want.lse, 1e-5, "lse");
  ctx.release(gpu.q, gpu.k, gpu.v, out, lse);
});

gpuTest("attention rejects bad shapes and options, naming the shapes", (ctx) => {
  const t = (shape: number[], label = "t") => ctx.tensor(shape, "f32", label);
  const q = t([2, 77, 120], "q"), k = t([2, 13, 120], "k"), v = t([2, 13, 120], "v");
  const rec = ctx.recorder();
  const bad = (inputs: Partial<{ q: typeof q; k: typeof k; v: typeof v }>, opts: object, re: RegExp) =>
    assert.throws(() => attention(rec, { q, k, v, ...inputs }, { heads: 3, ...opts }), re);
  const k1 = t([1, 13, 120]), k2 = t([2, 13, 96]), v2 = t([2, 14, 120]), q4 = t([2, 77, 2, 60]);
  const big = t([2, 77, 300]), out = t([2, 77, 96]), i32 = ctx.tensor([2, 13, 120], "i32", "ints");
  bad({ k: k1 }, {}, /batch sizes differ: q \[2,77,120\], k \[1,13,120\], v \[2,13,120\]/);
  bad({ k: k2 }, {}, /q \[2,77,120\] and k \[2,13,96\] must have the same channels/);
  bad({ v: v2 }, {}, /k \[2,13,120\] and v \[2,14,120\] must have the same tokens/);
  bad({}, { heads: 7 }, /channels of q \[2,77,120\] and v \[2,13,120\] must divide into 7 heads/);
  bad({}, { heads: 0 }, /heads must be a positive integer, got 0/);
  bad({ q: q4 }, {}, /q "t" has shape \[2,77,2,60\], expected \[B, tokens, C\]/);
  bad({ q: big, k: t([2, 13, 300]) }, { heads: 1 }, /head dims 300 .* must lie in 1…256/);
  bad({}, { out }, /attention output "t": shape \[2,77,96\] does not match expected \[2,77,120\]/);
  bad({}, { out: q }, /output "q" shares its buffer with input "q"/);
  bad({ v: i32 }, {}, /attention v: "ints" \[2,13,120\] is i32, expected f32/);
  bad({}, { scale: NaN }, /scale must be finite/);
  bad({}, { keysPerDispatch: 0 }, /keysPerDispatch must be a positive integer, got 0/);
  assert.equal(rec.dispatches, 0);
  ctx.release(q, k, v, k1, k2, v2, q4, big, out, i32);
});
