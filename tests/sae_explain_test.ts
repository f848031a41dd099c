/**
 * SAE explain: the statistics, top-image, heat-map and labelling kernels against their CPU references
 * (src/ref/sae_explain.ts), on awkward shapes, and the drivers end to end against the reference SAE forward.
 */
import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import type { GpuContext } from "../src/gpu/context.ts";
import { Sae, type SaeParamName } from "../src/sae/model.ts";
import {
  arrayImageSource,
  explainBatchImages,
  featureImageStats,
  featureMaps,
  type FeatureMask,
  featureStats,
  featureTop,
  gatherFeatureMaps,
  labelFeatures,
  maskIou,
  mergeTopImages,
  type TopImagesTensors,
} from "../src/sae/explain.ts";
import { featureStatsRef, maskIouRef, topImagesRef } from "../src/ref/sae_explain.ts";
import { saeForwardRef } from "../src/ref/sae.ts";
import { randn, randu } from "../src/ref/random.ts";

/** A sparse-ish dense code: about a third of the entries nonzero, some negative (Revelio's k-SAE has no ReLU). */
function randomCode(rows: number, n: number, seed: number): Float32Array {
  const v = randn(rows * n, seed), keep = randu(rows * n, seed + 1);
  return v.map((x, i) => (keep[i] < 0.35 ? Math.abs(x) * 2 : keep[i] < 0.4 ? -Math.abs(x) : 0));
}

/**
 * As {@linkcode randomCode} with values that are multiples of 1/4 below 16, so that every γ sum is exact in f32
 * and the GPU's order of the images (ties included) is the reference's.
 */
function dyadicCode(rows: number, n: number, seed: number): Float32Array {
  const v = randn(rows * n, seed), keep = randu(rows * n, seed + 1);
  const q = (x: number) => Math.min(63, Math.round(Math.abs(x) * 8)) / 4;
  return v.map((x, i) => (keep[i] < 0.35 ? q(x) : keep[i] < 0.4 ? -q(x) : 0));
}

/**
 * Streams a dense code z [G·P, n] through featureImageStats + mergeTopImages in the given batches of images, as
 * featureStats does: the running top-k lists and the counts after the last batch.
 */
async function runStats(ctx: GpuContext, z: Float32Array, P: number, n: number, batches: number[], k: number) {
  const counts = ctx.tensor([n], "u32", "counts");
  let run: TopImagesTensors | null = null;
  let first = 0;
  for (const images of batches) {
    const rec = ctx.recorder("stats");
    const zb = ctx.upload(z.subarray(first * P * n, (first + images) * P * n), [images * P, n], "f32", "z");
    const T = run ? run.scores.shape[1] : 0;
    const cand = { mean: ctx.tensor([n, T + images], "f32", "mean"), max: ctx.tensor([n, T + images], "f32", "max") };
    featureImageStats(rec, zb, { ...cand, counts }, { positions: P, first: T });
    const next = mergeTopImages(rec, cand, run, { base: first, k: Math.min(k, T + images) });
    await rec.submit();
    ctx.release(zb, cand.mean, cand.max, ...(run ? [run.scores, run.ids, run.max] : []));
    run = next;
    first += images;
  }
  const last = run!;
  const out = {
    counts: (await ctx.read(counts)) as Uint32Array,
    k: last.scores.shape[1],
    scores: await ctx.readF32(last.scores),
    ids: (await ctx.read(last.ids)) as Uint32Array,
    max: await ctx.readF32(last.max),
    images: first,
  };
  ctx.release(counts, last.scores, last.ids, last.max);
  return out;
}

