/**
 * The CLIP text encoder's backward against central finite differences of its own GPU forward, on the clip-tiny
 * fixture: parameter gradients of every kind (attention projection, MLP bias, LayerNorm weights, position embedding,
 * token-embedding rows) and the gradient at `text_model.embeddings`, entry by entry and along random unit directions.
 *
 * Tolerance. J = Σ out ⊙ W is evaluated by the f32 forward and summed in float64; rounding inside the forward makes
 * J(θ + hδ) noisy by ≈ 3e-5 (measured from differences at h = 1e-3, where it dominates), so a central difference with
 * step h carries ≈ 3e-5 / 2h of absolute noise, while its truncation error c·h² is sizeable in embedding space, where the
 * next LayerNorm's scale is the embeddings' (≈ 0.03). Richardson extrapolation, (4·D(h) − D(2h)) / 3, removes the
 * h² term, so h can stay at 1e-2 (noise ≈ 2e-3 absolute against derivatives of 0.07 to 250). Every comparison must
 * agree to relative error < 1e-2; the measured errors are printed (worst ≈ 3e-3, on the smallest derivative).
 */
import assert from "assert";
import { assertClose, gpuTest } from "./_gpu.ts";
import { openSafetensorsFile } from "../src/io/safetensors_file.ts";
import { safetensorsSource, type TensorSource } from "../src/models/unet/load.ts";
import {
  type ClipActivation,
  type ClipTextModel,
  parseClipTextConfig,
  textEncoderFromSource,
} from "../src/models/clip/mod.ts";
import { Hooks } from "../src/hooks/hooks.ts";
import { Tape } from "../src/autodiff/tape.ts";
import { axpy } from "../src/ops/axpy.ts";
import { randn } from "../src/ref/random.ts";
import type { GpuContext, Tensor } from "../src/gpu/mod.ts";

const FIX = new URL("../../shared/fixtures/", import.meta.url);
const tiny = JSON.parse(await Deno.readTextFile(new URL("clip-tiny.json", FIX))).config;
const st = await openSafetensorsFile(new URL("clip-tiny.safetensors", FIX));
const configWith = (act: ClipActivation) =>
  parseClipTextConfig({
    hidden_size: tiny.transformer_width,
    intermediate_size: 4 * tiny.transformer_width,
    num_attention_heads: tiny.transformer_heads,
    num_hidden_layers: tiny.transformer_layers,
    max_position_embeddings: tiny.context_length,
    vocab_size: tiny.vocab_size,
    projection_dim: tiny.embed_dim,
    hidden_act: act,
  }, "clip-tiny.json");
const D: number = tiny.transformer_width;
const allIds = await st.readI32("input/input_ids"); // [4, 77]
const P = "text_model";
const POS = `${P}.embeddings.position_embedding.weight`;
const EMB = `text_encoder.${P}.embeddings`;
const H = 1e-2;

type Ids = { data: Int32Array; shape: [number, number] };

/** The first B prompts, cut to T tokens. */
function idsOf(B: number, T: number): Ids {
  const data = new Int32Array(B * T);
  for (let b = 0; b < B; b++) data.set(allIds.subarray(b * 77, b * 77 + T), b * T);
  return { data, shape: [B, T] };
}

/** The text tower of the fixture, with `text_projection`. */
function textSource(): TensorSource {
  const src = safetensorsSource(st, "param/");
  const shapes = new Map([...src.shapes].filter(([n]) => n.startsWith(`${P}.`) || n === "text_projection.weight"));
  return { name: "clip-tiny.safetensors", shapes, readF32: src.readF32 };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** A random unit vector. */
function unit(n: number, seed: number): Float64Array {
  const v = Float64Array.from(randn(n, seed));
  const norm = Math.sqrt(dot(v, v));
  return v.map((x) => x / norm);
}

/** The i-th basis vector. */
function oneHot(n: number, i: number): Float64Array {
  const v = new Float64Array(n);
  v[i] = 1;
  return v;
}

/** Indices of the k largest |g|. */
function topEntries(g: ArrayLike<number>, k: number): number[] {
  return [...Array(g.length).keys()].sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, k);
}

/** Loss weights: W on last_hidden_state, V on text_embeds (absent: that term is left out). */
interface Loss {
  w: Float32Array;
  v?: Float32Array;
}

/** J = Σ last ⊙ W (+ Σ textEmbeds ⊙ V) by the GPU forward, summed in float64; `hooks` may perturb activations. */
async function lossOf(ctx: GpuContext, te: ClipTextModel, ids: Ids, l: Loss, hooks?: Hooks): Promise<number> {
  const rec = ctx.recorder("fd forward");
  const out = te.forward(rec, ids, { hooks });
  await rec.submit();
  let j = dot(await ctx.readF32(out.lastHiddenState), l.w);
  if (l.v) j += dot(await ctx.readF32(out.textEmbeds!), l.v);
  ctx.release(out.lastHiddenState, out.pooledOutput, out.textEmbeds);
  return j;
}

