// Column sums of a TX × TY workgroup (included after the kernel's TX and TY overrides; TY a power of two): each
// invocation brings s, and column lid.x's TY values are summed as a tree, in a fixed order (deterministic). Every
// invocation must call it (it has barriers); the sum is the value returned at lid.y == 0.
var<workgroup> red: array<f32, TX * TY>;

fn column_sum(lid: vec3<u32>, s: f32) -> f32 {
  let at = lid.y * TX + lid.x;
  red[at] = s;
  workgroupBarrier();
  for (var h = TY / 2u; h > 0u; h >>= 1u) {
    if (lid.y < h) { red[at] += red[at + h * TX]; }
    workgroupBarrier();
  }
  return red[lid.x];
}
