// embedding.wgsl — row gather from an embedding table that may be split into row shards:
//
//   out[t, :] = table[clamp(ids[t], 0, V − 1), :]        ids: [N] i32, table: [V, D], out: [N, D]
//
// A table larger than one storage binding (SD's CLIP token embedding, 49408×768 f32 = 152 MB, over lavapipe's
// 128 MiB) is given as row shards [V_k, D]; one dispatch per shard writes exactly the rows whose id falls in
// [start, start + count) and leaves the others alone, so after all shards every row is written once. Ids are
// clamped into the table, so a bad id on the GPU reads a real row instead of out of bounds (the host validates
// ids it uploads itself). A pure copy of 32-bit words.
// v1 (this file): one workgroup per token, its threads striding over the D columns; a workgroup whose id lies in
// another shard returns at once.
//
// Backward (embedding_bwd.wgsl): d table[ids[t], :] += dy[t, :], a scatter-add over repeating ids, made
// deterministic without atomics by chaining each id's tokens. No gradient flows to the ids.

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

// Params, row_of, in_shard
//!include _embedding_common.wgsl

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.y * p.row + wid.x;
  if (t >= p.tokens) { return; }
  let id = row_of(t);
  if (!in_shard(id)) { return; }
  let src = (id - p.start) * p.d;
  let dst = t * p.d;
  for (var c = lid; c < p.d; c += WG) {
    out[dst + c] = table[src + c];
  }
}
