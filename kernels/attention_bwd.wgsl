// attention_bwd.wgsl — gradients of multi-head attention (attention.wgsl) without the score matrix, FlashAttention-2
// style. Per batch b and head h, with s_ij = scale · q_i·k_j, P_ij = softmax_j(s_ij) and dO = ∂L/∂out:
//
//   D_i   = dO_i · out_i                               (= Σ_j P_ij dP_ij; kernel `delta_main`)
//   P_ij  = exp(s_ij − lse_i)                          (recomputed from the forward's saved lse, no max, no sum)
//   dP_ij = dO_i · v_j,   dS_ij = P_ij (dP_ij − D_i)
//   dv_j += Σ_i P_ij dO_i,   dk_j += scale · Σ_i dS_ij q_i          (kernel `dkv_main`)
//   dq_i += scale · Σ_j dS_ij k_j                                    (kernel `dq_main`)
//
// Same layout as the forward ([B, tokens, heads·d], head h = columns h·d … (h+1)·d − 1), same top-left causal mask
// (query i sees keys j ≤ i). WebGPU has no float atomics, so instead of FlashAttention-2's atomic dq adds the work is
// split by owner: in `dkv_main` a workgroup owns WG keys (one invocation each, dk_j and dv_j in registers) and streams
// tiles of BT queries; in `dq_main` it owns WG queries and streams tiles of BT keys. Both recompute S and P, and dP (see
// docs/attention.md). Scores are carried in base 2: the owned row is pre-scaled by scale·log₂e and lse by log₂e.
//
// Gradients accumulate (`+=`; the caller zeroes them); ACCUM = false overwrites instead. One dispatch covers
// the streamed rows [s_begin, s_end) (queries in `dkv_*`, keys in `dq_*`); the host splits long ranges over dispatches
// that all add into the outputs (only the first may overwrite), because Mesa's llvmpipe (lavapipe) silently ends an
// invocation after 65535 loop iterations in total. Every dispatch writes every owned row, even one with nothing to
// add, so that an overwriting first dispatch leaves no stale values (keys no query sees under `causal` get 0).
//
// Versions:
//   v1 `dkv_naive`, `dq_naive`: one invocation per owned row streams the other side straight from global memory,
//      one row at a time. Kept as the GPU-side oracle and the bench baseline.
//   v2 `dkv_main`, `dq_main` (this is the fast path): the streamed rows are staged BT at a time in workgroup memory as
//      zero-padded vec4s and shared by the WG owned rows; under `causal`, tiles wholly masked for the workgroup are
//      skipped.
//   (v3, not written: produce dq inside the dkv loop, through float adds emulated by u32 compare-exchange or
//      through per-key-tile partial sums, so that S and dP are computed once; f16 tiles.)
//
// All entry points share one binding layout (the host parses it from this file): bindings an entry does not use are
// still bound. `delta` is written by the pre-pass and only read by the others.

struct Params {
  nq: u32,          // query tokens
  nk: u32,          // key/value tokens
  heads: u32,
  causal: u32,      // 1: key j is visible to query i only when j ≤ i
  q_row: u32,       // floats per token row of q, k, dq, dk (heads·dh)
  v_row: u32,       // floats per token row of v, out, dout, dv (heads·dv)
  s_begin: u32,     // streamed rows of this dispatch: [s_begin, s_end)
  s_end: u32,
  rows: u32,        // `delta_main`: B·heads·nq rows
  row: u32,         // `delta_main`: workgroups along x (the grid is folded over x and y)
  scale: f32,       // the forward's scale
  scale_log2: f32,  // scale · log₂e
}

const LOG2E: f32 = 1.4426950408889634;

// MAX_D4, the head-dim overrides DH, DV, DH4, DV4 (before their users: naga wants overrides declared before use),
// and load_q4, load_k4, load_v4, hsum
//!include _attention_common.wgsl

override WG: u32 = 64u;     // owned rows per workgroup (= invocations)
override BT: u32 = 32u;     // streamed rows per staged tile
override ACCUM: bool = true; // add into the gradients (false: overwrite them)
override WANT_DK: bool = true; // `dkv_*`: write dk (else only dv: dP and dS are skipped)
override WANT_DV: bool = true; // `dkv_*`: write dv

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> o: array<f32>;        // forward output [B, nq, heads·dv]
@group(0) @binding(4) var<storage, read> dout: array<f32>;     // ∂L/∂out [B, nq, heads·dv]
@group(0) @binding(5) var<storage, read> lse: array<f32>;      // forward logsumexp (natural log) [B, heads, nq]
@group(0) @binding(6) var<storage, read_write> delta: array<f32>; // D [B, heads, nq]
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
@group(0) @binding(8) var<storage, read_write> dk: array<f32>;
@group(0) @binding(9) var<storage, read_write> dv: array<f32>;
@group(0) @binding(10) var<uniform> p: Params;

