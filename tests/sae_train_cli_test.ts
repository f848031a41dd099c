/**
 * `sae train` and what it stands on: an activation store read back as a training source (rows across shards, in
 * the order asked, with a step filter), checkpoints that hold the whole training state so a resumed run is
 * bit-identical to an uninterrupted one, and the CLI end to end (saved file, metrics log, errors, a kill midway).
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import type { GpuContext } from "../src/gpu/context.ts";
import type { Recorder } from "../src/gpu/recorder.ts";
import {
  appendShard,
  compactStore,
  openActivationStore,
  readManifest,
  readStore,
  type StoreManifest,
} from "../src/io/activation_store.ts";
import { loadSaeFile, loadTrainCheckpoint, saveTrainCheckpoint } from "../src/io/sae_files.ts";
import { openSafetensorsFile, writeSafetensorsFile } from "../src/io/safetensors_file.ts";
import { randn, rng } from "../src/ref/random.ts";
import type { CollectedRows } from "../src/sae/collect.ts";
import {
  arraySource,
  type Sae,
  SAE_PARAM_NAMES,
  type SaeMetrics,
  type SaeTrainConfig,
  trainSAE,
  type TrainState,
} from "../src/sae/mod.ts";
import { runCli, spawnCli } from "./_cli.ts";

const D = 16;
const STEPS = [0, 5];
const POSITIONS = 40;

/** Sparse rows: an offset plus 3 of 32 random directions with coefficients in [0.5, 2] (seeded). */
function sparseRows(rows: number, seed: number): Float32Array {
  const atoms = randn(32 * D, seed), offset = randn(D, seed + 1), r = rng(seed + 2);
  const out = new Float32Array(rows * D);
  for (let i = 0; i < rows; i++) {
    out.set(offset, i * D);
    for (let t = 0; t < 3; t++) {
      const a = Math.floor(r.uniform() * 32), c = 0.5 + 1.5 * r.uniform();
      for (let j = 0; j < D; j++) out[i * D + j] += c * atoms[a * D + j];
    }
  }
  return out;
}

/**
 * A store of 5 prompts in 3 shards (prompts [0,2), [2,3), [3,5)): per prompt, steps 0 and 5 × 40 positions, so
 * 160 + 80 + 160 = 400 rows. Returns the rows in manifest order and their (prompt, step, half, position).
 */
async function makeStore(dir: string): Promise<{ data: Float32Array; index: Int32Array }> {
  await Deno.mkdir(dir, { recursive: true });
  const m: StoreManifest = {
    format: "diffscope.activations/1",
    hook: "mid_block.attentions.0.delta",
    d: D,
    atSteps: STEPS,
    steps: 10,
    half: "cond",
    prompts: ["a", "b", "c", "d", "e"],
    grid: [5, 8],
    images: false,
    promptsDone: 0,
    rows: 0,
    shards: [],
  };
  const data = sparseRows(400, 21), index = new Int32Array(400 * 4);
  const prompt = (p: number): CollectedRows => {
    const rows = STEPS.length * POSITIONS, first = p * rows;
    for (let r = 0; r < rows; r++) index.set([p, STEPS[Math.floor(r / POSITIONS)], 1, r % POSITIONS], (first + r) * 4);
    return {
      prompt: p,
      d: D,
      activations: data.slice(first * D, (first + rows) * D),
      index: index.slice(first * 4, (first + rows) * 4),
      grid: [5, 8],
    };
  };
  for (const batch of [[0, 1], [2], [3, 4]]) await appendShard(dir, m, batch.map(prompt));
  return { data, index };
}

async function paramsOf(ctx: GpuContext, sae: Sae): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const n of SAE_PARAM_NAMES) out.push(await ctx.readF32(sae.params[n]));
  return out;
}

async function fileParams(path: string): Promise<Float32Array[]> {
  await using st = await openSafetensorsFile(path);
  const out: Float32Array[] = [];
  for (const n of SAE_PARAM_NAMES) out.push(await st.readF32(n));
  return out;
}

const noRec = null as unknown as Recorder; // store batches are host floats: the recorder is not used

