// matmul.wgsl — batched matrix product with a fused epilogue.
//
//   out[z, m, n] = act(alpha · Σ_k A[z, m, k] · B[z, k, n] + bias[n])     (bias[m] with HAS_BIAS = 2)
//
// A is stored [M, K] or, with TRANS_A, [K, M]; B is stored [K, N] or, with TRANS_B, [N, K] (nn.Linear's
// weight). The batch index z unravels over the output's batch shape (≤ 4 dims); A and B reach their batch
// offsets through per-dimension strides that are 0 where they broadcast. act: 0 none, 1 SiLU, 2 GELU (erf),
// 3 QuickGELU (x·σ(1.702x)).
//
// Versions:
//   v1 `naive`: one output per invocation, scalar loads, any shape (the GPU-side oracle and the fallback).
//   v2 `main` (this is the fast one): register tiling shaped by how lavapipe runs compute shaders. It runs
//      8 invocations as the lanes of 256-bit SIMD registers, and each storage load becomes a loop over the 8
//      lanes with a bounds check per component (Mesa 22.3: no fast path even when all lanes read the same
//      address), so one vec4 load costs about as much as 8 vector FMAs per lane. The kernel therefore
//      maximises FMAs per loaded vec4: each invocation owns a 16×16 block of the output (4×4 mat4x4
//      accumulators), loads 16 vec4 of A and 16 vec4 of B per 4 steps of k, and does 1024 FMAs with them
//      (acc += B₄ₓ₄ · A₄ₓ₄, transposes are free register renames). Workgroup memory does not help here: its
//      loads take the same per-lane loop. Needs the vec4 dimension of A (K, or M with TRANS_A) and of B
//      (N, or K with TRANS_B) to be multiples of 4; edge tiles clamp their loads and mask their stores.
//   Tried and measured slower on lavapipe: 8×4 and 4×4 tiles per invocation, scalar loads (2.5× slower at
//   the same tile), tiles indexed through loops over local arrays that NIR does not unroll (spilled to
//   scratch memory). See docs/matmul.md.
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
  bshape: vec4<u32>, // output batch shape, padded on the left with 1s
  sa: vec4<u32>,     // batch strides of A in elements (0 where A broadcasts)
  sb: vec4<u32>,     // batch strides of B in elements
}

override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 0u;

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// erfc(x) for x ≥ 0 (Numerical Recipes' erfcc, fractional error < 1.2e-7).
fn erfc_pos(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * x);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-x * x + poly);
}

fn activate(x: f32) -> f32 {
  switch p.act {
    case 1u: { return x / (1.0 + exp(-x)); }
    case 2u: {
      // 0.5·x·(1 + erf(x/√2)), through erfc so that large negative x keeps its relative accuracy
      let e = erfc_pos(abs(x) * 0.70710678118654752);
      return 0.5 * x * select(e, 2.0 - e, x >= 0.0);
    }
    case 3u: { return x / (1.0 + exp(-1.702 * x)); }
    default: { return x; }
  }
}

// The epilogue is uniform-driven rather than specialised: it runs once per output, so it costs little, and
// fewer pipeline variants means fewer multi-second lavapipe compilations.
fn epilogue(acc: f32, row: u32, col: u32) -> f32 {
  var v = p.alpha * acc;
  if (p.bias_mode == 1u) { v += bias[col]; }
  if (p.bias_mode == 2u) { v += bias[row]; }
  return activate(v);
}

// Element offsets of batch z's A and B, and of its output matrix.
fn batch_offsets(z: u32) -> vec3<u32> {
  let s = p.bshape;
  let idx = vec4<u32>(z / (s.w * s.z * s.y), (z / (s.w * s.z)) % s.y, (z / s.w) % s.z, z % s.w);
  return vec3<u32>(dot(idx, p.sa), dot(idx, p.sb), z * p.M * p.N);
}

fn load_a(i: u32) -> f32 { return a[i >> 2u][i & 3u]; }
fn load_b(i: u32) -> f32 { return b[i >> 2u][i & 3u]; }

