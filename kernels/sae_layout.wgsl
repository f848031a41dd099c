// sae_layout.wgsl — layout prediction from SAE codes (Tinaz et al. §3.4): the top feature of every position, and the
// overlap of the positions whose top feature is in a concept set with a mask.
//
//   top[r]  = argmax_s values[r, s] → indices[r, s]   when that value is > 0 (ties: the lower latent id), else −1
//   counts[img] = (|P ∩ M|, |P ∪ M|, |P|, |M|)   P = {p : top[img·hw + p] ∈ set_img},  M = {p : mask[p] ≥ 0.5}
//
// The concept set is one list [nset] shared by every image (set_stride 0) or one per image [images, nset]
// (set_stride nset; shorter sets padded with −1, which never matches), so all images are counted in one dispatch.
// IoU = |P ∩ M| / |P ∪ M| is formed on the host from the integer counts (exact, so deterministic). `top` scans all
// k slots rather than trusting the code's order, so unsorted codes work too. `iou` runs one workgroup per image and
// sums by a fixed tree. v1 (this file): plain loops; the set holds a handful of ids. Backward: none (not
// differentiable: argmax and thresholds).

struct Params {
  rows: u32,    // images · hw
  hw: u32,
  k: u32,
  nset: u32,    // ids in the concept set
  images: u32,
  row: u32,     // workgroups along x of the folded grid
  set_stride: u32, // 0: one set for all images; nset: image img's set starts at img · nset
}

override WG: u32 = 64u; // a power of two (the counting tree)

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read_write> top: array<i32>;    // [rows]
@group(0) @binding(3) var<storage, read> top_in: array<i32>;
@group(0) @binding(4) var<storage, read> concepts: array<i32>;     // [nset] or [images, nset]
@group(0) @binding(5) var<storage, read> mask: array<f32>;         // [hw]
@group(0) @binding(6) var<storage, read_write> counts: array<vec4<u32>>; // [images]
@group(0) @binding(7) var<uniform> p: Params;

var<workgroup> part: array<vec4<u32>, WG>;

@compute @workgroup_size(WG)
fn top_feature(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = (wid.y * p.row + wid.x) * WG + lid;
  if (r >= p.rows) { return; }
  var best = 0.0;
  var id = -1;
  for (var s = 0u; s < p.k; s++) {
    let v = values[r * p.k + s];
    let c = i32(indices[r * p.k + s]);
    if (v > best || (v == best && v > 0.0 && c < id)) {
      best = v;
      id = c;
    }
  }
  top[r] = id;
}

@compute @workgroup_size(WG)
fn iou(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let img = wid.y * p.row + wid.x;
  if (img >= p.images) { return; }
  var acc = vec4<u32>(0u);
  for (var q = lid; q < p.hw; q += WG) {
    let t = top_in[img * p.hw + q];
    var inP = false;
    for (var j = 0u; j < p.nset; j++) {
      if (concepts[img * p.set_stride + j] == t && t >= 0) { inP = true; }
    }
    let inM = mask[q] >= 0.5;
    acc += vec4<u32>(u32(inP && inM), u32(inP || inM), u32(inP), u32(inM));
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w = w / 2u) {
    if (lid < w) { part[lid] += part[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u) { counts[img] = part[0]; }
}
