import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import type { GpuContext } from "../src/gpu/context.ts";
import { fill } from "../src/ops/fill.ts";
import { transpose } from "../src/ops/permute.ts";
import {
  arraySource,
  constrainDecoder,
  resolveTrainConfig,
  REVELIO_KSAE,
  type Sae,
  SAE_PARAM_NAMES,
  type SaeMetrics,
  type SaeTrainConfig,
  sparseDecode,
  tensorSource,
  trainSAE,
} from "../src/sae/mod.ts";
import { checkpointWriter, loadSaeFile, openActivationsFile, saveSaeFile } from "../src/io/sae_files.ts";
import { writeSafetensorsFile } from "../src/io/safetensors_file.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { randn, rng } from "../src/ref/random.ts";
import { toF16 } from "../src/gpu/tensor.ts";

/**
 * Planted sparse data on the GPU: `atoms` unit vectors [nAtoms, d] (seeded normal fill, normalised), rows
 * x = offset + Σ_{8 distinct atoms} c·atom with c uniform in [0.5, 2] (seeded fill) and a constant offset.
 */
async function planted(ctx: GpuContext, rows: number, d: number, nAtoms: number, active: number, seed: number) {
  const rec = ctx.recorder();
  const cols = ctx.tensor([d, nAtoms], "f32", "atoms.T");
  fill(rec, cols, { normal: [0, 1], seed });
  constrainDecoder(rec, cols);
  const atoms = transpose(rec, cols, 0, 1);
  const offset = fill(rec, ctx.tensor([d], "f32", "offset"), { normal: [0, 1], seed: seed + 1 });
  const coef = fill(rec, ctx.tensor([rows, active], "f32", "coef"), { uniform: [0.5, 2], seed: seed + 2 });
  const r = rng(seed + 3);
  const ids = new Uint32Array(rows * active);
  for (let s = 0; s < rows; s++) {
    for (let t = 0; t < active; t++) {
      let j: number;
      do j = Math.floor(r.uniform() * nAtoms); while (ids.subarray(s * active, s * active + t).includes(j));
      ids[s * active + t] = j;
    }
  }
  const x = sparseDecode(rec, { values: coef, indices: ctx.upload(ids, [rows, active], "u32") }, atoms, {
    bias: offset,
  });
  await rec.submit();
  const host = await ctx.readF32(atoms);
  ctx.release(cols, atoms, offset, coef);
  return { x, atoms: host };
}

/** Mean over atoms [m, d] of the best cosine with any column of W_dec [d, n] (columns are unit), and how many
 * distinct columns are someone's best. */
function recovery(atoms: Float32Array, W: Float32Array, d: number, n: number): { cos: number; distinct: number } {
  const m = atoms.length / d;
  let total = 0;
  const best = new Set<number>();
  for (let a = 0; a < m; a++) {
    let top = -Infinity, arg = -1;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += atoms[a * d + i] * W[i * n + j];
      if (s > top) [top, arg] = [s, j];
    }
    total += top;
    best.add(arg);
  }
  return { cos: total / m, distinct: best.size };
}

gpuTest("trainSAE recovers a planted dictionary (d 64, 512 atoms, 8 active; 1024 latents, k 8)", async (ctx) => {
  const d = 64, nAtoms = 512;
  const { x, atoms } = await planted(ctx, 65536, d, nAtoms, 8, 2024);
  const config: SaeTrainConfig = {
    d,
    nLatents: 1024,
    k: 8,
    batchSize: 1024,
    steps: 800,
    lr: 4e-3,
    kAux: 32,
    deadSteps: 100,
    initRows: 16384,
    seed: 7,
  };
  const t0 = performance.now();
  const log: SaeMetrics[] = [];
  const { sae, history } = await trainSAE(ctx, tensorSource(x), config, { onMetrics: (m) => log.push(m) });
  const seconds = (performance.now() - t0) / 1000;
  const last = history.at(-1)!;
  const { cos, distinct } = recovery(atoms, await ctx.readF32(sae.params.W_dec), d, 1024);
  console.log(
    `  65536 rows, batch 1024, 800 steps, lr 4e-3, kAux 32, deadSteps 100: mean best cosine ${cos.toFixed(4)}, ` +
      `${distinct}/512 atoms on distinct latents, dead ${(100 * last.deadFraction).toFixed(2)}%, ` +
      `FVU ${last.fvu.toFixed(3)}, EV ${last.explainedVariance.toFixed(3)}, L0 ${last.l0}, ${seconds.toFixed(1)} s`,
  );
  assert.equal(log.length, 8);
  assert.ok(cos > 0.9, `mean best cosine ${cos}`);
  assert.ok(last.deadFraction < 0.05, `dead fraction ${last.deadFraction}`);
  assert.ok(history[0].fvu > last.fvu, "the loss should fall");
  sae.release();
  ctx.release(x);
});