// v1: one output per invocation.
@compute @workgroup_size(8, 8)
fn naive(@builtin(global_invocation_id) g: vec3<u32>) {
  let col = g.x;
  let row = g.y;
  if (row >= p.M || col >= p.N) { return; }
  let off = batch_offsets(g.z);
  var s = 0.0;
  for (var k = 0u; k < p.K; k++) {
    let ai = select(row * p.K + k, k * p.M + row, TRANS_A == 1u);
    let bi = select(k * p.N + col, col * p.K + k, TRANS_B == 1u);
    s += load_a(off.x + ai) * load_b(off.y + bi);
  }
  out[off.z + row * p.N + col] = epilogue(s, row, col);
}

// The 4×4 block of A at rows r … r+3 and k = 4·k4 … 4·k4+3, as a matrix whose column i is row r+i along k.
// a0 is the batch's offset in vec4 units. Rows past M are clamped: edge tiles compute garbage never stored.
fn a_block(a0: u32, r: u32, k4: u32) -> mat4x4<f32> {
  if (TRANS_A == 0u) {
    let K4 = p.K / 4u;
    let last = p.M - 1u;
    let k = a0 + k4;
    return mat4x4<f32>(a[k + min(r, last) * K4], a[k + min(r + 1u, last) * K4], a[k + min(r + 2u, last) * K4],
      a[k + min(r + 3u, last) * K4]);
  }
  let M4 = p.M / 4u;
  let i = a0 + 4u * k4 * M4 + min(r / 4u, M4 - 1u);
  return transpose(mat4x4<f32>(a[i], a[i + M4], a[i + 2u * M4], a[i + 3u * M4]));
}

// The 4×4 block of B at k = 4·k4 … 4·k4+3 and columns c … c+3, as a matrix whose column t is row k+t along n.
fn b_block(b0: u32, c: u32, k4: u32) -> mat4x4<f32> {
  if (TRANS_B == 0u) {
    let N4 = p.N / 4u;
    let i = b0 + 4u * k4 * N4 + min(c / 4u, N4 - 1u);
    return mat4x4<f32>(b[i], b[i + N4], b[i + 2u * N4], b[i + 3u * N4]);
  }
  let K4 = p.K / 4u;
  let last = p.N - 1u;
  let k = b0 + k4;
  return transpose(mat4x4<f32>(b[k + min(c, last) * K4], b[k + min(c + 1u, last) * K4], b[k + min(c + 2u, last) * K4],
    b[k + min(c + 3u, last) * K4]));
}

alias Blocks = array<mat4x4<f32>, 8>;

