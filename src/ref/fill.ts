/** CPU reference of fill.wgsl's counter-based generator (PCG hash). */

function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

const unit = (h: number) => (h >>> 8) / 16777216;

/** Element i of fill's uniform [lo, hi) stream for `seed`. */
export function fillUniformRef(n: number, seed: number, lo: number, hi: number): Float32Array {
  const s = pcgHash(seed);
  return Float32Array.from({ length: n }, (_, i) => lo + (hi - lo) * unit(pcgHash((i ^ s) >>> 0)));
}

/** Element i of fill's normal stream for `seed`. */
export function fillNormalRef(n: number, seed: number, mean: number, std: number): Float32Array {
  const s = pcgHash(seed);
  return Float32Array.from({ length: n }, (_, i) => {
    const h1 = pcgHash((i ^ s) >>> 0);
    const h2 = pcgHash((h1 ^ 0x9e3779b9) >>> 0);
    const u1 = Math.max(unit(h1), 1 / 16777216), u2 = unit(h2);
    return mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  });
}
