/**
 * CLIP's byte-level BPE tokenizer, as Stable Diffusion feeds its text encoder: openai/CLIP's `simple_tokenizer.py`
 * (what HF `CLIPTokenizer` reproduces), read from a diffusers folder's `tokenizer/vocab.json` + `merges.txt`.
 *
 * A prompt is cleaned (HTML references unescaped twice, whitespace runs collapsed to one space, trimmed,
 * lower-cased; ftfy's mojibake repair is not applied), split by CLIP's pattern into words, and each word's UTF-8
 * bytes go through BPE with the merges ranked by their line in `merges.txt`. `tokenize` frames the ids as SD does:
 * `<|startoftext|>`, at most `maxLength − 2` ids, `<|endoftext|>`, then padding to `maxLength` (77).
 *
 * ```ts ignore
 * import { localModelFiles } from "../io/model_dir.ts";
 * const tok = await loadTokenizer(localModelFiles("stable-diffusion-v1-4"));
 * tok.encode("a photo of a dog"); // [320, 1125, 539, 320, 1929]
 * const { inputIds, shape, firstEosIndex } = tok.tokenize(["a photo of a dog", ""]); // shape [2, 77]
 * ```
 * @module
 */
import type { ModelFiles } from "../models/files.ts";
import { unescapeHtml } from "./_html.ts";

/** CLIP's text context: `<|startoftext|>` + 75 tokens + `<|endoftext|>`. */
export const CLIP_MAX_LENGTH = 77;

// openai/CLIP and HF read merges[1 : 49152-256-2+1]: 256 byte tokens, their 256 `</w>` forms, the merges and two
// special tokens fill exactly 49408 ids.
const MAX_MERGES = 49152 - 256 - 2;

// Unicode White_Space: `\s` of the `regex` module that openai/CLIP imports as `re` (JS `\s` would add U+FEFF).
const WS = String.raw`\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000`;
const WHITESPACE_RUN = new RegExp(`[${WS}]+`, "g");
// What Python's str.strip() removes: str.isspace(), i.e. White_Space and U+001C–U+001F.
const PY_SPACE = new RegExp(`[${WS}\\x1c-\\x1f]`);

// CLIP's pattern (case-insensitive, as simple_tokenizer compiles it).
const WORD = new RegExp(
  String.raw`<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^${WS}\p{L}\p{N}]+`,
  "giu",
);

// Printable ASCII bytes stand for themselves in bytes_to_unicode, so such a word needs no UTF-8 pass.
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

const END_OF_WORD = "</w>";
const UTF8 = new TextEncoder();

/**
 * openai/CLIP's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other 68 to U+0100 onwards, so
 * every byte string is a string of visible characters (and never contains a space).
 */
function byteAlphabet(): string[] {
  const visible = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const chars: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) chars.push(String.fromCharCode(visible(b) ? b : 256 + n++));
  return chars;
}
const BYTE_TO_CHAR = byteAlphabet();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/**
 * CLIP's text cleaning without ftfy: `whitespace_clean(basic_clean(text)).lower()`, i.e. HTML references unescaped
 * twice (Python `html.unescape`), runs of Unicode whitespace made one space, the ends stripped as Python's
 * `str.strip()` does (which also drops U+001C–U+001F there), then lower-cased.
 */
export function cleanText(text: string): string {
  const collapsed = unescapeHtml(unescapeHtml(text)).replace(WHITESPACE_RUN, " ");
  let start = 0, end = collapsed.length;
  while (start < end && PY_SPACE.test(collapsed[start])) start++;
  while (end > start && PY_SPACE.test(collapsed[end - 1])) end--;
  return collapsed.slice(start, end).toLowerCase();
}

/** The fields of `tokenizer_config.json` the tokenizer uses (HF names; tokens as strings or `{ content }`). */
export interface TokenizerConfig {
  /** Row length of `tokenize` (77 for CLIP); values over 1e6 mean "unset" in HF and fall back to 77. */
  model_max_length?: number;
  /** Default `<|startoftext|>`. */
  bos_token?: string | { content: string };
  /** Default `<|endoftext|>`. */
  eos_token?: string | { content: string };
  /** Padding after the eos: SD v1 uses `<|endoftext|>` (the default), SD 2.x `"!"` (id 0). */
  pad_token?: string | { content: string };
  /** Used for a BPE piece missing from the vocabulary (never happens with CLIP's own files); default eos. */
  unk_token?: string | { content: string };
}

/** Options of {@linkcode ClipTokenizer}. */
export interface ClipTokenizerOptions {
  /** For messages: where the files came from. */
  name?: string;
  /** Words whose ids are kept (the cache is emptied when full); 0 turns caching off. Default 50000. */
  cacheSize?: number;
}

