// _attention_common.wgsl — what attention.wgsl and attention_bwd.wgsl share (spliced in with
// `//!include _attention_common.wgsl`): the head-dim overrides, the zero-padded vec4 loaders of q, k and v (each
// including file declares the `q`, `k`, `v` storage bindings) and a horizontal sum.

const MAX_D4: u32 = 64u;  // head dims up to 256 (private arrays need a constant size)

override DH: u32 = 64u;   // head dim of q and k
override DV: u32 = 64u;   // head dim of v and out
override DH4: u32 = (DH + 3u) / 4u;
override DV4: u32 = (DV + 3u) / 4u;

// Four consecutive floats of a head's slice from column c on (row start `at`), zero past the head dim: the
// padding lets any head dim use vec4 arithmetic. (WGSL cannot pass storage pointers, hence one per buffer.)
fn load_q4(at: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && c + e < DH; e++) { r[e] = q[at + c + e]; }
  return r;
}
fn load_k4(at: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && c + e < DH; e++) { r[e] = k[at + c + e]; }
  return r;
}
fn load_v4(at: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && c + e < DV; e++) { r[e] = v[at + c + e]; }
  return r;
}

fn hsum(x: vec4<f32>) -> f32 { return x.x + x.y + x.z + x.w; }
