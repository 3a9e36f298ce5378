// What every kernel family shares about the problem, whatever its instructions: where a
// (sequence, head) lives in the buffers for each layout, its valid lengths, the causal diagonal,
// the per-sequence bias, which query tiles are only padding and which key tiles a query tile
// visits, and the fp32 reduction into the dQ workspace. Templated on the family's config C (its
// kLayout, kCausal, kCausalTopLeft, kBiasMode, kScoreBias, kBlockM/N, kThreads, kChunksPerRow),
// so one definition serves sm80 and sm90 alike.
#pragma once

#include "sigjit/common/padded_rows.h"
#include "sigjit/common/params.h"
#include "sigjit/common/tile_primitives.cuh"

namespace sigjit {
namespace kern {

enum Layout { kDense = 0, kPadded = 1, kVarlen = 2 };
enum BiasMode { kBiasLogN = 0, kBiasScalar = 1 };

// Where one (sequence, head) lives in the buffers and how many rows/keys are valid.
struct SeqSlice {
  const u16* q;
  const u16* k;
  const u16* v;
  u16* o;
  const float* score_bias;
  int len_q;
  int len_k;
  int rows_to_clear;  // padded layout: buffer rows of this sequence that must be written
};

// The causal diagonal of a sequence: query row i sees keys j <= i + causal_diagonal_offset<C>(seq)
// (and j < len_k). Bottom-right alignment (FlashAttention's rule, the default) puts the last query
// row on the last key: len_k - len_q; top-left (C::kCausalTopLeft, TritonSigmoid's rule) the
// first on the first: 0. Every causal mask, tile skip and work range of every kernel family
// derives from this one value.
template <class C>
__device__ __forceinline__ int causal_diagonal_offset(const SeqSlice& seq) {
  return C::kCausalTopLeft ? 0 : seq.len_k - seq.len_q;
}

__device__ __forceinline__ int clamp_len(int len, int limit) { return len < 0 ? 0 : (len > limit ? limit : len); }

template <class C>
__device__ __forceinline__ SeqSlice locate_sequence(const SigjitFwdParams& p, int b, int h) {
  const int h_kv = h / p.kv_group;
  i64 q_row0 = 0, k_row0 = 0;
  SeqSlice s;
  if (C::kLayout == kVarlen) {
    // Lengths are clamped so that a bad cu_seqlens can never address outside the buffers.
    const int q_begin = clamp_len(p.cu_seqlens_q[b], p.total_q);
    const int k_begin = clamp_len(p.cu_seqlens_k[b], p.total_k);
    s.len_q = clamp_len(p.cu_seqlens_q[b + 1] - q_begin, p.total_q - q_begin);
    s.len_k = clamp_len(p.cu_seqlens_k[b + 1] - k_begin, p.total_k - k_begin);
    s.len_q = s.len_q > p.seqlen_q ? p.seqlen_q : s.len_q;
    s.rows_to_clear = 0;
    q_row0 = q_begin;
    k_row0 = k_begin;
  } else if (C::kLayout == kPadded) {
    s.len_q = clamp_len(p.seq_lens_q[b], p.seqlen_q);
    s.len_k = clamp_len(p.seq_lens_k[b], p.seqlen_k);
    s.rows_to_clear = p.seqlen_q;
  } else {
    s.len_q = p.seqlen_q;
    s.len_k = p.seqlen_k;
    s.rows_to_clear = 0;
  }
  const i64 batch_q = C::kLayout == kVarlen ? 0 : (i64)b;
  s.q = (const u16*)p.q + batch_q * p.q_stride_b + q_row0 * p.q_stride_l + (i64)h * p.q_stride_h;
  s.o = (u16*)p.o + batch_q * p.o_stride_b + q_row0 * p.o_stride_l + (i64)h * p.o_stride_h;
  s.k = (const u16*)p.k + batch_q * p.k_stride_b + k_row0 * p.k_stride_l + (i64)h_kv * p.k_stride_h;
  s.v = (const u16*)p.v + batch_q * p.v_stride_b + k_row0 * p.v_stride_l + (i64)h_kv * p.v_stride_h;
  s.score_bias = C::kScoreBias ? p.score_bias + (C::kLayout == kVarlen ? k_row0 : (i64)b * p.score_bias_stride_b) : nullptr;
  return s;
}

// Zeros in rows [row_begin, row_end), 16 bytes a store, by `threads` threads from `thread` (by
// default, thread < 0, the whole CTA; threadIdx.x is then read where the loop starts, as before
// the parameters existed, which keeps the kernels that pass none unchanged).
template <class C>
__device__ __forceinline__ void store_zero_rows(u16* o, i64 row_stride, int row_begin, int row_end, int thread = -1,
                                                int threads = C::kThreads) {
  const int chunks = (row_end - row_begin) * C::kChunksPerRow;
  for (int c = thread < 0 ? (int)threadIdx.x : thread; c < chunks; c += threads) {
    const int row = row_begin + c / C::kChunksPerRow;
    const int col = (c % C::kChunksPerRow) * 8;
    *(uint4*)(o + (i64)row * row_stride + col) = make_uint4(0, 0, 0, 0);
  }
}

// The per-sequence bias b: -log(number of valid keys) by default, else the caller's scalar.
template <class C>
__device__ __forceinline__ float sequence_bias(const SigjitFwdParams& p, const SeqSlice& seq) {
  return C::kBiasMode == kBiasLogN ? -logf((float)(seq.len_k > 1 ? seq.len_k : 1)) : p.bias;
}

// The first query row of this CTA's tile. Causal grids run the longest rows first, so the tail
// of the grid is short tiles.
template <class C>
__device__ __forceinline__ int query_tile_start() {
  const int m_block = C::kCausal ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
  return m_block * C::kBlockM;
}

// A query tile wholly past its sequence does no work: it only writes the zeros the layout
// promises for padded rows. Returns true for such a tile (the caller returns).
template <class C>
__device__ __forceinline__ bool zero_padding_tile(const SigjitFwdParams& p, const SeqSlice& seq, int m_start) {
  if (m_start < seq.len_q) return false;
  if (m_start < seq.rows_to_clear) {
    const int end = m_start + C::kBlockM < seq.rows_to_clear ? m_start + C::kBlockM : seq.rows_to_clear;
    store_zero_rows<C>(seq.o, p.o_stride_l, m_start, end);
  }
  return true;
}

// Key tiles the query tile at m_start must visit: all of the sequence's keys, or when causal
// (row i sees keys j <= i + causal_diagonal_offset) those its last row sees.
template <class C>
__device__ __forceinline__ int key_tile_count(const SeqSlice& seq, int m_start) {
  int key_end = seq.len_k;
  if (C::kCausal) {
    const int last = m_start + C::kBlockM + causal_diagonal_offset<C>(seq);
    key_end = last < key_end ? last : key_end;
  }
  return key_end > 0 ? (key_end + C::kBlockN - 1) / C::kBlockN : 0;
}

__device__ __forceinline__ const u16* tensor_row(const void* base, i64 sb, i64 sl, i64 sh, i64 batch, i64 row, int head) {
  return (const u16*)base + batch * sb + row * sl + (i64)head * sh;
}

// Where one sequence's rows start (the varlen row offset, or the batch index for the others).
struct SeqRows {
  i64 batch;  // 0 for varlen
  i64 q_row0, k_row0;
};

template <class C>
__device__ __forceinline__ SeqRows seq_rows(const SigjitFwdParams& p, int b) {
  SeqRows r{(i64)b, 0, 0};
  if (C::kLayout == kVarlen) {
    r.batch = 0;
    r.q_row0 = clamp_len(p.cu_seqlens_q[b], p.total_q);
    r.k_row0 = clamp_len(p.cu_seqlens_k[b], p.total_k);
  }
  return r;
}

// Adds two consecutive fp32 values to global memory without reading them back (a reduction:
// fire and forget). sm_90 has a vector form, one instruction for both (PTX ISA 8.1: CUDA 12.1+).
__device__ __forceinline__ void red_add_f32x2(float* addr, float a, float b) {
#if __CUDA_ARCH__ >= 900 && (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 1))
  asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(addr), "f"(a), "f"(b) : "memory");
#else
  asm volatile("red.global.add.f32 [%0], %1;\n" ::"l"(addr), "f"(a) : "memory");
  asm volatile("red.global.add.f32 [%0], %1;\n" ::"l"(addr + 1), "f"(b) : "memory");
#endif
}

// Stages this warp's dS^T fragments (keys as rows) in shared memory for the dQ product.
}  // namespace kern
}  // namespace sigjit
