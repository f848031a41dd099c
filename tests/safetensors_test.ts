import assert from "assert";
import {
  blobSource,
  type ByteSource,
  encodeSafetensors,
  httpRangeSource,
  memorySource,
  openSafetensors,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDtype,
  SafetensorsError,
  serializeSafetensors,
  type TensorToWrite,
  toFloat32,
  toInt32,
} from "../src/safetensors/mod.ts";
import { fileSource, openSafetensorsFile, writeSafetensorsFile } from "../src/io/safetensors_file.ts";
import { fromBF16, fromF16, toF16 } from "../src/gpu/tensor.ts";

const FIXTURES = new URL("../../shared/fixtures/", import.meta.url);
const fixture = (p: string) => new URL(p, FIXTURES).pathname;

/** A temp dir removed after `fn`, whatever happens. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-st-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function listDir(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

/** Wraps a source, counting the bytes and calls that go through it. */
function counting(src: ByteSource): ByteSource & { bytes: number; calls: number } {
  const c = {
    size: src.size,
    name: src.name,
    bytes: 0,
    calls: 0,
    read(offset: number, length: number) {
      c.bytes += length;
      c.calls++;
      return src.read(offset, length);
    },
  };
  return c;
}

// ---- round trips ----

/** One tensor of every dtype, with awkward shapes (odd sizes, a scalar, an empty one). */
function everyDtype(): Record<string, TensorToWrite & { values: ArrayLike<number | bigint> }> {
  const f16vals = [1, -2, 0.5, 65504, 2 ** -24, -0, 0.333251953125];
  const bf16vals = new Float32Array([1, -2, 0.5, 3.140625, -1e30, 2 ** -130]);
  const bf16 = new Uint16Array(new Uint32Array(bf16vals.buffer).map((u) => u >>> 16));
  const t = <T extends ArrayBufferView & ArrayLike<number | bigint>>(
    dtype: SafetensorsDtype,
    shape: number[],
    data: T,
  ) => ({
    dtype,
    shape,
    data,
    values: data,
  });
  return {
    "f32.odd": t("F32", [3, 5], Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 1e3)),
    "f16.vals": t("F16", [7], toF16(f16vals)),
    "bf16.vals": t("BF16", [2, 3], bf16),
    "f64.scalar": t("F64", [], new Float64Array([Math.PI])),
    "i64.ids": t("I64", [5], new BigInt64Array([0n, -1n, 2147483647n, -2147483648n, 49406n])),
    "i32.idx": t("I32", [1, 3], new Int32Array([-7, 0, 2 ** 31 - 1])),
    "i16": t("I16", [3], new Int16Array([-32768, 1, 32767])),
    "i8": t("I8", [3], new Int8Array([-128, 1, 127])),
    "u64": t("U64", [2], new BigUint64Array([0n, 2147483647n])),
    "u32": t("U32", [2], new Uint32Array([0, 2147483647])),
    "u16": t("U16", [3], new Uint16Array([0, 1, 65535])),
    "u8.odd": t("U8", [1, 5], new Uint8Array([0, 1, 2, 254, 255])),
    "bool.mask": t("BOOL", [3], new Uint8Array([1, 0, 1])),
    "f32.empty": t("F32", [0, 4], new Float32Array(0)),
    "f8.raw": t("F8_E4M3", [3], new Uint8Array([0x38, 0xb8, 0x7e])),
    "f8.e5m2": t("F8_E5M2", [1], new Uint8Array([0x3c])),
  };
}

