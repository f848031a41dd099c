import { assertClose, gpuTest } from "./_gpu.ts";
import { attention, attentionBackward, type AttentionBackwardOptions } from "../src/ops/attention.ts";
import { attentionBackwardRef, type AttentionBackwardRefShape, attentionRef64 } from "../src/ref/attention.ts";
import { randn } from "../src/ref/random.ts";
import type { GpuContext, Tensor } from "../src/gpu/mod.ts";
import assert from "assert";

interface Case extends AttentionBackwardRefShape {
  name: string;
  /** Tokens per dispatch, to exercise gradients accumulated over several dispatches on small shapes. */
  span?: number;
}

const cases: Case[] = [
  { name: "cross 77×13, 3 heads of 40, B=2", B: 2, nq: 77, nk: 13, heads: 3, dh: 40, dv: 40 },
  { name: "self 70 tokens, 2 heads of 80", B: 1, nq: 70, nk: 70, heads: 2, dh: 80, dv: 80 },
  { name: "cross 40×77, 1 head of 160, scale 0.3", B: 1, nq: 40, nk: 77, heads: 1, dh: 160, dv: 160, scale: 0.3 },
  { name: "causal 77×77, 3 heads of 16, B=2", B: 2, nq: 77, nk: 77, heads: 3, dh: 16, dv: 16, causal: true },
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
  {
    name: "causal 20×150 (keys no query sees), dh 40 ≠ dv 24",
    B: 1,
    nq: 20,
    nk: 150,
    heads: 2,
    dh: 40,
    dv: 24,
    causal: true,
  },
  {
    name: "causal 77×77 in dispatches of 20 tokens",
    B: 1,
    nq: 77,
    nk: 77,
    heads: 2,
    dh: 40,
    dv: 40,
    causal: true,
    span: 20,
  },
  {
    name: "cross 100×66 in dispatches of 7 tokens, dh 17 ≠ dv 40",
    B: 2,
    nq: 100,
    nk: 66,
    heads: 1,
    dh: 17,
    dv: 40,
    span: 7,
  },
  // Long enough that the loop budget splits both kernels at dh = 160 (lavapipe's loop cap).
  {
    name: "causal 600×600, 1 head of 160 (split by the loop budget)",
    B: 1,
    nq: 600,
    nk: 600,
    heads: 1,
    dh: 160,
    dv: 160,
    causal: true,
  },
];

/** Host and GPU inputs of a case: random q, k, v, dout; o and lse from the GPU forward. */
async function setup(ctx: GpuContext, c: AttentionBackwardRefShape, seed: number) {
  const cq = c.heads * c.dh, cv = c.heads * c.dv;
  const host = {
    q: randn(c.B * c.nq * cq, seed),
    k: randn(c.B * c.nk * cq, seed + 1),
    v: randn(c.B * c.nk * cv, seed + 2),
    dout: randn(c.B * c.nq * cv, seed + 3),
  };
  const q = ctx.upload(host.q, [c.B, c.nq, cq], "f32", "q");
  const k = ctx.upload(host.k, [c.B, c.nk, cq], "f32", "k");
  const v = ctx.upload(host.v, [c.B, c.nk, cv], "f32", "v");
  const dout = ctx.upload(host.dout, [c.B, c.nq, cv], "f32", "dout");
  const rec = ctx.recorder();
  const { out: o, lse } = attention(rec, { q, k, v }, {
    heads: c.heads,
    causal: c.causal,
    scale: c.scale,
    saveLse: true,
  });
  await rec.submit();
  return { host, gpu: { q, k, v, o, lse, dout } };
}

/** A gradient tensor like `t`, filled with `fill` (NaN: anything not overwritten shows). */
function gradLike(ctx: GpuContext, t: Tensor, fill: Float32Array | number, label: string): Tensor {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const data = typeof fill === "number" ? new Float32Array(n).fill(fill) : fill;
  return ctx.upload(data, t.shape, "f32", label);
}