for (
  const [G, H, W, n, batches, k] of [
    [5, 2, 3, 37, [2, 3], 5],
    [3, 1, 1, 130, [3], 5],
    [9, 3, 4, 64, [1, 4, 4], 5],
    [23, 1, 2, 50, [3, 5, 1, 7, 7], 6], // more images than k, batches smaller and larger than k
    [12, 2, 2, 33, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 4],
  ] as [number, number, number, number, number[], number][]
) {
  gpuTest(`featureImageStats + mergeTopImages: G=${G}, grid ${H}×${W}, n=${n}, batches ${batches}`, async (ctx) => {
    const P = H * W;
    const z = dyadicCode(G * P, n, 7 * G + n);
    // ties: image 1 repeats image 0 and the last image repeats image 2 (another batch), and feature 0 is silent
    // everywhere (its list is the first k ids)
    if (G > 2) z.copyWithin(P * n, 0, P * n);
    if (G > 3) z.copyWithin((G - 1) * P * n, 2 * P * n, 3 * P * n);
    for (let r = 0; r < G * P; r++) z[r * n] = 0;
    const got = await runStats(ctx, z, P, n, batches, k);
    assert.equal(got.images, G);
    const want = featureStatsRef(z, G, P, n);
    const top = topImagesRef(want.mean, want.max, n, G, Math.min(k, G));
    assert.equal(got.k, Math.min(k, G));
    assert.deepEqual(Array.from(got.counts), Array.from(want.counts), "firing counts [n]");
    assert.deepEqual(Array.from(got.ids), Array.from(top.ids), "top image ids over all images, ties to the lower id");
    assertClose(got.scores, top.scores, 1e-6, "top γ");
    assert.deepEqual(Array.from(got.max), Array.from(top.max), "max of each top image");
    assert.deepEqual(Array.from(got.ids.subarray(0, got.k)), Array.from({ length: got.k }, (_, s) => s), "silent");
    if (G > 2) {
      let tied = 0;
      for (let c = 1; c < n; c++) {
        const ids = Array.from(got.ids.subarray(c * got.k, (c + 1) * got.k));
        if (ids.includes(0) && ids.includes(1)) assert.ok(ids.indexOf(0) < ids.indexOf(1), `tie order, feature ${c}`);
        if (G > 3 && ids.includes(2) && ids.includes(G - 1)) tied++, assert.ok(ids.indexOf(2) < ids.indexOf(G - 1));
      }
      assert.ok(G <= 3 || tied > 0, "some feature keeps both copies of image 2");
    }
  });
}

gpuTest("mergeTopImages checks its candidates and running lists", (ctx) => {
  const rec = ctx.recorder("bad");
  const cand = { mean: ctx.tensor([4, 3], "f32", "mean"), max: ctx.tensor([4, 3], "f32", "max") };
  const run = { scores: ctx.tensor([4, 3]), ids: ctx.tensor([4, 3], "u32"), max: ctx.tensor([4, 3]) };
  assert.throws(() => mergeTopImages(rec, cand, run, { base: 3, k: 2 }), /hold no batch beside T = 3/);
  const wrong = { ...run, ids: ctx.tensor([4, 2], "u32", "ids2") };
  assert.throws(() => mergeTopImages(rec, cand, wrong, { base: 3, k: 2 }), /running scores|running ids/);
  assert.throws(() => mergeTopImages(rec, cand, null, { base: 0, k: 4 }), /k = 4 must be an integer in \[1, 3\]/);
  ctx.release(cand.mean, cand.max, run.scores, run.ids, run.max, wrong.ids);
});

