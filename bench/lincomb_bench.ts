import { gpuBench } from "./_bench.ts";
import { lincomb, type LincombTerm } from "../src/ops/lincomb.ts";

// One scheduler step on SD v1 latents at 512 px (the guided noise prediction is formed before the step). On small
// tensors the time is mostly submit overhead; 5 terms chain two dispatches (bytes count each input once).
const latent = [1, 4, 64, 64];
for (const terms of [2, 4, 5]) {
  const what = terms === 2
    ? "DDIM/Euler step"
    : terms === 4
    ? "PLMS step, 3 saved outputs"
    : "PLMS step, 4 saved (2 dispatches)";
  gpuBench(`lincomb ${terms} terms on latents [1,4,64,64] (${what})`, { bytes: (terms + 1) * 4 * 16384 }, (ctx) => {
    const xs = Array.from({ length: terms }, () => ctx.tensor(latent));
    const out = ctx.tensor(latent);
    return (rec) => void lincomb(rec, xs.map((x, k): LincombTerm => [0.5 + k, x]), { out });
  });
}
// Bandwidth at activation size.
const big = [4, 320, 64, 64], n = 4 * 320 * 64 * 64;
for (const terms of [2, 4]) {
  gpuBench(`lincomb ${terms} terms on [4,320,64,64]`, { bytes: (terms + 1) * 4 * n }, (ctx) => {
    const xs = Array.from({ length: terms }, () => ctx.tensor(big));
    const out = ctx.tensor(big);
    return (rec) => void lincomb(rec, xs.map((x, k): LincombTerm => [0.5 + k, x]), { out });
  });
}
