// layer_norm_bwd.wgsl — gradients of layer_norm.wgsl (LayerNorm over the last dimension of x [rows, D]) from
// dout = dL/d(output) and the forward's per-row `stats` (mean, rstd):
//
//   x̂ = (x − mean)·rstd,   g = dout
//   dx[r, d] = rstd · (g·w[d] − mean_d(g·w) − x̂ · mean_d(g·w·x̂))     means over the row
//   dbias[d] = Σ_r g,   dweight[d] = Σ_r g·x̂
//
//   `dx_rows`      TPR invocations per row and WG / TPR rows per workgroup (softmax.wgsl's layout; the host picks
//                  TPR ≈ D / 16): one sweep for the two row sums (a tree of vec2 over the row's invocations), one
//                  to write dx. Rows are short (CLIP 768, U-Net 320…1280), so the second sweep hits the cache;
//   `col_partial`  the column sums over rows: a TX × TY workgroup, TX neighbouring columns (coalesced), TY lanes
//                  adding `per` rows each (stride TY), a tree over the lanes; partial [chunks, 2, D] (Σ g, Σ g·x̂)
//                  per chunk of TY·per rows, summed by _norm_param_grad.wgsl.
// No invocation loops more than max(D / TPR, per) times.
//
// Version ladder: v1 one workgroup per row for dx (the forward's layout): at D = 320 it spends more on barriers
// than on the row (lavapipe, [2, 4096, 320]: 1.7× slower than v2). v2 (this file) TPR invocations per row, and the
// column sums as a second pass, so x and dout are read twice when every gradient is wanted. A v3 would fuse the
// column partials into `dx_rows` (llm.c's layernorm_backward: a workgroup owns a block of rows and keeps per-column
// sums in registers or workgroup memory), saving that second read.

struct Params {
  rows: u32,
  d: u32,
  chunks: u32, // col_partial: ceil(rows / (TY · per))
  per: u32,    // col_partial: rows each invocation adds per chunk
  tiles: u32,  // col_partial: ceil(D / TX)
  work: u32,   // col_partial: workgroups doing work, chunks · tiles
  row: u32,    // workgroups along x (the grid is folded over x and y)
}

override WG: u32 = 256u;  // dx_rows; a power of two
override TPR: u32 = 32u;  // dx_rows: invocations per row, a power of two dividing WG
override TX: u32 = 32u;  // col_partial: TX · TY ≤ 256, TY a power of two
override TY: u32 = 8u;
override ACCUM: bool = true;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>; // [rows, 2]: mean, rstd
@group(0) @binding(4) var<storage, read_write> partial: array<f32>; // [chunks, 2, D]: Σ g, Σ g·x̂
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

var<workgroup> red: array<vec2<f32>, WG>;
var<workgroup> red_cols: array<vec2<f32>, TX * TY>;

@compute @workgroup_size(WG)
fn dx_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = lid % TPR;
  let r = (wid.y * p.row + wid.x) * (WG / TPR) + lid / TPR;
  let live = r < p.rows; // not uniform: invocations of a missing row still take part in the barriers
  let base = r * p.d;
  var mean = 0.0;
  var rstd = 0.0;
  var acc = vec2<f32>(0.0);
  if (live) {
    mean = stats[2u * r];
    rstd = stats[2u * r + 1u];
    for (var i = t; i < p.d; i += TPR) {
      let gw = dout[base + i] * weight[i];
      acc += vec2<f32>(gw, gw * (x[base + i] - mean) * rstd);
    }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var h = TPR / 2u; h > 0u; h >>= 1u) {
    if (t < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  if (!live) { return; }
  let m = red[lid - t] / f32(p.d);
  for (var i = t; i < p.d; i += TPR) {
    let v = rstd * (dout[base + i] * weight[i] - m.x - (x[base + i] - mean) * rstd * m.y);
    if (ACCUM) { dx[base + i] += v; } else { dx[base + i] = v; }
  }
}

@compute @workgroup_size(TX, TY)
fn col_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = wid.y * p.row + wid.x;
  if (w >= p.work) { return; }
  let k = w / p.tiles;
  let col = (w % p.tiles) * TX + lid.x;
  let live = col < p.d;
  var acc = vec2<f32>(0.0);
  if (live) {
    let end = min(p.rows, (k + 1u) * TY * p.per);
    for (var r = k * TY * p.per + lid.y; r < end; r += TY) {
      let g = dout[r * p.d + col];
      acc += vec2<f32>(g, g * (x[r * p.d + col] - stats[2u * r]) * stats[2u * r + 1u]);
    }
  }
  let at = lid.y * TX + lid.x;
  red_cols[at] = acc;
  workgroupBarrier();
  for (var h = TY / 2u; h > 0u; h >>= 1u) {
    if (lid.y < h) { red_cols[at] += red_cols[at + h * TX]; }
    workgroupBarrier();
  }
  if (lid.y == 0u && live) {
    partial[2u * k * p.d + col] = red_cols[lid.x].x;
    partial[(2u * k + 1u) * p.d + col] = red_cols[lid.x].y;
  }
}
