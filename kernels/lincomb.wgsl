// lincomb.wgsl — linear combination of up to four same-shape tensors with scalar coefficients.
//
//   out[i] = c₀·x₀[i] + c₁·x₁[i] + c₂·x₂[i] + c₃·x₃[i]      (the first TERMS terms; TERMS ∈ 1..4)
//
// Every noise scheduler step (DDIM, PNDM, Euler, DPM-Solver++) and every input scaling is such a combination of the
// sample, the model output and the scheduler's saved tensors, with coefficients computed on the CPU; combinations of
// more terms are chained by the host (src/ops/lincomb.ts). Bindings past TERMS are bound to a placeholder and never
// read: TERMS is an override constant, so each arity is its own pipeline with the dead loads removed.
// v1 (this file): one invocation per element, grid folded over x and y past 65535 workgroups. The op is
// bandwidth-bound and latents are small, so there is no v2. Backward: ∂L/∂xₖ = cₖ·∂L/∂out, this same kernel
// with one term per input.

struct Params {
  n: u32,        // elements
  row: u32,      // workgroups along x (to fold the 2-D grid back to a linear index)
  c: vec4<f32>,  // coefficients c₀..c₃ (unused ones are 0)
}

override TERMS: u32 = 4u;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> x0: array<f32>;
@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(2) var<storage, read> x2: array<f32>;
@group(0) @binding(3) var<storage, read> x3: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * p.row + wid.x) * WG + lid;
  if (i >= p.n) { return; }
  var acc = p.c.x * x0[i];
  if (TERMS > 1u) { acc += p.c.y * x1[i]; }
  if (TERMS > 2u) { acc += p.c.z * x2[i]; }
  if (TERMS > 3u) { acc += p.c.w * x3[i]; }
  out[i] = acc;
}
