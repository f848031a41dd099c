// cfg.wgsl — classifier-free guidance on a [uncond, cond] batch, as diffusers computes it:
//
//   out[i] = u[i] + g · (c[i] − u[i]),   u = x[i], c = x[i + half]   (half = elements of one half)
//
// Reading both halves from one buffer avoids binding views at offsets that may break the storage-offset
// alignment. v1: one invocation per output element. Backward: du = (1 − g)·dout, dc = g·dout.

struct Params {
  half: u32,
  row: u32,
  g: f32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.half) { return; }
  let u = x[i];
  out[i] = u + p.g * (x[i + p.half] - u);
}
