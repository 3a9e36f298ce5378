// Sigmoid-attention forward for sm_80+ in the FlashAttention-2 shape.
//
// What: one CTA computes a BLOCK_M x D tile of O for one (sequence, head). Q is held in
// registers for the whole key loop; K and V tiles stream through a STAGES-deep cp.async ring
// in shared memory; S = Q K^T and O += P V run on mma.sync m16n8k16 with fp32 accumulation;
// P never leaves registers (the S accumulator layout is the A-operand layout of the PV mma).
// Why this shape: sigmoid is elementwise, so unlike softmax there is no running row max, no
// rescaling of O and no final division: the loop body is two GEMMs and one sigmoid per score.
// Cost: per score 4*D FLOP of mma plus one MUFU op (fast mode) or two (exact mode). Padding
// costs nothing: rows and key tiles past a sequence's length are never loaded (the grid skips
// wholly padded tiles, cp.async zero-fills ragged edges, and zero V rows add exactly nothing).
#pragma once

#include "sigjit/common/sequence.cuh"
#include "sigjit/sm80/limits.h"

namespace sigjit {
namespace kern {

template <int HEAD_DIM_, int BLOCK_M_, int BLOCK_N_, int NUM_WARPS_, int STAGES_, bool IS_BF16_, int LAYOUT_, bool CAUSAL_, int BIAS_MODE_,
          bool HAS_SCORE_BIAS_, bool EXACT_SIGMOID_, bool Q_IN_REGS_ = true, bool CAUSAL_TOP_LEFT_ = false>
struct FwdConfig {
  static constexpr int kHeadDim = HEAD_DIM_;
  static constexpr int kBlockM = BLOCK_M_;
  static constexpr int kBlockN = BLOCK_N_;
  static constexpr int kWarps = NUM_WARPS_;
  static constexpr int kStages = STAGES_;
  static constexpr bool kBf16 = IS_BF16_;
  static constexpr int kLayout = LAYOUT_;
  static constexpr bool kCausal = CAUSAL_;
  // The causal diagonal: top-left when true, else bottom-right (see causal_diagonal_offset).
  static constexpr bool kCausalTopLeft = CAUSAL_ && CAUSAL_TOP_LEFT_;
  static constexpr int kBiasMode = BIAS_MODE_;
  static constexpr bool kScoreBias = HAS_SCORE_BIAS_;
  static constexpr bool kExact = EXACT_SIGMOID_;
  static constexpr bool kQInRegs = Q_IN_REGS_;
  // Q fragments kept live across the key loop: all of them, or one k16 slice at a time.
  static constexpr int kQSlices = kQInRegs ? kHeadDim / 16 : 1;

  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = kBlockM / kWarps;
  static constexpr int kMTiles = kRowsPerWarp / 16;  // m16 tiles per warp
  static constexpr int kNTiles = kBlockN / 8;        // n8 score tiles per warp
  static constexpr int kDTiles = kHeadDim / 8;       // n8 output tiles per warp
  static constexpr int kChunksPerRow = kHeadDim / 8; // 16-byte chunks per row
  // One 16-byte pad per row: 8 consecutive rows then start 16 bytes apart modulo 128, so the
  // eight row addresses of an ldmatrix hit eight distinct bank groups.
  static constexpr int kRowStride = sm80::row_elems(kHeadDim);
  static constexpr int kTileElems = kRowStride;  // per row
  static constexpr int kQElems = kBlockM * kRowStride;
  static constexpr int kKVElems = kBlockN * kRowStride;
  static constexpr int kSmemBytes = sm80::fwd_smem_bytes(kHeadDim, kBlockM, kBlockN, kStages);
  static_assert(kSmemBytes == 2 * (kQElems + 2 * kStages * kKVElems), "sm80/limits.h: fwd_smem_bytes disagrees with the tiles above");

