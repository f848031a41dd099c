/**
 * Finite differences for backward tests: the gradient of a random linear functional L(x) = Σ f(x)·w of a float64
 * forward reference, by central differences. The GPU gradient of the same L is the backward run with dy = w.
 */

/** dL/dx for L(x) = Σ_i f(x)_i · w_i, by central differences with step `eps` (f evaluated in float64). */
export function fdGrad(
  f: (x: Float64Array) => ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  eps = 1e-3,
): Float64Array {
  const xs = Float64Array.from(x);
  const loss = () => {
    const y = f(xs);
    if (y.length !== w.length) throw new Error(`fdGrad: f gives ${y.length} values, w has ${w.length}`);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * w[i];
    return s;
  };
  const g = new Float64Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    const x0 = xs[i];
    xs[i] = x0 + eps;
    const up = loss();
    xs[i] = x0 - eps;
    const down = loss();
    xs[i] = x0;
    g[i] = (up - down) / (2 * eps);
  }
  return g;
}
