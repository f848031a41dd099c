// attention.wgsl — multi-head scaled dot-product attention without the score matrix.
//
//   out[b, i, h·dv + c] = Σ_j softmax_j(scale · q[b, i, h·dh:(h+1)·dh] · k[b, j, h·dh:(h+1)·dh]) · v[b, j, h·dv + c]
//   lse[b, h, i]        = log Σ_j exp(scale · q_i · k_j)                   (natural log; saved for backward)
//
// Tensors keep diffusers' pre-split layout [B, tokens, heads·d]: head h is the column slice h·d … (h+1)·d − 1, so
// no transpose runs before or after. With `causal`, query i sees keys j ≤ i (PyTorch's is_causal: the mask is
// aligned top-left, also when Nq ≠ Nk). The softmax is computed online (docs/attention.md): each row keeps a
// running max m, a running sum l of exp(s − m) and an unnormalised output accumulator, rescaled by exp(m_old −
// m_new) whenever the max grows, so memory stays O(N·d) and the N×N scores are never stored. Scores are carried
// in base 2 (q is pre-scaled by scale·log2 e) so every exponential is one exp2.
//
// One dispatch covers the keys [k_begin, k_end). Long key ranges are split over several dispatches that carry the
// online-softmax state between them: the unnormalised accumulator in `out` itself, (m, l) per row in `state`;
// the last one normalises. This bounds the loop trip count of one invocation, which Mesa's llvmpipe (lavapipe)
// silently caps at 65535 iterations in total (LP_MAX_TGSI_LOOP_ITERATIONS); the host sizes the ranges.
//
// Versions:
//   v1 `naive`: one invocation per query row streams K and V straight from global memory, one key at a time
//      (an online-softmax rescale per key). Kept as the GPU-side oracle and the bench baseline.
//   v2 `main` (this is the fast path): one workgroup per (query tile of BQ rows, head, batch), one invocation per
//      row; K/V tiles of BK keys are staged in workgroup memory as vec4s, shared by the BQ rows; the rescale
//      happens once per tile. Under `causal`, tiles wholly above the diagonal of the query tile are skipped.
//   (v3, not written: split a row over several invocations (subgroups) so that dh = 160 does not spill registers
//      on real GPUs, and f16 tiles.)
//
// Head dims up to 4·MAX_D4 are supported for any value (not only multiples of 4): staged vectors are zero-padded.
// Backward (FlashAttention-2, in attention_bwd.wgsl): recompute P_ij = exp(scale·q_i·k_j − lse_i) tile by
// tile from the saved lse, D_i = Σ_c dout_ic·out_ic, dS = P ∘ (dout·vᵀ − D); dv += Pᵀ·dout, dk += scale·dSᵀ·q,
// dq += scale·dS·k, again without storing an N×N matrix (docs/attention.md).

struct Params {
  nq: u32,          // query tokens
  nk: u32,          // key/value tokens
  heads: u32,
  causal: u32,      // 1: key j is visible to query i only when j ≤ i
  q_row: u32,       // floats per token row of q and k (heads·dh)
  v_row: u32,       // floats per token row of v and out (heads·dv)
  k_begin: u32,     // keys of this dispatch: [k_begin, k_end)
  k_end: u32,
  first: u32,       // 1: start from an empty state; 0: resume the state left in out and `state`
  last: u32,        // 1: normalise and write out; 0: leave the state for the next dispatch
  save_lse: u32,    // 1: the last dispatch also writes lse
  scale_log2: f32,  // scale · log2(e)
}

const MAX_BK: u32 = 64u;
const NEG: f32 = -3.0e38; // stands for −∞ (WGSL constants cannot be infinite)
const LN2: f32 = 0.6931471805599453;

// MAX_D4, the head-dim overrides DH, DV, DH4, DV4 (before their users: naga wants overrides declared before use),
// and load_q4, load_k4, load_v4, hsum
//!include _attention_common.wgsl

override BQ: u32 = 64u;   // query rows per workgroup (= invocations)
override BK: u32 = 32u;   // keys per staged tile (≤ MAX_BK)

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;   // [B, heads, nq]
@group(0) @binding(5) var<storage, read_write> state: array<f32>; // (m, l) per row, [B, heads, nq, 2]
@group(0) @binding(6) var<uniform> p: Params;

var<workgroup> ks: array<vec4<f32>, BK * DH4>;
var<workgroup> vs: array<vec4<f32>, BK * DV4>;

// As load_v4, for the accumulator left in `out` by the previous dispatch.
fn load_out4(at: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && c + e < DV; e++) { r[e] = out[at + c + e]; }
  return r;
}

// End (exclusive) of the keys of this dispatch that row i sees.
fn key_end(i: u32) -> u32 {
  if (p.causal != 0u) { return min(p.k_end, i + 1u); }
  return p.k_end;
}

// The running state of one row between key tiles: max m (base 2), sum l, accumulator acc = Σ_j 2^(s_j − m)·v_j.
struct RowState {
  m: f32,
  l: f32,
}