for (const [n, c] of cases.entries()) {
  const variants = n === 4 || n === 7 ? ["tiled", "naive"] as const : ["tiled"] as const;
  for (const variant of variants) {
    gpuTest(`attentionBackward ${variant}: ${c.name}`, async (ctx) => {
      const { host, gpu } = await setup(ctx, c, 10 * n);
      const dq = gradLike(ctx, gpu.q, NaN, "dq"), dk = gradLike(ctx, gpu.k, NaN, "dk");
      const dv = gradLike(ctx, gpu.v, NaN, "dv");
      const rec = ctx.recorder();
      const opts = { heads: c.heads, causal: c.causal, scale: c.scale, variant, tokensPerDispatch: c.span };
      const got = attentionBackward(rec, gpu, { ...opts, dq, dk, dv, accumulate: false });
      assert.deepEqual(got, { dq, dk, dv });
      await rec.submit();
      const want = attentionBackwardRef(host.q, host.k, host.v, host.dout, c);
      assertClose(await ctx.readF32(dq), want.dq, 1e-5, "dq");
      assertClose(await ctx.readF32(dk), want.dk, 1e-5, "dk");
      assertClose(await ctx.readF32(dv), want.dv, 1e-5, "dv");
      ctx.release(...Object.values(gpu), dq, dk, dv);
    });
  }
}

gpuTest("attentionBackward accumulates into pre-filled gradients, also over several dispatches", async (ctx) => {
  for (const [n, c] of [cases[0], cases[6]].entries()) {
    const { host, gpu } = await setup(ctx, c, 100 + n);
    const before = { dq: randn(host.q.length, 7), dk: randn(host.k.length, 8), dv: randn(host.v.length, 9) };
    const dq = gradLike(ctx, gpu.q, before.dq, "dq"), dk = gradLike(ctx, gpu.k, before.dk, "dk");
    const dv = gradLike(ctx, gpu.v, before.dv, "dv");
    const rec = ctx.recorder();
    attentionBackward(rec, gpu, { heads: c.heads, causal: c.causal, tokensPerDispatch: c.span, dq, dk, dv });
    await rec.submit();
    const want = attentionBackwardRef(host.q, host.k, host.v, host.dout, c);
    const plus = (a: Float32Array, b: Float64Array) => a.map((x, i) => x + b[i]);
    assertClose(await ctx.readF32(dq), plus(before.dq, want.dq), 1e-5, `dq (${c.name})`);
    assertClose(await ctx.readF32(dk), plus(before.dk, want.dk), 1e-5, `dk (${c.name})`);
    assertClose(await ctx.readF32(dv), plus(before.dv, want.dv), 1e-5, `dv (${c.name})`);
    ctx.release(...Object.values(gpu), dq, dk, dv);
  }
});

gpuTest("attentionBackward computes only the gradients it is given", async (ctx) => {
  const c = cases[4];
  const { host, gpu } = await setup(ctx, c, 200);
  const want = attentionBackwardRef(host.q, host.k, host.v, host.dout, c);
  const base: AttentionBackwardOptions = { heads: c.heads, causal: c.causal, accumulate: false };
  for (const name of ["dq", "dk", "dv"] as const) {
    const like = { dq: gpu.q, dk: gpu.k, dv: gpu.v }[name];
    const g = gradLike(ctx, like, NaN, name);
    const rec = ctx.recorder();
    assert.deepEqual(attentionBackward(rec, gpu, { ...base, [name]: g }), { [name]: g });
    assert.equal(rec.dispatches, 2, `${name} alone: the D pre-pass and one kernel`);
    await rec.submit();
    assertClose(await ctx.readF32(g), want[name], 1e-5, `${name} alone`);
    ctx.release(g);
  }
  const rec = ctx.recorder();
  assert.deepEqual(attentionBackward(rec, gpu, base), {});
  assert.equal(rec.dispatches, 0);
  await rec.submit();
  ctx.release(...Object.values(gpu));
});