Deno.test("explainBatchImages clamps batches to the binding size and names P, n and the limit", () => {
  const MiB = 1 << 20;
  // 128 MiB (lavapipe), n = 5120: the default 64 MiB code is 3276 rows = 51 images of 8×8
  assert.equal(explainBatchImages(128 * MiB, { n: 5120, d: 1280, positions: 64 }), 51);
  // --batch-rows beyond the binding: [rows, n] must fit 1 MiB → 51 rows → 3 images of 16
  assert.equal(explainBatchImages(MiB, { n: 5120, d: 1280, positions: 16, batchRows: 100_000 }), 3);
  // d wider than n: [rows, d] bounds the batch
  assert.equal(explainBatchImages(MiB, { n: 64, d: 8192, positions: 1, batchRows: 100_000 }), 32);
  // pooled stores (P = 1): the candidates [n, kept + images] bound it too
  assert.equal(explainBatchImages(MiB, { n: 5120, d: 1280, positions: 1, batchRows: 100_000, kept: 8 }), 43);
  assert.equal(explainBatchImages(MiB, { n: 5120, d: 1280, positions: 1, batchRows: 10, kept: 8 }), 10);
  assert.equal(explainBatchImages(MiB, { n: 5120, d: 1280, positions: 32, batchRows: 4 }), 1, "at least one");
  assert.throws(
    () => explainBatchImages(MiB, { n: 5120, d: 1280, positions: 64 }),
    /one image of P = 64 positions needs a \[64, 5120\] f32 buffer \(1310720 bytes; n = 5120 latents.*\(1048576\)/,
  );
  assert.throws(
    () => explainBatchImages(64 * 1024, { n: 4096, d: 8, positions: 1, kept: 4 }),
    /top 4 images of n = 4096 latents/,
  );
});

gpuTest("featureImageStats rejects partial images and bad columns", (ctx) => {
  const rec = ctx.recorder("bad");
  const z = ctx.tensor([10, 4], "f32", "z");
  const out = { mean: ctx.tensor([4, 3], "f32"), max: ctx.tensor([4, 3], "f32"), counts: ctx.tensor([4], "u32") };
  assert.throws(() => featureImageStats(rec, z, out, { positions: 3, first: 0 }), /not whole images of 3 positions/);
  assert.throws(() => featureImageStats(rec, z, out, { positions: 5, first: 2 }), /images 2 … 3 outside \[0, 3\)/);
  const wrong = { ...out, mean: ctx.tensor([5, 3], "f32", "mean5") };
  assert.throws(
    () => featureImageStats(rec, z, wrong, { positions: 5, first: 0 }),
    /mean \[5,3\] must be \[4, images\]/,
  );
  ctx.release(z, out.mean, out.max, out.counts, wrong.mean);
});

gpuTest("gatherFeatureMaps picks (image, feature) columns of the dense code", async (ctx) => {
  const P = 6, n = 11, images = 3;
  const z = randomCode(images * P, n, 3);
  const jobs = [[2, 10], [0, 0], [1, 5], [2, 3]];
  const rec = ctx.recorder("maps");
  const zt = ctx.upload(z, [images * P, n]);
  const jt = ctx.upload(jobs.flat(), [jobs.length, 2], "u32");
  const maps = gatherFeatureMaps(rec, zt, jt, P);
  await rec.submit();
  const got = await ctx.readF32(maps);
  const want = jobs.flatMap(([g, c]) => Array.from({ length: P }, (_, q) => z[(g * P + q) * n + c]));
  assert.deepEqual(Array.from(got), want);
  ctx.release(zt, jt, maps);
});

/** A mask of `h`×`w` values: 1 where `inside(y, x)`, else 0 (with a few grey values on the right side of 0.5). */
function maskOf(h: number, w: number, inside: (y: number, x: number) => boolean): Float32Array {
  const m = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      m[y * w + x] = inside(y, x) ? 0.5 + ((x * 7) % 5) / 8 : ((y * 3) % 4) / 8;
    }
  }
  return m;
}