Deno.test("openActivationStore: rows across shards in the order asked, a step filter, errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-store-" });
  try {
    const { data, index } = await makeStore(`${dir}/store`);
    const expectRows = (got: Float32Array, rows: number[], what: string) => {
      assert.equal(got.length, rows.length * D, what);
      for (const [i, r] of rows.entries()) {
        assert.deepEqual(got.subarray(i * D, i * D + D), data.subarray(r * D, r * D + D), `${what}: row ${r}`);
      }
    };
    // out of order, repeats, runs, every shard; also with one file open at a time (evictions)
    const ids = [399, 0, 161, 160, 159, 240, 5, 5, 398, 80, 1, 2, 3];
    for (const maxOpen of [64, 1]) {
      await using store = await openActivationStore(`${dir}/store`, { maxOpen });
      assert.equal(store.rows, 400);
      assert.equal(store.d, D);
      assert.equal(store.manifest.shards.length, 3);
      expectRows(await store.batch(Uint32Array.from(ids), noRec) as Float32Array, ids, `maxOpen ${maxOpen}`);
      await assert.rejects(async () => await store.batch(Uint32Array.from([400]), noRec), /row 400 asked of a store/);
    }
    // only step 5: row i is the i-th row of step 5, in manifest order
    await using step5 = await openActivationStore(`${dir}/store`, { steps: [5], half: "cond" });
    const kept = [...Array(400).keys()].filter((r) => index[4 * r + 1] === 5);
    assert.equal(step5.rows, 200);
    const asked = [199, 0, 41, 40, 120, 7];
    expectRows(await step5.batch(Uint32Array.from(asked), noRec) as Float32Array, asked.map((i) => kept[i]), "step 5");
    // errors
    await assert.rejects(
      () => openActivationStore(`${dir}/store`, { steps: [3] }),
      /no rows of step 3: it holds steps 0, 5/,
    );
    await assert.rejects(() => openActivationStore(`${dir}/store`, { half: "uncond" }), /the cond half only/);
    await assert.rejects(() => openActivationStore(`${dir}/nothing`), /nothing: no such folder/);
    await Deno.mkdir(`${dir}/empty`);
    await assert.rejects(() => openActivationStore(`${dir}/empty`), /has no manifest\.json: not an activation store/);
    const m = JSON.parse(await Deno.readTextFile(`${dir}/store/manifest.json`));
    await Deno.writeTextFile(`${dir}/store/manifest.json`, JSON.stringify({ ...m, d: 8 }));
    await assert.rejects(
      () => openActivationStore(`${dir}/store`),
      /shard-00000\.safetensors: "activations" is \[160, 16\], the manifest says \[160, 8\] \(d mismatch\?\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const small: SaeTrainConfig = {
  d: D,
  nLatents: 64,
  k: 4,
  batchSize: 64,
  steps: 40,
  lr: 3e-3,
  kAux: 16,
  deadSteps: 3,
  initRows: 256,
  scaleBatches: 2,
  seed: 1,
};

gpuTest("trainSAE resumed from a checkpoint file is bit-identical to an uninterrupted run", async (ctx) => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-resume-" });
  const src = arraySource(randn(700 * D, 5, 1.3), D);
  void ctx.placeholder; // created once per context, on first use
  await ctx.sync();
  const before = ctx.memory.current;
  const history: SaeMetrics[] = [];
  const full = await trainSAE(ctx, src, small, { metricsEvery: 5, onMetrics: (m) => history.push(m) });
  // AuxK must be at work after the checkpoint, or the dead counter's restore would go untested
  assert.ok(history.some((m) => m.step > 20 && m.auxActive && m.deadFraction > 0), JSON.stringify(history));
  const path = `${dir}/ck.safetensors`;
  const half = await trainSAE(ctx, src, { ...small, steps: 20 }, {
    checkpointEvery: 20,
    onCheckpoint: async (c) => saveTrainCheckpoint(path, c.sae.config, await c.state(), { note: "half" }),
  });
  half.sae.release();
  const { state, config, extra } = await loadTrainCheckpoint(path);
  assert.deepEqual([state.step, state.adam.step, config.nLatents, extra.note], [20, 20, 64, "half"]);
  assert.equal(state.order.perm.length, 700);
  assert.equal(state.deadCounter!.length, 64);
  const resumed = await trainSAE(ctx, src, small, { metricsEvery: 5, resume: state });
  const want = await paramsOf(ctx, full.sae);
  assert.deepEqual(await paramsOf(ctx, resumed.sae), want, "resumed vs uninterrupted");
  assert.equal(resumed.steps, 40);
  // each part of the state matters: dropping it changes the result
  const zeroed = (f: (s: TrainState) => void) => {
    const s = structuredClone(state);
    f(s);
    return s;
  };
  for (
    const [what, s] of [
      ["Adam's moments", zeroed((s) => Object.values(s.adam.moments).forEach((m) => m.fill(0)))],
      ["the dead counter", zeroed((s) => s.deadCounter!.fill(0))],
      ["the row order", zeroed((s) => (s.order.at = 0))],
    ] as const
  ) {
    const r = await trainSAE(ctx, src, small, { resume: s });
    assert.notDeepEqual(await paramsOf(ctx, r.sae), want, `resuming without ${what}`);
    r.sae.release();
  }
  // the checkpoint is also an SAE file; a state for other rows or other shapes is refused
  const { sae: asSae } = await loadSaeFile(ctx, path);
  assert.deepEqual(asSae.config, half.sae.config);
  await assert.rejects(
    () => trainSAE(ctx, arraySource(randn(500 * D, 6), D), small, { resume: state }),
    /made over 700 rows; the source has 500/,
  );
  await assert.rejects(
    () => trainSAE(ctx, src, { ...small, nLatents: 48 }, { resume: state }),
    /W_enc has 1024 values, not \[48,16\]/,
  );
  for (const s of [full.sae, resumed.sae, asSae]) s.release();
  await ctx.sync();
  assert.equal(ctx.memory.current - before, 0, "bytes left allocated");
  await Deno.remove(dir, { recursive: true });
});

gpuTest("sae train CLI: a store filtered to one step → SAE file, config, metrics log; errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-train-" });
  try {
    await makeStore(`${dir}/store`);
    const out = `${dir}/sae.safetensors`;
    const r = await runCli([
      ...["sae", "train", "--data", `${dir}/store`, "--out", out, "--at-step", "5", "--n-latents", "64"],
      ...["--k", "4", "--batch", "50", "--steps", "60", "--lr", "3e-3", "--k-aux", "16", "--dead-steps", "5"],
      ...["--metrics-every", "10", "--checkpoint-every", "25"],
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /step 10\/60 {2}loss [\d.e-]+ {2}scaled MSE [\d.e-]+ {2}EV [\d.-]+ {2}L0 4\.0 {2}dead/);
    assert.match(r.stdout, /sae\.safetensors: SAE d 16, 64 latents, k 4, 60 steps \(3000 tokens\)/);
    await using st = await openSafetensorsFile(out);
    assert.deepEqual([...st.names].sort(), ["W_dec", "W_enc", "b_enc", "b_pre"]);
    assert.deepEqual(st.info("W_enc").shape, [64, 16]);
    assert.deepEqual(st.info("b_enc").shape, [64]);
    assert.deepEqual(st.info("W_dec").shape, [16, 64]);
    assert.deepEqual(st.info("b_pre").shape, [16]);
    const config = JSON.parse(st.metadata.config);
    assert.deepEqual(
      [config.d, config.n_latents, config.k, config.relu, config.hook, config.at_steps, config.half],
      [16, 64, 4, true, "mid_block.attentions.0.delta", [5], "cond"],
    );
    assert.deepEqual([config.steps, config.tokens, config.rows, config.batch_size, config.k_aux], [
      60,
      3000,
      200,
      50,
      16,
    ]);
    assert.ok(config.mse_scale > 0 && config.explained_variance > 0, JSON.stringify(config));
    const log = (await Deno.readTextFile(`${out}.metrics.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(log.map((m) => m.step), [10, 20, 30, 40, 50, 60]);
    assert.ok(log[5].scaledMse < 0.8 * log[0].scaledMse, `scaled MSE ${log[0].scaledMse} → ${log[5].scaledMse}`);
    assert.ok(log.some((m) => m.auxActive), "AuxK should have run (dead steps 5)");
    assert.ok(!(await Deno.stat(`${out}.ckpt`).catch(() => null)), "checkpoints are removed once the SAE is saved");

    // errors, all at once
    const base = ["sae", "train", "--out", `${dir}/x.safetensors`, "--steps", "2"];
    const m = JSON.parse(await Deno.readTextFile(`${dir}/store/manifest.json`));
    await Deno.mkdir(`${dir}/bad`);
    for (const s of m.shards) await Deno.copyFile(`${dir}/store/${s.file}`, `${dir}/bad/${s.file}`);
    await Deno.writeTextFile(`${dir}/bad/manifest.json`, JSON.stringify({ ...m, d: 32 }));
    await Deno.mkdir(`${dir}/x.safetensors.ckpt`);
    await Deno.writeFile(`${dir}/x.safetensors.ckpt/step-00000001.safetensors`, new Uint8Array(8));
    const cases: [string[], RegExp][] = [
      [["--data", `${dir}/missing`], /--data .*missing: no such file or folder/],
      [["--data", dir], /has no manifest\.json: not an activation store/],
      [["--data", `${dir}/bad`], /"activations" is \[160, 16\], the manifest says \[160, 32\] \(d mismatch\?\)/],
      [
        ["--data", `${dir}/store`, "--out", `${dir}/y.safetensors`],
        /store \(400 of 400 rows\) has fewer rows than one batch of 4096: pass --batch 400 or less/,
      ],
      [["--data", `${dir}/store`, "--at-step", "3"], /no rows of step 3: it holds steps 0, 5/],
      [
        ["--data", `${dir}/store`, "--batch", "8"],
        /x\.safetensors\.ckpt holds a checkpoint of an earlier run .*pass --resume/,
      ],
      [["--data", out, "--at-step", "5"], /--at-step and --half select rows of an activation store/],
      [["--data", `${dir}/store`, "--preset", "nope"], /--preset must be sdlens or revelio/],
      [["--data", `${dir}/store`, "--preset", "revelio", "--k-aux", "8"], /Revelio's k-SAE has no AuxK loss/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli([...base, ...args])));
    for (const [i, [args, want]] of cases.entries()) {
      assert.notEqual(results[i].code, 0, args.join(" "));
      assert.match(results[i].stderr, want, `${args.join(" ")}: ${results[i].stderr}`);
    }
    assert.ok(!(await Deno.stat(`${dir}/y.safetensors`).catch(() => null)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest(
  "sae train CLI: killed midway leaves no output; --resume finishes bit-identical to an uninterrupted run",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "diffscope-kill-" });
    try {
      const data = sparseRows(600, 31);
      await writeSafetensorsFile(`${dir}/acts.safetensors`, {
        acts: { dtype: "F32", shape: [600, D], data },
        other: { dtype: "F32", shape: [2], data: new Float32Array(2) },
      });
      const flags = (out: string) => [
        ...["sae", "train", "--data", `${dir}/acts.safetensors:acts`, "--out", out, "--n-latents", "64", "--k", "4"],
        ...["--batch", "64", "--steps", "150", "--lr", "3e-3", "--k-aux", "16", "--dead-steps", "4", "--seed", "2"],
        ...["--metrics-every", "25", "--checkpoint-every", "10", "--quiet"],
      ];
      const out = `${dir}/killed.safetensors`;
      const first = spawnCli(flags(out));
      let seen = false;
      for (let t = 0; t < 1200 && !seen; t++) {
        seen = [...Deno.readDirSync(dir)].some((e) => e.name === "killed.safetensors.ckpt") &&
          [...Deno.readDirSync(`${out}.ckpt`)].some((e) => /^step-\d+\.safetensors$/.test(e.name));
        if (!seen) await new Promise((r) => setTimeout(r, 50));
      }
      first.kill("SIGKILL");
      const status = await first.status;
      assert.ok(seen, "no checkpoint appeared");
      assert.notEqual(status.code, 0, "the run should have been killed before finishing");
      const left = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("killed.safetensors"));
      assert.ok(!left.includes("killed.safetensors"), `files after the kill: ${left}`);
      assert.ok(!left.some((n) => n.includes(".partial-")), `files after the kill: ${left}`);
      // resume it, and run the same thing uninterrupted
      const [resumed, whole] = await Promise.all([
        runCli([...flags(out), "--resume"]),
        runCli(flags(`${dir}/whole.safetensors`)),
      ]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.match(
        resumed.stdout,
        /150 steps \(9600 tokens, resumed at step [1-9]\d*\)/,
        "it should resume, not restart",
      );
      assert.equal(whole.code, 0, whole.stderr);
      const [a, b] = await Promise.all([fileParams(out), fileParams(`${dir}/whole.safetensors`)]);
      assert.deepEqual(a, b, "resumed vs uninterrupted");
      const log = (await Deno.readTextFile(`${out}.metrics.jsonl`)).trim().split("\n").map((l) => JSON.parse(l).step);
      assert.deepEqual(log, [25, 50, 75, 100, 125, 150], "the metrics log has each step once");
      await using st = await openSafetensorsFile(out);
      const config = JSON.parse(st.metadata.config);
      assert.deepEqual([config.data, config.tensor, config.rows], [`${dir}/acts.safetensors:acts`, "acts", 600]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("compactStore merges small shards into blocks, keeps every row, and cleans up after a killed compaction", async () => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-compact-" });
  try {
    await makeStore(dir);
    const m = (await readManifest(dir))!;
    const before = await readStore(dir);
    // a block left by an earlier, killed compaction: not in the manifest, removed
    await Deno.writeFile(`${dir}/block-1-00007.safetensors`, new Uint8Array(16));
    const rowBytes = m.d * 4;
    // blocks of at most 250 rows: the shards are merged greedily in order, never split
    const n = await compactStore(dir, m, { targetBytes: 250 * rowBytes });
    const after = await readStore(dir);
    assert.equal(n, after.m.shards.length);
    assert.ok(n < before.m.shards.length, `${before.m.shards.length} shards → ${n}`);
    assert.ok(after.m.shards.every((s) => s.rows * rowBytes <= 250 * rowBytes || !s.file.startsWith("block")));
    assert.deepEqual(after.activations, before.activations);
    assert.deepEqual(after.index, before.index);
    assert.equal(after.m.compactions, 1);
    const files: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".safetensors")) files.push(e.name);
    assert.deepEqual(files.sort(), after.m.shards.map((s) => s.file).sort(), "only the files the manifest names");
    // idempotent: nothing more to merge at this size
    assert.equal(await compactStore(dir, after.m, { targetBytes: 250 * rowBytes }), n);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