// Central differences of L = Σ out ∘ w through the float64 forward reference; then ∂L/∂out = w is the dout given to
// the GPU backward (which also gets the GPU forward's o and lse).
const fdCases: Case[] = [
  { name: "cross 5×7, 2 heads, dh 3 ≠ dv 5", B: 1, nq: 5, nk: 7, heads: 2, dh: 3, dv: 5 },
  {
    name: "causal 6×4, B=2, dh 4, dv 2, scale 0.8",
    B: 2,
    nq: 6,
    nk: 4,
    heads: 1,
    dh: 4,
    dv: 2,
    causal: true,
    scale: 0.8,
  },
];

/** Finite-difference gradients of Σ attentionRef64(q, k, v).out ∘ w with respect to q, k and v. */
function finiteDifferences(host: { q: Float32Array; k: Float32Array; v: Float32Array }, w: Float32Array, c: Case) {
  const x = { q: Float64Array.from(host.q), k: Float64Array.from(host.k), v: Float64Array.from(host.v) };
  const loss = () => attentionRef64(x.q, x.k, x.v, c).out.reduce((acc, o, i) => acc + o * w[i], 0);
  const eps = 1e-3;
  const grad = (t: Float64Array) =>
    t.map((_, i) => {
      const t0 = t[i];
      t[i] = t0 + eps;
      const up = loss();
      t[i] = t0 - eps;
      const down = loss();
      t[i] = t0;
      return (up - down) / (2 * eps);
    });
  return { dq: grad(x.q), dk: grad(x.k), dv: grad(x.v) };
}

Deno.test("attentionBackwardRef matches finite differences of the float64 forward", () => {
  for (const [n, c] of fdCases.entries()) {
    const host = {
      q: randn(c.B * c.nq * c.heads * c.dh, n),
      k: randn(c.B * c.nk * c.heads * c.dh, n + 1),
      v: randn(c.B * c.nk * c.heads * c.dv, n + 2),
    };
    const w = randn(c.B * c.nq * c.heads * c.dv, n + 3);
    const fd = finiteDifferences(host, w, c), ref = attentionBackwardRef(host.q, host.k, host.v, w, c);
    for (const g of ["dq", "dk", "dv"] as const) assertClose(ref[g], fd[g], 1e-5, `${g} (${c.name})`);
  }
});

for (const [n, c] of fdCases.entries()) {
  gpuTest(`attentionBackward matches finite differences: ${c.name}`, async (ctx) => {
    const { host, gpu } = await setup(ctx, c, 300 + n);
    const fd = finiteDifferences(host, host.dout, c);
    const dq = gradLike(ctx, gpu.q, 0, "dq"), dk = gradLike(ctx, gpu.k, 0, "dk"), dv = gradLike(ctx, gpu.v, 0, "dv");
    const rec = ctx.recorder();
    attentionBackward(rec, gpu, { heads: c.heads, causal: c.causal, scale: c.scale, dq, dk, dv });
    await rec.submit();
    assertClose(await ctx.readF32(dq), fd.dq, 1e-3, "dq");
    assertClose(await ctx.readF32(dk), fd.dk, 1e-3, "dk");
    assertClose(await ctx.readF32(dv), fd.dv, 1e-3, "dv");
    ctx.release(...Object.values(gpu), dq, dk, dv);
  });
}

