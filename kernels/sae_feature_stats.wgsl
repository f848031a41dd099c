// sae_feature_stats.wgsl — what a TopK SAE's features do over a set of images, from the dense codes z [rows, n]
// of a batch of whole images (image g of the batch owns rows g·P … g·P + P − 1, one per spatial position q):
//
//   image_stats:  mean[c, g0 + g] = (1/P) Σ_q z[g·P + q, c]      (γ_c of SDLens / Surkov: the ranking score)
//                 max[c, g0 + g]  = max_q z[g·P + q, c]
//   count:        counts[c] += #{r : z[r, c] > 0}                   (firing count; frequency = count / rows)
//   gather_maps:  maps[j, q] = z[jobs[j].image · P + q, jobs[j].feature]   (heat maps of chosen (feature, image))
//   gather_top:   top_max[c, s] = max[c, top_ids[c, s]]             (the max beside each top image's mean)
//
// The matrices are [n, G] (a feature's scores over all G images form a row) so that the row-wise `topk` op ranks
// the images of every feature directly. Deterministic: every output element is owned by one invocation that
// walks its inputs in a fixed order (no float atomics: WGSL has none, and fixed-point atomics would round).
//
// Version ladder: v1 (this file) one invocation per output element over the densified code (`densify` of
// sparse.ts): reads are coalesced along c, and the dense batch is no larger than the encoder's pre-activations
// [rows, n] that the batch already holds. (A v2 could walk the sparse code per image — P·k entries instead of
// P·n — with a per-image counting sort to keep the sums deterministic.) No backward: these are statistics.

struct Params {
  rows: u32,    // rows of z in this batch (= images · positions)
  n: u32,       // latents
  positions: u32,
  images: u32,  // images in this batch
  total: u32,   // G: columns of mean / max
  first: u32,   // g0: column of the batch's first image
  jobs: u32,    // gather_maps: number of (image, feature) jobs; gather_top: k
  row: u32,     // workgroups along x of the folded grid
}

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> max_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> counts: array<u32>;
@group(0) @binding(4) var<storage, read> job_list: array<u32>;
@group(0) @binding(5) var<storage, read_write> maps: array<f32>;
@group(0) @binding(6) var<storage, read> max_in: array<f32>;
@group(0) @binding(7) var<storage, read> top_ids: array<u32>;
@group(0) @binding(8) var<storage, read_write> top_max: array<f32>;
@group(0) @binding(9) var<uniform> p: Params;

// One invocation per (image g, feature c), c fastest.
@compute @workgroup_size(WG)
fn image_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.images * p.n) { return; }
  let c = i % p.n;
  let g = i / p.n;
  var sum = 0.0;
  var mx = z[g * p.positions * p.n + c];
  for (var q = 0u; q < p.positions; q++) {
    let v = z[(g * p.positions + q) * p.n + c];
    sum += v;
    mx = max(mx, v);
  }
  let o = c * p.total + p.first + g;
  mean_out[o] = sum / f32(p.positions);
  max_out[o] = mx;
}

// One invocation per feature c.
@compute @workgroup_size(WG)
fn count(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = (wid.y * p.row + wid.x) * WG + lid;
  if (c >= p.n) { return; }
  var fired = 0u;
  for (var r = 0u; r < p.rows; r++) {
    if (z[r * p.n + c] > 0.0) { fired += 1u; }
  }
  counts[c] += fired;
}

// One invocation per (job j, position q); job_list[2j] = image within the batch, job_list[2j + 1] = feature.
@compute @workgroup_size(WG)
fn gather_maps(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.jobs * p.positions) { return; }
  let q = i % p.positions;
  let j = i / p.positions;
  let g = min(job_list[2u * j], p.images - 1u);
  let c = min(job_list[2u * j + 1u], p.n - 1u);
  maps[i] = z[(g * p.positions + q) * p.n + c];
}

// One invocation per (feature c, slot s) of the top-k result [n, k].
@compute @workgroup_size(WG)
fn gather_top(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n * p.jobs) { return; }
  let c = i / p.jobs;
  top_max[i] = max_in[c * p.total + min(top_ids[i], p.total - 1u)];
}
