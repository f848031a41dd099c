// sae_backward.wgsl — the sparse backward of a TopK sparse autoencoder. Only the active (row, latent) pairs are
// touched; see docs/sae.md for the derivation. The forward it inverts (src/sae/model.ts):
//
//   xc = x − b_pre;  pre = xc · W_encᵀ + b_enc;  (v, idx) = TopK(ReLU(pre)) [B, k];  (AuxK: (v, idx) gets ka more
//   slots per row, the top-ka of ReLU(pre) masked to dead latents);  x̂ = b_pre + Σ_s v_s · W_dec[:, idx_s]
//
// The slots of a row are the k main then ka aux ones: vals/idx [B, kt], kt = k + ka. Slot s of row r reads its
// output gradient from dx row `src·B + r` (src = 0 for main slots, 1 for aux ones: dx holds dL/dx̂ then dL/dê).
//
//   dz        dpre[r, s] = gate · Σ_i dx[src, r, i] · W_dec[i, idx]    gate = v > 0 (ReLU; always for aux slots),
//                                                                       1 without ReLU
//   count     table[c, j] = live slots of chunk c that selected latent j      (one invocation per chunk, serial)
//   colscan   table[c, j] ← Σ_{c' < c} table[c', j];  total[j] = Σ_c table[c, j]       (one invocation per latent)
//   scan      start[j] = Σ_{j' < j} total[j']; start[n] = live slots                   (one workgroup)
//   place     list[start[j] + table[c, j]++] = slot                     (one invocation per chunk, slots in order)
//   seg_dec   dW_dec[i, j] (+)= Σ_{slot ∈ list[start[j] .. start[j+1])} v · dx[src, r, i]
//   seg_enc   dW_enc[j, i] (+)= Σ_{slot ∈ segment j} dpre · xc[r, i];  db_enc[j] (+)= Σ dpre
//
// db_pre = Σ_r dx[0, r] − W_encᵀ · Σ_{slots} dpre: the decoder's bias path minus the encoder's centring path, whose
// row sum collapses onto the per-latent sums db_enc (the host does it with reduce and matmul).
//
// A slot is live when v ≠ 0 or dpre ≠ 0 (dead AuxK slots are zero and skipped). count/colscan/scan/place are a
// stable counting sort of the live slots by latent: the transpose of the [B, kt] index list. Each segment lists its
// slots in increasing order, so every sum below runs in a fixed order: the gradients are bit-reproducible, with
// no float atomics. Chunks bound the per-invocation loops (lavapipe stops an invocation after 65,535 loop
// iterations): count and place walk `chunk` slots, colscan `chunks` rows of the table, seg_* one segment (≤ 2B
// slots: a latent appears at most once among the main and once among the aux slots of a row).
//
// Version ladder: v1 dense (src/sae/dense.ts: dz = dx · W_dec over all n latents, dW = dxᵀ · z, the oracle). v2
// gathers and segment sums over the k + ka active slots: O(B · kt · d) instead of O(B · n · d). v3 (this file)
// `place` also lists each slot's dx row, so the segment walks do no integer division (lavapipe scalarises it), and
// the `*4` entries (d % 4 = 0) move four features per load and per walk of a segment.

struct Params {
  rows: u32,   // B
  d: u32,      // features (d / 4 in the *4 entries)
  n: u32,      // latents
  k: u32,      // main slots per row
  kt: u32,     // all slots per row (k + ka)
  chunk: u32,  // slots per chunk (count, place)
  chunks: u32, // chunks of the slot list
  row: u32,    // workgroups along x of the folded grid
}

override WG: u32 = 64u;
override RELU: bool = true;
override ACCUM: bool = true;
override HAS_DW: bool = true;   // seg_enc: write dW_enc
override HAS_DB: bool = true;   // seg_enc: write db_enc
override ACCUM_DB: bool = true; // seg_enc: add into db_enc (the host overwrites a scratch db_enc for db_pre)

