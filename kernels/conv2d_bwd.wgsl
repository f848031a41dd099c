// conv2d_bwd.wgsl — gradients of conv2d.wgsl (NCHW cross-correlation, stride s, padding top pt / left pl):
//
//   out[b, co, oy, ox] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[b, ci, oy·s + ky − pt, ox·s + kx − pl]
//
//   dx[b, ci, iy, ix]    (+)= Σ_{co, ky, kx} w[co, ci, ky, kx] · dout[b, co, oy, ox]
//                             over the taps with oy = (iy + pt − ky)/s, ox = (ix + pl − kx)/s integral and inside
//   dw[co, ci, ky, kx]   (+)= Σ_{b, oy, ox} dout[b, co, oy, ox] · x[b, ci, oy·s + ky − pt, ox·s + kx − pl]
//   dbias[co]            (+)= Σ_{b, oy, ox} dout[b, co, oy, ox]
//
// x outside the image is 0, so its terms vanish. ACCUM adds into the gradient instead of overwriting it.
//
// Entry points (all GEMMs are the register tiling of matmul.wgsl: 16×16 outputs per invocation in 4×4 mat4x4
// accumulators, 32 vec4 loads per 1024 FMAs, which is what lavapipe rewards; see there):
//   `pack`: dst[o, t, c] = src[o·so + c·sc + t] for c < C, 0 up to Cpad. Makes channels contiguous and a
//      multiple of 4: dout → [B·Ho·Wo, Cop], x → [B·H·W, Cp] (NCHW → NHWC), w → wᵀ [Cin, kh·kw, Cop].
//   `dx_main`: dx as a gather (a transposed conv without a zero-inserted buffer). Input pixels are split into
//      s² parity classes (iy mod s, ix mod s); a workgroup takes 16·WG pixels of one class, so whether a tap
//      (ky, kx) reaches an output pixel at all is the same for the whole workgroup and the taps that never do
//      (3 of 4 classes skip most taps at stride 2) are skipped, not masked. Per image: M = Cin, N = class
//      pixels, K = (valid taps)·Cout, reading wᵀ and dout packed.
//   `dw_main`: dw as one GEMM per tap, M = Cout, N = Cin, K = B·Ho·Wo output pixels: outer products of a
//      packed dout row and the packed x row under the tap. An invocation walks `kc` pixels (a split of K; the
//      host makes them few enough to stay far below lavapipe's 65,535 loop iterations per invocation) and
//      writes its partial sum to slice wid.z of `dst` (stride `part`), or straight into dw when K is one split.
//   `dbias`: per channel, a workgroup sums a chunk of kc elements (strided lanes, then a tree); chunk sums go
//      to a partial buffer when there are several.
//   `reduce`: dst[i] (+)= Σ_{j < parts} partial[j·n + i], the second pass of dw and dbias.
// Version ladder: v1 is the CPU reference (src/ref/conv2d_bwd.ts: the naive loops over K would pass the
// lavapipe loop cap on SD sizes); v2 (this file) the tiled GEMMs above.

struct Params {
  Cin: u32,
  Cout: u32,
  H: u32,
  W: u32,
  Ho: u32,
  Wo: u32,
  kh: u32,
  kw: u32,
  stride: u32,
  pt: u32,    // padding top and left (bottom and right only shape Ho and Wo)
  pl: u32,
  Cp4: u32,   // packed input channels / 4
  Cop4: u32,  // packed output channels / 4
  K: u32,     // dw, dbias: output pixels to sum over (B·Ho·Wo)
  k0: u32,    // dw: first pixel of this dispatch
  kc: u32,    // dw: pixels per invocation; dbias: elements per workgroup
  part: u32,  // dw, dbias: stride between partial sums (0: write the gradient itself)
  n: u32,     // pack: elements to write; reduce: gradient elements
  row: u32,   // pack, reduce: workgroups along x (the 1-D grid folds over x and y)
  C: u32,     // pack: channels
  Cpad: u32,  // pack: channels after padding
  T: u32,     // pack: positions per channel
  so: u32,    // pack: source stride of o
  sc: u32,    // pack: source stride of c
  parts: u32, // reduce: partial sums per element
}

