/**
 * Steering generation with SAE features (Tinaz et al. §3.5): a hook on the residual update Δ of a transformer block
 * (`….delta`) encodes Δ at every position with the SAE and moves it along chosen features' decoder directions f_c,
 * adding to Δ rather than replacing it by the SAE's reconstruction (whose error is large):
 *
 * - spatial (a region S): inside S, Δ[p] += Σ_c (β‖z[p]‖ − z[p,c]) f_c (the feature set to β‖z[p]‖); outside,
 *   Δ[p] −= Σ_c z[p,c] f_c (the feature removed). A soft mask m ∈ [0, 1] blends the two: m · inside + (1 − m) ·
 *   outside, i.e. Δ[p] += Σ_c (m[p] β‖z[p]‖ − z[p,c]) f_c.
 * - global (no region): Δ[p] += β ‖z[p]‖ / Σ_{p'} ‖z[p']‖ · f_c, the sum over the positions of the same image.
 *
 * z[p] is p's top-k code and ‖z[p]‖ its L2 norm; z[p,c] is 0 when latent c is not among p's top k. The math runs in
 * kernels/sae_steer.wgsl; runtime-agnostic.
 *
 * ```ts ignore
 * const hooks = new Hooks();
 * const steer = steerSae(hooks, sae, {
 *   hook: "mid_block.attentions.0.delta",
 *   features: [{ id: 1722, strength: 8 }, { id: 524, strength: 400, region: "top-left" }],
 *   steps: range(0, 20),
 * });
 * await pipe.generate({ prompt, hooks });
 * steer.release();
 * ```
 * @module
 */
import src from "../../kernels/sae_steer.wgsl" with { type: "text" };
import { defineKernels } from "../gpu/kernel.ts";
import type { GpuContext } from "../gpu/context.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { assertShape, fmtShape, numel, reshape, type Tensor } from "../gpu/tensor.ts";
import type { Half, Hooks, HookSite } from "../hooks/hooks.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";
import { mean } from "../ops/reduce.ts";
import { resize } from "../ops/resize.ts";
import type { Sae } from "./model.ts";
import { type ActivationLayout, encodePositions, positionGrid } from "./positions.ts";
import type { SparseCode } from "./sparse.ts";

const K = defineKernels("sae_steer.wgsl", src, ["norms", "coefs", "apply"]);
const WG = 64;

/** The default hook point of steering (the paper's mid-block). */
export const DEFAULT_STEER_HOOK = "mid_block.attentions.0.delta";

/**
 * The hook point to steer or read: the one given, else the SAE file's config "hook" (`extra.hook`, as
 * `saveSaeFile` writes it), else {@linkcode DEFAULT_STEER_HOOK}.
 */
export function saeHook(given: string | undefined, extra: Record<string, unknown> = {}): string {
  return given ?? (typeof extra.hook === "string" ? extra.hook : DEFAULT_STEER_HOOK);
}

/**
 * The CFG half an SAE edit or capture acts on at guidance `guidance`: the one given, else "cond" with CFG and "both"
 * without (guidance ≤ 1 runs one unguided batch). Throws when "cond" or "uncond" is asked for without CFG.
 */
export function saeHalf(given: Half | undefined, guidance: number, what = "--sae-half"): Half {
  const cfg = guidance > 1;
  if (given === undefined) return cfg ? "cond" : "both";
  if (!cfg && given !== "both") {
    throw new RangeError(
      `${what} ${given}: guidance ${guidance} ≤ 1 runs without CFG, so there is no cond/uncond pair (use "both" or ` +
        `a guidance > 1)`,
    );
  }
  return given;
}

/** A named quarter of the grid: rows < H/2 are "top", columns < W/2 "left" (an odd middle row goes to the top half). */
export type Quadrant = "top-left" | "top-right" | "bottom-left" | "bottom-right";
/** The quadrant names. */
export const QUADRANTS: readonly Quadrant[] = ["top-left", "top-right", "bottom-left", "bottom-right"];

/** The binary [H·W] mask of a quadrant (row-major). */
export function quadrantMask(q: Quadrant, grid: readonly [number, number]): Float32Array {
  if (!QUADRANTS.includes(q)) throw new TypeError(`quadrantMask: unknown quadrant "${q}" (${QUADRANTS.join(", ")})`);
  const [H, W] = grid;
  const top = q.startsWith("top"), left = q.endsWith("left");
  const m = new Float32Array(H * W);
  for (let i = 0; i < H; i++) {
    for (let j = 0; j < W; j++) m[i * W + j] = (i < H / 2) === top && (j < W / 2) === left ? 1 : 0;
  }
  return m;
}