gpuTest("maskIou: random maps and masks of several sizes against the CPU reference", async (ctx) => {
  const [H, W] = [3, 5], P = H * W, n = 23, images = 3;
  const z = randomCode(images * P, n, 11);
  // feature 4 silent on image 1, feature 7 constant on image 2: both give IoU 0 there
  for (let q = 0; q < P; q++) z[(1 * P + q) * n + 4] = 0, z[(2 * P + q) * n + 7] = 1.5;
  const masks = [
    { image: 0, height: 12, width: 20, data: maskOf(12, 20, (y, x) => (x - 7) ** 2 + (y - 5) ** 2 < 25) },
    { image: 2, height: 9, width: 13, data: maskOf(9, 13, (y, x) => x > 6 || y < 2) },
    { image: 1, height: 3, width: 5, data: maskOf(3, 5, (y, x) => y === 1 && x > 0) }, // the grid's own size
    { image: 0, height: 17, width: 11, data: maskOf(17, 11, () => false) }, // empty: IoU 0 unless the map is empty
  ];
  const rec = ctx.recorder("iou");
  const zt = ctx.upload(z, [images * P, n]);
  const all = new Float32Array(masks.reduce((a, m) => a + m.data.length, 0));
  const info: number[] = [];
  let at = 0;
  for (const m of masks) all.set(m.data, at), info.push(m.image, at, m.height, m.width), at += m.data.length;
  const values = ctx.upload(all, [all.length]), infoT = ctx.upload(info, [masks.length, 4], "u32");
  const iou = maskIou(rec, zt, { values, info: infoT }, { grid: [H, W] });
  await rec.submit();
  const got = await ctx.readF32(iou);
  let worst = 0, exact = 0;
  for (let m = 0; m < masks.length; m++) {
    for (let c = 0; c < n; c++) {
      const want = maskIouRef(z, n, [H, W], masks[m], c);
      const diff = Math.abs(got[m * n + c] - want);
      worst = Math.max(worst, diff);
      if (diff < 1e-6) exact++;
    }
  }
  // f32 vs f64 resampling may flip a pixel sitting exactly on the threshold; nothing more
  assert.ok(worst < 0.02, `max |IoU − ref| = ${worst}`);
  assert.ok(exact >= masks.length * n - 2, `${exact} of ${masks.length * n} IoUs match exactly`);
  assert.equal(got[2 * n + 4], 0, "silent feature");
  assert.equal(got[1 * n + 7], 0, "constant map");
  assert.ok(got.some((v) => v > 0.2), "some overlap is found");
  ctx.release(zt, values, infoT, iou);
});

/**
 * An SAE with d = n = 3, k = 1, W_enc = W_dec = I and no biases: z is x's largest (positive) component, so rows
 * e₀ make a map of feature 0 and rows 0.5·e₂ a map of feature 2.
 */
function identitySae(ctx: GpuContext): Sae {
  const I = new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 1]);
  const data: Record<SaeParamName, Float32Array> = {
    W_enc: I,
    b_enc: new Float32Array(3),
    W_dec: I.slice(),
    b_pre: new Float32Array(3),
  };
  return Sae.fromArrays(ctx, { d: 3, nLatents: 3, k: 1, relu: true }, data);
}

