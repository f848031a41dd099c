/**
 * Writing files so that nothing half-written is left after a failure: write to a temporary name beside the
 * target, then rename over it.
 * @module
 */

/** Writes `data` to `path` atomically (temporary file + rename). */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.partial-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