// Loads q_i (pre-scaled) and the state left by the previous dispatch, or an empty state.
fn start_row(b: u32, h: u32, i: u32, qr: ptr<function, array<vec4<f32>, MAX_D4>>,
             acc: ptr<function, array<vec4<f32>, MAX_D4>>) -> RowState {
  let qat = (b * p.nq + i) * p.q_row + h * DH;
  for (var c4 = 0u; c4 < DH4; c4++) { (*qr)[c4] = load_q4(qat, c4 * 4u) * p.scale_log2; }
  if (p.first != 0u) {
    for (var c4 = 0u; c4 < DV4; c4++) { (*acc)[c4] = vec4<f32>(0.0); }
    return RowState(NEG, 0.0);
  }
  let oat = (b * p.nq + i) * p.v_row + h * DV;
  for (var c4 = 0u; c4 < DV4; c4++) { (*acc)[c4] = load_out4(oat, c4 * 4u); }
  let r = (b * p.heads + h) * p.nq + i;
  return RowState(state[2u * r], state[2u * r + 1u]);
}

// Writes out = acc / l and lse on the last dispatch; otherwise stores acc and (m, l) for the next one.
fn end_row(b: u32, h: u32, i: u32, acc: ptr<function, array<vec4<f32>, MAX_D4>>, st: RowState) {
  let r = (b * p.heads + h) * p.nq + i;
  var scale = 1.0;
  if (p.last != 0u) {
    scale = 1.0 / st.l;
    if (p.save_lse != 0u) { lse[r] = (st.m + log2(st.l)) * LN2; }
  } else {
    state[2u * r] = st.m;
    state[2u * r + 1u] = st.l;
  }
  let at = (b * p.nq + i) * p.v_row + h * DV;
  for (var c4 = 0u; c4 < DV4; c4++) {
    let o = (*acc)[c4] * scale;
    for (var e = 0u; e < 4u && c4 * 4u + e < DV; e++) { out[at + c4 * 4u + e] = o[e]; }
  }
}

@compute @workgroup_size(BQ)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let q0 = wid.x * BQ;
  let i = q0 + lid;
  let row_ok = i < p.nq;

  var qr: array<vec4<f32>, MAX_D4>;
  var acc: array<vec4<f32>, MAX_D4>;
  var s: array<f32, MAX_BK>;
  var st = RowState(NEG, 0.0);
  if (row_ok) { st = start_row(b, h, i, &qr, &acc); } // rows past nq compute on zeros and write nothing
  let seen = key_end(i);

  // Workgroup-uniform bound: the end of the keys any row of this tile sees.
  let tile_end = key_end(min(q0 + BQ, p.nq) - 1u);
  for (var k0 = p.k_begin; k0 < tile_end; k0 += BK) {
    for (var t = lid; t < BK * DH4; t += BQ) {
      let j = k0 + t / DH4;
      if (j < p.nk) { ks[t] = load_k4((b * p.nk + j) * p.q_row + h * DH, (t % DH4) * 4u); }
    }
    for (var t = lid; t < BK * DV4; t += BQ) {
      let j = k0 + t / DV4;
      if (j < p.nk) { vs[t] = load_v4((b * p.nk + j) * p.v_row + h * DV, (t % DV4) * 4u); }
    }
    workgroupBarrier();

    // The key loop is the same for every row (uniform control flow, broadcast reads of the tile); keys a row does
    // not see (causal mask) get probability 0.
    let n = min(BK, tile_end - k0);
    var mt = NEG;
    for (var j = 0u; j < n; j++) {
      var dot4 = vec4<f32>(0.0);
      for (var c4 = 0u; c4 < DH4; c4++) { dot4 += qr[c4] * ks[j * DH4 + c4]; }
      s[j] = select(NEG, hsum(dot4), k0 + j < seen);
      mt = max(mt, s[j]);
    }
    let m_new = max(st.m, mt);
    let alpha = exp2(st.m - m_new);
    st.l *= alpha;
    for (var c4 = 0u; c4 < DV4; c4++) { acc[c4] *= alpha; }
    for (var j = 0u; j < n; j++) {
      let pj = select(0.0, exp2(s[j] - m_new), k0 + j < seen);
      st.l += pj;
      for (var c4 = 0u; c4 < DV4; c4++) { acc[c4] += pj * vs[j * DV4 + c4]; }
    }
    st.m = m_new;
    workgroupBarrier();
  }
  if (row_ok) { end_row(b, h, i, &acc, st); }
}

@compute @workgroup_size(BQ)
fn naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let i = wid.x * BQ + lid;
  if (i >= p.nq) { return; }
  var qr: array<vec4<f32>, MAX_D4>;
  var acc: array<vec4<f32>, MAX_D4>;
  var st = start_row(b, h, i, &qr, &acc);
  for (var j = p.k_begin; j < key_end(i); j++) {
    let kat = (b * p.nk + j) * p.q_row + h * DH;
    var sj = 0.0;
    for (var c4 = 0u; c4 < DH4; c4++) { sj += dot(qr[c4], load_k4(kat, c4 * 4u)); }
    let m_new = max(st.m, sj);
    let alpha = exp2(st.m - m_new);
    let pj = exp2(sj - m_new);
    st.l = st.l * alpha + pj;
    let vat = (b * p.nk + j) * p.v_row + h * DV;
    for (var c4 = 0u; c4 < DV4; c4++) { acc[c4] = acc[c4] * alpha + pj * load_v4(vat, c4 * 4u); }
    st.m = m_new;
  }
  end_row(b, h, i, &acc, st);
}
