// embedding_bwd.wgsl — gradient of embedding.wgsl's row gather w.r.t. the table (a scatter-add):
//
//   dtable[v, :] (+)= Σ_{t : ids[t] = v} dy[t, :]        ids: [N] i32 (clamped as the forward), dy: [N, D]
//
// Ids repeat (CLIP pads every prompt with ~70 copies of token 49407), WGSL has no float atomics, and the sum
// should not depend on scheduling; so the tokens of each id are chained in ascending order and summed in that
// order by one invocation per column, without sorting:
//   `link`:    one invocation per token t: links[t] = the next token with the same id (N if none), with bit 31 set
//              when t is the id's first occurrence (its head). O(N²) id comparisons, ≤ N per invocation: nothing
//              for 77·B ids.
//   `scatter`: one workgroup per token; only heads whose id falls in this shard's rows [start, start + count) do
//              work: the threads stride over the D columns, each walking the chain. So only rows that occur are
//              touched, each by exactly one workgroup, and sharded tables need one scatter dispatch per shard.
// An invocation of `scatter` runs (occurrences of its id) · ⌈D/WG⌉ loop iterations; the host keeps N·⌈D/WG⌉
// under lavapipe's 65,535. ACCUM adds into dtable; without it the host clears the shards first (rows that do
// not occur get a zero gradient) and `scatter` overwrites the rows that do.
// `links` is read_write because `link` writes it; `scatter` only reads it (both entries share one binding set).
// Version ladder: v1 (this file). A v2 for long id lists (N in the thousands) would sort ids (radix sort) and
// reduce segments, O(N log N + N·D).

override WG: u32 = 256u;
override ACCUM: bool = true;

const HEAD: u32 = 0x80000000u;

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> links: array<u32>;
@group(0) @binding(3) var<storage, read_write> dtable: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// Params, row_of, in_shard
//!include _embedding_common.wgsl

@compute @workgroup_size(WG)
fn link(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * p.row + wid.x) * WG + lid;
  if (t >= p.tokens) { return; }
  let v = row_of(t);
  var head = HEAD;
  for (var u = 0u; u < t; u++) {
    if (row_of(u) == v) { head = 0u; break; }
  }
  var next = p.tokens;
  for (var u = t + 1u; u < p.tokens; u++) {
    if (row_of(u) == v) { next = u; break; }
  }
  links[t] = next | head;
}

@compute @workgroup_size(WG)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.y * p.row + wid.x;
  if (t >= p.tokens || (links[t] & HEAD) == 0u) { return; }
  let v = row_of(t);
  if (!in_shard(v)) { return; }
  let dst = (v - p.start) * p.d;
  for (var c = lid; c < p.d; c += WG) {
    var s = 0.0;
    var u = t;
    loop {
      s += dy[u * p.d + c];
      u = links[u] & ~HEAD;
      if (u >= p.tokens) { break; }
    }
    if (ACCUM) { dtable[dst + c] += s; } else { dtable[dst + c] = s; }
  }
}
