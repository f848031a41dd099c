import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { loadSaeFile } from "../src/io/sae_files.ts";
import type { GpuContext } from "../src/gpu/context.ts";
import {
  constrainDecoder,
  DeadLatents,
  Sae,
  SAE_PARAM_NAMES,
  saeBackward,
  type SaeConfig,
  saeConfig,
  saeForward,
  type SaeParamName,
} from "../src/sae/model.ts";
import { type AuxLoss, lossScalars, type RecLoss, saeLoss } from "../src/sae/loss.ts";
import { densify, sparseDecode } from "../src/sae/sparse.ts";
import { type Activation, encodeTopK } from "../src/sae/encode.ts";
import { topkRef } from "../src/ref/topk.ts";
import { denseBackward, denseDecode } from "../src/sae/dense.ts";
import { columnMean, geometricMedian } from "../src/sae/init.ts";
import {
  constrainDecoderRef,
  deadUpdateRef,
  geometricMedianRef,
  saeBackwardRef,
  saeForwardRef,
  saeLossRef,
  type SaeRefConfig,
} from "../src/ref/sae.ts";
import { randn, rng } from "../src/ref/random.ts";
import { relL2 } from "../src/ref/compare.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);

type HostParams = Record<SaeParamName, Float32Array>;

/** Random parameters with unit decoder columns, and biases large enough to matter. */
function randomParams(c: SaeConfig, seed: number): HostParams {
  const { d, nLatents: n } = c;
  const W_dec = randn(d * n, seed + 2);
  constrainDecoderRef(W_dec, null, d, n);
  return {
    W_enc: randn(n * d, seed, 1 / Math.sqrt(d)),
    b_enc: randn(n, seed + 1, 0.3),
    W_dec,
    b_pre: randn(d, seed + 3, 0.5),
  };
}

interface Run {
  code: { values: Float32Array; indices: Uint32Array };
  z: Float32Array;
  pre: Float32Array;
  xHat: Float32Array;
  scalars: ReturnType<typeof lossScalars>;
  grads: HostParams;
}

interface RunOptions {
  kAux?: number;
  dead?: Float32Array;
  rec?: RecLoss;
  aux?: AuxLoss;
  mseScale?: number;
  dense?: boolean;
  /** Gradients start here and accumulate (else they are overwritten). */
  prior?: HostParams;
}

/** One forward + loss + backward on the GPU, read back. */
async function run(ctx: GpuContext, sae: Sae, xs: Float32Array, o: RunOptions = {}): Promise<Run> {
  const { d, nLatents: n } = sae.config;
  const B = xs.length / d;
  const x = ctx.upload(xs, [B, d], "f32", "x");
  const deadMask = o.dead ? ctx.upload(o.dead, [n], "f32", "dead") : undefined;
  const grads = sae.zerosLike();
  if (o.prior) { for (const name of SAE_PARAM_NAMES) ctx.write(grads[name], o.prior[name]); }
  const rec = ctx.recorder();
  const fwd = saeForward(rec, sae, x, { kAux: o.kAux ?? 0, deadMask, keepPre: true });
  const z = densify(rec, fwd.code, n);
  const xHat = o.dense ? denseDecode(rec, sae, fwd).xHat : fwd.xHat;
  const loss = saeLoss(rec, { x, xHat, auxRecon: fwd.auxRecon, values: fwd.code.values }, {
    rec: o.rec,
    aux: o.aux ?? (o.kAux ? "sum" : "none"),
    mseScale: o.mseScale,
  });
  const opts = { accumulate: o.prior !== undefined };
  if (o.dense) denseBackward(rec, sae, fwd, loss.dx!, grads, opts);
  else saeBackward(rec, sae, fwd, loss.dx!, grads, opts);
  await rec.submit();
  const out: Run = {
    code: {
      values: await ctx.readF32(fwd.code.values),
      indices: await ctx.read(fwd.code.indices) as Uint32Array,
    },
    z: await ctx.readF32(z),
    pre: await ctx.readF32(fwd.pre!),
    xHat: await ctx.readF32(xHat),
    scalars: lossScalars(await ctx.readF32(loss.scalars)),
    grads: {} as HostParams,
  };
  for (const name of SAE_PARAM_NAMES) out.grads[name] = await ctx.readF32(grads[name]);
  ctx.release(x, deadMask, ...Object.values(grads));
  return out;
}

