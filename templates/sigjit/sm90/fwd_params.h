// Parameter block of the sm90 forward family (sm90/fwd.cuh), passed by value as one
// __grid_constant__ argument: the TMA tensor maps must live in param/const/global space, and a
// __grid_constant__ parameter lets the kernel take their address without a copy. The maps come
// first (64-byte aligned members); the rest is the sm80 block verbatim, so every pointer,
// stride and length means exactly what it means there.
//
// Tensor maps (built per call by runtime/attention.cpp): 4-D, innermost first {head_dim,
// tokens, heads, batch} with the tensor's own byte strides, box {64, rows, 1, 1}, 128-byte
// swizzle, zero fill out of bounds. Varlen: tokens = total rows, batch = 1.
#pragma once

#include "sigjit/common/params.h"
#include "sigjit/common/tensor_map.h"

struct SigjitFwdSm90Params {
  SigjitTensorMap q_map;  // box {64, BLOCK_M}
  SigjitTensorMap k_map;  // box {64, BLOCK_N}
  SigjitTensorMap v_map;  // box {64, BLOCK_N}
  SigjitFwdParams p;
};

// The FP8 forward (FwdSm90Fp8Config, issue 22): the block above with e4m3 Q and K maps (box
// {head_dim, rows}, 128-byte swizzle at head dim 128, 64-byte at 64) and, as v_map, the map of
// the V^T workspace the prologue writes (sm90/fp8_layout.h: [batch'][heads_kv][head_dim][columns]
// e4m3, box {BLOCK_N, head_dim}); p.v is the caller's e4m3 V, which only the prologue reads; O is
// bf16. Descale factors (FlashAttention-3's convention): S = q_descale k_descale (Q K^T) and
// O = v_descale (P V), read at [b * descale_stride_b + h_kv * descale_stride_h]; strides 0 and 0
// make one factor per tensor; a null pointer means 1.
struct SigjitFwdSm90Fp8Params {
  SigjitFwdSm90Params base;
  unsigned char* vt;          // the V^T workspace
  const float* q_descale;
  const float* k_descale;
  const float* v_descale;
  sigjit_i64 vt_columns;      // columns per [head_dim] row of V^T (fp8_vt_columns)
  sigjit_i64 vt_stride_h;     // bytes between heads of V^T: head_dim * vt_columns
  sigjit_i64 vt_stride_b;     // bytes between batch slabs (dense/padded; 0 for varlen)
  sigjit_i64 descale_stride_b, descale_stride_h;
};
