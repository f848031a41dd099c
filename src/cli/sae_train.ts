/**
 * `diffscope sae train`: a TopK SAE trained on an activation store (or a plain [N, d] safetensors file), with a
 * progress bar, metrics lines and a `<out>.metrics.jsonl` log, periodic checkpoints in `<out>.ckpt/` that hold the
 * whole training state (`--resume` continues bit-exactly), and the SAE written to `--out` only once training is
 * done. Deno edge code.
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { openActivationStore } from "../io/activation_store.ts";
import { writeFileAtomic } from "../io/files.ts";
import { progressBar } from "../io/progress.ts";
import {
  loadTrainCheckpoint,
  openActivationsFile,
  saveSaeFile,
  saveTrainCheckpoint,
  trainConfigJson,
} from "../io/sae_files.ts";
import type { ActivationSource } from "../sae/sources.ts";
import {
  resolveTrainConfig,
  REVELIO_KSAE,
  type SaeMetrics,
  type SaeTrainConfig,
  trainSAE,
  type TrainState,
} from "../sae/train.ts";

/** Arguments of {@linkcode trainCommand}; absent numbers take the preset's value, then SDLens' default. */
export interface TrainArgs {
  /** An activation store folder, or `FILE.safetensors[:TENSOR]` holding one [N, d] tensor. */
  data: string;
  out: string;
  nLatents?: number;
  k?: number;
  batch?: number;
  steps?: number;
  epochs?: number;
  lr?: number;
  kAux?: number;
  deadSteps?: number;
  seed?: number;
  preset?: "sdlens" | "revelio";
  /** Store rows of these denoising steps only. */
  atSteps?: number[];
  /** Store rows of this half only. */
  half?: "cond" | "uncond";
  metricsEvery: number;
  /** Steps between checkpoints (0: none). */
  checkpointEvery: number;
  resume?: boolean;
  quiet?: boolean;
}

/** An activation source to close after training, and what the saved SAE should say about it. */
interface TrainingData {
  source: ActivationSource;
  /** Rows before a filter (for messages). */
  describe: string;
  meta: Record<string, unknown>;
  close(): Promise<void>;
}

/** Opens `--data`: a store folder (with the step/half filter) or a safetensors file with an optional `:TENSOR`. */
async function openData(a: TrainArgs): Promise<TrainingData> {
  const stat = await Deno.stat(a.data).catch(() => null);
  if (stat?.isDirectory) {
    const store = await openActivationStore(a.data, { steps: a.atSteps, half: a.half });
    const m = store.manifest;
    const filter = [a.atSteps && `step ${a.atSteps.join(",")}`, a.half].filter(Boolean).join(", ");
    return {
      source: store,
      describe: `${a.data} (${store.rows} of ${m.rows} rows${filter ? `: ${filter}` : ""})`,
      meta: {
        hook: m.hook,
        data: a.data,
        at_steps: a.atSteps ?? m.atSteps,
        half: a.half ?? m.half,
        sampling_steps: m.steps,
        ...(m.grid ? { grid: m.grid } : {}),
      },
      close: () => store.close(),
    };
  }
  if (a.atSteps || a.half) {
    throw new Error(`--at-step and --half select rows of an activation store; ${a.data} is not a folder`);
  }
  const split = stat ? null : /^(.+\.safetensors):([^/]+)$/.exec(a.data);
  const [path, tensor] = split ? [split[1], split[2]] : [a.data, undefined];
  if (!stat && !(await Deno.stat(path).catch(() => null))) {
    throw new Error(
      `--data ${a.data}: no such file or folder (an activation store folder or FILE.safetensors[:TENSOR])`,
    );
  }
  const file = await openActivationsFile(path, tensor);
  return {
    source: file,
    describe: `${a.data} (${file.rows} rows)`,
    meta: { data: a.data, ...(tensor ? { tensor } : {}) },
    close: () => file.close(),
  };
}

