// geglu.wgsl — the gated GELU of diffusers' GEGLU feed-forward (after its projection to 2F features):
//
//   h, g = x.chunk(2, dim=-1)            x: [..., 2F], h and g: [..., F]
//   out  = h · gelu(g)                   out: [..., F], gelu the exact erf form (from _gelu.wgsl)
//
// Version ladder:
//   v1: one invocation per output element, the 1-D grid folded over x and y.
//   v2 (this file): one invocation per 4 consecutive outputs. With F % 4 == 0 (ALIGNED; every SD width) h and g
//       are read and out written as vec4s; otherwise the 4 outputs are gathered element by element (a row may
//       end inside the vec4) and the last, partial vec4 is written component by component, never past element n.
//   (A v3 could fuse this into the epilogue of the projection matmul.)
//
// Backward (geglu_bwd.wgsl; dy: [..., F] → dx: [..., 2F]):  dh = dy · gelu(g);   dg = dy · h · (Φ(g) + g·φ(g)),
// with φ(g) = e^(−g²/2)/√(2π), written to the two halves of dx (the same row layout as x).

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

// Params, WG, ALIGNED, flat_id, h_index and _gelu.wgsl's gelu_f32
//!include _geglu_common.wgsl

fn gelu4(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(gelu_f32(v.x), gelu_f32(v.y), gelu_f32(v.z), gelu_f32(v.w));
}

fn at(e: u32) -> f32 {
  return x[e / 4u][e % 4u];
}

// out element e (e < n)
fn one(e: u32) -> f32 {
  let base = h_index(e, p.f);
  return at(base) * gelu_f32(at(base + p.f));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_id(wid, lid);
  if (ALIGNED) {
    if (i >= p.n / 4u) { return; }
    let f4 = p.f / 4u;
    let base = h_index(i, f4);
    out[i] = x[base] * gelu4(x[base + f4]);
    return;
  }
  let e = 4u * i;
  if (e + 3u < p.n) {
    out[i] = vec4<f32>(one(e), one(e + 1u), one(e + 2u), one(e + 3u));
  } else if (e < p.n) {
    for (var k = 0u; e + k < p.n; k++) { out[i][k] = one(e + k); }
  }
}
