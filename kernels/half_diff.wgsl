// half_diff.wgsl — the gradient seed of ‖x₁ − stopgrad(x₂)‖² for a batch x = [x₁, x₂] stacked along dim 0:
//
//   seed[i] = c · (x[i] − x[i + half])   for i < half,     seed[i] = 0   for i ≥ half
//
// (c = 2 for the plain squared norm). Used by CAD's erase score J = ‖ε(z_t, c) − sg(ε(z_t, c_base))‖², where the
// U-Net runs once on [c, c_base]. v1: one invocation per element. No backward (it is itself a gradient).

struct Params {
  half: u32,
  row: u32,
  c: f32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> seed: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= 2u * p.half) { return; }
  if (i < p.half) {
    seed[i] = p.c * (x[i] - x[i + p.half]);
  } else {
    seed[i] = 0.0;
  }
}