gpuTest("SAE matches the PyTorch fixture (sae-topk): forward, losses, top-k indices, every gradient", async (ctx) => {
  const meta = JSON.parse(await Deno.readTextFile(new URL("sae-topk.json", FIX)));
  await using st = await openSafetensorsFile(new URL("sae-topk.safetensors", FIX));
  // the loader takes the fixture's `param/*` tensors; d and n come from their shapes, k from the JSON
  const { sae } = await loadSaeFile(ctx, new URL("sae-topk.safetensors", FIX), { k: meta.k, prefix: "param/" });
  assert.deepEqual(sae.config, saeConfig({ d: meta.d, nLatents: meta.n_latents, k: meta.k }));
  const dead = Float32Array.from(await st.readI32("input/dead_mask"));
  const x = await st.readF32("input/x");
  assert.equal(meta.aux_alpha, 1 / 32);
  const got = await run(ctx, sae, x, { kAux: meta.k_aux, dead, rec: "sum", aux: "sum" });
  const errs: string[] = [];
  const check = (what: string, a: ArrayLike<number>, b: ArrayLike<number>, tol: number) =>
    errs.push(`${what} ${assertClose(a, b, tol, what).toExponential(2)}`);
  check("pre_act", got.pre, await st.readF32("output/pre_act"), 1e-4);
  check("z", got.z, await st.readF32("output/z"), 1e-4);
  check("topk_values", got.code.values, await st.readF32("output/topk_values"), 1e-4);
  assert.deepEqual([...got.code.indices], [...await st.readI32("output/topk_indices")], "top-k indices differ");
  check("x_hat", got.xHat, await st.readF32("output/x_hat"), 1e-4);
  for (const [name, key] of [["mse", "mse"], ["aux_loss", "auxLoss"], ["loss", "loss"], ["fvu", "fvu"]] as const) {
    check(name, [got.scalars[key]], await st.readF32(`output/${name}`), 1e-4);
  }
  for (const name of SAE_PARAM_NAMES) check(`grad/${name}`, got.grads[name], await st.readF32(`grad/${name}`), 1e-3);
  console.log(`  fixture rel. L2: ${errs.join(", ")}`);
  sae.release();
});

/** Fills AuxK-style dead masks: every third latent dead. */
const everyThird = (n: number) => Float32Array.from({ length: n }, (_, j) => (j % 3 === 0 ? 1 : 0));

const shapes: { B: number; d: number; n: number; k: number; kAux: number; relu: boolean; what: string }[] = [
  { B: 37, d: 23, n: 101, k: 5, kAux: 11, relu: true, what: "odd sizes, AuxK" },
  { B: 64, d: 64, n: 256, k: 8, kAux: 0, relu: true, what: "fixture-like, no AuxK" },
  { B: 50, d: 9, n: 40, k: 7, kAux: 0, relu: false, what: "no ReLU (Revelio), negative values kept" },
  { B: 130, d: 12, n: 6, k: 3, kAux: 2, relu: true, what: "n tiny: every latent in ~half the rows" },
];

