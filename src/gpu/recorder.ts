/**
 * Records many dispatches into one command encoder and submits them once ("record then submit"). Bindings are
 * named at the call site and declared read or read-write there; both are checked against the WGSL declaration.
 * @module
 */
import type { GpuContext } from "./context.ts";
import { type KernelSpec, packUniform, type ParamValues } from "./kernel.ts";
import { type DType, DTYPE_BYTES, fmtShape, numel, type Tensor } from "./tensor.ts";

/** One dispatch: named bindings, uniform values, workgroup counts and override constants. */
export interface DispatchArgs {
  /** Storage bindings the kernel only reads, by their WGSL names. */
  read?: Record<string, Tensor>;
  /** Storage bindings the kernel writes (`read_write` in WGSL), by their WGSL names. */
  write?: Record<string, Tensor>;
  /** Values of the kernel's `Params` uniform struct. */
  params?: ParamValues;
  /** Workgroup counts; see {@linkcode grid1d} for more than 65535 workgroups. */
  grid: readonly [number, number?, number?];
  /** Pipeline-overridable constants (`override` in WGSL); each distinct set builds its own pipeline. */
  overrides?: Record<string, number>;
}

const UNIFORM_CHUNK = 64 * 1024;

/** A 1-D workgroup count spread over x and y so that neither exceeds `maxPerDim` (kernels fold y back). */
export function grid1d(workgroups: number, maxPerDim = 65535): [number, number, number] {
  if (workgroups <= maxPerDim) return [Math.max(1, workgroups), 1, 1];
  const y = Math.ceil(workgroups / maxPerDim);
  return [Math.ceil(workgroups / y), y, 1];
}

/** Collects dispatches and copies; `submit()` sends them as one command buffer. */
export class Recorder {
  #encoder: GPUCommandEncoder;
  #pass: GPUComputePassEncoder | null = null;
  #chunks: { buffer: GPUBuffer; host: ArrayBuffer; used: number }[] = [];
  #afterSubmit: Tensor[] = [];
  /** Buffers whose recorded uses are all behind us, by byte size, for reuse by later allocations of this recording. */
  #pool: GPUBuffer[] = []; // sorted by size
  #doomed = new Set<GPUBuffer>(); // released after submit: never pooled
  #submitted = false;
  /** Dispatches recorded so far. */
  dispatches = 0;

  constructor(readonly ctx: GpuContext, readonly label: string) {
    this.#encoder = ctx.device.createCommandEncoder({ label });
  }

  /** Records one dispatch of `spec`. Validates bindings against the WGSL before encoding. */
  dispatch(spec: KernelSpec, args: DispatchArgs): void {
    if (this.#submitted) throw new Error(`Recorder "${this.label}" was already submitted`);
    const { pipeline, layout } = this.ctx.pipeline(spec, args.overrides);
    const entries: GPUBindGroupEntry[] = [];
    const given = new Map<string, ["read" | "read_write", Tensor]>();
    for (const [name, t] of Object.entries(args.read ?? {})) given.set(name, ["read", t]);
    for (const [name, t] of Object.entries(args.write ?? {})) {
      if (given.has(name)) throw new TypeError(`${spec.file}: binding "${name}" given as both read and write`);
      given.set(name, ["read_write", t]);
    }
    const maxBinding = this.ctx.limits.maxStorageBufferBindingSize;
    for (const decl of spec.iface.storage) {
      const g = given.get(decl.name);
      if (!g) throw new TypeError(`${spec.file}:${spec.entry}: binding "${decl.name}" not given`);
      if (g[0] !== decl.access) {
        throw new TypeError(
          `${spec.file}:${spec.entry}: binding "${decl.name}" is ${decl.access} in WGSL but passed as ${g[0]}`,
        );
      }
      const t = g[1];
      const size = t.buffer.size - t.offset;
      if (size > maxBinding) {
        throw new RangeError(
          `${spec.file}: tensor "${t.label}" ${fmtShape(t.shape)} is ${size} bytes, over maxStorageBufferBindingSize ` +
            `${maxBinding}; split it`,
        );
      }
      entries.push({ binding: decl.binding, resource: { buffer: t.buffer, offset: t.offset, size } });
      given.delete(decl.name);
    }
    const unknown = [...given.keys()].filter((n) => !spec.declared.has(n));
    if (unknown.length) throw new TypeError(`${spec.file}:${spec.entry}: unknown binding(s) ${unknown.join(", ")}`);
    const u = spec.iface.uniform;
    if (u) {
      if (!args.params) throw new TypeError(`${spec.file}:${spec.entry}: params not given`);
      const [buffer, offset] = this.#uniformSlot(u.size, (view) => packUniform(spec.file, u, args.params!, view));
      entries.push({ binding: u.binding, resource: { buffer, offset, size: u.size } });
    } else if (args.params && Object.keys(args.params).length) {
      throw new TypeError(`${spec.file}:${spec.entry}: params given but the kernel has no uniform struct`);
    }
    const [x, y = 1, z = 1] = args.grid;
    const maxDim = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxDim || y > maxDim || z > maxDim) {
      throw new RangeError(
        `${spec.file}:${spec.entry}: grid [${x},${y},${z}] exceeds ${maxDim} workgroups per dimension`,
      );
    }
    if (x === 0 || y === 0 || z === 0) return; // empty tensors: nothing to do
    const bindGroup = this.ctx.device.createBindGroup({ layout, entries });
    const pass = this.#pass ??= this.#encoder.beginComputePass({ label: this.label });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
  }