/** Options of {@linkcode ClipTokenizer.tokenize}. */
export interface TokenizeOptions {
  /** Row length: bos + up to `maxLength − 2` ids + eos + padding. Default: the config's `model_max_length` (77). */
  maxLength?: number;
  /** Cut a longer prompt to its first `maxLength − 2` ids (HF `truncation=True`); when false it throws. Default true. */
  truncate?: boolean;
}

/** What {@linkcode ClipTokenizer.tokenize} returns for `n` prompts. */
export interface TokenizedPrompts {
  /** `[n, maxLength]`, e.g. for `embedding(rec, { ids: { data: inputIds, shape } })`. */
  shape: [number, number];
  /** `[n·maxLength]` row-major: bos, ids, eos, then the pad id. */
  inputIds: Int32Array;
  /** `[n·maxLength]`: 1 from bos to eos, 0 over the padding (HF's `attention_mask`; SD v1 does not pass it). */
  attentionMask: Int32Array;
  /** Per prompt: tokens from bos to eos inclusive (≤ maxLength). */
  lengths: number[];
  /** Per prompt: where this tokenizer put the closing eos (`lengths − 1`). */
  eosIndex: number[];
  /**
   * Per prompt: the first position holding the eos id, where CLIP pools its text embedding (HF's argmax over the
   * ids). It equals `eosIndex` unless the prompt itself contains "<|endoftext|>".
   */
  firstEosIndex: number[];
  /** Per prompt: ids cut off by truncation (0 when the prompt fit). */
  truncated: number[];
}

function tokenContent(t: string | { content: string } | undefined, fallback: string): string {
  if (t === undefined || t === null) return fallback;
  return typeof t === "string" ? t : t.content;
}

/**
 * CLIP's BPE tokenizer. Build it with {@linkcode loadTokenizer} (a model folder) or {@linkcode parseTokenizer}
 * (the files' text); the constructor takes them parsed.
 */
export class ClipTokenizer {
  /** For messages. */
  readonly name: string;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  /** Default row length of `tokenize`. */
  readonly modelMaxLength: number;
  /** Merges in use (48894 for CLIP). */
  readonly mergeCount: number;
  readonly #vocab: Map<string, number>;
  readonly #idToToken: string[];
  /** "first second" → rank (line order; a repeated pair keeps its last line, as Python's dict does). */
  readonly #ranks = new Map<string, number>();
  readonly #special: Map<string, number>;
  readonly #cache = new Map<string, readonly number[]>();
  readonly #cacheSize: number;

  /**
   * @param vocab token → id (`vocab.json`)
   * @param merges merge rules `"first second"` in rank order (the lines of `merges.txt` after its `#version` header)
   * @param config `tokenizer_config.json`'s fields
   */
  constructor(
    vocab: Readonly<Record<string, number>>,
    merges: readonly string[],
    config: TokenizerConfig = {},
    opts: ClipTokenizerOptions = {},
  ) {
    this.name = opts.name ?? "tokenizer";
    this.#cacheSize = opts.cacheSize ?? 50000;
    this.#vocab = new Map();
    this.#idToToken = [];
    for (const token in vocab) {
      const id = vocab[token];
      if (!Number.isInteger(id) || id < 0) {
        throw new TypeError(`${this.#prefix()}vocab maps ${JSON.stringify(token)} to ${JSON.stringify(id)}, not an id`);
      }
      this.#vocab.set(token, id);
      this.#idToToken[id] = token;
    }
    const idOf = (field: string, token: string) => {
      const id = this.#vocab.get(token);
      if (id === undefined) {
        throw new Error(`${this.#prefix()}${field} ${JSON.stringify(token)} is not in the vocab`);
      }
      return id;
    };
    const bos = tokenContent(config.bos_token, "<|startoftext|>");
    const eos = tokenContent(config.eos_token, "<|endoftext|>");
    this.bosId = idOf("bos_token", bos);
    this.eosId = idOf("eos_token", eos);
    this.padId = idOf("pad_token", tokenContent(config.pad_token, eos));
    this.unkId = idOf("unk_token", tokenContent(config.unk_token, eos));
    // simple_tokenizer seeds its cache with these, so a prompt that spells one out gets its id, not BPE pieces.
    this.#special = new Map([[bos, this.bosId], [eos, this.eosId]]);
    const m = config.model_max_length;
    this.modelMaxLength = typeof m === "number" && Number.isInteger(m) && m >= 2 && m <= 1e6 ? m : CLIP_MAX_LENGTH;

    this.mergeCount = Math.min(merges.length, MAX_MERGES);
    for (let rank = 0; rank < this.mergeCount; rank++) {
      // Byte-alphabet tokens never contain whitespace, so a rule is two tokens and one space.
      const rule = merges[rank], space = rule.indexOf(" ");
      if (space < 1 || space === rule.length - 1 || rule.indexOf(" ", space + 1) >= 0) {
        throw new Error(`${this.#prefix()}merge rule ${rank} is ${JSON.stringify(rule)}, not "first second"`);
      }
      this.#ranks.set(rule, rank);
    }
  }

