/**
 * `diffscope forward`: one U-Net evaluation on inputs from a safetensors file, writing the output and captured
 * activations, so that users can cross-check diffscope against PyTorch. Deno edge code (files, progress).
 * @module
 */
import type { GpuContext } from "../gpu/context.ts";
import { Hooks } from "../hooks/hooks.ts";
import { openSafetensorsFile, writeSafetensorsFile } from "../io/safetensors_file.ts";
import { localModelFiles } from "../io/model_dir.ts";
import { type ProgressBar, progressBar } from "../io/progress.ts";
import { loadUNet } from "../models/unet/load.ts";
import type { SafetensorsFile } from "../safetensors/reader.ts";
import type { TensorToWrite } from "../safetensors/writer.ts";
import { Tape } from "../autodiff/tape.ts";
import { selectNames } from "../autodiff/select.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { WeightStorage } from "../models/checkpoint.ts";

/** Arguments of {@linkcode forwardCommand}. */
export interface ForwardArgs {
  /** A diffusers folder (with `unet/`) or a U-Net folder itself (with `config.json`). */
  model: string;
  inputs: string;
  out: string;
  capture: string[];
  variant?: string;
  /** How weight matrices are stored on the GPU ("f16" halves their memory; not with --backward). */
  weights?: WeightStorage;
  quiet?: boolean;
  /** A tensor of the inputs file shaped like the output: writes the gradients of sum(output · it). */
  backward?: string;
  /** Which parameters get `grad/<name>` (glob, `*` crosses dots; default all when --backward is given). */
  grads?: string;
}

/** Finds an input by its plain name or the fixture's `input/` name. */
function inputName(st: SafetensorsFile, name: string): string {
  for (const n of [name, `input/${name}`]) if (st.has(n)) return n;
  throw new Error(`${st.name}: no tensor "${name}" (nor "input/${name}"); it has ${st.names.join(", ")}`);
}

/** Runs the command; returns a summary line. */
export async function forwardCommand(ctx: GpuContext, a: ForwardArgs): Promise<string> {
  const files = localModelFiles(a.model);
  const subfolder = (await files.exists("unet/config.json")) ? "unet" : (await files.exists("config.json")) ? "" : null;
  if (subfolder === null) {
    throw new Error(`${a.model}: neither "unet/config.json" nor "config.json" exists; pass a diffusers model folder`);
  }
  await using st = await openSafetensorsFile(a.inputs);
  const names = {
    sample: inputName(st, "sample"),
    timesteps: inputName(st, "timesteps"),
    ehs: inputName(st, "encoder_hidden_states"),
  };
  let bar: ProgressBar | undefined;
  const unet = await loadUNet(ctx, files, {
    subfolder: subfolder || undefined,
    variant: a.variant,
    weights: a.weights,
    onProgress: (done, total) => {
      bar ??= progressBar("loading U-Net", total, { unit: "tensors", silent: a.quiet });
      if (done === total) bar.done();
      else bar.tick();
    },
  });
  const up = async (n: string) => ctx.upload(await st.readF32(n), st.info(n).shape, "f32", n);
  const tsInfo = st.info(names.timesteps);
  const ts = tsInfo.dtype.startsWith("I") || tsInfo.dtype.startsWith("U")
    ? Float32Array.from(await st.readI32(names.timesteps))
    : await st.readF32(names.timesteps);
  const sample = await up(names.sample);
  const inputs = {
    sample,
    timesteps: ctx.upload(ts, [ts.length], "f32", "timesteps"),
    encoderHiddenStates: await up(names.ehs),
  };
  const hooks = new Hooks();
  const caps = a.capture.map((p) => hooks.capture(p));
  const tape = a.backward ? new Tape(ctx) : undefined;
  const grads = new Map<string, Tensor>();
  if (tape) {
    for (const n of selectNames(unet.params.keys(), a.grads ?? "*")) {
      grads.set(`grad/${n}`, tape.watch(unet.params.get(n)!));
    }
    grads.set("grad_input/sample", tape.watch(inputs.sample));
    grads.set("grad_input/encoder_hidden_states", tape.watch(inputs.encoderHiddenStates));
  }
  const rec = ctx.recorder("forward");
  const out = unet.forward(rec, inputs, { hooks, timestep: ts[0], tape });
  if (tape) {
    const wName = inputName(st, a.backward!);
    if (st.info(wName).shape.join() !== out.shape.join()) {
      throw new Error(
        `--backward ${a.backward}: ${JSON.stringify(st.info(wName).shape)} is not the output's shape ${
          JSON.stringify(out.shape)
        }`,
      );
    }
    const w = await up(wName);
    tape.backward(rec, [[out, w]]);
    rec.releaseAfterSubmit(w);
  }
  await rec.submit();
  const tensors: Record<string, TensorToWrite> = {
    sample: { dtype: "F32", shape: out.shape, data: await ctx.readF32(out) },
  };
  for (const [name, g] of grads) tensors[name] = { dtype: "F32", shape: g.shape, data: await ctx.readF32(g) };
  for (const c of caps) {
    for (const { record, data } of await c.read(ctx)) {
      tensors[`act/${record.path}`] = { dtype: "F32", shape: record.tensor.shape, data };
    }
  }
  await writeSafetensorsFile(a.out, tensors, { producer: "diffscope forward" });
  unet.release();
  ctx.release(...grads.values());
  const extra = [caps.length ? `${caps.length} activation(s)` : "", grads.size ? `${grads.size} gradient(s)` : ""]
    .filter(Boolean);
  return `wrote ${a.out}: sample ${JSON.stringify(out.shape)}${extra.length ? ` and ${extra.join(", ")}` : ""}`;
}
