// sae_steer.wgsl — steering a hook activation with SAE features (Tinaz et al. §3.5), in place on one batch range.
//
// The activation x holds `images` items of hw positions and c channels from element `start` on (LAYOUT 0: [B, C, hw]
// NCHW; LAYOUT 1: [B, hw, C]). Its SAE code has one row r = image · hw + position, sorted or not: values, indices
// [rows, k]. Per row, ‖z_r‖ is the L2 norm of the code and z_rc the value of latent c in it (0 when not selected).
// Each feature f = (c, mode, mask row, β) gets a coefficient per row:
//
//   spatial (mode 0):  coef[r, f] = m · β‖z_r‖ − z_rc          m = clamp(masks[mask row, position], 0, 1)
//                      (binary m: β‖z‖ − z_rc inside the region, −z_rc outside: Eq. 1 applied on the activation;
//                      a soft mask blends the two cases, m · inside + (1 − m) · outside)
//   global  (mode 1):  coef[r, f] = β‖z_r‖ / Σ_{rows r' of the image} ‖z_r'‖    (0 when nothing fires in the image)
//
// and the activation moves along the features' decoder columns f_c = W_dec[:, c] (W_dec [c, n]):
//
//   x[item, ch, pos] += Σ_f coef[r, f] · W_dec[ch, c_f]
//
// Entry points: `norms` (one workgroup per image: each row's ‖z‖ and their sum by a fixed tree, so deterministic),
// `coefs` (one invocation per (row, feature)), `apply` (one invocation per element of the batch range; elements
// outside the range are never written). v1 (this file): plain per-element loops; F is a handful of features, so
// `apply` costs F strided W_dec loads per element and is bound by the read-modify-write of x.
// Backward: none (an intervention applied while sampling, never trained through).

struct Params {
  rows: u32,   // images · hw
  hw: u32,     // positions per image
  k: u32,      // code slots per row
  nf: u32,     // features
  c: u32,      // channels (the SAE's d)
  n: u32,      // latents (columns of W_dec)
  start: u32,  // first element of the batch range in x
  images: u32,
  row: u32,    // workgroups along x of the folded grid
}

override WG: u32 = 64u;   // a power of two (the norms tree)
override LAYOUT: u32 = 0u;

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read_write> norm: array<f32>;   // [rows]
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;   // [images]
@group(0) @binding(4) var<storage, read> norm_in: array<f32>;
@group(0) @binding(5) var<storage, read> sums_in: array<f32>;
@group(0) @binding(6) var<storage, read> feats: array<vec4<u32>>;  // [nf]: latent id, mode, mask row, bits of β
@group(0) @binding(7) var<storage, read> masks: array<f32>;        // [mask rows, hw]
@group(0) @binding(8) var<storage, read_write> coef: array<f32>;   // [rows, nf]
@group(0) @binding(9) var<storage, read> coef_in: array<f32>;
@group(0) @binding(10) var<storage, read> w_dec: array<f32>;       // [c, n]
@group(0) @binding(11) var<storage, read_write> x: array<f32>;
@group(0) @binding(12) var<uniform> p: Params;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn norms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let img = wid.y * p.row + wid.x;
  if (img >= p.images) { return; }
  var acc = 0.0;
  for (var q = lid; q < p.hw; q += WG) {
    let r = img * p.hw + q;
    var s = 0.0;
    for (var j = 0u; j < p.k; j++) {
      let v = values[r * p.k + j];
      s += v * v;
    }
    let nr = sqrt(s);
    norm[r] = nr;
    acc += nr;
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w = w / 2u) {
    if (lid < w) { part[lid] += part[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u) { sums[img] = part[0]; }
}

@compute @workgroup_size(WG)
fn coefs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.rows * p.nf) { return; }
  let r = g / p.nf;
  let ft = feats[g % p.nf];
  let beta = bitcast<f32>(ft.w);
  var zc = 0.0;
  for (var j = 0u; j < p.k; j++) {
    if (indices[r * p.k + j] == ft.x) { zc = values[r * p.k + j]; }
  }
  let nr = norm_in[r];
  var cf = 0.0;
  if (ft.y == 0u) {
    let m = clamp(masks[ft.z * p.hw + r % p.hw], 0.0, 1.0);
    cf = m * beta * nr - zc;
  } else {
    let s = sums_in[r / p.hw];
    if (s > 0.0) { cf = beta * nr / s; }
  }
  coef[g] = cf;
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.rows * p.c) { return; }
  var r: u32;
  var ch: u32;
  if (LAYOUT == 0u) {
    let per = p.c * p.hw;
    let rem = g % per;
    ch = rem / p.hw;
    r = (g / per) * p.hw + rem % p.hw;
  } else {
    r = g / p.c;
    ch = g % p.c;
  }
  var acc = 0.0;
  for (var f = 0u; f < p.nf; f++) {
    acc += coef_in[r * p.nf + f] * w_dec[ch * p.n + min(feats[f].x, p.n - 1u)];
  }
  x[p.start + g] += acc;
}