gpuTest("labelFeatures: a quadrant map takes the label of a quadrant mask, not of the opposite one", async (ctx) => {
  const [H, W] = [4, 4];
  // image 0: feature 0 on the top-left 2×2 quadrant, feature 2 elsewhere; image 1: feature 2 everywhere
  const rows = new Float32Array(2 * H * W * 3);
  for (let q = 0; q < H * W; q++) {
    const tl = Math.floor(q / W) < 2 && q % W < 2;
    rows.set(tl ? [1, 0, 0] : [0, 0, 0.5], q * 3);
    rows.set([0, 0, 0.25 + q / 100], (H * W + q) * 3);
  }
  const src = arrayImageSource(rows, 3, [H, W]);
  const sae = identitySae(ctx);
  const S = 32;
  const masks: FeatureMask[] = [
    { image: 0, label: "dog", width: S, height: S, data: maskOf(S, S, (y, x) => y < S / 2 && x < S / 2) },
    { image: 0, label: "cat", width: S, height: S, data: maskOf(S, S, (y, x) => y >= S / 2 && x >= S / 2) },
    { image: 1, label: "sky", width: S, height: S, data: maskOf(S, S, () => true) },
  ];
  const { iou, labels } = await labelFeatures(sae, src, masks, { batchRows: 16 }); // one image per batch
  // the bilinear blur widens the binarised 16×16 quadrant by 3 pixels along each inner edge (values 0.44, 0.31,
  // 0.19 > 0.1), and by 3 pixels at the corner, where the products of those weights pass 0.1: IoU = 256 / 355
  assert.ok(Math.abs(iou[0] - 256 / 355) < 1e-6, `IoU(feature 0, dog) = ${iou[0]}`);
  const zRef = new Float32Array(2 * H * W * 3);
  for (let r = 0; r < 2 * H * W; r++) {
    const c = rows[r * 3] > 0 ? 0 : 2;
    zRef[r * 3 + c] = rows[r * 3 + c];
  }
  for (let m = 0; m < masks.length; m++) {
    for (let c = 0; c < 3; c++) {
      const want = maskIouRef(zRef, 3, [H, W], masks[m], c);
      assert.ok(
        Math.abs(iou[m * 3 + c] - want) < 1e-6,
        `mask ${masks[m].label}, feature ${c}: ${iou[m * 3 + c]} vs ${want}`,
      );
    }
  }
  // only the 3 blurred corner pixels touch the opposite quadrant: 3 / (355 + 256 − 3)
  assert.ok(Math.abs(iou[1 * 3 + 0] - 3 / 608) < 1e-6, `feature 0 vs the opposite quadrant: ${iou[3]}`);
  assert.deepEqual(labels[0].map((l) => l.label), ["dog"]);
  assert.deepEqual(labels[1], [], "feature 1 never fires");
  // feature 2 covers ¾ of image 0 (IoU with either quadrant ≤ 1/3) and, rising from 0.25 to 0.4, most of image 1:
  // only the corner where its normalised map is below 0.1 is outside (IoU with the all-white "sky" ≈ 0.91)
  assert.deepEqual(labels[2].map((l) => [l.label, l.image, l.iou]), [["sky", 1, iou[2 * 3 + 2]]]);
  assert.ok(iou[2 * 3 + 2] > 0.9 && iou[2 * 3 + 2] < 1);
  sae.release();
});

function randomSae(ctx: GpuContext, d: number, n: number, k: number, relu = true) {
  const params: Record<SaeParamName, Float32Array> = {
    W_enc: randn(n * d, 1, 0.5),
    b_enc: randn(n, 2, 0.2),
    W_dec: randn(d * n, 3),
    b_pre: randn(d, 4, 0.3),
  };
  return { params, sae: Sae.fromArrays(ctx, { d, nLatents: n, k, relu }, params) };
}

