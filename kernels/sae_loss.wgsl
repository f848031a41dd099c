// sae_loss.wgsl — reconstruction and AuxK losses of a TopK sparse autoencoder, its metrics, and the loss gradient
// with respect to the reconstructions. With e = x − x̂ (the residual, detached for AuxK) and a the AuxK
// reconstruction Σ_t v_t · W_dec[:, idx_t] (no bias: the b_pre that the normalised form adds to both sides
// cancels), over a batch of B rows and d features (N = B·d):
//
//   rec_mode 0 "sum"        L_rec = Σ e² / B                    (summed over features, averaged over rows)
//   rec_mode 1 "scaled"     L_rec = scale · Σ e² / N            (scale = 1/Var(x), measured once by the trainer)
//   rec_mode 2 "normalized" L_rec = Σ e² / Σ_i Sxx_i            (per-batch variance; = FVU)
//   aux_mode 0 "sum"        L_aux = Σ (a − e)² / B
//   aux_mode 1 "normalized" L_aux = Σ (a − e)² / Σ_i See_i      (normalized_mse(a + b_pre, e + b_pre))
//   aux_mode 2 "none"       L_aux = 0
//   loss = L_rec + alpha · L_aux;  normalised forms whose denominator is 0 give 0 (NaN → 0), as the references do.
//
// Sxx_i = Σ_r (x − mean_r x)² and See_i likewise for e (B·variance of feature i). Metrics: mse (the "sum" form),
// mse per element, FVU = Σ e² / Σ Sxx, explained variance mean_i(1 − See_i / Sxx_i) over features with Sxx_i > 0,
// L0 = nonzero main latents per row.
//
// Entries: `stats` (one invocation per feature and chunk of rows: six column sums, shifted by row 0 so that the
// variances do not cancel catastrophically when the mean is far from 0), `finish` (one workgroup: sums over
// chunks and features in a fixed tree, writes the scalars below and the gradient coefficients), `grad`
// (dx[0] = dL/dx̂ = c_rec · (x̂ − x), dx[1] = dL/da = c_aux · (a − e)). All sums are in a fixed order.
// v1 (this file). Backward: `grad` is it; the gradient of the normalised forms treats the denominators as
// constants, as the references do (e is detached, and Var(x) does not depend on the parameters).

struct Params {
  rows: u32,     // B
  d: u32,
  chunk: u32,    // rows per `stats` chunk
  chunks: u32,
  k: u32,        // main latents per row (L0)
  row: u32,      // workgroups along x of the folded grid
  rec_mode: u32,
  aux_mode: u32,
  alpha: f32,
  scale: f32,
}

override WG: u32 = 64u;
override HAS_AUX: bool = false; // an AuxK reconstruction is bound (else a = 0)

// Layout of `scalars` (f32 [16]); src/sae/loss.ts names them.
const S_LOSS: u32 = 0u;
const S_REC: u32 = 1u;
const S_AUX: u32 = 2u;
const S_MSE: u32 = 3u;
const S_MSE_ELEM: u32 = 4u;
const S_FVU: u32 = 5u;
const S_EV: u32 = 6u;
const S_L0: u32 = 7u;
const S_C_REC: u32 = 8u;
const S_C_AUX: u32 = 9u;
const S_VAR_X: u32 = 10u;
const S_VAR_E: u32 = 11u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> recon: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial_out: array<f32>; // [chunks, 6, d]
@group(0) @binding(4) var<storage, read> partial: array<f32>;
@group(0) @binding(5) var<storage, read> values: array<f32>;             // [B, k]
@group(0) @binding(6) var<storage, read_write> scalars_out: array<f32>;
@group(0) @binding(7) var<storage, read> scalars: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;          // [1 or 2, B, d]
@group(0) @binding(9) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  if (g >= p.chunks * p.d) { return; }
  let c = g / p.d;
  let i = g % p.d;
  let sx = x[i];
  let se = x[i] - recon[i];
  var s1 = 0.0; var s2 = 0.0; var t1 = 0.0; var t2 = 0.0; var q = 0.0; var u = 0.0;
  let hi = min((c + 1u) * p.chunk, p.rows);
  for (var r = c * p.chunk; r < hi; r++) {
    let xv = x[r * p.d + i];
    let e = xv - recon[r * p.d + i];
    var a = 0.0;
    if (HAS_AUX) { a = aux[r * p.d + i]; }
    s1 += xv - sx;
    s2 += (xv - sx) * (xv - sx);
    t1 += e - se;
    t2 += (e - se) * (e - se);
    q += e * e;
    u += (a - e) * (a - e);
  }
  let o = c * 6u * p.d + i;
  partial_out[o] = s1;
  partial_out[o + p.d] = s2;
  partial_out[o + 2u * p.d] = t1;
  partial_out[o + 3u * p.d] = t2;
  partial_out[o + 4u * p.d] = q;
  partial_out[o + 5u * p.d] = u;
}