const small: SaeTrainConfig = {
  d: 16,
  nLatents: 48,
  k: 4,
  batchSize: 64,
  steps: 12,
  lr: 3e-3,
  kAux: 8,
  deadSteps: 2,
  initRows: 200,
  scaleBatches: 2,
  seed: 3,
};

function paramsOf(ctx: GpuContext, sae: Sae): Promise<Float32Array[]> {
  return Promise.all(SAE_PARAM_NAMES.map((n) => ctx.readF32(sae.params[n])));
}

gpuTest("trainSAE is seeded: the same seed and data give bit-identical parameters, from any source", async (ctx) => {
  const data = randn(500 * 16, 11, 1.5);
  for (let t = 0; t < data.length; t += 16) data[t] += 3; // an offset on feature 0
  const metrics: boolean[] = [];
  void ctx.placeholder; // created once per context, on first use
  await ctx.sync();
  const before = ctx.memory.current;
  const a = await trainSAE(ctx, arraySource(data, 16), small, { onMetrics: (m) => metrics.push(m.auxActive) });
  const gpuData = ctx.upload(data, [500, 16]);
  const b = await trainSAE(ctx, tensorSource(gpuData), small);
  const dir = await Deno.makeTempDir();
  await writeSafetensorsFile(`${dir}/acts.safetensors`, { acts: { dtype: "F32", shape: [500, 16], data } });
  await using file = await openActivationsFile(`${dir}/acts.safetensors`);
  const c = await trainSAE(ctx, file, small);
  const other = await trainSAE(ctx, arraySource(data, 16), { ...small, seed: 4 });
  const [pa, pb, pc, po] = await Promise.all([a, b, c, other].map((r) => paramsOf(ctx, r.sae)));
  assert.deepEqual(pb, pa, "tensor source vs array source");
  assert.deepEqual(pc, pa, "file source vs array source");
  assert.notDeepEqual(po, pa, "another seed");
  assert.ok(metrics.at(-1), "AuxK should have run (deadSteps 2)");
  assert.ok(pa.every((p) => p.every(Number.isFinite)));
  for (const r of [a, b, c, other]) r.sae.release();
  ctx.release(gpuData);
  await ctx.sync();
  assert.equal(ctx.memory.current - before, 0, "bytes left allocated by training");
  await Deno.remove(dir, { recursive: true });
});

gpuTest(
  "trainSAE with AuxK over more than 64 slots (the topk kernel) is deterministic, and AuxK runs once latents die",
  async (ctx) => {
    const data = randn(400 * 16, 16, 1.5);
    const config = { ...small, nLatents: 160, kAux: 80, steps: 15, deadSteps: 3 };
    const history: SaeMetrics[] = [];
    const a = await trainSAE(ctx, arraySource(data, 16), config, {
      metricsEvery: 5,
      onMetrics: (m) => history.push(m),
    });
    const b = await trainSAE(ctx, arraySource(data, 16), config);
    assert.deepEqual(await paramsOf(ctx, b.sae), await paramsOf(ctx, a.sae));
    assert.ok(history.some((m) => m.auxActive && m.auxLoss > 0 && m.deadFraction > 0), JSON.stringify(history));
    for (const r of [a, b]) r.sae.release();
  },
);

