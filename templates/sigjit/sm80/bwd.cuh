// Sigmoid-attention backward for sm_80+: a fused kernel with dQ atomics (the default) and two
// deterministic kernels (bitwise reproducible run to run).
//
// With P = sigmoid(S): dV = P^T dO, dP = dO V^T, dS = dP * P * (1 - P), dQ = scale dS K,
// dK = scale dS^T Q. Unlike softmax there is no row statistic, so the forward stores nothing
// and each kernel recomputes P from Q and K.
//  - dkdv_kernel: one CTA per (key tile, kv head, sequence). K and V stay in shared memory;
//    Q and dO tiles stream through a cp.async ring; warps own key rows, so S^T = K Q^T and
//    dP^T = V dO^T come out with keys as rows, and dV += P^T dO, dK += dS^T Q accumulate in
//    registers. The query heads of a GQA group are summed in the same registers.
//  - dkdv_dq_fused_kernel (default, FlashAttention-2's shape): dkdv_kernel plus, per query
//    tile, dS^T staged in shared memory and dQ_tile = dS K (all warps, rows split by query)
//    added to an fp32 workspace with red.global.add (v2 on sm_90). 5 GEMMs per score; the
//    cost is the workspace (4 bytes per dQ element, zeroed per call), the atomics' traffic and
//    run-to-run differences in the last bits of dQ (the order of the adds varies).
//  - dq_convert_kernel: scales the workspace, rounds it to the tensor dtype and writes dQ with
//    its strides (padded rows as zeros); a bandwidth-bound pass over dQ. Its module's second
//    entry, dq_workspace_zero_kernel (padded layout), zeroes the workspace's valid rows first.
//    With SIGJIT_BWD_DQ_CONVERT=overlap, after the Hopper fused kernel's dQ writer tiles, it is
//    launched early and converts each sequence once that kernel has counted its key tiles done,
//    on the SMs its last wave frees.
//  - dq_kernel (deterministic): one CTA per (query tile, head, sequence), the forward's shape:
//    S = Q K^T, dP = dO V^T, dQ += dS K, with Q and dO read from shared memory. With
//    dkdv_kernel: 7 GEMMs per score (S and dP computed twice), no workspace, no atomics.
// Padding: Q/dO rows and K/V rows past a sequence's length are zero-filled, which makes their
// contributions exactly zero; padded gradient rows are written as zeros.
#pragma once

#include "sigjit/sm80/fwd.cuh"

namespace sigjit {
namespace kern {

// Packs an m16 x BLOCK_N fp32 accumulator tile into A-operand fragments of the next mma (the
// accumulator layout of two n8 tiles is the A layout of one k16 step).
template <class C>
__device__ __forceinline__ void pack_a_fragments(u32 (&frag)[C::kMTiles][C::kBlockN / 16][4], const float (&acc)[C::kMTiles][C::kNTiles][4]) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
      frag[mt][kk][0] = pack_half2<C::kBf16>(acc[mt][2 * kk][0], acc[mt][2 * kk][1]);
      frag[mt][kk][1] = pack_half2<C::kBf16>(acc[mt][2 * kk][2], acc[mt][2 * kk][3]);
      frag[mt][kk][2] = pack_half2<C::kBf16>(acc[mt][2 * kk + 1][0], acc[mt][2 * kk + 1][1]);
      frag[mt][kk][3] = pack_half2<C::kBf16>(acc[mt][2 * kk + 1][2], acc[mt][2 * kk + 1][3]);
    }
}

