// sae_geomedian.wgsl — the geometric median of N points [N, d] by Weiszfeld's iteration (SDLens initialises the
// TopK SAE's b_pre with it, eps 1e-6, at most 100 iterations):
//
//   y₀ = mean(x);   wᵢ = 1 / max(‖xᵢ − y‖, eps);   y ← Σᵢ wᵢ xᵢ / Σᵢ wᵢ
//
// One iteration is three dispatches: `weights` (one invocation per point, a pass over its d features), `wsum`
// (one invocation per chunk of points and feature, plus a column d for Σ w: partial sums in a fixed order) and
// `update` (one invocation per feature, summing the chunks in order). The mean is the same two last passes with
// w = 1. Deterministic; loops stay short (d, `chunk` rows, `chunks` partials) for lavapipe's 65,535-iteration
// limit. v1 (this file). Not differentiated.

struct Params {
  rows: u32,  // N points
  d: u32,
  chunk: u32, // points per `wsum` chunk
  chunks: u32,
  eps: f32,
  row: u32,   // workgroups along x of the folded grid
}

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> points: array<f32>;            // [N, d]
@group(0) @binding(1) var<storage, read> guess: array<f32>;             // [d]
@group(0) @binding(2) var<storage, read_write> weights_out: array<f32>; // [N]
@group(0) @binding(3) var<storage, read> w: array<f32>;                 // [N]
@group(0) @binding(4) var<storage, read_write> partial_out: array<f32>; // [chunks, d + 1]
@group(0) @binding(5) var<storage, read> partial: array<f32>;
@group(0) @binding(6) var<storage, read_write> guess_out: array<f32>;   // [d]
@group(0) @binding(7) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = (wid.y * p.row + wid.x) * WG + lid;
  if (r >= p.rows) { return; }
  var ss = 0.0;
  for (var i = 0u; i < p.d; i++) {
    let t = points[r * p.d + i] - guess[i];
    ss += t * t;
  }
  weights_out[r] = 1.0 / max(sqrt(ss), p.eps);
}

@compute @workgroup_size(WG)
fn wsum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  let cols = p.d + 1u;
  if (g >= p.chunks * cols) { return; }
  let c = g / cols;
  let f = g % cols;
  let hi = min((c + 1u) * p.chunk, p.rows);
  var acc = 0.0;
  for (var r = c * p.chunk; r < hi; r++) {
    if (f < p.d) { acc += w[r] * points[r * p.d + f]; } else { acc += w[r]; }
  }
  partial_out[g] = acc;
}

@compute @workgroup_size(WG)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let f = (wid.y * p.row + wid.x) * WG + lid;
  if (f >= p.d) { return; }
  let cols = p.d + 1u;
  var num = 0.0;
  var den = 0.0;
  for (var c = 0u; c < p.chunks; c++) {
    num += partial[c * cols + f];
    den += partial[c * cols + p.d];
  }
  guess_out[f] = num / den;
}