/** How a feature's coefficient is computed (kernels/sae_steer.wgsl). */
export const STEER_MODES = { spatial: 0, global: 1 } as const;

/** One row of the kernel's feature table. */
export interface SteerTableRow {
  /** Latent id c. */
  id: number;
  mode: keyof typeof STEER_MODES;
  /** Row of the mask tensor this feature reads (spatial only). */
  maskRow: number;
  /** β. */
  strength: number;
}

/** The feature table as the kernel reads it: u32 [F, 4] = (id, mode, mask row, bits of f32 β). */
export function packSteerTable(rows: readonly SteerTableRow[]): Uint32Array {
  const out = new Uint32Array(rows.length * 4);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  rows.forEach((r, i) => {
    f[0] = r.strength;
    out.set([r.id, STEER_MODES[r.mode], r.maskRow, u[0]], i * 4);
  });
  return out;
}

/** Inputs of {@linkcode steerActivation}. */
export interface SteerActivationInputs {
  /** The code of the batch range's positions, rows = image · H·W + position ({@linkcode encodePositions}). */
  code: SparseCode;
  /** The SAE's decoder [d, n]: its columns are the feature directions. */
  wDec: Tensor;
  /** u32 [F, 4] from {@linkcode packSteerTable}. */
  table: Tensor;
  /** [rows, H·W] masks the spatial features index (values clamped to [0, 1]); needed when one is spatial. */
  masks?: Tensor;
}

/**
 * Records the steering edit of `x`'s batch range `batch` in place (kernels/sae_steer.wgsl): per position the
 * features' coefficients from the code, then x += Σ_f coef_f · W_dec[:, c_f]. Elements outside the range are not
 * written.
 */
export function steerActivation(
  rec: Recorder,
  x: Tensor,
  inputs: SteerActivationInputs,
  opts: { batch?: readonly [number, number]; layout?: ActivationLayout } = {},
): void {
  const { code, wDec, table, masks } = inputs;
  requireDtype("steerActivation", x);
  requireDtype("steerActivation", wDec);
  requireDtype("steerActivation", table, ["u32"]);
  requireDtype("steerActivation", code.values);
  requireDtype("steerActivation", code.indices, ["u32"]);
  const layout = opts.layout ?? "nchw";
  const batch = opts.batch ?? [0, x.shape[0]];
  const g = positionGrid("steerActivation", x, layout, batch);
  const C = g.channels, hw = g.hw, rows = g.images * hw;
  if (wDec.shape.length !== 2 || wDec.shape[0] !== C) {
    throw new TypeError(
      `steerActivation: W_dec ${fmtShape(wDec.shape)} must be [${C}, n] for activation ${fmtShape(x.shape)}`,
    );
  }
  const n = wDec.shape[1];
  if (code.values.shape.length !== 2 || code.values.shape[0] !== rows) {
    throw new TypeError(
      `steerActivation: code ${fmtShape(code.values.shape)} must have ${rows} rows (${g.images} items × ${hw} ` +
        `positions of ${fmtShape(x.shape)})`,
    );
  }
  assertShape("steerActivation: code indices against values", code.indices.shape, code.values.shape);
  const k = code.values.shape[1];
  if (table.shape.length !== 2 || table.shape[1] !== 4) {
    throw new TypeError(`steerActivation: feature table ${fmtShape(table.shape)} must be [F, 4] (packSteerTable)`);
  }
  const nf = table.shape[0];
  if (masks) {
    requireDtype("steerActivation", masks);
    if (masks.shape.length !== 2 || masks.shape[1] !== hw) {
      throw new TypeError(`steerActivation: masks ${fmtShape(masks.shape)} must be [rows, ${hw}] (H·W positions)`);
    }
  }
  if (nf === 0 || rows === 0) return;
  const norm = rec.alloc([rows], "f32", "sae.steer.norm");
  const sums = rec.alloc([g.images], "f32", "sae.steer.sums");
  const coef = rec.alloc([rows, nf], "f32", "sae.steer.coef");
  const base = { rows, hw, k, nf, c: C, n, start: batch[0] * g.per, images: g.images };
  const maxDim = rec.ctx.limits.maxComputeWorkgroupsPerDimension;
  let grid = grid1d(g.images, maxDim);
  rec.dispatch(K.norms, {
    read: { values: code.values },
    write: { norm, sums },
    params: { ...base, row: grid[0] },
    grid,
    overrides: { WG },
  });
  grid = grid1dFor(rec, rows * nf, WG);
  rec.dispatch(K.coefs, {
    read: {
      values: code.values,
      indices: code.indices,
      norm_in: norm,
      sums_in: sums,
      feats: table,
      masks: masks ?? rec.ctx.placeholder,
    },
    write: { coef },
    params: { ...base, row: grid[0] },
    grid,
    overrides: { WG },
  });
  grid = grid1dFor(rec, rows * C, WG);
  rec.dispatch(K.apply, {
    read: { coef_in: coef, feats: table, w_dec: wDec },
    write: { x },
    params: { ...base, row: grid[0] },
    grid,
    overrides: { WG, LAYOUT: layout === "nchw" ? 0 : 1 },
  });
  rec.recycle(norm, sums, coef);
}