var<workgroup> t_h: array<vec4<f32>, BT * DH4>; // staged dh-wide rows: q (dkv) or k (dq)
var<workgroup> t_v: array<vec4<f32>, BT * DV4>; // staged dv-wide rows: dout (dkv) or v (dq)
var<workgroup> t_row: array<vec2<f32>, BT>;     // dkv: (lse·log₂e, D) of the staged queries

// As load_v4, for dout.
fn load_dout4(at: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u && c + e < DV; e++) { r[e] = dout[at + c + e]; }
  return r;
}

// Writes (or, with ACCUM, adds) g · scale to a gradient row starting at `at`.
fn store_dq(at: u32, g: ptr<function, array<vec4<f32>, MAX_D4>>, scale: f32) {
  for (var c4 = 0u; c4 < DH4; c4++) {
    let x = (*g)[c4] * scale;
    for (var e = 0u; e < 4u && c4 * 4u + e < DH; e++) {
      let at_e = at + c4 * 4u + e;
      if (ACCUM) { dq[at_e] += x[e]; } else { dq[at_e] = x[e]; }
    }
  }
}
fn store_dk(at: u32, g: ptr<function, array<vec4<f32>, MAX_D4>>, scale: f32) {
  for (var c4 = 0u; c4 < DH4; c4++) {
    let x = (*g)[c4] * scale;
    for (var e = 0u; e < 4u && c4 * 4u + e < DH; e++) {
      let at_e = at + c4 * 4u + e;
      if (ACCUM) { dk[at_e] += x[e]; } else { dk[at_e] = x[e]; }
    }
  }
}
fn store_dv(at: u32, g: ptr<function, array<vec4<f32>, MAX_D4>>) {
  for (var c4 = 0u; c4 < DV4; c4++) {
    let x = (*g)[c4];
    for (var e = 0u; e < 4u && c4 * 4u + e < DV; e++) {
      let at_e = at + c4 * 4u + e;
      if (ACCUM) { dv[at_e] += x[e]; } else { dv[at_e] = x[e]; }
    }
  }
}

// Index of row i of (b, h) in lse and delta.
fn stat_at(b: u32, h: u32, i: u32) -> u32 { return (b * p.heads + h) * p.nq + i; }

// First query that key j (or a key tile starting at j) may receive gradient from in this dispatch.
fn query_start(j: u32) -> u32 {
  if (p.causal != 0u) { return max(p.s_begin, j); }
  return p.s_begin;
}

// End (exclusive) of the keys of this dispatch that query i sees.
fn key_end(i: u32) -> u32 {
  if (p.causal != 0u) { return min(p.s_end, i + 1u); }
  return p.s_end;
}

// D_i = dout_i · out_i for every (b, h, i): one invocation per row.
@compute @workgroup_size(WG)
fn delta_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = (wid.y * p.row + wid.x) * WG + lid;
  if (r >= p.rows) { return; }
  let i = r % p.nq;
  let h = (r / p.nq) % p.heads;
  let b = r / (p.nq * p.heads);
  let at = (b * p.nq + i) * p.v_row + h * DV;
  var d = 0.0;
  for (var c = 0u; c < DV; c++) { d += dout[at + c] * o[at + c]; }
  delta[r] = d;
}

