import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import type { GpuContext, Tensor } from "../src/gpu/mod.ts";
import { clipGradNorm, gradNorm } from "../src/optim/mod.ts";
import { randn, rng } from "../src/ref/random.ts";

/**
 * torch.nn.utils.clip_grad_norm_ in float64.
 * grads: tensors of any length; returns the norm, the factor and the scaled copies.
 */
function clipGradNormRef(grads: readonly Float32Array[], maxNorm: number) {
  let s = 0;
  for (const g of grads) for (const x of g) s += x * x;
  const norm = Math.sqrt(s);
  const scale = Math.min(1, maxNorm / (norm + 1e-6));
  return { norm, scale, scaled: grads.map((g) => Float64Array.from(g, (x) => x * scale)) };
}

function upload(ctx: GpuContext, sizes: readonly number[], seed: number) {
  const host = sizes.map((n, i) => randn(n, seed + i, 1 + i % 3));
  return { host, grads: host.map((h, i) => ctx.upload(h, [h.length], "f32", `g${i}`)) };
}

const AWKWARD = [7, 105, 4096 * 3 + 5, 64 * 64, 1, 0, 4097];

gpuTest(`clipGradNorm above the threshold: norm and scaled gradients match, sizes ${AWKWARD}`, async (ctx) => {
  const { host, grads } = upload(ctx, AWKWARD, 1);
  const maxNorm = 0.3 * clipGradNormRef(host, Infinity).norm;
  const want = clipGradNormRef(host, maxNorm);
  const rec = ctx.recorder();
  const norm = clipGradNorm(rec, grads, maxNorm);
  await rec.submit();
  const gotNorm = (await ctx.readF32(norm))[0];
  const err = assertClose([gotNorm], [want.norm], 1e-6, "norm");
  let worst = 0;
  for (const [i, g] of grads.entries()) {
    worst = Math.max(worst, assertClose(await ctx.readF32(g), want.scaled[i], 1e-6, `scaled g${i} [${g.shape}]`));
  }
  console.log(
    `  norm ${gotNorm} rel err ${err.toExponential(2)}; scaled gradients worst rel L2 ${worst.toExponential(2)}`,
  );
  ctx.release(norm, ...grads);
});

gpuTest("clipGradNorm below the threshold leaves gradients bit-for-bit (subnormals included)", async (ctx) => {
  const { host, grads } = upload(ctx, AWKWARD, 2);
  host[2][17] = 1e-40; // subnormal: a multiply by 1.0 would flush it on GPUs that flush
  host[2][18] = -0;
  ctx.write(grads[2], host[2]);
  const want = clipGradNormRef(host, Infinity);
  const rec = ctx.recorder();
  const norm = clipGradNorm(rec, grads, want.norm * 1.001);
  await rec.submit();
  assertClose([(await ctx.readF32(norm))[0]], [want.norm], 1e-6, "norm");
  for (const [i, g] of grads.entries()) {
    const got = new Uint32Array((await ctx.readF32(g)).buffer.slice(0));
    assert.deepEqual(got, new Uint32Array(host[i].buffer), `g${i} [${g.shape}] changed`);
  }
  ctx.release(norm, ...grads);
});

gpuTest(
  "clipGradNorm over 61 tensors of varied sizes (1.6M elements, more partial sums than a workgroup)",
  async (ctx) => {
    const r = rng(9);
    const sizes = Array.from(
      { length: 60 },
      (_, i) => i === 3 ? 0 : i === 7 ? 1 : Math.floor(r.uniform() ** 3 * 90_000),
    );
    sizes.push(262_147);
    // one partial sum per 256 · 16 elements, or per 256 · 16 vec4s when the length is a multiple of 4
    const partials = sizes.reduce((a, n) => a + Math.ceil(n % 4 ? n / 4096 : n / 16384), 0);
    assert.ok(partials > 256, `${partials} partial sums: the combine kernel's loop would run once`);
    const { host, grads } = upload(ctx, sizes, 100);
    const total = clipGradNormRef(host, Infinity).norm;
    const want = clipGradNormRef(host, total / 3);
    const rec = ctx.recorder();
    const norm = clipGradNorm(rec, grads, total / 3);
    await rec.submit();
    const gotNorm = (await ctx.readF32(norm))[0];
    const err = assertClose([gotNorm], [want.norm], 1e-6, "norm");
    const got = await Promise.all(grads.map((g) => ctx.readF32(g)));
    const cat = (xs: readonly ArrayLike<number>[]) => Float64Array.from(xs.flatMap((x) => Array.from(x)));
    const errAll = assertClose(cat(got), cat(want.scaled), 1e-6, "all scaled gradients");
    console.log(
      `  ${sizes.reduce((a, b) => a + b)} elements, ${partials} partials: norm rel err ${err.toExponential(2)}, ` +
        `scaled rel L2 ${errAll.toExponential(2)}`,
    );
    ctx.release(norm, ...grads);
  },
);

gpuTest("gradNorm only measures; views of one buffer count once each; out is reused", async (ctx) => {
  // a flat gradient buffer with two views at 256-byte-aligned offsets (the bytes between them are not gradients)
  const flat = randn(64 + 200, 5);
  const F = ctx.upload(flat, [264]);
  const a: Tensor = { ...F, shape: [10, 3], offset: 0 }, b: Tensor = { ...F, shape: [200], offset: 256 };
  const out = ctx.tensor([], "f32", "norm");
  const rec = ctx.recorder();
  const norm = gradNorm(rec, [a, b], { out });
  await rec.submit();
  assert.equal(norm, out);
  const want = clipGradNormRef([flat.subarray(0, 30), flat.subarray(64)], Infinity).norm;
  assertClose(await ctx.readF32(out), [want], 1e-6, "norm of two views");
  assert.deepEqual(await ctx.readF32(F), flat, "gradNorm modified the gradients");
  const rec2 = ctx.recorder();
  gradNorm(rec2, [], { out });
  await rec2.submit();
  assert.deepEqual([...await ctx.readF32(out)], [0], "norm of no gradients");
  ctx.release(F, out);
});

gpuTest("clipGradNorm rejects bad arguments with messages that say why", async (ctx) => {
  const g = ctx.tensor([4, 3], "f32", "dW"), gi = ctx.tensor([5], "i32", "di"), out = ctx.tensor([1], "f32", "n");
  const rec = ctx.recorder();
  assert.throws(() => clipGradNorm(rec, [g], -1), /maxNorm must be a finite number ≥ 0, got -1/);
  assert.throws(() => clipGradNorm(rec, [g], Infinity), RangeError);
  assert.throws(() => clipGradNorm(rec, [g, gi], 1), /"di" \[5\] is i32, expected f32/);
  assert.throws(() => clipGradNorm(rec, [g, g], 1), /"dW" \[4,3\] and "dW" \[4,3\] overlap/);
  assert.throws(() => clipGradNorm(rec, [g], 1, { out }), /out "n": shape \[1\] does not match expected \[\]/);
  assert.throws(() => gradNorm(rec, [g], { out: g }), /shape \[4,3\] does not match expected \[\]/);
  assert.equal(rec.dispatches, 0, "nothing was recorded");
  await rec.submit();
  ctx.release(g, gi, out);
});
