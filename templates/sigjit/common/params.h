// Kernel parameter block shared verbatim by the host runtime and the NVRTC-compiled kernels.
// It is passed by value as the single kernel argument, so its layout must not depend on the
// compiler: only fixed-size scalar members, 8-byte members first. Strides count elements.
#pragma once

#ifdef __CUDACC_RTC__
typedef long long sigjit_i64;
#else
#include <cstdint>
typedef std::int64_t sigjit_i64;
#endif

struct SigjitFwdParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  const int* seq_lens_q;   // padded layout: [batch]
  const int* seq_lens_k;   // padded layout: [batch]
  const int* cu_seqlens_q; // varlen layout: [batch + 1]
  const int* cu_seqlens_k; // varlen layout: [batch + 1]
  const float* score_bias; // optional [batch, seqlen_k] (varlen: [total_k])
  sigjit_i64 q_stride_b, q_stride_l, q_stride_h;
  sigjit_i64 k_stride_b, k_stride_l, k_stride_h;
  sigjit_i64 v_stride_b, v_stride_l, v_stride_h;
  sigjit_i64 o_stride_b, o_stride_l, o_stride_h;
  sigjit_i64 score_bias_stride_b;
  int batch;
  int heads_q;
  int kv_group; // heads_q / heads_kv
  int seqlen_q; // buffer length (dense/padded) or max_seqlen_q (varlen)
  int seqlen_k; // buffer length (dense/padded) or max_seqlen_k (varlen)
  int total_q;  // varlen: rows in the packed Q/O buffers
  int total_k;  // varlen: rows in the packed K/V buffers
  float scale;
  float bias; // used when the bias mode is scalar
  int pad_;
};

// SIGJIT_TRACE_TILES (base/env.cpp), a debug build of the kernels: one record per work tile,
// indexed by the tile's place in launch order (key block fastest, as the one-CTA-per-tile grid),
// in the module's global sigjit_tile_trace; the host copies it out after the launch. Why: a
// persistent schedule's loss is in where its tiles ran and waited, which no total time shows.
// Times are %globaltimer nanoseconds, comparable across SMs.
#define SIGJIT_TILE_TRACE_CAP 65536
// The consumers' two marks inside a tile split its fixed cost: begin to kv_ready is the wait for
// K and V no earlier work hid, kv_ready to steps_done the steps, steps_done to end the dK/dV
// epilogue.
struct SigjitTileTrace {
  unsigned long long begin_ns;       // the consumers took the tile
  unsigned long long end_ns;         // the consumers finished it (dK/dV stores issued)
  unsigned long long reduced_ns;     // the dQ writer finished it (0 where dQ is not written by a writer warp)
  unsigned int sm;                   // %smid
  unsigned int cta;                  // linear CTA index (blockIdx.x for persistent grids)
  unsigned long long kv_ready_ns;    // the consumers' wait for the tile's K and V ended
  unsigned long long steps_done_ns;  // the last step's GEMMs were done and its dQ handed on
};

// Backward: the forward's parameters plus the gradients. dO and dQ share Q's layout
// rules (their own strides); dK and dV share K's. dq_accum is the fused kernel's fp32 dQ
// workspace, contiguous [batch, seqlen_q, heads_q, head_dim] (varlen: [total_q, heads_q,
// head_dim]), zeroed for every call (before it, or by the persistent kernel: dq_zeroed_in_kernel);
// null for the deterministic kernels.
// Who zeroes the fused backward's fp32 dQ workspace (SIGJIT_BWD_DQ_ZERO).
enum SigjitDqZeroing {
  SIGJIT_DQ_ZEROED_BEFORE = 0,  // a memset or zero kernel before the launch
  SIGJIT_DQ_ZERO_EAGER = 1,     // the persistent kernel's idle warps, every sequence at once
  SIGJIT_DQ_ZERO_PACED = 2      // the same, each sequence once its first key tile is claimed
};

struct SigjitBwdParams {
  SigjitFwdParams fwd;
  const void* dout;
  void* dq;
  void* dk;
  void* dv;
  float* dq_accum;
  sigjit_i64 do_stride_b, do_stride_l, do_stride_h;
  sigjit_i64 dq_stride_b, dq_stride_l, dq_stride_h;
  sigjit_i64 dk_stride_b, dk_stride_l, dk_stride_h;
  sigjit_i64 dv_stride_b, dv_stride_l, dv_stride_h;
  sigjit_i64 dqa_stride_b, dqa_stride_l, dqa_stride_h;
  // Padded layout: the Hopper fused kernel's key block when its wholly padded key blocks zero
  // the padded dQ rows (common/padded_rows.h), which the convert kernel then skips; 0 = the
  // convert kernel writes them.
  int dq_pad_zero_key_block;
  // A SigjitDqZeroing: whether the Hopper persistent fused kernel (_wp) zeroes dq_accum itself,
  // while it computes, with the counters the launch passes it (sm90/bwd_params.h).
  int dq_zeroed_in_kernel;
  // The Hopper fused kernel's dQ handoff (its dQ writer tiles), when dq_reduced is non-null: the
  // convert kernel is launched while the fused kernel runs (programmatic dependent launch), and
  // each of its CTAs waits until its sequence's key tiles are all counted (dq_reduced[b] ==
  // dq_reduced_target) before it reads dq_accum. The dQ writer counts a tile once its reductions
  // are written and its sequence's zeroing (dq_zeroed_in_kernel) is done; a wholly padded key
  // block counts at once. Null: the convert runs after the kernel.
  int* dq_reduced;
  int dq_reduced_target;
  int pad_;
};

// The FP8 forward's on-the-fly quantization (common/quantize_fp8.cuh): src holds the call's bf16
// Q, K, V and lengths; q8/k8/v8 are the dense e4m3 copies ([batch, seqlen, heads, head_dim], varlen
// [total, heads, head_dim]); amax and descale are [3 (Q, K, V)][batch][heads_kv] floats, amax
// zeroed before the first pass.
struct SigjitQuantizeParams {
  SigjitFwdParams src;
  void* q8;
  void* k8;
  void* v8;
  float* amax;
  float* descale;
  int heads_kv;
  int pad_;
};
