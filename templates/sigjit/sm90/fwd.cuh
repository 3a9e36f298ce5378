// Sigmoid-attention forward for sm_90a (Hopper): TMA + mbarrier ring + wgmma, warp-specialized.
//
// What: one CTA computes a BLOCK_M x D tile of O for one (sequence, head), BLOCK_M = 64 * C for
// C consumer warpgroups. Warpgroup 0 is the producer: one elected thread loads the Q tile once
// and streams K and V tiles through a STAGES-deep shared-memory ring with cp.async.bulk.tensor,
// each load completing on a "full" mbarrier; consumers free a stage's K as soon as S = Q K^T has
// read it and its V once O += P V has (one "empty" mbarrier each), so that the next K load does
// not wait for the previous tile's PV GEMM: with one shared empty barrier and two stages, K_{j}
// could only start loading when PV_{j-2} was done, at the end of iteration j-1, which exposed
// the whole TMA latency once per key tile. Consumer warpgroup w owns query rows [64w, 64w + 64)
// of the tile: per key tile it computes S = Q K^T with wgmma (A and B from 128B-swizzled shared
// memory, both K-major), the sigmoid in registers (same fold, masks and fast/exact modes as
// sm80/fwd.cuh), packs P to 16-bit A fragments in registers (the accumulator layout is the
// A-fragment layout, see sm90/primitives.cuh) and accumulates O += P V with register-A wgmma,
// V read as an N-major B operand straight from its row-major tile. O is written from registers
// with masked stores.
// Why this shape: the tensor cores do the two GEMMs asynchronously, so the MUFU-bound sigmoid
// can overlap them. With OVERLAP, iteration j issues S_j = Q K_j^T and O += P_{j-1} V_{j-1}
// back to back, waits only for S_j, and runs the sigmoid of S_j while PV_{j-1} is still on the
// tensor cores (FlashAttention-3's intra-warpgroup pipelining, minus the softmax rescale that
// sigmoid does not need). With two consumer warpgroups the SM also interleaves one warpgroup's
// sigmoid with the other's GEMMs. setmaxnreg moves registers from the producer (24) to the
// consumers: 240 when C = 2, 160 when C = 3 (with C = 1 every thread already has up to 255).
// C = 3 (BLOCK_M 192) feeds each K/V tile to three warpgroups, whose sigmoids and GEMMs the SM
// interleaves without turns; it fits hd 64 up to 128 keys and hd 128 at 64 keys.
// Tunables of issue 6: PINGPONG (the two consumer warpgroups take turns issuing their GEMMs on
// named barriers, see turn_begin and consume; the default with the score bias at hd 128),
// FMA_QUARTERS (that share of the sigmoids computed by the FMA-only polynomial of
// common/sigmoid_poly.h, no MUFU op; slower wherever measured: the polynomial's 16 instructions per
// score cost more issue slots than MUFU saves)
// and persistent scheduling (FwdSm90PersistentConfig: a grid of about one CTA per SM loops over
// the work tiles, see fwd_sm90_persistent; faster up to L 2048, the default there: see
// sm90_persistent_pays). All verified on an H200 (2026-12-03); the tuner picks per spec and
// bucket.
// Cost: per score 4*D FLOP of wgmma + one MUFU op (fast) or two (exact); shared memory
// 2 * D * (BLOCK_M + 2 * STAGES * BLOCK_N) bytes; registers per consumer thread about
// D/2 (O) + BLOCK_N/2 (S) + BLOCK_N/4 (P).
// Semantics (must match sm80/fwd.cuh): the causal diagonal of causal_diagonal_offset; -log(n_k) or scalar bias;
// optional per-key score bias; keys at or past the sequence end inside a tile get P = 0 (TMA
// reads them: the next varlen sequence's rows, the padded layout's padding, or zeros past the
// buffer); rows past len_q are never written except that the padded layout writes zeros up to
// seqlen_q; wholly padded tiles load nothing.
// Known difference: a non-finite value stored in the padding of V inside the last key tile
// reaches O as 0 * inf = NaN (sm80 never reads it); finite padding is harmless.
#pragma once

#include "sigjit/common/sequence.cuh"
#include "sigjit/sm90/fwd_limits.h"
#include "sigjit/sm90/fwd_params.h"
#include "sigjit/sm90/fp8_layout.h"
#include "sigjit/sm90/primitives.cuh"
#include "sigjit/sm90/wgmma_fp8_ops.cuh"
#include "sigjit/common/sigmoid_poly.h"
#include "sigjit/sm90/tile_schedule.h"

