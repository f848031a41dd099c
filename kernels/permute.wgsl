// permute.wgsl — general permutation of a contiguous tensor's dimensions (torch's `x.permute(perm).contiguous()`):
//
//   out[i₀, …, i_{r−1}] = in[j]   with  j = Σ_k i_k · stride_in[perm[k]],   out.shape[k] = in.shape[perm[k]]
//
// The host first drops size-1 dimensions and merges dimensions that stay adjacent and in order, so the layout
// change of a transformer block ([B, C, H, W] → [B, H·W, C], perm [0, 2, 3, 1]) arrives here as a batched 2-D
// transpose [B, C, HW] → [B, HW, C] and a head split ([B, T, h, d] → [B, h, T, d]) as a rank-4 permutation with a
// contiguous innermost run. A pure copy, so it moves 32-bit words (bit-exact for f32, i32 and u32).
//
// Version ladder:
//   v1 `main`:        one invocation per output element, its input index unravelled over ≤ 6 output dims. Writes
//                     coalesce; reads do too whenever the innermost output dimension is contiguous in the input.
//                     When it is (a head split's d), each invocation moves VEC ∈ {2, 4, 8} consecutive words of it,
//                     which divides the index arithmetic by VEC (3× faster on lavapipe for d = 40).
//   v2 `transpose2d`: batched [R, C] → [C, R] through a TILE×(TILE+1) tile in workgroup memory (the +1 column
//                     avoids bank conflicts), so reads and writes both coalesce; TILE×ROWS threads, TILE/ROWS
//                     elements each. The host uses it when the simplified permutation swaps the last two dims.
//
// Backward: dx = permute(dy, inverse(perm)) — the same kernels. ACCUM (f32 only, the backward's `dx +=`) adds the
// moved values into `out` instead of overwriting it; the forward leaves it off, so its pipelines are unchanged.

struct Params {
  n: u32,                          // output elements
  row: u32,                        // workgroups along x (main)
  rank: u32,                       // dims in use (main)
  rows: u32,                       // R (transpose2d)
  cols: u32,                       // C (transpose2d)
  shape: array<vec4<u32>, 2>,      // output shape, dims 0..rank−1, the last divided by VEC (main)
  stride: array<vec4<u32>, 2>,     // input stride of the input dim feeding each output dim (main)
}

override WG: u32 = 256u;
override VEC: u32 = 1u;
override TILE: u32 = 32u;
override ROWS: u32 = 8u;
override ACCUM: bool = false;

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

fn put(j: u32, v: u32) {
  if (ACCUM) { out[j] = bitcast<u32>(bitcast<f32>(out[j]) + bitcast<f32>(v)); } else { out[j] = v; }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n / VEC) { return; }
  var rest = i;
  var src = 0u;
  for (var k = 0u; k < p.rank; k++) {
    let d = p.rank - 1u - k;
    let size = p.shape[d / 4u][d % 4u];
    src += (rest % size) * p.stride[d / 4u][d % 4u];
    rest /= size;
  }
  for (var v = 0u; v < VEC; v++) { put(i * VEC + v, x[src + v]); }
}

var<workgroup> tile: array<u32, TILE * (TILE + 1u)>;

// Grid: (⌈C/TILE⌉, ⌈R/TILE⌉, batch).
@compute @workgroup_size(TILE, ROWS)
fn transpose2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = wid.z * p.rows * p.cols;
  let r0 = wid.y * TILE;
  let c0 = wid.x * TILE;
  for (var j = lid.y; j < TILE; j += ROWS) {
    let r = r0 + j;
    let c = c0 + lid.x;
    if (r < p.rows && c < p.cols) { tile[j * (TILE + 1u) + lid.x] = x[base + r * p.cols + c]; }
  }
  workgroupBarrier();
  for (var j = lid.y; j < TILE; j += ROWS) {
    let c = c0 + j;
    let r = r0 + lid.x;
    if (r < p.rows && c < p.cols) { put(base + c * p.rows + r, tile[lid.x * (TILE + 1u) + j]); }
  }
}
