/**
 * Reverse-mode autodiff: a tape of the ops a forward pass recorded, replayed backwards.
 *
 * - Forward records what backward needs (each node lists the tensors it saves); backward accumulates into gradient
 *   buffers; zeroing is explicit (llm.c's discipline).
 * - Only tensors that depend on a watched leaf are tracked; nodes whose inputs are all untracked are not recorded,
 *   and parameters that are not watched get no gradient buffer at all.
 * - Gradients are keyed by GPU buffer, so a reshaped view shares its source's gradient (views are free).
 * - During backward, an intermediate's gradient is recycled as soon as the node that produced the intermediate has
 *   consumed it, and each saved activation as soon as the last node that saved it has run.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { byteLength, fmtShape, reshape, type Tensor } from "../gpu/tensor.ts";

/** One differentiable op as recorded on the tape. */
export interface GradNode {
  /** For messages. */
  readonly op: string;
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  /** Tensors the backward reads (kept alive until it ran). */
  readonly saved: readonly Tensor[];
  /**
   * Accumulates input gradients: `dIn[i]` is given (to add into) exactly for the inputs that need a gradient.
   * `dOut[i]` is the gradient of `outputs[i]`, or null when nothing downstream depends on it.
   */
  backward(rec: Recorder, dOut: readonly (Tensor | null)[], dIn: readonly (Tensor | undefined)[]): void;
}

/** The tape of one (or several accumulated) forward passes. */
export class Tape {
  #tracked = new WeakSet<GPUBuffer>();
  #leaves = new Map<GPUBuffer, { tensor: Tensor; grad: Tensor }>();
  #nodes: GradNode[] = [];
  #onGrad = new Map<GPUBuffer, ((rec: Recorder, g: Tensor) => void)[]>();

  constructor(readonly ctx: GpuContext) {}

  /**
   * Watches a leaf (a parameter or an input): backward accumulates its gradient into `grad` (allocated zeroed
   * when not given). Returns the gradient tensor.
   */
  watch(t: Tensor, grad?: Tensor): Tensor {
    if (t.dtype === "f16") {
      throw new TypeError(
        `Tape.watch "${t.label}": the parameter is stored as f16 (weights "f16" are for inference); ` +
          `load the model with weights "f32" to take its gradient`,
      );
    }
    if (grad && (grad.shape.length !== t.shape.length || grad.shape.some((d, i) => d !== t.shape[i]))) {
      throw new TypeError(`Tape.watch "${t.label}": gradient ${fmtShape(grad.shape)} ≠ ${fmtShape(t.shape)}`);
    }
    const g = grad ?? this.ctx.persist(this.ctx.tensor(t.shape, "f32", `grad:${t.label}`));
    this.#leaves.set(t.buffer, { tensor: t, grad: g });
    this.#tracked.add(t.buffer);
    return g;
  }

  #roots = new Map<GPUBuffer, Tensor>();

  /**
   * Tracks an intermediate that depends on no watched leaf (a model's input embeddings, say): ops on it are then
   * recorded and {@linkcode Tape.onGrad} on it fires with its complete gradient at the end of backward. Unlike
   * {@linkcode Tape.watch} it gets no gradient buffer of its own. Does nothing when `t` is already tracked.
   */
  track(t: Tensor): void {
    if (this.tracks(t)) return;
    this.#tracked.add(t.buffer);
    this.#roots.set(t.buffer, t);
  }

  /** True when `t` depends on a watched leaf (or a tracked intermediate). */
  tracks(t: Tensor): boolean {
    return this.#tracked.has(t.buffer);
  }

  /** Records a node if any input is tracked (its outputs then are); returns whether it was recorded. */
  record(node: GradNode): boolean {
    if (!node.inputs.some((t) => this.tracks(t))) return false;
    for (const o of node.outputs) this.#tracked.add(o.buffer);
    this.#nodes.push(node);
    return true;
  }

  /**
   * Calls `fn` during backward with the complete gradient of `t` (before it is recycled: copy what you keep).
   * Used by hooks to capture gradients at module outputs.
   */
  onGrad(t: Tensor, fn: (rec: Recorder, g: Tensor) => void): void {
    if (!this.tracks(t)) return;
    const list = this.#onGrad.get(t.buffer);
    if (list) list.push(fn);
    else this.#onGrad.set(t.buffer, [fn]);
  }

