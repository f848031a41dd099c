/**
 * Layout prediction: kernels/sae_layout.wgsl against the CPU reference (top feature with ties and empty rows, IoU
 * counts per image); a hand-built SAE on a hand-built activation where the map and the IoU are known (mask given as
 * a 2× image, resized on the GPU); and `sae layout` from the CLI on the tiny pipeline.
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { encodePng, readPng } from "../src/io/png.ts";
import { saveSaeFile } from "../src/io/sae_files.ts";
import { initSaeWeights } from "../src/sae/init.ts";
import { layoutCounts, readLayout, topFeature } from "../src/sae/layout.ts";
import { Sae } from "../src/sae/model.ts";
import { quadrantMask } from "../src/sae/steer.ts";
import { layoutIouRef, topFeatureRef } from "../src/ref/sae_steer.ts";
import { rng } from "../src/ref/random.ts";
import { runCli } from "./_cli.ts";

const PIPE = new URL("../../shared/fixtures/sd-tiny-pipeline/", import.meta.url).pathname;

gpuTest("topFeature and layoutCounts vs reference: ties, empty rows, 3 images of 7×5", async (ctx) => {
  const images = 3, hw = 35, rows = images * hw, k = 5, n = 9;
  const r = rng(4);
  const values = new Float32Array(rows * k), indices = new Uint32Array(rows * k);
  for (let row = 0; row < rows; row++) {
    const ids = [...Array(n).keys()].sort(() => r.uniform() - 0.5).slice(0, k);
    for (let s = 0; s < k; s++) {
      indices[row * k + s] = ids[s];
      // unsorted slots; row % 7 == 0: nothing fires; row % 5 == 0: a tie for the maximum
      values[row * k + s] = row % 7 === 0
        ? (s % 2 ? 0 : -0.5)
        : row % 5 === 0 && s < 2
        ? 3
        : Math.floor(r.uniform() * 4);
    }
  }
  const mask = Float32Array.from({ length: hw }, (_, p) => (p % 3) / 2); // 0, 0.5, 1: the threshold is ≥ 0.5
  const set = [2, 7];
  const t = [
    ctx.upload(values, [rows, k]),
    ctx.upload(indices, [rows, k], "u32"),
    ctx.upload(Int32Array.from(set), [2], "i32"),
    ctx.upload(mask, [hw]),
  ];
  const rec = ctx.recorder();
  const top = topFeature(rec, { values: t[0], indices: t[1] });
  const counts = layoutCounts(rec, top, t[2], t[3], hw);
  await rec.submit();
  const gotTop = await ctx.read(top) as Int32Array;
  const wantTop = topFeatureRef(values, indices, k);
  assert.deepEqual([...gotTop], [...wantTop]);
  assert.ok(wantTop.includes(-1), "some rows fire nothing");
  const got = await ctx.read(counts) as Uint32Array;
  assert.deepEqual([...got], layoutIouRef(wantTop, hw, set, mask).flat());
  // a set per image ([images, nset], padded with −1) in the same single dispatch; and the empty set
  const sets = [[2, 7], [5, -1], [-1, -1]];
  const perImage = ctx.upload(Int32Array.from(sets.flat()), [images, 2], "i32");
  const rec2 = ctx.recorder();
  const counts2 = layoutCounts(rec2, top, perImage, t[3], hw);
  const empty = layoutCounts(rec2, top, null, t[3], hw);
  await rec2.submit();
  const want2 = sets.map((s, i) =>
    layoutIouRef(wantTop.subarray(i * hw, (i + 1) * hw), hw, s.filter((id) => id >= 0), mask)[0]
  );
  assert.deepEqual([...await ctx.read(counts2) as Uint32Array], want2.flat());
  assert.deepEqual([...await ctx.read(empty) as Uint32Array], layoutIouRef(wantTop, hw, [], mask).flat());
  assert.throws(() => layoutCounts(rec2, top, ctx.upload(new Int32Array(4), [2, 2], "i32"), t[3], hw), /\[3, nset\]/);
  ctx.release(...t, top, counts, counts2, empty, perImage);
});

gpuTest("readLayout: a hand-built SAE gives the known map, areas and IoU", async (ctx) => {
  // d = 4, latents ±e_i (ids 0–3: +e_i, 4–7: −e_i), k = 2: position p's top feature is its largest signed axis
  const d = 4, n = 8, H = 3, W = 5, hw = H * W;
  const W_enc = new Float32Array(n * d);
  for (let i = 0; i < d; i++) W_enc[i * d + i] = 1, W_enc[(i + 4) * d + i] = -1;
  const W_dec = new Float32Array(d * n);
  for (let j = 0; j < n; j++) for (let i = 0; i < d; i++) W_dec[i * n + j] = W_enc[j * d + i];
  const sae = Sae.fromArrays(ctx, { d, nLatents: n, k: 2, relu: true }, {
    W_enc,
    W_dec,
    b_enc: new Float32Array(n),
    b_pre: new Float32Array(d),
  });
  // want: -1 where x = 0; 0 at a tie of e0 and e1 (the lower id wins)
  const want = [0, 1, 2, 3, 4, 5, 6, 7, -1, 0, 3, 3, 3, 1, 1];
  const x = new Float32Array(d * hw);
  want.forEach((t, p) => {
    if (t < 0) return;
    x[(t % 4) * hw + p] = t < 4 ? 2 : -2;
    x[((t + 1) % 4) * hw + p] = 0.5;
  });
  x[0 * hw + 9] = 1, x[1 * hw + 9] = 1; // position 9: e0 and e1 tie
  x[2 * hw + 9] = 0;
  const xt = ctx.upload(x, [1, d, H, W]);
  // the mask {10, 11, 12, 13} as a 6×10 image (2×2 blocks), resized on the GPU to 3×5
  const big = new Float32Array(4 * hw);
  for (let y = 0; y < 2 * H; y++) {
    for (let c = 0; c < 2 * W; c++) big[y * 2 * W + c] = [10, 11, 12, 13].includes((y >> 1) * W + (c >> 1)) ? 1 : 0;
  }
  const mt = ctx.upload(big, [2 * H, 2 * W]);
  const r = await readLayout(ctx, sae, xt, { features: [3], mask: mt });
  assert.deepEqual(r.grid, [H, W]);
  assert.deepEqual([...r.top], want);
  assert.deepEqual(
    r.area[0].slice(0, 3),
    [{ id: 3, positions: 4 }, { id: 0, positions: 2 }, { id: 1, positions: 3 }].sort(
      (a, b) => b.positions - a.positions || a.id - b.id,
    ),
  );
  // P = {3, 10, 11, 12}, M = {10, 11, 12, 13}
  assert.deepEqual(r.iou![0], { features: [3], intersection: 3, union: 5, predicted: 4, mask: 4, iou: 0.6 });
  // without --features: the mask's most frequent top feature (3)
  const auto = await readLayout(ctx, sae, xt, { mask: mt });
  assert.deepEqual(auto.iou![0].features, [3]);
  // two images (the second one's signs flipped: its top features are the ±e_i swapped) counted in one dispatch
  const x2 = ctx.upload(Float32Array.from([...x, ...x.map((v) => -v)]), [2, d, H, W]);
  const two = await readLayout(ctx, sae, x2, { mask: mt });
  const flip = want.map((t) => t < 0 ? -1 : (t + 4) % 8);
  flip[9] = 4; // the tie of −e0 and −e1
  assert.deepEqual([...two.top], [...want, ...flip]);
  assert.deepEqual(two.iou![0], r.iou![0]);
  // image 1's mask cells {10…13} hold ids 7, 7, 7, 5: its dominant feature is 7 at {3, 10, 11, 12}
  assert.deepEqual(two.iou![1], { features: [7], intersection: 3, union: 5, predicted: 4, mask: 4, iou: 0.6 });
  const fixed = await readLayout(ctx, sae, x2, { mask: mt, features: [3] });
  assert.deepEqual(fixed.iou!.map((u) => u.intersection), [3, 0]);
  sae.release();
  ctx.release(xt, mt, x2);
});

gpuTest("cli sae layout on the tiny pipeline: layout.json, layout.png, image.png, IoU consistent", async (ctx) => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-layout-" });
  try {
    const sae = new Sae(ctx, { d: 64, nLatents: 256, k: 8, relu: true });
    const rec = ctx.recorder();
    initSaeWeights(rec, sae, { seed: 9 });
    await rec.submit();
    await saveSaeFile(`${dir}/sae.safetensors`, sae, { hook: "up_blocks.1.attentions.0.delta" });
    sae.release();
    // a 32×32 mask: the top-left quarter white
    const q = quadrantMask("top-left", [32, 32]);
    const px = Uint32Array.from(q, (v) => (v ? 0xffffffff : 0xff000000));
    await Deno.writeFile(`${dir}/mask.png`, encodePng(px, 32, 32));
    const out = await runCli([
      ...["sae", "layout", "--model", PIPE, "--prompt", "a red car", "--sae"],
      ...[`${dir}/sae.safetensors`, "--steps", "2", "--mask", `${dir}/mask.png`, "--out", `${dir}/out`, "--quiet"],
    ]);
    assert.equal(out.code, 0, out.stderr);
    const j = JSON.parse(await Deno.readTextFile(`${dir}/out/layout.json`));
    assert.equal(j.hook, "up_blocks.1.attentions.0.delta");
    assert.deepEqual(j.grid, [4, 4]);
    const top: number[] = j.top.flat();
    assert.equal(top.length, 16);
    assert.ok(top.every((t) => Number.isInteger(t) && t >= -1 && t < 256));
    assert.equal(j.area.reduce((s: number, a: { positions: number }) => s + a.positions, 0), 16);
    // the IoU the command reports matches its own map and the mask at the grid (the top-left 2×2)
    const m = quadrantMask("top-left", [4, 4]);
    const [[inter, union]] = layoutIouRef(top, 16, j.iou.features, m);
    assert.equal(j.iou.intersection, inter);
    assert.equal(j.iou.union, union);
    assert.equal(j.iou.mask, 4);
    assert.ok(j.iou.iou > 0, "the mask's dominant feature overlaps it");
    const png = await readPng(`${dir}/out/layout.png`);
    assert.equal(png.width, 256);
    const img = await readPng(`${dir}/out/image.png`);
    assert.equal(img.width, 32);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