namespace sigjit {
namespace kern {

template <int HEAD_DIM_, int BLOCK_N_, int CONSUMERS_, int STAGES_, bool OVERLAP_, bool IS_BF16_, int LAYOUT_, bool CAUSAL_, int BIAS_MODE_,
          bool HAS_SCORE_BIAS_, bool EXACT_SIGMOID_, bool PINGPONG_ = false, int FMA_QUARTERS_ = 0, bool CAUSAL_TOP_LEFT_ = false>
struct FwdSm90Config {
  static constexpr int kHeadDim = HEAD_DIM_;
  static constexpr int kBlockN = BLOCK_N_;
  static constexpr int kConsumers = CONSUMERS_;
  static constexpr int kBlockM = 64 * kConsumers;
  static constexpr int kStages = STAGES_;
  static constexpr bool kOverlap = OVERLAP_;
  static constexpr bool kBf16 = IS_BF16_;
  static constexpr int kLayout = LAYOUT_;
  static constexpr bool kCausal = CAUSAL_;
  static constexpr bool kCausalTopLeft = CAUSAL_ && CAUSAL_TOP_LEFT_;  // see causal_diagonal_offset
  static constexpr int kBiasMode = BIAS_MODE_;
  static constexpr bool kScoreBias = HAS_SCORE_BIAS_;
  static constexpr bool kExact = EXACT_SIGMOID_;
  // Ping-pong: the consumer warpgroups take turns issuing their GEMMs (see turn_begin and consume).
  static constexpr bool kPingpong = PINGPONG_;
  // Of each thread's 4 scores per n8 column block, elements e < kFmaQuarters take the FMA-only
  // sigmoid (common/sigmoid_poly.h), the rest MUFU: a fraction kFmaQuarters / 4 of all scores.
  static constexpr int kFmaQuarters = FMA_QUARTERS_;
  // Named barriers of the ping-pong turns: kTurnBarrier + w is warpgroup w's turn (0 is
  // __syncthreads'); 256 = both consumer warpgroups' threads take part in each.
  static constexpr int kTurnBarrier = 1;
  static constexpr int kTurnThreads = 256;

  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kChunksPerRow = kHeadDim / 8;  // 16-byte chunks per row (zero-row stores)
  static constexpr int kColBlocks = kHeadDim / 64;    // 64-column (128-byte) blocks per row
  static constexpr int kSAcc = kBlockN / 2;           // S accumulators per consumer thread
  static constexpr int kOAcc = kHeadDim / 2;          // O accumulators per consumer thread
  static constexpr int kPSteps = kBlockN / 16;        // k16 steps of O += P V
  static constexpr int kQBlockBytes = kBlockM * 128;
  static constexpr int kKVBlockBytes = kBlockN * 128;
  static constexpr int kQBytes = kBlockM * kHeadDim * 2;
  static constexpr int kKVBytes = kBlockN * kHeadDim * 2;  // one K or one V tile
  // Shared memory, from a 1024-byte aligned base (the 128B swizzle atom): Q, K ring, V ring,
  // then the mbarriers: q_full, k_full[S], v_full[S], k_empty[S], v_empty[S] (and q_empty when
  // persistent, see FwdSm90PersistentConfig).
  static constexpr int kKOffset = kQBytes;
  static constexpr int kVOffset = kKOffset + kStages * kKVBytes;
  static constexpr int kBarOffset = kVOffset + kStages * kKVBytes;
  static constexpr int kBarriers = 1 + 4 * kStages;
  // + 1024: the dynamic shared memory base is only guaranteed 16-byte aligned.
  static constexpr int kSmemBytes = sm90::fwd_smem_bytes(kHeadDim, kBlockM, kBlockN, kStages, false);
  static_assert(kSmemBytes == kBarOffset + 8 * kBarriers + 1024, "sm90/fwd_limits.h: fwd_smem_bytes disagrees with the layout above");
  // setmaxnreg budgets: two consumers 128 * 24 + 256 * 240 = 64512, three (BLOCK_M 192, 512
  // threads) 128 * 24 + 384 * 160 = 64512, of 65536 registers.
  static constexpr bool kRebalanceRegs = kConsumers >= 2;
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = kConsumers == 3 ? 160 : 240;
  // What the O, S and P fragments may take of kConsumerRegs (the rest: addresses, loop state,
  // the sigmoid's temporaries), from ptxas's reports (CUDA 13.0) over every feature.
  static constexpr int kFragmentRegs = sm90::fwd_fragment_regs_limit(kConsumers);

  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256, "sm90 family: head dim 64, 128 or 256 (whole 128-byte swizzle rows)");
  static_assert(kBlockN % 16 == 0 && kBlockN >= 16 && kBlockN <= 256, "sm90 BLOCK_N: a multiple of 16 in [16, 256] (wgmma N and the TMA box limit)");
  static_assert(kConsumers >= 1 && kConsumers <= 3, "sm90 family: 1, 2 or 3 consumer warpgroups");
  static_assert(kStages >= 2 && kStages <= 4, "sm90 pipeline stages: 2..4");
  static_assert(kSmemBytes <= sm90::kSmemLimit, "sm90 tile config exceeds the 227 KB of shared memory per block");
  static_assert(sm90::fwd_fragment_regs(kHeadDim, kBlockN) <= kFragmentRegs,
                "sm90: O + S + P fragments exceed the consumer threads' registers: the kernel would spill");
  static_assert(kLayout >= kDense && kLayout <= kVarlen, "unknown layout");
  static_assert(!kPingpong || kConsumers == 2, "sm90 ping-pong needs 2 consumer warpgroups");
  static_assert(kFmaQuarters >= 0 && kFmaQuarters <= 4, "sm90 FMA-sigmoid quarters: 0..4");
};

// Persistent scheduling (config suffix _p, see fwd_sm90_persistent): a config of its own built
// on FwdSm90Config rather than one more template parameter of it, because the PTX names every
// static member of the config with all its template arguments: a new parameter would change the
// PTX of every existing config. One more mbarrier, q_empty, after the others (so that no other
// offset moves): the consumers free the Q buffer for the next tile's load.
template <class Base>
struct FwdSm90PersistentConfig : Base {
  static constexpr int kBarriers = Base::kBarriers + 1;
  static constexpr int kSmemBytes = Base::kSmemBytes + 8;  // fwd_smem_bytes(..., persistent): the q_empty barrier
  static_assert(kSmemBytes <= sm90::kSmemLimit, "sm90 tile config exceeds the 227 KB of shared memory per block");
};

// FP8 forward (issue 22; sm90/fp8_layout.h says where V and P live): e4m3 Q, K and V, f32
// accumulators, bf16 O, built on a bf16 base config (whose kBf16 then names O's type). A wrapper
// like the persistent one, so that no existing config's PTX changes. What differs: one byte an
// element (Q and K rows of head_dim bytes, one swizzled column block: 128-byte rows in the 128B
// swizzle at hd 128, 64-byte rows in the 64B swizzle at hd 64), S = Q K^T in k32 steps of FP8
// wgmma, V read as the prologue's V^T tile (head_dim rows of BLOCK_N = 128 keys, K-major, as FP8
// wgmma needs), P packed to e4m3 (times 2^8) in k32 steps, the descale factors folded into the
// sigmoid's scale and O's, and a prologue kernel that writes V^T (fwd_sm90_fp8_vt_prologue).
// Wrap it in FwdSm90PersistentConfig for the persistent schedule, never the other way round.
template <class Base>
struct FwdSm90Fp8Config : Base {
  static constexpr int kRowBytes = Base::kHeadDim;  // one e4m3 per byte
  static constexpr int kColBlocks = 1;
  static constexpr int kQBlockBytes = Base::kBlockM * kRowBytes;
  static constexpr int kKVBlockBytes = Base::kBlockN * kRowBytes;
  static constexpr int kQBytes = kQBlockBytes;
  static constexpr int kKVBytes = Base::kBlockN * Base::kHeadDim;  // a K tile, or a V^T tile (head_dim rows of BLOCK_N keys)
  static constexpr int kPSteps = Base::kBlockN / 32;               // k32 steps of O += P V
  static constexpr int kKOffset = kQBytes;
  static constexpr int kVOffset = kKOffset + Base::kStages * kKVBytes;
  static constexpr int kBarOffset = kVOffset + Base::kStages * kKVBytes;
  static constexpr int kSmemBytes = sm90::fwd_smem_bytes(Base::kHeadDim, Base::kBlockM, Base::kBlockN, Base::kStages, false, 1);
  static_assert(kSmemBytes == kBarOffset + 8 * Base::kBarriers + 1024, "sm90/fwd_limits.h: fwd_smem_bytes disagrees with the FP8 layout");
  static_assert(Base::kBf16, "the FP8 forward writes bf16 O: build it on a bf16 base config");
  static_assert(Base::kHeadDim == 64 || Base::kHeadDim == 128, "FP8 forward: head dim 64 or 128");
  static_assert(Base::kBlockN == 128, "FP8 forward: BLOCK_N 128 (each V^T row one 128-byte swizzle row)");
  static_assert(sm90::fwd_fp8_fragment_regs(Base::kHeadDim, Base::kBlockN) <= Base::kFragmentRegs,
                "sm90 FP8: O + S + P fragments exceed the consumer threads' registers: the kernel would spill");
};

// Whether C is persistent, as a constant function (a static data member would be emitted into
// the PTX of every config).
template <class C>
struct Sm90Schedule {
  static __device__ constexpr bool persistent() { return false; }
};
template <class Base>
struct Sm90Schedule<FwdSm90PersistentConfig<Base>> {
  static __device__ constexpr bool persistent() { return true; }
};

// Whether C is an FP8 config (seen through the persistent wrapper), as a constant function.
template <class C>
struct Sm90Fp8 {
  static __device__ constexpr bool on() { return false; }
};
template <class Base>
struct Sm90Fp8<FwdSm90Fp8Config<Base>> {
  static __device__ constexpr bool on() { return true; }
};
template <class Base>
struct Sm90Fp8<FwdSm90PersistentConfig<Base>> : Sm90Fp8<Base> {};

// The FP8 parameter block around the 16-bit one (its first member: the kernel's own
// __grid_constant__ parameter, so the cast stays inside the parameter object).
__device__ __forceinline__ const SigjitFwdSm90Fp8Params& fp8_params(const SigjitFwdSm90Params& base) {
  return *reinterpret_cast<const SigjitFwdSm90Fp8Params*>(&base);
}

// Buffer rows where this (sequence, head) starts: varlen rows of the packed buffers (clamped
// like locate_sequence), else 0 with the batch index as the tensor maps' outer coordinate.
template <class C>
__device__ __forceinline__ void sequence_origin(const SigjitFwdParams& p, int b, int& q_row0, int& k_row0, int& batch_coord) {
  if (C::kLayout == kVarlen) {
    q_row0 = clamp_len(p.cu_seqlens_q[b], p.total_q);
    k_row0 = clamp_len(p.cu_seqlens_k[b], p.total_k);
    batch_coord = 0;
  } else {
    q_row0 = 0;
    k_row0 = 0;
    batch_coord = b;
  }
}

// Shared-memory addresses of one CTA's buffers.
template <class C>
struct Sm90Smem {
  u32 base;
  __device__ __forceinline__ u32 q() const { return base; }
  __device__ __forceinline__ u32 k(int stage) const { return base + C::kKOffset + stage * C::kKVBytes; }
  __device__ __forceinline__ u32 v(int stage) const { return base + C::kVOffset + stage * C::kKVBytes; }
  __device__ __forceinline__ u32 q_full() const { return base + C::kBarOffset; }
  __device__ __forceinline__ u32 k_full(int stage) const { return base + C::kBarOffset + 8 * (1 + stage); }
  __device__ __forceinline__ u32 v_full(int stage) const { return base + C::kBarOffset + 8 * (1 + C::kStages + stage); }
  __device__ __forceinline__ u32 k_empty(int stage) const { return base + C::kBarOffset + 8 * (1 + 2 * C::kStages + stage); }
  __device__ __forceinline__ u32 v_empty(int stage) const { return base + C::kBarOffset + 8 * (1 + 3 * C::kStages + stage); }
  __device__ __forceinline__ u32 q_empty() const { return base + C::kBarOffset + 8 * (1 + 4 * C::kStages); }  // persistent only
};

template <class C>
__device__ __forceinline__ void init_barriers(const Sm90Smem<C>& sm) {
  mbarrier_init(sm.q_full(), 1);
  for (int s = 0; s < C::kStages; ++s) {
    mbarrier_init(sm.k_full(s), 1);  // the producer's arrive.expect_tx; TMA adds the bytes
    mbarrier_init(sm.v_full(s), 1);
    mbarrier_init(sm.k_empty(s), C::kConsumers * 128);  // every consumer thread releases
    mbarrier_init(sm.v_empty(s), C::kConsumers * 128);
  }
  if (Sm90Schedule<C>::persistent()) mbarrier_init(sm.q_empty(), C::kConsumers * 128);
  fence_barrier_init();
}

// The producer: one thread issues every load of one work tile, in consumption order. `ring0`
// counts the ring uses of the CTA's earlier tiles (0 unless persistent): ring use u = ring0 + j
// goes to stage u % STAGES, so the mbarrier phases run on across tiles without a re-init.
template <class C>
__device__ __forceinline__ void produce(const SigjitFwdSm90Params& params, const Sm90Smem<C>& sm, int b, int h, int m_start, int n_blocks,
                                        int ring0) {
  const SigjitFwdParams& p = params.p;
  int q_row0, k_row0, batch;
  sequence_origin<C>(p, b, q_row0, k_row0, batch);
  const int h_kv = h / p.kv_group;
  mbarrier_arrive_expect_tx(sm.q_full(), C::kQBytes);
  tma_load_tile<C::kColBlocks, C::kQBlockBytes>(sm.q(), params.q_map, sm.q_full(), q_row0 + m_start, h, batch);
  for (int j = 0; j < n_blocks; ++j) {
    const int u = ring0 + j;
    const int stage = u % C::kStages;
    // Use u of a stage needs use u - STAGES released: that is the (u / STAGES - 1)-th completed
    // phase of its empty barrier (K and V each have their own).
    const int released_parity = (u / C::kStages - 1) & 1;
    if (u >= C::kStages) mbarrier_wait(sm.k_empty(stage), released_parity);
    const int row = k_row0 + j * C::kBlockN;
    mbarrier_arrive_expect_tx(sm.k_full(stage), C::kKVBytes);
    tma_load_tile<C::kColBlocks, C::kKVBlockBytes>(sm.k(stage), params.k_map, sm.k_full(stage), row, h_kv, batch);
    if (u >= C::kStages) mbarrier_wait(sm.v_empty(stage), released_parity);
    mbarrier_arrive_expect_tx(sm.v_full(stage), C::kKVBytes);
    if constexpr (Sm90Fp8<C>::on()) {  // V^T: box {BLOCK_N keys, head_dim rows} at this sequence's columns
      const long long column = sm90::fp8_vt_column0(C::kLayout == kVarlen, b, k_row0) + (long long)j * C::kBlockN;
      tma_load_4d(sm.v(stage), params.v_map, sm.v_full(stage), (int)column, 0, h_kv, batch);
    } else {
      tma_load_tile<C::kColBlocks, C::kKVBlockBytes>(sm.v(stage), params.v_map, sm.v_full(stage), row, h_kv, batch);
    }
  }
}

// Per-warpgroup state of a consumer.
struct Sm90Rows {
  int wg_row0;        // first query row (in the sequence) of this warpgroup
  int causal_offset;  // causal_diagonal_offset: len_k - len_q, or 0 top-left
  int len_k;
};

// S = Q K_j^T for this warpgroup's 64 rows: D/16 wgmma k-steps, one commit group.
template <class C>
__device__ __forceinline__ void issue_scores(float (&s)[C::kSAcc], const Sm90Smem<C>& sm, int wg, int stage) {
  if constexpr (Sm90Fp8<C>::on()) {  // D/32 k32 steps of 32 bytes inside each row
    const u64 a0 = kmajor_descriptor_bytes(sm.q() + wg * 64 * C::kRowBytes, C::kRowBytes);
    const u64 b0 = kmajor_descriptor_bytes(sm.k(stage), C::kRowBytes);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < C::kHeadDim / 32; ++kk)
      WgmmaFp8<C::kBlockN>::ss(s, descriptor_advance(a0, kk * 32), descriptor_advance(b0, kk * 32), kk > 0 ? 1 : 0);
    wgmma_commit();
  } else {
    const u64 a0 = kmajor_descriptor(sm.q(), wg * 64, 0);
    const u64 b0 = kmajor_descriptor(sm.k(stage), 0, 0);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < C::kHeadDim / 16; ++kk) {
      const int block = kk / 4, k_bytes = (kk % 4) * 32;
      const u64 a = descriptor_advance(a0, block * C::kQBlockBytes + k_bytes);
      const u64 b = descriptor_advance(b0, block * C::kKVBlockBytes + k_bytes);
      Wgmma<C::kBlockN>::template ss<C::kBf16, 0>(s, a, b, kk > 0 ? 1 : 0);
    }
    wgmma_commit();
  }
}

