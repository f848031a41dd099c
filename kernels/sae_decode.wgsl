// sae_decode.wgsl — sparse decode of a TopK sparse autoencoder: the k active latents of each row, given as
// (values, indices) [rows, k], weight their dictionary atoms, plus an optional bias:
//
//   out[r, i] = bias[i] + Σ_{s<k} values[r, s] · atoms[indices[r, s], i]        atoms [n, d] = W_decᵀ
//
// `densify` scatters the same pairs into a dense z [rows, n] (zeroed by the host) for the dense reference path; with
// DENSE_MODE 1 it writes the ReLU gate (1 where the value is positive) and with 2 the selection (1 per slot) instead.
//
// Version ladder: v1 dense z · W_decᵀ (a matmul over all n latents: the reference path in src/sae/dense.ts).
// v2 (this file; `main4` moves four features per load when d % 4 = 0) a gather of k atoms per row, k·d multiply-adds per row instead of n·d. One invocation per output
// element; the invocations of a workgroup mostly share a row, so the k (value, index) loads are uniform and the
// atom loads contiguous (atoms are rows, which is why the SAE passes W_decᵀ). Zero values are skipped, and with
// SORTED (a ReLU code: descending, non-negative) the walk stops at the first zero: AuxK's 256 slots are mostly zero
// while few latents are dead, and would otherwise cost B·256·d iterations.
//
// Backward (sae_backward.wgsl): dvalues = dout · atoms[idx] (a gather-dot), datoms[idx] += values ⊗ dout (a
// scatter-add, made deterministic by a counting-sort transposition of the index list), dbias = Σ_r dout.

struct Params {
  rows: u32,
  d: u32,
  k: u32,
  n: u32,   // atoms; indices are clamped below it
  row: u32, // workgroups along x of the folded grid
}

override WG: u32 = 64u;
override HAS_BIAS: bool = true;
override SORTED: bool = false; // values are sorted descending and ≥ 0 (ReLU codes): stop at the first zero
override DENSE_MODE: u32 = 0u; // densify: 0 values, 1 value > 0, 2 ones

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read> indices: array<u32>;
@group(0) @binding(2) var<storage, read> atoms: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> dense: array<f32>;
@group(0) @binding(6) var<storage, read> atoms4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(9) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.rows * p.d) { return; }
  let r = g / p.d;
  let i = g % p.d;
  var acc = 0.0;
  if (HAS_BIAS) { acc = bias[i]; }
  for (var s = 0u; s < p.k; s++) {
    let v = values[r * p.k + s];
    if (SORTED && !(v > 0.0)) { break; }
    if (v != 0.0) {
      let j = min(indices[r * p.k + s], p.n - 1u);
      acc += v * atoms[j * p.d + i];
    }
  }
  out[g] = acc;
}

// Four features per invocation (d % 4 = 0; p.d counts vec4s).
@compute @workgroup_size(WG)
fn main4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.rows * p.d) { return; }
  let r = g / p.d;
  let i = g % p.d;
  var acc = vec4<f32>(0.0);
  if (HAS_BIAS) { acc = bias4[i]; }
  for (var s = 0u; s < p.k; s++) {
    let v = values[r * p.k + s];
    if (SORTED && !(v > 0.0)) { break; }
    if (v != 0.0) {
      let j = min(indices[r * p.k + s], p.n - 1u);
      acc += v * atoms4[j * p.d + i];
    }
  }
  out4[g] = acc;
}

// dense[r, indices[r, s]] = values[r, s]; one invocation per (row, slot). Indices within a row are distinct.
@compute @workgroup_size(WG)
fn densify(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.rows * p.k) { return; }
  let r = g / p.k;
  var v = values[g];
  if (DENSE_MODE == 1u) { v = select(0.0, 1.0, v > 0.0); }
  if (DENSE_MODE == 2u) { v = 1.0; }
  dense[r * p.n + min(indices[g], p.n - 1u)] = v;
}
