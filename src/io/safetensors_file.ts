/**
 * Safetensors on the local disk (Deno only): a {@linkcode ByteSource} that seeks and reads a file, never loading it
 * whole, and an atomic writer.
 * @module
 */
import {
  type ByteSource,
  openSafetensors,
  type SafetensorsFile,
  serializeSafetensors,
  type TensorsToWrite,
} from "../safetensors/mod.ts";

/** A byte source over a local file; close it when done (or use `await using`). */
export interface FileSource extends ByteSource {
  readonly name: string;
  close(): void;
  [Symbol.dispose](): void;
}

/**
 * Opens `path` for ranged reads. Reads are serialized (each is a seek then reads until the range is filled), so
 * concurrent `read` calls are safe.
 */
export async function fileSource(path: string | URL): Promise<FileSource> {
  const name = path instanceof URL ? decodeURIComponent(path.pathname) : path;
  const file = await Deno.open(path, { read: true });
  let size: number;
  try {
    size = (await file.stat()).size;
  } catch (e) {
    file.close();
    throw e;
  }
  let closed = false, queue: Promise<unknown> = Promise.resolve();
  const readAt = async (offset: number, length: number): Promise<Uint8Array> => {
    if (closed) throw new Error(`Cannot read "${name}": the file was closed`);
    const out = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    for (let pos = 0; pos < length;) {
      const n = await file.read(out.subarray(pos));
      if (n === null) {
        throw new Error(
          `Cannot read "${name}": it ends at byte ${offset + pos}, before ${offset + length} (truncated?)`,
        );
      }
      pos += n;
    }
    return out;
  };
  const close = () => {
    if (!closed) file.close();
    closed = true;
  };
  return {
    name,
    size,
    read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > size) {
        return Promise.reject(
          new RangeError(`Cannot read "${name}": bytes ${offset}..${offset + length} lie past its end (${size})`),
        );
      }
      const p = queue.then(() => readAt(offset, length));
      queue = p.catch(() => {});
      return p;
    },
    close,
    [Symbol.dispose]: close,
  };
}

/**
 * Opens a local safetensors file and validates its header (the file handle is closed again if that fails).
 *
 * ```ts ignore
 * await using st = await openSafetensorsFile("unet/diffusion_pytorch_model.safetensors");
 * const w = await st.readF32("conv_in.weight");
 * ```
 */
export async function openSafetensorsFile(path: string | URL): Promise<SafetensorsFile> {
  const src = await fileSource(path);
  try {
    return await openSafetensors(src);
  } catch (e) {
    src.close();
    throw e;
  }
}

/**
 * Writes a safetensors file atomically: the bytes go to `path + ".partial-<random>"`, which is synced and renamed
 * over `path` only once complete, so a failure (a bad tensor found mid-way, a full disk) leaves `path` as it was and
 * removes the partial file. Tensors whose `data` is a function (sync or async) are produced one at a time.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: TensorsToWrite,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const chunks = serializeSafetensors(tensors, metadata, { name: path }); // validates before anything touches the disk
  const tmp = `${path}.partial-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  let open = true;
  try {
    const out = new BufferedWriter(file);
    for await (const c of chunks) await out.write(c);
    await out.flush();
    await file.syncData();
    file.close();
    open = false;
    await Deno.rename(tmp, path);
  } catch (e) {
    if (open) file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Coalesces small chunks (a header, many biases) into 4 MiB writes; large chunks go straight through. */
class BufferedWriter {
  #buf = new Uint8Array(4 << 20);
  #len = 0;
  constructor(readonly file: Deno.FsFile) {}

  async write(c: Uint8Array): Promise<void> {
    if (this.#len + c.byteLength <= this.#buf.byteLength) {
      this.#buf.set(c, this.#len);
      this.#len += c.byteLength;
      return;
    }
    await this.flush();
    if (c.byteLength < this.#buf.byteLength) return this.write(c);
    await writeAll(this.file, c);
  }

  async flush(): Promise<void> {
    await writeAll(this.file, this.#buf.subarray(0, this.#len));
    this.#len = 0;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let pos = 0; pos < bytes.byteLength;) pos += await file.write(bytes.subarray(pos));
}
