import { gpuTest } from "./_gpu.ts";
import {
  ablationMask,
  type AblationMethod,
  type AblationMode,
  ablationPatch,
  ablationQuota,
  applyAblation,
  applyPatch,
  attributionScores,
  countZeroed,
  isCadParameter,
  type ScoreMeta,
} from "../src/cad/mod.ts";
import { loadAblationPatch, loadScores, openScores, saveAblationPatch, saveScores } from "../src/io/cad_files.ts";
import { ablationMaskRef } from "../src/ref/ablate.ts";
import { randn, rng } from "../src/ref/random.ts";
import { maxTopK } from "../src/ops/topk.ts";
import type { GpuContext } from "../src/gpu/mod.ts";
import assert from "assert";

const MODES: AblationMode[] = ["positive", "negative", "both"];

/** The mask on the GPU with a given method, compared entry for entry with the CPU reference (full sorts). */
async function checkMask(
  ctx: GpuContext,
  s: Float32Array,
  [rows, len]: [number, number],
  opts: { ratio: number; mode: AblationMode; flatten: boolean; method?: AblationMethod },
  what: string,
): Promise<Float32Array> {
  const ts = ctx.upload(s, [rows, len], "f32", "scores");
  const rec = ctx.recorder();
  const m = ablationMask(rec, ts, opts);
  await rec.submit();
  const got = await ctx.readF32(m.mask);
  const [segs, seg] = opts.flatten ? [1, rows * len] : [rows, len];
  assert.equal(m.quota, ablationQuota(opts.ratio, seg), `${what}: quota`);
  const want = new Float32Array(rows * len);
  ablationMaskRef(want, s, segs, seg, m.quota, opts.mode);
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) {
      throw new Error(
        `${what}: entry ${i} (row ${Math.floor(i / len)}, col ${i % len}, S = ${s[i]}): mask ${got[i]}, want ${
          want[i]
        }`,
      );
    }
  }
  ctx.release(ts, m.mask);
  return got;
}

/** Zeros per segment. */
function zerosPer(mask: Float32Array, segs: number): number[] {
  const len = mask.length / segs;
  return Array.from({ length: segs }, (_, r) => mask.subarray(r * len, (r + 1) * len).filter((v) => v === 0).length);
}

/** Positive / negative entries per segment. */
function signsPer(s: Float32Array, segs: number): { pos: number[]; neg: number[] } {
  const len = s.length / segs;
  const seg = (r: number) => s.subarray(r * len, (r + 1) * len);
  return {
    pos: Array.from({ length: segs }, (_, r) => seg(r).filter((v) => v > 0).length),
    neg: Array.from({ length: segs }, (_, r) => seg(r).filter((v) => v < 0).length),
  };
}

// q = int(ratio · in) as Python computes it in the reference (per row; × 7 rows when flattened).
const QUOTAS: Record<number, [number, number, number]> = {
  32: [0, 1, 9],
  77: [0, 3, 23],
  256: [0, 12, 76],
  1000: [1, 50, 300],
};
const RATIOS = [0.001, 0.05, 0.3];
const ROWS = 7;

Deno.test("ablationQuota is Python's int(ratio · n), including CAD's SD v1.4 FF layers at ratio 0.001", () => {
  for (const [len, qs] of Object.entries(QUOTAS)) {
    assert.deepEqual(RATIOS.map((r) => ablationQuota(r, +len)), qs, `in = ${len}`);
  }
  // methods.md §3.2: net.0 (in = C) and net.2 (in = 4C) for C = 320, 640, 1280
  assert.deepEqual([320, 1280, 640, 2560, 1280, 5120].map((n) => ablationQuota(0.001, n)), [0, 1, 0, 2, 1, 5]);
  assert.equal(ablationQuota(0.001, 10240 * 1280), 13107);
  assert.ok(isCadParameter("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", [2560, 320]));
  assert.ok(!isCadParameter("down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.bias", [2560]));
  assert.ok(!isCadParameter("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", [320, 768]));
});

