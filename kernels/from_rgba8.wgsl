// from_rgba8.wgsl — packed 8-bit RGBA pixels [B, H, W] (u32, R in the low byte: what decodePng returns and
// to_rgba8.wgsl writes) to f32 tensors, the other direction of to_rgba8.wgsl:
//
//   planar:    out[b, c, q] = byte_c(px[b, q]) · scale[c] + shift[c]      c < C ≤ 4 (R, G, B, A)   → [B, C, H, W]
//              (scale 1, shift 0 keeps the byte values 0…255; scale 1/127.5, shift −1 maps them to [−1, 1])
//   alpha_any: flag[b] = 1 when some pixel of image b has alpha < 255 (a cut-out), else 0               → u32 [B]
//   mask:      out[b, q] = A / 255 (mode 0, "alpha"), (0.299 R + 0.587 G + 0.114 B) / 255 (mode 1, "luminance",
//              Rec. 601), or mode 2 ("auto"): alpha when flag[b] = 1, else luminance                   → [B, H, W]
//
// v1 (this file): planar and mask run one invocation per pixel; alpha_any runs one workgroup per image, each
// invocation striding over the image's pixels, then an OR by a fixed tree. No backward (integer inputs).

struct Params {
  hw: u32,        // pixels per image
  n: u32,         // pixels in all (B · hw)
  channels: u32,  // C of planar
  mode: u32,      // mask: 0 alpha, 1 luminance, 2 auto (reads flag_in)
  images: u32,    // B
  row: u32,       // workgroups along x of the folded grid
  scale: vec4<f32>,
  shift: vec4<f32>,
}

override WG: u32 = 256u; // a power of two (the OR tree of alpha_any)

@group(0) @binding(0) var<storage, read> px: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> flag: array<u32>;
@group(0) @binding(3) var<storage, read> flag_in: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> part: array<u32, WG>;

fn byte_of(v: u32, c: u32) -> f32 {
  return f32((v >> (8u * c)) & 255u);
}

@compute @workgroup_size(WG)
fn planar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let b = i / p.hw;
  let q = i % p.hw;
  let v = px[i];
  let base = b * p.channels * p.hw + q;
  for (var c = 0u; c < p.channels; c++) {
    out[base + c * p.hw] = byte_of(v, c) * p.scale[c] + p.shift[c];
  }
}

@compute @workgroup_size(WG)
fn alpha_any(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.y * p.row + wid.x;
  if (b >= p.images) { return; }
  var any = 0u;
  for (var q = lid; q < p.hw; q += WG) {
    any = any | u32((px[b * p.hw + q] >> 24u) != 255u);
  }
  part[lid] = any;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w = w / 2u) {
    if (lid < w) { part[lid] = part[lid] | part[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u) { flag[b] = part[0]; }
}

@compute @workgroup_size(WG)
fn mask(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let v = px[i];
  var alpha = p.mode == 0u;
  if (p.mode == 2u) { alpha = flag_in[i / p.hw] != 0u; }
  if (alpha) {
    out[i] = byte_of(v, 3u) / 255.0;
  } else {
    out[i] = (0.299 * byte_of(v, 0u) + 0.587 * byte_of(v, 1u) + 0.114 * byte_of(v, 2u)) / 255.0;
  }
}
