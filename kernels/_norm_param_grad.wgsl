// _norm_param_grad.wgsl — the last step of the weight and bias gradients of GroupNorm and LayerNorm. Their backward
// kernels (group_norm_bwd.wgsl, layer_norm_bwd.wgsl) leave partial sums over slices of the batch laid out [M, 2, C]:
// component 0 = Σ g, component 1 = Σ g·x̂ (g = dL/d(affine output), x̂ the normalised input), per channel c. Then
//
//   grad[c] (+)= Σ_m partial[m, WHICH, c]        dbias: WHICH = 0,   dweight: WHICH = 1
//
// A TX × TY workgroup: TX neighbouring channels (coalesced reads), TY lanes striding over m, then a tree over the
// lanes. M is small (GroupNorm: B · chunks per spatial row, SD: B; LayerNorm: rows / 128), so an invocation loops
// M / TY times, far below lavapipe's 65,535 iterations for any tensor that fits a binding.
// Version ladder: v1 (this file); the partials are tiny, so this pass costs one dispatch, not bandwidth.

struct Params {
  m: u32,   // M: partial rows to sum
  c: u32,   // C: channels
  row: u32, // workgroups along x (the grid is folded over x and y)
}

override TX: u32 = 32u; // TX · TY ≤ 256, TY a power of two
override TY: u32 = 8u;
override WHICH: u32 = 0u;
override ACCUM: bool = true;

@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

//!include _column_sum.wgsl

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = (wid.y * p.row + wid.x) * TX + lid.x;
  let live = c < p.c;
  var s = 0.0;
  if (live) {
    for (var m = lid.y; m < p.m; m += TY) { s += partial[(2u * m + WHICH) * p.c + c]; }
  }
  let sum = column_sum(lid, s);
  if (lid.y == 0u && live) {
    if (ACCUM) { grad[c] += sum; } else { grad[c] = sum; }
  }
}
