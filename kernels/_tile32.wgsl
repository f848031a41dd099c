// The 32×32 register tile shared by the tiled matmul and conv2d kernels (included at module level): eight 4×4
// blocks per accumulator row group, and the staging of one group's 4 output rows × 32 columns in workgroup memory
// so that each kernel's guarded copy to its output is one small loop. Indexing the accumulators dynamically
// instead makes NIR lower the access to if-ladders (minutes of LLVM compile); unrolling guarded stores does the same.
alias Blocks = array<mat4x4<f32>, 8>;

var<workgroup> stage: array<vec4<f32>, 256>; // 8 invocations × 4 rows × 8 vec4

// Writes c (rows i = 0…3 of the group, 8 vec4 of columns each) to invocation lid's stage; returns where row i
// starts minus 8·i (row i, vec4 q is stage[s + 8i + q]).
fn stage_rows(c: Blocks, lid: u32) -> u32 {
  let s = lid * 32u;
  stage[s] = c[0][0]; stage[s + 1u] = c[1][0]; stage[s + 2u] = c[2][0]; stage[s + 3u] = c[3][0];
  stage[s + 4u] = c[4][0]; stage[s + 5u] = c[5][0]; stage[s + 6u] = c[6][0]; stage[s + 7u] = c[7][0];
  stage[s + 8u] = c[0][1]; stage[s + 9u] = c[1][1]; stage[s + 10u] = c[2][1]; stage[s + 11u] = c[3][1];
  stage[s + 12u] = c[4][1]; stage[s + 13u] = c[5][1]; stage[s + 14u] = c[6][1]; stage[s + 15u] = c[7][1];
  stage[s + 16u] = c[0][2]; stage[s + 17u] = c[1][2]; stage[s + 18u] = c[2][2]; stage[s + 19u] = c[3][2];
  stage[s + 20u] = c[4][2]; stage[s + 21u] = c[5][2]; stage[s + 22u] = c[6][2]; stage[s + 23u] = c[7][2];
  stage[s + 24u] = c[0][3]; stage[s + 25u] = c[1][3]; stage[s + 26u] = c[2][3]; stage[s + 27u] = c[3][3];
  stage[s + 28u] = c[4][3]; stage[s + 29u] = c[5][3]; stage[s + 30u] = c[6][3]; stage[s + 31u] = c[7][3];
  return s;
}
