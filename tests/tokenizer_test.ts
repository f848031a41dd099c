import assert from "assert";
import type { ModelFiles } from "../src/models/files.ts";
import { localModelFiles } from "../src/io/model_dir.ts";
import { cleanText, type ClipTokenizer, loadTokenizer, parseTokenizer } from "../src/text/tokenizer.ts";

const FIXTURES = new URL("../../shared/fixtures/", import.meta.url);
const TOK_DIR = new URL("clip-tokenizer/", FIXTURES);
const VOCAB = Deno.readTextFileSync(new URL("vocab.json", TOK_DIR));
const MERGES = Deno.readTextFileSync(new URL("merges.txt", TOK_DIR));
const CASES: { bos: number; eos: number; cases: { text: string; ids: number[]; input_ids_77: number[] }[] } = JSON
  .parse(Deno.readTextFileSync(new URL("cases.json", TOK_DIR)));
const BOS = 49406, EOS = 49407;

/** A tokenizer folder held in memory, as `ModelFiles`. */
function memoryFiles(name: string, texts: Record<string, string>): ModelFiles {
  return {
    name,
    exists: (path) => Promise.resolve(path in texts),
    readText: (path) => path in texts ? Promise.resolve(texts[path]) : Promise.reject(new Error(`no ${path}`)),
    open: () => Promise.reject(new Error("not used by the tokenizer")),
  };
}

function tokenizerWith(config?: Record<string, unknown>, cacheSize?: number): ClipTokenizer {
  const config_ = config === undefined ? undefined : JSON.stringify(config);
  return parseTokenizer({ vocab: VOCAB, merges: MERGES, config: config_ }, { name: "fixture", cacheSize });
}

const tok = tokenizerWith();

Deno.test("tokenizer reads the fixture vocabulary: 49408 ids, 48894 merges, bos/eos from the vocab", () => {
  assert.equal(tok.vocabSize, 49408);
  assert.equal(tok.mergeCount, 48894);
  assert.equal(tok.bosId, CASES.bos);
  assert.equal(tok.eosId, CASES.eos);
  assert.equal(tok.padId, EOS);
  assert.equal(tok.modelMaxLength, 77);
});

Deno.test("encode matches openai/CLIP's ids on all 18 fixture prompts", () => {
  assert.equal(CASES.cases.length, 18);
  for (const c of CASES.cases) assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
});

Deno.test("tokenize gives SD v1's 77-long input_ids for every fixture prompt, one at a time and batched", () => {
  for (const c of CASES.cases) {
    const t = tok.tokenize(c.text);
    assert.deepEqual(t.shape, [1, 77]);
    assert.deepEqual([...t.inputIds], c.input_ids_77, JSON.stringify(c.text));
    assert.deepEqual(t.lengths, [c.ids.length + 2]);
    assert.deepEqual(t.eosIndex, [c.ids.length + 1]);
    assert.deepEqual(t.firstEosIndex, [c.input_ids_77.indexOf(EOS)]);
    assert.deepEqual(t.truncated, [0]);
    assert.deepEqual([...t.attentionMask], c.input_ids_77.map((_, j) => (j < c.ids.length + 2 ? 1 : 0)));
  }
  const batch = tok.tokenize(CASES.cases.map((c) => c.text));
  assert.deepEqual(batch.shape, [18, 77]);
  assert.deepEqual([...batch.inputIds], CASES.cases.flatMap((c) => c.input_ids_77));
});

Deno.test("a prompt longer than 75 tokens keeps bos + its first 75 ids + eos; truncate: false throws", () => {
  const long = Array(20).fill("a photo of a dog").join(" "); // 100 ids
  const ids = tok.encode(long);
  assert.equal(ids.length, 100);
  const t = tok.tokenize(["a dog", long]);
  assert.deepEqual([...t.inputIds.subarray(77)], [BOS, ...ids.slice(0, 75), EOS]);
  assert.deepEqual(t.lengths, [4, 77]);
  assert.deepEqual(t.eosIndex, [3, 76]);
  assert.deepEqual(t.firstEosIndex, [3, 76]);
  assert.deepEqual(t.truncated, [0, 25]);
  assert.equal(t.attentionMask.subarray(77).reduce((a, b) => a + b, 0), 77);
  // Exactly 75 ids fit without truncation.
  assert.deepEqual(tok.tokenize(ids.slice(0, 75).map(() => "a").join(" "), { truncate: false }).truncated, [0]);
  assert.throws(
    () => tok.tokenize(["a dog", long], { truncate: false }),
    (e: Error) =>
      e instanceof RangeError &&
      e.message ===
        "tokenize: prompt 1 has 100 tokens, more than the 75 that fit between bos and eos (maxLength 77); " +
          "pass truncate: true to cut it",
  );
});