// O += P V_j: BLOCK_N/16 register-A wgmma k-steps over the N-major V tile, one commit group.
template <class C>
__device__ __forceinline__ void issue_pv(float (&o)[C::kOAcc], const u32 (&pf)[C::kPSteps][4], const Sm90Smem<C>& sm, int stage) {
  if constexpr (Sm90Fp8<C>::on()) {  // V^T: head_dim rows of 128 key bytes, K-major
    const u64 b0 = kmajor_descriptor_bytes(sm.v(stage), 128);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < C::kPSteps; ++kk) WgmmaFp8<C::kHeadDim>::rs(o, pf[kk], descriptor_advance(b0, kk * 32), 1);
    wgmma_commit();
  } else {
    const u64 b0 = mnmajor_descriptor(sm.v(stage), 0, C::kKVBlockBytes);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < C::kPSteps; ++kk) {
      const u64 b = descriptor_advance(b0, kk * 16 * 128);
      Wgmma<C::kHeadDim>::template rs<C::kBf16, 1>(o, pf[kk], b, 1);
    }
    wgmma_commit();
  }
}

// P = sigmoid(scale * S + bias + s_k) in place; MASKED zeroes keys past the sequence end and,
// when causal, keys right of the diagonal (causal_diagonal_offset).
// Elements e < kFmaQuarters of each n8 block (e = 2 * half + e2) take the FMA-only sigmoid on
// the exact mode's fold (t = -x log2 e), in its fast or precise form as the mode asks.
template <class C, bool MASKED>
__device__ __forceinline__ void sigmoid_scores(float (&s)[C::kSAcc], const SigmoidFold<C::kExact>& sig, const SigmoidFold<true>& poly_fold,
                                               const SeqSlice& seq, float bias, const Sm90Rows& rows, int key_base, int lane, int warp) {
  const int row0 = rows.wg_row0 + warp * 16 + lane / 4;
#pragma unroll
  for (int nt = 0; nt < C::kBlockN / 8; ++nt) {
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      const int key = key_base + nt * 8 + (lane % 4) * 2 + e2;
      float c = bias;
      if (C::kScoreBias) c += key < seq.len_k ? __ldg(seq.score_bias + key) : 0.0f;
      const float addend = SigmoidFold<C::kExact>::addend(c);
      const float poly_addend = SigmoidFold<true>::addend(c);  // dead unless kFmaQuarters > 0
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int e = half * 2 + e2;
        float p;
        if (e < C::kFmaQuarters) p = poly::sigmoid_poly<C::kExact>(__fmaf_rn(s[4 * nt + e], poly_fold.mul, poly_addend));
        else p = sig(s[4 * nt + e], addend);
        if (MASKED) {
          const int row = row0 + half * 8;
          int limit = rows.len_k;
          if (C::kCausal) limit = row + rows.causal_offset + 1 < limit ? row + rows.causal_offset + 1 : limit;
          p = key < limit ? p : 0.0f;
        }
        s[4 * nt + e] = p;
      }
    }
  }
}