override ACCUM: bool = true;
override WG: u32 = 8u;
const PACK_WG = 256u;
override BWG: u32 = 64u; // dbias, reduce: a power of two (small: lavapipe runs each barrier as a context switch)

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> packed: array<f32>;
@group(0) @binding(2) var<storage, read> dp: array<vec4<f32>>;  // packed dout [B·Ho·Wo, Cop]
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;  // packed wᵀ [Cin, kh·kw, Cop]
@group(0) @binding(4) var<storage, read> xp: array<vec4<f32>>;  // packed x [B·H·W, Cp]
@group(0) @binding(5) var<storage, read> dout: array<f32>;      // NCHW dout
@group(0) @binding(6) var<storage, read> partial: array<f32>;
@group(0) @binding(7) var<storage, read_write> dst: array<f32>; // dx, dw, dbias, or their partial sums
@group(0) @binding(8) var<uniform> p: Params;

var<workgroup> red: array<f32, BWG>;

fn put(i: u32, v: f32) {
  if (ACCUM) { dst[i] += v; } else { dst[i] = v; }
}

@compute @workgroup_size(PACK_WG)
fn pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * PACK_WG + lid;
  if (i >= p.n) { return; }
  let c = i % p.Cpad;
  let t = (i / p.Cpad) % p.T;
  let o = i / (p.Cpad * p.T);
  var v = 0.0;
  if (c < p.C) { v = f32(src[o * p.so + c * p.sc + t]); } // f32() for the f16-weight variant (frozen f16 w)
  packed[i] = v;
}

fn dp_at(i: u32, inside: bool) -> vec4<f32> { return select(vec4<f32>(), dp[i], inside); }
fn xp_at(i: u32, inside: bool) -> vec4<f32> { return select(vec4<f32>(), xp[i], inside); }