for (const s of shapes) {
  gpuTest(
    `SAE sparse path = dense path = CPU reference, B=${s.B} d=${s.d} n=${s.n} k=${s.k}: ${s.what}`,
    async (ctx) => {
      const config = saeConfig({ d: s.d, nLatents: s.n, k: s.k, relu: s.relu });
      const params = randomParams(config, s.B + s.n);
      const sae = Sae.fromArrays(ctx, config, params);
      const xs = randn(s.B * s.d, 7 + s.d);
      const dead = s.kAux ? everyThird(s.n) : undefined;
      const o = { kAux: s.kAux, dead, aux: (s.kAux ? "sum" : "none") as AuxLoss };
      const sparse = await run(ctx, sae, xs, o);
      const dense = await run(ctx, sae, xs, { ...o, dense: true });
      const prior = randomParams(config, 99);
      const acc = await run(ctx, sae, xs, { ...o, prior });
      // CPU reference of the same forward, loss and backward
      const c: SaeRefConfig = { B: s.B, d: s.d, n: s.n, k: s.k, relu: s.relu, kAux: s.kAux, dead };
      const f = saeForwardRef(params, xs, c);
      const L = saeLossRef(xs, f.xHat, f.auxRecon, s.B, s.d, {
        rec: "sum",
        aux: o.aux,
        auxAlpha: 1 / 32,
        mseScale: 1,
      });
      const g = saeBackwardRef(params, f, L.dxHat, L.dAux, c);
      assert.deepEqual([...sparse.code.indices], [...f.indices], "top-k indices differ from the reference");
      assertClose(sparse.xHat, f.xHat, 1e-5, "x̂ vs CPU");
      assertClose(dense.xHat, f.xHat, 1e-5, "dense x̂ vs CPU");
      assertClose([sparse.scalars.loss, sparse.scalars.mse, sparse.scalars.fvu], [L.loss, L.mse, L.fvu], 1e-5, "loss");
      assertClose([sparse.scalars.explainedVariance], [L.explainedVariance], 1e-4, "explained variance");
      const errs: string[] = [];
      for (const name of SAE_PARAM_NAMES) {
        errs.push(
          `${name} ${assertClose(sparse.grads[name], g[name], 1e-5, `sparse grad ${name} vs CPU`).toExponential(1)}`,
        );
        assertClose(sparse.grads[name], dense.grads[name], 1e-5, `sparse vs dense grad ${name}`);
        const want = g[name].map((v, i) => v + prior[name][i]);
        assertClose(acc.grads[name], want, 1e-5, `accumulated grad ${name}`);
      }
      console.log(`  rel. L2 vs CPU: ${errs.join(", ")}`);
      sae.release();
    },
  );
}

/**
 * Loss of the CPU forward in float64 as a function of the parameters, written out independently of saeLossRef. The
 * AuxK term's target e and its normalising variance are fixed at θ₀ (the references detach the residual).
 */
function lossOf(
  base: HostParams,
  xs: Float32Array,
  c: SaeRefConfig,
  o: { rec: RecLoss; aux: AuxLoss; mseScale: number },
) {
  const { B, d } = c;
  const N = B * d;
  const f0 = saeForwardRef(base, xs, c);
  const e0 = Float64Array.from(xs, (v, t) => v - f0.xHat[t]);
  const centredSq = (v: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < d; i++) {
      let m = 0;
      for (let r = 0; r < B; r++) m += v[r * d + i] / B;
      for (let r = 0; r < B; r++) s += (v[r * d + i] - m) ** 2;
    }
    return s;
  };
  const see0 = centredSq(e0), sxx = centredSq(xs);
  return (p: Record<SaeParamName, ArrayLike<number>>) => {
    const f = saeForwardRef(p, xs, c);
    let sse = 0, saux = 0;
    for (let t = 0; t < N; t++) {
      sse += (xs[t] - f.xHat[t]) ** 2;
      saux += (f.auxRecon[t] - e0[t]) ** 2;
    }
    const rec = o.rec === "sum" ? sse / B : o.rec === "scaled" ? o.mseScale * sse / N : sse / sxx;
    const aux = o.aux === "sum" ? saux / B : o.aux === "normalized" ? saux / see0 : 0;
    return rec + aux / 32;
  };
}

