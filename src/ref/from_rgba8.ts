/** CPU references for from_rgba8.wgsl (packed RGBA8 pixels, u32 with R in the low byte, to f32). */

/**
 * Planar channels: pixels u32 [B, H·W] → [B, C, H·W], `byte_c · scale[c] + shift[c]` (scale/shift: C values).
 */
export function fromRgba8Ref(
  pixels: Uint32Array,
  B: number,
  hw: number,
  C = 3,
  scale: readonly number[] = [1, 1, 1, 1],
  shift: readonly number[] = [0, 0, 0, 0],
): Float32Array {
  const out = new Float32Array(B * C * hw);
  for (let b = 0; b < B; b++) {
    for (let q = 0; q < hw; q++) {
      const v = pixels[b * hw + q];
      for (let c = 0; c < C; c++) out[(b * C + c) * hw + q] = ((v >>> (8 * c)) & 255) * scale[c] + shift[c];
    }
  }
  return out;
}

/**
 * Masks: pixels u32 [B, H·W] → [B, H·W] in [0, 1]: alpha / 255, Rec. 601 luminance / 255, or ("auto") per image
 * alpha when some pixel is not opaque, else luminance.
 */
export function maskFromRgba8Ref(
  pixels: Uint32Array,
  B: number,
  hw: number,
  mode: "alpha" | "luminance" | "auto" = "auto",
): Float32Array {
  const out = new Float32Array(B * hw);
  for (let b = 0; b < B; b++) {
    const img = pixels.subarray(b * hw, (b + 1) * hw);
    const alpha = mode === "alpha" || (mode === "auto" && img.some((p) => p >>> 24 !== 255));
    img.forEach((p, q) => {
      out[b * hw + q] = alpha
        ? (p >>> 24) / 255
        : (0.299 * (p & 255) + 0.587 * ((p >>> 8) & 255) + 0.114 * ((p >>> 16) & 255)) / 255;
    });
  }
  return out;
}