Deno.test('model_max_length 10 and pad_token "!" (SD 2.x) set the row length and the padding id', async () => {
  const files = memoryFiles("sd2-like", {
    "tokenizer/vocab.json": VOCAB,
    "tokenizer/merges.txt": MERGES,
    "tokenizer/tokenizer_config.json": JSON.stringify({ model_max_length: 10, pad_token: "!" }),
  });
  const t10 = await loadTokenizer(files);
  assert.equal(t10.modelMaxLength, 10);
  assert.equal(t10.padId, 0);
  const t = t10.tokenize(["a photo of a dog", "an astronaut riding a horse on mars, 4k"]);
  assert.deepEqual(t.shape, [2, 10]);
  assert.deepEqual([...t.inputIds.subarray(0, 10)], [BOS, 320, 1125, 539, 320, 1929, EOS, 0, 0, 0]);
  assert.deepEqual([...t.inputIds.subarray(10)], [BOS, 550, 18376, 6765, 320, 4558, 525, 7496, 267, EOS]);
  assert.deepEqual(t.firstEosIndex, [6, 9]);
  assert.deepEqual(t.truncated, [0, 2]);
  assert.deepEqual([...t.attentionMask.subarray(0, 10)], [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
  // An explicit maxLength wins over the config; tokens may be given as HF AddedToken objects.
  const obj = tokenizerWith({ model_max_length: 10, pad_token: { content: "!", __type: "AddedToken" } });
  assert.equal(obj.padId, 0);
  assert.deepEqual(obj.tokenize("a dog", { maxLength: 5 }).inputIds, new Int32Array([BOS, 320, 1929, EOS, 0]));
  // HF writes a huge model_max_length when a model sets none: CLIP's 77 then applies.
  assert.equal(tokenizerWith({ model_max_length: 1e30 }).modelMaxLength, 77);
  assert.throws(() => tok.tokenize("a", { maxLength: 1 }), /maxLength must be an integer ≥ 2.*got 1/);
});

Deno.test("loadTokenizer reads a diffusers folder and names a missing or broken file", async () => {
  const local = await loadTokenizer(localModelFiles(new URL("sd-tiny-pipeline", FIXTURES).pathname));
  assert.deepEqual(local.encode("a photo of a dog"), [320, 1125, 539, 320, 1929]);

  const noMerges = memoryFiles("/models/sd14", { "tokenizer/vocab.json": VOCAB });
  await assert.rejects(loadTokenizer(noMerges), {
    message: 'Cannot load tokenizer from "/models/sd14": missing "tokenizer/merges.txt"',
  });
  const noVocab = memoryFiles("/models/sd14", { "tokenizer_2/merges.txt": MERGES });
  await assert.rejects(loadTokenizer(noVocab, { subfolder: "tokenizer_2" }), {
    message: 'Cannot load tokenizer from "/models/sd14": missing "tokenizer_2/vocab.json"',
  });
  const badJson = memoryFiles("m", { "tokenizer/vocab.json": "{", "tokenizer/merges.txt": MERGES });
  await assert.rejects(
    loadTokenizer(badJson),
    /^Error: Cannot load tokenizer from "m": "tokenizer\/vocab.json" is not valid JSON/,
  );
  const badConfig = memoryFiles("m", {
    "tokenizer/vocab.json": VOCAB,
    "tokenizer/merges.txt": MERGES,
    "tokenizer/tokenizer_config.json": "[]",
  });
  await assert.rejects(loadTokenizer(badConfig), {
    message: 'Cannot load tokenizer from "m": "tokenizer/tokenizer_config.json" is not a JSON object',
  });
  assert.throws(() => tokenizerWith({ pad_token: "<pad>" }), {
    message: 'Cannot load tokenizer from "fixture": pad_token "<pad>" is not in the vocab',
  });
  assert.throws(() => parseTokenizer({ vocab: '{"a": 0}', merges: "#version: 0.2\na b" }), {
    message: 'Cannot load tokenizer from "tokenizer": bos_token "<|startoftext|>" is not in the vocab',
  });
  assert.throws(() => parseTokenizer({ vocab: VOCAB, merges: "#version: 0.2\ni n\nt  h" }), {
    message: 'Cannot load tokenizer from "tokenizer": merge rule 1 is "t  h", not "first second"',
  });
  assert.throws(() => parseTokenizer({ vocab: '{"a": -1}', merges: "" }), {
    message: 'Cannot load tokenizer from "tokenizer": vocab maps "a" to -1, not an id',
  });
});

Deno.test("the word cache does not change results (no cache, a tiny evicting cache, the default)", () => {
  const texts = [
    ...CASES.cases.map((c) => c.text),
    "the the the dog dog DOG Dog", // the same words again, differently cased
    Array.from({ length: 40 }, (_, i) => `word${i} photo${i % 7}`).join(" "), // more words than the tiny cache holds
  ];
  const none = tokenizerWith(undefined, 0), tiny = tokenizerWith(undefined, 3);
  for (let pass = 0; pass < 2; pass++) {
    for (const text of texts) {
      const want = none.encode(text);
      assert.deepEqual(tok.encode(text), want, text);
      assert.deepEqual(tiny.encode(text), want, text);
    }
  }
  assert.deepEqual(tok.tokenize(texts).inputIds, none.tokenize(texts).inputIds);
});

Deno.test("cleanText: HTML references unescaped twice, Unicode whitespace collapsed, Python's strip, lower-case", () => {
  assert.equal(cleanText("  A&amp;B &lt;i&gt; &quot;Q&quot; it&#39;s &apos;x&apos; "), "a&b <i> \"q\" it's 'x'");
  assert.equal(cleanText("&amp;lt;b&amp;gt;"), "<b>"); // unescaped twice, as basic_clean does
  assert.equal(cleanText("&amp;amp;amp;"), "&amp;"); // but not three times
  assert.equal(cleanText("caf&#233; &#xE9;&#XE9 &eacute;&eacute x&nbsp;y"), "café éé éé x y");
  assert.equal(
    cleanText("&ampx &copy2023 &hellip;&mdash;&euro; &#128; &#0; &#x1F600; &unknown;"),
    "&x ©2023 …—€ € \uFFFD 😀 &unknown;",
  );
  assert.equal(cleanText("a \t\n b\u3000\u2003c\x85d"), "a b c d");
  // U+FEFF is not whitespace to Python; U+001C is, but only str.strip() removes it (at the ends).
  assert.equal(cleanText("\x1c a\x1cb\ufeffc \x1c"), "a\x1cb\ufeffc");
  assert.equal(cleanText("ΣΊΣΥΦΟΣ İ"), "σίσυφος i̇"); // final sigma and İ lower-case as in Python
});

Deno.test("special tokens written in a prompt map to their ids; firstEosIndex finds the first eos", () => {
  assert.deepEqual(tok.encode("a <|startoftext|> b <|ENDOFTEXT|>"), [320, BOS, 321, EOS]);
  const t = tok.tokenize("a dog <|endoftext|> and a cat");
  assert.deepEqual(t.firstEosIndex, [3]);
  assert.deepEqual(t.eosIndex, [7]);
});

Deno.test("decode inverts encode up to cleaning (one space per word end)", () => {
  assert.equal(tok.decode(tok.encode("A photo of a DOG")), "a photo of a dog ");
  assert.equal(tok.decode(tok.encode("café au lait, 3.5 😀")), "café au lait , 3 . 5 😀 ");
  assert.equal(tok.decode([BOS, 1929, EOS]), "<|startoftext|>dog <|endoftext|>");
  assert.equal(tok.idToToken(1929), "dog</w>");
  assert.throws(() => tok.decode([1, 49408]), {
    name: "RangeError",
    message: "decode: id 49408 at 1 is outside the vocabulary",
  });
});