template <class C>
__device__ __forceinline__ void sigmoid_tile_sm90(float (&s)[C::kSAcc], const SigmoidFold<C::kExact>& sig, const SigmoidFold<true>& poly_fold,
                                                  const SeqSlice& seq, float bias, const Sm90Rows& rows, int j, int lane, int warp) {
  const int key_base = j * C::kBlockN;
  const bool ragged = key_base + C::kBlockN > rows.len_k;
  const bool diagonal = C::kCausal && key_base + C::kBlockN - 1 > rows.wg_row0 + rows.causal_offset;
  if (ragged || diagonal) sigmoid_scores<C, true>(s, sig, poly_fold, seq, bias, rows, key_base, lane, warp);
  else sigmoid_scores<C, false>(s, sig, poly_fold, seq, bias, rows, key_base, lane, warp);
}

template <class C>
__device__ __forceinline__ void pack_p(u32 (&pf)[C::kPSteps][4], const float (&s)[C::kSAcc]) {
  if constexpr (Sm90Fp8<C>::on()) {  // e4m3(P 2^8), four scores a register (sm90/fp8_layout.h)
    constexpr float kScale = (float)(1 << sm90::kFp8PScaleLog2);
#pragma unroll
    for (int kk = 0; kk < C::kPSteps; ++kk)
#pragma unroll
      for (int q = 0; q < 4; ++q)
        pf[kk][q] = pack_e4m3x4(s[16 * kk + sm90::fp8_p_source(q, 0)] * kScale, s[16 * kk + sm90::fp8_p_source(q, 1)] * kScale,
                                s[16 * kk + sm90::fp8_p_source(q, 2)] * kScale, s[16 * kk + sm90::fp8_p_source(q, 3)] * kScale);
  } else {
#pragma unroll
    for (int kk = 0; kk < C::kPSteps; ++kk) accumulator_to_a_fragment<C::kBf16>(pf[kk], s, kk);
  }
}

// Ring use j's K once S_j has completed, its V once O += P_j V_j has.
template <class C>
__device__ __forceinline__ void release_k(const Sm90Smem<C>& sm, int j) { mbarrier_arrive(sm.k_empty(j % C::kStages)); }

template <class C>
__device__ __forceinline__ void release_v(const Sm90Smem<C>& sm, int j) { mbarrier_arrive(sm.v_empty(j % C::kStages)); }

