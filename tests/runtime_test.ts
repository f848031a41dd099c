import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import {
  createContext,
  defineKernel,
  includeWgsl,
  NoAdapterError,
  packUniform,
  parseInterface,
  sourceLine,
} from "../src/gpu/mod.ts";

Deno.test("no adapter: createContext says how to get one", async () => {
  const gpu = { requestAdapter: () => Promise.resolve(null) } as unknown as GPU;
  await assert.rejects(() => createContext({ gpu }), (e: Error) => {
    assert.ok(e instanceof NoAdapterError);
    assert.match(e.message, /mesa-vulkan-drivers/);
    return true;
  });
});

Deno.test("uniform layout follows WGSL alignment rules and is packed by name", () => {
  const iface = parseInterface(
    "t.wgsl",
    `struct Params { n: u32, x: f32, v2: vec2<u32>, s: vec4<u32>, k: i32, arr: array<vec4<f32>, 2>, }
     @group(0) @binding(0) var<storage, read> a: array<f32>;
     @group(0) @binding(1) var<storage, read_write> b: array<f32>; // comment
     @group(0) @binding(2) var<uniform> p: Params;`,
  );
  assert.deepEqual(iface.storage.map((s) => [s.binding, s.name, s.access]), [[0, "a", "read"], [1, "b", "read_write"]]);
  const u = iface.uniform!;
  assert.deepEqual(u.fields.map((f) => [f.name, f.offset]), [["n", 0], ["x", 4], ["v2", 8], ["s", 16], ["k", 32], [
    "arr",
    48,
  ]]);
  assert.equal(u.size, 80);
  const view = packUniform("t.wgsl", u, {
    n: 7,
    x: 1.5,
    v2: [1, 2],
    s: [3, 4, 5, 6],
    k: -2,
    arr: [1, 2, 3, 4, 5, 6, 7, 8],
  });
  assert.equal(view.getUint32(0, true), 7);
  assert.equal(view.getFloat32(4, true), 1.5);
  assert.equal(view.getUint32(28, true), 6);
  assert.equal(view.getInt32(32, true), -2);
  assert.equal(view.getFloat32(76, true), 8);
  assert.throws(() => packUniform("t.wgsl", u, { n: 1 }), /t\.wgsl: unknown|not given/);
  assert.throws(() => packUniform("t.wgsl", u, { n: -1, x: 0, v2: [0], s: [0], k: 0, arr: [0] }), /needs u32, got -1/);
});

gpuTest("a WGSL error names its file and line", async (ctx) => {
  const bad = defineKernel(
    "broken_probe.wgsl",
    `@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(1) fn main() { o[0] = undefined_thing; }`,
  );
  const rec = ctx.recorder();
  const t = ctx.tensor([4]);
  rec.dispatch(bad, { write: { o: t }, grid: [1] });
  await assert.rejects(() => rec.submit(), /broken_probe\.wgsl.*failed to build[^]*broken_probe\.wgsl:2/);
  ctx.release(t);
});

Deno.test("//!include splices snippets and maps lines back to their files", () => {
  const text = includeWgsl("top.wgsl", "a\n  //!include _s.wgsl\nb\nc", {
    "_s.wgsl": "s1\n//!include _t.wgsl\ns3\n",
    "_t.wgsl": "t1",
  });
  const lines = text.split("\n");
  assert.deepEqual(lines.filter((l) => !l.includes("//!")), ["a", "s1", "t1", "s3", "b", "c"]);
  const at = (name: string) => sourceLine("top.wgsl", text, lines.indexOf(name) + 1);
  assert.equal(at("a"), "top.wgsl:1");
  assert.equal(at("s1"), "_s.wgsl:1 (included by top.wgsl:2)");
  assert.equal(at("t1"), "_t.wgsl:1 (included by _s.wgsl:2) (included by top.wgsl:2)");
  assert.equal(at("s3"), "_s.wgsl:3 (included by top.wgsl:2)");
  assert.equal(at("b"), "top.wgsl:3");
  assert.equal(sourceLine("top.wgsl", text, lines.indexOf("c") + 1, 7), "top.wgsl:4:7");
  assert.equal(sourceLine("x.wgsl", "p\nq", 2), "x.wgsl:2");
  assert.throws(
    () => includeWgsl("top.wgsl", "//!include _nope.wgsl", { "_s.wgsl": "" }),
    /top\.wgsl: \/\/!include of unknown snippet "_nope\.wgsl" \(given: _s\.wgsl\)/,
  );
  assert.throws(
    () => includeWgsl("top.wgsl", "//!include _a.wgsl", { "_a.wgsl": "//!include _a.wgsl" }),
    /top\.wgsl \(in _a\.wgsl\): \/\/!include cycle through "_a\.wgsl"/,
  );
});

