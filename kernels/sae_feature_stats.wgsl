// sae_feature_stats.wgsl — what a TopK SAE's features do over a set of images, from the dense codes z [rows, n]
// of a batch of whole images (image g of the batch owns rows g·P … g·P + P − 1, one per spatial position q), and
// the running top images of every feature, merged batch by batch:
//
//   image_stats:  mean[c, g0 + g] = (1/P) Σ_q v(z[g·P + q, c])   (γ_c of SDLens / Surkov: the ranking score)
//                 max[c, g0 + g]  = max_q v(z[g·P + q, c])         v = ReLU when `relu` (Revelio ranks by ReLU of
//                                                                  the dense pre-activation: z is then `pre`)
//   count:        counts[c] += #{r : z[r, c] > 0}                   (firing count; frequency = count / rows)
//   gather_maps:  maps[j, q] = v(z[jobs[j].image · P + q, jobs[j].feature])   (heat maps of chosen (feature, image))
//   seed_top:     mean[c, s] = run_scores[c, s], max[c, s] = run_max[c, s]   for s < T (the kept top lists)
//   merge_top:    after `topk` over the rows of mean [n, T + B] → top_ids [n, k] (columns):
//                 new_ids[c, s] = run_ids[c, col] if col < T else base + col − T;   top_max[c, s] = max[c, col]
//
// The candidate matrices are [n, T + B] (a feature's T kept images, then the batch's B images, form a row) so that
// the row-wise `topk` op ranks them directly. Its ties go to the lower column, and the row is ordered so that this
// is the lower image id: the kept entries (ids < base, sorted by (γ desc, id asc) by the previous merge) come first,
// then the batch's images in id order. So the running lists equal the top-k over all images so far, ties to the
// lower id, in O(n·(T + B)) memory whatever the number of images. Deterministic: every output element is owned by
// one invocation that walks its inputs in a fixed order (no float atomics: WGSL has none, and fixed-point atomics
// would round).
//
// Version ladder: v1 one [n, G] score matrix over all G images, ranked once at the end (n·G·4 bytes had to fit one
// binding: 6553 images at n = 5120). v2 (this file) running top lists merged per batch; one invocation per output
// element over the densified code (`densify` of sparse.ts): reads are coalesced along c, and the dense batch is no
// larger than the encoder's pre-activations [rows, n] that the batch already holds. (A v3 could walk the sparse code
// per image — P·k entries instead of P·n — with a per-image counting sort to keep the sums deterministic.) No
// backward: these are statistics.

struct Params {
  rows: u32,    // rows of z in this batch (= images · positions)
  n: u32,       // latents
  positions: u32,
  images: u32,  // images in this batch
  total: u32,   // columns of mean / max (the T kept + B batch candidates)
  first: u32,   // g0: column of the batch's first image (T)
  jobs: u32,    // gather_maps: number of (image, feature) jobs; merge_top: k
  row: u32,     // workgroups along x of the folded grid
  kept: u32,    // T: columns of the running top lists
  base: u32,    // merge_top: image id of the batch's first image
  relu: u32,    // image_stats, gather_maps: 1 = read max(z, 0)
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
@group(0) @binding(9) var<storage, read> run_scores: array<f32>;
@group(0) @binding(10) var<storage, read> run_ids: array<u32>;
@group(0) @binding(11) var<storage, read_write> new_ids: array<u32>;
@group(0) @binding(12) var<uniform> p: Params;

fn value(i: u32) -> f32 {
  let v = z[i];
  return select(v, max(v, 0.0), p.relu != 0u);
}

// One invocation per (image g, feature c), c fastest.
@compute @workgroup_size(WG)
fn image_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.images * p.n) { return; }
  let c = i % p.n;
  let g = i / p.n;
  var sum = 0.0;
  var mx = value(g * p.positions * p.n + c);
  for (var q = 0u; q < p.positions; q++) {
    let v = value((g * p.positions + q) * p.n + c);
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
  maps[i] = value((g * p.positions + q) * p.n + c);
}

// One invocation per (feature c, kept slot s < T): the running lists become the first T candidate columns.
@compute @workgroup_size(WG)
fn seed_top(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n * p.kept) { return; }
  let c = i / p.kept;
  let s = i % p.kept;
  mean_out[c * p.total + s] = run_scores[i];
  max_out[c * p.total + s] = max_in[i];
}

// One invocation per (feature c, slot s) of the merged lists [n, k]; top_ids are columns of the candidates.
@compute @workgroup_size(WG)
fn merge_top(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n * p.jobs) { return; }
  let c = i / p.jobs;
  let col = min(top_ids[i], p.total - 1u);
  top_max[i] = max_in[c * p.total + col];
  if (col < p.kept) {
    new_ids[i] = run_ids[c * p.kept + col];
  } else {
    new_ids[i] = p.base + col - p.kept;
  }
}
