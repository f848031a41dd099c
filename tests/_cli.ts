/** Running `deno run -A cli.ts …` from tests, as a user would. */

/** The command line's entry point. */
export const CLI = new URL("../cli.ts", import.meta.url).pathname;

/** What a finished command printed. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `args` (and extra environment variables) to completion. */
export async function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  const p = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: p.code, stdout: dec.decode(p.stdout), stderr: dec.decode(p.stderr) };
}

/** Starts the CLI with `args` in the background (output discarded or piped), e.g. to kill it midway. */
export function spawnCli(args: readonly string[], output: "null" | "piped" = "null"): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), { args: ["run", "-A", CLI, ...args], stdout: output, stderr: output })
    .spawn();
}
