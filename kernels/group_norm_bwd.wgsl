// group_norm_bwd.wgsl — gradients of group_norm.wgsl (GroupNorm over x [B, C, S], optional fused SiLU) from
// dout = dL/d(output) and the forward's per-group `stats` (mean, rstd):
//
//   x̂ = (x − mean)·rstd,   z = x̂·w[c] + b[c],   g = dL/dz = dout · (SILU ? σ(z)·(1 + z·(1 − σ(z))) : 1)
//   dbias[c] = Σ_{b,s} g,   dweight[c] = Σ_{b,s} g·x̂
//   dx = rstd · (g·w[c] − mean_grp(g·w) − x̂ · mean_grp(g·w·x̂))     means over the n = (C/G)·S elements of a group
//
// w is constant along a channel's S positions, so both group means follow from per-(b, c) sums
// A[b, c] = Σ_s g and Q[b, c] = Σ_s g·x̂:   mean_grp(g·w) = Σ_{c ∈ grp} w[c]·A[b, c] / n, likewise with Q. A and Q
// are also the terms of dbias and dweight, so one reduction over space serves all three gradients:
//   `row_partial`  A and Q per (b, c) row and chunk of S, written to partial [B·chunks, 2, C]. A workgroup's
//                  TX·TY invocations are TX rows × TY lanes along s, each lane adding `per` elements (stride TY,
//                  coalesced); TX > 1 only when S is short (S = 1 without spatial dims: 256 rows per workgroup).
//                  The workgroup is declared 1-D and split in code: lavapipe runs the local x dimension across its
//                  SIMD lanes, so @workgroup_size(1, 256) would fill one lane in eight (measured 4–5× slower);
//   `group_means`  one workgroup per (b, group): Σ over its C/G channels and the chunks, weighted by w, / n;
//   `dx_apply`     elementwise, recomputing g and x̂, over the same (row, chunk) split as `row_partial` so that the
//                  row's constants (and the integer divisions finding them) are per invocation, not per element;
//   dweight, dbias: _norm_param_grad.wgsl sums `partial` over its B·chunks rows.
// SD at 64×64 (S = 4096, 40960 elements per group): one chunk per row, B·C workgroups in the first pass, no
// invocation loops more than `per` = 16 times (lavapipe ends an invocation after 65,535 iterations).
//
// Version ladder: v1 one workgroup per group, serial sweeps over its up to 40960 elements (B·32 workgroups: the GPU
// idles). v2 (this file) the chunked reduction above, then an elementwise pass: x and dout are read twice (4 tensor
// passes plus the dx write; compulsory is 2 reads + 1 write), since a group-wide mean sits between the two.

struct Params {
  s: u32,      // S: spatial size (1 without spatial dims)
  c: u32,      // C: channels
  cpg: u32,    // channels per group, C / G
  groups: u32, // G: groups per sample
  rows: u32,   // B · C
  chunks: u32, // chunks of S per row, ceil(S / (TY · per))
  per: u32,    // elements each invocation adds per chunk
  tiles: u32,  // ceil(rows / TX)
  work: u32,   // workgroups doing work: row_partial and dx_apply chunks · tiles, group_means B · G
  row: u32,    // workgroups along x (the grid is folded over x and y)
}

override WG: u32 = 64u;  // group_means; a power of two
override TX: u32 = 1u;   // row_partial, dx_apply: powers of two with TX · TY = 256
override TY: u32 = 256u;
override SILU: bool = false;
override ACCUM: bool = true;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;  // read only when SILU
@group(0) @binding(4) var<storage, read> stats: array<f32>; // [B, G, 2]: mean, rstd
@group(0) @binding(5) var<storage, read_write> partial: array<f32>; // [B · chunks, 2, C]: A, Q
@group(0) @binding(6) var<storage, read> partial_in: array<f32>;    // the same, read by group_means
@group(0) @binding(7) var<storage, read_write> gmean: array<f32>;   // [B · G, 2]: mean(g·w), mean(g·w·x̂)
@group(0) @binding(8) var<storage, read> gmean_in: array<f32>;      // the same, read by dx_apply
@group(0) @binding(9) var<storage, read_write> dx: array<f32>;
@group(0) @binding(10) var<uniform> p: Params;

var<workgroup> red_rows: array<vec2<f32>, TX * TY>;
var<workgroup> red: array<vec2<f32>, WG>;

