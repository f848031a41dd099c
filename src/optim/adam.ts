/**
 * Adam and AdamW on the GPU: in-place updates of parameter tensors from their gradients, with f32 moment buffers
 * owned by the optimiser (see kernels/adam.wgsl for the update and its numerics).
 * @module
 */
import src from "../../kernels/adam.wgsl" with { type: "text" };
import type { GpuContext } from "../gpu/context.ts";
import { defineKernels } from "../gpu/kernel.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { assertShape, numel, type Tensor } from "../gpu/tensor.ts";
import { checkCheckpoint } from "../models/checkpoint.ts";
import { grid1dFor, requireDtype } from "../ops/_alloc.ts";

const K = defineKernels("adam.wgsl", src, ["main", "main4"]);
const WG = 256;

/** One parameter the optimiser updates. */
export interface AdamParam {
  /** Unique name; its state is saved as `<name>.exp_avg` and `<name>.exp_avg_sq` (PyTorch's names). */
  name: string;
  /** Updated in place (f32). */
  param: Tensor;
  /** Its gradient (f32, same shape), read by `step` and cleared by `zeroGrad`. */
  grad: Tensor;
  /** Overrides the optimiser's weight decay for this parameter (e.g. 0 for biases). */
  weightDecay?: number;
}

/** A learning rate for step t = 1, 2, … (the t of the bias correction). */
export type LrSchedule = (step: number) => number;

/** Hyperparameters of {@linkcode Adam}; the defaults are PyTorch's. */
export interface AdamOptions {
  /** Learning rate, or a schedule of it (see {@linkcode linearWarmup}). Default 1e-3. */
  lr?: number | LrSchedule;
  /** Decay rates of the first and second moment estimates. Default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Added to √v̂ (not to v); tiny values such as 6.25e-10 are fine in f32. Default 1e-8. */
  eps?: number;
  /** Weight decay λ: an L2 term `λ·p` added to the gradient (Adam), or `p ← p − lr·λ·p` (AdamW). Default 0. */
  weightDecay?: number;
  /** true: AdamW's decoupled weight decay; false: Adam's L2 penalty. Default false. */
  decoupled?: boolean;
}

/** A linear warm-up from `lr/steps` to `lr` over `steps` steps, then constant: `lr · min(1, t / steps)`. */
export function linearWarmup(lr: number, steps: number): LrSchedule {
  if (!(steps >= 1)) throw new RangeError(`linearWarmup: steps must be ≥ 1, got ${steps}`);
  return (t) => lr * Math.min(1, t / steps);
}

function checkHyper(what: string, name: string, x: number, lo: number, hi: number, hiOpen = false): void {
  if (!(Number.isFinite(x) && x >= lo && (hiOpen ? x < hi : x <= hi))) {
    throw new RangeError(`${what}: ${name} must be in [${lo}, ${hi}${hiOpen ? ")" : "]"}, got ${x}`);
  }
}

interface Slot extends AdamParam {
  m: Tensor;
  v: Tensor;
  weightDecay: number;
}

/**
 * Adam (`decoupled: false`) or AdamW (`decoupled: true`) with PyTorch's update rule and bias correction. One
 * dispatch per parameter per step, recorded on the caller's recorder; the step count and every per-step scalar
 * live on the host, so nothing is read back.
 *
 * ```ts ignore
 * const opt = new Adam(ctx, [{ name: "W_enc", param: W, grad: dW }], { lr: linearWarmup(4e-4, 1000), eps: 6.25e-10 });
 * const rec = ctx.recorder();
 * opt.zeroGrad(rec);
 * // ... forward and backward accumulate into dW ...
 * opt.step(rec);
 * await rec.submit();
 * ```
 */
export class Adam {
  readonly lr: number | LrSchedule;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly decoupled: boolean;
  #slots: Slot[];
  #step = 0;
  #stepTensor: Tensor | null = null;

