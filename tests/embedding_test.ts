import { assertClose, gpuTest } from "./_gpu.ts";
import { embedding, rowShardSizes, uploadRowShards } from "../src/ops/embedding.ts";
import { embeddingRef } from "../src/ref/embedding.ts";
import { randn, rng } from "../src/ref/random.ts";
import assert from "assert";

function randomIds(n: number, v: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r.uniform() * v));
}

const cases: [number, number, number[]][] = [[50, 7, [2, 9]], [1000, 33, [3, 77]], [5, 130, [1]], [11, 1, [4, 3, 2]]];
for (const [v, d, idsShape] of cases) {
  gpuTest(`embedding [${v},${d}] table, ids ${JSON.stringify(idsShape)}`, async (ctx) => {
    const table = randn(v * d, 1);
    const n = idsShape.reduce((a, b) => a * b, 1);
    const ids = randomIds(n, v, 2);
    const tt = ctx.upload(table, [v, d]);
    const rec = ctx.recorder();
    const fromHost = embedding(rec, { table: tt, ids: { data: ids, shape: idsShape } });
    const tids = ctx.upload(ids, idsShape, "i32");
    const fromGpu = embedding(rec, { table: [tt], ids: tids });
    await rec.submit();
    assert.deepEqual(fromHost.shape, [...idsShape, d]);
    const want = embeddingRef(table, v, d, ids);
    assertClose(await ctx.readF32(fromHost), want, 1e-7, "host ids");
    assertClose(await ctx.readF32(fromGpu), want, 1e-7, "GPU ids");
    ctx.release(tt, tids, fromHost, fromGpu);
  });
}

gpuTest("embedding from a table in 3 uneven row shards (ids in every shard, at the shard edges)", async (ctx) => {
  const [v, d] = [1000, 37];
  const table = randn(v * d, 3);
  const sizes = [123, 700, 177];
  let start = 0;
  const shards = sizes.map((rows) => {
    const t = ctx.upload(table.subarray(start * d, (start + rows) * d), [rows, d]);
    start += rows;
    return t;
  });
  const ids = Int32Array.from([0, 122, 123, 124, 822, 823, 999, ...randomIds(150, v, 4)]);
  const rec = ctx.recorder();
  const out = embedding(rec, { table: shards, ids: { data: ids, shape: [ids.length] } });
  await rec.submit();
  assertClose(await ctx.readF32(out), embeddingRef(table, v, d, ids), 1e-7, "sharded embedding");
  ctx.release(...shards, out);
});

gpuTest("out-of-range ids on the GPU are clamped into the table, never read out of bounds", async (ctx) => {
  const [v, d] = [20, 5];
  const table = randn(v * d, 5);
  const shards = uploadRowShards(ctx, table, [v, d], { maxShardBytes: 7 * d * 4 }); // 3 shards: 7, 7, 6 rows
  assert.deepEqual(shards.map((s) => s.shape[0]), [7, 7, 6]);
  const ids = Int32Array.from([-5, 0, 19, 20, 2 ** 31 - 1, -(2 ** 31), 13]);
  const tids = ctx.upload(ids, [ids.length], "i32");
  const rec = ctx.recorder();
  const out = embedding(rec, { table: shards, ids: tids });
  await rec.submit();
  assertClose(await ctx.readF32(out), embeddingRef(table, v, d, ids), 1e-7, "clamped ids");
  ctx.release(...shards, tids, out);
});

Deno.test("rowShardSizes splits evenly within the byte limit", () => {
  const limit = 128 * 1024 * 1024;
  assert.deepEqual(rowShardSizes(49408, 768 * 4, limit), [24704, 24704]); // SD's CLIP token embedding
  assert.deepEqual(rowShardSizes(10, 4, 40), [10]);
  assert.deepEqual(rowShardSizes(10, 4, 12), [3, 3, 2, 2]);
  assert.throws(() => rowShardSizes(10, 64, 32), /one row \(64 bytes\) exceeds 32 bytes/);
});

gpuTest("embedding errors name the shapes and the bad id", (ctx) => {
  const rec = ctx.recorder();
  const a = ctx.tensor([10, 4], "f32", "a"), b = ctx.tensor([5, 3], "f32", "b"), fids = ctx.tensor([3], "f32", "fids");
  assert.throws(
    () => embedding(rec, { table: [a, b], ids: { data: [1], shape: [1] } }),
    /embedding: table shards must be \[rows, D\] with one D and dtype; got \[10,4\] f32, \[5,3\] f32/,
  );
  assert.throws(
    () => embedding(rec, { table: a, ids: { data: [1, 10], shape: [2] } }),
    /embedding: id 10 at position 1 is outside the table's 10 rows/,
  );
  assert.throws(() => embedding(rec, { table: a, ids: { data: [-1], shape: [1] } }), /id -1 at position 0/);
  assert.throws(() => embedding(rec, { table: a, ids: fids }), /embedding ids: "fids" \[3\] is f32, expected i32/);
  assert.throws(() => embedding(rec, { table: [], ids: fids }), /embedding: the table has no shards/);
  ctx.release(a, b, fids);
});