// SD v1's 64×64-latent self-attention length: the score matrix alone would be N²·4 = 64 MiB.
gpuTest("attentionBackward over 4096 tokens never allocates an N² buffer and matches the reference", async (ctx) => {
  const c: AttentionBackwardRefShape = { B: 1, nq: 4096, nk: 4096, heads: 1, dh: 40, dv: 40 };
  const { host, gpu } = await setup(ctx, c, 400);
  const dq = gradLike(ctx, gpu.q, NaN, "dq"),
    dk = gradLike(ctx, gpu.k, NaN, "dk"),
    dv = gradLike(ctx, gpu.v, NaN, "dv");
  await ctx.sync();
  ctx.resetPeak();
  const before = ctx.memory.current;
  const rec = ctx.recorder();
  attentionBackward(rec, gpu, { heads: c.heads, dq, dk, dv, accumulate: false });
  await rec.submit();
  await ctx.sync();
  const nn = c.nq * c.nk * 4;
  assert.ok(ctx.memory.largestBuffer < nn, `largest buffer ${ctx.memory.largestBuffer} B ≥ N²·4 = ${nn} B`);
  assert.ok(ctx.memory.peak - before < nn, `peak grew by ${ctx.memory.peak - before} B ≥ N²·4`);
  // Whole rows spread over the sequence (ends, tile edges, a stride through the middle); dk_j and dv_j need every
  // query, so the reference does the full O(N²·d) work once, for all these keys together.
  const picks = [0, 1, 63, 64, 65, 2047, 4031, 4095];
  for (let i = 5; i < c.nq; i += 397) picks.push(i);
  const want = attentionBackwardRef(host.q, host.k, host.v, host.dout, { ...c, rows: picks, keys: picks });
  const pick = (all: Float32Array, d: number) => {
    const out = new Float32Array(picks.length * d);
    picks.forEach((i, r) => out.set(all.subarray(i * d, (i + 1) * d), r * d));
    return out;
  };
  assertClose(pick(await ctx.readF32(dq), c.dh), want.dq, 1e-5, `dq (${picks.length} rows)`);
  assertClose(pick(await ctx.readF32(dk), c.dh), want.dk, 1e-5, `dk (${picks.length} rows)`);
  assertClose(pick(await ctx.readF32(dv), c.dv), want.dv, 1e-5, `dv (${picks.length} rows)`);
  ctx.release(...Object.values(gpu), dq, dk, dv);
});

gpuTest("attentionBackward rejects bad shapes and options, naming the shapes", (ctx) => {
  const t = (shape: number[], label = "t") => ctx.tensor(shape, "f32", label);
  const q = t([2, 77, 120], "q"), k = t([2, 13, 120], "k"), v = t([2, 13, 96], "v");
  const o = t([2, 77, 96], "o"), lse = t([2, 3, 77], "lse"), dout = t([2, 77, 96], "dout");
  const dq = t([2, 77, 120], "dq");
  const rec = ctx.recorder();
  const inputs = { q, k, v, o, lse, dout };
  const bad = (patch: Partial<typeof inputs>, opts: Partial<AttentionBackwardOptions>, re: RegExp) =>
    assert.throws(() => attentionBackward(rec, { ...inputs, ...patch }, { heads: 3, dq, ...opts }), re);
  const o2 = t([2, 77, 120], "o2"), lse2 = t([2, 77, 3], "lse2"), g = t([2, 76, 96], "g");
  const dk2 = t([2, 13, 96], "dk2"), i32 = ctx.tensor([2, 77, 96], "i32", "ints");
  bad(
    { o: o2 },
    {},
    /attentionBackward: o "o2" has shape \[2,77,120\], expected \[2,77,96\] for q \[2,77,120\], v \[2,13,96\] and 3 heads/,
  );
  bad({ lse: lse2 }, {}, /lse "lse2" has shape \[2,77,3\], expected \[2,3,77\]/);
  bad({ dout: g }, {}, /dout "g" has shape \[2,76,96\], expected \[2,77,96\]/);
  bad({ dout: i32 }, {}, /attentionBackward dout: "ints" \[2,77,96\] is i32, expected f32/);
  bad({ k: t([2, 13, 60]) }, {}, /attentionBackward: q \[2,77,120\] and k \[2,13,60\] must have the same channels/);
  bad({}, { heads: 7 }, /attentionBackward: channels of q \[2,77,120\] and v \[2,13,96\] must divide into 7 heads/);
  bad({}, { dk: dk2 }, /attentionBackward dk output "dk2": shape \[2,13,96\] does not match expected \[2,13,120\]/);
  bad({}, { dq: q }, /attentionBackward dq: output "q" shares its buffer with input "q"/);
  bad({}, { tokensPerDispatch: 0.5 }, /tokensPerDispatch must be a positive integer, got 0.5/);
  bad({}, { scale: Infinity }, /attentionBackward: scale must be finite/);
  assert.equal(rec.dispatches, 0);
  ctx.release(q, k, v, o, lse, dout, dq, o2, lse2, g, dk2, i32);
});
