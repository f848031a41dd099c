// binary_bwd.wgsl — gradients of binary.wgsl (out = a OP b, NumPy broadcasting over ≤ 4 dims) w.r.t. one operand T:
//
//   dT[k] (+)= coef · Σ_{i ↦ k} ∂out[i]/∂T · dy[i]          the sum runs over the output elements i that read T[k]
//
//   OP          ∂/∂a (coef)            ∂/∂b (coef)
//   add         dy        (1)          dy          (1)
//   sub         dy        (1)          dy          (−1)
//   mul         dy·b      (1)          dy·a        (1)
//   div         dy/b      (1)          dy·a/b²     (−1)
//   axpby       dy        (alpha)      dy          (beta)
//
// The output index splits into T's own coordinates k (the dims T has) and the broadcast coordinates r (the dims
// where T has size 1 and the output does not): i = unravel(k, kshape) + unravel(r, rshape). So the gradient is a
// reduction of R = Π rshape terms for each of T's K elements; R = 1 (no broadcasting) makes it elementwise.
//
// Version ladder: v1 one invocation per element of T, serial over its R terms (error ∝ R, and too few invocations
// for a bias gradient, where K = C and R = B·H·W). v2 `main` follows reduce.wgsl: a TX × TY workgroup, TX
// neighbouring k (coalesced when T's innermost dim is the output's), TY slices along r (coalesced when the
// innermost output dim is broadcast); each invocation adds `per` terms (stride TY), the workgroup a tree. An
// invocation unravels its first r once and then steps its 4-D coordinate by TY with carries (`rstep` is TY's
// digits), since integer division is what costs most on lavapipe (2.3–3.4× faster than unravelling every term).
// One pass turns R into `chunks` partial sums, written to a [chunks, K] scratch; the host sums that with this same
// kernel (OP add, T = [1, K] against [chunks, K]) until one chunk is left. With per = 64 and TY ≤ 256 an invocation
// runs ≤ 64 loop iterations per pass (lavapipe ends an invocation after 65,535), and 5M terms take two passes.
// `same`: a, b and dy all of one shape (the residual add's case): plain elementwise, 4 elements per invocation,
// no index arithmetic at all.
// ACCUM (final pass only) adds into dT instead of overwriting it.

struct Params {
  k: u32,            // K: elements of T (of its gradient)
  r: u32,            // R: terms summed into each in this pass
  chunks: u32,       // ceil(R / (TY·per)): sums this pass leaves per element (1 on the final pass)
  per: u32,          // terms each invocation adds serially
  tiles: u32,        // ceil(K / TX)
  total: u32,        // workgroups: chunks · tiles
  row: u32,          // workgroups along x (the grid is folded over x and y)
  coef: f32,         // the constant factor of the table above
  kshape: vec4<u32>, // T's shape padded to 4 dims (1 along broadcast dims)
  rshape: vec4<u32>, // the output's size along T's broadcast dims, 1 elsewhere
  rstep: vec4<u32>,  // TY unravelled over rshape (the step of an invocation's r)
  so: vec4<u32>,     // strides of dy
  sa: vec4<u32>,     // strides of a in output index space (0 where a broadcasts)
  sb: vec4<u32>,     // strides of b likewise
}

override OP: u32 = 0u;        // 0 add, 1 sub, 2 mul, 3 div, 4 axpby (as binary.wgsl)
override WRT_B: bool = false; // the gradient w.r.t. b rather than a
override ACCUM: bool = true;
override TX: u32 = 1u;        // powers of two with TX · TY = 256
override TY: u32 = 256u;
override WG: u32 = 256u;      // `same`

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

//!include _column_sum.wgsl

fn unravel(i: u32, s: vec4<u32>) -> vec4<u32> {
  let i3 = i % s.w;
  let r2 = i / s.w;
  let i2 = r2 % s.z;
  let r1 = r2 / s.z;
  return vec4<u32>(r1 / s.y, r1 % s.y, i2, i3);
}

// ∂out/∂T · dy without the constant factor, for the output element at dy[io] that reads a[ia] and b[ib].
fn term(io: u32, ia: u32, ib: u32) -> f32 {
  let g = dy[io];
  switch OP {
    case 2u: {
      if (WRT_B) { return g * a[ia]; }
      return g * b[ib];
    }
    case 3u: {
      let y = b[ib];
      if (WRT_B) { return g * a[ia] / (y * y); }
      return g / y;
    }
    default: { return g; }
  }
}

// The coordinate r + TY from r's (mixed radix over rshape: each digit of rstep is below its radix, so ≤ 1 carry).
fn advance(r: vec4<u32>) -> vec4<u32> {
  var v = r + p.rstep;
  if (v.w >= p.rshape.w) { v.w -= p.rshape.w; v.z += 1u; }
  if (v.z >= p.rshape.z) { v.z -= p.rshape.z; v.y += 1u; }
  if (v.y >= p.rshape.y) { v.y -= p.rshape.y; v.x += 1u; }
  return v;
}

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = wid.y * p.row + wid.x;
  if (w >= p.total) { return; }
  let tile = w % p.tiles;
  let c = w / p.tiles;
  let k = tile * TX + lid.x;
  let live = k < p.k;
  var s = 0.0;
  let r0 = c * TY * p.per + lid.y;
  if (live && r0 < p.r) {
    let ik = unravel(k, p.kshape);
    let ko = dot(ik, p.so);
    let ka = dot(ik, p.sa);
    let kb = dot(ik, p.sb);
    var ir = unravel(r0, p.rshape);
    let rEnd = min(p.r, (c + 1u) * TY * p.per);
    for (var r = r0; r < rEnd; r += TY) {
      s += term(ko + dot(ir, p.so), ka + dot(ir, p.sa), kb + dot(ir, p.sb));
      ir = advance(ir);
    }
  }
  let sum = column_sum(lid, s);
  if (lid.y == 0u && live) {
    let o = c * p.k + k;
    let v = p.coef * sum;
    if (ACCUM) { grad[o] += v; } else { grad[o] = v; }
  }
}

@compute @workgroup_size(WG)
fn same(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ((wid.y * p.row + wid.x) * WG + lid) * 4u;
  for (var e = i; e < min(i + 4u, p.k); e++) {
    let v = p.coef * term(e, e, e);
    if (ACCUM) { grad[e] += v; } else { grad[e] = v; }
  }
}
