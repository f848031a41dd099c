// cast.wgsl — converts between float storage formats, two elements per invocation (one 32-bit word of f16):
//
//   f32_to_f16:  dst[i] = f16(src[i])          (weights narrowed for f16 storage)
//   bf16_to_f16: dst[i] = f16(bf16 src[i])     (bf16 is the upper half of an f32: widening is a shift)
//   f16_to_f32:  dst[i] = f32(src[i])          (a weight widened for an op that reads f32 only)
//
// Both buffers are bound as u32 words and converted with pack2x16float / unpack2x16float, so the kernel needs no
// `enable f16`. Values outside f16's range (|x| > 65504) have no defined result; model weights are far inside it.
// An odd element count leaves the last word half used: its upper half is written as 0 (f16 buffers are padded).
// v1 (this one): one word per invocation, grid folded over x and y. No backward: casts serve weight loading.

struct Params {
  n: u32,   // elements
  row: u32, // workgroups along x
}
const WG = 256u;

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

fn word(wid: vec3<u32>, lid: u32) -> u32 { return (wid.y * p.row + wid.x) * WG + lid; }

@compute @workgroup_size(WG)
fn f32_to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = word(wid, lid);
  if (2u * i >= p.n) { return; }
  let hi = select(0.0, bitcast<f32>(src[2u * i + 1u]), 2u * i + 1u < p.n);
  dst[i] = pack2x16float(vec2<f32>(bitcast<f32>(src[2u * i]), hi));
}

@compute @workgroup_size(WG)
fn bf16_to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = word(wid, lid);
  if (2u * i >= p.n) { return; }
  let w = src[i];
  let hi = select(0.0, bitcast<f32>(w & 0xffff0000u), 2u * i + 1u < p.n);
  dst[i] = pack2x16float(vec2<f32>(bitcast<f32>(w << 16u), hi));
}

@compute @workgroup_size(WG)
fn f16_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = word(wid, lid);
  if (2u * i >= p.n) { return; }
  let v = unpack2x16float(src[i]);
  dst[2u * i] = bitcast<u32>(v.x);
  if (2u * i + 1u < p.n) { dst[2u * i + 1u] = bitcast<u32>(v.y); }
}
