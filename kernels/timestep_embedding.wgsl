// timestep_embedding.wgsl — diffusers' sinusoidal `get_timestep_embedding`:
//
//   half = ⌊dim/2⌋,  freq_j = exp(−ln(max_period) · j / (half − downscale_freq_shift)),  j < half
//   a_bj = scale · (t_b · freq_j)
//   out[b] = [sin a_b, cos a_b]   or, with flip_sin_to_cos, [cos a_b, sin a_b];   a zero column if dim is odd
//
// timesteps: [B] f32 (fractional for Euler-type schedulers), out: [B, dim]. The host computes freq_j in float64
// and rounds each step to f32 as torch does, and passes the table in the uniform; the kernel does the two f32
// products as torch does, so the argument a is the very f32 number diffusers feeds to sin/cos.
// WGSL's sin/cos promise only 2⁻¹¹ absolute error, and only on [−π, π], while a reaches ~1000 here; so sin/cos
// are computed here: Cody–Waite reduction by π/2 in four parts (the first three with ≤ 11 significant bits, so
// k·Cᵢ is exact for |a| < 12868 and the error grows only slowly beyond), then Cephes' sinf/cosf minimax
// polynomials on [−π/4, π/4]. Measured (f32 emulation): |error| < 1e-7 for |a| < 12000, < 1e-6 at 1e5.
// v1 (this file): one invocation per output element.
//
// Backward: none needed (timesteps are not differentiated). If ever: d out/d t_b = scale·freq_j·(cos a, −sin a)
// in the un-flipped order.

struct Params {
  n: u32,                        // output elements (B · dim)
  row: u32,                      // workgroups along x
  dim: u32,
  half: u32,
  flip: u32,                     // 1: cos first
  scale: f32,
  freq: array<vec4<f32>, 256>,   // freq_j, j < half
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> timesteps: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

// π/2 = C1 + C2 + C3 + C4; C1..C3 have at most 11 significant bits.
const C1: f32 = 1.5703125;
const C2: f32 = 0.00048375129699707031;
const C3: f32 = 7.5495336204767227e-8;
const C4: f32 = 2.5633440682570896e-12;
const TWO_OVER_PI: f32 = 0.63661977236758134;

// (sin a, cos a) for f32 a.
fn sincos(a: f32) -> vec2<f32> {
  let k = round(a * TWO_OVER_PI);
  var r = a - k * C1;
  r = r - k * C2;
  r = r - k * C3;
  r = r - k * C4;
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  switch (i32(k) & 3) {
    case 0: { return vec2<f32>(s, c); }
    case 1: { return vec2<f32>(c, -s); }
    case 2: { return vec2<f32>(-s, -c); }
    default: { return vec2<f32>(-c, s); }
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  let b = i / p.dim;
  let col = i - b * p.dim;
  if (col >= 2u * p.half) { out[i] = 0.0; return; }
  let second = col >= p.half;
  let j = select(col, col - p.half, second);
  let a = (timesteps[b] * p.freq[j / 4u][j % 4u]) * p.scale;
  let sc = sincos(a);
  // unflipped: [sin, cos]; flipped: [cos, sin]
  let want_cos = second != (p.flip == 1u);
  out[i] = select(sc.x, sc.y, want_cos);
}