  static_assert(kHeadDim % 16 == 0 && kHeadDim >= 32 && kHeadDim <= 256, "head dim: a multiple of 16 in [32, 256]");
  static_assert(kWarps >= 1 && kWarps <= 16, "warps: 1..16");
  static_assert(kBlockM % (16 * kWarps) == 0, "BLOCK_M must give each warp a whole number of m16 tiles");
  static_assert(kMTiles <= 2, "more than two m16 tiles per warp does not fit the register file");
  static_assert(kMTiles * (kHeadDim / 2 + kBlockN / 2 + (kQInRegs ? kHeadDim / 4 : 0)) <= sm80::kAccumulatorRegisterLimit,
                "O, S and Q fragments alone exceed 224 registers per thread: the kernel would spill");
  static_assert(kBlockN % 16 == 0 && kBlockN >= 16 && kBlockN <= 256, "BLOCK_N: a multiple of 16 in [16, 256]");
  static_assert(kStages >= 2 && kStages <= 4, "pipeline stages: 2..4");
  static_assert(kSmemBytes <= sm80::kSmemLimitMax, "tile config exceeds the 227 KB shared memory of sm_90");
  static_assert(kLayout >= kDense && kLayout <= kVarlen, "unknown layout");
};

// rows x D tile of a [rows, D] row-strided global matrix into padded shared memory; rows at or
// past valid_rows are zero-filled without being read.
template <class C, int ROWS>
__device__ __forceinline__ void load_tile_async(u16* smem, const u16* gmem, i64 row_stride, int valid_rows) {
  constexpr int kChunks = ROWS * C::kChunksPerRow;
  for (int c = threadIdx.x; c < kChunks; c += C::kThreads) {
    const int row = c / C::kChunksPerRow;
    const int col = (c % C::kChunksPerRow) * 8;
    const bool valid = row < valid_rows;
    const u16* src = valid ? gmem + (i64)row * row_stride + col : gmem;
    cp_async_16(shared_address(smem + row * C::kRowStride + col), src, valid);
  }
}

template <class C>
__device__ __forceinline__ void load_q_slice(u32 (&q)[4], const u16* q_smem, int warp, int mt, int ks, int lane) {
  const int row = warp * C::kRowsPerWarp + mt * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
  ldmatrix_x4(q, shared_address(q_smem + row * C::kRowStride + ks * 16 + (lane / 16) * 8));
}

template <class C>
__device__ __forceinline__ void load_q_fragments(u32 (&q_frag)[C::kMTiles][C::kQSlices][4], const u16* q_smem, int warp, int lane) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int ks = 0; ks < C::kQSlices; ++ks) load_q_slice<C>(q_frag[mt][ks], q_smem, warp, mt, ks, lane);
}

// S = Q K^T for one key tile. Q comes from registers, or (kQInRegs false) from shared memory
// one k16 slice at a time.
template <class C>
__device__ __forceinline__ void score_tile(float (&s)[C::kMTiles][C::kNTiles][4], const u32 (&q_frag)[C::kMTiles][C::kQSlices][4],
                                           const u16* q_smem, const u16* k_smem, int warp, int lane) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < C::kHeadDim / 16; ++ks) {
    u32 q_slice[C::kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < C::kMTiles; ++mt) {
      if (C::kQInRegs) {
#pragma unroll
        for (int r = 0; r < 4; ++r) q_slice[mt][r] = q_frag[mt][C::kQInRegs ? ks : 0][r];
      } else {
        load_q_slice<C>(q_slice[mt], q_smem, warp, mt, ks, lane);
      }
    }
#pragma unroll
    for (int np = 0; np < C::kNTiles / 2; ++np) {
      const int key = np * 16 + (lane % 8) + (lane / 16) * 8;
      const int col = ks * 16 + ((lane / 8) % 2) * 8;
      u32 b[4];
      ldmatrix_x4(b, shared_address(k_smem + key * C::kRowStride + col));
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt) {
        mma_16816<C::kBf16>(s[mt][2 * np], q_slice[mt], b[0], b[1]);
        mma_16816<C::kBf16>(s[mt][2 * np + 1], q_slice[mt], b[2], b[3]);
      }
    }
  }
}