gpuTest("a WGSL error inside an included snippet, or after it, names the right file and line", async (ctx) => {
  const snippet = `fn helper() -> f32 {
  return 1.0;
}
fn broken() -> f32 { return missing_in_snippet; }`;
  const top = `@group(0) @binding(0) var<storage, read_write> o: array<f32>;
//!include _broken_probe.wgsl
@compute @workgroup_size(1) fn main() { o[0] = helper() + broken(); }`;
  const t = ctx.tensor([4]);
  let rec = ctx.recorder();
  rec.dispatch(defineKernel("inc_probe.wgsl", includeWgsl("inc_probe.wgsl", top, { "_broken_probe.wgsl": snippet })), {
    write: { o: t },
    grid: [1],
  });
  await assert.rejects(
    () => rec.submit(),
    /inc_probe\.wgsl.*failed to build[^]*_broken_probe\.wgsl:4:\d+ \(included by inc_probe\.wgsl:2\)/,
  );
  // the snippet is fine, the error follows it: the including file's own line numbers still hold
  const after = top.replace("helper() + broken()", "helper() + missing_after");
  rec = ctx.recorder();
  rec.dispatch(
    defineKernel(
      "inc_probe2.wgsl",
      includeWgsl("inc_probe2.wgsl", after, { "_broken_probe.wgsl": snippet.split("\n").slice(0, 3).join("\n") }),
    ),
    { write: { o: t }, grid: [1] },
  );
  await assert.rejects(() => rec.submit(), (e: Error) => {
    assert.match(e.message, /inc_probe2\.wgsl:3:\d+ error/);
    assert.doesNotMatch(e.message, /included by/);
    return true;
  });
  ctx.release(t);
});

gpuTest("bindings are checked against the WGSL's access modes", (ctx) => {
  const k = defineKernel(
    "probe.wgsl",
    `@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(1) fn main() { o[0] = a[0]; }`,
  );
  const rec = ctx.recorder();
  const a = ctx.tensor([4]), o = ctx.tensor([4]);
  assert.throws(() => rec.dispatch(k, { read: { a, o }, grid: [1] }), /"o" is read_write in WGSL but passed as read/);
  assert.throws(() => rec.dispatch(k, { read: { a }, grid: [1] }), /binding "o" not given/);
  assert.throws(() => rec.dispatch(k, { read: { a, z: a }, write: { o }, grid: [1] }), /unknown binding\(s\) z/);
  ctx.release(a, o);
});

gpuTest("f16 and i32 tensors round-trip; the allocator counts every buffer", async (ctx) => {
  const before = ctx.memory.current;
  const h = ctx.upload([1, -2.5, 65504, 1e-8, 0.1], [5], "f16");
  const i = ctx.upload([1, -7, 2 ** 30], [3], "i32");
  assert.deepEqual([...await ctx.read(h)], [1, -2.5, 65504, 0, 0.0999755859375]); // exact f16 values
  assert.deepEqual([...await ctx.read(i)], [1, -7, 2 ** 30]);
  assert.equal(ctx.memory.current, before + 32);
  ctx.release(h, i);
  assert.equal(ctx.memory.current, before);
});

gpuTest("a tensor over the binding limit is refused with its shape", (ctx) => {
  const n = ctx.limits.maxStorageBufferBindingSize / 4 + 1;
  assert.throws(() => ctx.tensor([n], "f32", "huge"), /"huge" \[\d+\] f32 needs \d+ bytes, over this device's/);
});

Deno.test("each entry point binds only what it (and the functions it calls) uses", () => {
  const src = `struct Params { n: u32, }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
fn helper(i: u32) -> f32 { return a[i]; }
@compute @workgroup_size(1) fn first() { b[0] = helper(0u); }
@compute @workgroup_size(1) fn second() { c[p.n] = 1.0; }`;
  const k1 = defineKernel("two.wgsl", src, "first"), k2 = defineKernel("two.wgsl", src, "second");
  assert.deepEqual(k1.iface.storage.map((s) => s.name), ["a", "b"]);
  assert.equal(k1.iface.uniform, null);
  assert.deepEqual(k2.iface.storage.map((s) => s.name), ["c"]);
  assert.equal(k2.iface.uniform?.name, "p");
});

gpuTest("a recorder reuses recycled buffers for later allocations, in order", async (ctx) => {
  const { add } = await import("../src/ops/binary.ts");
  const { fill } = await import("../src/ops/fill.ts");
  const before = ctx.memory.current;
  const rec = ctx.recorder();
  const a = rec.alloc([1000]);
  fill(rec, a, { value: 1 });
  const b = add(rec, a, a); // 2
  rec.recycle(a);
  const c = add(rec, b, b); // 4, written into a's old buffer
  assert.equal(c.buffer, a.buffer);
  const d = add(rec, c, b); // 6
  await rec.submit();
  assert.ok((await ctx.readF32(d)).every((v) => v === 6));
  ctx.release(b, c, d);
  assert.equal(ctx.memory.current, before);
});
