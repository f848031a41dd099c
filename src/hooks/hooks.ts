/**
 * Hooks: read or change any module's output while a model runs, by its diffusers module path.
 *
 * A hook is chosen by path, by denoising step (index) or timestep (value), and by classifier-free-guidance half
 * (`uncond` = the first half of the batch, `cond` = the second, as diffusers orders `[uncond, cond]`). Models call
 * {@linkcode Hooks.apply} at every module output; with no hook set on a path it returns at once, so hooks cost
 * nothing when unused.
 *
 * ```ts
 * const hooks = new Hooks();
 * const cap = hooks.capture("mid_block.attentions.0.delta", { steps: [0], half: "cond" });
 * hooks.add("mid_block.attentions.0", 0.5, { steps: [0], half: "cond" });
 * ```
 * @module
 */
import src from "../../kernels/hook_edit.wgsl" with { type: "text" };
import { defineKernel } from "../gpu/kernel.ts";
import { grid1d, type Recorder } from "../gpu/recorder.ts";
import { fmtShape, numel, type Tensor } from "../gpu/tensor.ts";
import type { GpuContext } from "../gpu/context.ts";

const editKernel = defineKernel("hook_edit.wgsl", src);

/** Which half of a `[uncond, cond]` batch a hook sees. */
export type Half = "uncond" | "cond" | "both";

/** When a hook fires. Omitted fields match everything. */
export interface HookWhen {
  /** Denoising step indices (0 = first step). */
  steps?: readonly number[];
  /** Timestep values (as the scheduler gives them, e.g. 981). */
  timesteps?: readonly number[];
  /** CFG half; default "both". On a batch that is not a CFG pair only "both" matches. */
  half?: Half;
}

/** Where and when a hook is being applied. */
export interface HookSite {
  path: string;
  step: number;
  timestep: number;
  /** Batch items [first, end) this hook covers. */
  batch: readonly [number, number];
  /** Memory layout of the activation: [B, C, H, W] or [B, tokens, C]. */
  layout: "nchw" | "bnc";
}

/** A user edit: gets the whole activation and the site; edits in place or returns a replacement of equal shape. */
export type EditFn = (rec: Recorder, x: Tensor, site: HookSite) => Tensor | void;

/** Options of the built-in edits. */
export interface EditWhen extends HookWhen {
  /** Spatial mask over the H·W positions (values in [0, 1]; 0 leaves a position untouched). */
  mask?: Tensor;
}

/** One captured activation. */
export interface Captured {
  path: string;
  step: number;
  timestep: number;
  half: Half;
  /** The captured batch range, on the GPU (owned by the capture; `Capture.release()` frees them). */
  tensor: Tensor;
}

/** A capture handle: collects the activations of one path as the model runs. */
export class Capture {
  readonly records: Captured[] = [];
  constructor(readonly path: string, readonly when: HookWhen) {}

  /** The captured tensor at a step, or undefined. */
  at(step: number): Captured | undefined {
    return this.records.find((r) => r.step === step);
  }

  /** Reads every capture back to the host. */
  async read(ctx: GpuContext): Promise<{ record: Captured; data: Float32Array }[]> {
    const out = [];
    for (const r of this.records) out.push({ record: r, data: await ctx.readF32(r.tensor) });
    return out;
  }

  /** Frees the GPU copies. */
  release(ctx: GpuContext): void {
    for (const r of this.records) ctx.release(r.tensor);
    this.records.length = 0;
  }
}

interface Entry {
  when: HookWhen;
  capture?: Capture;
  /** Captures the gradient of the output during backward instead of the output. */
  grad?: boolean;
  edit?: EditFn;
}

/** What a model passes so gradient captures can attach to its tape. */
export interface GradSink {
  onGrad(t: Tensor, fn: (rec: Recorder, g: Tensor) => void): void;
}

/** The set of hooks of one run. Paths may carry a `unet.` or `text_encoder.` prefix (see {@linkcode Hooks.scope}). */
export class Hooks {
  #byPath = new Map<string, Entry[]>();

  /** True when at least one hook is set. */
  get active(): boolean {
    return this.#byPath.size > 0;
  }