const FIN_WG: u32 = 256u;
const NSUM: u32 = 7u; // sxx, see, sse, aux, ev sum, ev count, nonzero latents
var<workgroup> red: array<array<f32, FIN_WG>, NSUM>;

// num / den, or 0 where that is not finite (the references' nan_to_num(0) on their normalised MSEs).
fn ratio(num: f32, den: f32) -> f32 {
  let r = num / den;
  return select(0.0, r, den > 0.0 && r == r && abs(r) <= 3.0e38);
}

@compute @workgroup_size(FIN_WG)
fn finish(@builtin(local_invocation_index) lid: u32) {
  var acc: array<f32, NSUM>;
  for (var m = 0u; m < NSUM; m++) { acc[m] = 0.0; }
  let b = f32(p.rows);
  for (var i = lid; i < p.d; i += FIN_WG) {
    var s1 = 0.0; var s2 = 0.0; var t1 = 0.0; var t2 = 0.0; var q = 0.0; var u = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
      let o = c * 6u * p.d + i;
      s1 += partial[o];
      s2 += partial[o + p.d];
      t1 += partial[o + 2u * p.d];
      t2 += partial[o + 3u * p.d];
      q += partial[o + 4u * p.d];
      u += partial[o + 5u * p.d];
    }
    let sxx = max(s2 - s1 * s1 / b, 0.0);
    let see = max(t2 - t1 * t1 / b, 0.0);
    acc[0] += sxx;
    acc[1] += see;
    acc[2] += q;
    acc[3] += u;
    if (sxx > 0.0) {
      acc[4] += 1.0 - see / sxx;
      acc[5] += 1.0;
    }
  }
  let nv = p.rows * p.k;
  for (var t = lid; t < nv; t += FIN_WG) { acc[6] += select(0.0, 1.0, values[t] != 0.0); }
  for (var m = 0u; m < NSUM; m++) { red[m][lid] = acc[m]; }
  workgroupBarrier();
  for (var half = FIN_WG / 2u; half > 0u; half >>= 1u) {
    if (lid < half) {
      for (var m = 0u; m < NSUM; m++) { red[m][lid] += red[m][lid + half]; }
    }
    workgroupBarrier();
  }
  if (lid != 0u) { return; }
  let sxx = red[0][0];
  let see = red[1][0];
  let sse = red[2][0];
  let saux = red[3][0];
  let n = b * f32(p.d);
  var l_rec = sse / b;
  var c_rec = 2.0 / b;
  if (p.rec_mode == 1u) {
    l_rec = p.scale * sse / n;
    c_rec = 2.0 * p.scale / n;
  } else if (p.rec_mode == 2u) {
    l_rec = ratio(sse, sxx);
    c_rec = ratio(2.0, sxx);
  }
  var l_aux = saux / b;
  var c_aux = 2.0 * p.alpha / b;
  if (p.aux_mode == 1u) {
    l_aux = ratio(saux, see);
    c_aux = ratio(2.0 * p.alpha, see);
  } else if (p.aux_mode == 2u) {
    l_aux = 0.0;
    c_aux = 0.0;
  }
  scalars_out[S_LOSS] = l_rec + p.alpha * l_aux;
  scalars_out[S_REC] = l_rec;
  scalars_out[S_AUX] = l_aux;
  scalars_out[S_MSE] = sse / b;
  scalars_out[S_MSE_ELEM] = sse / n;
  scalars_out[S_FVU] = sse / sxx;
  scalars_out[S_EV] = red[4][0] / red[5][0];
  scalars_out[S_L0] = red[6][0] / b;
  scalars_out[S_C_REC] = c_rec;
  scalars_out[S_C_AUX] = c_aux;
  scalars_out[S_VAR_X] = sxx / n;
  scalars_out[S_VAR_E] = see / n;
}

@compute @workgroup_size(WG)
fn grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = (wid.y * p.row + wid.x) * WG + lid;
  let n = p.rows * p.d;
  if (g >= n) { return; }
  let xv = x[g];
  let y = recon[g];
  dx[g] = scalars[S_C_REC] * (y - xv);
  if (HAS_AUX) { dx[n + g] = scalars[S_C_AUX] * (aux[g] - (xv - y)); }
}