// Grid (⌈pixels per class / (16·WG)⌉, ⌈Cin / 16⌉, B·s²).
@compute @workgroup_size(WG)
fn dx_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = p.stride;
  let bi = wid.z / (s * s);
  let py = (wid.z % (s * s)) / s; // this workgroup's class: iy ≡ py, ix ≡ px (mod s)
  let px = wid.z % s;
  if (py >= p.H || px >= p.W) { return; }
  let Wc = (p.W - px + s - 1u) / s;
  let Nc = ((p.H - py + s - 1u) / s) * Wc;
  let row0 = wid.y * 16u;              // first input channel
  let col0 = (wid.x * WG + lid) * 16u; // first pixel of the class
  if (col0 >= Nc) { return; }
  let Co4 = p.Cop4;
  let taps = p.kh * p.kw;
  let img = bi * p.Ho * p.Wo * Co4;

  // wᵀ rows (clamped: rows past Cin compute garbage that is never stored) and each pixel's class coordinates.
  var ar: array<u32, 16>;
  var cy: array<i32, 16>;
  var cx: array<i32, 16>;
  for (var i = 0u; i < 16u; i++) {
    ar[i] = min(row0 + i, p.Cin - 1u) * taps * Co4;
    let q = min(col0 + i, Nc - 1u);
    cy[i] = i32(q / Wc);
    cx[i] = i32(q % Wc);
  }

  var acc00 = mat4x4<f32>(); var acc01 = mat4x4<f32>(); var acc02 = mat4x4<f32>(); var acc03 = mat4x4<f32>();
  var acc10 = mat4x4<f32>(); var acc11 = mat4x4<f32>(); var acc12 = mat4x4<f32>(); var acc13 = mat4x4<f32>();
  var acc20 = mat4x4<f32>(); var acc21 = mat4x4<f32>(); var acc22 = mat4x4<f32>(); var acc23 = mat4x4<f32>();
  var acc30 = mat4x4<f32>(); var acc31 = mat4x4<f32>(); var acc32 = mat4x4<f32>(); var acc33 = mat4x4<f32>();

  for (var tap = 0u; tap < taps; tap++) {
    // iy = py + s·cy reaches oy = (iy + pt − ky)/s = cy + ty/s: only when s divides ty (same for the class).
    let ty = i32(py + p.pt) - i32(tap / p.kw);
    let tx = i32(px + p.pl) - i32(tap % p.kw);
    if (ty % i32(s) != 0 || tx % i32(s) != 0) { continue; }
    let dy = ty / i32(s);
    let dx = tx / i32(s);
    var bc: array<u32, 16>;
    var inb: array<bool, 16>;
    for (var j = 0u; j < 16u; j++) {
      let oy = cy[j] + dy;
      let ox = cx[j] + dx;
      inb[j] = oy >= 0 && ox >= 0 && oy < i32(p.Ho) && ox < i32(p.Wo);
      bc[j] = img + select(0u, (u32(oy) * p.Wo + u32(ox)) * Co4, inb[j]);
    }
    let wk = tap * Co4;
    for (var c4 = 0u; c4 < Co4; c4++) {
      let k = wk + c4;
      let am0 = mat4x4<f32>(wt[ar[0] + k], wt[ar[1] + k], wt[ar[2] + k], wt[ar[3] + k]);
      let am1 = mat4x4<f32>(wt[ar[4] + k], wt[ar[5] + k], wt[ar[6] + k], wt[ar[7] + k]);
      let am2 = mat4x4<f32>(wt[ar[8] + k], wt[ar[9] + k], wt[ar[10] + k], wt[ar[11] + k]);
      let am3 = mat4x4<f32>(wt[ar[12] + k], wt[ar[13] + k], wt[ar[14] + k], wt[ar[15] + k]);
      let bm0 = transpose(mat4x4<f32>(dp_at(bc[0] + c4, inb[0]), dp_at(bc[1] + c4, inb[1]),
        dp_at(bc[2] + c4, inb[2]), dp_at(bc[3] + c4, inb[3])));
      let bm1 = transpose(mat4x4<f32>(dp_at(bc[4] + c4, inb[4]), dp_at(bc[5] + c4, inb[5]),
        dp_at(bc[6] + c4, inb[6]), dp_at(bc[7] + c4, inb[7])));
      let bm2 = transpose(mat4x4<f32>(dp_at(bc[8] + c4, inb[8]), dp_at(bc[9] + c4, inb[9]),
        dp_at(bc[10] + c4, inb[10]), dp_at(bc[11] + c4, inb[11])));
      let bm3 = transpose(mat4x4<f32>(dp_at(bc[12] + c4, inb[12]), dp_at(bc[13] + c4, inb[13]),
        dp_at(bc[14] + c4, inb[14]), dp_at(bc[15] + c4, inb[15])));
      acc00 += bm0 * am0; acc01 += bm1 * am0; acc02 += bm2 * am0; acc03 += bm3 * am0;
      acc10 += bm0 * am1; acc11 += bm1 * am1; acc12 += bm2 * am1; acc13 += bm3 * am1;
      acc20 += bm0 * am2; acc21 += bm1 * am2; acc22 += bm2 * am2; acc23 += bm3 * am2;
      acc30 += bm0 * am3; acc31 += bm1 * am3; acc32 += bm2 * am3; acc33 += bm3 * am3;
    }
  }

  // acc_IJ column i = input channel row0 + 4I + i, component j = class pixel col0 + 4J + j.
  let geo = vec4<u32>(bi, py, px, Wc);
  store_dx(acc00, acc01, acc02, acc03, geo, row0, col0, Nc);
  store_dx(acc10, acc11, acc12, acc13, geo, row0 + 4u, col0, Nc);
  store_dx(acc20, acc21, acc22, acc23, geo, row0 + 8u, col0, Nc);
  store_dx(acc30, acc31, acc32, acc33, geo, row0 + 12u, col0, Nc);
}

// Stores 4 input channels × 16 class pixels of image geo.x (class geo.yz, geo.w pixels per class row), skipping
// what falls outside (dynamic loop bounds: see matmul.wgsl).
fn store_dx(c0: mat4x4<f32>, c1: mat4x4<f32>, c2: mat4x4<f32>, c3: mat4x4<f32>, geo: vec4<u32>, row: u32, col: u32,
  Nc: u32) {
  let blocks = array<mat4x4<f32>, 4>(c0, c1, c2, c3);
  let rows = select(0u, min(4u, p.Cin - row), row < p.Cin);
  let cols = min(16u, Nc - col);
  let plane = p.H * p.W;
  let base = (geo.x * p.Cin + row) * plane;
  for (var j = 0u; j < cols; j++) {
    let q = col + j;
    let at = base + (geo.y + p.stride * (q / geo.w)) * p.W + geo.z + p.stride * (q % geo.w);
    for (var i = 0u; i < rows; i++) {
      put(at + i * plane, blocks[j / 4u][i][j % 4u]);
    }
  }
}

