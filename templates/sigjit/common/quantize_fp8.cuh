// The FP8 forward's on-the-fly quantization (ForwardOptions::fp8): bf16 Q, K and V to e4m3 copies
// with one descale factor per (sequence, key/value head), FlashAttention-3's q/k/v_descale
// [batch, heads_kv] convention, so that a C/C++ caller holding bf16 activations gets the FP8
// forward without writing CUDA. Two passes over the inputs, one launch each, over the grid the
// attention kernels use (row block, head of Q then K then V, sequence), so every CTA's rows belong
// to one sequence:
//  - quantize_amax_kernel: the largest magnitude of the valid rows, one atomicMax per CTA into
//    amax[tensor][sequence][kv head] (zeroed before; a query head shares its GQA group's factor);
//  - quantize_fp8_kernel: x / descale rounded to e4m3 (round to nearest, saturating at +-448),
//    descale = amax / 448, floored at the smallest normal float so that an all-zero head stays 0.
//    Rows outside the sequences (the padded layout's padding, a varlen buffer's tail past
//    cu_seqlens[batch]) become zeros: the forward's tile loads read them (masked), and stale
//    e4m3 NaN there would reach O as 0 * NaN.
// Cost: the inputs are read twice (2 bytes an element) and written once (1 byte): at H200
// bandwidth about a tenth of the FP8 forward's time at L 16384.
#pragma once

#include "sigjit/common/sequence.cuh"

namespace sigjit {
namespace kern {

// The tensor of a CTA's blockIdx.y: Q heads first, then K's and V's key/value heads.
struct QuantizeTarget {
  int tensor;   // 0 Q, 1 K, 2 V
  int head;     // that tensor's head
  int head_kv;  // the factor's head
};

__device__ __forceinline__ QuantizeTarget quantize_target(const SigjitQuantizeParams& qp) {
  const int y = blockIdx.y, heads_q = qp.src.heads_q, heads_kv = qp.heads_kv;
  if (y < heads_q) return QuantizeTarget{0, y, y / qp.src.kv_group};
  const int t = (y - heads_q) / heads_kv;
  const int h = (y - heads_q) % heads_kv;
  return QuantizeTarget{1 + t, h, h};
}

// Where a tensor's rows of one (sequence, head) live, source and copy, and how many there are.
struct QuantizeRows {
  const u16* src;
  unsigned char* dst;
  i64 src_stride;  // elements between rows
  i64 dst_stride;  // bytes between rows
  int valid;       // the sequence's rows
  int buffer;      // rows this sequence owns in the buffer (padded: seqlen; varlen: valid)
  int tail_begin;  // varlen, last sequence: the buffer rows past cu_seqlens[batch] it also zeroes
  int tail_end;
};

template <class C>
__device__ __forceinline__ QuantizeRows quantize_rows(const SigjitQuantizeParams& qp, const QuantizeTarget& t, int b) {
  const SigjitFwdParams& p = qp.src;
  const SeqSlice seq = locate_sequence<C>(p, b, t.tensor == 0 ? t.head : t.head * p.kv_group);
  const SeqRows rows = seq_rows<C>(p, b);
  const bool is_q = t.tensor == 0;
  const int heads = is_q ? p.heads_q : qp.heads_kv;
  QuantizeRows r;
  r.src = is_q ? seq.q : (t.tensor == 1 ? seq.k : seq.v);
  r.src_stride = is_q ? p.q_stride_l : (t.tensor == 1 ? p.k_stride_l : p.v_stride_l);
  r.dst_stride = (i64)heads * C::kHeadDim;
  const i64 buffer_rows = C::kLayout == kVarlen ? 0 : (is_q ? p.seqlen_q : p.seqlen_k);
  const i64 row0 = rows.batch * buffer_rows + (is_q ? rows.q_row0 : rows.k_row0);
  unsigned char* base = (unsigned char*)(is_q ? qp.q8 : (t.tensor == 1 ? qp.k8 : qp.v8));
  r.dst = base + row0 * r.dst_stride + (i64)t.head * C::kHeadDim;
  r.valid = is_q ? seq.len_q : seq.len_k;
  r.buffer = C::kLayout == kPadded ? (int)buffer_rows : r.valid;
  r.tail_begin = r.tail_end = 0;
  if (C::kLayout == kVarlen && b == p.batch - 1) {
    const int total = is_q ? p.total_q : p.total_k;
    const int* cu = is_q ? p.cu_seqlens_q : p.cu_seqlens_k;
    r.tail_begin = clamp_len(cu[p.batch], total) - (int)(is_q ? rows.q_row0 : rows.k_row0);
    r.tail_end = total - (int)(is_q ? rows.q_row0 : rows.k_row0);
  }
  return r;
}

// amax[tensor][sequence][kv head], and descale likewise.
__device__ __forceinline__ int quantize_factor_index(const SigjitQuantizeParams& qp, int tensor, int b, int head_kv) {
  return (tensor * qp.src.batch + b) * qp.heads_kv + head_kv;
}

// Element i (0-7) of a 16-byte chunk of bf16 or fp16 values, as float.
__device__ __forceinline__ float chunk_element(uint4 raw, int i, bool bf16) {
  const u32 w = i < 2 ? raw.x : i < 4 ? raw.y : i < 6 ? raw.z : raw.w;
  const unsigned short bits = (unsigned short)(i % 2 ? w >> 16 : w & 0xffffu);
  if (bf16) return __uint_as_float((u32)bits << 16);
  float f;
  asm("cvt.f32.f16 %0, %1;\n" : "=f"(f) : "h"(bits));
  return f;
}

__device__ __forceinline__ float chunk_absmax(uint4 raw, bool bf16) {
  float m = 0.f;
#pragma unroll
  for (int i = 0; i < 8; ++i) m = fmaxf(m, fabsf(chunk_element(raw, i, bf16)));  // fmaxf drops NaN
  return m;
}

template <class C>
__device__ __forceinline__ void quantize_amax_kernel(const SigjitQuantizeParams& qp) {
  const QuantizeTarget t = quantize_target(qp);
  const int b = blockIdx.z, m_start = blockIdx.x * C::kBlockM;
  const QuantizeRows r = quantize_rows<C>(qp, t, b);
  float m = 0.f;
  const int rows = r.valid - m_start < C::kBlockM ? r.valid - m_start : C::kBlockM;
  for (int c = threadIdx.x; c < rows * C::kChunksPerRow; c += C::kThreads) {
    const u16* src = r.src + (i64)(m_start + c / C::kChunksPerRow) * r.src_stride + (c % C::kChunksPerRow) * 8;
    m = fmaxf(m, chunk_absmax(*(const uint4*)src, C::kBf16));
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
  __shared__ float warp_max[C::kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < C::kThreads / 32; ++w) m = fmaxf(m, warp_max[w]);
    // Non-negative floats order as their bit patterns: an integer max is a float max.
    if (m > 0.f) atomicMax((unsigned*)qp.amax + quantize_factor_index(qp, t.tensor, b, t.head_kv), __float_as_uint(m));
  }
}

// Eight 16-bit values as eight e4m3 bytes, times inv.
__device__ __forceinline__ uint2 chunk_to_e4m3(uint4 raw, float inv, bool bf16) {
  u32 out[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float f[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) f[j] = chunk_element(raw, 4 * i + j, bf16) * inv;
    unsigned short lo, hi;  // cvt puts its first operand in the upper byte
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(lo) : "f"(f[1]), "f"(f[0]));
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(hi) : "f"(f[3]), "f"(f[2]));
    out[i] = (u32)lo | ((u32)hi << 16);
  }
  return make_uint2(out[0], out[1]);
}

