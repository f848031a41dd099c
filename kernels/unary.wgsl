// unary.wgsl — elementwise unary ops; the OP override picks one per pipeline.
//
//   OP 0 scale       out = a·x + b
//   OP 1 silu        out = x·σ(x),             σ(x) = 1/(1 + e⁻ˣ)
//   OP 2 gelu        out = x·Φ(x) = ½x(1 + erf(x/√2))   (exact erf form: torch's approximate="none")
//   OP 3 quick_gelu  out = x·σ(1.702x)         (CLIP's activation)
//   OP 4 clamp       out = min(max(x, a), b)
//   OP 5 erf         out = erf(x)
//
// erf and gelu come from _gelu.wgsl, spliced in by the `//!include` below (|erf error| < 2e-7 everywhere).
//
// Version ladder:
//   v1: one invocation per element, the 1-D grid folded over x and y.
//   v2 (this file): one invocation per vec4 (16-byte loads and stores; 2.5× faster than v1 on lavapipe, where
//       per-invocation overhead dominates). The last, partial vec4 is done component by component, so nothing past
//       element n is written (a tensor may be a view followed by other data; reading the rest of that vec4 is safe
//       because bindings run to the end of a buffer, whose size is a multiple of 16 bytes).
// `inplace` is the same loop over `out` alone: WebGPU forbids one buffer bound read-only and read-write in the same
// dispatch, so an in-place update binds a placeholder to `x`.
//
// Backward (unary_bwd.wgsl; dy → dx; needs x):
//   scale       dx = a·dy
//   silu        dx = dy·σ(x)·(1 + x·(1 − σ(x)))
//   gelu        dx = dy·(Φ(x) + x·φ(x)),   φ(x) = e^(−x²/2)/√(2π)
//   quick_gelu  s = σ(1.702x);  dx = dy·(s + 1.702·x·s·(1 − s))
//   clamp       dx = dy where a ≤ x ≤ b, else 0 (torch's convention at the bounds)
//   erf         dx = dy·(2/√π)·e^(−x²)

struct Params {
  n: u32,   // elements (not vec4s)
  row: u32, // workgroups along x (folds the 2-D grid back to a linear index)
  a: f32,   // scale: alpha; clamp: lower bound
  b: f32,   // scale: beta;  clamp: upper bound
}

override OP: u32 = 0u;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

//!include _gelu.wgsl

fn sigmoid(v: f32) -> f32 {
  return 1.0 / (1.0 + exp(-v));
}

fn apply(v: f32) -> f32 {
  switch OP {
    case 0u: { return p.a * v + p.b; }
    case 1u: { return v * sigmoid(v); }
    case 2u: { return gelu_f32(v); }
    case 3u: { return v * sigmoid(1.702 * v); }
    case 4u: { return min(max(v, p.a), p.b); }
    default: { return erf_f32(v); }
  }
}

fn apply4(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(apply(v.x), apply(v.y), apply(v.z), apply(v.w));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  let full = p.n / 4u;
  if (i < full) {
    out[i] = apply4(x[i]);
  } else if (i == full) {
    for (var k = 0u; k < p.n % 4u; k++) { out[i][k] = apply(x[i][k]); }
  }
}

@compute @workgroup_size(WG)
fn inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  let full = p.n / 4u;
  if (i < full) {
    out[i] = apply4(out[i]);
  } else if (i == full) {
    for (var k = 0u; k < p.n % 4u; k++) { out[i][k] = apply(out[i][k]); }
  }
}
