/**
 * The dense reference path of the SAE's decode and backward (v1 of kernels/sae_decode.wgsl and sae_backward.wgsl):
 * the sparse code scattered into a dense z [B, n] and every product a dense matmul over all n latents. Slow (O(B·n·d)
 * per product) and simple: the GPU-side oracle the sparse path is tested against (tests/sae_test.ts).
 * @module
 */
import type { Recorder } from "../gpu/recorder.ts";
import { reshape, type Tensor } from "../gpu/tensor.ts";
import type { AccumulateOptions } from "../ops/_grad.ts";
import { axpy } from "../ops/axpy.ts";
import { binary } from "../ops/binary.ts";
import { concat } from "../ops/concat.ts";
import { matmul } from "../ops/matmul.ts";
import { sum } from "../ops/reduce.ts";
import type { Sae, SaeForward, SaeParams } from "./model.ts";
import { densify } from "./sparse.ts";

/** x̂ = z · W_decᵀ + b_pre with the dense z of `fwd.code`; returns z too. */
export function denseDecode(rec: Recorder, sae: Sae, fwd: SaeForward): { z: Tensor; xHat: Tensor } {
  const z = densify(rec, fwd.code, sae.config.nLatents);
  const xHat = matmul(rec, z, sae.params.W_dec, {
    transB: true,
    bias: sae.params.b_pre,
    out: rec.alloc([z.shape[0], sae.config.d], "f32", "sae.dense.xHat"),
  });
  return { z, xHat };
}

/**
 * The same gradients as `saeBackward`, by dense matmuls:
 *
 *   dZ = dX · W_dec (main and AuxK rows);  dpre = dZ_main ⊙ gate_main + dZ_aux ⊙ gate_aux
 *   dW_dec = [dX_main; dX_aux]ᵀ · [z_main; z_aux];  dW_enc = dpreᵀ · xc;  db_enc = Σ_r dpre
 *   db_pre = Σ_r (dX_main − dpre · W_enc)
 */
export function denseBackward(
  rec: Recorder,
  sae: Sae,
  fwd: SaeForward,
  dx: Tensor,
  grads: Partial<SaeParams>,
  opts: AccumulateOptions = {},
): void {
  const { nLatents: n, relu } = sae.config;
  const { W_enc, W_dec } = sae.params;
  const [sources, B, d] = dx.shape;
  const codes = fwd.auxCode ? [fwd.code, fwd.auxCode] : [fwd.code];
  if (codes.length !== sources) {
    throw new TypeError(`denseBackward: dx has ${sources} blocks for ${codes.length} codes`);
  }
  const scratch: Tensor[] = [];
  const keep = (t: Tensor) => (scratch.push(t), t);
  const mm = (a: Tensor, b: Tensor, o: { transA?: boolean }, shape: number[]) =>
    matmul(rec, a, b, { ...o, out: keep(rec.alloc(shape, "f32", "sae.dense")) });
  const stack = (ts: Tensor[]) => ts.length === 1 ? ts[0] : keep(concat(rec, ts, { axis: 0 }));
  const dX = reshape(dx, [sources * B, d]);
  const z = stack(codes.map((c) => keep(densify(rec, c, n))));
  const gate = stack(codes.map((c, i) => keep(densify(rec, c, n, { mode: relu || i > 0 ? "positive" : "selected" }))));
  const dZ = keep(binary(rec, "mul", mm(dX, W_dec, {}, [sources * B, n]), gate)); // [sources·B, n]
  const dpre = sources === 2 ? keep(sum(rec, reshape(dZ, [2, B, n]), { axis: 0 })) : dZ;
  const put = (target: Tensor | undefined, value: () => Tensor) => {
    if (!target) return;
    const v = keep(value());
    if (opts.accumulate === false) rec.copy(v, target, 4 * v.shape.reduce((a, b) => a * b, 1));
    else axpy(rec, target, v);
  };
  put(grads.W_dec, () => mm(dX, z, { transA: true }, [d, n]));
  put(grads.W_enc, () => mm(dpre, fwd.xc, { transA: true }, [n, d]));
  put(grads.b_enc, () => sum(rec, dpre, { axis: 0 }));
  put(grads.b_pre, () => {
    const dxMain = keep(rec.alloc([B, d], "f32", "sae.dense.dx"));
    rec.copy(dx, dxMain, 4 * B * d);
    return sum(rec, keep(binary(rec, "sub", dxMain, mm(dpre, W_enc, {}, [B, d]))), { axis: 0 });
  });
  rec.recycle(...scratch);
}
