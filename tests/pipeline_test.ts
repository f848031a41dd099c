/**
 * Text-to-image end to end on the tiny SD pipeline fixture (diffusers' StableDiffusionPipeline loop, DDIM 5 steps,
 * guidance 7.5, from given latents): every step's latents and the final pixels; repo-id resolution from a fake
 * Hugging Face cache without network; folder validation errors; a pixel-space model.
 */
import assert from "assert";
import { decode } from "fast-png";
import { gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { localModelFiles } from "../src/io/model_dir.ts";
import { loadPipeline } from "../src/pipeline/stable_diffusion.ts";
import { relL2 } from "../src/ref/compare.ts";
import { runCli } from "./_cli.ts";

const PIPE = new URL("../../shared/fixtures/sd-tiny-pipeline/", import.meta.url).pathname;
const COMMIT = "89abcdef0123456789abcdef0123456789abcdef";

async function checkAgainstExpected(dir: string) {
  await using want = await openSafetensorsFile(`${PIPE}expected.safetensors`);
  await using steps = await openSafetensorsFile(`${dir}/steps.safetensors`);
  for (let i = 0; i < 5; i++) {
    const e = relL2(await steps.readF32(`step/${i}/latents`), await want.readF32(`step/${i}/latents`));
    assert.ok(e < 1e-4, `step ${i} latents: relative L2 ${e}`);
  }
  assert.deepEqual([...await steps.readF32("timesteps")], [801, 601, 401, 201, 1]);
  const png = decode(await Deno.readFile(`${dir}/dog.png`));
  assert.equal(png.width, 32);
  assert.equal(png.height, 32);
  const ref = await want.readI32("output/image_uint8"); // [1, 3, 32, 32]
  let worst = 0;
  for (let c = 0; c < 3; c++) {
    for (let q = 0; q < 32 * 32; q++) worst = Math.max(worst, Math.abs(png.data[q * 4 + c] - ref[c * 1024 + q]));
  }
  assert.ok(worst <= 1, `pixels differ by up to ${worst}`);
}

const ARGS = (dir: string, model: string) => [
  "generate",
  "--model",
  model,
  "--prompt",
  "a photo of a dog",
  "--steps",
  "5",
  "--guidance",
  "7.5",
  "--scheduler",
  "ddim",
  "--latents",
  `${PIPE}expected.safetensors:input/latents`,
  "--save-steps",
  `${dir}/steps.safetensors`,
  "--out",
  `${dir}/dog.png`,
  "--quiet",
];

gpuTest("generate reproduces diffusers: every step's latents (1e-4) and the image's pixels (±1)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await runCli(ARGS(dir, PIPE));
    assert.equal(r.code, 0, r.stderr);
    await checkAgainstExpected(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("generate by repo id from a local Hugging Face cache, offline", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const repo = `${dir}/hf/hub/models--test-org--sd-tiny`;
    for (const sub of ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]) {
      await Deno.mkdir(`${repo}/snapshots/${COMMIT}/${sub}`, { recursive: true });
      for (const e of Deno.readDirSync(`${PIPE}${sub}`)) {
        await Deno.symlink(`${PIPE}${sub}/${e.name}`, `${repo}/snapshots/${COMMIT}/${sub}/${e.name}`);
      }
    }
    await Deno.symlink(`${PIPE}model_index.json`, `${repo}/snapshots/${COMMIT}/model_index.json`);
    await Deno.mkdir(`${repo}/refs`);
    await Deno.writeTextFile(`${repo}/refs/main`, COMMIT);
    const r = await runCli(ARGS(dir, "test-org/sd-tiny"), {
      HF_HOME: `${dir}/hf`,
      HF_HUB_OFFLINE: "1",
      HF_ENDPOINT: "http://127.0.0.1:9",
    });
    assert.equal(r.code, 0, r.stderr);
    await checkAgainstExpected(dir);
    const missing = await runCli(ARGS(dir, "CompVis/stable-diffusion-v1-4"), {
      HF_HOME: `${dir}/hf`,
      HF_HUB_OFFLINE: "1",
    });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not in the Hugging Face cache/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A copy of the fixture folder (symlinked files) with some changes. */
async function variantFolder(edit: (dir: string) => Promise<void>): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const sub of ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]) {
    await Deno.mkdir(`${dir}/${sub}`);
    for (const e of Deno.readDirSync(`${PIPE}${sub}`)) {
      await Deno.symlink(`${PIPE}${sub}/${e.name}`, `${dir}/${sub}/${e.name}`);
    }
  }
  await Deno.copyFile(`${PIPE}model_index.json`, `${dir}/model_index.json`);
  await edit(dir);
  return dir;
}

gpuTest("pipeline folders are validated with clear errors", async (ctx) => {
  const cases: [string, (d: string) => Promise<void>, RegExp][] = [
    [
      "no tokenizer files",
      (d) => Deno.remove(`${d}/tokenizer`, { recursive: true }),
      /missing "tokenizer\/vocab\.json"/,
    ],
    ["no unet in model_index", async (d) => {
      const idx = JSON.parse(await Deno.readTextFile(`${d}/model_index.json`));
      delete idx.unet;
      await Deno.writeTextFile(`${d}/model_index.json`, JSON.stringify(idx));
    }, /model_index\.json lists no "unet" component/],
    ["cross-attention width", async (d) => {
      const cfg = JSON.parse(await Deno.readTextFile(`${PIPE}text_encoder/config.json`));
      await Deno.remove(`${d}/text_encoder/config.json`);
      await Deno.writeTextFile(
        `${d}/text_encoder/config.json`,
        JSON.stringify({ ...cfg, hidden_size: 48, intermediate_size: 192 }),
      );
    }, /cross_attention_dim is 32 but text_encoder\/config\.json hidden_size is 48/],
  ];
  for (const [what, edit, re] of cases) {
    const dir = await variantFolder(edit);
    try {
      await assert.rejects(() => loadPipeline(ctx, localModelFiles(dir)), re, what);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

gpuTest(
  "a folder without a VAE (`vae: [null, null]`) is a pixel-space model: the latents are the image",
  async (ctx) => {
    const dir = await variantFolder(async (d) => {
      const idx = JSON.parse(await Deno.readTextFile(`${d}/model_index.json`));
      idx.vae = [null, null];
      await Deno.writeTextFile(`${d}/model_index.json`, JSON.stringify(idx));
    });
    try {
      const pipe = await loadPipeline(ctx, localModelFiles(dir), { scheduler: "ddim" });
      assert.equal(pipe.vae, null);
      const r = await pipe.generate({ prompt: "a dog", steps: 2, guidance: 3, seed: 1, height: 16, width: 16 });
      assert.deepEqual(r.image.shape, [1, 4, 16, 16]);
      assert.equal(r.image, r.latents);
      assert.equal(r.pixels, undefined); // 4 channels are not RGB
      pipe.release();
      ctx.release(r.latents);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