// P = sigmoid(scale * S + bias + s_k), with causal masking on diagonal tiles, packed straight
// into the A-operand fragments of the PV product.
template <class C, bool MASKED>
__device__ __forceinline__ void sigmoid_tile(u32 (&p_frag)[C::kMTiles][C::kBlockN / 16][4], float (&s)[C::kMTiles][C::kNTiles][4],
                                             const SigmoidFold<C::kExact>& sig, const float (&addend)[C::kNTiles][2],
                                             int key_base, int row_base, int causal_offset, int lane) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt) {
#pragma unroll
    for (int nt = 0; nt < C::kNTiles; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float p = sig(s[mt][nt][e], addend[nt][e % 2]);
        if (MASKED) {
          const int row = row_base + mt * 16 + lane / 4 + (e / 2) * 8;
          const int key = key_base + nt * 8 + (lane % 4) * 2 + (e % 2);
          p = key > row + causal_offset ? 0.0f : p;
        }
        s[mt][nt][e] = p;
      }
    }
#pragma unroll
    for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
      p_frag[mt][kk][0] = pack_half2<C::kBf16>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
      p_frag[mt][kk][1] = pack_half2<C::kBf16>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
      p_frag[mt][kk][2] = pack_half2<C::kBf16>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
      p_frag[mt][kk][3] = pack_half2<C::kBf16>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
    }
  }
}

// O += P V for one key tile.
template <class C>
__device__ __forceinline__ void accumulate_pv(float (&o)[C::kMTiles][C::kDTiles][4], const u32 (&p_frag)[C::kMTiles][C::kBlockN / 16][4],
                                              const u16* v_smem, int lane) {
#pragma unroll
  for (int kk = 0; kk < C::kBlockN / 16; ++kk) {
#pragma unroll
    for (int dp = 0; dp < C::kDTiles / 2; ++dp) {
      const int key = kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
      const int col = dp * 16 + (lane / 16) * 8;
      u32 b[4];
      ldmatrix_x4_trans(b, shared_address(v_smem + key * C::kRowStride + col));
#pragma unroll
      for (int mt = 0; mt < C::kMTiles; ++mt) {
        mma_16816<C::kBf16>(o[mt][2 * dp], p_frag[mt][kk], b[0], b[1]);
        mma_16816<C::kBf16>(o[mt][2 * dp + 1], p_frag[mt][kk], b[2], b[3]);
      }
    }
  }
}

// bias + s_k for the two key columns each thread owns in every n8 tile, pre-folded for the mode.
template <class C>
__device__ __forceinline__ void load_key_addends(float (&addend)[C::kNTiles][2], const SeqSlice& seq, float bias, int key_base, int lane) {
#pragma unroll
  for (int nt = 0; nt < C::kNTiles; ++nt) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int key = key_base + nt * 8 + (lane % 4) * 2 + e;
      float c = bias;
      if (C::kScoreBias) c += key < seq.len_k ? __ldg(seq.score_bias + key) : 0.0f;
      addend[nt][e] = SigmoidFold<C::kExact>::addend(c);
    }
  }
}

template <class C>
__device__ __forceinline__ void store_output(const SeqSlice& seq, i64 o_row_stride, const float (&o)[C::kMTiles][C::kDTiles][4], u16* stage_smem,
                                             int m_start, int warp, int lane) {
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt) {
      const int row = warp * C::kRowsPerWarp + mt * 16 + lane / 4;
      const int col = dt * 8 + (lane % 4) * 2;
      *(u32*)(stage_smem + row * C::kRowStride + col) = pack_half2<C::kBf16>(o[mt][dt][0], o[mt][dt][1]);
      *(u32*)(stage_smem + (row + 8) * C::kRowStride + col) = pack_half2<C::kBf16>(o[mt][dt][2], o[mt][dt][3]);
    }
  }
  __syncthreads();
  const int valid_rows = seq.len_q - m_start;
  int write_rows = seq.rows_to_clear - m_start > valid_rows ? seq.rows_to_clear - m_start : valid_rows;
  write_rows = write_rows > C::kBlockM ? C::kBlockM : write_rows;
  for (int c = threadIdx.x; c < write_rows * C::kChunksPerRow; c += C::kThreads) {
    const int row = c / C::kChunksPerRow;
    const int col = (c % C::kChunksPerRow) * 8;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (row < valid_rows) val = *(const uint4*)(stage_smem + row * C::kRowStride + col);
    *(uint4*)(seq.o + (i64)(m_start + row) * o_row_stride + col) = val;
  }
}

