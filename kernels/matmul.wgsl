// matmul.wgsl — batched matrix product with a fused epilogue.
//
//   out[z, m, n] = act(alpha · Σ_k A[z, m, k] · B[z, k, n] + bias[n])     (bias[m] with bias_mode = 2)
//
// A is stored [M, K] or, with TRANS_A, [K, M]; B is stored [K, N] or, with TRANS_B, [N, K] (nn.Linear's
// weight). The batch index z unravels over the output's batch shape (≤ 4 dims); A and B reach their batch
// offsets through per-dimension strides that are 0 where they broadcast. act: 0 none, 1 SiLU, 2 GELU (erf),
// 3 QuickGELU (x·σ(1.702x)).
//
// Versions:
//   v1 `naive`: four outputs per invocation, scalar loads, any shape (the GPU-side oracle and the fallback).
//   v2 `main` (this is the fast one): register tiling shaped by how lavapipe runs compute shaders. It runs
//      8 invocations as the lanes of 256-bit SIMD registers, and each storage load becomes a loop over the 8
//      lanes with a bounds check per component (Mesa 22.3: no fast path even when all lanes read the same
//      address): one vec4 load costs ~350 instructions against 1 per 8-wide FMA. The kernel therefore
//      maximises FMAs per loaded vec4: each invocation owns a 32×32 block of the output (8×8 mat4x4
//      accumulators, mostly spilled, which is cheap by comparison), loads 32 vec4 of A and 32 of B per 4
//      steps of k, and does 4096 FMAs with them (acc += B₄ₓ₄ · A₄ₓ₄; transposes are free register renames).
//      Workgroup memory does not help: its loads take the same per-lane loop. Needs the vec4 dimension of A
//      (K, or M with TRANS_A) and of B (N, or K with TRANS_B) to be multiples of 4, N too (vec4 stores), and K
//      too except for Aᵀ·B (its ragged last k step reads as 0); edge tiles clamp loads and skip stores.
//   Measured on the way (docs/matmul.md): 8×4, 16×16 and 24×24 tiles (slower), 40×40 and 48×48 (no faster,
//   minutes to compile), scalar loads (2.5× slower at the same tile), accumulators as loops over local arrays
//   (NIR leaves them in scratch memory: 5× slower).
//
// f16 weights: src/ops/matmul.ts also builds this file with a's or b's declaration changed to array<vec4<f16>>
// (weights stored as f16 for inference); every load converts to f32, so both versions compute in f32.
//
// Backward (for the autodiff layer): dA = dOut·Bᵀ and dB = Aᵀ·dOut are this same kernel with TRANS_A/TRANS_B
// flipped, followed by a sum over broadcast batch dimensions; d(bias) = Σ over rows of dOut.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  alpha: f32,
  act: u32,       // 0 none, 1 SiLU, 2 GELU (erf), 3 QuickGELU
  bias_mode: u32, // 0 none, 1 per column (Linear), 2 per row (1×1 conv)
  lanes_n: u32,   // main: invocations of a workgroup side by side along N (1, 2, 4 or 8); the rest go along M
  wgx: u32,       // naive: workgroups along x (its 1-D grid folds over x and y)
  bshape: vec4<u32>, // output batch shape, padded on the left with 1s
  sa: vec4<u32>,     // batch strides of A in elements (0 where A broadcasts)
  sb: vec4<u32>,     // batch strides of B in elements
}

override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 0u;

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // vec4 stores: 4 outputs for 1 store loop
@group(0) @binding(4) var<uniform> p: Params;

// erfc(x) for x ≥ 0 (Numerical Recipes' erfcc, fractional error < 1.2e-7).
fn erfc_pos(x: vec4<f32>) -> vec4<f32> {
  let t = 1.0 / (1.0 + 0.5 * x);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-x * x + poly);
}

fn activate(x: vec4<f32>) -> vec4<f32> {
  switch p.act {
    case 1u: { return x / (1.0 + exp(-x)); }
    case 2u: {
      // 0.5·x·(1 + erf(x/√2)), through erfc so that large negative x keeps its relative accuracy
      let e = erfc_pos(abs(x) * 0.70710678118654752);
      return 0.5 * x * select(e, 2.0 - e, x >= vec4<f32>());
    }
    case 3u: { return x / (1.0 + exp(-1.702 * x)); }
    default: { return x; }
  }
}

fn bias_at(i: u32) -> f32 { return bias[i >> 2u][i & 3u]; }

