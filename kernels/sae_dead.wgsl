// sae_dead.wgsl — dead-latent bookkeeping for AuxK (OpenAI / SDLens `stats_last_nonzero`):
//
//   fired     fired[j] = 1 when some row's main top-k holds latent j with a value > threshold (1e-3)
//   update    counter[j] = (fired[j] ? 0 : counter[j]) + 1;  fired[j] = 0;  dead[j] = counter[j] > dead_steps
//   mask      pre[r, j] = max(pre[r, j], 0) · dead[j]          (in place: the AuxK top-k input)
//
// So a latent is dead once it has not fired in the last `dead_steps` steps (this one included); the counter starts
// at 0 as the reference's does. `fired` stores the same value from every row that fires (an idempotent atomic
// store), so the result does not depend on the order of the invocations. v1 (this file): one invocation per slot,
// per latent, per element. Not differentiated: the mask is a constant and the ReLU's gate is applied by the
// backward's `dz` (an AuxK slot has a gradient only where its value is positive).

struct Params {
  rows: u32,
  k: u32,
  n: u32,
  row: u32,        // workgroups along x of the folded grid
  threshold: f32,
  dead_steps: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> values: array<f32>;  // [B, k]
@group(0) @binding(1) var<storage, read> indices: array<u32>; // [B, k]
@group(0) @binding(2) var<storage, read_write> fired: array<atomic<u32>>; // [n]
@group(0) @binding(3) var<storage, read_write> counter: array<u32>;       // [n]
@group(0) @binding(4) var<storage, read_write> dead_out: array<f32>;      // [n]
@group(0) @binding(5) var<storage, read> dead: array<f32>;                // [n]
@group(0) @binding(6) var<storage, read_write> pre: array<f32>;           // [B, n]
@group(0) @binding(7) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn mark(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.rows * p.k) { return; }
  if (values[g] > p.threshold) { atomicStore(&fired[min(indices[g], p.n - 1u)], 1u); }
}

@compute @workgroup_size(WG)
fn update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = (wid.y * p.row + wid.x) * WG + lid;
  if (j >= p.n) { return; }
  var c = counter[j];
  if (atomicLoad(&fired[j]) != 0u) { c = 0u; }
  c = min(c, 0xfffffffeu) + 1u;
  counter[j] = c;
  atomicStore(&fired[j], 0u);
  dead_out[j] = select(0.0, 1.0, c > p.dead_steps);
}

@compute @workgroup_size(WG)
fn mask(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.rows * p.n) { return; }
  pre[g] = max(pre[g], 0.0) * dead[g % p.n];
}
