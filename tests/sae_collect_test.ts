/**
 * `sae collect` on the tiny pipeline: rows per prompt × step × position with their index, a manifest that matches
 * the shards, and a run killed midway (SIGKILL after the first committed prompt) that a rerun finishes with no row
 * duplicated or missing.
 */
import assert from "assert";
import { gpuTest } from "./_gpu.ts";
import { readManifest, readStore, storeImagePath } from "../src/io/activation_store.ts";
import { readPng } from "../src/io/png.ts";
import { spawnCli } from "./_cli.ts";

const PIPE = new URL("../../shared/fixtures/sd-tiny-pipeline/", import.meta.url).pathname;
const PROMPTS = ["a photo of a dog", "a red car", "a painting of a house", "a cat on a sofa"];

function collect(dir: string): Deno.ChildProcess {
  return spawnCli([
    ...["sae", "collect", "--model", PIPE, "--prompts", `${dir}/prompts.txt`, "--out", `${dir}/store`],
    ...["--at-steps", "0,2", "--steps", "3", "--half", "cond", "--quiet"],
  ], "piped");
}

gpuTest("sae collect: rows and manifest; killed midway and rerun, no row duplicated or missing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "diffscope-collect-" });
  try {
    await Deno.writeTextFile(`${dir}/prompts.txt`, PROMPTS.join("\n") + "\n");
    // first run: kill it as soon as one prompt is committed
    const first = collect(dir);
    for (let t = 0; t < 600; t++) {
      const m = await readManifest(`${dir}/store`).catch(() => null);
      if (m && m.promptsDone >= 1) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    first.kill("SIGKILL");
    await first.output();
    const partial = (await readManifest(`${dir}/store`))!;
    assert.ok(partial.promptsDone >= 1 && partial.promptsDone < PROMPTS.length, `killed after ${partial.promptsDone}`);
    // second run resumes
    const second = await collect(dir).output();
    assert.equal(second.code, 0, new TextDecoder().decode(second.stderr));
    const { m, activations, index } = await readStore(`${dir}/store`);
    // mid_block of the tiny U-Net: 64 channels at 2×2 → 4 positions; 2 kept steps; cond half only
    assert.equal(m.d, 64);
    assert.equal(m.promptsDone, PROMPTS.length);
    assert.equal(m.rows, PROMPTS.length * 2 * 4);
    assert.equal(activations.length, m.rows * 64);
    const seen = new Set<string>();
    for (let r = 0; r < m.rows; r++) {
      const key = [...index.subarray(4 * r, 4 * r + 4)].join(",");
      assert.ok(!seen.has(key), `row ${key} twice`);
      seen.add(key);
      assert.equal(index[4 * r + 2], 1); // cond
    }
    for (let p = 0; p < PROMPTS.length; p++) {
      for (const s of [0, 2]) {
        for (let q = 0; q < 4; q++) assert.ok(seen.has(`${p},${s},1,${q}`), `missing ${p},${s},${q}`);
      }
    }
    assert.ok(activations.some((v) => v !== 0) && activations.every(Number.isFinite));
    // the finished store is compacted: the per-prompt shards merged into one block, and removed
    assert.deepEqual(m.shards.map((s) => [s.file, s.rows, s.prompts]), [["block-1-00000.safetensors", m.rows, [0, 4]]]);
    const files = [];
    for await (const e of Deno.readDir(`${dir}/store`)) if (e.name.endsWith(".safetensors")) files.push(e.name);
    assert.deepEqual(files, ["block-1-00000.safetensors"]);
    // the grid and every prompt's image, for the feature browser
    assert.deepEqual(m.grid, [2, 2]);
    assert.equal(m.images, true);
    for (let p = 0; p < PROMPTS.length; p++) {
      const img = await readPng(storeImagePath(`${dir}/store`, p));
      assert.ok(img.width > 0 && img.width === img.height, `image ${p}: ${img.width}×${img.height}`);
    }
    // no partial files left behind
    for (const sub of ["", "/images"]) {
      for await (const e of Deno.readDir(`${dir}/store${sub}`)) assert.doesNotMatch(e.name, /partial/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
