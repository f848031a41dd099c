// adam.wgsl — one Adam / AdamW step of one parameter tensor, in place, with f32 moments (PyTorch's update):
//
//   g ← grad + wd · p                          Adam's L2 penalty (wd = 0 for AdamW)
//   p ← p − lr·λ · p                           AdamW's decoupled decay (lr_wd = 0 for Adam)
//   m ← β1 · m + (1 − β1) · g
//   v ← β2 · v + (1 − β2) · g²
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
//
// The host computes every per-step scalar (lr/(1 − β1ᵗ), 1/√(1 − β2ᵗ), 1 − β1, 1 − β2, lr·λ) in f64 and rounds it
// to f32 once: 1 − f32(0.999) is 0.00099998713, 1.3e-5 off, and would bias v by as much. ε is added to √v̂, not to
// v, so the SAE papers' ε = 6.25e-10 is an ordinary f32 (normals reach 1.2e-38); it matters where |g| ≈ 1e-9.
//
// Version ladder: v1 (this file) one invocation per element (`main`) or per vec4 (`main4`, when the length is a
// multiple of 4 and the views are 16-byte aligned), 2-D folded grid; a step reads p, g, m, v and writes p, m, v
// (28 bytes per element), so it is bandwidth-bound and fusing parameters into one dispatch would save only launches.
// Backward: none (an optimiser step is not differentiated).

struct Params {
  n: u32,           // elements (main4: vec4 groups)
  row: u32,         // workgroups along x of the folded grid
  beta1: f32,
  omb1: f32,        // 1 − β1
  beta2: f32,
  omb2: f32,        // 1 − β2
  step_size: f32,   // lr / (1 − β1ᵗ)
  inv_bc2: f32,     // 1 / √(1 − β2ᵗ)
  eps: f32,
  wd: f32,          // coupled (L2) weight decay
  lr_wd: f32,       // lr · decoupled weight decay
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> v4: array<vec4<f32>>;
@group(0) @binding(8) var<uniform> p: Params;

struct Updated {
  param: f32,
  m: f32,
  v: f32,
}

fn adam(param0: f32, grad0: f32, m0: f32, v0: f32) -> Updated {
  let g = grad0 + p.wd * param0;
  let decayed = param0 - p.lr_wd * param0;
  let m1 = p.beta1 * m0 + p.omb1 * g;
  let v1 = p.beta2 * v0 + p.omb2 * (g * g);
  let denom = sqrt(v1) * p.inv_bc2 + p.eps;
  return Updated(decayed - p.step_size * (m1 / denom), m1, v1);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let u = adam(param[i], grad[i], m[i], v[i]);
  param[i] = u.param;
  m[i] = u.m;
  v[i] = u.v;
}

@compute @workgroup_size(WG)
fn main4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let p0 = param4[i];
  let g0 = grad4[i];
  let m0 = m4[i];
  let v0 = v4[i];
  var p1: vec4<f32>;
  var m1: vec4<f32>;
  var v1: vec4<f32>;
  for (var c = 0u; c < 4u; c++) {
    let u = adam(p0[c], g0[c], m0[c], v0[c]);
    p1[c] = u.param;
    m1[c] = u.m;
    v1[c] = u.v;
  }
  param4[i] = p1;
  m4[i] = m1;
  v4[i] = v1;
}