// v2: each invocation computes 32×32 outputs as 8×8 blocks of 4×4; the 8 invocations of a workgroup sit 2 along
// M by 4 along N (a 64×128 workgroup tile, little waste at N = 320 or 640). The accumulators are spelled out
// per block: written as loops over local arrays, NIR leaves them unrolled-not and they go to scratch memory
// (5× slower, 80 s to compile).
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row0 = (wid.y * 2u + lid / 4u) * 32u;
  let col0 = (wid.x * 4u + lid % 4u) * 32u;
  let off = batch_offsets(wid.z);
  let a0 = off.x / 4u;
  let b0 = off.y / 4u;

  // c<I>[J] column i holds output row row0 + 4I + i, columns col0 + 4J … col0 + 4J + 3.
  var c0: Blocks; var c1: Blocks; var c2: Blocks; var c3: Blocks;
  var c4: Blocks; var c5: Blocks; var c6: Blocks; var c7: Blocks;
  for (var k4 = 0u; k4 < p.K / 4u; k4++) {
    let x0 = a_block(a0, row0, k4); let x1 = a_block(a0, row0 + 4u, k4);
    let x2 = a_block(a0, row0 + 8u, k4); let x3 = a_block(a0, row0 + 12u, k4);
    let x4 = a_block(a0, row0 + 16u, k4); let x5 = a_block(a0, row0 + 20u, k4);
    let x6 = a_block(a0, row0 + 24u, k4); let x7 = a_block(a0, row0 + 28u, k4);
    let y0 = b_block(b0, col0, k4); let y1 = b_block(b0, col0 + 4u, k4);
    let y2 = b_block(b0, col0 + 8u, k4); let y3 = b_block(b0, col0 + 12u, k4);
    let y4 = b_block(b0, col0 + 16u, k4); let y5 = b_block(b0, col0 + 20u, k4);
    let y6 = b_block(b0, col0 + 24u, k4); let y7 = b_block(b0, col0 + 28u, k4);
    // (B block)·(A block): column i = Σ_t B[k+t, cols] · A[row i, k+t], i.e. one output row of the block
    c0[0] += y0 * x0; c0[1] += y1 * x0; c0[2] += y2 * x0; c0[3] += y3 * x0;
    c0[4] += y4 * x0; c0[5] += y5 * x0; c0[6] += y6 * x0; c0[7] += y7 * x0;
    c1[0] += y0 * x1; c1[1] += y1 * x1; c1[2] += y2 * x1; c1[3] += y3 * x1;
    c1[4] += y4 * x1; c1[5] += y5 * x1; c1[6] += y6 * x1; c1[7] += y7 * x1;
    c2[0] += y0 * x2; c2[1] += y1 * x2; c2[2] += y2 * x2; c2[3] += y3 * x2;
    c2[4] += y4 * x2; c2[5] += y5 * x2; c2[6] += y6 * x2; c2[7] += y7 * x2;
    c3[0] += y0 * x3; c3[1] += y1 * x3; c3[2] += y2 * x3; c3[3] += y3 * x3;
    c3[4] += y4 * x3; c3[5] += y5 * x3; c3[6] += y6 * x3; c3[7] += y7 * x3;
    c4[0] += y0 * x4; c4[1] += y1 * x4; c4[2] += y2 * x4; c4[3] += y3 * x4;
    c4[4] += y4 * x4; c4[5] += y5 * x4; c4[6] += y6 * x4; c4[7] += y7 * x4;
    c5[0] += y0 * x5; c5[1] += y1 * x5; c5[2] += y2 * x5; c5[3] += y3 * x5;
    c5[4] += y4 * x5; c5[5] += y5 * x5; c5[6] += y6 * x5; c5[7] += y7 * x5;
    c6[0] += y0 * x6; c6[1] += y1 * x6; c6[2] += y2 * x6; c6[3] += y3 * x6;
    c6[4] += y4 * x6; c6[5] += y5 * x6; c6[6] += y6 * x6; c6[7] += y7 * x6;
    c7[0] += y0 * x7; c7[1] += y1 * x7; c7[2] += y2 * x7; c7[3] += y3 * x7;
    c7[4] += y4 * x7; c7[5] += y5 * x7; c7[6] += y6 * x7; c7[7] += y7 * x7;
  }
  store_rows(c0, off.z, row0, col0); store_rows(c1, off.z, row0 + 4u, col0);
  store_rows(c2, off.z, row0 + 8u, col0); store_rows(c3, off.z, row0 + 12u, col0);
  store_rows(c4, off.z, row0 + 16u, col0); store_rows(c5, off.z, row0 + 20u, col0);
  store_rows(c6, off.z, row0 + 24u, col0); store_rows(c7, off.z, row0 + 28u, col0);
}

// Stores 4 rows × 32 columns (eight 4×4 blocks side by side), skipping what falls outside the output. The loop
// bounds are dynamic on purpose: fully unrolled, the guarded stores make LLVM take minutes to compile.
fn store_rows(blocks: Blocks, o: u32, row: u32, col: u32) {
  let rows = select(0u, min(4u, p.M - row), row < p.M);
  let cols = select(0u, min(32u, p.N - col), col < p.N);
  for (var i = 0u; i < rows; i++) {
    let base = o + (row + i) * p.N + col;
    for (var j = 0u; j < cols; j++) {
      out[base + j] = epilogue(blocks[j / 4u][i][j % 4u], row + i, col + j);
    }
  }
}