for (const len of [32, 77, 256, 1000]) {
  gpuTest(`ablationMask in = ${len}: exact per-row quota, both methods, every mode, flattened too`, async (ctx) => {
    const s = randn(ROWS * len, 100 + len);
    const { pos, neg } = signsPer(s, ROWS);
    for (const [ri, ratio] of RATIOS.entries()) {
      for (const mode of MODES) {
        for (const method of ["topk", "radix"] as const) {
          const what = `[${ROWS},${len}] ratio ${ratio} ${mode} ${method}`;
          const mask = await checkMask(ctx, s, [ROWS, len], { ratio, mode, flatten: false, method }, what);
          const q = QUOTAS[len][ri];
          const want = pos.map((p, r) =>
            (mode !== "negative" ? Math.min(q, p) : 0) + (mode !== "positive" ? Math.min(q, neg[r]) : 0)
          );
          assert.deepEqual(zerosPer(mask, ROWS), want, `${what}: zeros per row (q = ${q})`);
        }
        const qf = ablationQuota(ratio, ROWS * len);
        for (const method of ["topk", "radix"] as const) {
          if (method === "topk" && qf > maxTopK(ctx.limits)) continue;
          const what = `[${ROWS},${len}] flattened ratio ${ratio} ${mode} ${method}`;
          await checkMask(ctx, s, [ROWS, len], { ratio, mode, flatten: true, method }, what);
        }
      }
    }
  });
}

gpuTest("ablationMask at ratio 0.001 on rows shorter than 1000 zeroes nothing (q = 0)", async (ctx) => {
  const s = randn(3 * 320, 7).map((v) => Math.abs(v) + 1); // all positive
  const rec = ctx.recorder();
  const m = ablationMask(rec, ctx.upload(s, [3, 320]), { mode: "both" });
  const count = countZeroed(rec, m);
  await rec.submit();
  assert.equal(m.quota, 0);
  assert.equal(m.method, "none");
  assert.deepEqual([...new Set(await ctx.readF32(m.mask))], [1]);
  assert.equal((await ctx.read(count))[0], 0);
});

gpuTest("positive ablation never zeroes S ≤ 0: rows with fewer positives than q lose only those", async (ctx) => {
  // row r has r positive entries (and zeros of both signs); q = 9 per row
  const rows = 12, len = 32;
  const r0 = rng(3);
  const s = new Float32Array(rows * len);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < len; j++) {
      const i = r * len + j;
      s[i] = j < r ? r0.uniform() + 0.01 : j % 5 === 0 ? 0 : j % 5 === 1 ? -0 : -(r0.uniform() + 0.01);
    }
  }
  for (const method of ["topk", "radix"] as const) {
    for (const flatten of [false, true]) {
      const mask = await checkMask(ctx, s, [rows, len], { ratio: 0.3, mode: "positive", flatten, method }, method);
      for (let i = 0; i < s.length; i++) {
        if (mask[i] === 0) assert.ok(s[i] > 0, `${method}: zeroed entry ${i} has S = ${s[i]}`);
      }
      if (!flatten) assert.deepEqual(zerosPer(mask, rows), Array.from({ length: rows }, (_, r) => Math.min(9, r)));
    }
  }
  // and negative ablation never zeroes S ≥ 0 (rows of all positives and zeros lose nothing)
  const pos = s.map((v) => Math.abs(v));
  for (const method of ["topk", "radix"] as const) {
    const mask = await checkMask(
      ctx,
      pos,
      [rows, len],
      { ratio: 0.3, mode: "negative", flatten: false, method },
      "neg",
    );
    assert.ok(mask.every((v) => v === 1), `${method}: negative ablation zeroed a non-negative score`);
  }
});

gpuTest("ablationMask breaks ties by the lower column, the same way on both paths", async (ctx) => {
  for (const [rows, len, ratio] of [[5, 77, 0.3], [4, 1000, 0.05], [3, 256, 0.3]] as const) {
    // values on a coarse grid: many ties straddle the q-th place
    const s = randn(rows * len, 9 + len).map((v) => Math.round(v * 2) / 2);
    for (const mode of MODES) {
      for (const method of ["topk", "radix"] as const) {
        for (const flatten of [false, true]) {
          const what = `ties [${rows},${len}] ${mode} ${method}${flatten ? " flattened" : ""}`;
          await checkMask(ctx, s, [rows, len], { ratio, mode, flatten, method }, what);
        }
      }
    }
  }
  const equal = new Float32Array(4 * 100).fill(0.25); // all tied: the first q columns go
  for (const method of ["topk", "radix"] as const) {
    const mask = await checkMask(ctx, equal, [4, 100], { ratio: 0.05, mode: "positive", flatten: false, method }, "eq");
    for (let r = 0; r < 4; r++) assert.deepEqual([...mask.subarray(r * 100, r * 100 + 6)], [0, 0, 0, 0, 0, 1]);
  }
});