// What an element needs from its (b, c) row.
struct Row {
  grp: u32,  // b · G + group
  mean: f32,
  rstd: f32,
  w: f32,
  b: f32,    // read only when SILU
}

fn row_of(r: u32) -> Row {
  let ch = r % p.c;
  let grp = (r / p.c) * p.groups + ch / p.cpg;
  var bias_c = 0.0;
  if (SILU) { bias_c = bias[ch]; }
  return Row(grp, stats[2u * grp], stats[2u * grp + 1u], weight[ch], bias_c);
}

// (g, x̂) of element i of row `row`.
fn grad_xhat(i: u32, row: Row) -> vec2<f32> {
  let xh = (x[i] - row.mean) * row.rstd;
  var g = dout[i];
  if (SILU) {
    let z = xh * row.w + row.b;
    let e = exp(-abs(z)); // σ(z) without ever overflowing exp
    let sg = select(e, 1.0, z >= 0.0) / (1.0 + e);
    g *= sg * (1.0 + z * (1.0 - sg));
  }
  return vec2<f32>(g, xh);
}

// row_partial and dx_apply split the work alike: workgroup w covers chunk w / tiles of S for the TX rows of tile
// w % tiles; an invocation's elements are s = chunk start + lid.y + j·TY, j < per (coalesced along s).
fn chunk_range(k: u32, lid_y: u32) -> vec2<u32> {
  return vec2<u32>(k * TY * p.per + lid_y, min(p.s, (k + 1u) * TY * p.per));
}

@compute @workgroup_size(TX * TY)
fn row_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lid = vec2<u32>(li % TX, li / TX); // (row within the tile, lane along s)
  let w = wid.y * p.row + wid.x;
  if (w >= p.work) { return; }
  let k = w / p.tiles;
  let r = (w % p.tiles) * TX + lid.x; // row b·C + c
  let live = r < p.rows;
  var acc = vec2<f32>(0.0);
  if (live) {
    let row = row_of(r);
    let span = chunk_range(k, lid.y);
    for (var s = span.x; s < span.y; s += TY) {
      let t = grad_xhat(r * p.s + s, row);
      acc += vec2<f32>(t.x, t.x * t.y);
    }
  }
  red_rows[li] = acc;
  workgroupBarrier();
  for (var h = TY / 2u; h > 0u; h >>= 1u) {
    if (lid.y < h) { red_rows[li] += red_rows[li + h * TX]; }
    workgroupBarrier();
  }
  if (lid.y == 0u && live) {
    let ch = r % p.c;
    let m = (r / p.c) * p.chunks + k;
    partial[2u * m * p.c + ch] = red_rows[lid.x].x;
    partial[(2u * m + 1u) * p.c + ch] = red_rows[lid.x].y;
  }
}

@compute @workgroup_size(WG)
fn group_means(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q = wid.y * p.row + wid.x; // b · G + group
  if (q >= p.work) { return; }
  let b = q / p.groups;
  let first = (q % p.groups) * p.cpg;
  var acc = vec2<f32>(0.0);
  for (var t = lid; t < p.cpg * p.chunks; t += WG) {
    let ch = first + t / p.chunks;
    let m = b * p.chunks + t % p.chunks;
    acc += weight[ch] * vec2<f32>(partial_in[2u * m * p.c + ch], partial_in[(2u * m + 1u) * p.c + ch]);
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var h = WG / 2u; h > 0u; h >>= 1u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let n = f32(p.cpg * p.s);
    gmean[2u * q] = red[0].x / n;
    gmean[2u * q + 1u] = red[0].y / n;
  }
}

@compute @workgroup_size(TX * TY)
fn dx_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let lid = vec2<u32>(li % TX, li / TX); // as in row_partial
  let w = wid.y * p.row + wid.x;
  if (w >= p.work) { return; }
  let r = (w % p.tiles) * TX + lid.x;
  if (r >= p.rows) { return; }
  let row = row_of(r);
  let m = vec2<f32>(gmean_in[2u * row.grp], gmean_in[2u * row.grp + 1u]);
  let span = chunk_range(w / p.tiles, lid.y);
  for (var s = span.x; s < span.y; s += TY) {
    let i = r * p.s + s;
    let t = grad_xhat(i, row);
    let v = row.rstd * (t.x * row.w - m.x - t.y * m.y);
    if (ACCUM) { dx[i] += v; } else { dx[i] = v; }
  }
}