  /** Every path a hook is set on, as given. */
  get paths(): string[] {
    return [...this.#byPath.keys()];
  }

  /** Captures the output of `path` (a GPU copy per firing; read them with `Capture.read`). */
  capture(path: string, when: HookWhen = {}): Capture {
    const c = new Capture(path, when);
    this.#add(path, { when, capture: c });
    return c;
  }

  /**
   * Captures the gradient of a loss with respect to the output of `path` (filled when backward runs on a tape
   * that recorded the forward). Records are laid out like output captures.
   */
  captureGrad(path: string, when: HookWhen = {}): Capture {
    const c = new Capture(path, when);
    this.#add(path, { when, capture: c, grad: true });
    return c;
  }

  /** Runs `fn` on the output of `path`. */
  edit(path: string, fn: EditFn, when: HookWhen = {}): this {
    this.#add(path, { when, edit: fn });
    return this;
  }

  /** Adds a constant, a per-channel vector [C] or a tensor shaped like one batch item. */
  add(path: string, value: number | Tensor, when: EditWhen = {}): this {
    return typeof value === "number"
      ? this.#builtin(path, when, { a: value })
      : this.#builtin(path, when, { w: 1 }, value);
  }

  /** Multiplies by `factor`. */
  scale(path: string, factor: number, when: EditWhen = {}): this {
    return this.#builtin(path, when, { s: factor });
  }

  /** Clamps into [lo, hi]. */
  clamp(path: string, lo: number, hi: number, when: EditWhen = {}): this {
    return this.#builtin(path, when, { lo, hi });
  }

  /** Sets to zero. */
  zero(path: string, when: EditWhen = {}): this {
    return this.#builtin(path, when, { s: 0 });
  }

  /** Replaces by `value`: a per-channel vector [C] or a tensor shaped like one batch item. */
  set(path: string, value: Tensor, when: EditWhen = {}): this {
    return this.#builtin(path, when, { s: 0, w: 1 }, value);
  }

  /** Removes every hook on `path` (or all hooks). */
  clear(path?: string): void {
    if (path === undefined) this.#byPath.clear();
    else this.#byPath.delete(path);
  }

  /**
   * The hooks of one model: `prefix` is the model's name ("unet", "text_encoder"). A path `prefix.X` is this
   * model's `X`; when `bare` is true, unprefixed paths are this model's too (the U-Net's, by convention).
   */
  scope(prefix: string, bare: boolean): ScopedHooks {
    return new ScopedHooks(this, prefix, bare);
  }

  /** @internal The entries of an exact path. */
  entries(path: string): Entry[] | undefined {
    return this.#byPath.get(path);
  }

  #add(path: string, e: Entry): void {
    if (!path || typeof path !== "string") throw new TypeError(`hook path must be a non-empty string`);
    const list = this.#byPath.get(path);
    if (list) list.push(e);
    else this.#byPath.set(path, [e]);
  }

  #builtin(
    path: string,
    when: EditWhen,
    k: { s?: number; a?: number; w?: number; lo?: number; hi?: number },
    v?: Tensor,
  ): this {
    const { mask, ...w } = when;
    return this.edit(path, (rec, x, site) => editInPlace(rec, x, site, k, v, mask), w);
  }
}

/** The hooks of one model (see {@linkcode Hooks.scope}). */
export class ScopedHooks {
  #local = new Map<string, Entry[]>();
  constructor(readonly hooks: Hooks, readonly prefix: string, readonly bare: boolean) {
    for (const p of hooks.paths) {
      let local: string | null = null;
      if (p.startsWith(prefix + ".")) local = p.slice(prefix.length + 1);
      else if (bare && !/^(unet|text_encoder|vae)\./.test(p)) local = p;
      if (local !== null) this.#local.set(local, hooks.entries(p)!);
    }
  }

  /** True when this model has any hook. */
  get active(): boolean {
    return this.#local.size > 0;
  }