// The epilogue of 4 outputs of one row, columns col … col+3 (col % 4 = 0). It is uniform-driven rather than
// specialised: it runs once per output, so it costs little, and fewer pipeline variants means fewer
// multi-second lavapipe compilations.
fn epilogue4(acc: vec4<f32>, row: u32, col: u32) -> vec4<f32> {
  var v = p.alpha * acc;
  if (p.bias_mode == 1u) { v += bias[col / 4u]; }
  if (p.bias_mode == 2u) { v += bias_at(row); }
  return activate(v);
}

// Element offsets of batch z's A and B, and of its output matrix.
fn batch_offsets(z: u32) -> vec3<u32> {
  let s = p.bshape;
  let idx = vec4<u32>(z / (s.w * s.z * s.y), (z / (s.w * s.z)) % s.y, (z / s.w) % s.z, z % s.w);
  return vec3<u32>(dot(idx, p.sa), dot(idx, p.sb), z * p.M * p.N);
}

// Every load of a or b converts to f32 (the identity here): the f16-weight variants (src/ops/matmul.ts) are this
// file with one operand's declaration changed to array<vec4<f16>>, so the math stays f32 in both.
fn load_a(i: u32) -> f32 { return f32(a[i >> 2u][i & 3u]); }
fn load_b(i: u32) -> f32 { return f32(b[i >> 2u][i & 3u]); }
fn a4(i: u32) -> vec4<f32> { return vec4<f32>(a[i]); }
fn b4(i: u32) -> vec4<f32> { return vec4<f32>(b[i]); }

// v1: four consecutive outputs per invocation, counted over the whole output (all batches) so that each vec4
// of `out` has one owner whatever M·N is; grid folded over x and y.
@compute @workgroup_size(64)
fn naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q = (wid.y * p.wgx + wid.x) * 64u + lid;
  let MN = p.M * p.N;
  let total = MN * p.bshape.x * p.bshape.y * p.bshape.z * p.bshape.w;
  if (4u * q >= total) { return; }
  var v = vec4<f32>();
  for (var t = 0u; t < 4u; t++) {
    let e = min(4u * q + t, total - 1u);
    let off = batch_offsets(e / MN);
    let row = (e % MN) / p.N;
    let col = e % p.N;
    var s = 0.0;
    for (var k = 0u; k < p.K; k++) {
      let ai = select(row * p.K + k, k * p.M + row, TRANS_A == 1u);
      let bi = select(k * p.N + col, col * p.K + k, TRANS_B == 1u);
      s += load_a(off.x + ai) * load_b(off.y + bi);
    }
    s *= p.alpha;
    if (p.bias_mode == 1u) { s += bias_at(col); }
    if (p.bias_mode == 2u) { s += bias_at(row); }
    v[t] = s;
  }
  v = activate(v);
  if (4u * q + 3u < total) {
    out[q] = v;
  } else {
    for (var t = 0u; 4u * q + t < total; t++) { out[q][t] = v[t]; }
  }
}

// With TRANS_A and not TRANS_B both operands are loaded along M and N, so K need not be a multiple of 4 (weight
// gradients Aᵀ·B have K = tokens·batch): the loop runs ⌈K/4⌉ steps and rows k ≥ K of the last one read as 0.
fn tail(v: vec4<f32>, k: u32) -> vec4<f32> {
  if (TRANS_A == 1u && TRANS_B == 0u) { return select(vec4<f32>(), v, k < p.K); }
  return v;
}

// The 4×4 block of A at rows r … r+3 and k = 4·k4 … 4·k4+3, as a matrix whose column i is row r+i along k.
// a0 is the batch's offset in vec4 units. Rows past M are clamped: edge tiles compute garbage never stored.
fn a_block(a0: u32, r: u32, k4: u32) -> mat4x4<f32> {
  if (TRANS_A == 0u) {
    let K4 = p.K / 4u;
    let last = p.M - 1u;
    let k = a0 + k4;
    return mat4x4<f32>(a4(k + min(r, last) * K4), a4(k + min(r + 1u, last) * K4), a4(k + min(r + 2u, last) * K4),
      a4(k + min(r + 3u, last) * K4));
  }
  let M4 = p.M / 4u;
  let k = 4u * k4;
  let last = p.K - 1u;
  let i = a0 + min(r / 4u, M4 - 1u);
  return transpose(mat4x4<f32>(tail(a4(i + min(k, last) * M4), k), tail(a4(i + min(k + 1u, last) * M4), k + 1u),
    tail(a4(i + min(k + 2u, last) * M4), k + 2u), tail(a4(i + min(k + 3u, last) * M4), k + 3u)));
}