// P^T = sigmoid(scale * S^T + bias + s_k) for a tile whose rows are keys and columns queries;
// dS^T = dP^T * P^T * (1 - P^T). Both packed into A-operand fragments.
template <class C, bool MASKED>
__device__ __forceinline__ void sigmoid_grad_tile_t(u32 (&p_frag)[C::kMTiles][C::kBlockN / 16][4], u32 (&ds_frag)[C::kMTiles][C::kBlockN / 16][4],
                                                    float (&s)[C::kMTiles][C::kNTiles][4], float (&dp)[C::kMTiles][C::kNTiles][4],
                                                    const SigmoidFold<C::kExact>& sig, const float (&row_addend)[C::kMTiles][2], int key_base,
                                                    int query_base, int causal_offset, int lane) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt) {
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float p = sig(s[mt][nt][e], row_addend[mt][e / 2]);
        if (MASKED) {
          const int key = key_base + mt * 16 + lane / 4 + (e / 2) * 8;
          const int query = query_base + nt * 8 + (lane % 4) * 2 + (e % 2);
          p = key > query + causal_offset ? 0.0f : p;
        }
        s[mt][nt][e] = p;
        dp[mt][nt][e] = sig.grad(dp[mt][nt][e], p);
      }
    }
  }
  pack_a_fragments<C>(p_frag, s);
  pack_a_fragments<C>(ds_frag, dp);
}

template <class C>
__device__ __forceinline__ void zero_acc(float (&a)[C::kMTiles][C::kDTiles][4]) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) a[mt][dt][e] = 0.0f;
}

template <class C>
__device__ __forceinline__ void scale_acc(float (&a)[C::kMTiles][C::kDTiles][4], float scale) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) a[mt][dt][e] *= scale;
}

// How the fused kernel's dQ tile (BLOCK_N queries x D) is split over the warps: by m16 query
// tiles first, then by head-dim columns; each warp computes its part in column chunks of at
// most 64 (32 fp32 accumulators per m16 tile) so the transient dQ registers stay small next
// to the live dK and dV accumulators. Mirrored by check_config (kernel_spec.cpp).
template <class C>
struct DqSplit {
  static constexpr int kQueryTiles = C::kBlockN / 16;
  static constexpr int kWarpsM = kQueryTiles >= C::kWarps ? C::kWarps : kQueryTiles;
  static constexpr int kWarpsD = C::kWarps / kWarpsM;
  static constexpr int kMTiles = kQueryTiles / kWarpsM;  // m16 query tiles per warp
  static constexpr int kCols = C::kHeadDim / kWarpsD;   // head-dim columns per warp
  static constexpr int kChunk = kCols <= 64 ? kCols : (kCols % 64 == 0 ? 64 : 32);
  static constexpr int kDsStride = C::kBlockN + 8;  // dS^T staging: [BLOCK_M keys][BLOCK_N queries + pad]
  static constexpr int kDsElems = C::kBlockM * kDsStride;
  static_assert(C::kWarps % kWarpsM == 0 && kQueryTiles % kWarpsM == 0, "dQ split: warps and query m16 tiles must divide");
  static_assert(C::kHeadDim % (16 * kWarpsD) == 0 && kCols % kChunk == 0 && kChunk % 16 == 0,
                "dQ split: each warp needs a whole number of 16-column pairs of the head dim");
};

// C: a FwdConfig whose "M" side is the key tile and "N" side the query tile, Q_IN_REGS false.
template <class C, bool FUSED>
struct DkdvLayout {
  static constexpr int kFixedElems = C::kQElems;  // K or V: kBlockM rows
  static constexpr int kStreamElems = C::kKVElems;  // Q or dO: kBlockN rows
  static constexpr int kSmemBytes = sm80::bwd_smem_bytes(C::kHeadDim, C::kBlockM, C::kBlockN, C::kStages, FUSED);
  static_assert(kSmemBytes == 2 * (2 * kFixedElems + 2 * C::kStages * kStreamElems + (FUSED ? DqSplit<C>::kDsElems : 0)),
                "sm80/limits.h: bwd_smem_bytes disagrees with the tiles above");
  static_assert(!C::kQInRegs, "the dK/dV kernel reads K and V fragments from shared memory");
  static_assert(kSmemBytes <= sm80::kSmemLimitMax, "dK/dV tile config exceeds the 227 KB shared memory of sm_90");
};