/** Forward + backward with `watch` watched and gradients captured at `grads` hook paths; everything read back. */
async function tapeGradients(
  ctx: GpuContext,
  te: ClipTextModel,
  ids: Ids,
  l: Loss,
  watch: Tensor[],
  grads: string[],
): Promise<{ leaves: Float32Array[]; captured: Float32Array[]; last: Float32Array; nodes: number }> {
  const before = ctx.memory.current;
  const tape = new Tape(ctx);
  const g = watch.map((t) => tape.watch(t));
  const hooks = new Hooks();
  const caps = grads.map((p) => hooks.captureGrad(p));
  const rec = ctx.recorder("forward+backward");
  const out = te.forward(rec, ids, { tape, hooks });
  const nodes = tape.size;
  const w = ctx.upload(l.w, out.lastHiddenState.shape);
  const v = l.v ? ctx.upload(l.v, out.textEmbeds!.shape) : undefined;
  if (nodes > 0) tape.backward(rec, v ? [[out.lastHiddenState, w], [out.textEmbeds!, v]] : [[out.lastHiddenState, w]]);
  await rec.submit();
  const leaves = await Promise.all(g.map((t) => ctx.readF32(t)));
  const captured = await Promise.all(caps.map(async (c) => (await c.read(ctx))[0]?.data));
  const last = await ctx.readF32(out.lastHiddenState);
  assert.deepEqual(await ctx.readF32(w), l.w, "backward changed its seed"); // last_hidden_state also feeds the pooled row
  ctx.release(w, v, out.lastHiddenState, out.pooledOutput, out.textEmbeds, ...g);
  caps.forEach((c) => c.release(ctx));
  assert.equal(ctx.memory.current, before, "forward + backward leaked buffers");
  return { leaves, captured, last, nodes };
}

/** Richardson-extrapolated central difference at 0 of `j`: (4·D(h) − D(2h)) / 3, D(h) = (j(h) − j(−h)) / 2h. */
async function derivative(j: (h: number) => Promise<number>): Promise<number> {
  const d = async (h: number) => (await j(h) - await j(-h)) / (2 * h);
  return (4 * await d(H) - await d(2 * H)) / 3;
}

/** J along `dir` in a parameter (host values `theta`): writes θ + h·dir for each evaluation, restores θ after. */
function alongParam(ctx: GpuContext, run: () => Promise<number>, t: Tensor, theta: Float32Array, dir: Float64Array) {
  return async (h: number) => {
    ctx.write(t, theta.map((x, i) => x + h * dir[i]));
    const j = await run();
    ctx.write(t, theta);
    return j;
  };
}

/** J with h·dir added to the `text_model.embeddings` output by a hook. */
function alongEmbeddings(ctx: GpuContext, run: (hooks: Hooks) => Promise<number>, dir: Float64Array, shape: number[]) {
  return async (h: number) => {
    const d = ctx.upload(Float32Array.from(dir), shape);
    const hooks = new Hooks().edit(EMB, (rec, x) => void axpy(rec, x, d, h));
    const j = await run(hooks);
    ctx.release(d);
    return j;
  };
}

/** Collects (finite difference, tape) pairs and checks them all at the end. */
class Checks {
  rows: [string, number][] = [];
  async add(what: string, j: (h: number) => Promise<number>, grad: ArrayLike<number>, dir: Float64Array) {
    const fd = await derivative(j), want = dot(grad, dir);
    const rel = Math.abs(fd - want) / Math.abs(want);
    this.rows.push([what, rel]);
    console.log(
      `${what}: finite difference ${fd.toPrecision(7)}, tape ${want.toPrecision(7)}, rel ${rel.toExponential(2)}`,
    );
  }
  assert(): void {
    const worst = this.rows.reduce((a, b) => (b[1] > a[1] ? b : a));
    console.log(`${this.rows.length} derivatives compared; worst ${worst[0]}: ${worst[1].toExponential(2)}`);
    assert.deepEqual(this.rows.filter(([, e]) => !(e < 1e-2)), []);
  }
}

