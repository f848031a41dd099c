import { assertClose, gpuTest } from "./_gpu.ts";
import { fdGrad } from "./_fd.ts";
import { embeddingBackward } from "../src/ops/embedding.ts";
import { embeddingBackwardRef, embeddingRef } from "../src/ref/embedding.ts";
import { randn, rng } from "../src/ref/random.ts";
import type { Tensor } from "../src/gpu/tensor.ts";
import type { GpuContext } from "../src/gpu/context.ts";
import assert from "assert";

function randomIds(n: number, v: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r.uniform() * v));
}

/** CLIP-like prompts: a few words, then the pad token repeated to 77. */
function clipIds(b: number, v: number, seed: number): Int32Array {
  const r = rng(seed);
  const ids = new Int32Array(b * 77).fill(v - 1);
  for (let p = 0; p < b; p++) {
    const len = 3 + Math.floor(r.uniform() * 8);
    for (let t = 0; t < len; t++) ids[p * 77 + t] = Math.floor(r.uniform() * 50);
  }
  return ids;
}

/** Row shards of `rows` rows each, filled from `data` (a [V, D] table). */
function uploadShards(ctx: GpuContext, data: Float32Array, sizes: number[], d: number): Tensor[] {
  let start = 0;
  return sizes.map((rows) => {
    const t = ctx.upload(data.subarray(start * d, (start + rows) * d), [rows, d]);
    start += rows;
    return t;
  });
}

