// ablate_mask.wgsl — CAD ablation (Nguyen et al., "Unveiling Concept Attribution in Diffusion Models"): which
// weights to zero, given attribution scores S = W ⊙ ∂J/∂W of a weight matrix [out, in], and the in-place edits.
//
//   positive: in each row, the q entries with the largest S (ties: lower column first) are zeroed where S > 0
//   negative: the q entries with the largest −S, zeroed where S < 0
//   both:     both of the above, each with its own quota
//   q = ⌊ratio · in⌋ per row, or q = ⌊ratio · numel⌋ over the whole matrix when flattened (one segment)
//
// The mask starts at 1 (keep) and the passes below write 0 where an entry is to be zeroed. −S is ranked as
// `neg(S)` (−S, with ±0 both mapped to +0), so that the top-k path (which ranks the tensor `negate` writes) and the
// radix path (which ranks `neg(S)` computed on the fly) order every value, zeros included, identically.
//
// Two ways to find the top q, both giving the same set:
//   topk path (per row, q ≤ maxTopK): topk.wgsl ranks S (or `negate`'s −S) row by row; `scatter` zeroes the
//     selected columns whose ranked value is > 0 (that is S > 0, or S < 0 for −S).
//   radix path (flattened, or q > maxTopK): the q-th largest element of each segment under the total order
//     (value desc, index asc) is found by a radix select over a 64-bit key: the high word is the float's order key
//     (as in topk.wgsl), the low word is `len − 1 − index` (so a lower index ranks higher), which makes every key
//     distinct and the threshold exact, ties included. Passes, most significant byte first: `hist` (any number of
//     workgroups per segment, so a 13M-element flattened matrix is spread over the whole GPU) counts the remaining
//     candidates per byte value into a global histogram; `pick` (one workgroup per segment) finds the byte where the
//     count of larger keys falls through the quota, narrows the candidate prefix and clears the histogram. The
//     search ends early once a whole bin is selected (`done`); later passes return at once. `select` then zeroes,
//     elementwise, every entry whose key is ≥ the settled prefix and whose sign is right. 4 value bytes + up to
//     4 index bytes (only as many as the segment length needs): ≤ 16 small dispatches + one elementwise pass.
//
// Then, on the parameter itself: `apply` zeroes where the mask is 0 (in place, writing +0 bits); `collect` lists
// the masked entries (index, original bits) for an undo patch, in arbitrary order (the host sorts); `tally` counts them;
// `write_patch` writes a patch's values back (RESTORE = 1) or zeroes its indices (RESTORE = 0). These move raw 32-bit
// words, so an ablate + restore round trip is bit-exact (NaN payloads and −0 included).
//
// Version ladder: v1 (reference code) sorts every row on the host (torch.argsort). v2 (this file): top-k or radix
// select on the GPU, no sort of the rows. No backward: ablation is an edit, not part of a differentiated graph.

struct Params {
  n: u32,      // elements this dispatch covers (selection slots, mask or patch entries)
  len: u32,    // segment length: a row, or every element when flattened
  segs: u32,   // segments
  chunks: u32, // hist: workgroups per segment
  span: u32,   // hist: elements per workgroup
  k: u32,      // scatter: top-k slots per row; pick: the quota q
  row: u32,    // workgroups along x (the grid is folded over x and y)
  word: u32,   // hist, pick: the byte being settled lies in the value word (0) or the index word (1)
  shift: u32,  // hist, pick: its bit position in that word
  first: u32,  // hist, pick: 1 on the first pass (no state written yet)
  cap: u32,    // collect: capacity of the lists
}