  /** Throws naming every hook path that is not one of the model's hook points. */
  validate(known: ReadonlySet<string>, model: string): void {
    const bad = [...this.#local.keys()].filter((p) => !known.has(p));
    if (bad.length === 0) return;
    const hint = (p: string) => {
      const near = [...known].filter((k) => k.startsWith(p.split(".").slice(0, 2).join("."))).slice(0, 4);
      return near.length ? ` (did you mean ${near.join(", ")}?)` : "";
    };
    throw new RangeError(`Unknown ${model} hook point(s): ${bad.map((p) => `"${p}"${hint(p)}`).join("; ")}`);
  }

  /** True when a hook would fire on `path` at this step for any half. */
  wants(path: string): boolean {
    return this.#local.has(path);
  }

  /**
   * Applies the hooks of `path` to a module output `x` (shape [B, …]). `cfg` says whether the batch is a
   * `[uncond, cond]` pair. Returns the tensor to continue with (x itself when edited in place).
   */
  apply(
    rec: Recorder,
    path: string,
    x: Tensor,
    state: { step: number; timestep: number; cfg: boolean; tape?: GradSink },
    layout: "nchw" | "bnc",
  ): Tensor {
    const list = this.#local.get(path);
    if (!list) return x;
    const B = x.shape[0];
    for (const e of list) {
      const w = e.when;
      if (w.steps && !w.steps.includes(state.step)) continue;
      if (w.timesteps && !w.timesteps.includes(state.timestep)) continue;
      const half = w.half ?? "both";
      let batch: [number, number];
      if (half === "both") batch = [0, B];
      else if (!state.cfg) continue;
      else batch = half === "uncond" ? [0, B / 2] : [B / 2, B];
      const site: HookSite = { path, step: state.step, timestep: state.timestep, batch, layout };
      if (e.capture && e.grad) {
        const per = numel(x.shape) / B, n = batch[1] - batch[0], cap = e.capture;
        state.tape?.onGrad(x, (r, g) => {
          const t = r.ctx.persist(r.ctx.tensor([n, ...x.shape.slice(1)], "f32", `grad capture:${path}`));
          r.copy({ ...g, offset: g.offset + batch[0] * per * 4 }, t, n * per * 4);
          cap.records.push({ path, step: state.step, timestep: state.timestep, half, tensor: t });
        });
      } else if (e.capture) {
        const per = numel(x.shape) / B;
        const t = rec.ctx.persist(
          rec.ctx.tensor([batch[1] - batch[0], ...x.shape.slice(1)], x.dtype, `capture:${path}`),
        );
        rec.copy({ ...x, offset: x.offset + batch[0] * per * 4 }, t, (batch[1] - batch[0]) * per * 4);
        e.capture.records.push({ path, step: state.step, timestep: state.timestep, half, tensor: t });
      }
      if (e.edit && state.tape) {
        throw new Error(`hook on "${path}": edits are not differentiable; remove them before a gradient run`);
      }
      if (e.edit) {
        const r = e.edit(rec, x, site);
        if (r && r !== x) {
          if (r.shape.length !== x.shape.length || r.shape.some((d, i) => d !== x.shape[i])) {
            throw new TypeError(
              `hook on "${path}" returned shape ${fmtShape(r.shape)}; the module output is ${fmtShape(x.shape)}`,
            );
          }
          x = r;
        }
      }
    }
    return x;
  }
}

/** Applies y = clamp(s·x + a + w·v, lo, hi), masked, in place on the site's batch range. */
export function editInPlace(
  rec: Recorder,
  x: Tensor,
  site: HookSite,
  k: { s?: number; a?: number; w?: number; lo?: number; hi?: number },
  v?: Tensor,
  mask?: Tensor,
): void {
  if (x.dtype !== "f32") throw new TypeError(`hook edit on "${site.path}": activation is ${x.dtype}; f32 expected`);
  const B = x.shape[0];
  const [C, hw] = site.layout === "nchw"
    ? [x.shape[1], numel(x.shape.slice(2))]
    : [x.shape[x.shape.length - 1], numel(x.shape.slice(1, -1))];
  const per = numel(x.shape) / B;
  let vmode = 0;
  if (v) {
    if (numel(v.shape) === C) vmode = 1;
    else if (numel(v.shape) === per) vmode = 2;
    else {
      throw new TypeError(
        `hook edit on "${site.path}": value ${fmtShape(v.shape)} is neither [${C}] (per channel) nor one batch item ` +
          `${fmtShape(x.shape.slice(1))}`,
      );
    }
  }
  if (mask && numel(mask.shape) !== hw) {
    throw new TypeError(`hook edit on "${site.path}": mask ${fmtShape(mask.shape)} must have ${hw} (H·W) positions`);
  }
  const n = (site.batch[1] - site.batch[0]) * per;
  const grid = grid1d(Math.ceil(n / 256), rec.ctx.limits.maxComputeWorkgroupsPerDimension);
  rec.dispatch(editKernel, {
    write: { x },
    read: { v: v ?? rec.ctx.placeholder, m: mask ?? rec.ctx.placeholder },
    params: {
      n,
      start: site.batch[0] * per,
      row: grid[0],
      hw,
      c: C,
      s: k.s ?? 1,
      a: k.a ?? 0,
      w: k.w ?? 0,
      lo: k.lo ?? -3.4e38,
      hi: k.hi ?? 3.4e38,
    },
    grid,
    overrides: { MASK: mask ? 1 : 0, VMODE: vmode, LAYOUT: site.layout === "nchw" ? 0 : 1 },
  });
}