template <class C>
__device__ __forceinline__ void stage_ds(u16* ds_smem, const u32 (&ds_frag)[C::kMTiles][C::kBlockN / 16][4], int warp, int lane) {
  constexpr int kStride = DqSplit<C>::kDsStride;
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt) {
    const int row = warp * C::kRowsPerWarp + mt * 16 + lane / 4;
#pragma unroll
    for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
      const int col = kk * 16 + (lane % 4) * 2;
      *(u32*)(ds_smem + row * kStride + col) = ds_frag[mt][kk][0];
      *(u32*)(ds_smem + (row + 8) * kStride + col) = ds_frag[mt][kk][1];
      *(u32*)(ds_smem + row * kStride + col + 8) = ds_frag[mt][kk][2];
      *(u32*)(ds_smem + (row + 8) * kStride + col + 8) = ds_frag[mt][kk][3];
    }
  }
}

// dQ[query_base .., :] += dS K over this CTA's BLOCK_M keys, into the fp32 workspace (rows of
// the sequence, row stride dqa_row_stride; rows at or past len_q are skipped). dS comes from
// its transposed staging (ldmatrix.trans gives the A fragments), K from its fixed tile.
template <class C>
__device__ __forceinline__ void add_dq_tile(float* dqa, i64 dqa_row_stride, const u16* ds_smem, const u16* k_smem, int query_base,
                                            int len_q, int warp, int lane) {
  using S = DqSplit<C>;
  const int wm = warp % S::kWarpsM, wd = warp / S::kWarpsM;
#pragma unroll
  for (int mt = 0; mt < S::kMTiles; ++mt) {
    const int m0 = (wm * S::kMTiles + mt) * 16;
#pragma unroll
    for (int chunk = 0; chunk < S::kCols / S::kChunk; ++chunk) {
      const int d0 = wd * S::kCols + chunk * S::kChunk;
      float acc[S::kChunk / 8][4];
#pragma unroll
      for (int nt = 0; nt < S::kChunk / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < C::kBlockM / 16; ++kk) {
        u32 a[4];
        const int a_key = kk * 16 + (lane % 8) + (lane / 16) * 8;
        ldmatrix_x4_trans(a, shared_address(ds_smem + a_key * S::kDsStride + m0 + ((lane / 8) % 2) * 8));
#pragma unroll
        for (int dp = 0; dp < S::kChunk / 16; ++dp) {
          const int b_key = kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
          u32 b[4];
          ldmatrix_x4_trans(b, shared_address(k_smem + b_key * C::kRowStride + d0 + dp * 16 + (lane / 16) * 8));
          mma_16816<C::kBf16>(acc[2 * dp], a, b[0], b[1]);
          mma_16816<C::kBf16>(acc[2 * dp + 1], a, b[2], b[3]);
        }
      }
      const int row = query_base + m0 + lane / 4;
#pragma unroll
      for (int nt = 0; nt < S::kChunk / 8; ++nt) {
        const int col = d0 + nt * 8 + (lane % 4) * 2;
        if (row < len_q) red_add_f32x2(dqa + (i64)row * dqa_row_stride + col, acc[nt][0], acc[nt][1]);
        if (row + 8 < len_q) red_add_f32x2(dqa + (i64)(row + 8) * dqa_row_stride + col, acc[nt][2], acc[nt][3]);
      }
    }
  }
}