override WG: u32 = 256u;
override NEG: u32 = 0u;     // rank neg(S) instead of S (negative ablation)
override RESTORE: u32 = 0u; // patch: write the saved values (1) or zeros (0)
const BINS: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<f32>;             // scores S
@group(0) @binding(1) var<storage, read_write> mask: array<f32>;    // 1 keep, 0 zero
@group(0) @binding(2) var<storage, read> keep: array<f32>;          // a finished mask
@group(0) @binding(3) var<storage, read> top_values: array<f32>;    // topk of S or neg(S): [rows, k]
@group(0) @binding(4) var<storage, read> top_indices: array<u32>;
@group(0) @binding(5) var<storage, read_write> hist: array<atomic<u32>>; // [segs, 256], zero between passes
@group(0) @binding(6) var<storage, read_write> state: array<u32>;   // [segs, 8], written by pick
@group(0) @binding(7) var<storage, read> cut: array<u32>;           // the same state, read by hist and select
@group(0) @binding(8) var<storage, read_write> y: array<f32>;       // negate's output
@group(0) @binding(9) var<storage, read_write> param: array<u32>;   // the weights, as raw bits (apply, patch)
@group(0) @binding(10) var<storage, read> param_in: array<u32>;     // the weights, as raw bits (collect)
@group(0) @binding(11) var<storage, read_write> found_idx: array<u32>;
@group(0) @binding(12) var<storage, read_write> found_bits: array<u32>;
@group(0) @binding(13) var<storage, read_write> count: array<atomic<u32>>;
@group(0) @binding(14) var<storage, read> patch_idx: array<u32>;
@group(0) @binding(15) var<storage, read> patch_bits: array<u32>;
@group(0) @binding(16) var<uniform> p: Params;

// The radix search of one segment: the settled high bits of the threshold key and how many keys equal to them
// still belong in the top q. `done`: every key ≥ prefix (on the settled bits) is selected, exactly q of them.
struct Cut {
  prefix_hi: u32,
  prefix_lo: u32,
  mask_hi: u32,
  mask_lo: u32,
  need: u32,
  done: u32,
}
const STATE: u32 = 8u; // u32 slots per segment in `state`

var<workgroup> local_hist: array<atomic<u32>, BINS>;
var<workgroup> suffix: array<u32, BINS>;
var<workgroup> shared_cut: Cut;
struct Found {
  bin: u32,
  above: u32, // candidates in higher bins
  count: u32, // candidates in the bin
}
var<workgroup> found: Found;

fn to_key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// −v with both zeros mapped to +0: what negative ablation ranks. On the bits, so that devices flushing subnormals
// to zero in arithmetic and comparisons still rank (and sign-test) them as the CPU does.
fn neg(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  return bitcast<f32>(select(b ^ 0x80000000u, 0u, (b & 0x7fffffffu) == 0u));
}

// v > 0 on the bits: false for ±0 and NaN, true for positive subnormals.
fn is_positive(v: f32) -> bool {
  let b = bitcast<u32>(v);
  return b != 0u && b <= 0x7f800000u;
}

fn ranked(v: f32) -> f32 {
  return select(v, neg(v), NEG == 1u);
}

fn load_cut(seg: u32) -> Cut {
  let b = seg * STATE;
  return Cut(cut[b], cut[b + 1u], cut[b + 2u], cut[b + 3u], cut[b + 4u], cut[b + 5u]);
}

fn initial_cut() -> Cut {
  return Cut(0u, 0u, 0u, 0u, p.k, 0u);
}

// negate: y = neg(x), for the top-k path of negative ablation.
@compute @workgroup_size(WG)
fn negate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  y[i] = neg(x[i]);
}

// scatter: zero the columns topk selected in each row where the ranked value is > 0 (S > 0, or S < 0 ranked as −S).
@compute @workgroup_size(WG)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  if (is_positive(top_values[i])) {
    mask[(i / p.k) * p.len + top_indices[i]] = 0.0;
  }
}

// hist: count the remaining candidates of one chunk of a segment by the byte being settled.
@compute @workgroup_size(WG)
fn radix_hist(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * p.row + wid.x;
  if (w >= p.segs * p.chunks) { return; }
  let seg = w / p.chunks;
  if (lid == 0u) {
    shared_cut = initial_cut();
    if (p.first == 0u) { shared_cut = load_cut(seg); }
  }
  let c = workgroupUniformLoad(&shared_cut);
  if (c.done == 1u) { return; }
  for (var b = lid; b < BINS; b += WG) { atomicStore(&local_hist[b], 0u); }
  workgroupBarrier();
  let lo = (w - seg * p.chunks) * p.span;
  let hi = min(lo + p.span, p.len);
  let base = seg * p.len;
  for (var i = lo + lid; i < hi; i += WG) {
    let kh = to_key(ranked(x[base + i]));
    let kl = p.len - 1u - i;
    if ((kh & c.mask_hi) == c.prefix_hi && (kl & c.mask_lo) == c.prefix_lo) {
      let digit = (select(kl, kh, p.word == 0u) >> p.shift) & 0xffu;
      atomicAdd(&local_hist[digit], 1u);
    }
  }
  workgroupBarrier();
  for (var b = lid; b < BINS; b += WG) {
    let n = atomicLoad(&local_hist[b]);
    if (n != 0u) { atomicAdd(&hist[seg * BINS + b], n); }
  }
}

