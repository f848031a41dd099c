// geglu_bwd.wgsl — gradient of geglu.wgsl (out = h · gelu(g), h = x[..., :F], g = x[..., F:]) w.r.t. its input:
//
//   dx[r, c]     (+)= dy[r, c] · gelu(g)                 (dh)
//   dx[r, F + c] (+)= dy[r, c] · h · gelu'(g)            (dg),   gelu'(g) = Φ(g) + g·φ(g)
//
// dy: [..., F], x and dx: [..., 2F]; Φ comes from _gelu.wgsl (via _geglu_common.wgsl), computed once for both:
// gelu(g) = g·Φ(g).
// Version ladder as geglu.wgsl: v1 one invocation per output element; v2 (this file) one per 4 consecutive
// outputs, read as vec4s when F % 4 == 0 (ALIGNED), else element by element. dx is written as scalars: in the
// unaligned case an invocation's 8 targets straddle vec4s that other invocations also write, and a store to one
// vec4 component may be a read-modify-write of the whole vector. ACCUM adds into dx instead of overwriting it.

override ACCUM: bool = true;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// Params, WG, ALIGNED, flat_id, h_index and _gelu.wgsl's normal_cdf_f32, gelu_grad_from_cdf
//!include _geglu_common.wgsl

fn put(e: u32, v: f32) {
  if (ACCUM) { dx[e] += v; } else { dx[e] = v; }
}

// dy element e (e < n)
fn one(e: u32) {
  let base = h_index(e, p.f);
  let h = x[base / 4u][base % 4u];
  let gi = base + p.f;
  let g = x[gi / 4u][gi % 4u];
  let d = dy[e / 4u][e % 4u];
  let cdf = normal_cdf_f32(g);
  put(base, d * g * cdf);
  put(gi, d * h * gelu_grad_from_cdf(g, cdf));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = flat_id(wid, lid);
  if (ALIGNED) {
    if (i >= p.n / 4u) { return; }
    let f4 = p.f / 4u;
    let base = h_index(i, f4);
    let h = x[base];
    let g = x[base + f4];
    let d = dy[i];
    for (var k = 0u; k < 4u; k++) {
      let cdf = normal_cdf_f32(g[k]);
      put(4u * base + k, d[k] * g[k] * cdf);
      put(4u * (base + f4) + k, d[k] * h[k] * gelu_grad_from_cdf(g[k], cdf));
    }
    return;
  }
  for (var e = 4u * i; e < min(4u * i + 4u, p.n); e++) { one(e); }
}
