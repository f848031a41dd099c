// softmax.wgsl — softmax over the last dimension of x [rows, L], with an optional scale on the logits:
//
//   z = scale · x[r, :],   y[r, j] = exp(z_j − max z) / Σ_i exp(z_i − max z)
//
// Subtracting the row maximum keeps exp ≤ 1 (no overflow for any finite input). Each invocation keeps an online
// (running max m, running Σ exp(z − m)) over its strided elements, rescaling the sum when the max grows; the
// pairs are then merged in a tree, (ma, sa) ⊕ (mb, sb) = (m, sa·e^(ma−m) + sb·e^(mb−m)) with m = max(ma, mb).
// A row is read twice: once for (max, sum), once to write y.
//
// Version ladder: v1 one invocation per row (serial). v2 one workgroup per row: short rows (77 tokens of text
// attention) leave most of a 256-wide workgroup idle. v3 (this file) TPR invocations per row and WG / TPR rows
// per workgroup, TPR picked by the host from L (≈ 4 elements per invocation, 32…WG).
//
// Backward (softmax_bwd.wgsl): from the saved output y and g = dL/dy, dx = scale · y ⊙ (g − Σ_j g_j y_j): one row
// reduction and an elementwise pass, the same workgroup shape as here; see docs/norms.md.

// Params, the overrides WG and TPR (before their users: naga wants overrides declared before use), row_of
//!include _softmax_common.wgsl

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

// Below every finite logit, yet finite itself, so that empty partials combine without inf − inf.
const LOWEST: f32 = -3.4028234e38;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = lid % TPR;
  let r = row_of(wid, lid);
  let live = r < p.rows; // not uniform: invocations of a missing row still take part in the barriers
  let base = r * p.len;
  var m = LOWEST;
  var s = 0.0;
  if (live) {
    for (var j = t; j < p.len; j += TPR) {
      let z = p.scale * x[base + j];
      if (z > m) {
        s = s * exp(m - z) + 1.0;
        m = z;
      } else {
        s += exp(z - m);
      }
    }
  }
  red_m[lid] = m;
  red_s[lid] = s;
  workgroupBarrier();
  for (var h = TPR / 2u; h > 0u; h >>= 1u) {
    if (t < h) {
      let ma = red_m[lid];
      let mb = red_m[lid + h];
      let mx = max(ma, mb);
      red_s[lid] = red_s[lid] * exp(ma - mx) + red_s[lid + h] * exp(mb - mx);
      red_m[lid] = mx;
    }
    workgroupBarrier();
  }
  if (!live) { return; }
  let first = lid - t;
  let mx = red_m[first];
  let inv = 1.0 / red_s[first];
  for (var j = t; j < p.len; j += TPR) {
    out[base + j] = exp(p.scale * x[base + j] - mx) * inv;
  }
}
