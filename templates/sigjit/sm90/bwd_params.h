// Parameter block of the sm90 backward family (sm90/bwd.cuh), passed by value as one
// __grid_constant__ argument like SigjitFwdSm90Params: the four TMA tensor maps first
// (64-byte aligned), then the sm80 backward block verbatim, so pointers, strides, lengths and
// the fp32 dQ workspace mean exactly what they mean for the sm80 fused kernel (and its
// dq_convert kernel finishes dQ unchanged).
//
// Tensor maps (built per call by runtime/attention.cpp, same encoding as the forward's): 4-D,
// innermost first {head_dim, tokens, heads, batch} with the tensor's byte strides, box {64,
// rows, 1, 1}, 128-byte swizzle, zero fill out of bounds. Varlen: tokens = total rows, batch = 1.
#pragma once

#include "sigjit/common/params.h"
#include "sigjit/common/tensor_map.h"

struct SigjitBwdSm90Params {
  SigjitTensorMap q_map;   // box {64, BLOCK_M} (query rows of one step)
  SigjitTensorMap k_map;   // box {64, BLOCK_N} (this CTA's key rows)
  SigjitTensorMap v_map;   // box {64, BLOCK_N}
  SigjitTensorMap do_map;  // box {64, BLOCK_M}
  SigjitBwdParams p;
  // The fp32 dQ workspace (p.dq_accum) for the dQ writer's tensor reductions (_w only): box {32,
  // BLOCK_M}, 128-byte swizzle. Last, so that the other members keep their offsets.
  SigjitTensorMap dqa_map;
  // The ordered dQ reduction (_wd, the deterministic mode): one counter per (sequence, query head,
  // 64 query rows), zeroed with the workspace; the key blocks add into a query block in order.
  int* dq_counters;
  int dq_counters_per_head;  // ceil(seqlen_q / 64): seqlen_q the buffer length (varlen: the longest)
  int dq_counters_per_seq;   // heads_q * dq_counters_per_head
  // The persistent schedule (_wp): key tiles handed out past the grid's first ones, zeroed with
  // the workspace (its last 16 bytes).
  int* tile_counter;
  // _wp's dQ workspace zeroing (sm90/bwd_schedule.h's jobs), when the launch leaves it to the
  // kernel (dq_zero_done non-null; else the workspace was zeroed before it): the job counter (in
  // the tile counter's 16 bytes) and one done counter per sequence after them, zeroed by the host.
  int* dq_zero_next;
  int* dq_zero_done;
  int dq_zero_rows_per_job;
  int dq_zero_jobs_per_seq;
  // 1: paced (SIGJIT_BWD_DQ_ZERO=paced): sequence b's jobs wait until its first key tile is
  // claimed (sm90/bwd_schedule.h's dq_zero_sequence_due); 0: every job stores at once.
  int dq_zero_paced;
  int pad_;
};