@group(0) @binding(0) var<storage, read> vals: array<f32>;            // [B, kt]
@group(0) @binding(1) var<storage, read> idx: array<u32>;             // [B, kt]
@group(0) @binding(2) var<storage, read> dx: array<f32>;              // [1 or 2, B, d]
@group(0) @binding(3) var<storage, read> dx4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> atoms: array<f32>;           // W_decᵀ [n, d]
@group(0) @binding(5) var<storage, read> atoms4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> dpre_out: array<f32>;  // [B, kt]
@group(0) @binding(7) var<storage, read> dpre: array<f32>;
@group(0) @binding(8) var<storage, read_write> table: array<u32>;     // [chunks, n]
@group(0) @binding(9) var<storage, read_write> total: array<u32>;     // [n]
@group(0) @binding(10) var<storage, read> totals: array<u32>;
@group(0) @binding(11) var<storage, read_write> start_out: array<u32>; // [n + 1]
@group(0) @binding(12) var<storage, read> start: array<u32>;
@group(0) @binding(13) var<storage, read_write> list_out: array<u32>;  // [B · kt] slots, by latent
@group(0) @binding(14) var<storage, read> list: array<u32>;
@group(0) @binding(15) var<storage, read_write> srows_out: array<u32>; // [B · kt] their dx rows
@group(0) @binding(16) var<storage, read> srows: array<u32>;
@group(0) @binding(17) var<storage, read> xc: array<f32>;             // [B, d]
@group(0) @binding(18) var<storage, read> xc4: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read_write> dw_enc: array<f32>;   // [n, d]
@group(0) @binding(20) var<storage, read_write> dw_enc4: array<vec4<f32>>;
@group(0) @binding(21) var<storage, read_write> dw_dec: array<f32>;   // [d, n]
@group(0) @binding(22) var<storage, read_write> db_enc: array<f32>;   // [n]
@group(0) @binding(23) var<uniform> p: Params;

fn flat(wid: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * p.row + wid.x) * WG + lid;
}

// Row of dx a slot's gradient comes from: main slots read dL/dx̂[r], aux slots dL/dê[r] (the second block).
fn src_row(q: u32) -> u32 {
  let r = q / p.kt;
  return select(p.rows + r, r, q % p.kt < p.k);
}

// The batch row of a dx row.
fn batch_row(sr: u32) -> u32 {
  return select(sr, sr - p.rows, sr >= p.rows);
}

fn latent(q: u32) -> u32 {
  return min(idx[q], p.n - 1u);
}

fn live(q: u32) -> bool {
  return vals[q] != 0.0 || dpre[q] != 0.0;
}

// Whether slot q passes a gradient to its pre-activation (ReLU gate; AuxK slots are ReLU'd whatever RELU says).
fn gated(q: u32) -> bool {
  return vals[q] > 0.0 || (!RELU && q % p.kt < p.k);
}

@compute @workgroup_size(WG)
fn dz(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q = flat(wid, lid);
  if (q >= p.rows * p.kt) { return; }
  var g = 0.0;
  if (gated(q)) {
    let a = latent(q) * p.d;
    let o = src_row(q) * p.d;
    for (var i = 0u; i < p.d; i++) { g += dx[o + i] * atoms[a + i]; }
  }
  dpre_out[q] = g;
}

@compute @workgroup_size(WG)
fn dz4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q = flat(wid, lid);
  if (q >= p.rows * p.kt) { return; }
  var g = vec4<f32>(0.0);
  if (gated(q)) {
    let a = latent(q) * p.d;
    let o = src_row(q) * p.d;
    for (var i = 0u; i < p.d; i++) { g += dx4[o + i] * atoms4[a + i]; }
  }
  dpre_out[q] = (g.x + g.y) + (g.z + g.w);
}

@compute @workgroup_size(WG)
fn count(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = flat(wid, lid);
  if (c >= p.chunks) { return; }
  let hi = min((c + 1u) * p.chunk, p.rows * p.kt);
  for (var q = c * p.chunk; q < hi; q++) {
    if (live(q)) {
      let at = c * p.n + latent(q);
      table[at] = table[at] + 1u;
    }
  }
}

@compute @workgroup_size(WG)
fn colscan(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = flat(wid, lid);
  if (j >= p.n) { return; }
  var run = 0u;
  for (var c = 0u; c < p.chunks; c++) {
    let t = table[c * p.n + j];
    table[c * p.n + j] = run;
    run += t;
  }
  total[j] = run;
}

const SCAN_WG: u32 = 256u;
var<workgroup> part: array<u32, SCAN_WG>;