template <class C>
__device__ __forceinline__ void wait_k(const Sm90Smem<C>& sm, int j) { mbarrier_wait(sm.k_full(j % C::kStages), (j / C::kStages) & 1); }

template <class C>
__device__ __forceinline__ void wait_v(const Sm90Smem<C>& sm, int j) { mbarrier_wait(sm.v_full(j % C::kStages), (j / C::kStages) & 1); }

// Writes this thread's O rows (masked to len_q; the padded layout's rows up to rows_to_clear
// as zeros). With zero_only every written row is zero (no key was visible). Each quad transposes
// its row's four 8-column tiles (transpose_quad_words) so that a lane stores 8 consecutive columns
// at once (the host checks 16-byte pointers and row strides); the stores are predicated, so every
// lane takes part in the shuffles.
template <class C>
__device__ __forceinline__ void store_rows_sm90(const SeqSlice& seq, long long o_row_stride, const float (&o)[C::kOAcc], int row0, int lane,
                                                bool zero_only) {
  static_assert(C::kHeadDim % 32 == 0, "16-byte O stores: whole groups of four 8-column tiles");
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + half * 8;
    const bool valid = row < seq.len_q;
    const bool write = valid || row < seq.rows_to_clear;
    u16* out = seq.o + (i64)row * o_row_stride + (lane % 4) * 8;
#pragma unroll
    for (int group = 0; group < C::kHeadDim / 32; ++group) {
      u32 w[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int dt = group * 4 + j;
        w[j] = valid && !zero_only ? pack_half2<C::kBf16>(o[4 * dt + 2 * half], o[4 * dt + 2 * half + 1]) : 0u;
      }
      transpose_quad_words(w, lane);
      store_16_if(out + group * 32, w, write);
    }
  }
}

// Where this consumer thread sits in a work tile: its warpgroup, warp, lane and rows.
struct Sm90Thread {
  int wg, warp, lane;
  Sm90Rows rows;
  int my_row0;  // the first of this thread's two O rows (the other is 8 below)
};

// The per-tile prologue both consumer schedules share: this thread's place and O = 0.
template <class C>
__device__ __forceinline__ Sm90Thread consumer_thread(const SeqSlice& seq, int m_start, float (&o)[C::kOAcc]) {
  // Broadcast from lane 0 so that the compiler knows the warpgroup index is warp-uniform and
  // keeps the Q descriptors in uniform registers (no R2UR per wgmma).
  const int wg = __shfl_sync(0xFFFFFFFFu, (int)threadIdx.x / 128 - 1, 0);
  const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const Sm90Rows rows{m_start + wg * 64, causal_diagonal_offset<C>(seq), seq.len_k};
  const Sm90Thread t{wg, warp, lane, rows, rows.wg_row0 + warp * 16 + lane / 4};
#pragma unroll
  for (int i = 0; i < C::kOAcc; ++i) o[i] = 0.0f;
  return t;
}

// Persistent kernels hand the Q buffer back to the producer once every S = Q K^T wgmma of the
// tile has completed (the callers have waited for all of them), so the next tile's Q load
// overlaps this tile's last O += P V and its epilogue. The epilogue stores O from registers to
// global memory: no generic-proxy shared-memory write feeds a TMA or wgmma read, so no
// fence.proxy.async is needed, and wgmma's reads of Q are complete when wgmma.wait_group returns.
template <class C>
__device__ __forceinline__ void release_q(const Sm90Smem<C>& sm) {
  if (Sm90Schedule<C>::persistent()) mbarrier_arrive(sm.q_empty());
}

// A consumer warpgroup whose 64 query rows all lie past the sequence end (the last query tile of
// a short or ragged sequence) does no math: it only keeps the ring's accounting, releasing each
// K and V use once it has landed, so that the other warpgroups get the tensor cores and MUFU to
// themselves. Waiting for a use's "full" phase before arriving on its "empty" barrier keeps the
// arrival in the right phase: that load was issued only after use u - STAGES was released by all.
// The persistent kernel's Q release likewise waits for this tile's Q to land, so that it counts
// toward this tile's q_empty phase and not the previous tile's. Not with ping-pong, whose turns
// need both warpgroups.
template <class C>
__device__ __forceinline__ void skip_tile(const Sm90Smem<C>& sm, int n_blocks, int ring0, int q_parity) {
  for (int j = 0; j < n_blocks; ++j) {
    wait_k(sm, ring0 + j);
    release_k(sm, ring0 + j);
    wait_v(sm, ring0 + j);
    release_v(sm, ring0 + j);
  }
  if (Sm90Schedule<C>::persistent()) {
    mbarrier_wait(sm.q_full(), q_parity);
    release_q(sm);
  }
}

// Ping-pong (FlashAttention-3's inter-warpgroup schedule, written for this kernel): the two
// consumer warpgroups take turns issuing their wgmma groups, so that while one warpgroup's
// GEMMs run on the tensor cores the other computes its sigmoid on MUFU/FMA, instead of both
// reaching the MUFU-bound phase at once and leaving the tensor cores idle.
// Turns: named barrier kTurnBarrier + w is warpgroup w's. Warpgroup w begins an issue phase
// with bar.sync on its own barrier and ends it with bar.arrive on the other's (each barrier
// completes with 128 syncs + 128 arrivals = kTurnThreads). Warpgroup 1 arrives once on
// warpgroup 0's barrier up front so that warpgroup 0 goes first.
// Every warpgroup runs exactly n_blocks + 1 issue phases (S_0; S_j with PV_{j-1} for j in
// 1..n_blocks-1; PV_{n_blocks-1}) per work tile, n_blocks being the same for both, so:
//   barrier 0: syncs by wg 0 = n + 1; arrivals by wg 1 = 1 (up front) + n (after its phases
//              0..n-1; it skips the arrival after its last phase) = n + 1;
//   barrier 1: syncs by wg 1 = n + 1; arrivals by wg 0 = n + 1 (after every phase).
// So no bar.sync can wait for an arrival that never comes, and no arrival is left over at exit.
// Persistent kernels repeat this per tile: wg 1's up-front arrival for tile t + 1 comes after its
// last bar.sync of tile t, which completes only after wg 0's last arrival of tile t, which wg 0
// makes after its last bar.sync of tile t: the barrier-0 generation of tile t is complete first.
// Turns alternate strictly, so a barrier never has two generations pending at once.
// Deadlock freedom with the mbarrier ring: a warpgroup waits for its K tile before taking its
// turn (V_{j-1}, waited inside the turn, was issued by the producer before K_j, so it completes
// on TMA alone), and releases (empty mbarrier arrivals) never wait for a turn except through the
// phase of the same iteration; the data of phase j needs stage uses up to j - STAGES released,
// which both warpgroups did in iterations <= j - 1 (STAGES >= 2), before the turn of phase j.
// Barrier ids and counts as immediates (a warpgroup-uniform branch picks one): no registers held
// for them across the loop. Without ping-pong (C::kPingpong false) the turns are empty.
template <class C>
__device__ __forceinline__ void turn_first(int wg) {  // warpgroup 0 goes first
  if (C::kPingpong && wg == 1) asm volatile("bar.arrive %0, %1;\n" ::"n"(C::kTurnBarrier), "n"(C::kTurnThreads) : "memory");
}

