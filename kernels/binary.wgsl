// binary.wgsl — elementwise binary ops with NumPy broadcasting over up to 4 dimensions.
//
//   out[i] = a[bcast_a(i)] OP b[bcast_b(i)]      OP ∈ {add, sub, mul, div}, chosen by the OP override.
//   out    = alpha · a + beta · b                  (OP = 4, "axpby": residual adds, scaled sums)
//
// Shapes are right-aligned and padded to 4 dims by the host; a broadcast dimension has stride 0, so one index
// formula serves every case. v1 (this file): one invocation per output element, grid folded over x and y so
// that more than 65535·256 elements dispatch. Backward (binary_bwd.wgsl): d/da and d/db are elementwise products
// followed by a sum over the broadcast dimensions.

struct Params {
  n: u32,           // output elements
  row: u32,         // workgroups along x (to fold the 2-D grid back to a linear index)
  alpha: f32,
  beta: f32,
  shape: vec4<u32>, // output shape, padded on the left with 1s
  sa: vec4<u32>,    // strides of a in output index space (0 where a broadcasts)
  sb: vec4<u32>,
}

override OP: u32 = 0u;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  // unravel i over the padded output shape
  let i3 = i % p.shape.w;
  let r2 = i / p.shape.w;
  let i2 = r2 % p.shape.z;
  let r1 = r2 / p.shape.z;
  let i1 = r1 % p.shape.y;
  let i0 = r1 / p.shape.y;
  let idx = vec4<u32>(i0, i1, i2, i3);
  let x = a[dot(idx, p.sa)];
  let y = b[dot(idx, p.sb)];
  var r: f32;
  switch OP {
    case 0u: { r = x + y; }
    case 1u: { r = x - y; }
    case 2u: { r = x * y; }
    case 3u: { r = x / y; }
    default: { r = p.alpha * x + p.beta * y; }
  }
  out[i] = r;
}