/** The trainer config from the flags: the preset, then every flag given. */
function trainConfig(a: TrainArgs, d: number): SaeTrainConfig {
  const revelio = a.preset === "revelio";
  if (revelio && a.kAux !== undefined && a.kAux > 0) {
    throw new RangeError("--k-aux: Revelio's k-SAE has no AuxK loss (--preset revelio); leave --k-aux out");
  }
  const { steps: presetSteps, ...presetRest } = revelio ? REVELIO_KSAE : { k: 20 };
  // the preset's length (Revelio: 10,240 steps) gives way to --epochs as well as to --steps
  const preset: Omit<SaeTrainConfig, "d"> = a.epochs === undefined ? { ...presetRest, steps: presetSteps } : presetRest;
  const nLatents = a.nLatents ?? (revelio ? 64 * d : 4 * d);
  const given: Partial<SaeTrainConfig> = {
    nLatents,
    k: a.k,
    batchSize: a.batch,
    steps: a.steps,
    epochs: a.epochs,
    lr: a.lr,
    kAux: a.kAux ?? (preset.kAux === undefined ? Math.min(256, nLatents) : undefined), // small SAEs: every latent
    deadSteps: a.deadSteps,
    seed: a.seed,
  };
  for (const key of Object.keys(given) as (keyof SaeTrainConfig)[]) if (given[key] === undefined) delete given[key];
  return { ...preset, ...given, d };
}

/** The latest checkpoint in a checkpoint folder, or null. */
async function latestCheckpoint(dir: string): Promise<string | null> {
  let best: [number, string] | null = null;
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = /^step-(\d+)\.safetensors$/.exec(e.name);
      if (m && (!best || Number(m[1]) > best[0])) best = [Number(m[1]), `${dir}/${e.name}`];
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return best?.[1] ?? null;
}

/** Training settings that must agree between a checkpoint and the run resuming it (all but the length). */
function sameRun(saved: Record<string, unknown>, now: Record<string, unknown>): string[] {
  const differ: string[] = [];
  for (const [key, v] of Object.entries(now)) {
    if (["steps", "epochs", "data", "mse_scale", "step"].includes(key)) continue;
    if (JSON.stringify(saved[key]) !== JSON.stringify(v)) {
      differ.push(`${key} ${JSON.stringify(saved[key])} (now ${JSON.stringify(v)})`);
    }
  }
  return differ;
}

function fmtMetrics(m: SaeMetrics, steps: number): string {
  return `step ${m.step}/${steps}  loss ${m.loss.toPrecision(4)}  scaled MSE ${m.scaledMse.toPrecision(4)}  ` +
    `EV ${m.explainedVariance.toFixed(4)}  L0 ${m.l0.toFixed(1)}  dead ${(100 * m.deadFraction).toFixed(2)}%` +
    (m.auxActive && m.deadFraction > 0 ? `  aux ${m.auxLoss.toPrecision(3)}` : "");
}