gpuTest("ablationMask orders special scores (NaN, ±∞, ±0, subnormals) the same on both paths", async (ctx) => {
  const [rows, len] = [6, 77];
  const s = randn(rows * len, 21);
  const bits = new Uint32Array(s.buffer);
  const specials = [0x7fc00000, 0xffc00000, 0x7f800000, 0xff800000, 0, 0x80000000, 1, 0x80000001];
  for (let i = 0; i < s.length; i += 3) bits[i] = specials[(i / 3) % specials.length];
  for (let j = 0; j < len; j++) bits[2 * len + j] = (j * 7919) % 1000 + (j % 3 ? 0 : 0x80000000); // subnormals only
  for (const mode of MODES) {
    for (const method of ["topk", "radix"] as const) {
      for (const flatten of [false, true]) {
        const what = `specials ${mode} ${method}${flatten ? " flattened" : ""}`;
        const mask = await checkMask(ctx, s, [rows, len], { ratio: 0.3, mode, flatten, method }, what);
        for (let i = 0; i < s.length; i++) {
          if (mask[i] === 0) assert.ok(s[i] > 0 || s[i] < 0, `${what}: zeroed entry ${i} has S = ${s[i]}`);
        }
      }
    }
  }
});

gpuTest("ablationMask uses the radix path when q exceeds maxTopK (per row and flattened)", async (ctx) => {
  const [rows, len] = [2, 8000];
  const s = randn(rows * len, 77);
  for (const mode of MODES) {
    await checkMask(ctx, s, [rows, len], { ratio: 0.3, mode, flatten: false }, `q = 2400 ${mode}`);
    await checkMask(ctx, s, [rows, len], { ratio: 0.2, mode, flatten: true }, `flattened q = 3200 ${mode}`);
  }
  const rec = ctx.recorder();
  assert.equal(ablationMask(rec, ctx.upload(s, [rows, len]), { ratio: 0.3 }).method, "radix");
  assert.equal(ablationMask(rec, ctx.upload(s, [rows, len]), { ratio: 0.01 }).method, "topk");
  await rec.submit();
});

gpuTest("ablationMask rejects bad inputs, naming what is wrong", (ctx) => {
  const rec = ctx.recorder();
  const s = ctx.tensor([4, 5000], "f32", "S");
  assert.throws(() => ablationMask(rec, ctx.tensor([2, 3, 4], "f32", "S3")), /\[2,3,4\] must be 2-D \[out, in\]/);
  assert.throws(() => ablationMask(rec, ctx.tensor([4, 5], "f16", "Sh")), /are f16, expected f32/);
  assert.throws(() => ablationMask(rec, s, { ratio: 1.5 }), /ratio 1.5 must lie in \[0, 1\]/);
  assert.throws(() => ablationMask(rec, s, { mode: "top" as AblationMode }), /unknown mode "top"/);
  assert.throws(() => ablationMask(rec, s, { ratio: 0.5, method: "topk" }), /q = 2500; use "radix"/);
  assert.throws(
    () => ablationMask(rec, s, { out: ctx.tensor([4, 500]) }),
    /\[4,500\] does not match expected \[4,5000\]/,
  );
  assert.throws(() => applyAblation(rec, ctx.tensor([4, 50]), s), /\[4,5000\] does not match expected \[4,50\]/);
});

gpuTest("attributionScores is param ⊙ grad, bit for bit", async (ctx) => {
  const shape = [33, 77];
  const w = randn(33 * 77, 1, 0.05), g = randn(33 * 77, 2, 1e-3);
  const rec = ctx.recorder();
  const s = attributionScores(rec, ctx.upload(w, shape), ctx.upload(g, shape));
  await rec.submit();
  const got = await ctx.readF32(s);
  for (let i = 0; i < got.length; i++) assert.ok(Object.is(got[i], Math.fround(w[i] * g[i])), `entry ${i}`);
  assert.throws(
    () => attributionScores(ctx.recorder(), ctx.tensor([2, 3], "f32", "w"), ctx.tensor([3, 2], "f32", "g")),
    /gradient "g" \(parameter "w" is \[2,3\]\): shape \[3,2\] does not match expected \[2,3\]/,
  );
});

