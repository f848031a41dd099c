/**
 * The browser run: bundles `mod.ts` (scripts/bundle.ts), serves it with tests/browser/index.html from 127.0.0.1,
 * and runs the kernel self-check in headless Chromium on WebGPU (SwiftShader, so no GPU is needed).
 *
 * Without a Chromium (set CHROMIUM_PATH, or install Debian's `chromium`) or without a WebGPU adapter in it, the test
 * is reported as ignored with the reason printed; in CI (`CI=true`) either one fails instead.
 */
import { type Browser, chromium, type ConsoleMessage, type Page } from "playwright-core";
import assert from "assert";
import { findChromium } from "./_chromium.ts";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundle } from "../scripts/bundle.ts";
import { type CheckResult, SELF_CHECK_OPS } from "../mod.ts";

/**
 * Op groups the browser run must cover. The lead adds them to src/selfcheck.ts as their kernels land; until all are
 * there the "required ops" test below fails on purpose, and the page runs `binary` plus whichever of them exist.
 */
const REQUIRED_BROWSER_OPS = ["matmul", "conv2d", "attention"] as const;

const CI = Deno.env.get("CI") === "true";
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** The self-check on SwiftShader shares two CPU cores with other work: generous, but finite. */
const SELF_CHECK_TIMEOUT_MS = 180_000;
const LAUNCH_TIMEOUT_MS = 60_000;

/** Chromium flags for WebGPU on SwiftShader (software Vulkan bundled with Chromium) in a container. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--use-angle=swiftshader",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** What tests/browser/index.html leaves in `window.__result`. */
interface PageResult {
  hasGpu: boolean;
  adapter: { vendor?: string; architecture?: string; device?: string; description?: string } | null;
  selfCheckOps: string[];
  ops: string[];
  results: CheckResult[];
  ms?: number;
  error?: { name: string; message: string; stack: string };
}

/** Serves the page and the bundle, and nothing else, on a free port of 127.0.0.1. */
function serve(bundlePath: string): Deno.HttpServer<Deno.NetAddr> {
  const routes: Record<string, [string, string]> = {
    "/": [join(ROOT, "tests/browser/index.html"), "text/html; charset=utf-8"],
    "/dist/diffscope.js": [bundlePath, "text/javascript; charset=utf-8"],
    "/dist/diffscope.js.map": [`${bundlePath}.map`, "application/json"],
  };
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const route = routes[new URL(req.url).pathname];
    if (!route) return new Response("not found", { status: 404 });
    return new Response(await Deno.readFile(route[0]), { headers: { "content-type": route[1] } });
  });
}

/**
 * Collects everything the page reports as an error (console errors, uncaught exceptions, failed requests), and
 * rejects `uncaught` on the first uncaught exception, which would otherwise leave the page waiting until the timeout.
 */
