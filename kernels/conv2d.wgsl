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
//   v1 `naive`: four outputs per invocation straight from NCHW x and w (the GPU-side oracle, and the fallback
//      when Ho·Wo is not a multiple of 4).
//   v2 `main`: the register-tiled GEMM of matmul.wgsl (32 output channels × 32 pixels per invocation, 8×8
//      mat4x4 accumulators; see there and docs/matmul.md for why this shape suits lavapipe), with B's rows
//      gathered from the packed input: per tap, each pixel's address and padding mask are loop-invariant in
//      the loop over Cin/4, which loads one vec4 per pixel. Stores 4 pixels at a time (Ho·Wo % 4 = 0).
//
// f16 weights (inference): `pack` reads w as f16 and writes the packed w as f32, so `main` is unchanged and the
// weight's f32 copy lives only as per-dispatch scratch; `naive` reads w as f16.
//
// Backward (for the autodiff layer): dx is a conv of dOut with the flipped, transposed weights (a transposed
// conv for stride 2); dw[co, ci, ky, kx] = Σ dOut · x over pixels, a GEMM with K = Ho·Wo; dbias = Σ dOut.

struct Params {
  batch: u32,
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
  has_bias: u32,
  lanes_n: u32, // main: invocations of a workgroup along the pixels (1, 2, 4 or 8); the rest go along Cout
  count: u32,  // pack, naive: vec4s to write
  row: u32,    // pack, naive: workgroups along x (the 1-D grid folds over x and y)
}
const PACK_WG = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;  // pack: the tensor to pack; naive: x; main: packed x
@group(0) @binding(1) var<storage, read> wsrc: array<vec4<f32>>; // naive: w; main: packed w
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>; // pack: the packed tensor; naive, main: out
@group(0) @binding(4) var<uniform> p: Params;

// Every load converts to f32 (the identity here): with f16 weights, src/ops/conv2d.ts builds this file with `src`
// (for packing w) or `wsrc` (for the naive kernel) declared array<vec4<f16>>; the packed w is f32 either way.
fn src_at(i: u32) -> f32 { return f32(src[i >> 2u][i & 3u]); }
fn w_at(i: u32) -> f32 { return f32(wsrc[i >> 2u][i & 3u]); }

// dst[o, t, c] = src[o, c, t] for c < C, 0 for C ≤ c < Cp; one vec4 of channels per invocation. Here Cin = C and
// W = T (reusing the struct's fields).
@compute @workgroup_size(PACK_WG)
fn pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * PACK_WG + lid;
  if (i >= p.count) { return; }
  let T = p.W;
  let c = 4u * (i % p.Cp4);
  let t = (i / p.Cp4) % T;
  let o = i / (p.Cp4 * T);
  var v = vec4<f32>();
  for (var j = 0u; j < 4u; j++) {
    if (c + j < p.Cin) { v[j] = src_at((o * p.Cin + c + j) * T + t); }
  }
  dst[i] = v;
}

// v1: four consecutive outputs per invocation, counted over the whole output so that each vec4 of `dst` has one
// owner whatever Ho·Wo is; straight from NCHW x and w; grid folded over x and y.
@compute @workgroup_size(64)
fn naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let q = (wid.y * p.row + wid.x) * 64u + lid;
  if (q >= p.count) { return; }
  let numel = p.batch * p.Cout * p.N;
  var v = vec4<f32>();
  for (var t = 0u; t < 4u; t++) {
    let e = min(4u * q + t, numel - 1u);
    let bi = e / (p.Cout * p.N);
    let co = (e / p.N) % p.Cout;
    let pix = e % p.N;
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
    if (p.has_bias == 1u) { s += bias[co]; }
    v[t] = s;
  }
  if (4u * q + 3u < numel) {
    dst[q] = v;
  } else {
    for (var t = 0u; 4u * q + t < numel; t++) { dst[q][t] = v[t]; }
  }
}

// One 4×4 block of packed weights: output channels r … r+3 (clamped to Cout: rows past it are never stored) at
// packed k; column i is channel r+i along k.
fn w_block(r: u32, k: u32, K4: u32) -> mat4x4<f32> {
  let last = p.Cout - 1u;
  return mat4x4<f32>(vec4<f32>(wsrc[min(r, last) * K4 + k]), vec4<f32>(wsrc[min(r + 1u, last) * K4 + k]),
    vec4<f32>(wsrc[min(r + 2u, last) * K4 + k]), vec4<f32>(wsrc[min(r + 3u, last) * K4 + k]));
}