gpuTest("featureStats + featureMaps: a random SAE over a random source, against the reference forward", async (ctx) => {
  const d = 12, n = 40, k = 4, [H, W] = [3, 2], G = 7, P = H * W, top = 3;
  const { params, sae } = randomSae(ctx, d, n, k);
  const rows = randn(G * P * d, 5);
  rows.copyWithin(5 * P * d, 1 * P * d, 2 * P * d); // image 5 (third batch) repeats image 1 (first batch): ties
  const src = arrayImageSource(rows, d, [H, W]);
  const ref = saeForwardRef(params, rows, { B: G * P, d, n, k, relu: true, kAux: 0 }); // ref.pre = ReLU(pre)
  const counts = featureStatsRef(ref.z, G, P, n).counts;
  for (const rank of ["code", "dense"] as const) {
    const progress: number[] = [];
    const stats = await featureStats(sae, src, {
      top,
      rank,
      batchRows: 2 * P + 1,
      onProgress: (done) => progress.push(done),
    });
    assert.deepEqual(progress, [2, 4, 6, 7], "two images per batch");
    assert.equal(stats.rank, rank);
    assert.equal(stats.rows, G * P);
    assert.deepEqual(Array.from(stats.counts), Array.from(counts), `${rank}: counts of the TopK code`);
    // the values that rank: the code z, or ReLU of the dense pre-activation (Revelio)
    const values = rank === "code" ? ref.z : ref.pre;
    const want = featureStatsRef(values, G, P, n);
    const wantTop = topImagesRef(want.mean, want.max, n, G, top);
    assert.deepEqual(Array.from(stats.ids), Array.from(wantTop.ids), `${rank}: top images over all batches`);
    assertClose(stats.scores, wantTop.scores, 1e-5, `${rank}: top γ`);
    assertClose(stats.max, wantTop.max, 1e-5, `${rank}: max of each top image`);
    let tied = 0;
    for (let c = 0; c < n; c++) {
      const ids = Array.from(stats.ids.subarray(c * top, (c + 1) * top));
      if (ids.includes(1) && ids.includes(5)) tied++, assert.ok(ids.indexOf(1) < ids.indexOf(5), `tie, feature ${c}`);
      const shown = featureTop(stats, c);
      assert.deepEqual(shown.map((t) => t.image), ids.filter((_, s) => stats.scores[c * top + s] > 0));
    }
    assert.ok(tied > 0, `${rank}: some feature ranks both copies of image 1`);
    if (rank === "dense") {
      const silent = Array.from(counts).filter((v) => v === 0).length;
      const dark = Array.from({ length: n }, (_, c) => c).filter((c) => stats.scores[c * top] <= 0).length;
      assert.ok(dark < silent || silent === 0, "dense ranking sees latents the TopK code leaves silent");
    }
    const pairs = [{ feature: 3, image: 6 }, { feature: 0, image: 2 }, { feature: 39, image: 6 }];
    const maps = await featureMaps(sae, src, pairs, { batchRows: P, values: rank });
    const wantMaps = pairs.flatMap(({ feature, image }) =>
      Array.from({ length: P }, (_, q) => values[(image * P + q) * n + feature])
    );
    assertClose(maps, wantMaps, 1e-5, `${rank}: heat maps`);
  }
  await assert.rejects(featureMaps(sae, src, [{ feature: 40, image: 0 }]), /outside \[0, 40\) × \[0, 7\)/);
  await assert.rejects(
    featureStats(sae, arrayImageSource(new Float32Array(P * 5), 5, [H, W])),
    /the SAE reads d = 12 but the images' rows have d = 5/,
  );
  sae.release();
});

gpuTest(
  "featureStats streams: 3000 images in 12 batches, no [n, G] buffer, the same lists as over all images",
  async (ctx) => {
    const d = 4, n = 64, k = 4, G = 3000, top = 8;
    const { params, sae } = randomSae(ctx, d, n, k, false); // Revelio's k-SAE: no ReLU, negative values stay
    const rows = randn(G * d, 9);
    const src = arrayImageSource(rows, d, [1, 1]); // a pooled store: one row per image
    ctx.resetPeak();
    let batches = 0;
    const stats = await featureStats(sae, src, { top, batchRows: 256, onProgress: () => batches++ });
    assert.equal(batches, 12);
    // the largest buffer is a batch's: the candidates [n, top + 256] (the old [n, G] matrix was 12× larger)
    assert.ok(ctx.memory.largestBuffer <= 4 * n * (top + 256), `largest buffer ${ctx.memory.largestBuffer} bytes`);
    const ref = saeForwardRef(params, rows, { B: G, d, n, k, relu: false, kAux: 0 });
    const want = featureStatsRef(ref.z, G, 1, n);
    const wantTop = topImagesRef(want.mean, want.max, n, G, top);
    assert.deepEqual(Array.from(stats.counts), Array.from(want.counts), "counts");
    assert.deepEqual(Array.from(stats.ids), Array.from(wantTop.ids), "top images");
    assertClose(stats.scores, wantTop.scores, 1e-5, "top γ");
    sae.release();
  },
);
