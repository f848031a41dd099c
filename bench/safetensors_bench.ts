/**
 * Safetensors read and write throughput on a ~200 MB temp file shaped like SD U-Net weights (large F32 matrices plus
 * many small biases), and F16/BF16 → F32 conversion. The file was just written, so reads come from the page cache:
 * these numbers bound the reader's own overhead, not the disk.
 */
import { recordThroughput } from "./_bench.ts";
import { fileSource, openSafetensorsFile, writeSafetensorsFile } from "../src/io/safetensors_file.ts";
import { memorySource, openSafetensors, type TensorToWrite, toFloat32 } from "../src/safetensors/mod.ts";

const dir = await Deno.makeTempDir({ prefix: "diffscope-st-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

function weights(dtype: "F32" | "F16" | "BF16", big: number, small: number): Record<string, TensorToWrite> {
  const t: Record<string, TensorToWrite> = {};
  const elem = dtype === "F32" ? 4 : 2;
  for (let i = 0; i < big; i++) {
    const data = new Uint8Array(1280 * 2560 * elem);
    for (let j = 0; j < data.length; j += 4096) data[j] = (i + j) & 0x3f; // non-zero pages, finite values
    t[`down_blocks.${i}.ff.net.0.proj.weight`] = { dtype, shape: [2560, 1280], data };
  }
  for (let i = 0; i < small; i++) {
    t[`down_blocks.${i}.norm.bias`] = { dtype, shape: [1280], data: new Uint8Array(1280 * elem) };
  }
  return t;
}

const f32Path = `${dir}/unet-f32.safetensors`,
  f16Path = `${dir}/unet-f16.safetensors`,
  bf16Path = `${dir}/unet-bf16.safetensors`;
const f32Tensors = weights("F32", 15, 200);
let t0 = performance.now();
await writeSafetensorsFile(f32Path, f32Tensors);
const f32Size = (await Deno.stat(f32Path)).size;
recordThroughput(
  `write ${(f32Size / 1e6).toFixed(0)} MB (atomic: temp file, fsync, rename)`,
  { bytes: f32Size },
  (performance.now() - t0) / 1000,
);
await writeSafetensorsFile(f16Path, weights("F16", 8, 100));
await writeSafetensorsFile(bf16Path, weights("BF16", 8, 100));
const f16Size = (await Deno.stat(f16Path)).size, bf16Size = (await Deno.stat(bf16Path)).size;

/**
 * A bench timed here: the first call runs `fn` `reps` times and records the best for the GB/s table (which prints
 * every row once); `deno bench`'s own statistics cover all calls.
 */
function ioBench(name: string, bytes: number, fn: () => Promise<unknown>, reps = 5): void {
  let recorded = false;
  Deno.bench({
    name,
    n: 1,
    warmup: 0,
    async fn() {
      let best = Infinity;
      for (let i = 0; i < (recorded ? 1 : reps); i++) {
        t0 = performance.now();
        await fn();
        best = Math.min(best, (performance.now() - t0) / 1000);
      }
      if (!recorded) recordThroughput(name, { bytes }, best);
      recorded = true;
    },
  });
}

const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;

ioBench(`Deno.readFile whole ${mb(f32Size)} (baseline, one buffer)`, f32Size, () => Deno.readFile(f32Path));

ioBench(`read every tensor one at a time, file source (${mb(f32Size)})`, f32Size, async () => {
  await using st = await openSafetensorsFile(f32Path);
  for (const name of st.names) await st.read(name);
});

ioBench(`readF32 every tensor, file source (${mb(f32Size)})`, f32Size, async () => {
  await using st = await openSafetensorsFile(f32Path);
  for (const name of st.names) await st.readF32(name);
});

const inMemory = await Deno.readFile(f32Path);
ioBench(`read every tensor, memory source (${mb(f32Size)}, copies)`, f32Size, async () => {
  const st = await openSafetensors(memorySource(inMemory));
  for (const name of st.names) await st.read(name);
});

const headerBytes = await openSafetensorsFile(f32Path).then(async (st) => (await st.close(), st.header.dataStart));
ioBench(`open + validate the header only (215 tensors, ${headerBytes} bytes)`, headerBytes, async () => {
  const src = await fileSource(f32Path);
  await openSafetensors(src);
  src.close();
}, 20);

ioBench(`F16 → F32: read + toFloat32 every tensor (${mb(f16Size)} of F16)`, f16Size, async () => {
  await using st = await openSafetensorsFile(f16Path);
  for (const name of st.names) toFloat32(await st.read(name));
});

ioBench(`BF16 → F32: read + toFloat32 every tensor (${mb(bf16Size)} of BF16)`, bf16Size, async () => {
  await using st = await openSafetensorsFile(bf16Path);
  for (const name of st.names) toFloat32(await st.read(name));
});
