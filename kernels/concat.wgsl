// concat.wgsl — concatenation of contiguous tensors along one axis, one dispatch per input:
//
//   view every tensor as [outer, size, inner] around the axis; input k (size_k, placed after the sizes before it,
//   at `start_k`) goes to  out[o, start_k + a, r] = in_k[o, a, r]    with out: [outer, Σ size_k, inner].
//
// The U-Net's skip connections are `cat([h, skip], dim=1)` on NCHW tensors: outer = B, inner = H·W. A pure copy,
// so it moves 32-bit words (bit-exact for f32, i32 and u32).
// The host copies each run with copyBufferToBuffer instead when there are few runs (outer · inputs ≤ 64, as in
// the U-Net: B·2): a copy engine (or memcpy, on lavapipe) beats any kernel there. This kernel serves many short
// runs (e.g. concatenating along the last axis).
// v1 (this file): one invocation per element of the input; reads and writes are both contiguous runs of
// size_k·inner words.
//
// Backward (concat_bwd.wgsl): dy is split the same way, d in_k[o, a, r] = dy[o, start_k + a, r] (the same index map, read the other
// way round).

struct Params {
  n: u32,     // elements of this input (outer · size_k · inner)
  row: u32,   // workgroups along x
  chunk: u32, // size_k · inner: one contiguous run of the input
  span: u32,  // (Σ size) · inner: the output's stride between runs
  start: u32, // start_k · inner: where this input's runs begin in each output span
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let o = i / p.chunk;
  out[o * p.span + p.start + (i - o * p.chunk)] = x[i];
}