// dk, dv for WG keys of one (batch, head), streaming the queries [s_begin, s_end) in staged tiles of BT.
@compute @workgroup_size(WG)
fn dkv_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let j0 = wid.x * WG;
  let j = j0 + lid;
  let key_ok = j < p.nk;
  let kat = (b * p.nk + j) * p.q_row + h * DH;
  let vat = (b * p.nk + j) * p.v_row + h * DV;

  var kr: array<vec4<f32>, MAX_D4>; // k_j · scale·log₂e
  var vr: array<vec4<f32>, MAX_D4>;
  var gk: array<vec4<f32>, MAX_D4>; // Σ dS_ij q_i
  var gv: array<vec4<f32>, MAX_D4>; // Σ P_ij dout_i
  if (key_ok) { // keys past nk compute on zeros (WGSL zero-initialises variables) and write nothing
    for (var c4 = 0u; c4 < DH4; c4++) { kr[c4] = load_k4(kat, c4 * 4u) * p.scale_log2; }
    if (WANT_DK) {
      for (var c4 = 0u; c4 < DV4; c4++) { vr[c4] = load_v4(vat, c4 * 4u); }
    }
  }

  // Workgroup-uniform start: the first query any key of this tile receives gradient from.
  for (var i0 = query_start(j0); i0 < p.s_end; i0 += BT) {
    let n = min(BT, p.s_end - i0);
    for (var t = lid; t < n * DH4; t += WG) {
      t_h[t] = load_q4((b * p.nq + i0 + t / DH4) * p.q_row + h * DH, (t % DH4) * 4u);
    }
    for (var t = lid; t < n * DV4; t += WG) {
      t_v[t] = load_dout4((b * p.nq + i0 + t / DV4) * p.v_row + h * DV, (t % DV4) * 4u);
    }
    for (var t = lid; t < n; t += WG) {
      let r = stat_at(b, h, i0 + t);
      t_row[t] = vec2<f32>(lse[r] * LOG2E, delta[r]);
    }
    workgroupBarrier();

    // Same trip counts for every key (uniform control flow, broadcast reads); masked pairs get P = 0.
    for (var r = 0u; r < n; r++) {
      var sd = vec4<f32>(0.0);
      for (var c4 = 0u; c4 < DH4; c4++) { sd += kr[c4] * t_h[r * DH4 + c4]; }
      let st = t_row[r];
      let pr = select(0.0, exp2(hsum(sd) - st.x), p.causal == 0u || i0 + r >= j);
      var dpd = vec4<f32>(0.0);
      for (var c4 = 0u; c4 < DV4; c4++) {
        let g = t_v[r * DV4 + c4];
        if (WANT_DK) { dpd += vr[c4] * g; }
        if (WANT_DV) { gv[c4] += pr * g; }
      }
      if (WANT_DK) {
        let ds = pr * (hsum(dpd) - st.y);
        for (var c4 = 0u; c4 < DH4; c4++) { gk[c4] += ds * t_h[r * DH4 + c4]; }
      }
    }
    workgroupBarrier();
  }
  if (key_ok) {
    if (WANT_DK) { store_dk(kat, &gk, p.scale); }
    if (WANT_DV) { store_dv(vat, &gv); }
  }
}

// dq for WG queries of one (batch, head), streaming the keys [s_begin, s_end) in staged tiles of BT.
@compute @workgroup_size(WG)
fn dq_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let i0 = wid.x * WG;
  let i = i0 + lid;
  let row_ok = i < p.nq;
  let qat = (b * p.nq + i) * p.q_row + h * DH;

  var qr: array<vec4<f32>, MAX_D4>; // q_i · scale·log₂e
  var dor: array<vec4<f32>, MAX_D4>;
  var gq: array<vec4<f32>, MAX_D4>; // Σ dS_ij k_j
  var lse2 = 0.0;
  var d = 0.0;
  if (row_ok) { // rows past nq compute on zeros (WGSL zero-initialises variables) and write nothing
    for (var c4 = 0u; c4 < DH4; c4++) { qr[c4] = load_q4(qat, c4 * 4u) * p.scale_log2; }
    for (var c4 = 0u; c4 < DV4; c4++) { dor[c4] = load_dout4((b * p.nq + i) * p.v_row + h * DV, c4 * 4u); }
    lse2 = lse[stat_at(b, h, i)] * LOG2E;
    d = delta[stat_at(b, h, i)];
  }
  let seen = key_end(i);

  // Workgroup-uniform bound: the end of the keys any query of this tile sees.
  let tile_end = key_end(min(i0 + WG, p.nq) - 1u);
  for (var j0 = p.s_begin; j0 < tile_end; j0 += BT) {
    let n = min(BT, tile_end - j0);
    for (var t = lid; t < n * DH4; t += WG) {
      t_h[t] = load_k4((b * p.nk + j0 + t / DH4) * p.q_row + h * DH, (t % DH4) * 4u);
    }
    for (var t = lid; t < n * DV4; t += WG) {
      t_v[t] = load_v4((b * p.nk + j0 + t / DV4) * p.v_row + h * DV, (t % DV4) * 4u);
    }
    workgroupBarrier();

    for (var r = 0u; r < n; r++) {
      var sd = vec4<f32>(0.0);
      for (var c4 = 0u; c4 < DH4; c4++) { sd += qr[c4] * t_h[r * DH4 + c4]; }
      let pr = select(0.0, exp2(hsum(sd) - lse2), j0 + r < seen);
      var dpd = vec4<f32>(0.0);
      for (var c4 = 0u; c4 < DV4; c4++) { dpd += dor[c4] * t_v[r * DV4 + c4]; }
      let ds = pr * (hsum(dpd) - d);
      for (var c4 = 0u; c4 < DH4; c4++) { gq[c4] += ds * t_h[r * DH4 + c4]; }
    }
    workgroupBarrier();
  }
  if (row_ok) { store_dq(qat, &gq, p.scale); }
}

