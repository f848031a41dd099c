// group_norm.wgsl — GroupNorm over x [B, C, S] (S = product of the spatial dims, 1 when there are none), PyTorch
// semantics, with an optional SiLU fused after the affine:
//
//   group g of sample b = channels [g·C/G, (g+1)·C/G) × all S positions: n = (C/G)·S contiguous elements
//   mean = Σ x / n,   var = Σ (x − mean)² / n   (biased),   rstd = 1 / sqrt(var + eps)
//   y = (x − mean) · rstd · weight[c] + bias[c],   then y · sigmoid(y) when SILU = 1
//
// Version ladder: v1 one workgroup per group, three sweeps (mean, centred variance, output) over up to 40960
// elements: SD has only B·32 groups, so a GPU runs 64 workgroups and idles. v2 (this file) splits each group into
// chunks of CHUNK = WG·ITEMS elements so every core has work:
//   `stats`  one workgroup per chunk: holds the chunk in registers, two-pass mean then centred M2 = Σ (x − mean)²
//            (no E[x²] − E[x]² cancellation), writes (mean, M2) of the chunk;
//   `merge`  one workgroup per group: combines the chunks' (count, mean, M2) with Chan et al.'s pairwise rule
//            (δ = mb − ma, mean = ma + δ·nb/n, M2 = M2a + M2b + δ²·na·nb/n), in a tree; writes (mean, rstd);
//   `apply`  one invocation per element: the affine, the optional SiLU.
// All three entry points share one binding set (the host binds every buffer each time).
//
// Backward (group_norm_bwd.wgsl): `stats` holds exactly what it needs, mean and rstd per group. With
// x̂ = (x − mean)·rstd and g = dL/dy (times silu'(pre-activation) first when SILU is fused, recomputed from x̂),
//   dx = rstd · (g·w − mean_group(g·w) − x̂ · mean_group(g·w · x̂)),   dw[c] = Σ_{b,s} g·x̂,   db[c] = Σ_{b,s} g,
// i.e. per-(b, c) sums over space (chunked), group means from those, and one elementwise pass; docs/norms.md.

struct Params {
  n: u32,      // elements per group, (C / G) · S
  s: u32,      // spatial size S
  c: u32,      // channels C
  groups: u32, // B · G
  chunks: u32, // chunks per group, ceil(n / CHUNK)
  total: u32,  // B · C · S
  row: u32,    // workgroups along x of this dispatch (the grid is folded over x and y)
  eps: f32,
}

override WG: u32 = 256u; // a power of two
override SILU: u32 = 0u;
const ITEMS: u32 = 8u; // elements per invocation per chunk; CHUNK = WG · ITEMS (the host parses this line)

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>; // [groups, chunks, 2]: chunk mean, chunk M2
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;   // [groups, 2]: mean, rstd (kept for backward)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

var<workgroup> red_n: array<f32, WG>;
var<workgroup> red_mean: array<f32, WG>;
var<workgroup> red_m2: array<f32, WG>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
  red_mean[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_mean[lid] += red_mean[lid + s]; }
    workgroupBarrier();
  }
  let r = red_mean[0];
  workgroupBarrier(); // red_mean is reused by the next call
  return r;
}

@compute @workgroup_size(WG)
fn stats_chunk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * p.row + wid.x;
  if (w >= p.groups * p.chunks) { return; }
  let g = w / p.chunks;
  let start = (w % p.chunks) * WG * ITEMS;
  let count = min(WG * ITEMS, p.n - start);
  let base = g * p.n + start;
  var v: array<f32, ITEMS>;
  var s = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = k * WG + lid;
    v[k] = select(0.0, x[base + min(i, count - 1u)], i < count);
    s += v[k];
  }
  let mean = workgroup_sum(lid, s) / f32(count);
  var q = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let d = select(0.0, v[k] - mean, k * WG + lid < count);
    q += d * d;
  }
  let m2 = workgroup_sum(lid, q);
  if (lid == 0u) {
    partial[2u * w] = mean;
    partial[2u * w + 1u] = m2;
  }
}

// Chan et al.: (na, ma, qa) ⊕ (nb, mb, qb); either side may be empty.
fn combine(na: f32, ma: f32, qa: f32, nb: f32, mb: f32, qb: f32) -> vec3<f32> {
  let n = na + nb;
  if (nb == 0.0) { return vec3<f32>(na, ma, qa); }
  if (na == 0.0) { return vec3<f32>(nb, mb, qb); }
  let d = mb - ma;
  let f = nb / n;
  return vec3<f32>(n, ma + d * f, qa + qb + d * d * na * f);
}

@compute @workgroup_size(WG)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * p.row + wid.x;
  if (g >= p.groups) { return; }
  var acc = vec3<f32>(0.0);
  for (var j = lid; j < p.chunks; j += WG) {
    let cnt = f32(min(WG * ITEMS, p.n - j * WG * ITEMS));
    let at = 2u * (g * p.chunks + j);
    acc = combine(acc.x, acc.y, acc.z, cnt, partial[at], partial[at + 1u]);
  }
  red_n[lid] = acc.x;
  red_mean[lid] = acc.y;
  red_m2[lid] = acc.z;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let r = combine(red_n[lid], red_mean[lid], red_m2[lid], red_n[lid + s], red_mean[lid + s], red_m2[lid + s]);
      red_n[lid] = r.x;
      red_mean[lid] = r.y;
      red_m2[lid] = r.z;
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    stats[2u * g] = red_mean[0];
    stats[2u * g + 1u] = 1.0 / sqrt(red_m2[0] / f32(p.n) + p.eps);
  }
}

@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.total) { return; }
  let g = i / p.n;
  let ch = (i / p.s) % p.c;
  var y = (x[i] - stats[2u * g]) * stats[2u * g + 1u] * weight[ch] + bias[ch];
  if (SILU == 1u) { y = y / (1.0 + exp(-y)); }
  out[i] = y;
}
