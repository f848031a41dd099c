/**
 * Byte sources: random access to a file's bytes without holding the file, so a multi-GB checkpoint is read one
 * tensor at a time. In-memory bytes, a `Blob`/`File` (browsers) and HTTP range requests live here; a Deno file lives
 * in `src/io/safetensors_file.ts`.
 * @module
 */

/** Random access to `size` bytes. */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** A name for messages: a file name or URL. */
  readonly name?: string;
  /**
   * Resolves to exactly `length` bytes starting at `offset`, in a fresh buffer the caller owns (its byteOffset is 0),
   * or rejects. Callers keep `offset + length <= size`.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases what the source holds (a file handle); optional. */
  close?(): void | Promise<void>;
}

function checkRange(src: ByteSource, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RangeError(`Cannot read "${src.name}": invalid range offset ${offset}, length ${length}`);
  }
  if (offset + length > src.size) {
    throw new RangeError(
      `Cannot read "${src.name}": bytes ${offset}..${offset + length} lie past its end (${src.size})`,
    );
  }
}

/** A source over bytes already in memory; each read returns a copy. */
export function memorySource(bytes: Uint8Array, name = "<memory>"): ByteSource {
  const src: ByteSource = {
    size: bytes.byteLength,
    name,
    read(offset, length) {
      checkRange(src, offset, length);
      return Promise.resolve(bytes.slice(offset, offset + length));
    },
  };
  return src;
}

/** A source over a `Blob` or `File` (a browser file input, a drag-and-drop); named after the file when it has one. */
export function blobSource(blob: Blob, name?: string): ByteSource {
  const src: ByteSource = {
    size: blob.size,
    name: name ?? ((blob as File).name || "<blob>"),
    async read(offset, length) {
      checkRange(src, offset, length);
      const bytes = new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      if (bytes.byteLength !== length) {
        throw new Error(`Cannot read "${src.name}": got ${bytes.byteLength} of ${length} bytes at ${offset}`);
      }
      return bytes;
    },
  };
  return src;
}

/** Options for {@linkcode httpRangeSource}. */
export interface HttpRangeSourceOptions {
  /** Extra request headers (e.g. `Authorization`). */
  headers?: HeadersInit;
  /** The fetch to use (defaults to the global one). */
  fetch?: typeof fetch;
  /**
   * Bytes fetched by the first request, which also learns the size; later reads inside them are served from memory.
   * Covers the header of most checkpoints in one round trip. Default 256 KiB.
   */
  prefetchBytes?: number;
}

/**
 * A source reading `url` with HTTP `Range: bytes=a-b` requests (one per read), for checkpoints too large to download
 * whole. The server must answer 206 Partial Content with a `Content-Range` header (in browsers across origins, the
 * server must also expose it through `Access-Control-Expose-Headers`); a server that ignores ranges is an error rather
 * than a silent full download.
 */
export async function httpRangeSource(url: string | URL, opts: HttpRangeSourceOptions = {}): Promise<ByteSource> {
  const name = String(url);
  const doFetch = opts.fetch ?? globalThis.fetch;
  const fail = (p: string, cause?: unknown) => new Error(`Cannot read "${name}": ${p}`, { cause });

  async function get(offset: number, length: number): Promise<{ bytes: Uint8Array; total: number }> {
    const range = `bytes=${offset}-${offset + length - 1}`;
    const headers = new Headers(opts.headers);
    headers.set("Range", range);
    let res: Response;
    try {
      res = await doFetch(url, { headers });
    } catch (e) {
      throw fail(`fetching ${range} failed: ${(e as Error).message}`, e);
    }
    const cr = parseContentRange(res.headers.get("Content-Range"));
    if (res.status === 416 && cr?.total === 0) { // an empty file satisfies no range
      await res.body?.cancel();
      return { bytes: new Uint8Array(0), total: 0 };
    }
    if (res.status !== 206) {
      await res.body?.cancel();
      throw fail(
        res.status === 200
          ? "the server ignored the Range header (status 200); reading tensors one at a time needs 206 Partial Content"
          : `HTTP ${res.status} ${res.statusText} for ${range}`,
      );
    }
    if (!cr || cr.start !== offset || cr.total === undefined) {
      await res.body?.cancel();
      throw fail(`asked for ${range}, got Content-Range ${JSON.stringify(res.headers.get("Content-Range"))}`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.byteLength !== cr.end - cr.start + 1) {
      throw fail(`Content-Range says ${cr.end - cr.start + 1} bytes, the body has ${bytes.byteLength}`);
    }
    return { bytes, total: cr.total };
  }

  const first = await get(0, Math.max(8, opts.prefetchBytes ?? 1 << 18));
  const prefix = first.bytes;
  const src: ByteSource = {
    size: first.total,
    name,
    async read(offset, length) {
      checkRange(src, offset, length);
      if (length === 0) return new Uint8Array(0);
      if (offset + length <= prefix.byteLength) return prefix.slice(offset, offset + length);
      const { bytes } = await get(offset, length);
      if (bytes.byteLength !== length) throw fail(`asked for ${length} bytes at ${offset}, got ${bytes.byteLength}`);
      return bytes;
    },
  };
  return src;
}

/** Parses `bytes 0-99/1234` (total undefined when `*`) and `bytes *\/1234` (start and end -1). */
function parseContentRange(h: string | null): { start: number; end: number; total?: number } | null {
  const m = h?.match(/^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i);
  if (!m) return null;
  return { start: Number(m[1] ?? -1), end: Number(m[2] ?? -1), total: m[3] === "*" ? undefined : Number(m[3]) };
}
