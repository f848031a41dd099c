// sae_label_iou.wgsl — the concept-labelling rule of "Emergence and Evolution of Interpretable Concepts in Diffusion
// Models" (§3.3, App. F.1): for feature c and an object mask m of image i,
//
//   map    = z[i·P + q, c] over the P = H·W positions q of the image's activation grid
//   a(y,x) = (up(map)(y, x) − min map) / (max map − min map) > threshold        (threshold 0.1 in the paper)
//   b(y,x) = mask(y, x) ≥ 0.5   (masks in [0, 1], as src/io/mask.ts reads PNGs: white or opaque = object)
//   iou[m, c] = |a ∧ b| / |a ∨ b|   (0 when the map is constant, i.e. the feature is silent on the image, or a ∨ b = ∅)
//
// up() is bilinear resampling of the [H, W] map to the mask's [Hm, Wm] with half-pixel centres and edge clamping
// (PyTorch's `interpolate(mode="bilinear", align_corners=False)`, and Pillow's bilinear without antialiasing),
// computed on the fly: the upsampled maps (n per image, each Hm·Wm) are never stored. Min-max normalisation commutes
// with bilinear resampling (its weights sum to 1), so the raw map is resampled and the threshold applied to it.
// A label follows when iou > 0.5 (on the host: the IoU matrix [M, n] is small).
//
// Masks are concatenated row-major; mask_info[m] = (image slot i, first value, Hm, Wm), so masks of different
// sizes share one dispatch.
//
// Version ladder: v1 (this file) one workgroup per (mask, feature): a strided min/max over the map, a uniform early
// exit for silent features (most of them on any one image), then a strided pass over the mask's pixels counting
// intersection and union, summed in workgroup memory (integer sums: deterministic). No backward.

struct Params {
  n: u32,        // latents (columns of z)
  height: u32,   // activation grid H
  width: u32,    // activation grid W
  masks: u32,    // M
  threshold: f32,
  row: u32,      // workgroups along x of the folded grid
}

override WG: u32 = 128u;

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> mask_values: array<f32>;
@group(0) @binding(2) var<storage, read> mask_info: array<u32>;
@group(0) @binding(3) var<storage, read_write> iou: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> lo_s: array<f32, WG>;
var<workgroup> hi_s: array<f32, WG>;
var<workgroup> inter_s: array<u32, WG>;
var<workgroup> union_s: array<u32, WG>;
var<workgroup> live: u32;

fn map_at(base: u32, c: u32, y: u32, x: u32) -> f32 {
  return z[(base + y * p.width + x) * p.n + c];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wg = wid.y * p.row + wid.x;
  let in_range = wg < p.masks * p.n;
  let c = wg % p.n;
  let m = min(wg / p.n, p.masks - 1u);
  let positions = p.height * p.width;
  let base = mask_info[4u * m] * positions; // the image's first row in z

  var lo = 3.4e38;
  var hi = -3.4e38;
  for (var q = lid; q < positions; q += WG) {
    let v = map_at(base, c, 0u, q);
    lo = min(lo, v);
    hi = max(hi, v);
  }
  lo_s[lid] = lo;
  hi_s[lid] = hi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      lo_s[lid] = min(lo_s[lid], lo_s[lid + s]);
      hi_s[lid] = max(hi_s[lid], hi_s[lid + s]);
    }
    workgroupBarrier();
  }
  if (lid == 0u) { live = select(0u, 1u, in_range && hi_s[0] > lo_s[0]); }
  if (workgroupUniformLoad(&live) == 0u) {
    if (in_range && lid == 0u) { iou[wg] = 0.0; }
    return;
  }
  let mn = lo_s[0];
  let span = hi_s[0] - mn;

  let first = mask_info[4u * m + 1u];
  let mh = mask_info[4u * m + 2u];
  let mw = mask_info[4u * m + 3u];
  let sy_scale = f32(p.height) / f32(mh);
  let sx_scale = f32(p.width) / f32(mw);
  var n_inter = 0u;
  var n_union = 0u;
  for (var t = lid; t < mh * mw; t += WG) {
    let y = t / mw;
    let x = t % mw;
    let sy = max((f32(y) + 0.5) * sy_scale - 0.5, 0.0);
    let sx = max((f32(x) + 0.5) * sx_scale - 0.5, 0.0);
    let y0 = min(u32(sy), p.height - 1u);
    let x0 = min(u32(sx), p.width - 1u);
    let y1 = min(y0 + 1u, p.height - 1u);
    let x1 = min(x0 + 1u, p.width - 1u);
    let wy = clamp(sy - f32(y0), 0.0, 1.0);
    let wx = clamp(sx - f32(x0), 0.0, 1.0);
    let top = mix(map_at(base, c, y0, x0), map_at(base, c, y0, x1), wx);
    let bottom = mix(map_at(base, c, y1, x0), map_at(base, c, y1, x1), wx);
    let v = mix(top, bottom, wy);
    let a = (v - mn) / span > p.threshold;
    let b = mask_values[first + t] >= 0.5;
    n_inter += select(0u, 1u, a && b);
    n_union += select(0u, 1u, a || b);
  }
  inter_s[lid] = n_inter;
  union_s[lid] = n_union;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      inter_s[lid] += inter_s[lid + s];
      union_s[lid] += union_s[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let u = union_s[0];
    iou[wg] = select(0.0, f32(inter_s[0]) / f32(u), u > 0u);
  }
}