gpuTest(
  "text encoder backward = finite differences: 6 parameter kinds and text_model.embeddings (rel. error < 1e-2)",
  async (ctx) => {
    const te = await textEncoderFromSource(ctx, configWith("quick_gelu"), textSource());
    const ids = idsOf(2, 77);
    const [B, T] = ids.shape;
    const l: Loss = { w: randn(B * T * D, 21) };
    const names = [
      `${P}.encoder.layers.0.self_attn.q_proj.weight`,
      `${P}.encoder.layers.1.mlp.fc1.bias`,
      `${P}.encoder.layers.1.layer_norm1.weight`,
      `${P}.final_layer_norm.weight`,
      POS,
    ];
    assert.equal(te.tokenEmbedding.length, 1);
    const table = te.tokenEmbedding[0];
    const params = names.map((n) => te.params.get(n)!);
    const { leaves, captured: [gEmb] } = await tapeGradients(ctx, te, ids, l, [...params, table], [EMB]);

    const checks = new Checks();
    const run = () => lossOf(ctx, te, ids, l);
    for (const [k, n] of names.entries()) {
      const t = params[k], theta = await ctx.readF32(t), g = leaves[k];
      for (const i of topEntries(g, 2)) {
        await checks.add(`${n}[${i}]`, alongParam(ctx, run, t, theta, oneHot(g.length, i)), g, oneHot(g.length, i));
      }
      for (const s of [1, 2]) {
        const dir = unit(g.length, s);
        await checks.add(`${n} along a random direction`, alongParam(ctx, run, t, theta, dir), g, dir);
      }
    }
    // the token-embedding row of a word (the first prompt's second token), as a tensor of its own D entries
    const tok = ids.data[1], gTable = leaves[names.length];
    const row = { ...table, shape: [D], offset: tok * D * 4 };
    const rowTheta = (await ctx.readF32(table)).slice(tok * D, (tok + 1) * D);
    const dirRow = unit(D, 3);
    await checks.add(
      `token_embedding row ${tok} along a random direction`,
      alongParam(ctx, run, row, rowTheta, dirRow),
      gTable.subarray(tok * D, (tok + 1) * D),
      dirRow,
    );
    // rows that occur nowhere get exactly nothing
    const used = new Set(ids.data);
    for (let r = 0; r < tiny.vocab_size; r++) {
      if (!used.has(r) && gTable.subarray(r * D, (r + 1) * D).some((x) => x !== 0)) {
        assert.fail(`row ${r} got gradient`);
      }
    }

    // the embeddings output: entries and random directions, added by a hook
    const runHooked = (hooks: Hooks) => lossOf(ctx, te, ids, l, hooks);
    const n = B * T * D;
    const dirs: [string, Float64Array][] = [
      ...topEntries(gEmb, 2).map((i) => [`[${i}]`, oneHot(n, i)] as [string, Float64Array]),
      [" along a random direction", unit(n, 4)],
      [" along a random direction", unit(n, 5)],
    ];
    for (const [what, dir] of dirs) {
      await checks.add(`${P}.embeddings${what}`, alongEmbeddings(ctx, runHooked, dir, [B, T, D]), gEmb, dir);
    }
    checks.assert();
    te.release();
  },
);

gpuTest(
  "gradient at text_model.embeddings with nothing watched; GELU, 24 tokens, text_embeds, a sharded token table",
  async (ctx) => {
    const te = await textEncoderFromSource(ctx, configWith("gelu"), textSource(), { maxShardBytes: 1 << 20 });
    const shards = te.tokenEmbedding;
    assert.equal(shards.length, 13);
    const ids = idsOf(2, 24); // fewer tokens than positions: the position embedding's first 24 rows get gradient
    const [B, T] = ids.shape;
    const l: Loss = { w: randn(B * T * D, 31), v: randn(B * tiny.embed_dim, 32) };

    // a tape with nothing watched and no gradient capture records nothing and computes what the plain forward does
    const plain = await tapeGradients(ctx, te, ids, l, [], []);
    assert.equal(plain.nodes, 0);
    // a gradient capture alone starts tracking at its module output
    const root = await tapeGradients(ctx, te, ids, l, [], [EMB]);
    // with parameters watched (only the last token shard: bos/eos rows; the others get scratch gradients)
    const pos = te.params.get(POS)!, proj = te.params.get("text_projection.weight")!, lastShard = shards.at(-1)!;
    const full = await tapeGradients(ctx, te, ids, l, [pos, proj, lastShard], [EMB]);
    assert.deepEqual(full.last, root.last);
    assertClose(full.last, plain.last, 1e-6, "last_hidden_state with unfused GELU");
    const [gEmb] = root.captured;
    assert.deepEqual(full.captured[0], gEmb, "the embeddings' gradient depends on what is watched");
    const [gPos, gProj, gShard] = full.leaves;
    assert.ok(gPos.subarray(T * D).every((x) => x === 0), "position rows past the tokens got gradient");

    const checks = new Checks();
    const run = () => lossOf(ctx, te, ids, l);
    const n = B * T * D;
    for (const s of [6, 7]) {
      const dir = unit(n, s);
      const j = alongEmbeddings(ctx, (hooks) => lossOf(ctx, te, ids, l, hooks), dir, [B, T, D]);
      await checks.add(`${P}.embeddings along a random direction`, j, gEmb, dir);
    }
    for (const [name, t, g, seed] of [[POS, pos, gPos, 8], ["text_projection.weight", proj, gProj, 9]] as const) {
      const dir = unit(g.length, seed);
      await checks.add(`${name} along a random direction`, alongParam(ctx, run, t, await ctx.readF32(t), dir), g, dir);
    }
    // bos and eos rows of the last shard (eos pads every prompt: its gradient sums over many positions)
    const start = tiny.vocab_size - lastShard.shape[0];
    const shardTheta = await ctx.readF32(lastShard);
    for (const id of [49406, 49407]) {
      const r = id - start, row = { ...lastShard, shape: [D], offset: r * D * 4 }, dir = unit(D, id);
      const theta = shardTheta.slice(r * D, (r + 1) * D);
      await checks.add(
        `token_embedding row ${id}`,
        alongParam(ctx, run, row, theta, dir),
        gShard.subarray(r * D, (r + 1) * D),
        dir,
      );
    }
    checks.assert();
    te.release();
  },
);
