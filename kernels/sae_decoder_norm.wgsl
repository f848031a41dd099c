// sae_decoder_norm.wgsl — the decoder constraint of TopK SAEs (SDLens `unit_norm_decoder_` and
// `unit_norm_decoder_grad_adjustment_`), for W_dec [d, n] whose columns are the latents' directions:
//
//   w_j ← w_j / ‖w_j‖                          (`unit`, `unit_project`) every column to unit L2 norm
//   g_j ← g_j − (g_j · w_j) w_j                (`unit_project`) remove the gradient's component along the new w_j
//
// so that an Adam step moves each direction tangentially to the unit sphere (the next renormalisation then
// undoes only second-order growth). A zero column is left as it is. v1 (this file): one invocation per column,
// three passes down it; neighbouring invocations read neighbouring columns, so every row access is contiguous.
// Not differentiated (it runs between the backward and the optimiser step).

struct Params {
  d: u32,
  n: u32,
  row: u32, // workgroups along x of the folded grid
}

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> w: array<f32>;    // [d, n]
@group(0) @binding(1) var<storage, read_write> grad: array<f32>; // [d, n]
@group(0) @binding(2) var<uniform> p: Params;

fn unit_column(j: u32) {
  var ss = 0.0;
  for (var i = 0u; i < p.d; i++) {
    let v = w[i * p.n + j];
    ss += v * v;
  }
  let norm = sqrt(ss);
  if (norm > 0.0) {
    for (var i = 0u; i < p.d; i++) { w[i * p.n + j] = w[i * p.n + j] / norm; }
  }
}

@compute @workgroup_size(WG)
fn unit(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = (wid.y * p.row + wid.x) * WG + lid;
  if (j >= p.n) { return; }
  unit_column(j);
}

@compute @workgroup_size(WG)
fn unit_project(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = (wid.y * p.row + wid.x) * WG + lid;
  if (j >= p.n) { return; }
  unit_column(j);
  var dot = 0.0;
  for (var i = 0u; i < p.d; i++) { dot += grad[i * p.n + j] * w[i * p.n + j]; }
  for (var i = 0u; i < p.d; i++) { grad[i * p.n + j] -= dot * w[i * p.n + j]; }
}