template <class C>
__device__ __forceinline__ void fwd_kernel(const SigjitFwdParams& p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  u16* q_smem = (u16*)smem_raw;
  u16* kv_smem = q_smem + C::kQElems;  // [stage][K then V][BLOCK_N][row stride]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int b = blockIdx.z, h = blockIdx.y;
  const int m_start = query_tile_start<C>();
  const SeqSlice seq = locate_sequence<C>(p, b, h);
  if (zero_padding_tile<C>(p, seq, m_start)) return;
  const int causal_offset = causal_diagonal_offset<C>(seq);
  const int n_blocks = key_tile_count<C>(seq, m_start);

  auto load_kv = [&](int n_block) {
    u16* stage = kv_smem + (n_block % C::kStages) * 2 * C::kKVElems;
    const int key0 = n_block * C::kBlockN;
    const int valid = seq.len_k - key0;
    load_tile_async<C, C::kBlockN>(stage, seq.k + (i64)key0 * p.k_stride_l, p.k_stride_l, valid);
    load_tile_async<C, C::kBlockN>(stage + C::kKVElems, seq.v + (i64)key0 * p.v_stride_l, p.v_stride_l, valid);
  };

  load_tile_async<C, C::kBlockM>(q_smem, seq.q + (i64)m_start * p.q_stride_l, p.q_stride_l, seq.len_q - m_start);
  cp_async_commit();
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < n_blocks) load_kv(s);
    cp_async_commit();
  }

  const float bias = sequence_bias<C>(p, seq);
  const SigmoidFold<C::kExact> sig(p.scale);

  float o[C::kMTiles][C::kDTiles][4];
#pragma unroll
  for (int mt = 0; mt < C::kMTiles; ++mt)
#pragma unroll
    for (int dt = 0; dt < C::kDTiles; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][dt][e] = 0.0f;

  cp_async_wait<C::kStages - 1>();  // the Q group
  __syncthreads();
  u32 q_frag[C::kMTiles][C::kQSlices][4];
  if (C::kQInRegs) load_q_fragments<C>(q_frag, q_smem, warp, lane);

  const int row_base = m_start + warp * C::kRowsPerWarp;
  for (int n_block = 0; n_block < n_blocks; ++n_block) {
    cp_async_wait<C::kStages - 2>();
    __syncthreads();  // tile n_block landed for all threads; the buffer of n_block-1 is free
    if (n_block + C::kStages - 1 < n_blocks) load_kv(n_block + C::kStages - 1);
    cp_async_commit();

    const u16* k_tile = kv_smem + (n_block % C::kStages) * 2 * C::kKVElems;
    const u16* v_tile = k_tile + C::kKVElems;
    const int key_base = n_block * C::kBlockN;

    float addend[C::kNTiles][2];
    load_key_addends<C>(addend, seq, bias, key_base, lane);
    float s[C::kMTiles][C::kNTiles][4];
    score_tile<C>(s, q_frag, q_smem, k_tile, warp, lane);
    u32 p_frag[C::kMTiles][C::kBlockN / 16][4];
    if (C::kCausal && key_base + C::kBlockN - 1 > row_base + causal_offset) {
      sigmoid_tile<C, true>(p_frag, s, sig, addend, key_base, row_base, causal_offset, lane);
    } else {
      sigmoid_tile<C, false>(p_frag, s, sig, addend, key_base, row_base, causal_offset, lane);
    }
    accumulate_pv<C>(o, p_frag, v_tile, lane);
  }
  cp_async_wait<0>();
  __syncthreads();  // q_smem is reused to stage the output
  store_output<C>(seq, p.o_stride_l, o, q_smem, m_start, warp, lane);
}

}  // namespace kern
}  // namespace sigjit
