// conv2d.wgsl — 2-D convolution (cross-correlation, as PyTorch), NCHW, as an implicit GEMM.
//
//   out[b, co, oy, ox] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[b, ci, oy·s + ky − pt, ox·s + kx − pl]
//
// x outside the image reads as 0 (padding may differ on each side: the VAE's downsampler pads right and bottom
// only). As a GEMM per image: M = Cout, N = Ho·Wo output pixels, K = kh·kw·Cin; no im2col matrix is built.
//
// Entry points:
//   `pack`: [O, C, T] → [O, T, Cp] with C zero-padded to Cp = 4·⌈C/4⌉. Applied to w (O = Cout, T = kh·kw) and
//      to x (O = batch, T = H·W: NCHW → NHWC), it makes K contiguous in both operands, so the GEMM can load
//      both as vec4 (the packed input is the size of x, not an im2col matrix).
//   v1 `naive`: one output per invocation straight from NCHW x and w (the GPU-side oracle, and the fallback).
//   v2 `main`: the register-tiled GEMM of matmul.wgsl (16 output channels × 16 pixels per invocation, 4×4
//      mat4x4 accumulators; see there and docs/matmul.md for why this shape suits lavapipe), with B's rows
//      gathered from the packed input: for each of the kh·kw taps the 16 pixel addresses and padding masks
//      are computed once, then the loop over Cin/4 loads vec4s at those addresses.
//
// Backward (for the autodiff layer): dx is a conv of dOut with the flipped, transposed weights (a transposed
// conv for stride 2); dw[co, ci, ky, kx] = Σ dOut · x over pixels, a GEMM with K = Ho·Wo; dbias = Σ dOut.

struct Params {
  Cin: u32,
  Cp4: u32,    // packed channels / 4
  H: u32,
  W: u32,
  Wo: u32,
  Cout: u32,
  N: u32,      // output pixels per image, Ho·Wo
  stride: u32,
  pt: u32,     // padding top and left; bottom and right only shape Ho and Wo
  pl: u32,
  kh: u32,
  kw: u32,
  count: u32,  // pack: elements to write
  row: u32,    // pack: workgroups along x (the 1-D grid folds over x and y)
}

override HAS_BIAS: u32 = 0u;
override WG: u32 = 8u;
const PACK_WG = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;  // pack: the tensor to pack; naive: x; main: packed x
@group(0) @binding(1) var<storage, read> wsrc: array<vec4<f32>>; // naive: w; main: packed w
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;  // pack: the packed tensor; naive, main: out
@group(0) @binding(4) var<uniform> p: Params;

fn src_at(i: u32) -> f32 { return src[i >> 2u][i & 3u]; }
fn w_at(i: u32) -> f32 { return wsrc[i >> 2u][i & 3u]; }

// dst[o, t, c] = src[o, c, t] for c < C, 0 for C ≤ c < Cp. Here Cin = C, W = T (reusing the struct's fields).
@compute @workgroup_size(PACK_WG)
fn pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * PACK_WG + lid;
  if (i >= p.count) { return; }
  let Cp = p.Cp4 * 4u;
  let T = p.W;
  let c = i % Cp;
  let t = (i / Cp) % T;
  let o = i / (Cp * T);
  var v = 0.0;
  if (c < p.Cin) { v = src_at((o * p.Cin + c) * T + t); }
  dst[i] = v;
}

// v1: one output per invocation; grid (pixels / 64, Cout, batch).
@compute @workgroup_size(64)
fn naive(@builtin(global_invocation_id) g: vec3<u32>) {
  let pix = g.x;
  let co = g.y;
  let bi = g.z;
  if (pix >= p.N || co >= p.Cout) { return; }
  let oy = pix / p.Wo;
  let ox = pix % p.Wo;
  var s = 0.0;
  for (var ci = 0u; ci < p.Cin; ci++) {
    for (var ky = 0u; ky < p.kh; ky++) {
      let iy = oy * p.stride + ky - p.pt; // wraps to a huge value above the image
      if (iy >= p.H) { continue; }
      for (var kx = 0u; kx < p.kw; kx++) {
        let ix = ox * p.stride + kx - p.pl;
        if (ix >= p.W) { continue; }
        s += w_at(((co * p.Cin + ci) * p.kh + ky) * p.kw + kx) * src_at(((bi * p.Cin + ci) * p.H + iy) * p.W + ix);
      }
    }
  }
  if (HAS_BIAS == 1u) { s += bias[co]; }
  dst[(bi * p.Cout + co) * p.N + pix] = s;
}

