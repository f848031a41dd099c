/** Finding Debian's Chromium for browser tests (Playwright never downloads one here). */
import { join } from "node:path";

/** A Chromium from CHROMIUM_PATH (only there when it is set) or from PATH; null when there is none. */
export async function findChromium(explicit = Deno.env.get("CHROMIUM_PATH")): Promise<string | null> {
  const names = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter(Boolean);
  const candidates = explicit ? [explicit] : dirs.flatMap((d) => names.map((n) => join(d, n)));
  for (const path of candidates) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch {
      // not there; try the next one
    }
  }
  return null;
}

/** Flags for a headless, offline Chromium without WebGPU (static pages). */
export const STATIC_PAGE_ARGS: readonly string[] = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];