// pick: settle one byte of the segment's threshold from its histogram (one invocation per bin), clear the histogram.
@compute @workgroup_size(256)
fn radix_pick(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let seg = wid.y * p.row + wid.x;
  if (seg >= p.segs) { return; }
  if (lid == 0u) {
    let b = seg * STATE;
    shared_cut = initial_cut();
    if (p.first == 0u) {
      shared_cut = Cut(state[b], state[b + 1u], state[b + 2u], state[b + 3u], state[b + 4u], state[b + 5u]);
    }
  }
  var c = workgroupUniformLoad(&shared_cut);
  if (c.done == 1u) { return; } // hist skipped this segment too: its histogram is still clear
  let h = atomicExchange(&hist[seg * BINS + lid], 0u);
  // suffix[lid] = candidates in bins ≥ lid (Hillis–Steele, from the top)
  suffix[lid] = h;
  workgroupBarrier();
  for (var off = 1u; off < BINS; off <<= 1u) {
    let v = select(0u, suffix[min(lid + off, BINS - 1u)], lid + off < BINS);
    workgroupBarrier();
    suffix[lid] += v;
    workgroupBarrier();
  }
  let above = suffix[lid] - h;
  if (above < c.need && above + h >= c.need) { // exactly one bin: the suffix counts fall through `need` there
    found = Found(lid, above, h);
  }
  let f = workgroupUniformLoad(&found);
  if (lid == 0u) {
    c.need -= f.above;
    let settled = 0xffu << p.shift;
    if (p.word == 0u) {
      c.prefix_hi |= f.bin << p.shift;
      c.mask_hi |= settled;
    } else {
      c.prefix_lo |= f.bin << p.shift;
      c.mask_lo |= settled;
    }
    c.done = select(0u, 1u, f.count == c.need);
    let b = seg * STATE;
    state[b] = c.prefix_hi;
    state[b + 1u] = c.prefix_lo;
    state[b + 2u] = c.mask_hi;
    state[b + 3u] = c.mask_lo;
    state[b + 4u] = c.need;
    state[b + 5u] = c.done;
  }
}

// select: zero every entry at or above its segment's threshold whose score has the right sign.
@compute @workgroup_size(WG)
fn radix_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let seg = i / p.len;
  let c = load_cut(seg);
  let r = ranked(x[i]);
  if (c.done == 0u || !is_positive(r)) { return; }
  let kh = to_key(r) & c.mask_hi;
  let kl = (p.len - 1u - (i - seg * p.len)) & c.mask_lo;
  if (kh > c.prefix_hi || (kh == c.prefix_hi && kl >= c.prefix_lo)) {
    mask[i] = 0.0;
  }
}

// apply: param = 0 where keep = 0, in place; other entries are not touched.
@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  if (keep[i] == 0.0) { param[i] = 0u; }
}

// collect: list (index, original bits) of every entry the mask zeroes, up to `cap` of them; count them all.
@compute @workgroup_size(WG)
fn collect(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  if (keep[i] == 0.0) {
    let slot = atomicAdd(&count[0], 1u);
    if (slot < p.cap) {
      found_idx[slot] = i;
      found_bits[slot] = param_in[i];
    }
  }
}

// tally: count the entries the mask zeroes.
@compute @workgroup_size(WG)
fn tally(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  if (keep[i] == 0.0) { atomicAdd(&count[0], 1u); }
}

// write_patch: param[patch_idx[i]] = patch_bits[i] (RESTORE = 1) or +0 (RESTORE = 0).
@compute @workgroup_size(WG)
fn write_patch(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  param[patch_idx[i]] = select(0u, patch_bits[i], RESTORE == 1u);
}