for (
  const o of [
    { rec: "sum", aux: "sum", mseScale: 1 },
    { rec: "scaled", aux: "normalized", mseScale: 0.7 },
    { rec: "normalized", aux: "none", mseScale: 1 },
  ] as const
) {
  gpuTest(`SAE gradients match finite differences of the float64 forward (rec ${o.rec}, aux ${o.aux})`, async (ctx) => {
    const B = 6, d = 5, n = 12, k = 3, kAux = o.aux === "none" ? 0 : 4;
    const config = saeConfig({ d, nLatents: n, k });
    const params = randomParams(config, 5);
    const xs = randn(B * d, 8);
    const dead = kAux ? Float32Array.from({ length: n }, (_, j) => (j % 2 ? 1 : 0)) : undefined;
    const c: SaeRefConfig = { B, d, n, k, relu: true, kAux, dead };
    const sae = Sae.fromArrays(ctx, config, params);
    const got = await run(ctx, sae, xs, { kAux, dead, ...o });
    const L = lossOf(params, xs, c, o);
    for (const name of SAE_PARAM_NAMES) {
      const p64 = Object.fromEntries(SAE_PARAM_NAMES.map((m) => [m, Float64Array.from(params[m])])) as Record<
        SaeParamName,
        Float64Array
      >;
      const fd = new Float64Array(p64[name].length);
      const eps = 1e-4;
      for (let i = 0; i < fd.length; i++) {
        const v = p64[name][i];
        p64[name][i] = v + eps;
        const up = L(p64);
        p64[name][i] = v - eps;
        const down = L(p64);
        p64[name][i] = v;
        fd[i] = (up - down) / (2 * eps);
      }
      const err = relL2(got.grads[name], fd);
      assert.ok(err < 1e-3, `FD check of d${name}: rel. L2 ${err.toExponential(2)}`);
    }
    sae.release();
  });
}

gpuTest("SAE losses: scaled, normalized and NaN → 0 forms against the CPU reference", async (ctx) => {
  const B = 40, d = 17;
  const x = randn(B * d, 1, 2), xHat = randn(B * d, 2), a = randn(B * d, 3, 0.5);
  for (
    const o of [
      { rec: "scaled", aux: "normalized", mseScale: 0.25, auxAlpha: 0.5 },
      { rec: "normalized", aux: "sum", mseScale: 1, auxAlpha: 1 / 32 },
    ] as const
  ) {
    const want = saeLossRef(x, xHat, a, B, d, o);
    const rec = ctx.recorder();
    const [tx, th, ta] = [x, xHat, a].map((v) => ctx.upload(v, [B, d]));
    const { scalars, dx } = saeLoss(rec, { x: tx, xHat: th, auxRecon: ta }, o);
    await rec.submit();
    const s = lossScalars(await ctx.readF32(scalars));
    const g = await ctx.readF32(dx!);
    assertClose([s.loss, s.recLoss, s.auxLoss], [want.loss, want.recLoss, want.auxLoss], 1e-5, `${o.rec} losses`);
    assertClose(g.subarray(0, B * d), want.dxHat, 1e-5, `${o.rec} dL/dx̂`);
    assertClose(g.subarray(B * d), want.dAux, 1e-5, `${o.rec} dL/dê`);
  }
  // a constant batch: the normalised forms' denominators are 0, and the losses and gradients become 0
  const rec = ctx.recorder();
  const c = ctx.upload(new Float32Array(B * d).fill(3), [B, d]);
  const { scalars, dx } = saeLoss(rec, { x: c, xHat: c, auxRecon: ctx.upload(a, [B, d]) }, {
    rec: "normalized",
    aux: "normalized",
  });
  await rec.submit();
  const s = lossScalars(await ctx.readF32(scalars));
  assert.deepEqual([s.loss, s.recLoss, s.auxLoss], [0, 0, 0]);
  assert.ok((await ctx.readF32(dx!)).every((v) => v === 0));
});

gpuTest("decoder constraint: unit columns and the parallel gradient removed (vs CPU)", async (ctx) => {
  const d = 19, n = 70;
  const W = randn(d * n, 1, 3), G = randn(d * n, 2);
  W.fill(0, 0, 0); // keep a zero column to check it stays zero
  for (let i = 0; i < d; i++) W[i * n + 5] = 0;
  const tW = ctx.upload(W, [d, n]), tG = ctx.upload(G, [d, n]), tW2 = ctx.upload(W, [d, n]);
  const rec = ctx.recorder();
  constrainDecoder(rec, tW, tG);
  constrainDecoder(rec, tW2);
  await rec.submit();
  const [wantW, wantG] = [Float64Array.from(W), Float64Array.from(G)];
  constrainDecoderRef(wantW, wantG, d, n);
  assertClose(await ctx.readF32(tW), wantW, 1e-6, "W");
  assertClose(await ctx.readF32(tW2), wantW, 1e-6, "W (no gradient)");
  assertClose(await ctx.readF32(tG), wantG, 1e-5, "gradient");
});

