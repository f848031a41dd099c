/** CPU reference for lincomb.wgsl. */

/** Σₖ cₖ·xₖ in float64, rounded once to f32. Every xₖ has the output's length (any shape, flattened). */
export function lincombRef(terms: readonly (readonly [coefficient: number, x: ArrayLike<number>])[]): Float32Array {
  const n = terms[0][1].length;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (const [c, x] of terms) acc += c * x[i];
    out[i] = acc;
  }
  return out;
}
