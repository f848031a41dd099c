// reduce.wgsl — sum over the middle dimension of a contiguous view x [outer, n, inner]; `sum`/`mean` over any
// axis (and over everything, as [1, N, 1]) are this one kernel:
//
//   out[o, c, j] = scale · Σ_{k in chunk c} x[o, k, j],   chunk c = [c·TY·per, (c+1)·TY·per)
//
// One pass shrinks n to ceil(n / (TY·per)); the host repeats passes until n = 1, putting the 1/n of a mean into the
// last pass's scale. Within a pass each invocation adds `per` elements (stride TY) and the workgroup adds the TY
// partials in a tree, so the rounding error grows like log n rather than n (5M elements to a scalar is two passes).
// The workgroup is TX × TY: TX neighbouring output columns col = o·inner + j (coalesced loads when inner ≥ TX),
// TY slices along k (coalesced when inner = 1 and n is long: then TX = 1). The host shrinks TY for short n, so
// e.g. a [2, 320, 9, 7] sum over the last axis runs 256 rows per workgroup, one invocation each.
//
// Version ladder: v1 one invocation per output, serial over n (error ∝ n, no parallelism for a full reduction).
// v2 (this file) multi-pass tree reduction over the 2-D workgroup.
//
// Backward (later issue): d/dx of a sum is dL/dout broadcast back along the reduced axis (times 1/n for a mean),
// an elementwise broadcast with binary.wgsl's index math; no reduction needed.

struct Params {
  n: u32,      // length of the reduced dimension in this pass's input
  inner: u32,
  chunks: u32, // ceil(n / (TY · per)): the reduced dimension of this pass's output
  cols: u32,   // outer · inner
  tiles: u32,  // ceil(cols / TX)
  per: u32,    // elements each invocation adds serially
  total: u32,  // workgroups: chunks · tiles
  row: u32,    // workgroups along x (the grid is folded over x and y)
  scale: f32,
}

override TX: u32 = 1u;   // powers of two with TX · TY = 256
override TY: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

//!include _column_sum.wgsl

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = wid.y * p.row + wid.x;
  if (w >= p.total) { return; }
  let tile = w % p.tiles;
  let c = w / p.tiles;
  let col = tile * TX + lid.x;
  let live = col < p.cols;
  let o = col / p.inner;
  let j = col % p.inner;
  var s = 0.0;
  if (live) {
    let kEnd = min(p.n, (c + 1u) * TY * p.per);
    for (var k = c * TY * p.per + lid.y; k < kEnd; k += TY) { s += x[(o * p.n + k) * p.inner + j]; }
  }
  let sum = column_sum(lid, s);
  if (lid.y == 0u && live) { out[(o * p.chunks + c) * p.inner + j] = sum * p.scale; }
}
