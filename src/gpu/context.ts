/**
 * The GPU context: one device, its limits, a tracked allocator, a pipeline cache and error surfacing.
 * Runtime-agnostic: it needs only `navigator.gpu` (Deno or a browser).
 * @module
 */
import { type KernelSpec, sourceLine } from "./kernel.ts";
import {
  byteLength,
  checkShape,
  type DType,
  DTYPE_BYTES,
  fmtShape,
  fromF16,
  numel,
  type Tensor,
  toF16,
} from "./tensor.ts";
import { Recorder } from "./recorder.ts";

/** Options for {@linkcode createContext}. */
export interface ContextOptions {
  /** Use this adapter instead of requesting one. */
  adapter?: GPUAdapter;
  /** The `GPU` to request from (defaults to `navigator.gpu`). */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Fail when the adapter lacks `shader-f16` (otherwise f16 is used only when present). */
  requireF16?: boolean;
  /** Minimum `maxStorageBufferBindingSize` the caller needs, in bytes. */
  minStorageBinding?: number;
}

/** Thrown when no WebGPU adapter can be had; the message says how to get one. */
export class NoAdapterError extends Error {
  override name = "NoAdapterError";
}

/** Thrown for errors the device reported (validation, out-of-memory, internal) or device loss. */
export class GpuError extends Error {
  override name = "GpuError";
}

/** Allocation statistics of one context, in bytes. */
export interface MemoryStats {
  current: number;
  peak: number;
  /** Largest single buffer ever allocated. */
  largestBuffer: number;
  /** Buffers allocated so far. */
  allocations: number;
}

const HOW_TO_GET_AN_ADAPTER = "No WebGPU adapter is available. On Linux without a GPU install Mesa's software Vulkan " +
  "driver (`apt-get install -y mesa-vulkan-drivers`, then run again); with a GPU, install its Vulkan driver. In a " +
  "browser, use a recent Chromium with WebGPU enabled.";

/** Requests an adapter and a device with the limits and features diffscope needs. */
export async function createContext(opts: ContextOptions = {}): Promise<GpuContext> {
  const gpu = opts.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new NoAdapterError(`navigator.gpu is missing. ${HOW_TO_GET_AN_ADAPTER}`);
  const adapter = opts.adapter ?? await gpu.requestAdapter({ powerPreference: opts.powerPreference });
  if (!adapter) throw new NoAdapterError(HOW_TO_GET_AN_ADAPTER);
  const hasF16 = adapter.features.has("shader-f16");
  if (opts.requireF16 && !hasF16) {
    throw new NoAdapterError("The adapter lacks the `shader-f16` feature, which f16 compute needs.");
  }
  const al = adapter.limits;
  if (opts.minStorageBinding && al.maxStorageBufferBindingSize < opts.minStorageBinding) {
    throw new NoAdapterError(
      `The adapter's maxStorageBufferBindingSize is ${al.maxStorageBufferBindingSize} bytes; ` +
        `${opts.minStorageBinding} are needed.`,
    );
  }
  const requiredFeatures: GPUFeatureName[] = [];
  if (hasF16) requiredFeatures.push("shader-f16");
  if (adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxBufferSize: al.maxBufferSize,
      maxStorageBufferBindingSize: al.maxStorageBufferBindingSize,
      maxStorageBuffersPerShaderStage: al.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: al.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: al.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: al.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: al.maxComputeWorkgroupSizeY,
      maxComputeWorkgroupsPerDimension: al.maxComputeWorkgroupsPerDimension,
    },
  });
  return new GpuContext(adapter, device);
}

interface CachedPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** The first build's error-scope result, awaited before the next submit (it never rejects). */
  check: Promise<GpuError | null>;
}

/** One WebGPU device with everything diffscope keeps per device. */
export class GpuContext {
  readonly limits: GPUSupportedLimits;
  readonly hasF16: boolean;
  readonly memory: MemoryStats = { current: 0, peak: 0, largestBuffer: 0, allocations: 0 };
  #sizes = new WeakMap<GPUBuffer, number>();
  #pipelines = new Map<string, CachedPipeline>();
  #modules = new Map<string, GPUShaderModule>();
  #pendingChecks: Promise<GpuError | null>[] = [];
  #error: GpuError | null = null;
  #lost = false;