// Channels 4·c4 … 4·c4+3 of the input under output pixel q's tap (ky, kx), or 0 in the padding. Everything but
// c4 is invariant in the channel loop, so LLVM hoists the address arithmetic out of it.
fn x_vec(img: u32, q: u32, ky: i32, kx: i32, c4: u32) -> vec4<f32> {
  let pix = min(q, p.N - 1u);
  let iy = i32((pix / p.Wo) * p.stride) - i32(p.pt) + ky;
  let ix = i32((pix % p.Wo) * p.stride) - i32(p.pl) + kx;
  let inside = iy >= 0 && ix >= 0 && iy < i32(p.H) && ix < i32(p.W);
  let i = img + select(0u, (u32(iy) * p.W + u32(ix)) * p.Cp4, inside) + c4;
  return select(vec4<f32>(), vec4<f32>(src[i]), inside);
}

// One 4×4 block of the implicit im2col matrix: k = 4·c4 … +3 of tap (ky, kx), pixels q … q+3; column t is row k+t.
fn x_block(img: u32, q: u32, ky: i32, kx: i32, c4: u32) -> mat4x4<f32> {
  return transpose(mat4x4<f32>(x_vec(img, q, ky, kx, c4), x_vec(img, q + 1u, ky, kx, c4),
    x_vec(img, q + 2u, ky, kx, c4), x_vec(img, q + 3u, ky, kx, c4)));
}

//!include _tile32.wgsl

// v2: implicit GEMM on packed operands; grid (⌈N / (32·lanes_n)⌉, ⌈Cout / (32·8/lanes_n)⌉, batch). Each
// invocation computes 32 output channels × 32 pixels (8×8 blocks of 4×4), lanes_n invocations side by side along
// the pixels (at 8×8 resolution, all 8 along Cout).
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row0 = (wid.y * (8u / p.lanes_n) + lid / p.lanes_n) * 32u;  // first output channel
  let col0 = (wid.x * p.lanes_n + lid % p.lanes_n) * 32u;          // first output pixel
  let img = wid.z * p.H * p.W * p.Cp4;       // this image in the packed input (vec4 units)
  let K4 = p.kh * p.kw * p.Cp4;

  var c0: Blocks; var c1: Blocks; var c2: Blocks; var c3: Blocks;
  var c4: Blocks; var c5: Blocks; var c6: Blocks; var c7: Blocks;
  for (var tap = 0u; tap < p.kh * p.kw; tap++) {
    let ky = i32(tap / p.kw);
    let kx = i32(tap % p.kw);
    for (var ch = 0u; ch < p.Cp4; ch++) {
      let k = tap * p.Cp4 + ch;
      let x0 = w_block(row0, k, K4); let x1 = w_block(row0 + 4u, k, K4);
      let x2 = w_block(row0 + 8u, k, K4); let x3 = w_block(row0 + 12u, k, K4);
      let x4 = w_block(row0 + 16u, k, K4); let x5 = w_block(row0 + 20u, k, K4);
      let x6 = w_block(row0 + 24u, k, K4); let x7 = w_block(row0 + 28u, k, K4);
      let y0 = x_block(img, col0, ky, kx, ch); let y1 = x_block(img, col0 + 4u, ky, kx, ch);
      let y2 = x_block(img, col0 + 8u, ky, kx, ch); let y3 = x_block(img, col0 + 12u, ky, kx, ch);
      let y4 = x_block(img, col0 + 16u, ky, kx, ch); let y5 = x_block(img, col0 + 20u, ky, kx, ch);
      let y6 = x_block(img, col0 + 24u, ky, kx, ch); let y7 = x_block(img, col0 + 28u, ky, kx, ch);
      //!include _tile32_fma.wgsl
    }
  }
  let o = wid.z * p.Cout * p.N;
  store_rows(c0, lid, o, row0, col0); store_rows(c1, lid, o, row0 + 4u, col0);
  store_rows(c2, lid, o, row0 + 8u, col0); store_rows(c3, lid, o, row0 + 12u, col0);
  store_rows(c4, lid, o, row0 + 16u, col0); store_rows(c5, lid, o, row0 + 20u, col0);
  store_rows(c6, lid, o, row0 + 24u, col0); store_rows(c7, lid, o, row0 + 28u, col0);
}

// 4 output channels × 32 pixels per invocation, staged (_tile32.wgsl) so that the guarded copy is one small loop.
fn store_rows(c: Blocks, lid: u32, o: u32, row: u32, col: u32) {
  let s = stage_rows(c, lid);
  let rows = select(0u, min(4u, p.Cout - row), row < p.Cout);
  let cols = select(0u, min(32u, p.N - col), col < p.N);
  for (var i = 0u; i < rows; i++) {
    var b = 0.0;
    if (p.has_bias == 1u) { b = bias[row + i]; }
    let base = (o + (row + i) * p.N + col) / 4u;
    for (var q = 0u; q < cols / 4u; q++) {
      dst[base + q] = stage[s + i * 8u + q] + b;
    }
  }
}
