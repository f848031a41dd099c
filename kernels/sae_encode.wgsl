// sae_encode.wgsl — the selection step of a TopK SAE's encoder, fused with its activation: for each row of the
// pre-activations pre [rows, n] (= W_enc (x − b_pre) + b_enc, from matmul.wgsl), the k largest of
//
//   MODE 0   pre                          (Revelio's k-SAE: no ReLU)
//   MODE 1   max(pre, 0)                  (TopK(ReLU(pre)))
//   MODE 2   max(pre, 0) · dead[j]        (AuxK: the dead latents only)
//
// sorted descending, ties broken by the lower index, with the same float → u32 key order as topk.wgsl (so the two
// agree exactly, −0 and NaN included). The transformed pre-activations are never written back.
//
// Version ladder: v1 topk.wgsl on the activated copy (one workgroup per row, radix select: about five passes of
// shared-memory histograms per row, ~120 ns per element on lavapipe). v2 (this file) one invocation per row
// segment keeping a sorted list of the best k in registers: one pass, one compare per element, an insertion
// (≤ k moves) only when an element beats the current k-th (≈ k·ln(len/k) times for random data). For k ≤ KMAX
// (64); larger k (AuxK's 256) goes to topk.wgsl. Loop budget: lavapipe stops an invocation after 65,535 loop
// iterations, and an element costs at most k of them, so rows are cut into segments of `seg` ≤ 60000 / k
// elements; a second dispatch (CANDIDATES) merges the segments' sorted lists, walking them in segment order, which
// keeps ties in index order.
//
// Backward: a selection; dL/dpre[r, idx[r, s]] = gate · dL/dvalues[r, s] (sae_backward.wgsl `dz` applies the ReLU
// gate from the value itself).

struct Params {
  rows: u32,
  len: u32,  // elements per row of the input (n, or segs · k candidates when merging)
  k: u32,
  seg: u32,  // elements one invocation walks
  segs: u32, // segments per row
  row: u32,  // workgroups along x of the folded grid
}

override WG: u32 = 64u;
const KMAX: u32 = 64u; // list capacity (an override cannot size a function-scope array)
override MODE: u32 = 1u;
override CANDIDATES: bool = false; // the input is a previous pass's (values, indices)

@group(0) @binding(0) var<storage, read> pre: array<f32>;
@group(0) @binding(1) var<storage, read> dead: array<f32>;
@group(0) @binding(2) var<storage, read> cand_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> values: array<f32>;
@group(0) @binding(4) var<storage, read_write> indices: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

fn to_key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_key(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.rows * p.segs) { return; }
  let r = g / p.segs;
  let lo = (g % p.segs) * p.seg;
  let hi = min(lo + p.seg, p.len);
  var keys: array<u32, KMAX>;
  var ids: array<u32, KMAX>;
  var count = 0u;
  let last = p.k - 1u;
  for (var j = lo; j < hi; j++) {
    var v = pre[r * p.len + j];
    if (MODE >= 1u) { v = max(v, 0.0); }
    if (MODE == 2u) { v *= dead[j]; }
    let key = to_key(v);
    if (count < p.k || key > keys[last]) {
      var id = j;
      if (CANDIDATES) { id = cand_ids[r * p.len + j]; }
      var at = min(count, last);
      while (at > 0u && keys[at - 1u] < key) { // strictly: an equal key found earlier keeps its place
        keys[at] = keys[at - 1u];
        ids[at] = ids[at - 1u];
        at--;
      }
      keys[at] = key;
      ids[at] = id;
      count = min(count + 1u, p.k);
    }
  }
  let o = g * p.k;
  for (var s = 0u; s < p.k; s++) { // a segment shorter than k pads with the lowest key (never selected later)
    let filled = s < count;
    values[o + s] = from_key(select(0u, keys[s], filled));
    indices[o + s] = select(0xffffffffu, ids[s], filled);
  }
}
