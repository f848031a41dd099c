// fill.wgsl — fills a tensor with a constant or with seeded pseudo-random numbers (counter-based, so any element
// can be generated independently and the result does not depend on the dispatch shape).
//
//   constant:  x[i] = value
//   uniform:   x[i] = lo + (hi − lo) · u(seed, i),           u ∈ [0, 1)
//   normal:    x[i] = mean + std · Box–Muller(u1, u2)         from two hashes of (seed, i)
//
// The hash is PCG's output permutation applied to a 32-bit counter mixed with the seed (pcg_hash), the same on
// every device; the normal's log/cos follow WGSL's accuracy rules, so values agree across devices to ~1e-6, not
// bit for bit. Used for random weights in benchmarks and model-sized tests. v1: one invocation per element.

struct Params {
  n: u32,
  row: u32,
  seed: u32,
  a: f32,   // value | lo | mean
  b: f32,   // –     | hi | std
}

override DIST: u32 = 0u; // 0 constant, 1 uniform, 2 normal
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

fn pcg_hash(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

fn unit(h: u32) -> f32 {
  return f32(h >> 8u) * (1.0 / 16777216.0); // 24 random bits: exactly representable, in [0, 1)
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  if (DIST == 0u) {
    x[i] = p.a;
    return;
  }
  let h1 = pcg_hash(i ^ pcg_hash(p.seed));
  if (DIST == 1u) {
    x[i] = p.a + (p.b - p.a) * unit(h1);
    return;
  }
  let h2 = pcg_hash(h1 ^ 0x9e3779b9u);
  let u1 = max(unit(h1), 1.0 / 16777216.0);
  let u2 = unit(h2);
  x[i] = p.a + p.b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
