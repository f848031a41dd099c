// concat_bwd.wgsl — gradient of concat.wgsl for one input k: the slice of dy that input was copied to,
//
//   dx_k[o, a, r] (+)= dy[o, start_k + a, r]        dy: [outer, Σ size, inner], dx_k: [outer, size_k, inner]
//
// (the forward's index map read the other way round). Without ACCUM and with few runs the host copies buffers
// instead, as the forward does; this kernel adds (ACCUM) or serves many short runs.
// v1 (this file): one invocation per VEC consecutive elements of dx_k (VEC = 4 when size_k·inner % 4 == 0, so
// the 4 lie in one run, else 1); reads and writes are both contiguous runs.

struct Params {
  n: u32,     // elements of dx_k (outer · size_k · inner)
  row: u32,   // workgroups along x
  chunk: u32, // size_k · inner: one contiguous run of dx_k
  span: u32,  // (Σ size) · inner: dy's stride between runs
  start: u32, // start_k · inner: where input k's runs begin in each span of dy
}

override WG: u32 = 256u;
override VEC: u32 = 1u;
override ACCUM: bool = true;

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ((wid.y * p.row + wid.x) * WG + lid) * VEC;
  if (i >= p.n) { return; }
  let o = i / p.chunk;
  let src = o * p.span + p.start + (i - o * p.chunk);
  for (var v = 0u; v < VEC; v++) {
    if (ACCUM) { dx[i + v] += dy[src + v]; } else { dx[i + v] = dy[src + v]; }
  }
}