  constructor(readonly adapter: GPUAdapter, readonly device: GPUDevice) {
    this.limits = device.limits;
    this.hasF16 = device.features.has("shader-f16");
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.#error ??= new GpuError(`WebGPU error: ${e.message}`);
    });
    device.lost.then((info) => {
      this.#lost = true;
      if (info.reason !== "destroyed") {
        this.#error ??= new GpuError(`GPU device lost (${info.reason}): ${info.message}`);
      }
    });
  }

  /** Throws the first error the device reported since the last check, if any. */
  throwIfFailed(): void {
    const e = this.#error;
    if (e) {
      this.#error = null;
      throw e;
    }
    if (this.#lost) throw new GpuError("GPU device was destroyed or lost");
  }

  /** Allocates a tracked buffer (every buffer diffscope makes goes through here). */
  createBuffer(size: number, usage: GPUBufferUsageFlags, label = "", mappedAtCreation = false): GPUBuffer {
    this.throwIfFailed();
    const bytes = Math.max(16, Math.ceil(size / 16) * 16);
    if (bytes > this.limits.maxBufferSize) {
      throw new RangeError(
        `Buffer "${label}" needs ${bytes} bytes; the device allows at most ${this.limits.maxBufferSize}`,
      );
    }
    const buffer = this.device.createBuffer({ size: bytes, usage, label, mappedAtCreation });
    this.#sizes.set(buffer, bytes);
    const m = this.memory;
    m.current += bytes;
    m.allocations++;
    if (m.current > m.peak) m.peak = m.current;
    if (bytes > m.largestBuffer) m.largestBuffer = bytes;
    return buffer;
  }

  /** Destroys a buffer made by {@linkcode createBuffer} and stops counting it. */
  destroyBuffer(buffer: GPUBuffer): void {
    const bytes = this.#sizes.get(buffer);
    if (bytes === undefined) return;
    this.#sizes.delete(buffer);
    this.memory.current -= bytes;
    buffer.destroy();
  }

  /** Resets `peak` and `largestBuffer` to what is allocated now (for measuring one piece of work). */
  resetPeak(): void {
    this.memory.peak = this.memory.current;
    this.memory.largestBuffer = 0;
  }

  #placeholder: Tensor | null = null;
  #scopes: Map<GPUBuffer, Tensor>[] = [];

  /** Starts collecting every tensor allocated from now on (nested scopes stack). */
  beginScope(): void {
    this.#scopes.push(new Map());
  }

  /**
   * Ends the innermost scope; returns the tensors it allocated except those sharing a buffer with `keep` (for the
   * caller to release).
   */
  endScope(keep: readonly Tensor[] = []): Tensor[] {
    const s = this.#scopes.pop();
    if (!s) throw new Error("endScope without beginScope");
    for (const t of keep) s.delete(t.buffer);
    return [...s.values()];
  }

  /** Removes a tensor's buffer from every open scope: it outlives the work that made it (captures, outputs). */
  persist(t: Tensor): Tensor {
    for (const s of this.#scopes) s.delete(t.buffer);
    return t;
  }

  /** Adds a tensor's buffer to the innermost open scope (a buffer reused from a pool). */
  adopt(t: Tensor): Tensor {
    this.#scopes.at(-1)?.set(t.buffer, t);
    return t;
  }

  /** A tiny tensor to bind where a kernel's optional input is absent (its flag override keeps it unread). */
  get placeholder(): Tensor {
    return this.#placeholder ??= this.persist(this.tensor([4], "f32", "placeholder"));
  }

  /** Allocates an uninitialised (zeroed, per WebGPU) tensor. */
  tensor(shape: readonly number[], dtype: DType = "f32", label = "tensor"): Tensor {
    checkShape(label, shape);
    const bytes = numel(shape) * DTYPE_BYTES[dtype];
    if (bytes > this.limits.maxStorageBufferBindingSize) {
      throw new RangeError(
        `Tensor "${label}" ${fmtShape(shape)} ${dtype} needs ${bytes} bytes, over this device's ` +
          `maxStorageBufferBindingSize (${this.limits.maxStorageBufferBindingSize}); split it`,
      );
    }
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const t: Tensor = { buffer: this.createBuffer(bytes, usage, label), shape: [...shape], dtype, offset: 0, label };
    return this.adopt(t);
  }

  /** Uploads host data into a new tensor. f16 tensors accept f32 values and convert them. */
  upload(
    data: ArrayLike<number> | ArrayBufferView,
    shape: readonly number[],
    dtype: DType = "f32",
    label = "upload",
  ): Tensor {
    const n = numel(shape);
    const len = (data as ArrayLike<number>).length;
    if (len !== n) throw new TypeError(`upload "${label}": ${len} values for shape ${fmtShape(shape)} (${n} elements)`);
    const t = this.tensor(shape, dtype, label);
    this.write(t, data as ArrayLike<number>);
    return t;
  }

  /** Overwrites a tensor's contents from host data (queued; ordered before later submits). */
  write(t: Tensor, data: ArrayLike<number>): void {
    if (data.length !== numel(t.shape)) {
      throw new TypeError(`write "${t.label}": ${data.length} values for shape ${fmtShape(t.shape)}`);
    }
    let bytes: ArrayBufferView;
    switch (t.dtype) {
      case "f32":
        bytes = data instanceof Float32Array ? data : Float32Array.from(data);
        break;
      case "f16":
        bytes = toF16(data);
        break;
      case "i32":
        bytes = data instanceof Int32Array ? data : Int32Array.from(data);
        break;
      case "u32":
        bytes = data instanceof Uint32Array ? data : Uint32Array.from(data);
        break;
    }
    if (bytes.byteLength === 0) return; // Deno panics on 0-byte writeBuffer
    const padded = Math.ceil(bytes.byteLength / 4) * 4;
    if (padded !== bytes.byteLength) {
      const p = new Uint8Array(padded);
      p.set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      bytes = p;
    }
    this.device.queue.writeBuffer(t.buffer, t.offset, bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Reads a tensor back: f32/f16 as Float32Array, i32 as Int32Array, u32 as Uint32Array. */
  async read(t: Tensor): Promise<Float32Array | Int32Array | Uint32Array> {
    const bytes = byteLength(t);
    const raw = await this.readBytes(t.buffer, t.offset, Math.ceil(bytes / 4) * 4);
    switch (t.dtype) {
      case "f32":
        return new Float32Array(raw, 0, numel(t.shape));
      case "f16":
        return fromF16(new Uint16Array(raw, 0, numel(t.shape)));
      case "i32":
        return new Int32Array(raw, 0, numel(t.shape));
      case "u32":
        return new Uint32Array(raw, 0, numel(t.shape));
    }
  }

  /** Reads an f32/f16 tensor back as Float32Array. */
  async readF32(t: Tensor): Promise<Float32Array> {
    if (t.dtype !== "f32" && t.dtype !== "f16") throw new TypeError(`readF32 "${t.label}": dtype is ${t.dtype}`);
    return await this.read(t) as Float32Array;
  }

  /** Copies `size` bytes of a buffer into host memory (one submit, one map). */
  async readBytes(buffer: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
    await this.#awaitChecks();
    const staging = this.createBuffer(size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, "readback");
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ, 0, size);
      this.throwIfFailed();
      return staging.getMappedRange(0, size).slice(0);
    } finally {
      this.destroyBuffer(staging);
    }
  }

  /** Releases a tensor's buffer (tensors that are views share a buffer: release the owner only). */
  release(...ts: (Tensor | null | undefined)[]): void {
    for (const t of ts) if (t && t.offset === 0) this.destroyBuffer(t.buffer);
  }

  /** Starts recording dispatches; nothing runs until `submit()`. */
  recorder(label = "diffscope"): Recorder {
    return new Recorder(this, label);
  }

  /** Waits for all submitted work and surfaces any error the device reported. */
  async sync(): Promise<void> {
    await this.#awaitChecks();
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfFailed();
  }

  /**
   * The pipeline for a kernel with given override constants, built once and cached. The first build runs inside
   * a validation error scope; the returned check is awaited before submitting, so a WGSL error names its file.
   */
  pipeline(spec: KernelSpec, overrides: Record<string, number> = {}): CachedPipeline {
    const okeys = Object.keys(overrides).sort();
    const key = `${spec.file}#${spec.entry}#${okeys.map((k) => `${k}=${overrides[k]}`).join(",")}`;
    let cached = this.#pipelines.get(key);
    if (cached) return cached;
    const device = this.device;
    device.pushErrorScope("validation");
    let module = this.#modules.get(spec.source);
    if (!module) {
      module = device.createShaderModule({ code: spec.source, label: spec.file });
      this.#modules.set(spec.source, module);
    }
    const entries: GPUBindGroupLayoutEntry[] = spec.iface.storage.map((s) => ({
      binding: s.binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: s.access === "read" ? "read-only-storage" : "storage" },
    }));
    if (spec.iface.uniform) {
      entries.push({
        binding: spec.iface.uniform.binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform" },
      });
    }
    const layout = device.createBindGroupLayout({ entries, label: `${spec.file}:${spec.entry}` });
    const pipeline = device.createComputePipeline({
      label: `${spec.file}:${spec.entry}`,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: spec.entry, constants: overrides },
    });
    const check = device.popErrorScope().then(async (err) => {
      if (!err) return null;
      let detail = "";
      try {
        const info = await module!.getCompilationInfo();
        detail = info.messages
          .map((m) => `\n  ${sourceLine(spec.file, spec.source, m.lineNum, m.linePos)} ${m.type}: ${m.message}`)
          .join("");
      } catch { /* compilation info is optional */ }
      this.#pipelines.delete(key);
      return new GpuError(`Kernel ${spec.file} (entry "${spec.entry}") failed to build: ${err.message}${detail}`);
    });
    cached = { pipeline, layout, check };
    this.#pendingChecks.push(check);
    this.#pipelines.set(key, cached);
    return cached;
  }

  async #awaitChecks(): Promise<void> {
    const checks = this.#pendingChecks;
    if (checks.length === 0) return;
    this.#pendingChecks = [];
    const failed = (await Promise.all(checks)).find((e) => e);
    if (failed) {
      this.#error = null; // the uncaptured twin of this error, if any, says less
      throw failed;
    }
  }

  /**
   * @internal Finishes an encoder and submits it. Validation errors of the recording (and pipeline build errors,
   * which name their WGSL file) reject here instead of surfacing later as uncaptured errors.
   */
  async submitEncoder(encoder: GPUCommandEncoder, label: string): Promise<void> {
    this.throwIfFailed();
    this.device.pushErrorScope("validation");
    const buffer = encoder.finish();
    const scope = this.device.popErrorScope();
    await this.#awaitChecks();
    const err = await scope;
    if (err) throw new GpuError(`Recording "${label}" is invalid: ${err.message}`);
    this.device.queue.submit([buffer]);
  }

  /** Destroys the device; the context is unusable afterwards. */
  destroy(): void {
    this.device.destroy();
  }
}