  constructor(readonly ctx: GpuContext, params: readonly AdamParam[], opts: AdamOptions = {}) {
    const { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0, decoupled = false } = opts;
    if (typeof lr === "number") checkHyper("Adam", "lr", lr, 0, Infinity);
    else if (typeof lr !== "function") throw new TypeError(`Adam: lr must be a number or a function of the step`);
    checkHyper("Adam", "betas[0]", betas[0], 0, 1, true);
    checkHyper("Adam", "betas[1]", betas[1], 0, 1, true);
    checkHyper("Adam", "eps", eps, 0, Infinity);
    checkHyper("Adam", "weightDecay", weightDecay, 0, Infinity);
    const names = new Set<string>();
    for (const p of params) {
      const what = `Adam: parameter "${p.name}"`;
      if (names.has(p.name)) throw new TypeError(`Adam: parameter name "${p.name}" is given twice`);
      names.add(p.name);
      requireDtype(what, p.param);
      requireDtype(`${what} gradient`, p.grad);
      assertShape(`${what}: gradient "${p.grad.label}" against param "${p.param.label}"`, p.grad.shape, p.param.shape);
      if (p.grad.buffer === p.param.buffer) throw new TypeError(`${what}: gradient and param share a buffer`);
      if (p.weightDecay !== undefined) checkHyper(what, "weightDecay", p.weightDecay, 0, Infinity);
    }
    this.lr = lr;
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    this.decoupled = decoupled;
    this.#slots = params.map((p) => ({
      ...p,
      weightDecay: p.weightDecay ?? weightDecay,
      m: ctx.persist(ctx.tensor(p.param.shape, "f32", `${p.name}.exp_avg`)),
      v: ctx.persist(ctx.tensor(p.param.shape, "f32", `${p.name}.exp_avg_sq`)),
    }));
  }

  /** Steps recorded so far (PyTorch's `step`); the next `step` uses t = steps + 1. */
  get steps(): number {
    return this.#step;
  }

  /** The learning rate of step t (default: the next step). */
  lrAt(t: number = this.#step + 1): number {
    return typeof this.lr === "number" ? this.lr : this.lr(t);
  }

  /** Records `grad ← 0` for every parameter (gradients accumulate; zeroing is explicit). */
  zeroGrad(rec: Recorder): void {
    for (const s of this.#slots) rec.zero(s.grad);
  }

  /** Records one update of every parameter from its gradient and advances the step count. */
  step(rec: Recorder): void {
    const t = this.#step + 1;
    const lr = this.lrAt(t);
    if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`Adam: the lr schedule gave ${lr} for step ${t}`);
    const [b1, b2] = this.betas;
    const common = {
      beta1: b1,
      omb1: 1 - b1,
      beta2: b2,
      omb2: 1 - b2,
      step_size: lr / (1 - b1 ** t),
      inv_bc2: 1 / Math.sqrt(1 - b2 ** t),
      eps: this.eps,
    };
    for (const s of this.#slots) {
      const n = numel(s.param.shape);
      if (n === 0) continue;
      const wd = s.weightDecay;
      const vec = n % 4 === 0 && [s.param, s.grad].every((x) => x.offset % 16 === 0);
      const count = vec ? n / 4 : n;
      const grid = grid1dFor(rec, count, WG);
      const params = {
        n: count,
        row: grid[0],
        ...common,
        wd: this.decoupled ? 0 : wd,
        lr_wd: this.decoupled ? lr * wd : 0,
      };
      if (vec) {
        rec.dispatch(K.main4, {
          read: { grad4: s.grad },
          write: { param4: s.param, m4: s.m, v4: s.v },
          params,
          grid,
          overrides: { WG },
        });
      } else {
        rec.dispatch(K.main, {
          read: { grad: s.grad },
          write: { param: s.param, m: s.m, v: s.v },
          params,
          grid,
          overrides: { WG },
        });
      }
    }
    this.#step = t;
  }

  /**
   * The optimiser's state as tensors for a checkpoint: `<name>.exp_avg`, `<name>.exp_avg_sq` per parameter and
   * `step` (f32, shape `[]`, as in PyTorch). The tensors are the optimiser's own (do not release them); `step` is
   * written now, so read or save the state before recording further steps.
   */
  state(): Map<string, Tensor> {
    this.#stepTensor ??= this.ctx.persist(this.ctx.tensor([], "f32", "step"));
    this.ctx.write(this.#stepTensor, [this.#step]);
    const m = new Map<string, Tensor>();
    for (const s of this.#slots) {
      m.set(`${s.name}.exp_avg`, s.m);
      m.set(`${s.name}.exp_avg_sq`, s.v);
    }
    m.set("step", this.#stepTensor);
    return m;
  }

  /**
   * Restores a state saved by {@linkcode state} (names and shapes must match this optimiser's parameters; every
   * problem is listed in one error). Copies the moments on the GPU and reads the step count back.
   */
  async loadState(state: ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>): Promise<void> {
    const given = state instanceof Map ? state : new Map(Object.entries(state));
    const expected = new Map<string, number[]>([["step", []]]);
    for (const s of this.#slots) {
      expected.set(`${s.name}.exp_avg`, [...s.param.shape]);
      expected.set(`${s.name}.exp_avg_sq`, [...s.param.shape]);
    }
    const shapes = new Map<string, readonly number[]>();
    for (const [k, t] of given) shapes.set(k, k === "step" && numel(t.shape) === 1 ? [] : t.shape);
    checkCheckpoint("Adam state", "loadState", expected, shapes);
    for (const [k, t] of given) {
      if (k !== "step") requireDtype(`Adam.loadState "${k}"`, t);
    }
    const stepT = given.get("step")!;
    const step = (await this.ctx.read(stepT))[0];
    if (!(Number.isInteger(step) && step >= 0)) {
      throw new RangeError(`Adam.loadState: step must be a non-negative integer, got ${step} (${stepT.dtype})`);
    }
    const rec = this.ctx.recorder("Adam.loadState");
    for (const s of this.#slots) {
      for (const [from, to] of [[given.get(`${s.name}.exp_avg`)!, s.m], [given.get(`${s.name}.exp_avg_sq`)!, s.v]]) {
        if (from.buffer !== to.buffer) rec.copy(from, to, 4 * numel(to.shape));
      }
    }
    await rec.submit();
    this.#step = step;
  }

  /** Frees the moment buffers (the parameters and gradients belong to the caller). */
  release(): void {
    for (const s of this.#slots) this.ctx.release(s.m, s.v);
    this.ctx.release(this.#stepTensor);
    this.#stepTensor = null;
  }

  /** Bytes of optimiser state on the GPU (two f32 moments per parameter element). */
  get stateBytes(): number {
    return this.#slots.reduce((a, s) => a + 8 * numel(s.param.shape), 0);
  }

  /** The gradients, in parameter order, for clipping (`clipGradNorm(rec, opt.grads, 1)`). */
  get grads(): Tensor[] {
    return this.#slots.map((s) => s.grad);
  }
}
