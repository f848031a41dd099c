/**
 * Bundles `mod.ts` into one browser ES module, `dist/diffscope.js` (plus a linked source map), with every WGSL
 * kernel inlined as a string. `deno task bundle` runs it; `tests/browser_test.ts` calls {@linkcode bundle}.
 *
 * The bundle is also the check that core code stays runtime-agnostic: a `Deno.` anywhere in the output fails the
 * build and names the source file it came from.
 * @module
 */
import * as esbuild from "esbuild";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Options of {@linkcode bundle}. */
export interface BundleOptions {
  /** Entry module, relative to the repository root. */
  entry?: string;
  /** Output file, relative to the repository root. */
  outfile?: string;
  minify?: boolean;
}

/** What {@linkcode bundle} wrote. */
export interface BundleResult {
  /** Absolute path of the bundle. */
  outfile: string;
  bytes: number;
  ms: number;
}

/** Thrown when the bundle mentions `Deno.`: core code reached for a Deno-only API. */
export class RuntimeLeakError extends Error {
  override name = "RuntimeLeakError";
}

/** Builds the browser bundle and writes it (and its `.map`) to disk. */
export async function bundle(opts: BundleOptions = {}): Promise<BundleResult> {
  const entry = join(ROOT, opts.entry ?? "mod.ts");
  const outfile = join(ROOT, opts.outfile ?? "dist/diffscope.js");
  const t0 = performance.now();
  try {
    const result = await esbuild.build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      format: "esm",
      platform: "browser",
      // WebGPU ships in Chrome 113 / Safari 26 / Firefox 141, all of which run ES2022 (class private fields).
      target: "es2022",
      loader: { ".wgsl": "text" },
      sourcemap: "linked",
      minify: opts.minify ?? false,
      write: false,
      logLevel: "silent",
    });
    const js = result.outputFiles.find((f) => f.path === outfile);
    if (!js) throw new Error(`bundle: esbuild produced no ${outfile}`);
    assertNoDeno(js.text, outfile);
    await Deno.mkdir(dirname(outfile), { recursive: true });
    for (const f of result.outputFiles) await Deno.writeFile(f.path, f.contents);
    return { outfile, bytes: js.contents.byteLength, ms: performance.now() - t0 };
  } finally {
    // esbuild keeps a child process alive between builds; stop it so callers (tests) can exit cleanly.
    await esbuild.stop();
  }
}

/** Throws {@linkcode RuntimeLeakError} when `text` mentions `Deno.`, naming the source module it came from. */
function assertNoDeno(text: string, outfile: string): void {
  const lines = text.split("\n");
  const leaks: string[] = [];
  let source = "?";
  for (let i = 0; i < lines.length; i++) {
    // Unminified esbuild output marks where each module starts with a `// path/to/file.ts` line.
    const marker = /^\/\/ (\S+\.(?:ts|js|wgsl))$/.exec(lines[i]);
    if (marker) source = marker[1];
    if (lines[i].includes("Deno.")) leaks.push(`  ${source}: ${lines[i].trim().slice(0, 160)}`);
  }
  if (leaks.length) {
    throw new RuntimeLeakError(
      `${relative(ROOT, outfile)} mentions \`Deno.\` ${leaks.length} time(s); core code must stay ` +
        `runtime-agnostic (move Deno APIs to cli.ts or src/io/):\n${leaks.join("\n")}`,
    );
  }
}

if (import.meta.main) {
  const { outfile, bytes, ms } = await bundle({ minify: Deno.args.includes("--minify") });
  console.log(`${relative(ROOT, outfile)}: ${(bytes / 1024).toFixed(1)} KiB in ${ms.toFixed(0)} ms`);
}