// Grid (⌈kh·kw·⌈Cin/16⌉ / WG⌉, ⌈Cout / 16⌉, splits of K in this dispatch).
@compute @workgroup_size(WG)
fn dw_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let taps = p.kh * p.kw;
  let ciTiles = (p.Cin + 15u) / 16u;
  let job = wid.x * WG + lid;
  if (job >= taps * ciTiles) { return; }
  let tap = job / ciTiles;
  let ci0 = (job % ciTiles) * 16u;
  let co0 = wid.y * 16u;
  let ky = i32(tap / p.kw) - i32(p.pt);
  let kx = i32(tap % p.kw) - i32(p.pl);
  let s = p.stride;
  // vec4 columns of this tile in the packed operands, clamped (what is computed past the edge is never stored)
  let a0 = min(co0 / 4u, p.Cop4 - 1u);
  let a1 = min(co0 / 4u + 1u, p.Cop4 - 1u);
  let a2 = min(co0 / 4u + 2u, p.Cop4 - 1u);
  let a3 = min(co0 / 4u + 3u, p.Cop4 - 1u);
  let b0 = min(ci0 / 4u, p.Cp4 - 1u);
  let b1 = min(ci0 / 4u + 1u, p.Cp4 - 1u);
  let b2 = min(ci0 / 4u + 2u, p.Cp4 - 1u);
  let b3 = min(ci0 / 4u + 3u, p.Cp4 - 1u);

  let k0 = p.k0 + wid.z * p.kc;
  let k1 = min(k0 + p.kc, p.K);
  // the next pixel's image, output row and column, advanced one pixel at a time (no divisions in the loop)
  var ox = k0 % p.Wo;
  var oy = (k0 / p.Wo) % p.Ho;
  var img = k0 / (p.Wo * p.Ho);

  var acc00 = mat4x4<f32>(); var acc01 = mat4x4<f32>(); var acc02 = mat4x4<f32>(); var acc03 = mat4x4<f32>();
  var acc10 = mat4x4<f32>(); var acc11 = mat4x4<f32>(); var acc12 = mat4x4<f32>(); var acc13 = mat4x4<f32>();
  var acc20 = mat4x4<f32>(); var acc21 = mat4x4<f32>(); var acc22 = mat4x4<f32>(); var acc23 = mat4x4<f32>();
  var acc30 = mat4x4<f32>(); var acc31 = mat4x4<f32>(); var acc32 = mat4x4<f32>(); var acc33 = mat4x4<f32>();

  for (var k = k0; k < k1; k += 4u) {
    // 4 pixels: their dout rows (clamped into the tensor) and x rows under this tap (masked outside the image
    // and past k1, which zeroes the whole product term).
    var ar: array<u32, 4>;
    var br: array<u32, 4>;
    var inb: array<bool, 4>;
    for (var j = 0u; j < 4u; j++) {
      let iy = i32(oy * s) + ky;
      let ix = i32(ox * s) + kx;
      inb[j] = k + j < k1 && iy >= 0 && ix >= 0 && iy < i32(p.H) && ix < i32(p.W);
      ar[j] = min(k + j, p.K - 1u) * p.Cop4;
      br[j] = select(0u, ((img * p.H + u32(iy)) * p.W + u32(ix)) * p.Cp4, inb[j]);
      ox += 1u;
      let rowEnd = ox == p.Wo;
      ox = select(ox, 0u, rowEnd);
      oy += select(0u, 1u, rowEnd);
      let imgEnd = oy == p.Ho;
      oy = select(oy, 0u, imgEnd);
      img += select(0u, 1u, imgEnd);
    }
    // am_I column j = dout[pixel j, co0+4I … co0+4I+3]; bm_J row j = x[pixel j, ci0+4J … ci0+4J+3]
    let am0 = mat4x4<f32>(dp[ar[0] + a0], dp[ar[1] + a0], dp[ar[2] + a0], dp[ar[3] + a0]);
    let am1 = mat4x4<f32>(dp[ar[0] + a1], dp[ar[1] + a1], dp[ar[2] + a1], dp[ar[3] + a1]);
    let am2 = mat4x4<f32>(dp[ar[0] + a2], dp[ar[1] + a2], dp[ar[2] + a2], dp[ar[3] + a2]);
    let am3 = mat4x4<f32>(dp[ar[0] + a3], dp[ar[1] + a3], dp[ar[2] + a3], dp[ar[3] + a3]);
    let bm0 = transpose(mat4x4<f32>(xp_at(br[0] + b0, inb[0]), xp_at(br[1] + b0, inb[1]),
      xp_at(br[2] + b0, inb[2]), xp_at(br[3] + b0, inb[3])));
    let bm1 = transpose(mat4x4<f32>(xp_at(br[0] + b1, inb[0]), xp_at(br[1] + b1, inb[1]),
      xp_at(br[2] + b1, inb[2]), xp_at(br[3] + b1, inb[3])));
    let bm2 = transpose(mat4x4<f32>(xp_at(br[0] + b2, inb[0]), xp_at(br[1] + b2, inb[1]),
      xp_at(br[2] + b2, inb[2]), xp_at(br[3] + b2, inb[3])));
    let bm3 = transpose(mat4x4<f32>(xp_at(br[0] + b3, inb[0]), xp_at(br[1] + b3, inb[1]),
      xp_at(br[2] + b3, inb[2]), xp_at(br[3] + b3, inb[3])));
    // acc_IJ = Σ am_I · bm_J: column c = input channel ci0 + 4J + c, component r = output channel co0 + 4I + r
    acc00 += am0 * bm0; acc01 += am0 * bm1; acc02 += am0 * bm2; acc03 += am0 * bm3;
    acc10 += am1 * bm0; acc11 += am1 * bm1; acc12 += am1 * bm2; acc13 += am1 * bm3;
    acc20 += am2 * bm0; acc21 += am2 * bm1; acc22 += am2 * bm2; acc23 += am2 * bm3;
    acc30 += am3 * bm0; acc31 += am3 * bm1; acc32 += am3 * bm2; acc33 += am3 * bm3;
  }

  let o = wid.z * p.part + tap;
  store_dw(acc00, acc01, acc02, acc03, o, co0, ci0);
  store_dw(acc10, acc11, acc12, acc13, o, co0 + 4u, ci0);
  store_dw(acc20, acc21, acc22, acc23, o, co0 + 8u, ci0);
  store_dw(acc30, acc31, acc32, acc33, o, co0 + 12u, ci0);
}

