// topk.wgsl — row-wise top-k of x [rows, len]: the k largest values of each row, sorted descending, ties broken by
// the lower index, with their indices (u32):
//
//   (values[r, :], indices[r, :]) = the first k of row r ordered by (x desc, index asc)
//
// One workgroup per row, in three steps:
//   1. radix select: floats are mapped to u32 keys whose unsigned order is the float order (flip all bits of
//      negatives, the sign bit of the rest; NaN sorts above +inf, −0 below +0). Up to four passes of an 8-bit
//      histogram in workgroup memory, most significant byte first, narrow the candidates to the exact key T of the
//      k-th largest element and give `need`, how many elements equal to T belong in the top k; a pass that finds
//      the whole bin selected ends the search early (every key ≥ the settled prefix is then in the top k);
//   2. selection: every key > T, plus the `need` lowest-index keys equal to T (when more than `need` tie at T,
//      each invocation walks a contiguous span so that one prefix sum ranks the ties by index);
//   3. order: a bitonic sort of the k selected (padded to KMAX, a power of two) in workgroup memory by
//      (key desc, index asc): log₂KMAX·(log₂KMAX + 1)/2 steps of KMAX/2 compare-exchanges (36 steps at k = 256).
// The row is read up to five times (histograms, selection); at SAE sizes (5120 floats) it stays in cache. The host
// picks WG from the row length (≈16 elements per invocation, 64…256): each invocation owns 256 / WG histogram bins.
//
// Version ladder: v1 one invocation per row sorting it (serial; a 5120-long sort per invocation). v2 bitonic sort
// of the padded row in workgroup memory (8192 keys + indices do not fit in 32 KB). v3 (this file) radix select then
// a sort of the k survivors: work ∝ len + k·log²k, independent of the row's order. (A rank sort of the survivors,
// each counting how many beat it, cost k² comparisons: twice the whole kernel's time at k = 256 on lavapipe.)
//
// Backward (later issue): top-k is a selection, so dL/dx[r, indices[r, i]] = dL/dvalues[r, i] and 0 elsewhere: a
// scatter with the saved indices (no atomics needed: indices within a row are distinct); see docs/norms.md.

struct Params {
  rows: u32,
  len: u32,
  k: u32,
  row: u32, // workgroups along x (the grid is folded over x and y)
}

override KMAX: u32 = 32u; // capacity for the selected elements: a power of two ≥ k
override WG: u32 = 256u;  // a power of two ≥ 16; the host uses fewer invocations for short rows
const BINS: u32 = 256u;   // one byte of the key per radix pass

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> indices: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> hist: array<atomic<u32>, BINS>;
var<workgroup> scan: array<u32, WG>;
var<workgroup> sel_key: array<u32, KMAX>;
var<workgroup> sel_idx: array<u32, KMAX>;
var<workgroup> taken: atomic<u32>;
struct Found {
  bin: u32,   // the bin holding the k-th largest candidate
  above: u32, // candidates in higher bins
  count: u32, // candidates in the bin
}
var<workgroup> found: Found;

