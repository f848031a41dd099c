// axpy.wgsl — in-place scaled accumulation: y ← y + alpha · x (same shape).
//
// The autodiff tape's way to add one gradient contribution into an accumulator that another op produced, and a
// plain SGD-style update. v1: one vec4 per invocation when the length allows, else one element; 2-D folded grid.
// Backward: dy passes through, dx = alpha · dy.

struct Params {
  n: u32,     // elements (VEC4: vec4 groups)
  row: u32,
  alpha: f32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  y[i] = y[i] + p.alpha * x[i];
}

@compute @workgroup_size(WG)
fn main4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  y4[i] = y4[i] + p.alpha * x4[i];
}