template <class C>
__device__ __forceinline__ void turn_begin(int wg) {
  if (!C::kPingpong) return;
  if (wg == 0) asm volatile("bar.sync %0, %1;\n" ::"n"(C::kTurnBarrier), "n"(C::kTurnThreads) : "memory");
  else asm volatile("bar.sync %0, %1;\n" ::"n"(C::kTurnBarrier + 1), "n"(C::kTurnThreads) : "memory");
}

template <class C>
__device__ __forceinline__ void turn_end(int wg, bool last_phase) {
  if (!C::kPingpong) return;
  if (wg == 0) asm volatile("bar.arrive %0, %1;\n" ::"n"(C::kTurnBarrier + 1), "n"(C::kTurnThreads) : "memory");
  else if (!last_phase) asm volatile("bar.arrive %0, %1;\n" ::"n"(C::kTurnBarrier), "n"(C::kTurnThreads) : "memory");
}

// The FP8 descale factors of (sequence b, query head h): S's, q_descale k_descale, and O's,
// v_descale 2^-8 (P was stored times 2^8). Unused (and compiled away) for 16-bit configs.
struct Sm90Descale {
  float score, out;
};

template <class C>
__device__ __forceinline__ Sm90Descale fp8_descale(const SigjitFwdSm90Params& params, int b, int h) {
  if constexpr (!Sm90Fp8<C>::on()) {
    return {1.0f, 1.0f};
  } else {
    const SigjitFwdSm90Fp8Params& f = fp8_params(params);
    const i64 at = (i64)b * f.descale_stride_b + (i64)(h / params.p.kv_group) * f.descale_stride_h;
    const float q = f.q_descale ? __ldg(f.q_descale + at) : 1.0f;
    const float k = f.k_descale ? __ldg(f.k_descale + at) : 1.0f;
    const float v = f.v_descale ? __ldg(f.v_descale + at) : 1.0f;
    return {q * k, v * (1.0f / (float)(1 << sm90::kFp8PScaleLog2))};
  }
}

// One work tile of one consumer warpgroup, with or without ping-pong turns. `ring0`: ring uses
// of the CTA's earlier tiles; `q_parity`: phase parity of this tile's Q load on q_full (both 0
// unless persistent). Per key tile j: S_j = Q K_j^T, the sigmoid, P_j packed for O += P_j V_j.
// With OVERLAP or ping-pong, S_j and PV_{j-1} go to the tensor cores in one issue phase (one
// turn); without either, PV_{j-1} completes before S_j is issued.
template <class C>
__device__ __forceinline__ void consume(const SigjitFwdSm90Params& params, const Sm90Smem<C>& sm, const SeqSlice& seq, int b, int h, int m_start,
                                        int n_blocks, int ring0, int q_parity) {
  const SigjitFwdParams& p = params.p;
  float o[C::kOAcc];
  const Sm90Thread t = consumer_thread<C>(seq, m_start, o);
  const int wg = t.wg, warp = t.warp, lane = t.lane;
  const Sm90Rows& rows = t.rows;
  if (n_blocks == 0) {  // with ping-pong both warpgroups leave here (n_blocks is per tile): no turns taken
    store_rows_sm90<C>(seq, p.o_stride_l, o, t.my_row0, lane, true);
    return;
  }
  if (!C::kPingpong && rows.wg_row0 >= seq.len_q) {  // a last query tile: these 64 rows are past the sequence end
    skip_tile<C>(sm, n_blocks, ring0, q_parity);
    store_rows_sm90<C>(seq, p.o_stride_l, o, t.my_row0, lane, true);
    return;
  }
  const float bias = sequence_bias<C>(p, seq);
  const Sm90Descale descale = fp8_descale<C>(params, b, h);
  const float scale = Sm90Fp8<C>::on() ? p.scale * descale.score : p.scale;
  const SigmoidFold<C::kExact> sig(scale);
  const SigmoidFold<true> poly_fold(scale);
  float s[C::kSAcc];
  u32 pf[C::kPSteps][4];

  turn_first<C>(wg);
  mbarrier_wait(sm.q_full(), q_parity);
  wait_k(sm, ring0);
  turn_begin<C>(wg);
  issue_scores<C>(s, sm, wg, ring0 % C::kStages);
  turn_end<C>(wg, false);
  wgmma_wait<0>();
  pin_registers(s);
  release_k(sm, ring0);
  sigmoid_tile_sm90<C>(s, sig, poly_fold, seq, bias, rows, 0, lane, warp);
  pack_p<C>(pf, s);
  for (int j = 1; j < n_blocks; ++j) {
    const int u = ring0 + j;  // ring use of key tile j
    if (C::kOverlap || C::kPingpong) {
      // One phase: S_j and PV_{j-1} back to back (PV reads P_{j-1} from pf, S_j writes s).
      wait_k(sm, u);
      turn_begin<C>(wg);
      issue_scores<C>(s, sm, wg, u % C::kStages);
      wait_v(sm, u - 1);  // loaded with K_{j-1}: in practice never waits, so holding the turn is fine
      issue_pv<C>(o, pf, sm, (u - 1) % C::kStages);
      turn_end<C>(wg, false);
      if (C::kOverlap) {
        // The sigmoid of S_j runs while PV_{j-1} is still in flight, so it must work in place
        // on S (P_{j-1} is being read).
        wgmma_wait<1>();
        pin_registers(s);
        release_k(sm, u);
        sigmoid_tile_sm90<C>(s, sig, poly_fold, seq, bias, rows, j, lane, warp);
        wgmma_wait<0>();
        pin_registers(o);
        for (int kk = 0; kk < C::kPSteps; ++kk) pin_registers(pf[kk]);
      } else {
        wgmma_wait<0>();
        pin_registers(s);
        pin_registers(o);
        for (int kk = 0; kk < C::kPSteps; ++kk) pin_registers(pf[kk]);
        release_k(sm, u);
        sigmoid_tile_sm90<C>(s, sig, poly_fold, seq, bias, rows, j, lane, warp);
      }
      release_v(sm, u - 1);
      pack_p<C>(pf, s);
    } else {
      wait_v(sm, u - 1);
      issue_pv<C>(o, pf, sm, (u - 1) % C::kStages);
      wgmma_wait<0>();
      pin_registers(o);
      for (int kk = 0; kk < C::kPSteps; ++kk) pin_registers(pf[kk]);
      release_v(sm, u - 1);
      wait_k(sm, u);
      issue_scores<C>(s, sm, wg, u % C::kStages);
      wgmma_wait<0>();
      pin_registers(s);
      release_k(sm, u);
      sigmoid_tile_sm90<C>(s, sig, poly_fold, seq, bias, rows, j, lane, warp);
      pack_p<C>(pf, s);
    }
  }
  release_q(sm);
  const int last = ring0 + n_blocks - 1;
  wait_v(sm, last);
  turn_begin<C>(wg);
  issue_pv<C>(o, pf, sm, last % C::kStages);
  turn_end<C>(wg, true);
  wgmma_wait<0>();
  pin_registers(o);
  release_v(sm, last);
  if constexpr (Sm90Fp8<C>::on()) {
#pragma unroll
    for (int i = 0; i < C::kOAcc; ++i) o[i] *= descale.out;
  }
  store_rows_sm90<C>(seq, p.o_stride_l, o, t.my_row0, lane, false);
}