// FUSED: also adds every query tile's dQ contribution to bp.dq_accum (see add_dq_tile).
template <class C, bool FUSED>
__device__ __forceinline__ void dkdv_kernel_impl(const SigjitBwdParams& bp) {
  using L = DkdvLayout<C, FUSED>;
  const SigjitFwdParams& p = bp.fwd;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  u16* k_smem = (u16*)smem_raw;
  u16* v_smem = k_smem + L::kFixedElems;
  u16* ring = v_smem + L::kFixedElems;  // [stage][Q then dO][query tile rows][row stride]
  u16* ds_smem = ring + 2 * C::kStages * L::kStreamElems;  // FUSED only

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.z, h_kv = blockIdx.y;
  const int n_start = blockIdx.x * C::kBlockM;  // key rows of this CTA
  const SeqSlice seq = locate_sequence<C>(p, b, h_kv * p.kv_group);
  const SeqRows rows = seq_rows<C>(p, b);
  const int key_buffer_rows = C::kLayout == kPadded ? p.seqlen_k : 0;

  SeqSlice dk_out = seq, dv_out = seq;
  dk_out.o = (u16*)tensor_row(bp.dk, bp.dk_stride_b, bp.dk_stride_l, bp.dk_stride_h, rows.batch, rows.k_row0, h_kv);
  dv_out.o = (u16*)tensor_row(bp.dv, bp.dv_stride_b, bp.dv_stride_l, bp.dv_stride_h, rows.batch, rows.k_row0, h_kv);
  dk_out.len_q = dv_out.len_q = seq.len_k;  // store_output's "rows" are keys here
  dk_out.rows_to_clear = dv_out.rows_to_clear = key_buffer_rows;

  if (n_start >= seq.len_k) {
    if (n_start < key_buffer_rows) {
      const int end = n_start + C::kBlockM < key_buffer_rows ? n_start + C::kBlockM : key_buffer_rows;
      store_zero_rows<C>(dk_out.o, bp.dk_stride_l, n_start, end);
      store_zero_rows<C>(dv_out.o, bp.dv_stride_l, n_start, end);
    }
    return;
  }

  const int causal_offset = causal_diagonal_offset<C>(seq);
  // Causal: query i sees key j when j <= i + offset, so this tile's first useful query row is
  // n_start - offset.
  int m_first = 0;
  if (C::kCausal) {
    const int first_query = n_start - causal_offset;
    m_first = first_query > 0 ? first_query / C::kBlockN : 0;
  }
  const int m_blocks = (seq.len_q + C::kBlockN - 1) / C::kBlockN;
  const int steps_per_head = m_blocks > m_first ? m_blocks - m_first : 0;
  const int total_steps = steps_per_head * p.kv_group;

  load_tile_async<C, C::kBlockM>(k_smem, seq.k + (i64)n_start * p.k_stride_l, p.k_stride_l, seq.len_k - n_start);
  load_tile_async<C, C::kBlockM>(v_smem, seq.v + (i64)n_start * p.v_stride_l, p.v_stride_l, seq.len_k - n_start);
  cp_async_commit();

  auto load_step = [&](int step) {
    const int h = h_kv * p.kv_group + step / steps_per_head;
    const int m_start = (m_first + step % steps_per_head) * C::kBlockN;
    u16* stage = ring + (step % C::kStages) * 2 * L::kStreamElems;
    const u16* q = tensor_row(p.q, p.q_stride_b, p.q_stride_l, p.q_stride_h, rows.batch, rows.q_row0 + m_start, h);
    const u16* dout = tensor_row(bp.dout, bp.do_stride_b, bp.do_stride_l, bp.do_stride_h, rows.batch, rows.q_row0 + m_start, h);
    load_tile_async<C, C::kBlockN>(stage, q, p.q_stride_l, seq.len_q - m_start);
    load_tile_async<C, C::kBlockN>(stage + L::kStreamElems, dout, bp.do_stride_l, seq.len_q - m_start);
  };
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < total_steps) load_step(s);
    cp_async_commit();
  }

  const float bias = sequence_bias<C>(p, seq);
  const SigmoidFold<C::kExact> sig(p.scale);
  const int key_row_base = n_start + warp * C::kRowsPerWarp;
  float row_addend[C::kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int key = key_row_base + mt * 16 + lane / 4 + e * 8;
      float c = bias;
      if (C::kScoreBias) c += key < seq.len_k ? __ldg(seq.score_bias + key) : 0.0f;
      row_addend[mt][e] = SigmoidFold<C::kExact>::addend(c);
    }

  float dk[C::kMTiles][C::kDTiles][4], dv[C::kMTiles][C::kDTiles][4];
  zero_acc<C>(dk);
  zero_acc<C>(dv);
  const u32 unused_frag[C::kMTiles][C::kQSlices][4] = {};

  for (int step = 0; step < total_steps; ++step) {
    cp_async_wait<C::kStages - 2>();
    __syncthreads();
    if (step + C::kStages - 1 < total_steps) load_step(step + C::kStages - 1);
    cp_async_commit();

    const u16* q_tile = ring + (step % C::kStages) * 2 * L::kStreamElems;
    const u16* do_tile = q_tile + L::kStreamElems;
    const int query_base = (m_first + step % steps_per_head) * C::kBlockN;

    float s[C::kMTiles][C::kNTiles][4], dp[C::kMTiles][C::kNTiles][4];
    score_tile<C>(s, unused_frag, k_smem, q_tile, warp, lane);    // S^T = K Q^T
    score_tile<C>(dp, unused_frag, v_smem, do_tile, warp, lane);  // dP^T = V dO^T
    u32 p_frag[C::kMTiles][C::kBlockN / 16][4], ds_frag[C::kMTiles][C::kBlockN / 16][4];
    if (C::kCausal && key_row_base + C::kRowsPerWarp - 1 > query_base + causal_offset) {
      sigmoid_grad_tile_t<C, true>(p_frag, ds_frag, s, dp, sig, row_addend, key_row_base, query_base, causal_offset, lane);
    } else {
      sigmoid_grad_tile_t<C, false>(p_frag, ds_frag, s, dp, sig, row_addend, key_row_base, query_base, causal_offset, lane);
    }
    if (FUSED) stage_ds<C>(ds_smem, ds_frag, warp, lane);
    accumulate_pv<C>(dv, p_frag, do_tile, lane);  // dV += P^T dO
    accumulate_pv<C>(dk, ds_frag, q_tile, lane);  // dK += dS^T Q
    if (FUSED) {
      __syncthreads();  // dS^T staged by every warp; the next step's first barrier protects it again
      const int h = h_kv * p.kv_group + step / steps_per_head;
      float* dqa = bp.dq_accum + rows.batch * bp.dqa_stride_b + rows.q_row0 * bp.dqa_stride_l + (i64)h * bp.dqa_stride_h;
      add_dq_tile<C>(dqa, bp.dqa_stride_l, ds_smem, k_smem, query_base, seq.len_q, warp, lane);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // K/V smem is reused to stage the outputs
  scale_acc<C>(dk, p.scale);
  store_output<C>(dk_out, bp.dk_stride_l, dk, k_smem, n_start, warp, lane);
  __syncthreads();
  store_output<C>(dv_out, bp.dv_stride_l, dv, v_smem, n_start, warp, lane);
}

template <class C>
__device__ __forceinline__ void dkdv_kernel(const SigjitBwdParams& bp) {
  dkdv_kernel_impl<C, false>(bp);
}

template <class C>
__device__ __forceinline__ void dkdv_dq_fused_kernel(const SigjitBwdParams& bp) {
  dkdv_kernel_impl<C, true>(bp);
}

// Launched while a Hopper fused kernel with the dQ writer runs (bp.dq_reduced), a convert CTA
// first waits for its sequence's key tiles (common/params.h); polled by one thread, backing off,
// since the CTAs of the last sequences wait for the rest of the kernel.
__device__ __forceinline__ void wait_dq_reduced(const SigjitBwdParams& bp, int b) {
  if (threadIdx.x == 0) {
    for (unsigned ns = 256; ld_acquire_gpu(bp.dq_reduced + b) < bp.dq_reduced_target; ns = ns < 4096 ? 2 * ns : ns) __nanosleep(ns);
  }
  __syncthreads();
}

// A handoff convert's last CTA also waits for the fused kernel to complete (griddep_wait), so that
// the convert kernel never completes first: the counters order only dq_accum, and the stream's
// next work may read dK and dV.
__device__ __forceinline__ bool last_cta() {
  return blockIdx.x == gridDim.x - 1 && blockIdx.y == gridDim.y - 1 && blockIdx.z == gridDim.z - 1;
}

// dQ = scale * workspace, rounded to the tensor dtype: one CTA per (BLOCK_M query rows, head,
// sequence), 8 elements (two float4 loads, one 16-byte store) per thread and step. Padded rows
// are written as zeros, unless the Hopper fused kernel wrote them (common/padded_rows.h); varlen
// rows outside the sequences are not touched.
template <class C>
__device__ __forceinline__ void dq_convert_kernel(const SigjitBwdParams& bp) {
  const SigjitFwdParams& p = bp.fwd;
  const int b = blockIdx.z, h = blockIdx.y, m_start = blockIdx.x * C::kBlockM;
  if (bp.dq_reduced != nullptr) {
    if (last_cta()) griddep_wait();
    wait_dq_reduced(bp, b);
  }
  const SeqSlice seq = locate_sequence<C>(p, b, h);
  const SeqRows rows = seq_rows<C>(p, b);
  u16* dq = (u16*)tensor_row(bp.dq, bp.dq_stride_b, bp.dq_stride_l, bp.dq_stride_h, rows.batch, rows.q_row0, h);
  const float* acc = bp.dq_accum + rows.batch * bp.dqa_stride_b + rows.q_row0 * bp.dqa_stride_l + (i64)h * bp.dqa_stride_h;
  const int valid_rows = seq.len_q - m_start;
  const bool zeroed = C::kLayout == kPadded && fused_zeroes_padded_dq(seq.len_k, p.seqlen_k, bp.dq_pad_zero_key_block);
  const int clear_to = zeroed ? seq.len_q : seq.rows_to_clear;
  int write_rows = clear_to - m_start > valid_rows ? clear_to - m_start : valid_rows;
  write_rows = write_rows > C::kBlockM ? C::kBlockM : write_rows;
  for (int c = threadIdx.x; c < write_rows * C::kChunksPerRow; c += C::kThreads) {
    const int row = c / C::kChunksPerRow;
    const int col = (c % C::kChunksPerRow) * 8;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (row < valid_rows) {
      const float* src = acc + (i64)(m_start + row) * bp.dqa_stride_l + col;
      const float4 lo = *(const float4*)src, hi = *(const float4*)(src + 4);
      val.x = pack_half2<C::kBf16>(lo.x * p.scale, lo.y * p.scale);
      val.y = pack_half2<C::kBf16>(lo.z * p.scale, lo.w * p.scale);
      val.z = pack_half2<C::kBf16>(hi.x * p.scale, hi.y * p.scale);
      val.w = pack_half2<C::kBf16>(hi.z * p.scale, hi.w * p.scale);
    }
    *(uint4*)(dq + (i64)(m_start + row) * bp.dq_stride_l + col) = val;
  }
}

// The padded layout's dQ workspace zeroing, in place of a memset of the whole buffer: only the
// valid query rows of each sequence are ever reduced into and read back (dq_convert_kernel writes
// the padded rows' zeros without reading them), so only they are zeroed: on a ragged batch
// mostly padding (bench/ragged_split.py: 84 %) this is the varlen layout's memset instead of
// 6x that. One CTA per (BLOCK_M query rows, head, sequence), the convert kernel's grid, so that
// even a small batch spreads over the SMs; 16-byte stores, head_dim floats per row.
template <class C>
__device__ __forceinline__ void dq_workspace_zero_kernel(const SigjitBwdParams& bp) {
  static_assert(C::kLayout == kPadded, "only the padded layout zeroes its dQ workspace by rows");
  const SigjitFwdParams& p = bp.fwd;
  const int b = blockIdx.z, h = blockIdx.y, m_start = blockIdx.x * C::kBlockM;
  const int len_q = clamp_len(p.seq_lens_q[b], p.seqlen_q);
  if (m_start >= len_q) return;
  const int rows = len_q - m_start < C::kBlockM ? len_q - m_start : C::kBlockM;
  float* acc = bp.dq_accum + (i64)b * bp.dqa_stride_b + (i64)m_start * bp.dqa_stride_l + (i64)h * bp.dqa_stride_h;
  constexpr int kVectorsPerRow = C::kHeadDim / 4;
  for (int i = threadIdx.x; i < rows * kVectorsPerRow; i += C::kThreads) {
    *(float4*)(acc + (i64)(i / kVectorsPerRow) * bp.dqa_stride_l + (i % kVectorsPerRow) * 4) = make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

// The varlen layout's buffer rows past cu_seqlens[batch], which no sequence owns: zeros, so that a
// caller's buffer longer than its sequences holds no garbage there (autograd hands every row of
// a gradient on; the binding allocates with torch.empty). Zeroes bp.dq's rows past
// cu_seqlens_q[batch] (total_q rows, head blockIdx.y of heads_q) and, where non-null, bp.dk's and
// bp.dv's past cu_seqlens_k[batch] (heads_kv heads); the forward passes O as dq. A grid of a few
// CTAs per query head strides over the tail, so one launch serves any tail length, and an empty
// tail (the common case) costs a load of cu_seqlens[batch] per CTA.
template <class C>
__device__ __forceinline__ void varlen_tail_zero_kernel(const SigjitBwdParams& bp) {
  static_assert(C::kLayout == kVarlen, "only the varlen layout has rows outside its sequences");
  const SigjitFwdParams& p = bp.fwd;
  const int h = blockIdx.y, step = gridDim.x * C::kBlockM;
  const auto zero_tail = [&](void* base, i64 row_stride, i64 head_stride, int head, int begin, int end) {
    u16* t = (u16*)base + (i64)head * head_stride;
    for (int row = begin + (int)blockIdx.x * C::kBlockM; row < end; row += step)
      store_zero_rows<C>(t, row_stride, row, end - row < C::kBlockM ? end : row + C::kBlockM);
  };
  if (bp.dq != nullptr) zero_tail(bp.dq, bp.dq_stride_l, bp.dq_stride_h, h, clamp_len(p.cu_seqlens_q[p.batch], p.total_q), p.total_q);
  if (h % p.kv_group != 0) return;
  const int k_begin = clamp_len(p.cu_seqlens_k[p.batch], p.total_k);
  if (bp.dk != nullptr) zero_tail(bp.dk, bp.dk_stride_l, bp.dk_stride_h, h / p.kv_group, k_begin, p.total_k);
  if (bp.dv != nullptr) zero_tail(bp.dv, bp.dv_stride_l, bp.dv_stride_h, h / p.kv_group, k_begin, p.total_k);
}

// Dynamic shared memory of each backward kernel (the generated TU checks the host's formula
// against it). PART: 0 dK/dV, 1 dQ, 2 fused, 3 dQ convert.
template <class C, int PART>
struct BwdSmem {
  static constexpr int kBytes = PART == 0   ? DkdvLayout<C, false>::kSmemBytes
                                : PART == 2 ? DkdvLayout<C, true>::kSmemBytes
                                : PART == 1 ? 2 * (2 * C::kQElems + 2 * C::kStages * C::kKVElems)
                                            : 0;
};

// C: a FwdConfig with Q_IN_REGS false; the ring holds K and V tiles as in the forward, and a
// second fixed tile holds dO.
template <class C>
__device__ __forceinline__ void dq_kernel(const SigjitBwdParams& bp) {
  static_assert(!C::kQInRegs, "the dQ kernel reads Q and dO fragments from shared memory");
  static_assert(2 * (2 * C::kQElems + 2 * C::kStages * C::kKVElems) <= 227 * 1024, "dQ tile config exceeds 227 KB of shared memory");
  const SigjitFwdParams& p = bp.fwd;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  u16* q_smem = (u16*)smem_raw;
  u16* do_smem = q_smem + C::kQElems;
  u16* kv_smem = do_smem + C::kQElems;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.z, h = blockIdx.y;
  const int m_block = C::kCausal ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
  const int m_start = m_block * C::kBlockM;
  const SeqSlice seq = locate_sequence<C>(p, b, h);
  const SeqRows rows = seq_rows<C>(p, b);
  SeqSlice dq_out = seq;
  dq_out.o = (u16*)tensor_row(bp.dq, bp.dq_stride_b, bp.dq_stride_l, bp.dq_stride_h, rows.batch, rows.q_row0, h);

  if (m_start >= seq.len_q) {
    if (m_start < seq.rows_to_clear) {
      const int end = m_start + C::kBlockM < seq.rows_to_clear ? m_start + C::kBlockM : seq.rows_to_clear;
      store_zero_rows<C>(dq_out.o, bp.dq_stride_l, m_start, end);
    }
    return;
  }
  const int causal_offset = causal_diagonal_offset<C>(seq);
  int key_end = seq.len_k;
  if (C::kCausal) {
    const int last = m_start + C::kBlockM + causal_offset;
    key_end = last < key_end ? last : key_end;
  }
  const int n_blocks = key_end > 0 ? (key_end + C::kBlockN - 1) / C::kBlockN : 0;

  auto load_kv = [&](int n_block) {
    u16* stage = kv_smem + (n_block % C::kStages) * 2 * C::kKVElems;
    const int key0 = n_block * C::kBlockN;
    load_tile_async<C, C::kBlockN>(stage, seq.k + (i64)key0 * p.k_stride_l, p.k_stride_l, seq.len_k - key0);
    load_tile_async<C, C::kBlockN>(stage + C::kKVElems, seq.v + (i64)key0 * p.v_stride_l, p.v_stride_l, seq.len_k - key0);
  };
  const u16* dout = tensor_row(bp.dout, bp.do_stride_b, bp.do_stride_l, bp.do_stride_h, rows.batch, rows.q_row0 + m_start, h);
  load_tile_async<C, C::kBlockM>(q_smem, seq.q + (i64)m_start * p.q_stride_l, p.q_stride_l, seq.len_q - m_start);
  load_tile_async<C, C::kBlockM>(do_smem, dout, bp.do_stride_l, seq.len_q - m_start);
  cp_async_commit();
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < n_blocks) load_kv(s);
    cp_async_commit();
  }

  const float bias = sequence_bias<C>(p, seq);
  const SigmoidFold<C::kExact> sig(p.scale);
  float dq[C::kMTiles][C::kDTiles][4];
  zero_acc<C>(dq);
  const u32 unused_frag[C::kMTiles][C::kQSlices][4] = {};
  const int row_base = m_start + warp * C::kRowsPerWarp;

  for (int n_block = 0; n_block < n_blocks; ++n_block) {
    cp_async_wait<C::kStages - 2>();
    __syncthreads();
    if (n_block + C::kStages - 1 < n_blocks) load_kv(n_block + C::kStages - 1);
    cp_async_commit();

    const u16* k_tile = kv_smem + (n_block % C::kStages) * 2 * C::kKVElems;
    const u16* v_tile = k_tile + C::kKVElems;
    const int key_base = n_block * C::kBlockN;
    float addend[C::kNTiles][2];
    load_key_addends<C>(addend, seq, bias, key_base, lane);
    float s[C::kMTiles][C::kNTiles][4], dp[C::kMTiles][C::kNTiles][4];
    score_tile<C>(s, unused_frag, q_smem, k_tile, warp, lane);    // S = Q K^T
    score_tile<C>(dp, unused_frag, do_smem, v_tile, warp, lane);  // dP = dO V^T
    u32 p_frag[C::kMTiles][C::kBlockN / 16][4];
    if (C::kCausal && key_base + C::kBlockN - 1 > row_base + causal_offset) {
      sigmoid_tile<C, true>(p_frag, s, sig, addend, key_base, row_base, causal_offset, lane);
    } else {
      sigmoid_tile<C, false>(p_frag, s, sig, addend, key_base, row_base, causal_offset, lane);
    }
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) dp[mt][nt][e] *= s[mt][nt][e] * (1.0f - s[mt][nt][e]);
    u32 ds_frag[C::kMTiles][C::kBlockN / 16][4];
    pack_a_fragments<C>(ds_frag, dp);
    accumulate_pv<C>(dq, ds_frag, k_tile, lane);  // dQ += dS K
  }
  cp_async_wait<0>();
  __syncthreads();
  scale_acc<C>(dq, p.scale);
  store_output<C>(dq_out, bp.dq_stride_l, dq, q_smem, m_start, warp, lane);
}

}  // namespace kern
}  // namespace sigjit