function watchErrors(page: Page): { errors: string[]; uncaught: Promise<never> } {
  const errors: string[] = [];
  let fail: (e: Error) => void;
  const uncaught = new Promise<never>((_, reject) => fail = reject);
  page.on("console", (m: ConsoleMessage) => {
    if (m.type() === "error") errors.push(`console.error: ${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => {
    errors.push(`uncaught: ${e.stack ?? e.message}`);
    fail(e);
  });
  page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on("response", (r) => {
    if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  uncaught.catch(() => {}); // observed through Promise.race and `errors`; never unhandled
  return { errors, uncaught };
}

/** The ops the page runs: `binary` always (it exists from the start), plus the required groups already present. */
function browserOps(): string[] {
  return ["binary", ...REQUIRED_BROWSER_OPS.filter((op) => SELF_CHECK_OPS.includes(op))];
}

const chromiumEnv = Deno.env.get("CHROMIUM_PATH");
const chromiumPath = await findChromium(chromiumEnv);
const NO_CHROMIUM = chromiumEnv
  ? `CHROMIUM_PATH=${chromiumEnv} is not a file`
  : "no Chromium on PATH (install Debian's `chromium` or set CHROMIUM_PATH)";
if (!chromiumPath && !CI) console.warn(`%cSKIPPING browser test: ${NO_CHROMIUM}`, "color: yellow");

Deno.test({
  name: "browser: kernel self-check in headless Chromium (WebGPU on SwiftShader)",
  ignore: !chromiumPath && !CI,
  async fn(t) {
    if (!chromiumPath) throw new Error(`${NO_CHROMIUM} (CI=true, so this fails instead of skipping)`);
    const t0 = performance.now();
    const built = await bundle();
    const server = serve(built.outfile);
    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({
        executablePath: chromiumPath,
        args: CHROMIUM_ARGS,
        headless: true,
        timeout: LAUNCH_TIMEOUT_MS,
      });
      const tLaunch = performance.now();
      const page = await browser.newPage();
      const { errors, uncaught } = watchErrors(page);
      const ops = browserOps();
      await page.goto(`http://127.0.0.1:${server.addr.port}/?ops=${ops.join(",")}`);
      try {
        await Promise.race([
          page.waitForFunction(() => "__result" in globalThis, null, { timeout: SELF_CHECK_TIMEOUT_MS, polling: 100 }),
          uncaught,
        ]);
      } catch (e) {
        throw new Error(`The page did not finish the self-check: ${e}\n${errors.join("\n")}`);
      }
      const tPage = performance.now();
      const result = await page.evaluate(() => (globalThis as unknown as { __result: PageResult }).__result);
      const noAdapter = !result.hasGpu || result.error?.name === "NoAdapterError";
      const adapter = result.adapter
        ? Object.values(result.adapter).filter(Boolean).join(" / ")
        : `none (${result.error?.message})`;
      const ms = (x: number) => `${x.toFixed(0)} ms`;
      console.log(
        `bundle ${(built.bytes / 1024).toFixed(1)} KiB in ${ms(built.ms)}; Chromium launch ` +
          `${ms(tLaunch - t0 - built.ms)}; page load to result ${ms(tPage - tLaunch)} (createContext + self-check ` +
          `${result.ms === undefined ? "-" : ms(result.ms)}); adapter: ${adapter}`,
      );
      for (const r of result.results) {
        console.log(`  ${r.ok ? "ok  " : "FAIL"} ${r.name}: rel L2 ${r.error.toExponential(2)} (tol ${r.tolerance})`);
      }

      await t.step("no console errors, page errors or failed requests", () => {
        assert.deepEqual(errors, [], `the page reported errors:\n${errors.join("\n")}`);
      });
      if (noAdapter && !CI) {
        console.warn(`%cSKIPPING browser self-check: Chromium has no WebGPU adapter: ${adapter}`, "color: yellow");
      }
      await t.step({
        name: `WebGPU adapter present and self-check [${ops.join(", ")}] passes`,
        ignore: noAdapter && !CI,
        fn() {
          const flags = CHROMIUM_ARGS.join(" ");
          assert.ok(result.hasGpu, `navigator.gpu is missing in Chromium ${chromiumPath} (flags: ${flags})`);
          assert.ok(!noAdapter, `Chromium ${chromiumPath} offers no WebGPU adapter (flags: ${flags})`);
          if (result.error) throw new Error(`self-check threw ${result.error.name}: ${result.error.stack}`);
          assert.deepEqual(result.selfCheckOps, [...SELF_CHECK_OPS], "the bundle is stale: its SELF_CHECK_OPS differ");
          const ran = new Set(result.results.map((r) => r.name.split(":")[0]));
          assert.deepEqual([...ran], ops, "the page did not run every requested op group");
          const failed = result.results.filter((r) => !r.ok);
          assert.deepEqual(failed, [], "self-check cases over tolerance in the browser");
        },
      });
    } finally {
      await browser?.close();
      await server.shutdown();
    }
  },
});

Deno.test("browser: REQUIRED_BROWSER_OPS (matmul, conv2d, attention) are all in SELF_CHECK_OPS", () => {
  const missing = REQUIRED_BROWSER_OPS.filter((op) => !SELF_CHECK_OPS.includes(op));
  assert.deepEqual(
    missing,
    [],
    `src/selfcheck.ts lacks the op groups ${missing.join(", ")}, so the browser run covers only ` +
      `${browserOps().join(", ")}; add them to its CASES (REQUIRED_BROWSER_OPS in tests/browser_test.ts)`,
  );
});
