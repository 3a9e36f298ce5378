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