async function readShards(ctx: GpuContext, shards: Tensor[]): Promise<Float32Array> {
  const parts = await Promise.all(shards.map((s) => ctx.readF32(s)));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

const cases: { v: number; d: number; ids: Int32Array; shape: number[]; shards: number[]; what: string }[] = [
  { v: 50, d: 7, ids: randomIds(18, 50, 2), shape: [2, 9], shards: [50], what: "random ids, D = 7" },
  { v: 1000, d: 33, ids: clipIds(2, 1000, 3), shape: [2, 77], shards: [1000], what: "CLIP-like pads (~140 repeats)" },
  { v: 1000, d: 300, ids: clipIds(3, 1000, 4), shape: [3, 77], shards: [123, 700, 177], what: "3 shards, D = 300" },
  { v: 5, d: 130, ids: Int32Array.from([4, 4, 0, 4, 4]), shape: [5], shards: [2, 3], what: "one id 4 times, 2 shards" },
];
for (const { v, d, ids, shape, shards: sizes, what } of cases) {
  gpuTest(`embeddingBackward [${v},${d}] from ids ${JSON.stringify(shape)}: ${what}`, async (ctx) => {
    const dy = randn(ids.length * d, 5), prior = randn(v * d, 6);
    const tdy = ctx.upload(dy, [...shape, d]);
    const tids = ctx.upload(ids, shape, "i32");
    const acc = uploadShards(ctx, prior, sizes, d), over = uploadShards(ctx, prior, sizes, d);
    const rec = ctx.recorder();
    const got = embeddingBackward(rec, { dy: tdy, ids: tids }, { dtable: sizes.length === 1 ? acc[0] : acc });
    embeddingBackward(rec, { dy: tdy, ids: { data: ids, shape } }, { dtable: over, accumulate: false });
    await rec.submit();
    assert.deepEqual(got.dtable, acc);
    const want = embeddingBackwardRef(dy, v, d, ids);
    assertClose(await readShards(ctx, acc), want.map((x, i) => x + prior[i]), 1e-6, "dtable accumulated");
    assertClose(await readShards(ctx, over), want, 1e-6, "dtable overwritten (rows not named are zero)");
    ctx.release(tdy, tids, ...acc, ...over);
  });
}

gpuTest("embeddingBackward is deterministic and clamps GPU ids as the forward does", async (ctx) => {
  const [v, d] = [20, 5];
  const ids = Int32Array.from([-5, 0, 19, 20, 2 ** 31 - 1, -(2 ** 31), 13, 0, 19]);
  const dy = randn(ids.length * d, 7);
  const tdy = ctx.upload(dy, [ids.length, d]), tids = ctx.upload(ids, [ids.length], "i32");
  const outs = [0, 1].map(() => uploadShards(ctx, new Float32Array(v * d), [7, 7, 6], d));
  const rec = ctx.recorder();
  for (const dtable of outs) embeddingBackward(rec, { dy: tdy, ids: tids }, { dtable, accumulate: false });
  await rec.submit();
  const [a, b] = [await readShards(ctx, outs[0]), await readShards(ctx, outs[1])];
  assert.deepEqual(a, b);
  assertClose(a, embeddingBackwardRef(dy, v, d, ids), 1e-6, "clamped ids");
  ctx.release(tdy, tids, ...outs.flat());
});

gpuTest("embeddingBackward: a long chain (one id 3000 times among 3100 tokens)", async (ctx) => {
  const [v, d, n] = [40, 70, 3100];
  const ids = Int32Array.from({ length: n }, (_, t) => (t % 31 === 0 ? t % 40 : 7));
  const dy = randn(n * d, 10);
  const tdy = ctx.upload(dy, [n, d]), dtable = ctx.tensor([v, d]);
  const rec = ctx.recorder();
  embeddingBackward(rec, { dy: tdy, ids: { data: ids, shape: [n] } }, { dtable, accumulate: false });
  await rec.submit();
  assertClose(await ctx.readF32(dtable), embeddingBackwardRef(dy, v, d, ids), 1e-5, "dtable");
  ctx.release(tdy, dtable);
});

gpuTest("embeddingBackward matches finite differences of the f64 forward", async (ctx) => {
  const [v, d] = [6, 3];
  const ids = Int32Array.from([1, 4, 1, 1, 0, 4]);
  const table = randn(v * d, 8), w = randn(ids.length * d, 9);
  const tw = ctx.upload(w, [ids.length, d]), dtable = ctx.tensor([v, d]);
  const rec = ctx.recorder();
  embeddingBackward(rec, { dy: tw, ids: { data: ids, shape: [ids.length] } }, { dtable, accumulate: false });
  await rec.submit();
  const fd = fdGrad((t) => embeddingRef(t, v, d, ids), table, w);
  assertClose(await ctx.readF32(dtable), fd, 1e-3, "dtable vs finite differences");
  ctx.release(tw, dtable);
});

gpuTest("embeddingBackward errors name the shapes and the bad id", (ctx) => {
  const rec = ctx.recorder();
  const dy = ctx.tensor([2, 3, 4], "f32", "dy"),
    t = ctx.tensor([10, 4], "f32", "t"),
    u = ctx.tensor([5, 3], "f32", "u");
  const host = { data: [1, 2, 3, 4, 5, 6], shape: [2, 3] };
  assert.throws(
    () => embeddingBackward(rec, { dy, ids: { data: [1, 2], shape: [2] } }, { dtable: t }),
    /embedding backward: dy "dy" for ids \[2\] and D = 4: shape \[2,3,4\] does not match expected \[2,4\]/,
  );
  assert.throws(
    () => embeddingBackward(rec, { dy, ids: { data: [1, 2, 3, 4, 5, 10], shape: [2, 3] } }, { dtable: t }),
    /embedding backward: id 10 at position 5 is outside the table's 10 rows/,
  );
  assert.throws(
    () => embeddingBackward(rec, { dy, ids: host }, { dtable: [t, u] }),
    /table shards must be \[rows, D\]/,
  );
  const half = ctx.tensor([10, 4], "i32", "half");
  assert.throws(
    () => embeddingBackward(rec, { dy, ids: host }, { dtable: half }),
    /"half" \[10,4\] is i32, expected f32/,
  );
  // (host-side checks only: views of small buffers stand in for the big tensors)
  const [long, wide] = [{ ...dy, shape: [30001, 257] }, { ...t, shape: [10, 257] }];
  assert.throws(
    () => embeddingBackward(rec, { dy: long, ids: { data: new Int32Array(30001), shape: [30001] } }, { dtable: wide }),
    /embedding backward: 30001 ids × 2 column passes may exceed 60000 loop iterations/,
  );
  assert.deepEqual(embeddingBackward(rec, { dy, ids: host }), {});
  ctx.release(dy, t, u, half);
});