  /** Copies `src` into `dst` (same byte length), or `bytes` bytes of it. */
  copy(
    src: Tensor,
    dst: Tensor,
    bytes: number = Math.min(src.buffer.size - src.offset, dst.buffer.size - dst.offset),
  ): void {
    this.#endPass();
    this.#encoder.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, Math.ceil(bytes / 4) * 4);
  }

  /** Fills a tensor with zeros. */
  zero(t: Tensor): void {
    const bytes = Math.ceil((numel(t.shape) * DTYPE_BYTES[t.dtype]) / 4) * 4; // only the tensor: views share buffers
    if (bytes === 0) return;
    this.#endPass();
    this.#encoder.clearBuffer(t.buffer, t.offset, Math.min(bytes, t.buffer.size - t.offset));
  }

  /**
   * A tensor for work recorded on this recorder: reuses a recycled buffer of the same size when there is one.
   * (Reuse is safe because commands of one recording execute in order; buffers never cross into uploads, which
   * `queue.writeBuffer` would order before this recording.)
   */
  alloc(shape: readonly number[], dtype: DType = "f32", label = "tensor"): Tensor {
    const bytes = Math.max(16, Math.ceil((numel(shape) * DTYPE_BYTES[dtype]) / 16) * 16);
    // best fit: the smallest pooled buffer that holds the tensor, if it wastes at most half of itself
    let lo = 0, hi = this.#pool.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#pool[mid].size < bytes) lo = mid + 1;
      else hi = mid;
    }
    const found = this.#pool[lo];
    if (!found || found.size > 2 * bytes) return this.ctx.tensor(shape, dtype, label);
    this.#pool.splice(lo, 1);
    const buffer = found;
    return this.ctx.adopt({ buffer, shape: [...shape], dtype, offset: 0, label });
  }

  /**
   * Declares that nothing recorded after this point reads or writes `t`: its buffer may back a later `alloc`.
   * The recorder takes ownership and frees what is left in its pool after submitting.
   */
  recycle(...ts: Tensor[]): void {
    for (const t of ts) {
      if (t.offset !== 0) continue; // views: their owner decides
      this.ctx.persist(t);
      if (this.#pool.includes(t.buffer) || this.#doomed.has(t.buffer)) continue;
      const at = this.#pool.findIndex((b) => b.size >= t.buffer.size);
      this.#pool.splice(at < 0 ? this.#pool.length : at, 0, t.buffer);
    }
  }

  /**
   * Releases a scratch tensor once this recording has been submitted. The tensor leaves every open scope and is
   * never pooled for reuse, so no later tensor of this recording can share its buffer.
   */
  releaseAfterSubmit(...ts: Tensor[]): void {
    for (const t of ts) {
      this.ctx.persist(t);
      this.#doomed.add(t.buffer);
      const at = this.#pool.indexOf(t.buffer);
      if (at >= 0) this.#pool.splice(at, 1);
    }
    this.#afterSubmit.push(...ts);
  }

  /** The raw encoder, for work outside this API (timestamp queries, texture copies). Ends the current pass. */
  get encoder(): GPUCommandEncoder {
    this.#endPass();
    return this.#encoder;
  }

  /** Submits everything recorded. Resolves when queued (not when finished: use `ctx.sync()` or a read for that). */
  async submit(): Promise<void> {
    if (this.#submitted) throw new Error(`Recorder "${this.label}" was already submitted`);
    this.#submitted = true;
    this.#endPass();
    const queue = this.ctx.device.queue;
    for (const c of this.#chunks) queue.writeBuffer(c.buffer, 0, c.host, 0, c.used);
    try {
      await this.ctx.submitEncoder(this.#encoder, this.label);
    } finally {
      // Buffers in flight may be destroyed now: WebGPU keeps them alive until the queued work is done.
      for (const c of this.#chunks) this.ctx.destroyBuffer(c.buffer);
      for (const b of this.#pool) this.ctx.destroyBuffer(b);
      this.#pool = [];
      this.ctx.release(...this.#afterSubmit);
      this.#chunks = [];
      this.#afterSubmit = [];
    }
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  #uniformSlot(size: number, fill: (view: DataView) => void): [GPUBuffer, number] {
    const align = this.ctx.limits.minUniformBufferOffsetAlignment;
    let c = this.#chunks.at(-1);
    const at = c ? Math.ceil(c.used / align) * align : 0;
    if (!c || at + size > UNIFORM_CHUNK) {
      const usage = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
      c = {
        buffer: this.ctx.createBuffer(UNIFORM_CHUNK, usage, `${this.label}:uniforms`),
        host: new ArrayBuffer(UNIFORM_CHUNK),
        used: 0,
      };
      this.#chunks.push(c);
      fill(new DataView(c.host, 0, size));
      c.used = size;
      return [c.buffer, 0];
    }
    fill(new DataView(c.host, at, size));
    c.used = at + size;
    return [c.buffer, at];
  }
}
