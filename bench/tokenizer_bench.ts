/**
 * CLIP tokenizer on the CPU: loading the real 49408-token vocabulary (1 MB `vocab.json` + 0.5 MB `merges.txt`), and
 * prompts per second. Each tokenize bench handles one prompt per iteration, so `iter/s` reads as prompts/s.
 * No GPU context: run with `deno bench -A bench/tokenizer_bench.ts`.
 */
import { localModelFiles } from "../src/io/model_dir.ts";
import { loadTokenizer, parseTokenizer } from "../src/text/tokenizer.ts";

const FIXTURES = new URL("../../shared/fixtures/", import.meta.url);
const texts = {
  vocab: Deno.readTextFileSync(new URL("clip-tokenizer/vocab.json", FIXTURES)),
  merges: Deno.readTextFileSync(new URL("clip-tokenizer/merges.txt", FIXTURES)),
};
const cases: { text: string }[] = JSON.parse(
  Deno.readTextFileSync(new URL("clip-tokenizer/cases.json", FIXTURES)),
).cases;

// Typical SD prompts: the fixture's 18, and long comma-separated "tag" prompts that get truncated to 75 tokens.
const prompts = cases.map((c) => c.text);
const tags = ["masterpiece", "best quality", "ultra-detailed", "8k", "cinematic lighting", "octane render", "bokeh"];
const longPrompts = Array.from(
  { length: 16 },
  (_, i) =>
    `portrait of a knight ${i}, ` + Array.from({ length: 24 }, (_, j) => tags[(i + j) % tags.length]).join(", "),
);

Deno.bench("load: parse vocab.json + merges.txt (text in memory)", { group: "load", baseline: true }, () => {
  parseTokenizer(texts);
});

const folder = localModelFiles(new URL("sd-tiny-pipeline", FIXTURES).pathname);
Deno.bench("load: read + parse a diffusers tokenizer/ folder", { group: "load" }, async () => {
  await loadTokenizer(folder);
});

const warm = parseTokenizer(texts), cold = parseTokenizer(texts, { cacheSize: 0 });
let i = 0, j = 0, k = 0;
Deno.bench("tokenize 1 fixture prompt to [1, 77], word cache warm", { group: "prompt", baseline: true }, () => {
  warm.tokenize(prompts[i++ % prompts.length]);
});
Deno.bench("tokenize 1 fixture prompt to [1, 77], no word cache", { group: "prompt" }, () => {
  cold.tokenize(prompts[j++ % prompts.length]);
});
Deno.bench("tokenize 1 long tag prompt (truncated to 77), no word cache", { group: "prompt" }, () => {
  cold.tokenize(longPrompts[k++ % longPrompts.length]);
});