// Stores 4 output channels × 16 input channels of one tap (o = slice offset + tap), skipping what falls outside.
fn store_dw(c0: mat4x4<f32>, c1: mat4x4<f32>, c2: mat4x4<f32>, c3: mat4x4<f32>, o: u32, co: u32, ci: u32) {
  let blocks = array<mat4x4<f32>, 4>(c0, c1, c2, c3);
  let rows = select(0u, min(4u, p.Cout - co), co < p.Cout);
  let cols = min(16u, p.Cin - ci);
  let taps = p.kh * p.kw;
  for (var r = 0u; r < rows; r++) {
    let base = o + ((co + r) * p.Cin + ci) * taps;
    for (var c = 0u; c < cols; c++) {
      put(base + c * taps, blocks[c / 4u][c % 4u][r]);
    }
  }
}

// Grid (chunks of kc elements, Cout): workgroup (chunk, co) sums dout[b, co, ·] over its chunk of the B·Ho·Wo
// elements of channel co, BWG lanes striding (kc / BWG loop iterations), then a tree.
@compute @workgroup_size(BWG)
fn dbias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let co = wid.y;
  let N = p.Ho * p.Wo;
  let j1 = min((wid.x + 1u) * p.kc, p.K);
  var acc = 0.0;
  for (var j = wid.x * p.kc + lid; j < j1; j += BWG) {
    let b = j / N;
    acc += dout[(b * p.Cout + co) * N + j - b * N];
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var h = BWG / 2u; h > 0u; h >>= 1u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) { put(wid.x * p.part + co, red[0]); }
}

@compute @workgroup_size(BWG)
fn reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * BWG + lid;
  if (i >= p.n) { return; }
  var acc = 0.0;
  for (var j = 0u; j < p.parts; j++) { acc += partial[j * p.n + i]; }
  put(i, acc);
}