__device__ __forceinline__ float descale_of(float amax) {
  const float d = amax / 448.f;
  return d > 1.17549435e-38f ? d : 1.17549435e-38f;
}

template <class C>
__device__ __forceinline__ void quantize_fp8_kernel(const SigjitQuantizeParams& qp) {
  const QuantizeTarget t = quantize_target(qp);
  const int b = blockIdx.z, m_start = blockIdx.x * C::kBlockM;
  const QuantizeRows r = quantize_rows<C>(qp, t, b);
  const int index = quantize_factor_index(qp, t.tensor, b, t.head_kv);
  const float descale = descale_of(__uint_as_float(((const unsigned*)qp.amax)[index]));
  const float inv = 1.f / descale;
  if (blockIdx.x == 0 && threadIdx.x == 0 && t.head == (t.tensor == 0 ? t.head_kv * qp.src.kv_group : t.head_kv))
    qp.descale[index] = descale;
  const int end = r.buffer - m_start < C::kBlockM ? r.buffer - m_start : C::kBlockM;
  for (int c = threadIdx.x; c < end * C::kChunksPerRow; c += C::kThreads) {
    const int row = m_start + c / C::kChunksPerRow, col = (c % C::kChunksPerRow) * 8;
    uint2 out = make_uint2(0u, 0u);
    if (row < r.valid) out = chunk_to_e4m3(*(const uint4*)(r.src + (i64)row * r.src_stride + col), inv, C::kBf16);
    *(uint2*)(r.dst + (i64)row * r.dst_stride + col) = out;
  }
  // The last varlen sequence's CTAs also zero the buffer's tail, gridDim.x row blocks at a time.
  for (int row0 = r.tail_begin + m_start; row0 < r.tail_end; row0 += gridDim.x * C::kBlockM) {
    const int rows = r.tail_end - row0 < C::kBlockM ? r.tail_end - row0 : C::kBlockM;
    for (int c = threadIdx.x; c < rows * C::kChunksPerRow; c += C::kThreads)
      *(uint2*)(r.dst + (i64)(row0 + c / C::kChunksPerRow) * r.dst_stride + (c % C::kChunksPerRow) * 8) = make_uint2(0u, 0u);
  }
}

}  // namespace kern
}  // namespace sigjit
