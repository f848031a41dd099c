// to_rgba8.wgsl — a decoded image [B, 3, H, W] in [−1, 1] to packed 8-bit RGBA pixels [B, H, W] (u32, R in the
// low byte), as diffusers' image processor does it: round(clamp(x / 2 + 0.5, 0, 1) · 255), alpha 255.
// round() is half-to-even in WGSL and in numpy (`.round()`), so the pixels match PyTorch's.
// v1: one invocation per pixel. No backward (a display conversion).

struct Params {
  hw: u32,   // pixels per image
  n: u32,    // pixels in all
  row: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

fn to8(v: f32) -> u32 {
  return u32(round(clamp(v / 2.0 + 0.5, 0.0, 1.0) * 255.0));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let b = i / p.hw;
  let q = i % p.hw;
  let base = b * 3u * p.hw + q;
  out[i] = to8(x[base]) | (to8(x[base + p.hw]) << 8u) | (to8(x[base + 2u * p.hw]) << 16u) | (255u << 24u);
}
