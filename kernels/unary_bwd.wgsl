// unary_bwd.wgsl — gradients of unary.wgsl's elementwise ops, dx (+)= dy · f'(x), OP numbered as there:
//
//   OP 0 scale       f'(x) = a                                   (x is not read)
//   OP 1 silu        f'(x) = s + x·s(1 − s),            s = σ(x)
//   OP 2 gelu        f'(x) = Φ(x) + x·φ(x),             φ(x) = e^(−x²/2)/√(2π)   (gelu_grad_f32 in _gelu.wgsl)
//   OP 3 quick_gelu  f'(x) = s + x·1.702·s(1 − s),      s = σ(1.702x)
//   OP 4 clamp       f'(x) = 1 where a ≤ x ≤ b, else 0  (torch's convention: the bounds pass the gradient)
//   OP 5 erf         f'(x) = (2/√π)·e^(−x²)
//
// The x·s(1 − s) products are ordered so that huge |x| gives 0, not inf·0 = NaN, where s saturates.
// Version ladder as unary.wgsl: v1 one invocation per element; v2 (this file) one per vec4, the last partial vec4
// component by component. ACCUM adds into dx instead of overwriting it. dx must not share a buffer with x or dy.

struct Params {
  n: u32,   // elements (not vec4s)
  row: u32, // workgroups along x
  a: f32,   // scale: alpha; clamp: lower bound
  b: f32,   // clamp: upper bound
}

override OP: u32 = 0u;
override ACCUM: bool = true;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

//!include _gelu.wgsl

fn sigmoid(v: f32) -> f32 {
  return 1.0 / (1.0 + exp(-v));
}

fn slope(v: f32) -> f32 {
  switch OP {
    case 0u: { return p.a; }
    case 1u: {
      let s = sigmoid(v);
      return s + v * (s * (1.0 - s));
    }
    case 2u: { return gelu_grad_f32(v); }
    case 3u: {
      let s = sigmoid(1.702 * v);
      return s + v * (1.702 * s * (1.0 - s));
    }
    case 4u: { return select(0.0, 1.0, v >= p.a && v <= p.b); }
    default: { return 1.1283791670955126 * exp(-v * v); }
  }
}

fn slope4(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(slope(v.x), slope(v.y), slope(v.z), slope(v.w));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  let full = p.n / 4u;
  if (i < full) {
    let g = dy[i] * slope4(x[i]);
    if (ACCUM) { dx[i] += g; } else { dx[i] = g; }
  } else if (i == full) {
    for (var k = 0u; k < p.n % 4u; k++) {
      let g = dy[i][k] * slope(x[i][k]);
      if (ACCUM) { dx[i][k] += g; } else { dx[i][k] = g; }
    }
  }
}
