/**
 * SAE steering at SD v1 sizes (d = 1280, n = 5120, k = 20): the edit alone on the cond half of a CFG pair
 * (mid-block 8×8 and up-block 16×16 grids, 3 features) and the whole hook (encode + edit). The layout kernels are
 * in sae_layout_bench.ts.
 */
import { gpuBench } from "./_bench.ts";
import { Sae } from "../src/sae/model.ts";
import { encodePositions } from "../src/sae/positions.ts";
import { packSteerTable, quadrantMask, steerActivation, type SteerTableRow } from "../src/sae/steer.ts";
import type { GpuContext } from "../src/gpu/context.ts";

const d = 1280, n = 5120, k = 20;
const feats: SteerTableRow[] = [
  { id: 1722, mode: "spatial", maskRow: 0, strength: 400 },
  { id: 524, mode: "spatial", maskRow: 1, strength: 400 },
  { id: 2137, mode: "global", maskRow: 0, strength: 10 },
];

function setup(ctx: GpuContext, H: number, W: number) {
  const hw = H * W;
  const x = ctx.tensor([2, d, H, W]);
  const values = ctx.upload(new Float32Array(hw * k).fill(1), [hw, k]);
  const indices = ctx.upload(Uint32Array.from({ length: hw * k }, (_, i) => (i * 257) % n), [hw, k], "u32");
  const wDec = ctx.tensor([d, n]);
  const table = ctx.upload(packSteerTable(feats), [3, 4], "u32");
  const m = new Float32Array(2 * hw);
  m.set(quadrantMask("top-left", [H, W]));
  m.set(quadrantMask("bottom-right", [H, W]), hw);
  const masks = ctx.upload(m, [2, hw]);
  return { x, code: { values, indices }, wDec, table, masks };
}

for (const [H, W] of [[8, 8], [16, 16]]) {
  // read-modify-write of the cond half, plus the code and three W_dec columns
  const bytes = 2 * 4 * d * H * W + 2 * 4 * H * W * k + 3 * 4 * d;
  gpuBench(`sae steer edit: cond half of [2,${d},${H},${W}], 3 features`, { bytes }, (ctx) => {
    const s = setup(ctx, H, W);
    return (rec) => steerActivation(rec, s.x, s, { batch: [1, 2] });
  });
}

gpuBench(
  `sae steer hook (encode n=${n} k=${k} + edit): cond half of [2,${d},8,8]`,
  { flops: 2 * 64 * d * n },
  (ctx) => {
    const s = setup(ctx, 8, 8);
    const sae = new Sae(ctx, { d, nLatents: n, k, relu: true });
    return (rec) => {
      const code = encodePositions(rec, sae, s.x, { batch: [1, 2] });
      steerActivation(rec, s.x, { ...s, code }, { batch: [1, 2] });
      rec.recycle(code.values, code.indices);
    };
  },
);