gpuTest("dead-latent counter follows the reference over several steps", async (ctx) => {
  const B = 33, k = 4, n = 50, deadSteps = 2;
  const dead = new DeadLatents(ctx, n, { deadSteps });
  const counter = new Uint32Array(n);
  const r = rng(3);
  for (let step = 0; step < 5; step++) {
    // later steps use fewer latents, so some die; values near the 1e-3 threshold on both sides
    const span = step < 2 ? n : 10;
    const idx = Uint32Array.from({ length: B * k }, () => Math.floor(r.uniform() * span));
    const vals = Float32Array.from({ length: B * k }, (_, t) => (t % 5 === 0 ? 9e-4 : t % 7 === 0 ? 1.1e-3 : 0.5));
    const want = deadUpdateRef(counter, vals, idx, deadSteps);
    const rec = ctx.recorder();
    dead.update(rec, { values: ctx.upload(vals, [B, k]), indices: ctx.upload(idx, [B, k], "u32") });
    await rec.submit();
    assert.deepEqual([...await ctx.read(dead.counter)], [...counter], `counter at step ${step}`);
    assert.deepEqual([...await ctx.readF32(dead.mask)], [...want], `mask at step ${step}`);
  }
  assert.ok(counter.some((c) => c > deadSteps), "the test should kill some latents");
  dead.release();
});

gpuTest("geometric median (Weiszfeld) and mean match the float64 reference", async (ctx) => {
  for (const [N, d] of [[700, 13], [3000, 64]]) {
    const pts = randn(N * d, N, 1);
    for (let t = 0; t < N * d; t += 7) pts[t] += 20; // heavy outliers pull the mean, not the median
    const tp = ctx.upload(pts, [N, d]);
    const rec = ctx.recorder();
    const med = geometricMedian(rec, tp);
    const mean = columnMean(rec, tp);
    await rec.submit();
    const want = geometricMedianRef(pts, N, d);
    assertClose(await ctx.readF32(med), want, 1e-5, `median [${N},${d}]`);
    assertClose(await ctx.readF32(mean), geometricMedianRef(pts, N, d, 0), 1e-6, `mean [${N},${d}]`);
  }
});

gpuTest("sparse backward: a latent selected by all 20000 rows (segments near the loop limit)", async (ctx) => {
  const B = 20000, d = 6, n = 8, k = 3;
  const config = saeConfig({ d, nLatents: n, k });
  const params = randomParams(config, 4);
  params.b_enc[2] = 50; // latent 2 wins in every row
  const sae = Sae.fromArrays(ctx, config, params);
  const xs = randn(B * d, 5);
  const got = await run(ctx, sae, xs, { kAux: 2, dead: everyThird(n) });
  const c: SaeRefConfig = { B, d, n, k, relu: true, kAux: 2, dead: everyThird(n) };
  const f = saeForwardRef(params, xs, c);
  assert.ok([...f.indices].filter((j) => j === 2).length === B);
  const L = saeLossRef(xs, f.xHat, f.auxRecon, B, d, { rec: "sum", aux: "sum", auxAlpha: 1 / 32, mseScale: 1 });
  const g = saeBackwardRef(params, f, L.dxHat, L.dAux, c);
  for (const name of SAE_PARAM_NAMES) assertClose(got.grads[name], g[name], 1e-4, `grad ${name}`);
  sae.release();
});

gpuTest("the sparse backward is bit-reproducible", async (ctx) => {
  const config = saeConfig({ d: 32, nLatents: 64, k: 6 });
  const sae = Sae.fromArrays(ctx, config, randomParams(config, 9));
  const xs = randn(300 * 32, 10);
  const a = await run(ctx, sae, xs, { kAux: 9, dead: everyThird(64) });
  const b = await run(ctx, sae, xs, { kAux: 9, dead: everyThird(64) });
  for (const name of SAE_PARAM_NAMES) assert.deepEqual(a.grads[name], b.grads[name], name);
  sae.release();
});