// v1 of `dkv_main`: one invocation per key reads every query row from global memory.
@compute @workgroup_size(WG)
fn dkv_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let j = wid.x * WG + lid;
  if (j >= p.nk) { return; }
  let kat = (b * p.nk + j) * p.q_row + h * DH;
  let vat = (b * p.nk + j) * p.v_row + h * DV;
  var kr: array<vec4<f32>, MAX_D4>;
  var vr: array<vec4<f32>, MAX_D4>;
  var gk: array<vec4<f32>, MAX_D4>;
  var gv: array<vec4<f32>, MAX_D4>;
  for (var c4 = 0u; c4 < DH4; c4++) { kr[c4] = load_k4(kat, c4 * 4u) * p.scale_log2; }
  for (var c4 = 0u; c4 < DV4; c4++) { vr[c4] = load_v4(vat, c4 * 4u); }
  for (var i = query_start(j); i < p.s_end; i++) {
    let qat = (b * p.nq + i) * p.q_row + h * DH;
    let oat = (b * p.nq + i) * p.v_row + h * DV;
    var s = 0.0;
    for (var c4 = 0u; c4 < DH4; c4++) { s += dot(kr[c4], load_q4(qat, c4 * 4u)); }
    let pr = exp2(s - lse[stat_at(b, h, i)] * LOG2E);
    var dp = 0.0;
    for (var c4 = 0u; c4 < DV4; c4++) {
      let g = load_dout4(oat, c4 * 4u);
      dp += dot(vr[c4], g);
      gv[c4] += pr * g;
    }
    let ds = pr * (dp - delta[stat_at(b, h, i)]);
    for (var c4 = 0u; c4 < DH4; c4++) { gk[c4] += ds * load_q4(qat, c4 * 4u); }
  }
  if (WANT_DK) { store_dk(kat, &gk, p.scale); }
  if (WANT_DV) { store_dv(vat, &gv); }
}

// v1 of `dq_main`: one invocation per query reads every key row from global memory.
@compute @workgroup_size(WG)
fn dq_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let i = wid.x * WG + lid;
  if (i >= p.nq) { return; }
  let qat = (b * p.nq + i) * p.q_row + h * DH;
  let oat = (b * p.nq + i) * p.v_row + h * DV;
  var qr: array<vec4<f32>, MAX_D4>;
  var dor: array<vec4<f32>, MAX_D4>;
  var gq: array<vec4<f32>, MAX_D4>;
  for (var c4 = 0u; c4 < DH4; c4++) { qr[c4] = load_q4(qat, c4 * 4u) * p.scale_log2; }
  for (var c4 = 0u; c4 < DV4; c4++) { dor[c4] = load_dout4(oat, c4 * 4u); }
  let lse2 = lse[stat_at(b, h, i)] * LOG2E;
  let d = delta[stat_at(b, h, i)];
  for (var j = p.s_begin; j < key_end(i); j++) {
    let kat = (b * p.nk + j) * p.q_row + h * DH;
    let vat = (b * p.nk + j) * p.v_row + h * DV;
    var s = 0.0;
    for (var c4 = 0u; c4 < DH4; c4++) { s += dot(qr[c4], load_k4(kat, c4 * 4u)); }
    let pr = exp2(s - lse2);
    var dp = 0.0;
    for (var c4 = 0u; c4 < DV4; c4++) { dp += dot(dor[c4], load_v4(vat, c4 * 4u)); }
    let ds = pr * (dp - d);
    for (var c4 = 0u; c4 < DH4; c4++) { gq[c4] += ds * load_k4(kat, c4 * 4u); }
  }
  store_dq(qat, &gq, p.scale);
}