Deno.test("safetensors round trip of every dtype: Deno file writer, then file, memory and Blob sources", async () => {
  const tensors = everyDtype();
  await inTempDir(async (dir) => {
    const path = `${dir}/every.safetensors`;
    await writeSafetensorsFile(path, tensors, { format: "pt", note: "ünïcödé ✓" });
    const bytes = await Deno.readFile(path);
    assert.deepEqual(bytes, encodeSafetensors(tensors, { format: "pt", note: "ünïcödé ✓" }), "file = encode");
    assert.deepEqual(await listDir(dir), ["every.safetensors"], "no partial file left");

    const file = await fileSource(path);
    const sources: ByteSource[] = [file, memorySource(bytes, path), blobSource(new Blob([bytes]), path)];
    for (const src of sources) {
      const st = await openSafetensors(src);
      assert.equal(st.name, path);
      assert.deepEqual(st.metadata, { format: "pt", note: "ünïcödé ✓" });
      assert.deepEqual([...st.names].sort(), Object.keys(tensors).sort());
      assert.equal(st.header.dataStart % 8, 0, "header padded to 8 bytes");
      for (const [name, want] of Object.entries(tensors)) {
        const info = st.info(name);
        assert.equal(info.byteOffset % SAFETENSORS_DTYPE_BYTES[want.dtype], 0, `${name} aligned`);
        const got = await st.read(name);
        assert.equal(got.name, name);
        assert.equal(got.dtype, want.dtype);
        assert.deepEqual(got.shape, want.shape);
        const d = want.data as ArrayBufferView;
        assert.deepEqual(got.data, new Uint8Array(d.buffer, d.byteOffset, d.byteLength), `${name} bytes`);
      }
    }
    file.close();
  });
});