const encodeCases: { rows: number; n: number; k: number; act: Activation; what: string }[] = [
  { rows: 33, n: 1000, k: 8, act: "relu", what: "one segment, ReLU zeros tie" },
  { rows: 9, n: 5000, k: 32, act: "relu", what: "3 segments merged" },
  { rows: 7, n: 3001, k: 20, act: "none", what: "a last segment of 1 element (padding)" },
  { rows: 12, n: 257, k: 64, act: "dead", what: "AuxK mask, k at the kernel's limit" },
  { rows: 5, n: 6000, k: 30, act: "relu", what: "ascending rows: every element inserted (loop budget)" },
];
for (const c of encodeCases) {
  gpuTest(`encodeTopK [${c.rows},${c.n}] k=${c.k} ${c.act}: insertion kernel = topk = CPU (${c.what})`, async (ctx) => {
    const x = randn(c.rows * c.n, c.n + c.k);
    if (c.what.startsWith("ascending")) { for (let t = 0; t < x.length; t++) x[t] = (t % c.n) / c.n; }
    for (let t = 0; t < x.length; t += 5) x[t] = Math.round(x[t]); // exact ties
    const dead = Float32Array.from({ length: c.n }, (_, j) => (j % 4 === 1 ? 1 : 0));
    const act = Float32Array.from(
      x,
      (v, t) => c.act === "none" ? v : Math.max(v, 0) * (c.act === "dead" ? dead[t % c.n] : 1),
    );
    const want = { values: new Float32Array(c.rows * c.k), indices: new Uint32Array(c.rows * c.k) };
    topkRef(want.values, want.indices, act, c.rows, c.n, c.k);
    const pre = ctx.upload(x, [c.rows, c.n]);
    const deadMask = ctx.upload(dead, [c.n]);
    const rec = ctx.recorder();
    const codes = (["insertion", "topk"] as const).map((kernel) =>
      encodeTopK(rec, pre, { k: c.k, activation: c.act, deadMask, kernel })
    );
    await rec.submit();
    for (const [i, code] of codes.entries()) {
      assert.deepEqual(await ctx.readF32(code.values), want.values, `values (${i ? "topk" : "insertion"})`);
      assert.deepEqual(await ctx.read(code.indices), want.indices, `indices (${i ? "topk" : "insertion"})`);
    }
    assert.deepEqual(await ctx.readF32(pre), x, "pre is left as it was");
  });
}

gpuTest("SAE errors name the op and the shapes", (ctx) => {
  const config = saeConfig({ d: 8, k: 2 });
  const sae = new Sae(ctx, config);
  const rec = ctx.recorder();
  assert.throws(() => saeForward(rec, sae, ctx.tensor([4, 7])), /saeForward: x \[4,7\] must be \[B, 8\]/);
  assert.throws(() => saeForward(rec, sae, ctx.tensor([4, 8]), { kAux: 3 }), /kAux > 0 needs a deadMask/);
  assert.throws(
    () => saeForward(rec, sae, ctx.tensor([4, 8]), { kAux: 3, deadMask: ctx.tensor([31]) }),
    /deadMask "tensor": shape \[31\] does not match expected \[32\]/,
  );
  assert.throws(() => saeConfig({ d: 8, k: 40 }), /k = 40 exceeds nLatents = 32/);
  assert.throws(() => saeConfig({ d: 0, k: 1 }), /d must be a positive integer/);
  const code = { values: ctx.tensor([4, 2]), indices: ctx.tensor([4, 2], "u32") };
  assert.throws(() => sparseDecode(rec, code, ctx.tensor([32, 8]), { bias: ctx.tensor([7]) }), /bias/);
  assert.throws(() => sparseDecode(rec, { ...code, indices: ctx.tensor([4, 2]) }, ctx.tensor([32, 8])), /u32/);
  assert.throws(
    () => saeLoss(rec, { x: ctx.tensor([4, 8]), xHat: ctx.tensor([4, 9]) }),
    /xHat "tensor" against x: shape \[4,9\] does not match expected \[4,8\]/,
  );
  assert.throws(
    () => saeLoss(rec, { x: ctx.tensor([4, 8]), xHat: ctx.tensor([4, 8]) }, { rec: "l1" as RecLoss }),
    /l1/,
  );
  assert.throws(
    () => Sae.fromArrays(ctx, config, { ...randomParams(config, 1), b_pre: new Float32Array(3) }),
    /"b_pre" has 3 values; config expects \[8\]/,
  );
  sae.release();
});