gpuTest("ablation patch: collect, save, apply, undo restores the original bit for bit", async (ctx) => {
  const [rows, len] = [9, 300];
  const n = rows * len;
  const w = randn(n, 5, 0.1);
  const s = randn(n, 6);
  // special values where the scores will pick them: −0, a NaN with a payload, ±∞, a subnormal
  const bits = new Uint32Array(w.buffer);
  const specials = [0x80000000, 0x7fc01234, 0x7f800000, 0xff800000, 0x00000001];
  specials.forEach((b, r) => {
    bits[r * len + 3] = b;
    s[r * len + 3] = 100 + r; // the top score of row r
  });
  const original = bits.slice();
  const name = "mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight";
  const param = ctx.upload(w, [rows, len], "f32", name);
  const rec = ctx.recorder();
  const m = ablationMask(rec, ctx.upload(s, [rows, len]), { ratio: 0.02, mode: "both" }); // q = 6 per side
  const count = countZeroed(rec, m);
  await rec.submit();
  const entry = await ablationPatch(ctx, name, param, m);
  const zeroed = (await ctx.read(count))[0];
  const mask = await ctx.readF32(m.mask);
  const want = [...mask.keys()].filter((i) => mask[i] === 0);
  assert.equal(zeroed, want.length);
  assert.deepEqual([...entry.indices], want, "patch indices: the masked entries, ascending");
  assert.deepEqual([...new Uint32Array(entry.values.buffer)], want.map((i) => original[i]), "patch values: bits");
  // the patch without knowing the bound (a bare mask tensor) is the same
  const again = await ablationPatch(ctx, name, param, m.mask);
  assert.deepEqual([...again.indices], want);

  const dir = await Deno.makeTempDir({ prefix: "cad_patch_" });
  try {
    const path = `${dir}/patch.safetensors`;
    await saveAblationPatch(path, { entries: [entry], meta: { ratio: "0.02", mode: "both", concept: "parachute" } });
    const loaded = await loadAblationPatch(path);
    assert.deepEqual(loaded.meta, { ratio: "0.02", mode: "both", concept: "parachute" });
    assert.equal(loaded.entries.length, 1);
    const e = loaded.entries[0];
    assert.equal(e.name, name);
    assert.deepEqual(e.shape, [rows, len]);
    assert.deepEqual([...e.indices], want);
    assert.deepEqual(
      new Uint32Array(e.values.buffer, e.values.byteOffset, e.values.length),
      new Uint32Array(entry.values.buffer),
    );

    const r1 = ctx.recorder();
    applyAblation(r1, param, m);
    await r1.submit();
    const ablated = new Uint32Array((await ctx.readF32(param)).buffer);
    for (let i = 0; i < n; i++) assert.equal(ablated[i], mask[i] === 0 ? 0 : original[i], `ablated entry ${i}`);
    const r2 = ctx.recorder();
    applyPatch(r2, param, e, { restore: true });
    await r2.submit();
    assert.deepEqual(new Uint32Array((await ctx.readF32(param)).buffer), original, "undo is bit-exact");
    const r3 = ctx.recorder();
    applyPatch(r3, param, e); // redo from the patch alone
    await r3.submit();
    assert.deepEqual(new Uint32Array((await ctx.readF32(param)).buffer), ablated, "redo from the patch");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.throws(
    () => applyPatch(ctx.recorder(), param, { ...entry, indices: Int32Array.of(n), values: new Float32Array(1) }),
    /index 2700 lies outside \[9,300\]/,
  );
});

gpuTest("score files: save from the GPU, reopen with metadata, load back", async (ctx) => {
  const meta: ScoreMeta = {
    concept: "parachute",
    mode: "erase",
    timesteps: [981, 961, 941],
    samples: 1,
    seed: 0,
    model: "CompVis/stable-diffusion-v1-4",
  };
  const a = randn(6 * 10, 1), b = randn(10 * 3, 2);
  const scores = new Map([
    ["up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", ctx.upload(a, [6, 10])],
    ["up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.weight", ctx.upload(b, [10, 3])],
  ]);
  const dir = await Deno.makeTempDir({ prefix: "cad_scores_" });
  try {
    const path = `${dir}/scores.safetensors`;
    await saveScores(ctx, path, scores, meta);
    await using f = await openScores(path);
    assert.deepEqual(f.meta, meta);
    assert.deepEqual([...f.names], [...scores.keys()]);
    const e = await f.read([...scores.keys()][1]);
    assert.deepEqual([...e.shape], [10, 3]);
    assert.deepEqual(e.data, b);
    const loaded = await loadScores(ctx, path);
    assert.deepEqual(await ctx.readF32(loaded.scores.get([...scores.keys()][0])!), a);
    const host = `${dir}/host.safetensors`;
    await saveScores(null, host, new Map([["x", { shape: [2], data: Float32Array.of(1, 2) }]]), meta);
    assert.deepEqual((await loadScores(ctx, host)).meta, meta);
    await assert.rejects(
      () => saveScores(ctx, `${dir}/bad.safetensors`, scores, { ...meta, mode: "boost" as "erase" }),
      /"mode" is "boost", expected "erase" or "amplify"/,
    );
    await saveAblationPatch(`${dir}/patch.safetensors`, { entries: [], meta: {} });
    await assert.rejects(() => openScores(`${dir}/patch.safetensors`), /is not a CAD score file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
