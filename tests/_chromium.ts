/** Finding Debian's Chromium for browser tests (Playwright never downloads one here). */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";

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

/** What a page reported while it loaded and ran: console errors and warnings, uncaught errors, failed requests. */
export interface PageWatch {
  errors: string[];
  /** Every URL the page requested, in order. */
  requests: string[];
}

/** Starts recording a page's errors and requests (call before `goto`). */
export function watchPage(page: Page): PageWatch {
  const errors: string[] = [], requests: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") errors.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on("request", (r) => requests.push(r.url()));
  return { errors, requests };
}

/**
 * A headless Chromium for static pages, or null when there is none (CI=true makes that an error instead, so a
 * missing browser never passes silently there). Close it when done.
 */
export async function launchStaticChromium(): Promise<Browser | null> {
  const path = await findChromium();
  if (!path) {
    if (Deno.env.get("CI") === "true") throw new Error("no Chromium (CI=true, so this fails instead of skipping)");
    console.warn("%cSKIPPING the Chromium part: no Chromium on PATH", "color: yellow");
    return null;
  }
  return await chromium.launch({ executablePath: path, args: [...STATIC_PAGE_ARGS], headless: true, timeout: 60_000 });
}

/** Opens a local file in a new page of `browser`, watching it from the start; waits for the load event. */
export async function openFilePage(browser: Browser, path: string): Promise<{ page: Page } & PageWatch> {
  const page = await browser.newPage();
  const watch = watchPage(page);
  await page.goto(pathToFileURL(path).href, { waitUntil: "load" });
  return { page, ...watch };
}
