// hook_edit.wgsl — the edits a hook applies to a module's output, in place, on one batch range.
//
//   y  = clamp(s · x + a + w · v[j], lo, hi)
//   x' = x + m[pos] · (y − x)
//
// over the elements [start, start + n) of x (one batch range, e.g. the cond half of a CFG batch). Every edit is a
// choice of (s, a, w, lo, hi): add a constant (a), add a vector or tensor (w = 1), scale (s), zero (s = 0), set
// (s = 0, w = 1), clamp (lo, hi). m is an optional spatial mask over H·W positions (1 everywhere without MASK): where
// m = 0 the element is left bit-identical. v is indexed per channel (VMODE 1, a feature direction) or per element
// of one batch item (VMODE 2, a full replacement); VMODE 0 ignores it.
// Layouts: LAYOUT 0 is [B, C, H·W] (NCHW, channel = (i / hw) % c); LAYOUT 1 is [B, H·W, C] (channel = i % c).
// v1: one invocation per element, 2-D folded grid. Backward: d x'/d x = 1 + m·(s·1[lo<y<hi] − 1), elementwise.

struct Params {
  n: u32,       // elements edited
  start: u32,   // first element (batch offset)
  row: u32,     // workgroups along x
  hw: u32,      // spatial positions per channel
  c: u32,       // channels
  s: f32,
  a: f32,
  w: f32,
  lo: f32,
  hi: f32,
}

override MASK: bool = false;
override VMODE: u32 = 0u;
override LAYOUT: u32 = 0u;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> m: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = (wid.y * p.row + wid.x) * WG + lid;
  if (k >= p.n) { return; }
  let i = p.start + k;
  var chan: u32;
  var pos: u32;
  if (LAYOUT == 0u) {
    chan = (i / p.hw) % p.c;
    pos = i % p.hw;
  } else {
    chan = i % p.c;
    pos = (i / p.c) % p.hw;
  }
  let xi = x[i];
  var vv = 0.0;
  if (VMODE == 1u) { vv = v[chan]; }
  if (VMODE == 2u) { vv = v[i % (p.hw * p.c)]; }
  let y = clamp(p.s * xi + p.a + p.w * vv, p.lo, p.hi);
  var mm = 1.0;
  if (MASK) { mm = m[pos]; }
  // exact y where the mask is 1, exact x where it is 0
  if (mm == 1.0) { x[i] = y; } else if (mm != 0.0) { x[i] = xi + mm * (y - xi); }
}