// ---- persistent scheduling (config suffix _p) ----------------------------------------------
// What: gridDim.x CTAs (the host launches min(tiles, SMs x CTAs per SM)) each take work items
// t = blockIdx.x + k * gridDim.x (a tile, or a causal unit of two), a static strided schedule
// (order and index -> tile mapping: sm90/tile_schedule.h); the barriers are initialised once and their phases run on across
// tiles (ring uses and Q loads are counted per CTA). Why: at L 512-1024 and for ragged batches
// the per-CTA prologue (barrier init, tensor-map fetch, first loads) and the wave tail cost as
// much as the math; a persistent CTA pays the prologue once and loads the next tile's K/V (and,
// once Q is released, its Q) while finishing the last one. Padded and varlen calls enumerate
// valid tiles only. Padded layout: rows past len_q must read as zeros; wholly padded tiles are
// not work tiles: warps 1-3 of the producer warpgroup (idle otherwise) write their zeros while
// the other warps compute, strided over the dense tile order.

// Valid query rows of sequence b, with locate_sequence's clamping (its pointer arithmetic is
// dead here and removed by the compiler).
template <class C>
struct Sm90QueryRows {
  const SigjitFwdParams& p;
  __device__ __forceinline__ int operator()(int b) const { return locate_sequence<C>(p, b, 0).len_q; }
};

template <class C>
__device__ __forceinline__ sched::Shape schedule_shape(const SigjitFwdParams& p) {
  return sched::Shape{p.batch, p.heads_q, p.seqlen_q};
}

template <class C>
__device__ __forceinline__ sched::TileCursor first_tile(const SigjitFwdParams& p) {
  return sched::first_tile<C::kBlockM, C::kLayout == kDense>((int)blockIdx.x, schedule_shape<C>(p), Sm90QueryRows<C>{p});
}

template <class C>
__device__ __forceinline__ bool locate_tile(const SigjitFwdParams& p, sched::TileCursor& c, sched::Tile& tile) {
  return sched::locate_tile<C::kBlockM, sched::kOrderFor<C::kCausal, C::kBlockM, C::kBlockN>, C::kLayout == kDense>(
      c, schedule_shape<C>(p), Sm90QueryRows<C>{p}, tile);
}

template <class C>
__device__ __forceinline__ void next_tile(sched::TileCursor& c) {
  sched::advance_tile<sched::kOrderFor<C::kCausal, C::kBlockM, C::kBlockN>>(c, (int)gridDim.x);
}

// The producer thread over all of the CTA's tiles. Before the Q load of every tile but the
// first it waits until the consumers released the previous Q (q_empty, phase = loads - 1).
template <class C>
__device__ __forceinline__ void produce_tiles(const SigjitFwdSm90Params& params, const Sm90Smem<C>& sm) {
  const SigjitFwdParams& p = params.p;
  int ring = 0, q_loads = 0;
  sched::Tile tile;
  for (sched::TileCursor c = first_tile<C>(p); locate_tile<C>(p, c, tile); next_tile<C>(c)) {
    const int n_blocks = key_tile_count<C>(locate_sequence<C>(p, tile.b, tile.h), tile.m_start);
    if (n_blocks == 0) continue;  // the consumers only write zeros
    if (q_loads > 0) mbarrier_wait(sm.q_empty(), (q_loads - 1) & 1);
    produce<C>(params, sm, tile.b, tile.h, tile.m_start, n_blocks, ring);
    ring += n_blocks;
    ++q_loads;
  }
}

// Every consumer thread walks the same tiles as the producer, counting ring uses and Q loads
// the same way, so each waits on the phases the producer's loads complete.
template <class C>
__device__ __forceinline__ void consume_tiles(const SigjitFwdSm90Params& params, const Sm90Smem<C>& sm) {
  const SigjitFwdParams& p = params.p;
  int ring = 0, q_loads = 0;
  sched::Tile tile;
  for (sched::TileCursor c = first_tile<C>(p); locate_tile<C>(p, c, tile); next_tile<C>(c)) {
    const SeqSlice seq = locate_sequence<C>(p, tile.b, tile.h);
    const int n_blocks = key_tile_count<C>(seq, tile.m_start);
    consume<C>(params, sm, seq, tile.b, tile.h, tile.m_start, n_blocks, ring, q_loads & 1);
    if (n_blocks > 0) {
      ring += n_blocks;
      ++q_loads;
    }
  }
}

// Padded layout: zeros for the wholly padded query tiles, by `threads` threads (index `tid`).
template <class C>
__device__ __forceinline__ void clear_padding_tiles(const SigjitFwdParams& p, int tid, int threads) {
  const sched::Shape shape = schedule_shape<C>(p);
  for (int t = blockIdx.x; t < sched::dense_tile_count<C::kBlockM>(shape); t += gridDim.x) {
    const sched::Tile tile = sched::dense_tile<C::kBlockM>(t, shape);
    if (tile.m_start < clamp_len(p.seq_lens_q[tile.b], p.seqlen_q)) continue;  // a work tile
    const int rows = (tile.m_start + C::kBlockM < p.seqlen_q ? tile.m_start + C::kBlockM : p.seqlen_q) - tile.m_start;
    u16* o = (u16*)p.o + (i64)tile.b * p.o_stride_b + (i64)tile.m_start * p.o_stride_l + (i64)tile.h * p.o_stride_h;
    for (int i = tid; i < rows * C::kChunksPerRow; i += threads) {
      *(uint4*)(o + (i64)(i / C::kChunksPerRow) * p.o_stride_l + (i % C::kChunksPerRow) * 8) = make_uint4(0, 0, 0, 0);
    }
  }
}

