/**
 * Optimisers for training on the GPU (sparse autoencoders, toy models): Adam / AdamW with f32 moments, and global
 * gradient-norm clipping. Both record onto the caller's recorder and never read back.
 *
 * ```ts ignore
 * const dW = ctx.tensor(W.shape, "f32", "grad:W");
 * const opt = new Adam(ctx, [{ name: "W", param: W, grad: dW }], { lr: 1e-3, decoupled: true });
 * // each step:
 * const rec = ctx.recorder();
 * opt.zeroGrad(rec);
 * const tape = new Tape(ctx);
 * tape.watch(W, dW);
 * // forward with new DiffOps(rec, tape), then tape.backward(rec, seeds)
 * const norm = clipGradNorm(rec, opt.grads, 1.0);
 * opt.step(rec);
 * await rec.submit();
 * ```
 * @module
 */
export * from "./adam.ts";
export * from "./clip.ts";