  /** Every tensor some node saved (the forward must keep these alive for backward). */
  saved(): Tensor[] {
    const m = new Map<GPUBuffer, Tensor>();
    for (const n of this.#nodes) for (const t of n.saved) m.set(t.buffer, t);
    return [...m.values()];
  }

  /** Number of recorded nodes. */
  get size(): number {
    return this.#nodes.length;
  }

  /**
   * Runs backward from `seeds` (pairs of an output and its gradient), accumulating into the watched leaves'
   * gradients. Saved activations that are not leaves are released as backward passes them (after submit); the
   * tape is empty afterwards. Seeds are read, not consumed.
   */
  backward(rec: Recorder, seeds: readonly [Tensor, Tensor][]): void {
    const grads = new Map<GPUBuffer, Tensor>(); // intermediates' gradient accumulators
    for (const [out, g] of seeds) {
      if (!this.tracks(out)) {
        throw new Error(`Tape.backward: seed "${out.label}" does not depend on any watched tensor`);
      }
      if (g.shape.length !== out.shape.length || g.shape.some((d, i) => d !== out.shape[i])) {
        throw new TypeError(
          `Tape.backward: seed gradient ${fmtShape(g.shape)} for "${out.label}" ${fmtShape(out.shape)}`,
        );
      }
      const existing = grads.get(out.buffer);
      if (existing) throw new Error(`Tape.backward: two seeds for "${out.label}"`);
      // an output that later nodes read (CLIP's last_hidden_state feeds its pooled output) also receives their
      // gradients: accumulate those into a copy, never into the caller's seed
      if (this.#nodes.some((n) => n.inputs.some((x) => x.buffer === out.buffer))) {
        const acc = rec.alloc(g.shape, "f32", `grad:${out.label}`);
        rec.copy(g, acc, byteLength(g));
        grads.set(out.buffer, acc);
      } else grads.set(out.buffer, g);
    }
    const seedBuffers = new Set(seeds.map(([, g]) => g.buffer));
    // reference counts of saved tensors, to release each after its last reader
    const savedRefs = new Map<GPUBuffer, number>();
    for (const n of this.#nodes) for (const t of n.saved) savedRefs.set(t.buffer, (savedRefs.get(t.buffer) ?? 0) + 1);
    const isLeaf = (b: GPUBuffer) => this.#leaves.has(b);

    for (let i = this.#nodes.length - 1; i >= 0; i--) {
      const node = this.#nodes[i];
      // a view's gradient lives in its buffer's accumulator: see it with this node's output shape
      const dOut = node.outputs.map((o) => {
        const g = grads.get(o.buffer);
        return g ? reshape(g, o.shape) : null;
      });
      if (dOut.some((g) => g)) {
        const dIn = node.inputs.map((x) => {
          if (!this.tracks(x)) return undefined;
          const leaf = this.#leaves.get(x.buffer);
          if (leaf) return leaf.grad;
          let g = grads.get(x.buffer);
          if (!g) {
            g = rec.alloc(x.shape, "f32", `grad:${x.label}`);
            rec.zero(g);
            grads.set(x.buffer, g);
          } else g = reshape(g, x.shape); // the same buffer seen through another view
          return g;
        });
        node.backward(rec, dOut, dIn);
      }
      // the outputs' gradients are complete and now consumed
      for (const o of node.outputs) {
        const g = grads.get(o.buffer);
        if (g) { for (const fn of this.#onGrad.get(o.buffer) ?? []) fn(rec, reshape(g, o.shape)); }
        if (g && !seedBuffers.has(g.buffer) && !isLeaf(o.buffer)) rec.recycle(g);
        grads.delete(o.buffer);
      }
      for (const t of node.saved) {
        const left = savedRefs.get(t.buffer)! - 1;
        savedRefs.set(t.buffer, left);
        if (left === 0 && !isLeaf(t.buffer) && this.#owned.has(t.buffer)) rec.recycle(t);
      }
    }
    // roots are no node's output: their gradients are complete once every node ran
    for (const [b, t] of this.#roots) {
      const g = grads.get(b);
      if (g) { for (const fn of this.#onGrad.get(b) ?? []) fn(rec, reshape(g, t.shape)); }
    }
    for (const g of grads.values()) if (!seedBuffers.has(g.buffer)) rec.recycle(g);
    this.#nodes = [];
    this.#roots.clear();
    this.#owned.clear();
    this.#onGrad.clear();
  }

  #owned = new Set<GPUBuffer>();

  /** Hands forward temporaries to the tape: it releases them during backward once no node needs them. */
  own(ts: readonly Tensor[]): void {
    for (const t of ts) this.#owned.add(t.buffer);
  }

  /** Releases what the tape still owns (after a forward whose backward will not run). */
  discard(): void {
    const done = new Set<GPUBuffer>();
    for (const n of this.#nodes) {
      for (const t of n.saved) {
        if (this.#owned.has(t.buffer) && !done.has(t.buffer)) this.ctx.release(t), done.add(t.buffer);
      }
    }
    this.#nodes = [];
    this.#roots.clear();
    this.#owned.clear();
    this.#onGrad.clear();
  }

  /** The leaves' gradients, by the label of the watched tensor. */
  leafGradients(): Map<string, Tensor> {
    const m = new Map<string, Tensor>();
    for (const { tensor, grad } of this.#leaves.values()) m.set(tensor.label, grad);
    return m;
  }
}

/**
 * Disposes of a forward pass's temporaries (what its scope allocated, outputs excluded): those a node of `tape` saved
 * are handed to the tape, which frees them as backward passes them; the rest are released once `rec` is submitted.
 */
export function releaseForward(rec: Recorder, temps: readonly Tensor[], tape?: Tape): void {
  const saved = new Set(tape?.saved().map((t) => t.buffer));
  // dead once the forward is recorded: later allocations of this recording (the backward) may reuse them
  rec.recycle(...temps.filter((t) => !saved.has(t.buffer)));
  tape?.own(temps.filter((t) => saved.has(t.buffer)));
}