// The 4×4 block of B at k = 4·k4 … 4·k4+3 and columns c … c+3, as a matrix whose column t is row k+t along n.
fn b_block(b0: u32, c: u32, k4: u32) -> mat4x4<f32> {
  if (TRANS_B == 0u) {
    let N4 = p.N / 4u;
    let k = 4u * k4;
    let last = p.K - 1u;
    let i = b0 + min(c / 4u, N4 - 1u);
    return mat4x4<f32>(tail(b4(i + min(k, last) * N4), k), tail(b4(i + min(k + 1u, last) * N4), k + 1u),
      tail(b4(i + min(k + 2u, last) * N4), k + 2u), tail(b4(i + min(k + 3u, last) * N4), k + 3u));
  }
  let K4 = p.K / 4u;
  let last = p.N - 1u;
  let k = b0 + k4;
  return transpose(mat4x4<f32>(b4(k + min(c, last) * K4), b4(k + min(c + 1u, last) * K4), b4(k + min(c + 2u, last) * K4),
    b4(k + min(c + 3u, last) * K4)));
}

//!include _tile32.wgsl

// v2: each invocation computes 32×32 outputs as 8×8 blocks of 4×4; the 8 invocations of a workgroup sit side by
// side, lanes_n of them along N (the host picks the split that pads the output least: 4 makes a 64×128
// workgroup tile, no waste at N = 640 and 17% at N = 320). The block products are spelled out:
// written as loops over local arrays, NIR does not unroll them and the arrays go to scratch memory (5× slower,
// 80 s to compile).
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row0 = (wid.y * (8u / p.lanes_n) + lid / p.lanes_n) * 32u;
  let col0 = (wid.x * p.lanes_n + lid % p.lanes_n) * 32u;
  let off = batch_offsets(wid.z);
  let a0 = off.x / 4u;
  let b0 = off.y / 4u;

  // c<I>[J] column i holds output row row0 + 4I + i, columns col0 + 4J … col0 + 4J + 3.
  var c0: Blocks; var c1: Blocks; var c2: Blocks; var c3: Blocks;
  var c4: Blocks; var c5: Blocks; var c6: Blocks; var c7: Blocks;
  for (var k4 = 0u; k4 < (p.K + 3u) / 4u; k4++) {
    let x0 = a_block(a0, row0, k4); let x1 = a_block(a0, row0 + 4u, k4);
    let x2 = a_block(a0, row0 + 8u, k4); let x3 = a_block(a0, row0 + 12u, k4);
    let x4 = a_block(a0, row0 + 16u, k4); let x5 = a_block(a0, row0 + 20u, k4);
    let x6 = a_block(a0, row0 + 24u, k4); let x7 = a_block(a0, row0 + 28u, k4);
    let y0 = b_block(b0, col0, k4); let y1 = b_block(b0, col0 + 4u, k4);
    let y2 = b_block(b0, col0 + 8u, k4); let y3 = b_block(b0, col0 + 12u, k4);
    let y4 = b_block(b0, col0 + 16u, k4); let y5 = b_block(b0, col0 + 20u, k4);
    let y6 = b_block(b0, col0 + 24u, k4); let y7 = b_block(b0, col0 + 28u, k4);
    // (B block)·(A block): column i = Σ_t B[k+t, cols] · A[row i, k+t], i.e. one output row of the block
    //!include _tile32_fma.wgsl
  }
  store_rows(c0, lid, off.z, row0, col0); store_rows(c1, lid, off.z, row0 + 4u, col0);
  store_rows(c2, lid, off.z, row0 + 8u, col0); store_rows(c3, lid, off.z, row0 + 12u, col0);
  store_rows(c4, lid, off.z, row0 + 16u, col0); store_rows(c5, lid, off.z, row0 + 20u, col0);
  store_rows(c6, lid, off.z, row0 + 24u, col0); store_rows(c7, lid, off.z, row0 + 28u, col0);
}

// One block row (4 rows × 32 columns) per invocation at a time, staged (_tile32.wgsl) so that the guarded,
// epilogue-applying copy to `out` is one small loop.
fn store_rows(c: Blocks, lid: u32, o: u32, row: u32, col: u32) {
  let s = stage_rows(c, lid);
  let rows = select(0u, min(4u, p.M - row), row < p.M);
  let cols = select(0u, min(32u, p.N - col), col < p.N);
  for (var i = 0u; i < rows; i++) {
    let base = (o + (row + i) * p.N + col) / 4u;
    for (var q = 0u; q < cols / 4u; q++) {
      out[base + q] = epilogue4(stage[s + i * 8u + q], row + i, col + 4u * q);
    }
  }
}
