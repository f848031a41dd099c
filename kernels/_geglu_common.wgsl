// _geglu_common.wgsl — what geglu.wgsl and geglu_bwd.wgsl share (spliced in with `//!include _geglu_common.wgsl`):
// the uniform struct, the workgroup overrides, the invocation index over the folded 1-D grid, where the h and g
// halves of an input row lie, and (included from here) _gelu.wgsl.

struct Params {
  n: u32,   // elements of out and dy (rows · F)
  row: u32, // workgroups along x
  f: u32,   // F: features per output row; input rows hold 2F
}

override WG: u32 = 256u;
override ALIGNED: bool = true; // F % 4 == 0: rows are whole vec4s

// The invocation's index over the 1-D grid folded over x and y.
fn flat_id(wid: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * p.row + wid.x) * WG + lid;
}

// Index in x of h for output element e, in rows of f elements (f = F, or F/4 when counting vec4s): row r of x holds
// h in its first f elements and g in the next f, so g of e is at h_index(e, f) + f.
fn h_index(e: u32, f: u32) -> u32 {
  let r = e / f;
  return r * 2u * f + (e - r * f);
}

//!include _gelu.wgsl
