// upsample.wgsl — nearest-neighbour upsampling by an integer factor s over the last two dimensions (NCHW):
//
//   out[b, c, y, x] = in[b, c, ⌊y/s⌋, ⌊x/s⌋]        in: [B, C, H, W], out: [B, C, sH, sW]
//
// s = 2 is diffusers' Upsample2D (`F.interpolate(x, scale_factor=2.0, mode="nearest")`). Leading dimensions are
// flattened into planes. A pure copy, so it moves 32-bit words (bit-exact for f32, i32 and u32).
// Version ladder:
//   v1: one invocation per output element.
//   v2 (this file): one invocation per 4 consecutive outputs, stored as one vec4. With s·W % 4 == 0 (ALIGNED;
//       every SD size) the 4 lie in one output row and share its source row; otherwise each is located on its
//       own and the last, partial vec4 is written component by component, never past element n.
//
// Backward (upsample_bwd.wgsl): dx[b, c, y, x] = Σ_{i,j < s} dy[b, c, s·y + i, s·x + j]  (s×s sum pooling of dy).

struct Params {
  n: u32,   // output elements
  row: u32, // workgroups along x
  h: u32,   // input height
  w: u32,   // input width
  s: u32,   // scale factor
}

override WG: u32 = 256u;
override ALIGNED: bool = true;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> p: Params;

// out element e (e < n)
fn one(e: u32) -> u32 {
  let wo = p.w * p.s;
  let ox = e % wo;
  let r = e / wo;
  let oy = r % (p.h * p.s);
  let plane = r / (p.h * p.s);
  return x[(plane * p.h + oy / p.s) * p.w + ox / p.s];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (ALIGNED) {
    if (i >= p.n / 4u) { return; }
    let wo4 = p.w * p.s / 4u;
    let ox = 4u * (i % wo4);
    let r = i / wo4;
    let oy = r % (p.h * p.s);
    let plane = r / (p.h * p.s);
    let src = (plane * p.h + oy / p.s) * p.w;
    out[i] = vec4<u32>(x[src + ox / p.s], x[src + (ox + 1u) / p.s], x[src + (ox + 2u) / p.s], x[src + (ox + 3u) / p.s]);
    return;
  }
  let e = 4u * i;
  if (e + 3u < p.n) {
    out[i] = vec4<u32>(one(e), one(e + 1u), one(e + 2u), one(e + 3u));
  } else if (e < p.n) {
    for (var k = 0u; e + k < p.n; k++) { out[i][k] = one(e + k); }
  }
}