/** One feature to steer with. */
export interface SteerFeature {
  /** Latent id (a column of W_dec). */
  id: number;
  /** β: spatial strengths are large (the paper: 400–4000), global ones small (8–10). */
  strength: number;
  /**
   * Where (spatial mode): a quadrant, or a mask tensor in [0, 1] — [H·W] at the hook's grid, or any [h, w] (or
   * [1, 1, h, w]) image, brought to the grid on the GPU at the first step ({@linkcode maskAtGrid}). None: global.
   */
  region?: Tensor | Quadrant;
  /** Step indices this feature acts at (default: the options' `steps`, else every step). */
  steps?: readonly number[];
}

/** Options of {@linkcode steerSae}. */
export interface SteerOptions {
  /** Hook point (default `mid_block.attentions.0.delta`). */
  hook?: string;
  /**
   * The features, all coded from the same Δ (a second `steerSae` on the same hook would encode the already-steered
   * Δ: give every feature in one call).
   */
  features: readonly SteerFeature[];
  /** Step indices (the window; e.g. 0…19 for the paper's early stage). Default: every step. */
  steps?: readonly number[];
  /** CFG half edited (default "cond", as the paper; without CFG only "both" fires). */
  half?: Half;
}

/** Step indices [a, b) (a window "a-b" of the CLI). */
export function stepRange(a: number, b: number): number[] {
  return Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);
}

/** A steering hook: its cached GPU tables; release them when generation is done. */
export class SaeSteering {
  readonly hook: string;
  readonly features: readonly SteerFeature[];
  #tables = new Map<string, Tensor>();
  #masks: { key: string; t: Tensor } | null = null;
  #ctx: GpuContext;

  constructor(hooks: Hooks, readonly sae: Sae, opts: SteerOptions) {
    this.#ctx = sae.ctx;
    this.hook = opts.hook ?? DEFAULT_STEER_HOOK;
    const n = sae.config.nLatents;
    if (!opts.features?.length) throw new TypeError("steerSae: no features given");
    this.features = opts.features.map((f, i) => {
      if (!Number.isInteger(f.id) || f.id < 0 || f.id >= n) {
        throw new RangeError(`steerSae: feature ${i} has id ${f.id}; the SAE has latents 0…${n - 1}`);
      }
      if (!Number.isFinite(f.strength)) throw new RangeError(`steerSae: feature ${f.id} has strength ${f.strength}`);
      if (typeof f.region === "string" && !QUADRANTS.includes(f.region)) {
        throw new TypeError(`steerSae: feature ${f.id}: unknown region "${f.region}" (${QUADRANTS.join(", ")})`);
      }
      if (f.region && typeof f.region !== "string") requireDtype(`steerSae: feature ${f.id} region`, f.region);
      return { ...f, steps: f.steps ?? opts.steps };
    });
    const windows = this.features.map((f) => f.steps);
    const steps = windows.some((w) => w === undefined) ? undefined : [...new Set(windows.flatMap((w) => w!))];
    hooks.edit(this.hook, (rec, x, site) => this.#edit(rec, x, site), { steps, half: opts.half ?? "cond" });
  }

  #edit(rec: Recorder, x: Tensor, site: HookSite): void {
    const active = this.features.map((f, i) => [f, i] as const).filter(([f]) =>
      !f.steps || f.steps.includes(site.step)
    );
    if (active.length === 0) return;
    const what = `steerSae on "${site.path}"`;
    const g = positionGrid(what, x, site.layout, site.batch, this.sae.config.d);
    if (g.images === 0) return;
    const code = encodePositions(rec, this.sae, x, { batch: site.batch, layout: site.layout });
    const spatial = active.some(([f]) => f.region !== undefined);
    const masks = spatial ? this.#maskTensor(rec, g.grid) : undefined;
    steerActivation(rec, x, { code, wDec: this.sae.params.W_dec, table: this.#table(active), masks }, {
      batch: site.batch,
      layout: site.layout,
    });
    rec.recycle(code.values, code.indices);
  }

