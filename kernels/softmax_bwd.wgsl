// softmax_bwd.wgsl — gradient of softmax.wgsl (y = softmax(scale · x) over the last dimension of [rows, L]) from
// the forward's output y and dout = dL/dy:
//
//   dx[r, j] = scale · y[r, j] · (dout[r, j] − Σ_i dout[r, i]·y[r, i])
//
// (∂y_j/∂z_i = y_j·(δ_ij − y_i), so dL/dz_i = y_i·(dout_i − Σ_j dout_j·y_j); z = scale·x adds the factor scale.)
// Same layout as the forward: TPR invocations per row, WG / TPR rows per workgroup, the row's dot product a tree
// over its TPR invocations, then an elementwise sweep (the row is read twice; the second read hits the cache).
// An invocation loops ceil(L / TPR) times per sweep.
//
// Version ladder: v1 one workgroup per row. v2 (this file) TPR invocations per row, TPR picked by the host from L.

// Params, the overrides WG and TPR (before their users: naga wants overrides declared before use), row_of
//!include _softmax_common.wgsl

override ACCUM: bool = true;

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = lid % TPR;
  let r = row_of(wid, lid);
  let live = r < p.rows; // not uniform: invocations of a missing row still take part in the barriers
  let base = r * p.len;
  var s = 0.0;
  if (live) {
    for (var j = t; j < p.len; j += TPR) { s += dout[base + j] * y[base + j]; }
  }
  red[lid] = s;
  workgroupBarrier();
  for (var h = TPR / 2u; h > 0u; h >>= 1u) {
    if (t < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  if (!live) { return; }
  let dot = red[lid - t];
  for (var j = t; j < p.len; j += TPR) {
    let v = p.scale * y[base + j] * (dout[base + j] - dot);
    if (ACCUM) { dx[base + j] += v; } else { dx[base + j] = v; }
  }
}