gpuTest("trainSAE init: tied W_dec = W_encᵀ with unit columns; b_pre the geometric median or the mean", async (ctx) => {
  const data = randn(300 * 16, 12);
  const src = arraySource(data, 16);
  for (const bPreInit of ["geometric-median", "mean"] as const) {
    const { sae } = await trainSAE(ctx, src, { ...small, steps: 0, bPreInit, initRows: 300 });
    const [We, be, Wd, bp] = await paramsOf(ctx, sae);
    const n = 48, d = 16;
    for (let j = 0; j < n; j++) {
      let norm = 0;
      for (let i = 0; i < d; i++) norm += We[j * d + i] ** 2;
      norm = Math.sqrt(norm);
      for (let i = 0; i < d; i++) assert.ok(Math.abs(Wd[i * n + j] - We[j * d + i] / norm) < 1e-6);
    }
    assert.ok(We.every((v) => Math.abs(v) <= 1 / 4 + 1e-7), "nn.Linear's bound 1/√d");
    assert.ok(be.every((v) => v === 0));
    if (bPreInit === "mean") {
      for (let i = 0; i < d; i++) {
        let m = 0;
        for (let r = 0; r < 300; r++) m += data[r * d + i] / 300;
        assert.ok(Math.abs(bp[i] - m) < 1e-5, `mean of feature ${i}`);
      }
    } else assert.ok(bp.some((v) => v !== 0));
    sae.release();
  }
});

gpuTest("Revelio's k-SAE config trains: no ReLU, no AuxK, kaiming init, normalised loss", async (ctx) => {
  const data = randn(400 * 16, 13, 2);
  const history: SaeMetrics[] = [];
  const { sae, config } = await trainSAE(
    ctx,
    arraySource(data, 16),
    { ...REVELIO_KSAE, d: 16, nLatents: 64, k: 6, batchSize: 100, steps: 30, warmupSteps: 5, initRows: 100 },
    { metricsEvery: 10, onMetrics: (m) => history.push(m) },
  );
  assert.equal(config.relu, false);
  assert.equal(config.kAux, 0);
  assert.equal(config.auxLoss, "none");
  assert.equal(sae.config.relu, false);
  assert.equal(history.length, 3);
  assert.ok(history.every((m) => m.auxLoss === 0 && !m.auxActive));
  assert.ok(Math.abs(history[2].recLoss - history[2].fvu) < 1e-6, "Revelio's normalised MSE is the FVU");
  assert.ok(history[2].fvu < history[0].fvu);
  sae.release();
});

gpuTest("SAE files: save, load, checkpoints, metadata PyTorch can read", async (ctx) => {
  const dir = await Deno.makeTempDir();
  const steps: number[] = [];
  const write = checkpointWriter(dir);
  const { sae } = await trainSAE(ctx, arraySource(randn(300 * 16, 14), 16), { ...small, steps: 10 }, {
    checkpointEvery: 4,
    onCheckpoint: async (c) => {
      steps.push(c.step);
      await write(c);
    },
  });
  assert.deepEqual(steps, [4, 8, 10]);
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assert.deepEqual(names, ["sae_step10.safetensors", "sae_step4.safetensors", "sae_step8.safetensors"]);
  await saveSaeFile(`${dir}/final.safetensors`, sae, { block: "mid_block" });
  const { sae: back, extra } = await loadSaeFile(ctx, `${dir}/final.safetensors`);
  assert.deepEqual(back.config, sae.config);
  assert.deepEqual(extra, { block: "mid_block" });
  assert.deepEqual(await paramsOf(ctx, back), await paramsOf(ctx, sae));
  // what PyTorch's safe_open sees: F32 tensors under these names and shapes, a JSON config in the metadata
  await using st = await openSafetensorsFile(`${dir}/sae_step10.safetensors`);
  assert.deepEqual(st.info("W_enc").shape, [48, 16]);
  assert.deepEqual(st.info("W_dec").shape, [16, 48]);
  assert.deepEqual(st.info("b_pre").dtype, "F32");
  const meta = JSON.parse(st.metadata.config);
  assert.equal(st.metadata.format, "pt");
  assert.deepEqual([meta.d, meta.n_latents, meta.k, meta.relu, meta.step, meta.k_aux], [16, 48, 4, true, 10, 8]);
  assert.equal(meta.aux_loss, "normalized");
  assert.deepEqual(await st.readF32("W_dec"), (await paramsOf(ctx, sae))[2]);
  // a bare file without the config needs k; a wrong shape is named
  await writeSafetensorsFile(`${dir}/bare.safetensors`, {
    W_enc: { dtype: "F32", shape: [48, 16], data: new Float32Array(768) },
    b_enc: { dtype: "F32", shape: [48], data: new Float32Array(48) },
    W_dec: { dtype: "F32", shape: [16, 48], data: new Float32Array(768) },
    b_pre: { dtype: "F32", shape: [15], data: new Float32Array(15) },
  });
  await assert.rejects(() => loadSaeFile(ctx, `${dir}/bare.safetensors`), /no "k" in its metadata config/);
  await assert.rejects(
    () => loadSaeFile(ctx, `${dir}/bare.safetensors`, { k: 4 }),
    /mis-shaped: b_pre has shape \[15\], config expects \[16\]/,
  );
  for (const s of [sae, back]) s.release();
  await Deno.remove(dir, { recursive: true });
});

