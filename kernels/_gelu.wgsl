// _gelu.wgsl — erf, erfc, the exact GELU and its derivative, for kernels that need them (WGSL has no erf). Not a
// kernel on its own: unary.wgsl, geglu.wgsl and their _bwd.wgsl splice it in with `//!include _gelu.wgsl`
// (includeWgsl in src/gpu/kernel.ts; WGSL errors in it name this file and its line).
//
//   erf(z)  = (2/√π) Σₙ (−1)ⁿ z²ⁿ⁺¹ / (n!(2n+1))       |z| < 0.5: Taylor series to z¹⁵ (relative error < 1e-9)
//   erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2)       z ≥ 0.5: Numerical Recipes' Chebyshev fit (`erfcc`),
//                                                      fractional error < 1.2e-7 for every z ≥ 0
//   gelu(x) = x·Φ(x) = ½x(1 + erf(x/√2))
//   gelu'(x) = Φ(x) + x·φ(x),  φ(x) = e^(−x²/2)/√(2π)
//
// Measured against a float64 erf: |error| < 2e-7 on the whole real line (the exp underflows to 0 past |z| ≈ 9.4,
// where erf is ±1 in f32 anyway). GELU takes the erfc branch for x < 0 so that its tail, x·erfc(|x|/√2)/2, keeps
// its relative accuracy instead of cancelling in 1 + erf.

const FRAC_1_SQRT2: f32 = 0.70710678118654752;

// erf by its Taylor series, for |z| < 0.5.
fn erf_series(z: f32) -> f32 {
  let z2 = z * z;
  let p = 1.1283791670955126 + z2 * (-0.37612638903183754 + z2 * (0.11283791670955126 + z2 * (-0.026866170645131252
    + z2 * (0.005223977625442188 + z2 * (-0.0008548327023450852 + z2 * (0.00012055332981789664
    + z2 * -0.00001492565035840625))))));
  return z * p;
}

// erfc(z) for z ≥ 0.
fn erfc_pos(z: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807
    + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(p - z * z);
}

fn erf_f32(z: f32) -> f32 {
  let a = abs(z);
  if (a < 0.5) { return erf_series(z); }
  let c = erfc_pos(a);
  return select(c - 1.0, 1.0 - c, z > 0.0);
}

fn gelu_f32(x: f32) -> f32 {
  let z = x * FRAC_1_SQRT2;
  if (abs(z) < 0.5) { return 0.5 * x * (1.0 + erf_series(z)); }
  if (x > 0.0) { return x - 0.5 * x * erfc_pos(z); }
  return 0.5 * x * erfc_pos(-z);
}

// Φ(x), the standard normal CDF, by the same three branches as gelu_f32 (so it keeps its relative accuracy for
// x < 0); gelu(x) = x·Φ(x).
fn normal_cdf_f32(x: f32) -> f32 {
  let z = x * FRAC_1_SQRT2;
  if (abs(z) < 0.5) { return 0.5 + 0.5 * erf_series(z); }
  if (x > 0.0) { return 1.0 - 0.5 * erfc_pos(z); }
  return 0.5 * erfc_pos(-z);
}

// GELU's derivative given Φ(x) (backward kernels that also need gelu(x) = x·Φ(x) compute Φ once).
fn gelu_grad_from_cdf(x: f32, cdf: f32) -> f32 {
  return cdf + x * (0.3989422804014327 * exp(-0.5 * x * x));
}

fn gelu_grad_f32(x: f32) -> f32 {
  return gelu_grad_from_cdf(x, normal_cdf_f32(x));
}
