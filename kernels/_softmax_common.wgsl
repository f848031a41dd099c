// _softmax_common.wgsl — what softmax.wgsl and softmax_bwd.wgsl share (spliced in with
// `//!include _softmax_common.wgsl`): the uniform struct, the workgroup shape (TPR invocations per row, WG / TPR
// rows per workgroup) and the row an invocation works on.

struct Params {
  rows: u32,
  len: u32,
  row: u32, // workgroups along x (the grid is folded over x and y)
  scale: f32,
}

override WG: u32 = 256u;  // a power of two
override TPR: u32 = 256u; // invocations per row: a power of two dividing WG

// The row of invocation lid of workgroup wid (≥ p.rows past the end); its lane in the row is lid % TPR.
fn row_of(wid: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * p.row + wid.x) * (WG / TPR) + lid / TPR;
}