@compute @workgroup_size(SCAN_WG)
fn scan(@builtin(local_invocation_index) lid: u32) {
  let per = (p.n + SCAN_WG - 1u) / SCAN_WG;
  let lo = min(lid * per, p.n);
  let hi = min(lo + per, p.n);
  var mine = 0u;
  for (var j = lo; j < hi; j++) { mine += totals[j]; }
  part[lid] = mine;
  workgroupBarrier();
  for (var off = 1u; off < SCAN_WG; off <<= 1u) { // Hillis–Steele inclusive scan
    let add = select(0u, part[lid - min(off, lid)], lid >= off);
    workgroupBarrier();
    part[lid] += add;
    workgroupBarrier();
  }
  var run = part[lid] - mine;
  for (var j = lo; j < hi; j++) {
    start_out[j] = run;
    run += totals[j];
  }
  if (lid == SCAN_WG - 1u) { start_out[p.n] = part[lid]; }
}

@compute @workgroup_size(WG)
fn place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = flat(wid, lid);
  if (c >= p.chunks) { return; }
  let hi = min((c + 1u) * p.chunk, p.rows * p.kt);
  for (var q = c * p.chunk; q < hi; q++) {
    if (live(q)) {
      let j = latent(q);
      let at = table[c * p.n + j];
      table[c * p.n + j] = at + 1u;
      list_out[start[j] + at] = q;
      srows_out[start[j] + at] = src_row(q);
    }
  }
}

// One invocation per (latent j, feature i); a workgroup's invocations share j, hence one segment walk.
@compute @workgroup_size(WG)
fn seg_dec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = flat(wid, lid);
  if (g >= p.n * p.d) { return; }
  let j = g / p.d;
  let i = g % p.d;
  var acc = 0.0;
  let end = start[j + 1u];
  for (var at = start[j]; at < end; at++) { acc += vals[list[at]] * dx[srows[at] * p.d + i]; }
  let o = i * p.n + j;
  if (ACCUM) { acc += dw_dec[o]; }
  dw_dec[o] = acc;
}

// Four features per invocation (p.d counts vec4s).
@compute @workgroup_size(WG)
fn seg_dec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = flat(wid, lid);
  if (g >= p.n * p.d) { return; }
  let j = g / p.d;
  let i = g % p.d;
  var acc = vec4<f32>(0.0);
  let end = start[j + 1u];
  for (var at = start[j]; at < end; at++) { acc += vals[list[at]] * dx4[srows[at] * p.d + i]; }
  for (var c = 0u; c < 4u; c++) {
    let o = (4u * i + c) * p.n + j;
    var v = acc[c];
    if (ACCUM) { v += dw_dec[o]; }
    dw_dec[o] = v;
  }
}

@compute @workgroup_size(WG)
fn seg_enc(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = flat(wid, lid);
  if (g >= p.n * p.d) { return; }
  let j = g / p.d;
  let i = g % p.d;
  var acc = 0.0;
  var bias = 0.0;
  let end = start[j + 1u];
  for (var at = start[j]; at < end; at++) {
    let gq = dpre[list[at]];
    if (HAS_DW) { acc += gq * xc[batch_row(srows[at]) * p.d + i]; }
    bias += gq;
  }
  if (HAS_DW) {
    let o = j * p.d + i;
    if (ACCUM) { acc += dw_enc[o]; }
    dw_enc[o] = acc;
  }
  if (HAS_DB && i == 0u) {
    if (ACCUM_DB) { bias += db_enc[j]; }
    db_enc[j] = bias;
  }
}

@compute @workgroup_size(WG)
fn seg_enc4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = flat(wid, lid);
  if (g >= p.n * p.d) { return; }
  let j = g / p.d;
  let i = g % p.d;
  var acc = vec4<f32>(0.0);
  var bias = 0.0;
  let end = start[j + 1u];
  for (var at = start[j]; at < end; at++) {
    let gq = dpre[list[at]];
    if (HAS_DW) { acc += gq * xc4[batch_row(srows[at]) * p.d + i]; }
    bias += gq;
  }
  if (HAS_DW) {
    let o = j * p.d + i;
    if (ACCUM) { acc += dw_enc4[o]; }
    dw_enc4[o] = acc;
  }
  if (HAS_DB && i == 0u) {
    if (ACCUM_DB) { bias += db_enc[j]; }
    db_enc[j] = bias;
  }
}