  #prefix(): string {
    return `Cannot load tokenizer from "${this.name}": `;
  }

  /** Vocabulary size (one past the largest id): 49408 for CLIP. */
  get vocabSize(): number {
    return this.#idToToken.length;
  }

  /** The BPE ids of `text`, without bos/eos or padding. */
  encode(text: string): number[] {
    if (typeof text !== "string") throw new TypeError(`encode: expected a string, got ${typeof text}`);
    const ids: number[] = [];
    for (const m of cleanText(text).matchAll(WORD)) {
      for (const id of this.#word(m[0])) ids.push(id);
    }
    return ids;
  }

  /**
   * Prompts as SD's text encoder takes them: each row is bos, the first `maxLength − 2` ids, eos, then the pad id.
   *
   * ```ts ignore
   * const t = tok.tokenize(["a photo of a dog", ""]);
   * t.shape; // [2, 77]
   * t.inputIds.subarray(0, 8); // [49406, 320, 1125, 539, 320, 1929, 49407, 49407]
   * t.firstEosIndex; // [6, 1]
   * ```
   */
  tokenize(prompts: string | readonly string[], opts: TokenizeOptions = {}): TokenizedPrompts {
    const list = typeof prompts === "string" ? [prompts] : prompts;
    const maxLength = opts.maxLength ?? this.modelMaxLength;
    const truncate = opts.truncate ?? true;
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new RangeError(`tokenize: maxLength must be an integer ≥ 2 (room for bos and eos), got ${maxLength}`);
    }
    const n = list.length, room = maxLength - 2;
    const out: TokenizedPrompts = {
      shape: [n, maxLength],
      inputIds: new Int32Array(n * maxLength).fill(this.padId),
      attentionMask: new Int32Array(n * maxLength),
      lengths: [],
      eosIndex: [],
      firstEosIndex: [],
      truncated: [],
    };
    for (let i = 0; i < n; i++) {
      if (typeof list[i] !== "string") {
        throw new TypeError(`tokenize: prompt ${i} is a ${typeof list[i]}, not a string`);
      }
      const ids = this.encode(list[i]);
      if (ids.length > room && !truncate) {
        throw new RangeError(
          `tokenize: prompt ${i} has ${ids.length} tokens, more than the ${room} that fit between bos and eos ` +
            `(maxLength ${maxLength}); pass truncate: true to cut it`,
        );
      }
      const kept = Math.min(ids.length, room);
      const row = out.inputIds.subarray(i * maxLength, (i + 1) * maxLength);
      row[0] = this.bosId;
      for (let j = 0; j < kept; j++) row[1 + j] = ids[j];
      row[kept + 1] = this.eosId;
      out.attentionMask.fill(1, i * maxLength, i * maxLength + kept + 2);
      out.lengths.push(kept + 2);
      out.eosIndex.push(kept + 1);
      out.firstEosIndex.push(row.indexOf(this.eosId));
      out.truncated.push(ids.length - kept);
    }
    return out;
  }

  /** The token string of an id (`"dog</w>"`), or undefined outside the vocabulary. */
  idToToken(id: number): string | undefined {
    return this.#idToToken[id];
  }

  /**
   * Text back from ids, as simple_tokenizer's `decode`: bytes rejoined (invalid UTF-8 becomes U+FFFD) and each
   * `</w>` turned into a space; special tokens are kept. Decode one id at a time to label positions.
   */
  decode(ids: ArrayLike<number>): string {
    let chars = "";
    for (let i = 0; i < ids.length; i++) {
      const token = this.#idToToken[ids[i]];
      if (token === undefined) throw new RangeError(`decode: id ${ids[i]} at ${i} is outside the vocabulary`);
      chars += token;
    }
    const bytes = new Uint8Array(chars.length);
    let n = 0;
    for (const c of chars) {
      const b = CHAR_TO_BYTE.get(c);
      if (b !== undefined) bytes[n++] = b;
    }
    return new TextDecoder().decode(bytes.subarray(0, n)).replaceAll(END_OF_WORD, " ");
  }

  /** The ids of one word of the pattern, through the cache. */
  #word(word: string): readonly number[] {
    const special = this.#special.get(word);
    if (special !== undefined) return [special];
    const cached = this.#cache.get(word);
    if (cached) return cached;
    const chars = PRINTABLE_ASCII.test(word) ? word.split("") : Array.from(UTF8.encode(word), (b) => BYTE_TO_CHAR[b]);
    chars[chars.length - 1] += END_OF_WORD;
    const ids = this.#bpe(chars).map((piece) => this.#vocab.get(piece) ?? this.unkId);
    if (this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) this.#cache.clear();
      this.#cache.set(word, ids);
    }
    return ids;
  }

  /**
   * simple_tokenizer's `bpe`: repeatedly merge every occurrence (left to right, not overlapping) of the adjacent
   * pair with the lowest rank, until no adjacent pair is a merge.
   */
  #bpe(pieces: string[]): string[] {
    while (pieces.length > 1) {
      let best = Infinity, first = "", second = "";
      for (let i = 0; i + 1 < pieces.length; i++) {
        const rank = this.#ranks.get(pieces[i] + " " + pieces[i + 1]);
        if (rank !== undefined && rank < best) [best, first, second] = [rank, pieces[i], pieces[i + 1]];
      }
      if (best === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < pieces.length; i++) {
        if (i + 1 < pieces.length && pieces[i] === first && pieces[i + 1] === second) {
          merged.push(first + second);
          i++;
        } else {
          merged.push(pieces[i]);
        }
      }
      pieces = merged;
    }
    return pieces;
  }
}