/** Trains (or resumes) an SAE; returns a summary line. Throws when interrupted (a checkpoint is left to resume). */
export async function trainCommand(ctx: GpuContext, a: TrainArgs): Promise<string> {
  const data = await openData(a);
  try {
    const { source } = data;
    const config = trainConfig(a, source.d);
    const c = resolveTrainConfig(config);
    if (source.rows < c.batchSize) {
      throw new RangeError(
        `${data.describe} has fewer rows than one batch of ${c.batchSize}: pass --batch ${source.rows} or less ` +
          `(or collect more activations)`,
      );
    }
    const ckptDir = `${a.out}.ckpt`;
    const metricsPath = `${a.out}.metrics.jsonl`;
    const identity = { ...data.meta, ...trainConfigJson(c) };

    // resume from the latest checkpoint, or refuse to overwrite one by accident
    let resume: TrainState | undefined;
    const latest = await latestCheckpoint(ckptDir);
    if (latest && !a.resume) {
      throw new Error(
        `${ckptDir} holds a checkpoint of an earlier run (${latest}): pass --resume to continue it, or remove the folder`,
      );
    }
    if (latest) {
      const ck = await loadTrainCheckpoint(latest);
      if (ck.config.d !== source.d) {
        throw new TypeError(
          `--resume: ${latest} was trained on rows of d = ${ck.config.d}; --data has d = ${source.d}`,
        );
      }
      const differ = sameRun(
        { n_latents: ck.config.nLatents, k: ck.config.k, relu: ck.config.relu, ...ck.extra },
        { n_latents: c.nLatents, k: c.k, relu: c.relu, ...identity },
      );
      if (differ.length) {
        throw new Error(
          `--resume: ${latest} was made with other settings: ${differ.join(", ")}; ` +
            `rerun with the same flags, or remove ${ckptDir}`,
        );
      }
      resume = ck.state;
      if (!a.quiet) console.error(`resuming ${latest} at step ${resume.step}`);
    } else if (a.resume && !a.quiet) console.error(`no checkpoint in ${ckptDir}: starting a new run`);

    // the metrics log keeps what the resumed run had done up to its checkpoint
    const kept = resume
      ? (await Deno.readTextFile(metricsPath).catch(() => "")).split("\n").filter((l) => {
        try {
          return l && JSON.parse(l).step <= resume!.step;
        } catch {
          return false;
        }
      })
      : [];
    await writeFileAtomic(metricsPath, new TextEncoder().encode(kept.map((l) => l + "\n").join("")));

    const steps = c.steps ?? c.epochs * Math.floor(source.rows / c.batchSize);
    const start = resume?.step ?? 0;
    // counts this session's steps only, so the rate and ETA are right after a resume
    const bar = progressBar(start ? `train (from step ${start} of ${steps})` : "train", steps - start, {
      unit: "steps",
      silent: a.quiet,
    });
    const tty = Deno.stdout.isTerminal() && Deno.stderr.isTerminal();
    const t0 = performance.now();
    const rate = (step: number) => ((step - start) * c.batchSize) / Math.max((performance.now() - t0) / 1000, 1e-9);
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    Deno.addSignalListener("SIGINT", onSignal);
    let checkpointed = 0;
    let result;
    try {
      if (resume && resume.order.perm.length !== source.rows) {
        throw new RangeError(
          `--resume: ${latest} was trained over ${resume.order.perm.length} rows; --data ${data.describe} has ` +
            `${source.rows} (the same data and filters are needed to continue)`,
        );
      }
      result = await trainSAE(ctx, source, config, {
        resume,
        signal: abort.signal,
        metricsEvery: a.metricsEvery,
        checkpointEvery: a.checkpointEvery,
        onStep: (step) => bar.tick(1, `${rate(step).toFixed(0)} tokens/s`),
        onMetrics: (m) => {
          Deno.writeTextFileSync(metricsPath, JSON.stringify(m) + "\n", { append: true });
          if (!a.quiet) console.log((tty ? "\r\x1b[2K" : "") + fmtMetrics(m, steps));
        },
        onCheckpoint: async (ck) => {
          await Deno.mkdir(ckptDir, { recursive: true });
          const path = `${ckptDir}/step-${String(ck.step).padStart(8, "0")}.safetensors`;
          await saveTrainCheckpoint(path, ck.sae.config, await ck.state(), { ...identity, step: ck.step });
          for await (const e of Deno.readDir(ckptDir)) { // only the latest is needed to resume
            if (/^step-\d+\.safetensors$/.test(e.name) && `${ckptDir}/${e.name}` !== path) {
              await Deno.remove(`${ckptDir}/${e.name}`);
            }
          }
          checkpointed = ck.step;
        },
      });
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
    }
    const { sae, history } = result;
    try {
      if (result.steps < steps) {
        if (!a.quiet) console.error(); // ends the bar's line
        throw new Error(
          checkpointed === result.steps
            ? `interrupted at step ${result.steps}/${steps}; add --resume to the same command to continue`
            : `interrupted at step ${result.steps}/${steps} (no checkpoint: --checkpoint-every 0)`,
        );
      }
      bar.done(`${rate(steps).toFixed(0)} tokens/s`);
      const last = history.at(-1);
      const final = last
        ? {
          scaled_mse: last.scaledMse,
          explained_variance: last.explainedVariance,
          l0: last.l0,
          dead_fraction: last.deadFraction,
        }
        : {};
      await saveSaeFile(a.out, sae, {
        ...identity,
        steps: result.steps,
        tokens: result.tokens,
        rows: source.rows,
        mse_scale: result.mseScale,
        ...final,
      });
      await Deno.remove(ckptDir, { recursive: true }).catch(() => {});
      const sc = sae.config;
      return `${a.out}: SAE d ${sc.d}, ${sc.nLatents} latents, k ${sc.k}, ${result.steps} steps (${result.tokens} ` +
        `tokens${resume ? `, resumed at step ${resume.step}` : ""}) on ${data.describe}` +
        (last
          ? `; scaled MSE ${last.scaledMse.toPrecision(4)}, EV ${last.explainedVariance.toFixed(4)}, ` +
            `L0 ${last.l0.toFixed(1)}, dead ${(100 * last.deadFraction).toFixed(2)}%`
          : "");
    } finally {
      sae.release();
    }
  } finally {
    await data.close();
  }
}
