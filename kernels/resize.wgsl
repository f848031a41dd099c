// resize.wgsl — one separable pass of an image resize by convolution with a scaled filter, Pillow's `resize`
// (libImaging/Resample.c) in f32, along one axis of x viewed as [outer, n_in, inner]:
//
//   out[o, j, k] = Σ_t w_j(t) · x[o, t, k] / Σ_t w_j(t),          t ∈ [t_min(j), t_max(j))
//   center_j = (j + start + 0.5) · scale                             (start: the crop's offset in the resized image)
//   w_j(t)   = filter((t − center_j + 0.5) / fs),   fs = max(scale, 1) with antialiasing, else 1
//   t_min(j) = max(trunc(center_j − support + 0.5), 0),   t_max(j) = min(trunc(center_j + support + 0.5), n_in)
//   support  = filter support (bilinear 1, bicubic 2) · fs
//
// Filters: bilinear (triangle) and bicubic (Keys, a = −0.5, Pillow's and torchvision's antialiased choice). With
// antialiasing the filter widens by the downscale factor, so every input pixel contributes (Pillow's behaviour).
// Borders: taps outside the image are dropped and the weights renormalised (no edge replication).
// The host runs a horizontal pass then a vertical one (as Pillow does); the last pass may apply a per-channel
// affine y = mul[c]·y + add[c] (CLIP's mean/std normalisation), c = (o / chan_div) % channels.
//
// Version ladder: v1 (this file) one invocation per output element, weights computed on the fly (a few dozen taps
// at most for model-sized downscales; the filter costs less than the loads). Backward (not needed yet): the
// transpose of each pass, a scatter of dy·w_j(t)/Σw into dx (or a gather over the outputs j whose window holds t).

struct Params {
  n: u32,        // output elements (outer · n_out · inner)
  row: u32,      // workgroups along x (the grid is folded over x and y)
  n_in: u32,
  n_out: u32,
  inner: u32,
  start: u32,
  channels: u32,
  chan_div: u32,
  scale: f32,    // input pixels per resized pixel along this axis
  support: f32,
  inv_fs: f32,
  pad: u32,
  mul: vec4<f32>,
  add: vec4<f32>,
}

override FILTER: u32 = 1u; // 0 bilinear, 1 bicubic
override AFFINE: u32 = 0u;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn kernel_weight(t: f32) -> f32 {
  let a = abs(t);
  if (FILTER == 0u) { return max(1.0 - a, 0.0); }
  if (a < 1.0) { return (1.5 * a - 2.5) * a * a + 1.0; }
  if (a < 2.0) { return (((a - 5.0) * a + 8.0) * a - 4.0) * -0.5; }
  return 0.0;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let k = i % p.inner;
  let r = i / p.inner;
  let j = r % p.n_out;
  let o = r / p.n_out;
  let center = (f32(j + p.start) + 0.5) * p.scale;
  let t0 = max(i32(center - p.support + 0.5), 0);
  let t1 = min(i32(center + p.support + 0.5), i32(p.n_in));
  let base = o * p.n_in * p.inner + k;
  var acc = 0.0;
  var ww = 0.0;
  for (var t = t0; t < t1; t++) {
    let w = kernel_weight((f32(t) - center + 0.5) * p.inv_fs);
    acc += w * x[base + u32(t) * p.inner];
    ww += w;
  }
  var y = select(acc, acc / ww, ww != 0.0);
  if (AFFINE == 1u) {
    let c = (o / p.chan_div) % p.channels;
    y = p.mul[c] * y + p.add[c];
  }
  out[i] = y;
}