gpuTest("openActivationsFile reads rows in the order asked (F32 and F16, runs and repeats)", async (ctx) => {
  const dir = await Deno.makeTempDir();
  const rows = 40, d = 5;
  const data = randn(rows * d, 15);
  await writeSafetensorsFile(`${dir}/a.safetensors`, {
    f32: { dtype: "F32", shape: [rows, d], data },
    f16: { dtype: "F16", shape: [rows, d], data: toF16(data) },
  });
  const ids = Uint32Array.from([7, 3, 4, 5, 39, 0, 5, 6, 1]);
  for (const name of ["f32", "f16"]) {
    await using f = await openActivationsFile(`${dir}/a.safetensors`, name);
    assert.equal(f.rows, rows);
    assert.equal(f.d, d);
    const got = await f.batch(ids, ctx.recorder()) as Float32Array;
    for (const [r, id] of ids.entries()) {
      for (let i = 0; i < d; i++) {
        const want = data[id * d + i];
        assert.ok(Math.abs(got[r * d + i] - want) <= (name === "f16" ? 2e-3 * Math.abs(want) + 1e-4 : 0));
      }
    }
  }
  await assert.rejects(() => openActivationsFile(`${dir}/a.safetensors`), /holds 2 tensors; say which/);
  await Deno.remove(dir, { recursive: true });
});

gpuTest("trainSAE errors say what is wrong", async (ctx) => {
  const src = arraySource(new Float32Array(10 * 16), 16);
  await assert.rejects(() => trainSAE(ctx, src, { ...small, d: 8 }), /source's rows have d = 16, the config 8/);
  await assert.rejects(() => trainSAE(ctx, src, small), /10 rows cannot fill a batch of 64/);
  await assert.rejects(() => trainSAE(ctx, src, { ...small, batchSize: 0 }), /batchSize must be an integer ≥ 1/);
  await assert.rejects(() => trainSAE(ctx, src, { ...small, kAux: 100 }), /kAux = 100 exceeds nLatents = 48/);
  assert.throws(() => arraySource(new Float32Array(10), 3), /10 values are not rows of d = 3/);
});

Deno.test("trainSAE defaults: dead after 10M tokens whatever the batch; Revelio's preset runs 10,240 steps", () => {
  assert.equal(resolveTrainConfig({ d: 128, k: 2 }).deadSteps, 2441); // SDLens: 10M // 4096
  assert.equal(resolveTrainConfig({ d: 128, k: 2, batchSize: 256 }).deadSteps, 39062);
  assert.equal(resolveTrainConfig({ d: 128, k: 2, batchSize: 256, deadSteps: 7 }).deadSteps, 7);
  assert.equal(resolveTrainConfig({ ...REVELIO_KSAE, d: 8, nLatents: 512 }).steps, 10_240);
});