Deno.test("safetensors layout groups tensors by element size, keeping insertion order within a size", () => {
  const f = (n: number) => new Float32Array(n), h = (n: number) => new Uint16Array(n);
  const chunks = serializeSafetensors({
    z: { dtype: "F16", shape: [3], data: h(3) },
    a: { dtype: "F32", shape: [1], data: f(1) },
    m: { dtype: "I64", shape: [1], data: new BigInt64Array(1) },
    b: { dtype: "U8", shape: [1], data: new Uint8Array(1) },
    y: { dtype: "F32", shape: [2], data: f(2) },
  });
  assert.deepEqual(chunks.tensors.map((t) => t.name), ["m", "a", "y", "z", "b"]);
  const json = new TextDecoder().decode(chunks.header.subarray(8));
  assert.match(json, /^\{"m":\{"dtype":"I64","shape":\[1\],"data_offsets":\[0,8\]\},"a":/);
  assert.match(json, /^\{[^ ]*\} {0,7}$/, "padded with at most 7 spaces");
  assert.equal(JSON.parse(json).__metadata__, undefined, "no empty __metadata__");
  assert.equal(chunks.header.byteLength % 8, 0);
});

Deno.test("toFloat32 and toInt32 convert every float and integer dtype exactly", async () => {
  const tensors = everyDtype();
  const st = await openSafetensors(memorySource(encodeSafetensors(tensors)), "conv.safetensors");
  for (const name of ["f32.odd", "f16.vals", "bf16.vals", "f64.scalar", "f32.empty"]) {
    const want = tensors[name];
    const expected = want.dtype === "F16"
      ? fromF16(want.values as Uint16Array)
      : want.dtype === "BF16"
      ? fromBF16(want.values as Uint16Array)
      : Float32Array.from(want.values as ArrayLike<number>);
    assert.deepEqual(await st.readF32(name), expected, name);
  }
  assert.deepEqual(await st.readF32("f16.vals"), new Float32Array([1, -2, 0.5, 65504, 2 ** -24, -0, 0.333251953125]));
  assert.deepEqual(
    await st.readF32("bf16.vals"),
    new Float32Array([1, -2, 0.5, 3.140625, -1e30, 2 ** -130]).map((x) => {
      const u = new Uint32Array(new Float32Array([x]).buffer);
      return new Float32Array(new Uint32Array([u[0] & 0xffff0000]).buffer)[0];
    }),
  );
  for (const name of ["i64.ids", "i32.idx", "i16", "i8", "u64", "u32", "u16", "u8.odd", "bool.mask"]) {
    const want = Int32Array.from(tensors[name].values as ArrayLike<number>, Number);
    assert.deepEqual(await st.readI32(name), want, name);
    assert.deepEqual(toInt32(await st.read(name)), want, name);
  }
  // Unaligned bytes (a view at an odd offset) are copied, not misread.
  const raw = new Uint8Array(9);
  raw.set(new Uint8Array(new Float32Array([1.5, -2]).buffer), 1);
  assert.deepEqual(toFloat32({ dtype: "F32", shape: [2], data: raw.subarray(1) }), new Float32Array([1.5, -2]));
});

Deno.test("conversions reject out-of-range values and wrong dtypes, naming the tensor (and the file)", async () => {
  const big = {
    name: "input/timesteps",
    dtype: "I64",
    shape: [3],
    data: new Uint8Array(new BigInt64Array([1n, 3000000000n, -1n]).buffer),
  } as const;
  assert.throws(() => toInt32(big), {
    name: "RangeError",
    message: 'toInt32: tensor "input/timesteps" (I64) holds 3000000000 at index 1, outside the int32 range',
  });
  const neg = { ...big, data: new Uint8Array(new BigInt64Array([-3000000000n]).buffer), shape: [1] };
  assert.throws(() => toInt32(neg), /holds -3000000000 at index 0/);
  const u = { name: "u", dtype: "U32", shape: [1], data: new Uint8Array(new Uint32Array([2 ** 31]).buffer) } as const;
  assert.throws(() => toInt32(u), /tensor "u" \(U32\) holds 2147483648 at index 0/);
  assert.throws(() => toFloat32(big), {
    name: "TypeError",
    message:
      'toFloat32: tensor "input/timesteps" has dtype I64; toFloat32 converts F32, F16, BF16 and F64 (use toInt32)',
  });
  assert.throws(
    () => toInt32({ dtype: "F16", shape: [1], data: new Uint8Array(2) }),
    /tensor has dtype F16; .* \(use toFloat32\)$/,
  );
  assert.throws(
    () => toFloat32({ dtype: "F8_E4M3", shape: [1], data: new Uint8Array(1) }),
    /dtype F8_E4M3; toFloat32 converts F32, F16, BF16 and F64$/,
  );
  assert.throws(
    () => toFloat32({ dtype: "F32", shape: [3], data: new Uint8Array(8) }),
    /has 8 bytes but dtype F32 × shape \[3\] needs 12/,
  );

  const st = await openSafetensors(memorySource(encodeSafetensors({ t: { ...big, data: big.data } })), "x.safetensors");
  await assert.rejects(st.readI32("t"), (e) => {
    assert.ok(e instanceof SafetensorsError);
    assert.equal(
      e.message,
      'Cannot read "x.safetensors": tensor "t" (I64) holds 3000000000 at index 1, outside the int32 range',
    );
    return true;
  });
  assert.throws(() => st.info("nope"), /Cannot read "x.safetensors": it has no tensor "nope" \(1 tensors\)/);
});

// ---- malformed files ----

/** Bytes of a file with this header (an object or raw JSON text) and data; `len` overrides the length field. */
function rawFile(header: unknown, data: Uint8Array | number = 0, len?: bigint): Uint8Array {
  const json = typeof header === "string"
    ? new TextEncoder().encode(header)
    : header instanceof Uint8Array
    ? header
    : new TextEncoder().encode(JSON.stringify(header));
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.byteLength + body.byteLength);
  new DataView(out.buffer).setBigUint64(0, len ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(body, 8 + json.byteLength);
  return out;
}

const f32 = (shape: number[], data_offsets: number[]) => ({ dtype: "F32", shape, data_offsets });
const valid = encodeSafetensors({
  a: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
  b: { dtype: "F32", shape: [3], data: new Float32Array([3, 4, 5]) },
});

const malformed: [string, Uint8Array, RegExp | string][] = [
  [
    "file shorter than 8 bytes",
    new Uint8Array(5),
    "the file is truncated: it has 5 bytes, fewer than the 8-byte header length",
  ],
  ["empty file", new Uint8Array(0), "the file is truncated: it has 0 bytes"],
  ["header length past the end", rawFile({}, 0, 1000n), "header length 1000 runs past the end of the file (10 bytes)"],
  [
    "absurd header length",
    rawFile({}, 0, 2n ** 60n),
    /header length 1152921504606846976 exceeds the 100000000-byte limit/,
  ],
  ["header not JSON", rawFile("{not json"), /the header is not valid JSON \(/],
  ["header not an object", rawFile("[1,2]"), "the header is not a JSON object (it is an array)"],
  ["header not UTF-8", rawFile(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), "the header is not valid UTF-8"],
  ["entry not an object", rawFile({ a: [1, 2] }), 'tensor "a" is not a JSON object'],
  ["entry missing dtype", rawFile({ a: { shape: [1], data_offsets: [0, 4] } }, 4), 'tensor "a" is missing "dtype"'],
  [
    "entry missing shape and offsets",
    rawFile({ a: { dtype: "F32" } }),
    'tensor "a" is missing "shape", "data_offsets"',
  ],
  [
    "unknown dtype",
    rawFile({ a: { dtype: "F128", shape: [1], data_offsets: [0, 16] } }, 16),
    /tensor "a" has unknown dtype "F128" \(known: F64, F32/,
  ],
  [
    "negative dimension",
    rawFile({ a: f32([-1], [0, 4]) }, 4),
    'tensor "a" has shape [-1]: expected a list of non-negative integers',
  ],
  [
    "decreasing offsets",
    rawFile({ a: f32([1], [8, 4]) }, 8),
    'tensor "a" has data_offsets [8,4]: expected two increasing non-negative integers',
  ],
  ["fractional offsets", rawFile({ a: f32([1], [0, 4.5]) }, 8), 'tensor "a" has data_offsets [0,4.5]'],
  ["one offset", rawFile({ a: f32([1], [4]) }, 4), 'tensor "a" has data_offsets [4]'],
  [
    "byte count not dtype × shape",
    rawFile({ "conv_in.weight": f32([320, 4, 3, 3], [0, 1152]) }, 1152),
    'tensor "conv_in.weight" has 1152 bytes but dtype F32 × shape [320,4,3,3] needs 46080',
  ],
  [
    "overlapping tensors",
    rawFile({ a: f32([2], [0, 8]), b: f32([2], [4, 12]) }, 12),
    'tensor "b" (data_offsets [4,12]) overlaps tensor "a", which ends at 8',
  ],
  [
    "gap between tensors",
    rawFile({ a: f32([2], [0, 8]), b: f32([2], [12, 20]) }, 20),
    'the data section has a gap: 4 unexplained bytes between tensor "a" (ends at 8) and tensor "b" (data_offsets [12,20])',
  ],
  [
    "gap at the start",
    rawFile({ a: f32([2], [4, 12]) }, 12),
    'the data section has a gap: 4 unexplained bytes before tensor "a" (data_offsets [4,12])',
  ],
  [
    "trailing bytes",
    rawFile({ a: f32([2], [0, 8]) }, 16),
    "the data section has 8 unexplained bytes after the last tensor (it ends at 8)",
  ],
  [
    "offsets past the end of the data",
    rawFile({ a: f32([1000], [0, 4000]) }, 16),
    /tensor "a" \(data_offsets \[0,4000\]\) runs past the end of the data section \(16 bytes\): the file is truncated/,
  ],
  [
    "truncated data section",
    valid.subarray(0, valid.byteLength - 3),
    /tensor "b" \(data_offsets \[8,20\]\) runs past the end of the data section \(17 bytes\)/,
  ],
  [
    "metadata not strings",
    rawFile({ __metadata__: { steps: 5 } }),
    '"__metadata__" must map strings to strings, but "steps" is 5',
  ],
];

for (const [what, bytes, want] of malformed) {
  Deno.test(`safetensors rejects a malformed file: ${what}`, async () => {
    await assert.rejects(openSafetensors(memorySource(bytes), "bad.safetensors"), (e) => {
      assert.ok(e instanceof SafetensorsError, `SafetensorsError, got ${e}`);
      assert.equal(e.file, "bad.safetensors");
      assert.ok(e.message.startsWith('Cannot read "bad.safetensors": '), e.message);
      if (typeof want === "string") assert.ok(e.problem.startsWith(want), `${e.problem}\n  should start with\n${want}`);
      else assert.match(e.problem, want);
      return true;
    });
  });
}

Deno.test("safetensors reads the message example of the brief verbatim", async () => {
  const bytes = rawFile({ "conv_in.weight": f32([320, 4, 3, 3], [0, 1152]) }, 1152);
  await assert.rejects(openSafetensors(memorySource(bytes), "unet.safetensors"), {
    message:
      'Cannot read "unet.safetensors": tensor "conv_in.weight" has 1152 bytes but dtype F32 × shape [320,4,3,3] needs 46080',
  });
});

Deno.test("the file source names a truncated file and openSafetensorsFile closes it on error", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/cut.safetensors`;
    await Deno.writeFile(path, valid.subarray(0, valid.byteLength - 3));
    await assert.rejects(openSafetensorsFile(path), { message: new RegExp(`^Cannot read "${path}": tensor "b"`) });
    // (the resource sanitizer fails this test if the handle leaked)
  });
});

// ---- writing ----

Deno.test("the writer rejects bad tensors before writing, naming the file and the tensor", async () => {
  const bad: [Record<string, TensorToWrite>, Record<string, string> | undefined, string][] = [
    [
      { a: { dtype: "F31" as SafetensorsDtype, shape: [1], data: new Float32Array(1) } },
      undefined,
      'tensor "a" has unknown dtype "F31"',
    ],
    [
      { a: { dtype: "F32", shape: [1.5], data: new Float32Array(1) } },
      undefined,
      'tensor "a" has shape [1.5]: expected',
    ],
    [
      { a: { dtype: "F32", shape: [2, 3], data: new Float32Array(5) } },
      undefined,
      'tensor "a" has 20 bytes but dtype F32 × shape [2,3] needs 24',
    ],
    [
      { a: { dtype: "F32", shape: [1], data: [1] as unknown as Float32Array } },
      undefined,
      'tensor "a" data is an array, not a typed array',
    ],
    [
      { __metadata__: { dtype: "F32", shape: [1], data: new Float32Array(1) } },
      undefined,
      '"__metadata__" is reserved',
    ],
    [{}, { steps: 5 as unknown as string }, 'metadata "steps" is 5, not a string'],
  ];
  for (const [tensors, metadata, want] of bad) {
    assert.throws(() => encodeSafetensors(tensors, metadata, { name: "out.safetensors" }), (e) => {
      assert.ok(e instanceof SafetensorsError);
      assert.ok(e.message.startsWith(`Cannot write "out.safetensors": ${want}`), e.message);
      return true;
    });
    await inTempDir(async (dir) => {
      await assert.rejects(writeSafetensorsFile(`${dir}/out.safetensors`, tensors, metadata), SafetensorsError);
      assert.deepEqual(await listDir(dir), [], "nothing written");
    });
  }
  assert.throws(
    () => encodeSafetensors({ a: { dtype: "F32", shape: [1], data: () => Promise.resolve(new Float32Array(1)) } }),
    /tensor "a" comes from an async function: iterate with for await/,
  );
});

Deno.test("the atomic writer leaves nothing behind when a tensor fails mid-way, and keeps the old file", async () => {
  await inTempDir(async (dir) => {
    const path = `${dir}/ckpt.safetensors`;
    const big = new Float32Array(3 << 20).fill(1); // 12 MiB: written through before the bad tensor comes up
    let sawPartial: string[] = [];
    const failing = (how: "length" | "throw"): Record<string, TensorToWrite> => ({
      a: { dtype: "F32", shape: [big.length], data: big },
      b: {
        dtype: "F32",
        shape: [4],
        data: async () => {
          sawPartial = await listDir(dir);
          if (how === "throw") throw new Error("GPU readback failed");
          return new Float32Array(3);
        },
      },
    });

    await assert.rejects(writeSafetensorsFile(path, failing("length")), {
      name: "SafetensorsError",
      message: `Cannot write "${path}": tensor "b" has 12 bytes but dtype F32 × shape [4] needs 16`,
    });
    assert.equal(sawPartial.length, 1);
    assert.match(sawPartial[0], /^ckpt\.safetensors\.partial-[0-9a-f]{8}$/);
    assert.ok((await Deno.stat(`${dir}/${sawPartial[0]}`).catch(() => null)) === null, "partial file removed");
    assert.deepEqual(await listDir(dir), []);

    await assert.rejects(writeSafetensorsFile(path, failing("throw")), /GPU readback failed/);
    assert.deepEqual(await listDir(dir), []);

    // A good write, then a failed overwrite: the good file survives untouched.
    await writeSafetensorsFile(path, {
      w: { dtype: "F32", shape: [2], data: () => Promise.resolve(new Float32Array([7, 8])) },
    });
    const before = await Deno.readFile(path);
    await assert.rejects(writeSafetensorsFile(path, failing("length")), SafetensorsError);
    assert.deepEqual(await listDir(dir), ["ckpt.safetensors"]);
    assert.deepEqual(await Deno.readFile(path), before);
    const st = await openSafetensorsFile(path);
    assert.deepEqual(await st.readF32("w"), new Float32Array([7, 8]));
    await st.close();
  });
});

// ---- fixtures written by the reference implementation ----

async function fixtureFiles(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, deep: boolean) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".safetensors")) out.push(`${dir}/${e.name}`);
      else if (e.isDirectory && deep) await walk(`${dir}/${e.name}`, true);
    }
  };
  await walk(fixture(".").replace(/\/$/, ""), false);
  await walk(fixture("sd-tiny-pipeline"), true);
  return out.sort();
}

Deno.test("every fixture opens and every tensor reads back with its declared size", async () => {
  const files = await fixtureFiles();
  assert.ok(files.length >= 9, `found ${files.length} fixture files`);
  for (const path of files) {
    await using st = await openSafetensorsFile(path);
    assert.ok(st.names.length > 0, path);
    let total = st.header.dataStart;
    for (const name of st.names) {
      const t = await st.read(name);
      assert.equal(t.data.byteLength, st.info(name).byteLength);
      total += t.data.byteLength;
      if (t.dtype === "F32") assert.equal(toFloat32(t).length, t.data.byteLength / 4);
      else toInt32(t); // the I64/I32 ids, timesteps and indices all fit in i32
    }
    assert.equal(total, st.size, `${path}: tensors tile the file`);
  }
});

Deno.test("fixtures have the known shapes, dtypes and values", async () => {
  const expect = async (file: string, name: string, dtype: SafetensorsDtype, shape: number[]) => {
    await using st = await openSafetensorsFile(fixture(file));
    assert.deepEqual({ dtype: st.info(name).dtype, shape: st.info(name).shape }, { dtype, shape }, `${file} ${name}`);
    return dtype === "F32" ? await st.readF32(name) : await st.readI32(name);
  };
  await expect("unet-sd1-tiny.safetensors", "input/sample", "F32", [2, 4, 16, 16]);
  await expect("unet-sd1-tiny.safetensors", "input/encoder_hidden_states", "F32", [2, 8, 32]);
  assert.deepEqual(
    await expect("unet-sd1-tiny.safetensors", "input/timesteps", "I64", [2]),
    new Int32Array([876, 358]),
  );
  assert.deepEqual(
    await expect("sd-tiny-pipeline/expected.safetensors", "input/timesteps", "I64", [5]),
    new Int32Array([801, 601, 401, 201, 1]),
  );
  const img = await expect("sd-tiny-pipeline/expected.safetensors", "output/image_uint8", "I32", [1, 3, 32, 32]);
  assert.ok(img.every((v) => v >= 0 && v <= 255));
  const ids = await expect("clip-tiny.safetensors", "input/input_ids", "I64", [4, 77]);
  assert.deepEqual([ids[0], ids[77], ids[154], ids[231]], [49406, 49406, 49406, 49406]);
  assert.deepEqual(
    await expect("clip-tiny.safetensors", "output/eot_index", "I64", [4]),
    new Int32Array([6, 11, 9, 7]),
  );
  const topk = await expect("sae-topk.safetensors", "output/topk_indices", "I32", [128, 8]);
  assert.ok(topk.every((i) => i >= 0 && i < 256));
  await expect("sd-tiny-pipeline/unet/diffusion_pytorch_model.safetensors", "conv_in.weight", "F32", [32, 4, 3, 3]);
  await expect(
    "sd-tiny-pipeline/text_encoder/model.safetensors",
    "text_model.embeddings.token_embedding.weight",
    "F32",
    [49408, 32],
  );

  await using st = await openSafetensorsFile(fixture("unet-sd1-tiny.safetensors"));
  assert.deepEqual(st.metadata, { loss: "sum(output/sample * input/loss_weights)" });
  assert.equal(st.names.filter((n) => n.startsWith("param/")).length, 684);
});

Deno.test("reading one tensor of a fixture reads only the header and that tensor", async () => {
  const path = fixture("unet-sd1-tiny.safetensors");
  const file = await fileSource(path);
  const src = counting(file);
  const st = await openSafetensors(src);
  const headerBytes = st.header.dataStart;
  assert.equal(src.bytes, headerBytes);
  const t = await st.read("input/timesteps");
  assert.equal(src.bytes, headerBytes + 16);
  assert.equal(src.calls, 3, "length, JSON, one tensor");
  assert.ok(src.bytes < st.size / 100, `${src.bytes} of ${st.size} bytes read`);
  assert.deepEqual(toInt32(t), new Int32Array([876, 358]));
  assert.ok(st.has("param/conv_in.weight") && !st.has("param/conv_in.weigh"));
  assert.throws(
    () => st.info("param/conv_in.weigh"),
    /it has no tensor "param\/conv_in.weigh" \(1647 tensors; similar: "param\/conv_in.bias", "param\/conv_in.weight"\)/,
  );
  // Same bytes as a whole-file read would give.
  const whole = await Deno.readFile(path);
  const info = st.info("output/sample");
  assert.deepEqual(
    (await st.read("output/sample")).data,
    whole.subarray(info.byteOffset, info.byteOffset + info.byteLength),
  );
  await st.close();
});

Deno.test("a Blob/File source names itself after the file", async () => {
  const bytes = await Deno.readFile(fixture("sae-topk.safetensors"));
  const st = await openSafetensors(blobSource(new File([bytes], "sae-topk.safetensors")));
  assert.equal(st.name, "sae-topk.safetensors");
  assert.deepEqual(st.info("input/x").shape, [128, 64]);
  await assert.rejects(
    openSafetensors(blobSource(new File([bytes.subarray(0, 100)], "cut.safetensors"))),
    /^SafetensorsError: Cannot read "cut.safetensors": header length 1456 runs past the end/,
  );
});

// ---- HTTP range requests ----

Deno.test("the fetch source reads tensors over HTTP range requests from a local server", async () => {
  const path = fixture("unet-sd1-tiny.safetensors");
  const bytes = await Deno.readFile(path);
  let requests = 0, served = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    requests++;
    const { pathname } = new URL(req.url);
    if (pathname === "/missing.safetensors") return new Response("not found", { status: 404 });
    const m = req.headers.get("range")?.match(/^bytes=(\d+)-(\d+)$/);
    if (pathname === "/no-ranges.safetensors" || !m) return new Response(bytes);
    const start = Number(m[1]), end = Math.min(Number(m[2]), bytes.byteLength - 1);
    if (start >= bytes.byteLength) {
      return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${bytes.byteLength}` } });
    }
    served += end - start + 1;
    return new Response(bytes.subarray(start, end + 1), {
      status: 206,
      headers: { "Content-Range": `bytes ${start}-${end}/${bytes.byteLength}` },
    });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    const url = `${base}/unet-sd1-tiny.safetensors`;
    const st = await openSafetensors(await httpRangeSource(url));
    assert.equal(st.name, url);
    assert.equal(st.size, bytes.byteLength);
    assert.equal(requests, 1, "the header came with the first request");
    const local = await openSafetensorsFile(path);
    for (const name of ["input/sample", "input/timesteps", "output/sample", "param/conv_in.weight"]) {
      assert.deepEqual(await st.read(name), await local.read(name), name);
    }
    assert.deepEqual(await st.readI32("input/timesteps"), new Int32Array([876, 358]));
    await local.close();
    assert.ok(served < bytes.byteLength / 10, `served ${served} of ${bytes.byteLength} bytes`);

    // A small prefetch: the header then needs a second request.
    requests = 0;
    const small = await openSafetensors(await httpRangeSource(url, { prefetchBytes: 64 }));
    assert.equal(requests, 2);
    assert.deepEqual(small.info("input/sample").shape, [2, 4, 16, 16]);

    await assert.rejects(httpRangeSource(`${base}/no-ranges.safetensors`), {
      message: `Cannot read "${base}/no-ranges.safetensors": the server ignored the Range header (status 200); ` +
        "reading tensors one at a time needs 206 Partial Content",
    });
    await assert.rejects(
      httpRangeSource(`${base}/missing.safetensors`),
      /Cannot read ".*missing.safetensors": HTTP 404/,
    );
  } finally {
    await server.shutdown();
  }
});