// v2: implicit GEMM on packed operands; grid (⌈N / (16·WG)⌉, ⌈Cout / 16⌉, batch).
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let Cp4 = p.Cp4;
  let taps = p.kh * p.kw;
  let K4 = taps * Cp4;
  let row0 = wid.y * 16u;                  // first output channel
  let col0 = (wid.x * WG + lid) * 16u;     // first output pixel
  let img = wid.z * p.H * p.W * Cp4;       // this image in the packed input (vec4 units)

  // Weight rows (clamped: rows past Cout compute garbage that is never stored) and the pixels' top-left input
  // corners (signed: padding puts them above or left of the image).
  var ar: array<u32, 16>;
  var iy0: array<i32, 16>;
  var ix0: array<i32, 16>;
  for (var i = 0u; i < 16u; i++) {
    ar[i] = min(row0 + i, p.Cout - 1u) * K4;
    let pix = min(col0 + i, p.N - 1u);
    iy0[i] = i32((pix / p.Wo) * p.stride) - i32(p.pt);
    ix0[i] = i32((pix % p.Wo) * p.stride) - i32(p.pl);
  }

  var acc00 = mat4x4<f32>(); var acc01 = mat4x4<f32>(); var acc02 = mat4x4<f32>(); var acc03 = mat4x4<f32>();
  var acc10 = mat4x4<f32>(); var acc11 = mat4x4<f32>(); var acc12 = mat4x4<f32>(); var acc13 = mat4x4<f32>();
  var acc20 = mat4x4<f32>(); var acc21 = mat4x4<f32>(); var acc22 = mat4x4<f32>(); var acc23 = mat4x4<f32>();
  var acc30 = mat4x4<f32>(); var acc31 = mat4x4<f32>(); var acc32 = mat4x4<f32>(); var acc33 = mat4x4<f32>();

  for (var tap = 0u; tap < taps; tap++) {
    let ky = i32(tap / p.kw);
    let kx = i32(tap % p.kw);
    // Packed-input address of each pixel's tap, and whether it falls inside the image (else it reads 0).
    var bc: array<u32, 16>;
    var inb: array<bool, 16>;
    for (var j = 0u; j < 16u; j++) {
      let iy = iy0[j] + ky;
      let ix = ix0[j] + kx;
      inb[j] = iy >= 0 && ix >= 0 && iy < i32(p.H) && ix < i32(p.W);
      bc[j] = img + select(0u, (u32(iy) * p.W + u32(ix)) * Cp4, inb[j]);
    }
    let wk = tap * Cp4;
    for (var c4 = 0u; c4 < Cp4; c4++) {
      let k = wk + c4;
      let am0 = mat4x4<f32>(wsrc[ar[0] + k], wsrc[ar[1] + k], wsrc[ar[2] + k], wsrc[ar[3] + k]);
      let am1 = mat4x4<f32>(wsrc[ar[4] + k], wsrc[ar[5] + k], wsrc[ar[6] + k], wsrc[ar[7] + k]);
      let am2 = mat4x4<f32>(wsrc[ar[8] + k], wsrc[ar[9] + k], wsrc[ar[10] + k], wsrc[ar[11] + k]);
      let am3 = mat4x4<f32>(wsrc[ar[12] + k], wsrc[ar[13] + k], wsrc[ar[14] + k], wsrc[ar[15] + k]);
      let bm0 = transpose(mat4x4<f32>(x_at(bc[0] + c4, inb[0]), x_at(bc[1] + c4, inb[1]),
        x_at(bc[2] + c4, inb[2]), x_at(bc[3] + c4, inb[3])));
      let bm1 = transpose(mat4x4<f32>(x_at(bc[4] + c4, inb[4]), x_at(bc[5] + c4, inb[5]),
        x_at(bc[6] + c4, inb[6]), x_at(bc[7] + c4, inb[7])));
      let bm2 = transpose(mat4x4<f32>(x_at(bc[8] + c4, inb[8]), x_at(bc[9] + c4, inb[9]),
        x_at(bc[10] + c4, inb[10]), x_at(bc[11] + c4, inb[11])));
      let bm3 = transpose(mat4x4<f32>(x_at(bc[12] + c4, inb[12]), x_at(bc[13] + c4, inb[13]),
        x_at(bc[14] + c4, inb[14]), x_at(bc[15] + c4, inb[15])));
      acc00 += bm0 * am0; acc01 += bm1 * am0; acc02 += bm2 * am0; acc03 += bm3 * am0;
      acc10 += bm0 * am1; acc11 += bm1 * am1; acc12 += bm2 * am1; acc13 += bm3 * am1;
      acc20 += bm0 * am2; acc21 += bm1 * am2; acc22 += bm2 * am2; acc23 += bm3 * am2;
      acc30 += bm0 * am3; acc31 += bm1 * am3; acc32 += bm2 * am3; acc33 += bm3 * am3;
    }
  }

  let o = wid.z * p.Cout * p.N;
  store_block(acc00, acc01, acc02, acc03, o, row0, col0);
  store_block(acc10, acc11, acc12, acc13, o, row0 + 4u, col0);
  store_block(acc20, acc21, acc22, acc23, o, row0 + 8u, col0);
  store_block(acc30, acc31, acc32, acc33, o, row0 + 12u, col0);
}

fn x_at(i: u32, inside: bool) -> vec4<f32> { return select(vec4<f32>(), src[i], inside); }

// Stores 4 output channels × 16 pixels, skipping what falls outside (dynamic loop bounds: see matmul.wgsl).
fn store_block(c0: mat4x4<f32>, c1: mat4x4<f32>, c2: mat4x4<f32>, c3: mat4x4<f32>, o: u32, row: u32, col: u32) {
  let blocks = array<mat4x4<f32>, 4>(c0, c1, c2, c3);
  let rows = select(0u, min(4u, p.Cout - row), row < p.Cout);
  let cols = select(0u, min(16u, p.N - col), col < p.N);
  for (var i = 0u; i < rows; i++) {
    var b = 0.0;
    if (HAS_BIAS == 1u) { b = bias[row + i]; }
    let base = o + (row + i) * p.N + col;
    for (var j = 0u; j < cols; j++) {
      dst[base + j] = blocks[j / 4u][i][j % 4u] + b;
    }
  }
}