template <class C>
__device__ __forceinline__ void fwd_sm90_persistent(const SigjitFwdSm90Params& params) {
  extern __shared__ __align__(1024) unsigned char sm90_smem[];
  const Sm90Smem<C> sm{(shared_address(sm90_smem) + 1023u) & ~1023u};
  if (threadIdx.x == 0) init_barriers<C>(sm);
  __syncthreads();
  if (threadIdx.x < 128) {
    if (C::kRebalanceRegs) setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == 0) produce_tiles<C>(params, sm);
    else if (C::kLayout == kPadded && threadIdx.x >= 32) clear_padding_tiles<C>(params.p, threadIdx.x - 32, 96);
  } else {
    if (C::kRebalanceRegs) setmaxnreg_inc<C::kConsumerRegs>();
    consume_tiles<C>(params, sm);
  }
}

// One (query tile, head, sequence) per CTA on grid (query tiles, heads, batch), unless persistent.
template <class C>
__device__ __forceinline__ void fwd_sm90_kernel(const SigjitFwdSm90Params& params) {
  if (Sm90Schedule<C>::persistent()) {
    fwd_sm90_persistent<C>(params);
    return;
  }
  extern __shared__ __align__(1024) unsigned char sm90_smem[];
  const SigjitFwdParams& p = params.p;
  const int b = blockIdx.z, h = blockIdx.y;
  const int m_start = query_tile_start<C>();
  const SeqSlice seq = locate_sequence<C>(p, b, h);
  if (zero_padding_tile<C>(p, seq, m_start)) return;  // no loads for a tile of padding
  const int n_blocks = key_tile_count<C>(seq, m_start);

  const Sm90Smem<C> sm{(shared_address(sm90_smem) + 1023u) & ~1023u};
  if (threadIdx.x == 0) init_barriers<C>(sm);
  __syncthreads();

  // Role split: one branch per warpgroup role, as setmaxnreg requires.
  if (threadIdx.x < 128) {
    if (C::kRebalanceRegs) setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == 0 && n_blocks > 0) produce<C>(params, sm, b, h, m_start, n_blocks, 0);
  } else {
    if (C::kRebalanceRegs) setmaxnreg_inc<C::kConsumerRegs>();
    consume<C>(params, sm, seq, b, h, m_start, n_blocks, 0, 0);
  }
}

// ---- FP8: the V^T prologue and the entry point ----------------------------------------------
// fwd_sm90_fp8_vt_prologue writes V^T for the FP8 kernel (sm90/fp8_layout.h): on grid
// (column blocks of 64, heads_kv, batch), each CTA copies 64 keys x head_dim bytes of one
// (sequence, kv head) from V into shared memory (16-byte loads; keys past the sequence end read
// as zeros) and writes them out as head_dim rows of 64 columns, permuted within every 16 keys
// (16-byte stores). It writes every column from the sequence's origin to the next one's (dense:
// the slab's columns; padded: up to the end of the sequence's last key tile, past which the
// kernel reads nothing, so a ragged batch's padding costs no writes), so V^T holds no stale bytes
// where the main kernel's last tile reads past a sequence: those keys get P = 0, and their V must
// be finite (0 x NaN is NaN).
// Cost: one read and one write of V's valid rows (rounded up to BLOCK_N keys).
template <class C>
__device__ __forceinline__ void fwd_sm90_fp8_vt_prologue(const SigjitFwdSm90Fp8Params& f) {
  static_assert(Sm90Fp8<C>::on(), "the V^T prologue belongs to an FP8 config");
  constexpr int kKeys = 64, kChunks = C::kHeadDim / 16;  // 16-byte chunks of a V row
  __shared__ __align__(16) unsigned char tile[kKeys * C::kHeadDim];
  const SigjitFwdParams& p = f.base.p;
  const int b = blockIdx.z, h_kv = blockIdx.y, key0 = blockIdx.x * kKeys;
  const bool varlen = C::kLayout == kVarlen;
  int len_k, k_row0 = 0;
  if (varlen) {
    k_row0 = clamp_len(p.cu_seqlens_k[b], p.total_k);
    len_k = clamp_len(p.cu_seqlens_k[b + 1], p.total_k) - k_row0;
    len_k = len_k < 0 ? 0 : len_k;
  } else {
    len_k = C::kLayout == kPadded ? clamp_len(p.seq_lens_k[b], p.seqlen_k) : p.seqlen_k;
  }
  const long long column0 = sm90::fp8_vt_column0(varlen, b, k_row0);
  const long long tiles_end = (long long)(len_k + C::kBlockN - 1) / C::kBlockN * C::kBlockN;
  const long long span = C::kLayout == kDense ? f.vt_columns
                         : C::kLayout == kPadded ? (tiles_end < f.vt_columns ? tiles_end : f.vt_columns)
                         : b + 1 < p.batch       ? sm90::fp8_vt_column0(true, b + 1, clamp_len(p.cu_seqlens_k[b + 1], p.total_k)) - column0
                                                 : f.vt_columns - column0;
  if (key0 >= span) return;
  const unsigned char* v = (const unsigned char*)p.v + (varlen ? 0 : (i64)b * p.v_stride_b) + (i64)k_row0 * p.v_stride_l + (i64)h_kv * p.v_stride_h;
  for (int i = threadIdx.x; i < kKeys * kChunks; i += blockDim.x) {
    const int key = i / kChunks, chunk = i % kChunks;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (key0 + key < len_k) val = __ldg((const uint4*)(v + (i64)(key0 + key) * p.v_stride_l) + chunk);
    *(uint4*)(tile + key * C::kHeadDim + chunk * 16) = val;
  }
  __syncthreads();
  unsigned char* vt = f.vt + (varlen ? 0 : (i64)b * f.vt_stride_b) + (i64)h_kv * f.vt_stride_h + column0 + key0;
  const int columns = span - key0 < kKeys ? (int)(span - key0) : kKeys;  // a multiple of 16
  for (int i = threadIdx.x; i < C::kHeadDim * (columns / 16); i += blockDim.x) {
    const int d = i % C::kHeadDim, group = i / C::kHeadDim;
    u32 w[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      u32 word = 0;
#pragma unroll
      for (int t = 0; t < 4; ++t) word |= (u32)tile[(16 * group + sm90::fp8_pv_key(4 * r + t)) * C::kHeadDim + d] << (8 * t);
      w[r] = word;
    }
    *(uint4*)(vt + (i64)d * f.vt_columns + 16 * group) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

template <class C>
__device__ __forceinline__ void fwd_sm90_fp8_kernel(const SigjitFwdSm90Fp8Params& params) {
  static_assert(Sm90Fp8<C>::on(), "fwd_sm90_fp8_kernel needs an FP8 config (FwdSm90Fp8Config)");
  fwd_sm90_kernel<C>(params.base);
}

}  // namespace kern
}  // namespace sigjit
