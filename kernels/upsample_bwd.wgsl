// upsample_bwd.wgsl — gradient of upsample.wgsl (nearest upsampling by an integer factor s over the last two dims):
//
//   dx[p, y, x] (+)= Σ_{i, j < s} dy[p, s·y + i, s·x + j]        dx: [planes, H, W], dy: [planes, sH, sW]
//
// i.e. s×s sum pooling of dy: every input pixel was copied to the s×s block of output pixels it feeds.
// Version ladder: v1 one invocation per dx element; v2 (this file) one per 4 consecutive dx elements, stored as one
// vec4. With W % 4 == 0 (ALIGNED; every SD size) the 4 share a row, so their 4·s² loads are s runs of 4s words;
// otherwise each is pooled on its own and the last partial vec4 written component by component. An invocation
// runs ≤ 4·s² loop iterations: the host limits s to 64 (lavapipe ends an invocation after 65,535).
// ACCUM adds into dx instead of overwriting it.

struct Params {
  n: u32,   // dx elements
  row: u32, // workgroups along x
  h: u32,   // dx height
  w: u32,   // dx width
  s: u32,   // scale factor
}

override WG: u32 = 256u;
override ALIGNED: bool = true;
override ACCUM: bool = true;

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> p: Params;

// the s×s block of dy above dx element e (e < n)
fn pool(e: u32) -> f32 {
  let xx = e % p.w;
  let r = e / p.w; // plane · H + y: the block starts at dy row s·r
  let wo = p.w * p.s;
  var acc = 0.0;
  for (var i = 0u; i < p.s; i++) {
    let base = (r * p.s + i) * wo + xx * p.s;
    for (var j = 0u; j < p.s; j++) { acc += dy[base + j]; }
  }
  return acc;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  let e = 4u * i;
  if (ALIGNED) {
    if (e >= p.n) { return; }
    let xx = e % p.w;
    let r = e / p.w;
    let wo = p.w * p.s;
    var v = vec4<f32>(0.0);
    for (var a = 0u; a < p.s; a++) {
      let base = (r * p.s + a) * wo + xx * p.s;
      for (var j = base; j < base + p.s; j++) {
        v += vec4<f32>(dy[j], dy[j + p.s], dy[j + 2u * p.s], dy[j + 3u * p.s]);
      }
    }
    if (ACCUM) { dx[i] += v; } else { dx[i] = v; }
  } else if (e + 3u < p.n) {
    let v = vec4<f32>(pool(e), pool(e + 1u), pool(e + 2u), pool(e + 3u));
    if (ACCUM) { dx[i] += v; } else { dx[i] = v; }
  } else if (e < p.n) {
    for (var k = 0u; e + k < p.n; k++) {
      let v = pool(e + k);
      if (ACCUM) { dx[i][k] += v; } else { dx[i][k] = v; }
    }
  }
}
