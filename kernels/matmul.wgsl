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
  bshape: vec4<u32>, // output batch shape, padded on the left with 1s
  sa: vec4<u32>,     // batch strides of A in elements (0 where A broadcasts)
  sb: vec4<u32>,     // batch strides of B in elements
}

override TRANS_A: u32 = 0u;
override TRANS_B: u32 = 0u;
override HAS_BIAS: u32 = 0u; // 0 none, 1 per column (Linear), 2 per row (1×1 conv)
override ACT: u32 = 0u;
override WG: u32 = 8u;

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
  switch ACT {
    case 1u: { return x / (1.0 + exp(-x)); }
    case 2u: {
      // 0.5·x·(1 + erf(x/√2)), through erfc so that large negative x keeps its relative accuracy
      let z = abs(x) * 0.70710678118654752;
      let e = erfc_pos(z);
      return 0.5 * x * select(e, 2.0 - e, x >= 0.0);
    }
    case 3u: { return x / (1.0 + exp(-1.702 * x)); }
    default: { return x; }
  }
}

fn epilogue(acc: f32, row: u32, col: u32) -> f32 {
  var v = p.alpha * acc;
  if (HAS_BIAS == 1u) { v += bias[col]; }
  if (HAS_BIAS == 2u) { v += bias[row]; }
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

// v2: 16×16 outputs per invocation, WG invocations side by side along N.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let M = p.M;
  let N = p.N;
  let K4 = p.K / 4u;
  let M4 = M / 4u;
  let N4 = N / 4u;
  let row0 = wid.y * 16u;
  let col0 = (wid.x * WG + lid) * 16u;
  let off = batch_offsets(wid.z);
  let a0 = off.x / 4u;
  let b0 = off.y / 4u;

  // Where each of this invocation's rows and columns starts in A and B (vec4 units), clamped into the matrix
  // so that edge tiles read valid data; what they compute there is never stored.
  var ar: array<u32, 16>;
  var bc: array<u32, 16>;
  for (var i = 0u; i < 16u; i++) {
    if (TRANS_A == 0u) {
      ar[i] = a0 + min(row0 + i, M - 1u) * K4;
    } else if (i < 4u) {
      ar[i] = a0 + min(row0 / 4u + i, M4 - 1u);
    }
    if (TRANS_B == 1u) {
      bc[i] = b0 + min(col0 + i, N - 1u) * K4;
    } else if (i < 4u) {
      bc[i] = b0 + min(col0 / 4u + i, N4 - 1u);
    }
  }

  // acc[I][J] column i holds output row row0+4I+i, columns col0+4J … col0+4J+3.
  var acc00 = mat4x4<f32>(); var acc01 = mat4x4<f32>(); var acc02 = mat4x4<f32>(); var acc03 = mat4x4<f32>();
  var acc10 = mat4x4<f32>(); var acc11 = mat4x4<f32>(); var acc12 = mat4x4<f32>(); var acc13 = mat4x4<f32>();
  var acc20 = mat4x4<f32>(); var acc21 = mat4x4<f32>(); var acc22 = mat4x4<f32>(); var acc23 = mat4x4<f32>();
  var acc30 = mat4x4<f32>(); var acc31 = mat4x4<f32>(); var acc32 = mat4x4<f32>(); var acc33 = mat4x4<f32>();

  for (var k4 = 0u; k4 < K4; k4++) {
    // am_I: column i = A[row0+4I+i, 4k4 … 4k4+3]; bm_J: column t = B[4k4+t, col0+4J … col0+4J+3].
    var am0: mat4x4<f32>; var am1: mat4x4<f32>; var am2: mat4x4<f32>; var am3: mat4x4<f32>;
    var bm0: mat4x4<f32>; var bm1: mat4x4<f32>; var bm2: mat4x4<f32>; var bm3: mat4x4<f32>;
    if (TRANS_A == 0u) {
      am0 = mat4x4<f32>(a[ar[0] + k4], a[ar[1] + k4], a[ar[2] + k4], a[ar[3] + k4]);
      am1 = mat4x4<f32>(a[ar[4] + k4], a[ar[5] + k4], a[ar[6] + k4], a[ar[7] + k4]);
      am2 = mat4x4<f32>(a[ar[8] + k4], a[ar[9] + k4], a[ar[10] + k4], a[ar[11] + k4]);
      am3 = mat4x4<f32>(a[ar[12] + k4], a[ar[13] + k4], a[ar[14] + k4], a[ar[15] + k4]);
    } else {
      let k = 4u * k4 * M4;
      am0 = transpose(mat4x4<f32>(a[ar[0] + k], a[ar[0] + k + M4], a[ar[0] + k + 2u * M4], a[ar[0] + k + 3u * M4]));
      am1 = transpose(mat4x4<f32>(a[ar[1] + k], a[ar[1] + k + M4], a[ar[1] + k + 2u * M4], a[ar[1] + k + 3u * M4]));
      am2 = transpose(mat4x4<f32>(a[ar[2] + k], a[ar[2] + k + M4], a[ar[2] + k + 2u * M4], a[ar[2] + k + 3u * M4]));
      am3 = transpose(mat4x4<f32>(a[ar[3] + k], a[ar[3] + k + M4], a[ar[3] + k + 2u * M4], a[ar[3] + k + 3u * M4]));
    }
    if (TRANS_B == 0u) {
      let k = 4u * k4 * N4;
      bm0 = mat4x4<f32>(b[bc[0] + k], b[bc[0] + k + N4], b[bc[0] + k + 2u * N4], b[bc[0] + k + 3u * N4]);
      bm1 = mat4x4<f32>(b[bc[1] + k], b[bc[1] + k + N4], b[bc[1] + k + 2u * N4], b[bc[1] + k + 3u * N4]);
      bm2 = mat4x4<f32>(b[bc[2] + k], b[bc[2] + k + N4], b[bc[2] + k + 2u * N4], b[bc[2] + k + 3u * N4]);
      bm3 = mat4x4<f32>(b[bc[3] + k], b[bc[3] + k + N4], b[bc[3] + k + 2u * N4], b[bc[3] + k + 3u * N4]);
    } else {
      bm0 = transpose(mat4x4<f32>(b[bc[0] + k4], b[bc[1] + k4], b[bc[2] + k4], b[bc[3] + k4]));
      bm1 = transpose(mat4x4<f32>(b[bc[4] + k4], b[bc[5] + k4], b[bc[6] + k4], b[bc[7] + k4]));
      bm2 = transpose(mat4x4<f32>(b[bc[8] + k4], b[bc[9] + k4], b[bc[10] + k4], b[bc[11] + k4]));
      bm3 = transpose(mat4x4<f32>(b[bc[12] + k4], b[bc[13] + k4], b[bc[14] + k4], b[bc[15] + k4]));
    }
    acc00 += bm0 * am0; acc01 += bm1 * am0; acc02 += bm2 * am0; acc03 += bm3 * am0;
    acc10 += bm0 * am1; acc11 += bm1 * am1; acc12 += bm2 * am1; acc13 += bm3 * am1;
    acc20 += bm0 * am2; acc21 += bm1 * am2; acc22 += bm2 * am2; acc23 += bm3 * am2;
    acc30 += bm0 * am3; acc31 += bm1 * am3; acc32 += bm2 * am3; acc33 += bm3 * am3;
  }

  store_block(acc00, acc01, acc02, acc03, off.z, row0, col0);
  store_block(acc10, acc11, acc12, acc13, off.z, row0 + 4u, col0);
  store_block(acc20, acc21, acc22, acc23, off.z, row0 + 8u, col0);
  store_block(acc30, acc31, acc32, acc33, off.z, row0 + 12u, col0);
}

// Stores 4 rows × 16 columns (four 4×4 blocks side by side), skipping what falls outside the output. The loop
// bounds are dynamic on purpose: fully unrolled, the 64 guarded stores make LLVM take over a minute to compile.
fn store_block(c0: mat4x4<f32>, c1: mat4x4<f32>, c2: mat4x4<f32>, c3: mat4x4<f32>, o: u32, row: u32, col: u32) {
  let blocks = array<mat4x4<f32>, 4>(c0, c1, c2, c3);
  let rows = select(0u, min(4u, p.M - row), row < p.M);
  let cols = select(0u, min(16u, p.N - col), col < p.N);
  for (var i = 0u; i < rows; i++) {
    let base = o + (row + i) * p.N + col;
    for (var j = 0u; j < cols; j++) {
      out[base + j] = epilogue(blocks[j / 4u][i][j % 4u], row + i, col + j);
    }
  }
}
