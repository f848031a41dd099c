// grad_norm.wgsl — the global L2 norm of many gradient tensors, and clipping by it (torch's clip_grad_norm_):
//
//   partials[base + w] = Σ_{k ∈ chunk w} g[k]²        `sumsq`: one dispatch per tensor, chunk = WG · PER elements
//                                                    (`sumsq4`: WG · PER vec4s, when the length allows)
//   norm  = √(Σ_w partials[w])                        `combine`: one workgroup over every tensor's partials
//   scale = min(1, max_norm / (norm + 1e-6))
//   g ← scale · g            (only where scale < 1)    `apply`: one dispatch per tensor, reads scale from the GPU
//
// Nothing is read back: `scale` stays in a one-element buffer that `apply` reads, so clipping records with the rest of
// a training step. Below the threshold `apply` returns before touching g, so gradients stay bit-for-bit (multiplying
// by 1.0 would flush subnormals to zero on GPUs that do that) and the clip costs only the norm.
//
// Sums run serially over PER elements per invocation (stride WG, coalesced), then as a tree in workgroup memory, so
// rounding grows like log n; `combine` loops ⌈partials / WG⌉ times, which the host keeps under lavapipe's 65,535
// iteration limit. Version ladder: v1 chunked two-level reduction with scalar loads; v2 (this file) vec4 loads for
// the sum and the scaling where the length allows, which on lavapipe makes the norm ~2× faster (4× fewer tree
// reductions per element). Backward: none (an optimiser utility).

struct Params {
  n: u32,         // sumsq/apply: elements of this tensor (sumsq4/apply4: vec4s); combine: partials
  row: u32,       // workgroups along x of the folded grid
  base: u32,      // sumsq: where this tensor's partials start
  max_norm: f32,  // combine
}

override WG: u32 = 256u;
override PER: u32 = 16u;

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> partials_out: array<f32>;
@group(0) @binding(3) var<storage, read> partials: array<f32>;
@group(0) @binding(4) var<storage, read_write> norm: array<f32>;
@group(0) @binding(5) var<storage, read_write> scale_out: array<f32>;
@group(0) @binding(6) var<storage, read> scale: array<f32>;
@group(0) @binding(7) var<storage, read_write> gw: array<f32>;
@group(0) @binding(8) var<storage, read_write> gw4: array<vec4<f32>>;
@group(0) @binding(9) var<uniform> p: Params;

var<workgroup> red: array<f32, WG>;

fn tree_sum(lid: u32, s: f32) -> f32 {
  red[lid] = s;
  workgroupBarrier();
  for (var h = WG / 2u; h > 0u; h >>= 1u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  return red[0];
}

@compute @workgroup_size(WG)
fn sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * p.row + wid.x;
  let start = w * WG * PER;
  var s = 0.0;
  if (start < p.n) {
    let end = min(p.n, start + WG * PER);
    for (var k = start + lid; k < end; k += WG) {
      let x = g[k];
      s += x * x;
    }
  }
  let total = tree_sum(lid, s); // every invocation reaches the barriers
  if (lid == 0u && start < p.n) { partials_out[p.base + w] = total; }
}

@compute @workgroup_size(WG)
fn sumsq4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * p.row + wid.x;
  let start = w * WG * PER;
  var s = 0.0;
  if (start < p.n) {
    let end = min(p.n, start + WG * PER);
    for (var k = start + lid; k < end; k += WG) {
      let x = g4[k];
      s += dot(x, x);
    }
  }
  let total = tree_sum(lid, s);
  if (lid == 0u && start < p.n) { partials_out[p.base + w] = total; }
}

@compute @workgroup_size(WG)
fn combine(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var k = lid; k < p.n; k += WG) { s += partials[k]; }
  let total = tree_sum(lid, s);
  if (lid == 0u) {
    let r = sqrt(total);
    norm[0] = r;
    scale_out[0] = min(1.0, p.max_norm / (r + 1e-6));
  }
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  let c = scale[0];
  if (i >= p.n || !(c < 1.0)) { return; }
  gw[i] = gw[i] * c;
}

@compute @workgroup_size(WG)
fn apply4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  let c = scale[0];
  if (i >= p.n || !(c < 1.0)) { return; }
  gw4[i] = gw4[i] * c;
}
