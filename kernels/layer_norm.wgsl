// layer_norm.wgsl — LayerNorm over the last dimension of x [rows, D] (PyTorch semantics):
//
//   mean = Σ_d x[r, d] / D,   var = Σ_d (x[r, d] − mean)² / D   (biased),   rstd = 1 / sqrt(var + eps)
//   y[r, d] = (x[r, d] − mean) · rstd · weight[d] + bias[d]
//
// Version ladder: v1 one invocation per row (serial, no parallelism within a row). v2 (this file) one workgroup per
// row: three strided sweeps over the row (sum → mean, centred Σ (x − mean)² → rstd, output), each reduction a tree
// in workgroup memory. Rows are short (CLIP 768, U-Net 320…1280), so the 2nd and 3rd sweeps hit the cache and there
// are many rows (77·B for CLIP, 4096·B at 64×64), so one row per workgroup fills the device. The host picks WG from D.
//
// Backward (layer_norm_bwd.wgsl): `stats` keeps mean and rstd per row. With x̂ = (x − mean)·rstd and g = dL/dy,
//   dx = rstd · (g·w − mean_d(g·w) − x̂ · mean_d(g·w·x̂)),   dweight = Σ_rows g·x̂,   dbias = Σ_rows g
// (a few rows per workgroup for dx; the column sums in a chunked pass); see docs/norms.md.

struct Params {
  rows: u32,
  d: u32,
  row: u32, // workgroups along x (the grid is folded over x and y)
  eps: f32,
}

override WG: u32 = 256u; // a power of two

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>; // [rows, 2]: mean, rstd (kept for backward)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> red: array<f32, WG>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier(); // red is reused by the next call
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.row + wid.x;
  if (r >= p.rows) { return; }
  let base = r * p.d;
  var s = 0.0;
  for (var i = lid; i < p.d; i += WG) { s += x[base + i]; }
  let mean = workgroup_sum(lid, s) / f32(p.d);
  var q = 0.0;
  for (var i = lid; i < p.d; i += WG) {
    let c = x[base + i] - mean;
    q += c * c;
  }
  let rstd = 1.0 / sqrt(workgroup_sum(lid, q) / f32(p.d) + p.eps);
  for (var i = lid; i < p.d; i += WG) {
    out[base + i] = (x[base + i] - mean) * rstd * weight[i] + bias[i];
  }
  if (lid == 0u) {
    stats[2u * r] = mean;
    stats[2u * r + 1u] = rstd;
  }
}