fn to_key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_key(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// scan[i] ← Σ_{j ≤ i} scan[j] (Hillis–Steele; only for rows with surplus ties at the threshold).
fn inclusive_scan(lid: u32) {
  workgroupBarrier();
  for (var off = 1u; off < WG; off <<= 1u) {
    let v = select(0u, scan[lid - min(off, lid)], lid >= off);
    workgroupBarrier();
    scan[lid] += v;
    workgroupBarrier();
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.row + wid.x;
  if (r >= p.rows) { return; }
  let base = r * p.len;

  // 1. radix select of the k-th largest key, a byte at a time
  var prefix = 0u; // the bytes of T found so far (lower bytes 0)
  var mask = 0u;   // which bits of prefix are settled
  var need = p.k;  // how many of the remaining candidates belong in the top k
  var at_t = 0u;   // how many candidates share the settled bytes: when need, every key ≥ prefix is selected
  for (var digit = 0u; digit < 4u; digit++) {
    let shift = 24u - 8u * digit;
    for (var bin = lid; bin < BINS; bin += WG) { atomicStore(&hist[bin], 0u); }
    workgroupBarrier();
    for (var i = lid; i < p.len; i += WG) {
      let key = to_key(x[base + i]);
      if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 0xffu], 1u); }
    }
    workgroupBarrier();
    // suffix counts (how many candidates fall in bins > bin) from 16 block sums, in two barriers
    if (lid < 16u) {
      var s = 0u;
      for (var j = 0u; j < 16u; j++) { s += atomicLoad(&hist[16u * lid + j]); }
      scan[lid] = s;
    }
    workgroupBarrier();
    // each invocation owns BINS / WG consecutive bins (inside one block) and walks them from the top
    let run = BINS / WG;
    let first = lid * run;
    var gt = 0u; // candidates in bins above the one being looked at
    for (var q = first / 16u + 1u; q < 16u; q++) { gt += scan[q]; }
    for (var j = first + run; j % 16u != 0u; j++) { gt += atomicLoad(&hist[j]); }
    for (var j = run; j > 0u; j--) {
      let h = atomicLoad(&hist[first + j - 1u]);
      if (gt < need && gt + h >= need) { // exactly one bin: the suffix counts fall through `need` there
        found = Found(first + j - 1u, gt, h);
      }
      gt += h;
    }
    let f = workgroupUniformLoad(&found);
    let b = f.bin;
    need -= f.above;
    at_t = f.count;
    prefix |= b << shift;
    mask |= 0xffu << shift;
    if (at_t == need) { break; } // the whole bin is selected: no need to settle the lower bytes
  }

  // 2. select the k elements: all keys > T and the `need` lowest-index keys == T (T = prefix once all four
  //    bytes are settled; after an early exit every key ≥ prefix, exactly k of them)
  if (lid == 0u) { atomicStore(&taken, 0u); }
  workgroupBarrier();
  if (at_t == need) {
    for (var i = lid; i < p.len; i += WG) {
      let key = to_key(x[base + i]);
      if (key >= prefix) {
        let at = atomicAdd(&taken, 1u);
        sel_key[at] = key;
        sel_idx[at] = i;
      }
    }
  } else {
    let span = (p.len + WG - 1u) / WG;
    let lo = min(lid * span, p.len);
    let hi = min(lo + span, p.len);
    var mine = 0u;
    for (var i = lo; i < hi; i++) { mine += u32(to_key(x[base + i]) == prefix); }
    scan[lid] = mine;
    inclusive_scan(lid);
    var tie = scan[lid] - mine; // ties at lower indices than this span
    let greater = p.k - need;
    for (var i = lo; i < hi; i++) {
      let key = to_key(x[base + i]);
      if (key > prefix) {
        let at = atomicAdd(&taken, 1u);
        sel_key[at] = key;
        sel_idx[at] = i;
      } else if (key == prefix) {
        if (tie < need) {
          sel_key[greater + tie] = key;
          sel_idx[greater + tie] = i;
        }
        tie++;
      }
    }
  }
  workgroupBarrier();

  // 3. sort the selection, best first: bitonic network over KMAX slots, padding after the k selected
  for (var i = p.k + lid; i < KMAX; i += WG) {
    sel_key[i] = 0u; // below every real element: its index loses the tie
    sel_idx[i] = 0xffffffffu;
  }
  workgroupBarrier();
  for (var size = 2u; size <= KMAX; size <<= 1u) {
    for (var stride = size / 2u; stride > 0u; stride >>= 1u) {
      for (var t = lid; t < KMAX / 2u; t += WG) {
        let i = ((t & ~(stride - 1u)) << 1u) | (t & (stride - 1u)); // t-th pair's lower slot
        let l = i + stride;
        let ki = sel_key[i];
        let kl = sel_key[l];
        let ii = sel_idx[i];
        let il = sel_idx[l];
        let l_first = kl > ki || (kl == ki && il < ii);
        if (l_first == ((i & size) == 0u)) { // runs alternate direction until the last merge
          sel_key[i] = kl;
          sel_key[l] = ki;
          sel_idx[i] = il;
          sel_idx[l] = ii;
        }
      }
      workgroupBarrier();
    }
  }
  let out = r * p.k;
  for (var i = lid; i < p.k; i += WG) {
    values[out + i] = from_key(sel_key[i]);
    indices[out + i] = sel_idx[i];
  }
}
