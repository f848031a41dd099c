/**
 * `cli.ts forward` end to end: a temporary diffusers folder built from the fixture's param/ tensors and JSON
 * config (F32, and F16/BF16 variants), run as a subprocess, its output compared with diffusers'.
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { openSafetensorsFile, writeSafetensorsFile } from "../src/io/safetensors_file.ts";
import { toF16 } from "../src/gpu/tensor.ts";
import { relL2 } from "../src/ref/compare.ts";
import type { TensorToWrite } from "../src/safetensors/writer.ts";
import { type CliResult, runCli } from "./_cli.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const FIXFILE = new URL("unet-sd1-tiny.safetensors", FIX).pathname;

function bf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(u, (b) => (b + 0x7fff + ((b >>> 16) & 1)) >>> 16);
}

async function makeFolder(variants: ("F32" | "F16" | "BF16")[], drop?: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-unet-" });
  await Deno.mkdir(`${dir}/unet`);
  const cfg = JSON.parse(await Deno.readTextFile(new URL("unet-sd1-tiny.json", FIX))).config;
  await Deno.writeTextFile(`${dir}/unet/config.json`, JSON.stringify({ ...cfg, _class_name: "UNet2DConditionModel" }));
  await using st = await openSafetensorsFile(FIXFILE);
  for (const v of variants) {
    const tensors: Record<string, TensorToWrite> = {};
    for (const n of st.names.filter((n) => n.startsWith("param/") && n !== `param/${drop}`)) {
      const shape = st.info(n).shape;
      tensors[n.slice(6)] = {
        dtype: v,
        shape,
        data: async () => {
          const f = await st.readF32(n);
          return v === "F32" ? f : v === "F16" ? toF16(f) : bf16(f);
        },
      };
    }
    const file = v === "F32"
      ? "diffusion_pytorch_model.safetensors"
      : `diffusion_pytorch_model.${v.toLowerCase()}.safetensors`;
    await writeSafetensorsFile(`${dir}/unet/${file}`, tensors);
  }
  return dir;
}

async function cli(...args: string[]): Promise<CliResult> {
  return await runCli(args);
}

gpuTest("cli forward: output and captures match diffusers; F16 and BF16 variants load", async () => {
  const dir = await makeFolder(["F32", "F16", "BF16"]);
  try {
    await using ref = await openSafetensorsFile(FIXFILE);
    const want = await ref.readF32("output/sample");
    const caps = [
      "mid_block.attentions.0",
      "down_blocks.1.resnets.0",
      "up_blocks.2.attentions.1.transformer_blocks.0.attn2",
    ];
    const r = await cli(
      "forward",
      "--model",
      dir,
      "--inputs",
      FIXFILE,
      "--out",
      `${dir}/out.safetensors`,
      "--quiet",
      ...caps.flatMap((c) => ["--capture", c]),
    );
    assert.equal(r.code, 0, r.stderr);
    await using out = await openSafetensorsFile(`${dir}/out.safetensors`);
    assert.ok(relL2(await out.readF32("sample"), want) < 1e-4);
    for (const c of caps) {
      assert.deepEqual(out.info(`act/${c}`).shape, ref.info(`act/${c}`).shape);
      assert.ok(relL2(await out.readF32(`act/${c}`), await ref.readF32(`act/${c}`)) < 1e-4, c);
    }
    for (const [variant, tol] of [["f16", 5e-3], ["bf16", 5e-2]] as const) {
      const rv = await cli(
        "forward",
        "--model",
        dir,
        "--variant",
        variant,
        "--inputs",
        FIXFILE,
        "--out",
        `${dir}/${variant}.safetensors`,
        "--quiet",
      );
      assert.equal(rv.code, 0, rv.stderr);
      await using o = await openSafetensorsFile(`${dir}/${variant}.safetensors`);
      const e = relL2(await o.readF32("sample"), want);
      assert.ok(e < tol && e > 0, `${variant} weights: error ${e}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("cli forward: a broken checkpoint fails naming the tensor, and writes nothing", async () => {
  const dir = await makeFolder(["F32"], "mid_block.resnets.1.conv2.weight");
  try {
    const r = await cli("forward", "--model", dir, "--inputs", FIXFILE, "--out", `${dir}/out.safetensors`, "--quiet");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /missing: +mid_block\.resnets\.1\.conv2\.weight \(expected \[64,64,3,3\]\)/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["unet"]);
    const bad = await cli("forward", "--model", dir, "--inputs", FIXFILE);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--out is required/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("cli forward --backward: gradients of sum(output · W) as grad/<param> and grad_input/<name>", async () => {
  const dir = await makeFolder(["F32"]);
  try {
    const out = `${dir}/grads.safetensors`;
    const r = await cli(
      "forward",
      "--model",
      dir,
      "--inputs",
      FIXFILE,
      "--out",
      out,
      "--quiet",
      "--backward",
      "loss_weights",
      "--grads",
      "*.ff.net.*.weight,conv_in.*",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /36 gradient\(s\)/);
    await using ref = await openSafetensorsFile(FIXFILE);
    await using got = await openSafetensorsFile(out);
    const names = got.names.filter((n) => n.startsWith("grad"));
    assert.equal(names.length, 32 + 2 + 2);
    for (const n of names) assert.ok(relL2(await got.readF32(n), await ref.readF32(n)) < 1e-3, n);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
