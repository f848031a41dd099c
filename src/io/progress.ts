/**
 * A terminal progress bar on stderr: count, percent, rate and ETA. On a terminal it redraws one line; otherwise
 * (CI logs, pipes) it prints a line at most every few seconds, so logs stay readable.
 * @module
 */

/** Options of {@linkcode progressBar}. */
export interface ProgressOptions {
  /** Unit shown after the rate (e.g. "tensors", "steps"). */
  unit?: string;
  /** Minimum seconds between non-terminal log lines (default 5). */
  logEvery?: number;
  /** Write nowhere (tests, --quiet). */
  silent?: boolean;
  /** Units done before this run (a resume): counted as done, left out of the rate and the ETA. */
  start?: number;
}

/** A progress bar; call `tick` as work completes and `done` at the end. */
export interface ProgressBar {
  tick(n?: number, note?: string): void;
  done(note?: string): void;
}

const enc = new TextEncoder();

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "--:--";
  const m = Math.floor(s / 60), sec = Math.floor(s % 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m` : `${m}:${String(sec).padStart(2, "0")}`;
}

/** Starts a bar for `total` units of work labelled `label`. */
export function progressBar(label: string, total: number, opts: ProgressOptions = {}): ProgressBar {
  const tty = Deno.stderr.isTerminal();
  const t0 = performance.now();
  const start = Math.min(total, opts.start ?? 0);
  let done = start, lastLog = 0;
  const unit = opts.unit ?? "it";
  const line = (note = "") => {
    const el = (performance.now() - t0) / 1000;
    const rate = (done - start) / Math.max(el, 1e-9);
    const eta = (total - done) / rate;
    const pct = total ? Math.floor((100 * done) / total) : 100;
    const w = 24, fill = total ? Math.round((w * done) / total) : w;
    const bar = "█".repeat(fill) + "░".repeat(w - fill);
    return `${label} ${bar} ${done}/${total} ${pct}% ${rate.toFixed(rate < 10 ? 2 : 0)} ${unit}/s ` +
      `elapsed ${fmtTime(el)} eta ${fmtTime(done >= total ? 0 : eta)}${note ? ` ${note}` : ""}`;
  };
  const write = (s: string) => {
    if (!opts.silent) Deno.stderr.writeSync(enc.encode(s));
  };
  return {
    tick(n = 1, note) {
      done = Math.min(total, done + n);
      if (tty) write(`\r\x1b[2K${line(note)}`);
      else {
        const now = performance.now();
        if (now - lastLog > (opts.logEvery ?? 5) * 1000) {
          write(line(note) + "\n");
          lastLog = now;
        }
      }
    },
    done(note) {
      done = total;
      write(tty ? `\r\x1b[2K${line(note)}\n` : line(note) + "\n");
    },
  };
}
