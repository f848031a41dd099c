// _embedding_common.wgsl — what embedding.wgsl and embedding_bwd.wgsl share (spliced in with
// `//!include _embedding_common.wgsl`): the uniform struct, the clamped table row of a token and the shard test.
// The including file declares `ids` and `p`.

struct Params {
  tokens: u32, // N
  row: u32,    // workgroups along x
  d: u32,      // D: columns
  vocab: u32,  // V: rows of the whole table (ids are clamped into [0, V))
  start: u32,  // first row of this shard
  count: u32,  // rows in this shard
}

// The table row of token t: its id clamped into [0, V).
fn row_of(t: u32) -> u32 {
  return u32(clamp(ids[t], 0, i32(p.vocab) - 1));
}

// Whether table row v lies in this dispatch's shard [start, start + count).
fn in_shard(v: u32) -> bool {
  return v >= p.start && v - p.start < p.count;
}
