/** CPU reference for the CAD ablation mask (kernels/ablate_mask.wgsl, src/cad/ablate.ts). */

/** Unsigned order of f32 bits equals float order (as topk.wgsl: NaN above +inf, −0 just below +0). */
function keyOfBits(b: number): number {
  return (b & 0x80000000 ? ~b : b | 0x80000000) >>> 0;
}

/**
 * The rank key of S (positive) or of −S with both zeros mapped to +0 (negative; `neg` in ablate_mask.wgsl), from
 * S's bits: a JS number cannot be trusted to carry a NaN's sign.
 */
function rankKey(b: number, negative: boolean): number {
  return keyOfBits(negative ? ((b & 0x7fffffff) === 0 ? 0 : (b ^ 0x80000000) >>> 0) : b);
}

/**
 * The ablation mask by a full sort of each row: in each of `rows` rows, the `q` entries ranking highest by S
 * (positive) and/or by −S (negative), ties to the lower column, are zeroed when S > 0 (resp. S < 0).
 * For a flattened matrix, pass rows = 1 and len = numel.
 * mask: [rows, len] (written: 1 keep, 0 zero), s: [rows, len].
 */
export function ablationMaskRef(
  mask: Float32Array,
  s: Float32Array,
  rows: number,
  len: number,
  q: number,
  mode: "positive" | "negative" | "both",
): void {
  mask.fill(1, 0, rows * len);
  const bits = new Uint32Array(s.buffer, s.byteOffset, s.length);
  const keys = new Uint32Array(len);
  const order = new Array<number>(len);
  const sides: boolean[] = mode === "both" ? [false, true] : [mode === "negative"];
  for (let r = 0; r < rows; r++) {
    const base = r * len;
    for (const negative of sides) {
      for (let j = 0; j < len; j++) {
        keys[j] = rankKey(bits[base + j], negative);
        order[j] = j;
      }
      order.sort((a, b) => keys[b] - keys[a] || a - b);
      for (let i = 0; i < q; i++) {
        const v = s[base + order[i]];
        if (negative ? v < 0 : v > 0) mask[base + order[i]] = 0;
      }
    }
  }
}