  #table(active: readonly (readonly [SteerFeature, number])[]): Tensor {
    const key = active.map(([, i]) => i).join(",");
    let t = this.#tables.get(key);
    if (!t) {
      const rows = active.map(([f, i]): SteerTableRow => ({
        id: f.id,
        mode: f.region === undefined ? "global" : "spatial",
        maskRow: i,
        strength: f.strength,
      }));
      t = this.#ctx.persist(this.#ctx.upload(packSteerTable(rows), [rows.length, 4], "u32", "sae.steer.table"));
      this.#tables.set(key, t);
    }
    return t;
  }

  /** One mask row per feature at this grid: quadrants from their rule, tensors copied or resized on the GPU. */
  #maskTensor(rec: Recorder, grid: [number, number]): Tensor {
    const key = grid.join("x");
    if (this.#masks?.key === key) return this.#masks.t;
    if (this.#masks) this.#ctx.release(this.#masks.t);
    const hw = grid[0] * grid[1], F = this.features.length;
    const host = new Float32Array(F * hw);
    this.features.forEach((f, i) => typeof f.region === "string" && host.set(quadrantMask(f.region, grid), i * hw));
    const t = this.#ctx.persist(this.#ctx.upload(host, [F, hw], "f32", "sae.steer.masks"));
    this.features.forEach((f, i) => {
      if (!f.region || typeof f.region === "string") return;
      const m = maskAtGrid(rec, f.region, grid, `steerSae: feature ${f.id} region`);
      rec.copy(m, { ...t, offset: t.offset + i * hw * 4, shape: [hw] }, hw * 4);
      if (m !== f.region) rec.recycle(m);
    });
    this.#masks = { key, t };
    return t;
  }

  /** Frees the cached tables (the hook stays registered; clear it with `hooks.clear(path)`). */
  release(): void {
    for (const t of this.#tables.values()) this.#ctx.release(t);
    this.#tables.clear();
    if (this.#masks) this.#ctx.release(this.#masks.t);
    this.#masks = null;
  }
}

/**
 * A mask at an [H, W] grid: `m` itself when it has H·W values laid out as [H·W] or [.., H, W]; otherwise its last two
 * dims [h, w] (leading dims 1) brought to the grid on the GPU: the mean over each grid cell when h and w are
 * multiples of H and W (a block-aligned mask stays exact: a quadrant drawn as an image equals the named quadrant),
 * else a bilinear antialiased resize (close to the cell mean; soft at the edges). Result [H·W].
 */
export function maskAtGrid(rec: Recorder, m: Tensor, grid: readonly [number, number], what = "mask"): Tensor {
  requireDtype(what, m);
  const [H, W] = grid;
  const s = m.shape;
  const n = numel(s);
  if (n === H * W && (s.length === 1 || (s.at(-2) === H && s.at(-1) === W))) return m;
  const h = s.at(-2)!, w = s.at(-1)!;
  if (s.length < 2 || h * w !== n) {
    throw new TypeError(`${what}: ${fmtShape(s)} is neither [${H * W}] nor an [h, w] image to resize to ${H}×${W}`);
  }
  if (h % H === 0 && w % W === 0) {
    const rows = mean(rec, reshape(m, [H * (h / H) * W, w / W]), { axis: 1 }); // [H, h/H, W]
    const out = mean(rec, reshape(rows, [H, h / H, W]), { axis: 1 });
    rec.recycle(rows);
    return reshape(out, [H * W]);
  }
  return reshape(resize(rec, reshape(m, [1, 1, h, w]), { size: [H, W], filter: "bilinear" }), [H * W]);
}

/**
 * Registers a steering edit on `hooks` (see the module doc); returns the handle whose `release()` frees its GPU
 * tables after generation.
 */
export function steerSae(hooks: Hooks, sae: Sae, opts: SteerOptions): SaeSteering {
  return new SaeSteering(hooks, sae, opts);
}