/** The text of a tokenizer folder's files. */
export interface TokenizerTexts {
  /** `vocab.json`. */
  vocab: string;
  /** `merges.txt`. */
  merges: string;
  /** `tokenizer_config.json`, when the folder has one. */
  config?: string;
}

/**
 * A tokenizer from its files' text. `name` (the folder, for messages) and `subfolder` only label errors, e.g.
 * `Cannot load tokenizer from "sd14": "tokenizer/vocab.json" is not valid JSON: …`.
 */
export function parseTokenizer(
  texts: TokenizerTexts,
  opts: ClipTokenizerOptions & { subfolder?: string } = {},
): ClipTokenizer {
  const name = opts.name ?? "tokenizer", sub = opts.subfolder ?? "tokenizer";
  const fail = (file: string, problem: string) =>
    new Error(`Cannot load tokenizer from "${name}": "${sub}/${file}" ${problem}`);
  const json = (file: string, text: string) => {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw fail(file, `is not valid JSON: ${(e as Error).message}`);
    }
    if (!v || typeof v !== "object" || Array.isArray(v)) throw fail(file, "is not a JSON object");
    return v as Record<string, unknown>;
  };
  const vocab = json("vocab.json", texts.vocab);
  const config = texts.config === undefined ? {} : json("tokenizer_config.json", texts.config);
  const lines = texts.merges.split(/\r?\n/);
  // Every merges.txt opens with "#version: 0.2" (openai/CLIP and HF drop line 0 without looking at it).
  const merges = lines.slice(lines[0]?.startsWith("#version") ? 1 : 0).filter((line) => line !== "");
  return new ClipTokenizer(vocab as Record<string, number>, merges, config as TokenizerConfig, { ...opts, name });
}

/** Options of {@linkcode loadTokenizer}. */
export interface LoadTokenizerOptions {
  /** Folder inside the model folder (default "tokenizer"; SDXL's second is "tokenizer_2"). */
  subfolder?: string;
  /** See {@linkcode ClipTokenizerOptions.cacheSize}. */
  cacheSize?: number;
}

/**
 * The tokenizer of a diffusers folder: `<subfolder>/vocab.json`, `merges.txt` and, when present,
 * `tokenizer_config.json` (for `model_max_length` and the pad token).
 */
export async function loadTokenizer(files: ModelFiles, opts: LoadTokenizerOptions = {}): Promise<ClipTokenizer> {
  const sub = opts.subfolder ?? "tokenizer";
  const [vocabOk, mergesOk, configOk] = await Promise.all(
    ["vocab.json", "merges.txt", "tokenizer_config.json"].map((f) => files.exists(`${sub}/${f}`)),
  );
  for (const [ok, file] of [[vocabOk, "vocab.json"], [mergesOk, "merges.txt"]] as const) {
    if (!ok) throw new Error(`Cannot load tokenizer from "${files.name}": missing "${sub}/${file}"`);
  }
  const [vocab, merges, config] = await Promise.all([
    files.readText(`${sub}/vocab.json`),
    files.readText(`${sub}/merges.txt`),
    configOk ? files.readText(`${sub}/tokenizer_config.json`) : undefined,
  ]);
  return parseTokenizer({ vocab, merges, config }, { name: files.name, subfolder: sub, cacheSize: opts.cacheSize });
}
