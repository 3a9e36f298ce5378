// Sigmoid-attention fused backward for sm_90a (Hopper): TMA + mbarrier ring + wgmma,
// warp-specialized. The Hopper counterpart of dkdv_dq_fused_kernel (sm80/bwd.cuh).
//
// What: one CTA per (key block of BLOCK_N = 64 * C rows, kv head, sequence); consumer
// warpgroup w (of C) owns keys [64w, 64w + 64) of the block. Warpgroup 0 is the producer: one
// thread loads K and V once and streams (Q, dO) tiles of BLOCK_M query rows through a
// STAGES-deep ring (cp.async.bulk.tensor, "full" mbarriers; consumers free a stage on its
// "empty" mbarrier), over every query block of every query head of the GQA group. Per step:
//   S^T  = K Q^T, dP^T = V dO^T          SS wgmma (K-major K/V and Q/dO tiles), fp32 in registers
//   P^T  = sigmoid(scale S^T + b + s_k)  masked (ragged keys/queries, causal); dS^T = dP^T P^T (1-P^T)
//   dV  += P^T dO, dK += dS^T Q          RS wgmma: the accumulator layout is the A fragment
//   dQ   = dS K                          dS^T (bf16/fp16) stored to a swizzled shared tile, read
//                                        back as an M-major A operand (imm-trans-a); warpgroup w
//                                        computes its m64 query tiles (BLOCK_M 128) or its 64
//                                        head-dim columns (BLOCK_M 64) over all BLOCK_N keys, then
//                                        red.global.add.v2.f32 into the fp32 workspace
//                                        (dq_convert_kernel scales and rounds it).
// The dS^T tile is double-buffered so that one consumer-wide named barrier per step suffices:
// a warpgroup reaches step i's barrier only after waiting for its step i-1 dQ wgmma, so after
// the barrier nobody still reads the buffer that step i+1 overwrites.
// Why: mma.sync tops out near 205 TFLOPS for this backward on an H100; wgmma issues the five
// GEMMs asynchronously from shared memory and (OVERLAP) lets the sigmoid of S^T overlap dP^T's
// GEMM.
// Cost: 5 GEMMs (10 D FLOP) per score, one or two MUFU ops per score; dQ atomics of BLOCK_M x D
// floats per step and CTA (the workspace is zeroed per call; BULK_DQ: one bulk reduction per
// query row from an fp32 staging tile instead); shared memory
// 2 D (2 BLOCK_N + 2 STAGES BLOCK_M) + 4 BLOCK_N BLOCK_M (+ BLOCK_M (4 D + 32)) bytes; registers per consumer thread
// about D (dK, dV) + max(BLOCK_M (S^T, dP^T), BLOCK_M/2 (P^T, dS^T fragments) + BLOCK_M D / (128 C) (dQ)).
// Semantics (must match sm80/bwd.cuh): the causal diagonal of causal_diagonal_offset; keys past len_k and queries
// past len_q inside a tile get P = dS = 0 (TMA reads neighbouring rows there: the next varlen
// sequence, the padded layout's padding, or zeros past the buffer); dK/dV rows past len_k are
// written as zeros up to the padded buffer's length; dQ rows past len_q get no atomics.
// Known difference: non-finite values in the padding of dO/Q/K/V inside a tile reach dK/dV/dQ as
// 0 * inf = NaN (sm80 never reads them); finite padding is harmless.
#pragma once

#include "sigjit/common/sequence.cuh"
#include "sigjit/sm90/bwd_limits.h"
#include "sigjit/sm90/bwd_params.h"
#include "sigjit/sm90/bwd_schedule.h"
#include "sigjit/sm90/dq_stage_layout.h"
#include "sigjit/sm90/primitives.cuh"

namespace sigjit {
namespace kern {

template <int HEAD_DIM_, int BLOCK_M_, int CONSUMERS_, int STAGES_, bool OVERLAP_, bool IS_BF16_, int LAYOUT_, bool CAUSAL_, int BIAS_MODE_,
          bool HAS_SCORE_BIAS_, bool EXACT_SIGMOID_, bool BULK_DQ_ = false, bool CAUSAL_TOP_LEFT_ = false>
struct BwdSm90Config {
  static constexpr int kHeadDim = HEAD_DIM_;
  static constexpr int kBlockM = BLOCK_M_;  // query rows per step
  static constexpr int kConsumers = CONSUMERS_;
  static constexpr int kBlockN = 64 * kConsumers;  // key rows per CTA
  static constexpr int kStages = STAGES_;
  // The sigmoid of S^T runs while the dP^T GEMM is still on the tensor cores (wait_group 1);
  // off, both GEMMs are awaited first, which leaves ptxas more freedom (hd 64 with 128-query
  // steps spills with the overlap and the exact sigmoid).
  static constexpr bool kOverlap = OVERLAP_;
  static constexpr bool kBf16 = IS_BF16_;
  static constexpr int kLayout = LAYOUT_;
  static constexpr bool kCausal = CAUSAL_;
  static constexpr bool kCausalTopLeft = CAUSAL_ && CAUSAL_TOP_LEFT_;  // see causal_diagonal_offset
  static constexpr int kBiasMode = BIAS_MODE_;
  static constexpr bool kScoreBias = HAS_SCORE_BIAS_;
  static constexpr bool kExact = EXACT_SIGMOID_;
  // dQ through shared memory: the step's dQ tile is staged in fp32 and each row added to the
  // workspace by one cp.reduce.async.bulk (D * 4 bytes) instead of D / 2 red.global.add.v2 per
  // row spread over the threads (fewer, larger L2 reductions; costs the staging tile and two
  // consumer barriers per step).
  static constexpr bool kBulkDq = BULK_DQ_;

  static constexpr int kThreads = 128 * (kConsumers + 1);
  static constexpr int kChunksPerRow = kHeadDim / 8;
  static constexpr int kColBlocks = kHeadDim / 64;  // 64-column (128-byte) blocks per row
  static constexpr int kSAcc = kBlockM / 2;         // S^T (and dP^T) accumulators per thread
  static constexpr int kDAcc = kHeadDim / 2;        // dK (and dV) accumulators per thread
  static constexpr int kQSteps = kBlockM / 16;      // k16 steps over queries (dV, dK)
  static constexpr int kKeySteps = kBlockN / 16;    // k16 steps over keys (dQ)
  static constexpr int kMTiles = kBlockM / 64;      // m64 query tiles of dQ
  // How the consumers share the step's dQ tile: by m64 query tiles where there are enough,
  // else by head-dim columns (whole 64-column swizzle blocks, so that no K descriptor starts
  // inside a 128-byte swizzle atom).
  static constexpr bool kDqSplitRows = sm90::bwd_dq_split_rows(kBlockM, kConsumers);
  static constexpr int kDqMTiles = sm90::bwd_dq_mtiles(kBlockM, kConsumers);        // per warpgroup
  static constexpr int kDqCols = sm90::bwd_dq_cols(kHeadDim, kBlockM, kConsumers);  // per warpgroup
  static constexpr int kDqAcc = kDqCols / 2;  // per m64 tile
  static constexpr int kKBlockBytes = kBlockN * 128;
  static constexpr int kQBlockBytes = kBlockM * 128;
  static constexpr int kKBytes = kBlockN * kHeadDim * 2;  // K or V
  static constexpr int kQBytes = kBlockM * kHeadDim * 2;  // Q or dO tile
  static constexpr int kDsBlockBytes = kBlockN * 128;     // 64 queries of dS^T
  static constexpr int kDsBytes = kBlockN * kBlockM * 2;
  // Shared memory from a 1024-byte aligned base: K, V, Q ring, dO ring, 2 dS^T buffers, then
  // the mbarriers kv_full, q_full[S], do_full[S], empty[S].
  static constexpr int kVOffset = kKBytes;
  static constexpr int kQOffset = 2 * kKBytes;
  static constexpr int kDoOffset = kQOffset + kStages * kQBytes;
  static constexpr int kDsOffset = kDoOffset + kStages * kQBytes;
  // fp32 dQ staging rows padded by 32 bytes: the 8 rows of one warp store start 8 banks apart.
  static constexpr int kDqStageStride = sm90::bwd_dq_stage_row_bytes(kHeadDim);
  static constexpr int kDqStageOffset = kDsOffset + 2 * kDsBytes;
  static constexpr int kDqStageBytes = sm90::bwd_dq_stage_bytes(kHeadDim, kBlockM, kBulkDq);
  static constexpr int kBarOffset = kDqStageOffset + kDqStageBytes;
  static constexpr int kBarriers = 1 + 3 * kStages;
  static constexpr int kSmemBytes = sm90::bwd_smem_bytes(kHeadDim, kBlockN, kBlockM, kStages, kBulkDq);
  static_assert(kSmemBytes == kBarOffset + 8 * kBarriers + 1024, "sm90/bwd_limits.h: bwd_smem_bytes disagrees with the layout above");
  // setmaxnreg with two consumers: 128 * 24 + 256 * 240 = 64512 <= 65536 registers.
  static constexpr bool kRebalanceRegs = kConsumers == 2;
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
  static constexpr int kDsBarrier = 1;  // named barriers of the consumers (0 is __syncthreads')
  static constexpr int kDqBarrier = 2;

  static_assert(kHeadDim == 64 || kHeadDim == 128, "sm90 backward: head dim 64 or 128");
  static_assert(kBlockM == 64 || kBlockM == 128, "sm90 backward BLOCK_M: 64 or 128 (whole 64-query blocks of the dS^T tile)");
  static_assert(kConsumers == 1 || kConsumers == 2, "sm90 backward: 1 or 2 consumer warpgroups");
  static_assert(kStages >= 2 && kStages <= 4, "sm90 backward pipeline stages: 2..4");
  static_assert(kBlockM <= 128 * kConsumers, "sm90 backward: one consumer thread per dQ row issues its bulk reduction");
  static_assert(kDqCols % 64 == 0, "sm90 backward: the dQ split needs whole 64-column blocks per warpgroup (BLOCK_M 128 with 2 consumers at hd 64)");
  static_assert(kSmemBytes <= sm90::kSmemLimit, "sm90 backward tile config exceeds the 227 KB of shared memory per block");
  static constexpr int kRegEstimate = sm90::bwd_register_estimate(kHeadDim, kBlockM, kConsumers);  // see bwd_limits.h
  static_assert(kRegEstimate <= sm90::kBwdRegisterLimit, "sm90 backward: dK, dV and the S^T/dP^T or dQ tiles exceed 192 registers per consumer thread: it would spill");
  static_assert(kLayout >= kDense && kLayout <= kVarlen, "unknown layout");
};

// Tunables after the base config's parameters, as a wrapper (like FwdSm90PersistentConfig) so
// that no existing kernel's PTX changes.
// Early scores (tile suffix e): step i+1's S^T GEMM is issued before the consumers meet at step
// i's dS barrier, so the tensor cores have work through that barrier, the largest stall of the
// backward (bench/PROFILE-backward.md, lever 2: 18 % of the stall samples), and beside the dQ
// GEMM. Order per step: dK/dV(i) issued, dS^T(i) stored while it runs, dK/dV awaited (which frees
// the P^T/dS^T fragments), S^T(i+1) issued, dS barrier, dQ(i). Issuing S^T(i+1) before the dS^T
// stores instead kept the fragments live beside it and spilled with score bias and the exact
// sigmoid (hd 64) or dQ atomics (hd 128). Cost: the next step's S^T (BLOCK_M / 2 registers) stays
// live across the dQ GEMM and its epilogue; one extra K Q^T per CTA and kv head (the last step's,
// discarded).
// dQ writer (tile suffix _w): warp 1 of the producer warpgroup drains dQ (lever 1, ~9.5 % of the
// consumers' stall samples: waiting for their own reductions, the two staging barriers of _r and
// the issue loop). The consumers store the step's dQ tile into one of two fp32 staging tiles,
// laid out as the tensor map's boxes, and arrive on its "full" mbarrier; the writer issues one
// tensor bulk reduction per 32-column box into the dQ workspace, waits until they have read the
// tile and frees it on its "empty" mbarrier. Rows past len_q add zeros (their dS is 0) inside
// the tensor map's bounds. Cost: 2 * BLOCK_M * D * 4 bytes of shared memory and 4 mbarriers.
// Ordered dQ (_wd, the deterministic mode): the writer of key block n adds a step's dQ only after
// key blocks 0..n-1 have added theirs to the same query block, so every dQ element receives its
// additions in one order: bitwise reproducible. The blocks that add into a query block are always
// 0..n_max (causal in either alignment, any layout: a block past len_k adds nothing), so "wait
// until the counter is n, add, wait until the additions are done, increment" is the protocol.
// Progress needs the CTAs of lower blockIdx.x resident or finished first (they are launched
// first). Cost: each CTA starts its first addition about n reduction latencies late, then keeps
// pace (the two staging tiles absorb the stagger); the writer waits for its reductions' writes,
// not only their reads.
// Warpgroup-local dQ (_wl, lever 3 of bench/PROFILE-backward.md): each consumer warpgroup computes
// the whole step's dQ tile over its own 64 keys (dS of its dS^T rows times its K rows), so no
// warpgroup waits for the other's dS^T: the shared dS barrier, the largest stall, goes, and with it
// the lock step that kept both warpgroups' elementwise work off the tensor cores at the same time.
// The partials meet in the writer's staging tile: warpgroup 0 stores its own, warpgroup 1 adds
// its own to it (only warpgroup 1 ever waits for the other, so warpgroup 0 may run a step ahead)
// and the writer reduces the sum as before: the same L2 reduction bytes. Cost: dK/dV are awaited
// before the dQ GEMM (the fragments must die first: 192 live registers either way), and 2 x BLOCK_M
// x D x 4 more bytes of shared-memory traffic per step (warpgroup 1 loads the partial back); 2
// mbarriers.
// Persistent (_wp): min(key tiles, SMs) CTAs, each taking key tiles from a global counter
// (sm90/bwd_schedule.h); the Q/dO ring, the dS^T buffers and the writer's staging tiles keep
// their step count across tiles, and the producer loads the next tile's K/V once the last step
// of this one has released its stage (its GEMMs were the last to read K and V). What it hides:
// the launch and setup per key block, and the next block's loads under this block's dK/dV
// stores. The plain writer only: the ordered reduction's progress rests on blockIdx order.
// Its producer warpgroup's two idle warps zero the dQ workspace meanwhile, sequence by sequence,
// and the writer waits for its sequence's zeros (bwd_zero_dq): the memset before the kernel ran
// alone, 41 us at every length on an H100 (bench/PROFILE-backward.md). With the convert handoff
// (SIGJIT_BWD_DQ_CONVERT=overlap) the writer counts each tile's reductions done per sequence, and
// the producer lets the convert kernel launch after its last claim (count_tile_reduced).
template <class Base, bool EARLY_SCORES, bool DQ_WRITER, bool ORDERED_DQ = false, bool LOCAL_DQ = false, bool PERSISTENT = false>
struct BwdSm90Tuned : Base {
  static_assert(!PERSISTENT || (DQ_WRITER && !EARLY_SCORES && !ORDERED_DQ && !LOCAL_DQ),
                "sm90 backward: the persistent schedule (_wp) is the plain dQ writer's, without early scores, _wd or _wl");
  static_assert(!(DQ_WRITER && Base::kBulkDq), "sm90 backward: the dQ writer (_w) replaces the consumers' bulk reductions (_r)");
  static_assert(!ORDERED_DQ || DQ_WRITER, "sm90 backward: the ordered dQ reduction (d) is the dQ writer's (_wd)");
  static_assert(
      !LOCAL_DQ || (DQ_WRITER && !ORDERED_DQ && !EARLY_SCORES && Base::kConsumers == 2),
      "sm90 backward: warpgroup-local dQ (_wl) is the dQ writer's with two consumers, without early scores or the ordered reduction");
  static_assert(!LOCAL_DQ || sm90::bwd_register_estimate(Base::kHeadDim, Base::kBlockM, Base::kConsumers, true) <= sm90::kBwdRegisterLimit,
                "sm90 backward: warpgroup-local dQ tiles, dK and dV exceed 192 registers per consumer thread: it would spill");
  static constexpr int kDqTileBytes = sm90::bwd_dq_writer_tile_bytes(Base::kHeadDim, Base::kBlockM);
  static constexpr int kDqBoxBytes = Base::kBlockM * sm90::kDqStageRowBytes;  // 32 fp32 columns of every row
  static constexpr int kBarOffset = Base::kBarOffset + sm90::bwd_dq_writer_stage_bytes(Base::kHeadDim, Base::kBlockM, DQ_WRITER);
  static constexpr int kBarriers = Base::kBarriers + (DQ_WRITER ? sm90::kBwdDqWriterBarriers : 0) +
                                   (LOCAL_DQ ? sm90::kBwdDqLocalBarriers : 0) + (PERSISTENT ? sm90::kBwdTileQueueWords : 0);
  static constexpr int kSmemBytes =
      sm90::bwd_smem_bytes(Base::kHeadDim, Base::kBlockN, Base::kBlockM, Base::kStages, Base::kBulkDq, DQ_WRITER, LOCAL_DQ, PERSISTENT);
  static_assert(kSmemBytes == kBarOffset + 8 * kBarriers + 1024, "sm90/bwd_limits.h: bwd_smem_bytes disagrees with the dQ writer's layout");
  static_assert(kSmemBytes <= sm90::kSmemLimit, "sm90 backward tile config exceeds the 227 KB of shared memory per block");
  static constexpr int kLocalDsBarrier = 3;  // + warpgroup: each warpgroup's own dS^T rows are stored (_wl)
};

// C's tunables, as constant functions (a static data member would be emitted into the PTX of
// every config).
template <class C>
struct Sm90BwdPipeline {
  static __device__ constexpr bool early_scores() { return false; }
  static __device__ constexpr bool dq_writer() { return false; }
  static __device__ constexpr bool ordered_dq() { return false; }
  static __device__ constexpr bool local_dq() { return false; }
  static __device__ constexpr bool persistent() { return false; }
};
template <class Base, bool EARLY_SCORES, bool DQ_WRITER, bool ORDERED_DQ, bool LOCAL_DQ, bool PERSISTENT>
struct Sm90BwdPipeline<BwdSm90Tuned<Base, EARLY_SCORES, DQ_WRITER, ORDERED_DQ, LOCAL_DQ, PERSISTENT>> {
  static __device__ constexpr bool early_scores() { return EARLY_SCORES; }
  static __device__ constexpr bool dq_writer() { return DQ_WRITER; }
  static __device__ constexpr bool ordered_dq() { return ORDERED_DQ; }
  static __device__ constexpr bool local_dq() { return LOCAL_DQ; }
  static __device__ constexpr bool persistent() { return PERSISTENT; }
};

template <class C>
struct BwdSm90Smem {
  u32 base;
  __device__ __forceinline__ u32 k() const { return base; }
  __device__ __forceinline__ u32 v() const { return base + C::kVOffset; }
  __device__ __forceinline__ u32 q(int stage) const { return base + C::kQOffset + stage * C::kQBytes; }
  __device__ __forceinline__ u32 dout(int stage) const { return base + C::kDoOffset + stage * C::kQBytes; }
  __device__ __forceinline__ u32 ds(int buf) const { return base + C::kDsOffset + buf * C::kDsBytes; }
  __device__ __forceinline__ u32 dq_stage() const { return base + C::kDqStageOffset; }
  __device__ __forceinline__ u32 kv_full() const { return base + C::kBarOffset; }
  __device__ __forceinline__ u32 q_full(int s) const { return base + C::kBarOffset + 8 * (1 + s); }
  __device__ __forceinline__ u32 do_full(int s) const { return base + C::kBarOffset + 8 * (1 + C::kStages + s); }
  __device__ __forceinline__ u32 empty(int s) const { return base + C::kBarOffset + 8 * (1 + 2 * C::kStages + s); }
  // The dQ writer's (_w) staging tiles (after the base layout's staging, 1024-byte aligned) and
  // their mbarriers (after the base layout's).
  __device__ __forceinline__ u32 dq_tile(int buf) const {
    return base + C::kDqStageOffset + C::kDqStageBytes + buf * sm90::bwd_dq_writer_tile_bytes(C::kHeadDim, C::kBlockM);
  }
  __device__ __forceinline__ u32 dq_full(int buf) const { return base + C::kBarOffset + 8 * (1 + 3 * C::kStages + buf); }
  __device__ __forceinline__ u32 dq_empty(int buf) const { return base + C::kBarOffset + 8 * (3 + 3 * C::kStages + buf); }
  // _wl: warpgroup 0's partial dQ tile is in staging tile buf (after the writer's mbarriers).
  __device__ __forceinline__ u32 dq_partial(int buf) const { return base + C::kBarOffset + 8 * (5 + 3 * C::kStages + buf); }
  // _wp's tile queue (after the writer's mbarriers; _wl is never persistent): slot s's full and
  // empty mbarriers and its tile index.
  __device__ __forceinline__ u32 tile_full(int s) const { return base + C::kBarOffset + 8 * (5 + 3 * C::kStages + s); }
  __device__ __forceinline__ u32 tile_empty(int s) const { return base + C::kBarOffset + 8 * (7 + 3 * C::kStages + s); }
  __device__ __forceinline__ u32 tile_slot(int s) const { return base + C::kBarOffset + 8 * (9 + 3 * C::kStages + s); }
};

// The work of one CTA: which query blocks of which heads it visits, in step order.
struct BwdSm90Work {
  int n_start;         // first key row of the block
  int m_first;         // first query block with a visible key (causal), else 0
  int steps_per_head;  // query blocks per query head
  int total_steps;     // over the kv_group query heads
  int causal_offset;   // causal_diagonal_offset: len_k - len_q, or 0 top-left
};

template <class C>
__device__ __forceinline__ BwdSm90Work bwd_sm90_work(const SigjitFwdParams& p, const SeqSlice& seq, int key_block) {
  BwdSm90Work w;
  w.n_start = key_block * C::kBlockN;
  w.causal_offset = causal_diagonal_offset<C>(seq);
  w.m_first = 0;
  if (C::kCausal) {  // query i sees key j when j <= i + offset
    const int first_query = w.n_start - w.causal_offset;
    w.m_first = first_query > 0 ? first_query / C::kBlockM : 0;
  }
  const int m_blocks = (seq.len_q + C::kBlockM - 1) / C::kBlockM;
  w.steps_per_head = m_blocks > w.m_first ? m_blocks - w.m_first : 0;
  w.total_steps = w.n_start < seq.len_k ? w.steps_per_head * p.kv_group : 0;
  return w;
}

template <class C>
__device__ __forceinline__ void bwd_init_barriers(const BwdSm90Smem<C>& sm) {
  mbarrier_init(sm.kv_full(), 1);
  for (int s = 0; s < C::kStages; ++s) {
    mbarrier_init(sm.q_full(s), 1);  // the producer's arrive.expect_tx; TMA adds the bytes
    mbarrier_init(sm.do_full(s), 1);
    mbarrier_init(sm.empty(s), C::kConsumers * 128);  // every consumer thread releases
  }
  if constexpr (Sm90BwdPipeline<C>::dq_writer()) {
    // Every consumer thread stores its share; _wl: warpgroup 1's threads, once they have added theirs.
    constexpr int dq_storers = Sm90BwdPipeline<C>::local_dq() ? 128 : C::kConsumers * 128;
    for (int buf = 0; buf < 2; ++buf) {
      mbarrier_init(sm.dq_full(buf), dq_storers);
      mbarrier_init(sm.dq_empty(buf), 1);                                                    // the writer, once the reductions have read it
      if constexpr (Sm90BwdPipeline<C>::local_dq()) mbarrier_init(sm.dq_partial(buf), 128);  // warpgroup 0's threads
    }
  }
  if constexpr (Sm90BwdPipeline<C>::persistent()) {
    for (int slot = 0; slot < 2; ++slot) {
      mbarrier_init(sm.tile_full(slot), 1);                         // the producer posts
      mbarrier_init(sm.tile_empty(slot), 1 + C::kConsumers * 128);  // the writer and every consumer thread take
    }
  }
  fence_barrier_init();
}

// The sequence (and key block) a role works on: the persistent schedule's, else blockIdx read where
// it is needed, so that the one-tile kernels compile as before the schedule existed (a blockIdx
// held in a register from the kernel's start changed their allocation).
template <class C>
__device__ __forceinline__ int tile_batch(int b) {
  return Sm90BwdPipeline<C>::persistent() ? b : (int)blockIdx.z;
}
template <class C>
__device__ __forceinline__ int tile_key_block(int key_block) {
  return Sm90BwdPipeline<C>::persistent() ? key_block : (int)blockIdx.x;
}

// The producer: one thread issues every load of the CTA, in consumption order. g0: the steps the
// CTA ran before this key block (persistent, _wp; else 0), which index the Q/dO ring's stages and
// phases; the previous block's K and V are free once its last step's stage is released, after the
// GEMMs that read them.
template <class C>
__device__ __forceinline__ void bwd_produce(const SigjitBwdSm90Params& params, const BwdSm90Smem<C>& sm, const BwdSm90Work& w, int h_kv, int b,
                                            int g0) {
  const SigjitFwdParams& p = params.p.fwd;
  int q_row0, k_row0, batch;
  if (C::kLayout == kVarlen) {
    q_row0 = clamp_len(p.cu_seqlens_q[tile_batch<C>(b)], p.total_q);
    k_row0 = clamp_len(p.cu_seqlens_k[tile_batch<C>(b)], p.total_k);
    batch = 0;
  } else {
    q_row0 = k_row0 = 0;
    batch = tile_batch<C>(b);
  }
  if (g0 > 0) mbarrier_wait(sm.empty((g0 - 1) % C::kStages), ((g0 - 1) / C::kStages) & 1);
  mbarrier_arrive_expect_tx(sm.kv_full(), 2 * C::kKBytes);
  tma_load_tile<C::kColBlocks, C::kKBlockBytes>(sm.k(), params.k_map, sm.kv_full(), k_row0 + w.n_start, h_kv, batch);
  tma_load_tile<C::kColBlocks, C::kKBlockBytes>(sm.v(), params.v_map, sm.kv_full(), k_row0 + w.n_start, h_kv, batch);
  for (int i = 0; i < w.total_steps; ++i) {
    const int g = g0 + i, stage = g % C::kStages;
    // Use g of a stage needs use g - STAGES released: the (g / STAGES - 1)-th phase of empty.
    if (g >= C::kStages) mbarrier_wait(sm.empty(stage), (g / C::kStages - 1) & 1);
    const int h = h_kv * p.kv_group + i / w.steps_per_head;
    const int row = q_row0 + (w.m_first + i % w.steps_per_head) * C::kBlockM;
    mbarrier_arrive_expect_tx(sm.q_full(stage), C::kQBytes);
    tma_load_tile<C::kColBlocks, C::kQBlockBytes>(sm.q(stage), params.q_map, sm.q_full(stage), row, h, batch);
    mbarrier_arrive_expect_tx(sm.do_full(stage), C::kQBytes);
    tma_load_tile<C::kColBlocks, C::kQBlockBytes>(sm.dout(stage), params.do_map, sm.do_full(stage), row, h, batch);
  }
}

// Paced zeroing: lane 0 polls the tile counter until sequence b's first key tile is handed out
// (sm90/bwd_schedule.h's dq_zero_sequence_due), sleeping between polls so that the consumers
// keep the issue slots.
template <class C>
__device__ __forceinline__ void wait_dq_zero_due(const SigjitBwdSm90Params& params, int b, int lane) {
  if (lane == 0) {
    const SigjitFwdParams& p = params.p.fwd;
    const int key_blocks = sched::bwd_key_blocks(p.seqlen_k, C::kBlockN), heads_kv = p.heads_q / p.kv_group;
    while (!sched::dq_zero_sequence_due(b, key_blocks, heads_kv, (long long)gridDim.x + ld_relaxed_gpu(params.tile_counter)))
      __nanosleep(256);
  }
  __syncwarp();
}

// _wp's dQ workspace zeroing (sm90/bwd_schedule.h), by each of the producer warpgroup's two idle
// warps: claims jobs until none is left, stores zeros over the job's rows (every head: one
// contiguous range), then counts the job done for its sequence with release semantics, so that
// a writer that reads the count also sees the zeros (the warp's stores are ordered before lane
// 0's release by __syncwarp). Eager, it waits for nothing; paced, a job waits only until its
// sequence is due, which every sequence a tile has been handed out for already is, and jobs are
// claimed in sequence order: every job a writer waits for finishes.
template <class C>
__device__ __forceinline__ void bwd_zero_dq(const SigjitBwdSm90Params& params) {
  const SigjitBwdParams& bp = params.p;
  const int lane = threadIdx.x % 32, jobs = bp.fwd.batch * params.dq_zero_jobs_per_seq;
  for (;;) {
    int j = 0;
    if (lane == 0) j = atomicAdd(params.dq_zero_next, 1);
    j = __shfl_sync(0xffffffffu, j, 0);
    if (j >= jobs) return;
    const int b = j / params.dq_zero_jobs_per_seq;
    if (params.dq_zero_paced != 0) wait_dq_zero_due<C>(params, b, lane);
    const sched::DqZeroJob job =
        sched::dq_zero_job(j, params.dq_zero_jobs_per_seq, params.dq_zero_rows_per_job, locate_sequence<C>(bp.fwd, b, 0).len_q);
    if (job.row_begin == job.row_end) continue;
    const SeqRows rows = seq_rows<C>(bp.fwd, b);
    float4* dst = (float4*)(bp.dq_accum + rows.batch * bp.dqa_stride_b + (rows.q_row0 + job.row_begin) * bp.dqa_stride_l);
    const int vectors = (int)((job.row_end - job.row_begin) * bp.dqa_stride_l / 4);  // <= kDqZeroJobBytes / 16
#pragma unroll 4
    for (int v = lane; v < vectors; v += 32) dst[v] = make_float4(0.f, 0.f, 0.f, 0.f);
    __syncwarp();
    if (lane == 0) red_release_gpu_add(params.dq_zero_done + b, 1);
  }
}

// _wp, when the kernel zeroes its workspace: the writer's wait, before it adds into sequence b,
// for every job of b that stores; then its reductions (async proxy) follow the zeros.
template <class C>
__device__ __forceinline__ void wait_dq_zeroed(const SigjitBwdSm90Params& params, int b) {
  if (params.dq_zero_done == nullptr) return;
  const int target = sched::dq_zero_jobs_stored(locate_sequence<C>(params.p.fwd, b, 0).len_q, params.dq_zero_rows_per_job);
  while (ld_acquire_gpu(params.dq_zero_done + b) < target) {
  }
  fence_proxy_async_global();
}

// The dQ writer tiles' (_w, _wp) convert handoff (common/params.h's dq_reduced): the writer
// counts each key tile done for its sequence, with release semantics, once the tile's reductions
// are written (not only read: the convert kernel reads them) and the sequence's zeros are in
// (_wp: waited for here by a tile without steps, which never reduced).
template <class C>
__device__ __forceinline__ void count_tile_reduced(const SigjitBwdSm90Params& params, int b, bool reduced) {
  if constexpr (Sm90BwdPipeline<C>::ordered_dq()) return;  // the deterministic path has no handoff
  if (params.p.dq_reduced == nullptr) return;
  if (reduced) {
    bulk_wait<0>();
    fence_proxy_async_global();
  } else if constexpr (Sm90BwdPipeline<C>::persistent()) {
    wait_dq_zeroed<C>(params, b);
  }
  red_release_gpu_add(params.p.dq_reduced + b, 1);
}

// The dQ writer (_w; warp 1 of the producer warpgroup, one thread): per step, waits for the
// consumers' dQ tile, adds it box by box to the fp32 workspace with tensor bulk reductions and
// frees the tile once they have read it. Same step order as the producer's loads.
template <class C>
__device__ __forceinline__ void bwd_write_dq(const SigjitBwdSm90Params& params, const BwdSm90Smem<C>& sm, const BwdSm90Work& w, int h_kv, int b,
                                             int key_block, int g0) {
  const SigjitFwdParams& p = params.p.fwd;
  int q_row0 = 0, batch = tile_batch<C>(b);
  if (C::kLayout == kVarlen) {
    q_row0 = clamp_len(p.cu_seqlens_q[tile_batch<C>(b)], p.total_q);
    batch = 0;
  }
  if constexpr (Sm90BwdPipeline<C>::persistent()) wait_dq_zeroed<C>(params, tile_batch<C>(b));
  for (int i = 0; i < w.total_steps; ++i) {
    const int g = g0 + i, buf = g % 2;
    mbarrier_wait(sm.dq_full(buf), (g / 2) & 1);
    const int h = h_kv * p.kv_group + i / w.steps_per_head;
    const int m_start = (w.m_first + i % w.steps_per_head) * C::kBlockM;
    int* counter = nullptr;
    if constexpr (Sm90BwdPipeline<C>::ordered_dq()) {
      counter = params.dq_counters + (i64)tile_batch<C>(b) * params.dq_counters_per_seq + h * params.dq_counters_per_head + m_start / 64;
      while (ld_acquire_gpu(counter) != tile_key_block<C>(key_block)) {
      }
      fence_proxy_async_global();  // the earlier blocks' additions before this block's
    }
#pragma unroll
    for (int box = 0; box < C::kHeadDim / sm90::kDqStageBoxCols; ++box) {
      tma_reduce_add_4d(params.dqa_map, sm.dq_tile(buf) + box * C::kDqBoxBytes, box * sm90::kDqStageBoxCols, q_row0 + m_start, h, batch);
    }
    bulk_commit();
    if constexpr (Sm90BwdPipeline<C>::ordered_dq()) {
      bulk_wait<0>();              // the additions are done, not only read
      fence_proxy_async_global();  // ... and ordered before the release
      red_release_gpu_add(counter, 1);
    } else {
      bulk_wait_read<0>();
    }
    mbarrier_arrive(sm.dq_empty(buf));
  }
  // No wait for the last reductions' writes: their shared-memory reads are done (above), which is
  // all the CTA's exit needs, and a bulk operation's global writes are visible once the kernel
  // ends (the convert kernel runs after it), as CUTLASS's TMA-store epilogues rely on. Waiting for
  // them held every CTA for the L2 reductions' round trip after its last step.
}

// X^T = F T^T for this warpgroup's 64 key rows of the fixed tile F (K or V) against the streamed
// tile T (Q or dO): D/16 SS wgmma k-steps, one commit group.
template <class C>
__device__ __forceinline__ void issue_transposed_scores(float (&acc)[C::kSAcc], u32 fixed, u32 streamed, int wg) {
  const u64 a0 = kmajor_descriptor(fixed, wg * 64, 0);
  const u64 b0 = kmajor_descriptor(streamed, 0, 0);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < C::kHeadDim / 16; ++kk) {
    const int block = kk / 4, k_bytes = (kk % 4) * 32;
    const u64 a = descriptor_advance(a0, block * C::kKBlockBytes + k_bytes);
    const u64 b = descriptor_advance(b0, block * C::kQBlockBytes + k_bytes);
    Wgmma<C::kBlockM>::template ss<C::kBf16, 0>(acc, a, b, kk > 0 ? 1 : 0);
  }
  wgmma_commit();
}

// dV += P^T dO and dK += dS^T Q: register-A wgmma over the N-major streamed tiles, one group.
template <class C>
__device__ __forceinline__ void issue_dkdv(float (&dv)[C::kDAcc], float (&dk)[C::kDAcc], const u32 (&pf)[C::kQSteps][4],
                                           const u32 (&dsf)[C::kQSteps][4], const BwdSm90Smem<C>& sm, int stage) {
  const u64 dout0 = mnmajor_descriptor(sm.dout(stage), 0, C::kQBlockBytes);
  const u64 q0 = mnmajor_descriptor(sm.q(stage), 0, C::kQBlockBytes);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < C::kQSteps; ++kk) {
    Wgmma<C::kHeadDim>::template rs<C::kBf16, 1>(dv, pf[kk], descriptor_advance(dout0, kk * 16 * 128), 1);
  }
#pragma unroll
  for (int kk = 0; kk < C::kQSteps; ++kk) {
    Wgmma<C::kHeadDim>::template rs<C::kBf16, 1>(dk, dsf[kk], descriptor_advance(q0, kk * 16 * 128), 1);
  }
  wgmma_commit();
}

// This warpgroup's share of dQ (its m64 query tiles, or its 64-column blocks; see kDqSplitRows)
// = dS K over all BLOCK_N keys: A = dS read M-major from the dS^T tile (rows = keys), B = K read
// N-major (rows = keys), one commit group.
template <class C>
__device__ __forceinline__ void issue_dq(float (&dq)[C::kDqMTiles][C::kDqAcc], const BwdSm90Smem<C>& sm, int buf, int wg) {
  const int col0 = C::kDqSplitRows ? 0 : wg * C::kDqCols;
  const int mt0 = C::kDqSplitRows ? wg * C::kDqMTiles : 0;
  const u32 k_cols = sm.k() + (col0 / 64) * C::kKBlockBytes + (col0 % 64) * 2;
  const u64 a0 = mnmajor_descriptor(sm.ds(buf) + mt0 * C::kDsBlockBytes, 0, C::kDsBlockBytes);
  const u64 b0 = mnmajor_descriptor(k_cols, 0, C::kKBlockBytes);
  wgmma_fence();
#pragma unroll
  for (int mt = 0; mt < C::kDqMTiles; ++mt) {
#pragma unroll
    for (int kk = 0; kk < C::kKeySteps; ++kk) {
      const u64 a = descriptor_advance(a0, mt * C::kDsBlockBytes + kk * 16 * 128);
      const u64 b = descriptor_advance(b0, kk * 16 * 128);
      Wgmma<C::kDqCols>::template ss<C::kBf16, 1, 1>(dq[mt], a, b, kk > 0 ? 1 : 0);
    }
  }
  wgmma_commit();
}

// _wl: this warpgroup's partial of the whole step's dQ tile (every m64 query tile, every head-dim
// column) = dS K over its own 64 keys: A = dS read M-major from its rows of the dS^T tile, B = the
// same rows of K read N-major across its 64-column blocks, one commit group.
template <class C>
__device__ __forceinline__ void issue_local_dq(float (&dq)[C::kBlockM / 64][C::kHeadDim / 2], const BwdSm90Smem<C>& sm, int buf, int wg) {
  const u64 a0 = mnmajor_descriptor(sm.ds(buf), wg * 64, C::kDsBlockBytes);
  const u64 b0 = mnmajor_descriptor(sm.k(), wg * 64, C::kKBlockBytes);
  wgmma_fence();
#pragma unroll
  for (int mt = 0; mt < C::kBlockM / 64; ++mt) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const u64 a = descriptor_advance(a0, mt * C::kDsBlockBytes + kk * 16 * 128);
      const u64 b = descriptor_advance(b0, kk * 16 * 128);
      Wgmma<C::kHeadDim>::template ss<C::kBf16, 1, 1>(dq[mt], a, b, kk > 0 ? 1 : 0);
    }
  }
  wgmma_commit();
}

// Per-thread constants of a consumer: its key rows and their sigmoid addends.
struct BwdSm90Rows {
  int key0;          // key (in the sequence) of accumulator rows lane/4; +8 for the second
  float addend[2];   // folded bias + score bias of those two keys
};

// P^T in place of S^T. MASKED zeroes keys past len_k, queries past len_q and, when causal,
// pairs right of the diagonal (causal_diagonal_offset; dS^T = dP^T P^T (1 - P^T) is then 0 too).
// WITH_GRAD (dP^T already waited for): also dS^T in place of dP^T, element by element (keeping
// the two loops apart made ptxas spill at hd 64 with 128-query steps and the exact sigmoid).
template <class C, bool MASKED, bool WITH_GRAD>
__device__ __forceinline__ void sigmoid_sm90(float (&s)[C::kSAcc], float (&dp)[C::kSAcc], const SigmoidFold<C::kExact>& sig, const BwdSm90Rows& rows,
                                             const SeqSlice& seq, int m_start, int causal_offset, int lane) {
#pragma unroll
  for (int nt = 0; nt < C::kBlockM / 8; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float p = sig(s[4 * nt + e], rows.addend[e / 2]);
      if (MASKED) {
        const int key = rows.key0 + (e / 2) * 8;
        const int query = m_start + nt * 8 + (lane % 4) * 2 + (e % 2);
        bool visible = key < seq.len_k && query < seq.len_q;
        if (C::kCausal) visible = visible && key <= query + causal_offset;
        p = visible ? p : 0.0f;
      }
      s[4 * nt + e] = p;
      if (WITH_GRAD) dp[4 * nt + e] = sig.grad(dp[4 * nt + e], p);
    }
  }
}

// dS^T = dP^T P^T (1 - P^T) in place of dP^T.
template <class C>
__device__ __forceinline__ void sigmoid_grad_sm90(float (&dp)[C::kSAcc], const float (&p)[C::kSAcc]) {
#pragma unroll
  for (int i = 0; i < C::kSAcc; ++i) dp[i] = SigmoidFold<C::kExact>::grad(dp[i], p[i]);
}

template <class C>
__device__ __forceinline__ bool step_needs_mask(const SeqSlice& seq, int n_start, int m_start, int causal_offset) {
  if (n_start + C::kBlockN > seq.len_k || m_start + C::kBlockM > seq.len_q) return true;
  return C::kCausal && n_start + C::kBlockN - 1 > m_start + causal_offset;
}

__device__ __forceinline__ void st_shared_u32(u32 addr, u32 v) { asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory"); }

// Writes this thread's dS^T fragments into the 128B-swizzled dS^T tile (rows = keys, 64-query
// column blocks): pair (row r, queries c, c+1) lands in 16-byte chunk (c % 64) / 8 ^ (r % 8) of
// row r. This thread's rows r0 and r0 + 8 share r % 8 = lane / 4, so the second row is the first's
// address + 1024 and only the chunk XOR varies with kk: 8 addresses, not 32 (ptxas spilled them).
template <class C>
__device__ __forceinline__ void store_ds(u32 tile, const u32 (&dsf)[C::kQSteps][4], int wg, int warp, int lane) {
  const u32 swz = (u32)(lane / 4);
  const u32 row_addr = tile + (u32)(wg * 64 + warp * 16 + lane / 4) * 128 + (u32)(lane % 4) * 4;
#pragma unroll
  for (int kk = 0; kk < C::kQSteps; ++kk) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {  // query columns kk * 16 + 8j + 2 (lane % 4) + {0, 1}
      const int c8 = kk * 2 + j;   // 8-column chunk index over the whole tile
      const u32 addr = row_addr + (u32)(c8 / 8) * C::kDsBlockBytes + (((u32)(c8 % 8) ^ swz) * 16);
      st_shared_u32(addr, dsf[kk][2 * j]);
      st_shared_u32(addr + 1024, dsf[kk][2 * j + 1]);
    }
  }
}

// Adds this warpgroup's share of dQ (rows below len_q) to the workspace with red.global.add.v2.
template <class C>
__device__ __forceinline__ void add_dq_sm90(float* dqa, i64 row_stride, const float (&dq)[C::kDqMTiles][C::kDqAcc], int m_start, int len_q, int wg,
                                            int warp, int lane) {
  const int col0 = C::kDqSplitRows ? 0 : wg * C::kDqCols;
  const int mt0 = C::kDqSplitRows ? wg * C::kDqMTiles : 0;
#pragma unroll
  for (int mt = 0; mt < C::kDqMTiles; ++mt) {
    const int row = m_start + (mt0 + mt) * 64 + warp * 16 + lane / 4;
#pragma unroll
    for (int nt = 0; nt < C::kDqCols / 8; ++nt) {
      const int col = col0 + nt * 8 + (lane % 4) * 2;
      if (row < len_q) red_add_f32x2(dqa + (i64)row * row_stride + col, dq[mt][4 * nt], dq[mt][4 * nt + 1]);
      if (row + 8 < len_q) red_add_f32x2(dqa + (i64)(row + 8) * row_stride + col, dq[mt][4 * nt + 2], dq[mt][4 * nt + 3]);
    }
  }
}

__device__ __forceinline__ void st_shared_f32x2(u32 addr, float a, float b) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(a), "f"(b) : "memory");
}
__device__ __forceinline__ void st_shared_f32x2(u32 addr, float2 v) { st_shared_f32x2(addr, v.x, v.y); }

// kBulkDq: this warpgroup's dQ accumulators into the fp32 staging tile (row-major, padded rows),
// then one bulk reduction per query row below len_q, issued by consumer thread `row`. The
// barriers: nobody writes the tile before the previous step's reductions have read it (each
// issuing thread waits for its own), and nobody issues before the whole tile is written.
template <class C>
__device__ __forceinline__ void bulk_add_dq_sm90(float* dqa, i64 row_stride, const float (&dq)[C::kDqMTiles][C::kDqAcc], u32 stage, int m_start,
                                                 int len_q, int tid, int wg, int warp, int lane) {
  const int col0 = C::kDqSplitRows ? 0 : wg * C::kDqCols;
  const int mt0 = C::kDqSplitRows ? wg * C::kDqMTiles : 0;
  if (tid < C::kBlockM) bulk_wait_read<0>();
  named_barrier_sync(C::kDqBarrier, C::kConsumers * 128);
#pragma unroll
  for (int mt = 0; mt < C::kDqMTiles; ++mt) {
    const int row = (mt0 + mt) * 64 + warp * 16 + lane / 4;
#pragma unroll
    for (int nt = 0; nt < C::kDqCols / 8; ++nt) {
      const u32 addr = stage + (u32)row * C::kDqStageStride + (u32)(col0 + nt * 8 + (lane % 4) * 2) * 4;
      st_shared_f32x2(addr, dq[mt][4 * nt], dq[mt][4 * nt + 1]);
      st_shared_f32x2(addr + 8 * C::kDqStageStride, dq[mt][4 * nt + 2], dq[mt][4 * nt + 3]);
    }
  }
  fence_proxy_async_shared();  // the generic stores before the bulk reductions' async reads
  named_barrier_sync(C::kDqBarrier, C::kConsumers * 128);
  if (tid < C::kBlockM && m_start + tid < len_q) {
    bulk_reduce_add_f32(dqa + (i64)(m_start + tid) * row_stride, stage + (u32)tid * C::kDqStageStride, C::kHeadDim * 4);
    bulk_commit();
  }
}

// The two values a thread stores into the dQ staging tile in store slot nt for its row r0 (half 0)
// or r0 + 8 (half 1): n8 tile nt's, or nt ^ 2's where the slot swaps (sm90/dq_stage_layout.h). A
// select, not an index: indexing the accumulators by a per-thread value would put them in local memory.
template <int N>
__device__ __forceinline__ float2 staged_pair(const float (&acc)[N], int nt, bool swap, int half) {
  const int own = 4 * nt + 2 * half, other = 4 * (nt ^ 2) + 2 * half;
  return make_float2(swap ? acc[other] : acc[own], swap ? acc[other + 1] : acc[own + 1]);
}

// This thread's dQ fragments, n8 tiles 0..NT-1 of m64 tiles mt0.., into the staging tile at
// `tile` in the conflict-free store order (or the plain one where swap is false and chunk_xor is
// dq_stage_chunk_xor's): two 64-bit stores per slot, rows r0 and r0 + 8.
template <int NT, int MT, int N>
__device__ __forceinline__ void store_dq_stage(u32 tile, const float (&dq)[MT][N], int mt0, int warp, int lane, u32 chunk_xor, bool swap,
                                               int box_bytes) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int r0 = (mt0 + mt) * 64 + warp * 16 + lane / 4;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const u32 addr = tile + sm90::dq_stage_fragment_offset(r0, nt, lane, chunk_xor, box_bytes);
      st_shared_f32x2(addr, staged_pair(dq[mt], nt, swap, 0));
      st_shared_f32x2(addr + 8 * sm90::kDqStageRowBytes, staged_pair(dq[mt], nt, swap, 1));
    }
  }
}

// _w: this warpgroup's share of dQ into staging tile i % 2, once the writer has drained what step
// i - 2 left there, laid out as the tensor map's boxes (sm90/dq_stage_layout.h); then this
// thread's arrival on the tile's "full" mbarrier, after the proxy fence that lets the writer's
// TMA read what it stored.
template <class C>
__device__ __forceinline__ void hand_dq_to_writer(const float (&dq)[C::kDqMTiles][C::kDqAcc], const BwdSm90Smem<C>& sm, int i, int wg, int warp,
                                                  int lane) {
  const int buf = i % 2;
  if (i >= 2) mbarrier_wait(sm.dq_empty(buf), (i / 2 - 1) & 1);
  const int col0 = C::kDqSplitRows ? 0 : wg * C::kDqCols;  // whole 32-column boxes
  const int mt0 = C::kDqSplitRows ? wg * C::kDqMTiles : 0;
  const u32 tile = sm.dq_tile(buf) + (u32)(col0 / sm90::kDqStageBoxCols) * C::kDqBoxBytes;
  // The layout and the conflict-free store order: sm90/dq_stage_layout.h. The XOR term passes
  // through an empty asm so that ptxas recomputes the 16 store addresses each step instead of
  // keeping them in registers across the loop (it spilled them at hd 128). With early scores the
  // plain order: the selects spilled 8 B at hd 128 (padded and varlen causal, e_w and the ordered
  // mode's e_wd), and at hd 64 the order measured no difference under e_w (H100).
  constexpr bool reorder = !Sm90BwdPipeline<C>::early_scores();
  u32 chunk_xor = reorder ? sm90::dq_stage_store_chunk_xor(lane) : sm90::dq_stage_chunk_xor(lane);
  asm volatile("" : "+r"(chunk_xor));
  const bool swap = reorder && sm90::dq_stage_store_swaps(lane);
  store_dq_stage<C::kDqCols / 8>(tile, dq, mt0, warp, lane, chunk_xor, swap, C::kDqBoxBytes);
  fence_proxy_async_shared();
  mbarrier_arrive(sm.dq_full(buf));
}

__device__ __forceinline__ float2 ld_shared_f32x2(u32 addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(addr) : "memory");
  return v;
}

// _wl: the step's dQ tile, the sum of both warpgroups' partials, into staging tile i % 2.
// Warpgroup 0 stores its partial once the writer has drained what step i - 2 left there and hands
// it over on the tile's partial mbarrier; warpgroup 1 waits for it, adds its own (a thread owns
// the same elements in both: the accumulator layout does not depend on the warpgroup) and arrives
// on "full" for the writer, after the proxy fence that lets the writer's TMA read its stores.
template <class C>
__device__ __forceinline__ void hand_local_dq_to_writer(const float (&dq)[C::kBlockM / 64][C::kHeadDim / 2], const BwdSm90Smem<C>& sm,
                                                        int i, int wg, int warp, int lane) {
  const int buf = i % 2;
  const u32 tile = sm.dq_tile(buf);
  u32 chunk_xor = sm90::dq_stage_store_chunk_xor(lane);  // recomputed each step, as in hand_dq_to_writer
  asm volatile("" : "+r"(chunk_xor));
  const bool swap = sm90::dq_stage_store_swaps(lane);
  if (wg == 0) {
    if (i >= 2) mbarrier_wait(sm.dq_empty(buf), (i / 2 - 1) & 1);
    store_dq_stage<C::kHeadDim / 8>(tile, dq, 0, warp, lane, chunk_xor, swap, C::kDqBoxBytes);
    mbarrier_arrive(sm.dq_partial(buf));
    return;
  }
  mbarrier_wait(sm.dq_partial(buf), (i / 2) & 1);
#pragma unroll
  for (int mt = 0; mt < C::kBlockM / 64; ++mt) {
#pragma unroll
    for (int nt = 0; nt < C::kHeadDim / 8; ++nt) {
      const u32 addr = tile + sm90::dq_stage_fragment_offset(mt * 64 + warp * 16 + lane / 4, nt, lane, chunk_xor, C::kDqBoxBytes);
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const u32 row_addr = addr + half * 8 * sm90::kDqStageRowBytes;
        const float2 sum = ld_shared_f32x2(row_addr), own = staged_pair(dq[mt], nt, swap, half);
        st_shared_f32x2(row_addr, make_float2(sum.x + own.x, sum.y + own.y));
      }
    }
  }
  fence_proxy_async_shared();
  mbarrier_arrive(sm.dq_full(buf));
}

// Waits for every GEMM in flight, dK/dV's included, which frees the P^T/dS^T fragments it read.
template <class C>
__device__ __forceinline__ void await_dkdv(float (&dv)[C::kDAcc], float (&dk)[C::kDAcc], u32 (&pf)[C::kQSteps][4],
                                           u32 (&dsf)[C::kQSteps][4]) {
  wgmma_wait<0>();
  pin_registers(dv);
  pin_registers(dk);
#pragma unroll
  for (int kk = 0; kk < C::kQSteps; ++kk) {
    pin_registers(pf[kk]);
    pin_registers(dsf[kk]);
  }
}

// _wl, after the step's dK/dV GEMM was issued and its dS^T rows stored: this warpgroup alone
// meets on its rows, awaits dK/dV (the P^T/dS^T fragments die before the dQ tile goes live),
// computes its partial dQ, frees the Q/dO stage and hands the partial on.
template <class C>
__device__ __forceinline__ void local_dq_step(float (&dv)[C::kDAcc], float (&dk)[C::kDAcc], u32 (&pf)[C::kQSteps][4],
                                              u32 (&dsf)[C::kQSteps][4], const BwdSm90Smem<C>& sm, int i, int stage, int wg, int warp,
                                              int lane) {
  named_barrier_sync(C::kLocalDsBarrier + wg, 128);
  await_dkdv<C>(dv, dk, pf, dsf);
  float dq[C::kBlockM / 64][C::kHeadDim / 2];
  issue_local_dq<C>(dq, sm, i % 2, wg);
  wgmma_wait<0>();
#pragma unroll
  for (int mt = 0; mt < C::kBlockM / 64; ++mt) pin_registers(dq[mt]);
  mbarrier_arrive(sm.empty(stage));  // Q and dO of this stage are no longer read
  hand_local_dq_to_writer<C>(dq, sm, i, wg, warp, lane);
}

// dK or dV rows of this thread: values below len_k, zeros up to clear_rows (padded layout). Each
// quad transposes its row's four 8-column tiles (transpose_quad_words) so that a lane stores 8
// consecutive columns at once; the host checks that the pointers and row strides allow 16 bytes.
// lane comes from the caller: reading it again here moved the key loop's register allocation
// (ptxas spilled 4-12 B at hd 64 with score bias). A half is skipped only when no lane of the warp
// writes it, so the shuffles never run in divergent code.
template <class C>
__device__ __forceinline__ void store_grad_rows(u16* out, i64 row_stride, const float (&acc)[C::kDAcc], float scale, int key0, int len_k,
                                                int clear_rows, int lane) {
  static_assert(C::kHeadDim % 32 == 0, "16-byte gradient stores: whole groups of four 8-column tiles");
  const int limit = len_k > clear_rows ? len_k : clear_rows;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int key = key0 + half * 8;
    const bool write = key < limit;
    if (!__any_sync(0xFFFFFFFFu, write)) continue;
    const bool valid = key < len_k;
    u16* row = out + (i64)key * row_stride + (lane % 4) * 8;
#pragma unroll
    for (int group = 0; group < C::kHeadDim / 32; ++group) {
      u32 w[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int nt = group * 4 + j;
        w[j] = valid ? pack_half2<C::kBf16>(acc[4 * nt + 2 * half] * scale, acc[4 * nt + 2 * half + 1] * scale) : 0u;
      }
      transpose_quad_words(w, lane);
      store_16_if(row + group * 32, w, write);
    }
  }
}

template <class C, int N>
__device__ __forceinline__ void zero_regs(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) r[i] = 0.0f;
}

// One key block's steps and its dK/dV. g0 and kv_phase: the steps the CTA ran before it and the
// phase of K/V's mbarrier (persistent, _wp; else 0 and 0). trace_tile: the tile's record in a
// SIGJIT_TRACE_TILES build (unused otherwise).
template <class C>
__device__ __forceinline__ void bwd_consume(const SigjitBwdSm90Params& params, const BwdSm90Smem<C>& sm_in, const SeqSlice& seq,
                                            const BwdSm90Work& w, int h_kv, int b, int g0, u32 kv_phase, int trace_tile) {
  const SigjitBwdParams& bp = params.p;
  const SigjitFwdParams& p = bp.fwd;
  const int tid = threadIdx.x - 128, wg = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
  const SeqRows seq_at = seq_rows<C>(p, tile_batch<C>(b));
  BwdSm90Rows rows;
  rows.key0 = w.n_start + wg * 64 + warp * 16 + lane / 4;
  const float bias = sequence_bias<C>(p, seq);
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int key = rows.key0 + e * 8;
    float c = bias;
    if (C::kScoreBias) c += key < seq.len_k ? __ldg(seq.score_bias + key) : 0.0f;
    rows.addend[e] = SigmoidFold<C::kExact>::addend(c);
  }
  const SigmoidFold<C::kExact> sig(p.scale);

  constexpr bool early = Sm90BwdPipeline<C>::early_scores();
  static_assert(!early || !Sm90BwdPipeline<C>::persistent(), "early scores index the ring by the key block's own steps");
  // The overlapped dQ-writer tiles but _wl: with the shuffled warpgroup index, ptxas (CUDA 13.0)
  // spilled 4-16 B in the tiles without overlap at hd 64 and in _wl at hd 128 with score bias and
  // the exact sigmoid, and 4 B in the atomics tile at hd 128, varlen causal.
  constexpr bool uniform_descriptors = C::kOverlap && Sm90BwdPipeline<C>::dq_writer() && !Sm90BwdPipeline<C>::local_dq();
  float dk[C::kDAcc], dv[C::kDAcc];
  zero_regs<C>(dk);
  zero_regs<C>(dv);
  // S^T, then P^T. Early: the first step's S^T is issued and awaited here, so that every step
  // starts with no GEMM in flight whatever path it came from (a first-step branch inside the
  // loop made ptxas serialize every wgmma: it could no longer tell which group a wait retires).
  float s[C::kSAcc];
  if (w.total_steps > 0) mbarrier_wait(sm_in.kv_full(), kv_phase);
  if (tid == 0) trace_tile_kv_ready(trace_tile);
  if (early && w.total_steps > 0) {
    // (early scores are never persistent: g0 is 0, and the step index below is i; written with g,
    // ptxas spilled 4 B at hd 64 with score bias and the exact sigmoid)
    mbarrier_wait(sm_in.q_full(0), 0);
    issue_transposed_scores<C>(s, sm_in.k(), sm_in.q(0), wg);
    wgmma_wait<0>();
    pin_registers(s);
  }
  for (int i = 0; i < w.total_steps; ++i) {
    // The shared base passes through an empty asm each step, so ptxas rebuilds the GEMMs' base
    // descriptors and dS^T addresses from it (a few integer adds; each wgmma's descriptor is then
    // one immediate add, descriptor_advance) instead of hoisting them all out of the loop into
    // registers, which spilled at hd 128. Where registers allow (uniform_descriptors), shuffles
    // tell ptxas that the base and the warpgroup index are warp-uniform, so the descriptors live
    // in uniform registers (no R2UR per wgmma: 50 a step at hd 128, 30 at hd 64).
    u32 base = sm_in.base;
    asm volatile("" : "+r"(base));
    if constexpr (uniform_descriptors) base = __shfl_sync(0xFFFFFFFFu, base, 0);
    const int wg_u = uniform_descriptors ? __shfl_sync(0xFFFFFFFFu, wg, 0) : wg;
    const BwdSm90Smem<C> sm{base};
    const int g = g0 + i, stage = g % C::kStages;
    const u32 phase = (g / C::kStages) & 1;
    const int h = h_kv * p.kv_group + i / w.steps_per_head;
    const int m_start = (w.m_first + i % w.steps_per_head) * C::kBlockM;

    float dp[C::kSAcc];
    if (!early) {
      mbarrier_wait(sm.q_full(stage), phase);
      issue_transposed_scores<C>(s, sm.k(), sm.q(stage), wg_u);  // S^T = K Q^T
    }
    mbarrier_wait(sm.do_full(stage), phase);
    issue_transposed_scores<C>(dp, sm.v(), sm.dout(stage), wg_u);  // dP^T = V dO^T
    if (C::kOverlap) {
      wgmma_wait<1>();  // S^T is ready; its sigmoid overlaps the dP^T GEMM
    } else {
      wgmma_wait<0>();
      pin_registers(dp);
    }
    pin_registers(s);
    if (step_needs_mask<C>(seq, w.n_start, m_start, w.causal_offset)) {
      sigmoid_sm90<C, true, !C::kOverlap>(s, dp, sig, rows, seq, m_start, w.causal_offset, lane);
    } else {
      sigmoid_sm90<C, false, !C::kOverlap>(s, dp, sig, rows, seq, m_start, w.causal_offset, lane);
    }
    if (C::kOverlap) {
      wgmma_wait<0>();
      pin_registers(dp);
      sigmoid_grad_sm90<C>(dp, s);
    }
    u32 pf[C::kQSteps][4], dsf[C::kQSteps][4];
#pragma unroll
    for (int kk = 0; kk < C::kQSteps; ++kk) {
      accumulator_to_a_fragment<C::kBf16>(pf[kk], s, kk);
      accumulator_to_a_fragment<C::kBf16>(dsf[kk], dp, kk);
    }
    issue_dkdv<C>(dv, dk, pf, dsf, sm, stage);

    const int buf = g % 2;
    store_ds<C>(sm.ds(buf), dsf, wg, warp, lane);
    fence_proxy_async_shared();  // the generic-proxy stores before the dQ wgmma's async reads
    if constexpr (Sm90BwdPipeline<C>::local_dq()) {
      local_dq_step<C>(dv, dk, pf, dsf, sm, g, stage, wg, warp, lane);
      continue;
    }
    if (early) {
      // dK/dV done (it ran under the dS^T stores), which frees the P^T/dS^T fragments, then the
      // next step's S^T = K Q^T, which runs through the dS barrier and beside the dQ GEMM. The
      // last step recomputes its own and discards it: every step then issues the same GEMMs (a
      // conditional one made ptxas serialize all of them), for one extra K Q^T per CTA and kv
      // head while this step's stage is still held.
      await_dkdv<C>(dv, dk, pf, dsf);
      const bool last = i + 1 == w.total_steps;
      const int next = last ? stage : (i + 1) % C::kStages;
      if (!last) mbarrier_wait(sm.q_full(next), ((i + 1) / C::kStages) & 1);
      issue_transposed_scores<C>(s, sm.k(), sm.q(next), wg_u);
    }
    named_barrier_sync(C::kDsBarrier, C::kConsumers * 128);
    float dq[C::kDqMTiles][C::kDqAcc];
    issue_dq<C>(dq, sm, buf, wg_u);
    wgmma_wait<0>();
    pin_registers(dv);
    pin_registers(dk);
    if (!early) {  // (early: the fragments' GEMMs were awaited before the dS barrier)
#pragma unroll
      for (int kk = 0; kk < C::kQSteps; ++kk) {
        pin_registers(pf[kk]);
        pin_registers(dsf[kk]);
      }
    }
#pragma unroll
    for (int mt = 0; mt < C::kDqMTiles; ++mt) pin_registers(dq[mt]);
    if (early) pin_registers(s);
    mbarrier_arrive(sm.empty(stage));  // Q and dO of this stage are no longer read

    float* dqa = bp.dq_accum + seq_at.batch * bp.dqa_stride_b + seq_at.q_row0 * bp.dqa_stride_l + (i64)h * bp.dqa_stride_h;
    if constexpr (Sm90BwdPipeline<C>::dq_writer()) hand_dq_to_writer<C>(dq, sm, g, wg, warp, lane);
    else if (C::kBulkDq) bulk_add_dq_sm90<C>(dqa, bp.dqa_stride_l, dq, sm.dq_stage(), m_start, seq.len_q, tid, wg, warp, lane);
    else add_dq_sm90<C>(dqa, bp.dqa_stride_l, dq, m_start, seq.len_q, wg, warp, lane);
  }
  // The staging tile must stay allocated until the last reductions have read it (their writes
  // need not be waited for: see bwd_write_dq).
  if (C::kBulkDq && tid < C::kBlockM) bulk_wait_read<0>();
  if (tid == 0) trace_tile_steps_done(trace_tile);

  const int clear_rows = C::kLayout == kPadded ? p.seqlen_k : 0;
  // With the dQ writer the loop never needs the sequence's rows: read them again here rather
  // than keep them live across it (ptxas spilled them at hd 128, varlen, causal, e_w).
  const SeqRows out_at = Sm90BwdPipeline<C>::dq_writer() ? seq_rows<C>(p, tile_batch<C>(b)) : seq_at;
  u16* dk_out = (u16*)tensor_row(bp.dk, bp.dk_stride_b, bp.dk_stride_l, bp.dk_stride_h, out_at.batch, out_at.k_row0, h_kv);
  u16* dv_out = (u16*)tensor_row(bp.dv, bp.dv_stride_b, bp.dv_stride_l, bp.dv_stride_h, out_at.batch, out_at.k_row0, h_kv);
  // _wl's loop keeps no lane live at its end (ptxas spilled 4 B at hd 128 when it had to): read it.
  const int store_lane = Sm90BwdPipeline<C>::local_dq() ? lane_id() : lane;
  store_grad_rows<C>(dk_out, bp.dk_stride_l, dk, p.scale, rows.key0, seq.len_k, clear_rows, store_lane);
  store_grad_rows<C>(dv_out, bp.dv_stride_l, dv, 1.0f, rows.key0, seq.len_k, clear_rows, store_lane);
}

// dK and dV rows [n_start, n_start + BLOCK_N) of a padded sequence past its keys: zeros, with
// every thread of the CTA.
template <class C>
__device__ __forceinline__ void store_zero_key_rows(const SigjitBwdParams& bp, int b, int h_kv, int n_start, int thread = -1,
                                                    int threads = C::kThreads) {
  const int end = n_start + C::kBlockN < bp.fwd.seqlen_k ? n_start + C::kBlockN : bp.fwd.seqlen_k;
  store_zero_rows<C>((u16*)tensor_row(bp.dk, bp.dk_stride_b, bp.dk_stride_l, bp.dk_stride_h, b, 0, h_kv), bp.dk_stride_l, n_start, end,
                     thread, threads);
  store_zero_rows<C>((u16*)tensor_row(bp.dv, bp.dv_stride_b, bp.dv_stride_l, bp.dv_stride_h, b, 0, h_kv), bp.dv_stride_l, n_start, end,
                     thread, threads);
}

// This key block's share of the padded dQ rows (common/padded_rows.h) for each query head of its
// group: zeros, with every thread of the CTA.
template <class C>
__device__ __forceinline__ void store_zero_query_rows(const SigjitBwdParams& bp, const SeqSlice& seq, int b, int h_kv, int key_block,
                                                      int thread = -1, int threads = C::kThreads) {
  const SigjitFwdParams& p = bp.fwd;
  const RowRange rows = dq_rows_zeroed_by_key_block(key_block, seq.len_q, p.seqlen_q, seq.len_k, p.seqlen_k, C::kBlockN);
  for (int g = 0; g < p.kv_group; ++g) {
    u16* dq = (u16*)tensor_row(bp.dq, bp.dq_stride_b, bp.dq_stride_l, bp.dq_stride_h, b, 0, h_kv * p.kv_group + g);
    store_zero_rows<C>(dq, bp.dq_stride_l, rows.begin, rows.end, thread, threads);
  }
}

// The schedule's tile count and a tile's coordinates, from the parameters at each use: held in
// registers across a tile they spilled at hd 128 (padded, causal, score bias, exact sigmoid).
template <class C>
__device__ __forceinline__ int bwd_tile_count(const SigjitFwdParams& p) {  // + gridDim.x fits an int: checked on the host
  return (int)sched::bwd_tiles(p.seqlen_k, C::kBlockN, p.heads_q / p.kv_group, p.batch);
}
template <class C>
__device__ __forceinline__ sched::BwdTile bwd_tile_at(const SigjitFwdParams& p, int t) {
  return sched::bwd_tile(t, sched::bwd_key_blocks(p.seqlen_k, C::kBlockN), p.heads_q / p.kv_group);
}

// _wp's tile queue. The producer takes the grid's first tiles by blockIdx, then claims each next
// one from a global counter, as the one-CTA-per-tile grid hands the next tile to the SM that frees
// first (a fixed round-robin deal ends on its slowest CTA's share: bench/PROFILE-backward.md). It
// posts tile j in slot j % 2; the writer and the consumers take them in the same order, so the
// three roles agree on every tile. An index >= the tile count ends the CTA.
template <class C>
__device__ __forceinline__ void post_tile(const BwdSm90Smem<C>& sm, int j, int tile) {
  const int slot = j & 1;
  if (j >= 2) mbarrier_wait(sm.tile_empty(slot), (j / 2 - 1) & 1);  // everyone took tile j - 2
  st_shared_u32(sm.tile_slot(slot), (u32)tile);
  mbarrier_arrive(sm.tile_full(slot));  // release: the slot's store is seen by whoever waits
}
template <class C>
__device__ __forceinline__ int take_tile(const BwdSm90Smem<C>& sm, int j) {
  const int slot = j & 1;
  mbarrier_wait(sm.tile_full(slot), (j / 2) & 1);
  u32 tile;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(tile) : "r"(sm.tile_slot(slot)) : "memory");
  mbarrier_arrive(sm.tile_empty(slot));
  return (int)tile;
}

// _wp: the producer claims key tiles (sm90/bwd_schedule.h's order) and posts them to the writer
// and the consumers; each role carries the same step count across tiles, so the three agree on
// every stage, phase and buffer. Wholly padded key blocks cost the consumers their zero rows and
// the others nothing.
template <class C>
__device__ __forceinline__ void bwd_sm90_persistent(const SigjitBwdSm90Params& params, const BwdSm90Smem<C>& sm) {
  const SigjitFwdParams& p = params.p.fwd;
  if (threadIdx.x < 128) {
    if (C::kRebalanceRegs) setmaxnreg_dec<C::kProducerRegs>();
    // Two loops, not one with a role test: 24 registers hold one role's state, not both.
    int g = 0;
    if (threadIdx.x == 0) {
      int t = (int)blockIdx.x;
      post_tile<C>(sm, 0, t);
      for (int j = 1; t < bwd_tile_count<C>(p); ++j) {
        const sched::BwdTile tile = bwd_tile_at<C>(p, t);
        const BwdSm90Work w = bwd_sm90_work<C>(p, locate_sequence<C>(p, tile.batch, tile.head_kv * p.kv_group), tile.key_block);
        if (w.total_steps > 0) bwd_produce<C>(params, sm, w, tile.head_kv, tile.batch, g);
        g += w.total_steps;
        // Claimed once this tile's loads are issued: the consumers still have a ring of steps to
        // go, which hides the atomic's round trip.
        t = sched::bwd_claimed_tile(atomicAdd(params.tile_counter, 1), (int)gridDim.x);
        post_tile<C>(sm, j, t);
      }
      // This CTA is on its last tile: once every CTA is, the convert kernel may launch (it runs
      // on the SMs that free up, converting the sequences already counted done).
      griddep_launch_dependents();
    } else if (threadIdx.x == 32) {
      for (int j = 0;; ++j) {
        const int t = take_tile<C>(sm, j);
        if (t >= bwd_tile_count<C>(p)) return;
        const sched::BwdTile tile = bwd_tile_at<C>(p, t);
        const BwdSm90Work w = bwd_sm90_work<C>(p, locate_sequence<C>(p, tile.batch, tile.head_kv * p.kv_group), tile.key_block);
        if (w.total_steps > 0) bwd_write_dq<C>(params, sm, w, tile.head_kv, tile.batch, tile.key_block, g);
        count_tile_reduced<C>(params, tile.batch, w.total_steps > 0);
        trace_tile_reduced(t);
        g += w.total_steps;
      }
    } else if (threadIdx.x >= 64 && params.dq_zero_done != nullptr) {
      bwd_zero_dq<C>(params);
    }
    return;
  }
  if (C::kRebalanceRegs) setmaxnreg_inc<C::kConsumerRegs>();
  int g = 0;
  u32 kv_phase = 0;
  for (int j = 0;; ++j) {
    const int t = take_tile<C>(sm, j);
    if (t >= bwd_tile_count<C>(p)) return;
    const sched::BwdTile tile = bwd_tile_at<C>(p, t);
    const SeqSlice seq = locate_sequence<C>(p, tile.batch, tile.head_kv * p.kv_group);
    const int n_start = tile.key_block * C::kBlockN;
    if (n_start >= seq.len_k) {  // as bwd_sm90_kernel's wholly padded key block, by the consumers
      if (C::kLayout == kPadded && n_start < p.seqlen_k) {
        const int thread = threadIdx.x - 128, threads = C::kThreads - 128;
        store_zero_key_rows<C>(params.p, tile.batch, tile.head_kv, n_start, thread, threads);
        if (params.p.dq_pad_zero_key_block != 0)
          store_zero_query_rows<C>(params.p, seq, tile.batch, tile.head_kv, tile.key_block, thread, threads);
      }
      continue;
    }
    const BwdSm90Work w = bwd_sm90_work<C>(p, seq, tile.key_block);
    if (threadIdx.x == 128) trace_tile_begin(t);
    bwd_consume<C>(params, sm, seq, w, tile.head_kv, tile.batch, g, kv_phase, t);
    if (threadIdx.x == 128) trace_tile_end(t);
    if (w.total_steps > 0) {
      g += w.total_steps;
      kv_phase ^= 1;
    }
  }
}

template <class C>
__device__ __forceinline__ void bwd_sm90_kernel(const SigjitBwdSm90Params& params) {
  extern __shared__ __align__(1024) unsigned char bwd_sm90_smem[];
  if constexpr (Sm90BwdPipeline<C>::persistent()) {
    const BwdSm90Smem<C> sm{(shared_address(bwd_sm90_smem) + 1023u) & ~1023u};
    if (threadIdx.x == 0) bwd_init_barriers<C>(sm);
    __syncthreads();
    bwd_sm90_persistent<C>(params, sm);
    return;
  }
  const SigjitFwdParams& p = params.p.fwd;
  const int b = blockIdx.z, h_kv = blockIdx.y;
  {
    const SeqSlice seq = locate_sequence<C>(p, b, h_kv * p.kv_group);
    const int n_start = blockIdx.x * C::kBlockN;
    if (n_start >= seq.len_k) {
      // A wholly padded key block: its zero rows, and none of the pipeline's setup (barriers,
      // role split), which costs as much as the stores. Ragged batches are mostly such blocks
      // (84 % of the CTAs of bench/ragged_split.py's batch), so they also take the padded dQ rows
      // off the convert kernel when the launch asks (dq_pad_zero_key_block).
      if (C::kLayout == kPadded && n_start < p.seqlen_k) {
        store_zero_key_rows<C>(params.p, b, h_kv, n_start);
        if (params.p.dq_pad_zero_key_block != 0) store_zero_query_rows<C>(params.p, seq, b, h_kv, blockIdx.x);
      }
      if constexpr (Sm90BwdPipeline<C>::dq_writer() && !Sm90BwdPipeline<C>::ordered_dq()) {  // nothing reduced: counted at once
        if (threadIdx.x == 0 && params.p.dq_reduced != nullptr) red_release_gpu_add(params.p.dq_reduced + b, 1);
      }
      return;
    }
  }
  const BwdSm90Smem<C> sm{(shared_address(bwd_sm90_smem) + 1023u) & ~1023u};
  if (threadIdx.x == 0) bwd_init_barriers<C>(sm);
  __syncthreads();

  // Role split: one branch per warpgroup role, as setmaxnreg requires. Each role derives the
  // sequence and its steps itself, after setmaxnreg: values carried across the split were
  // spilled by ptxas (the consumer's loop bound, at hd 128 with score bias and the exact sigmoid).
  if (threadIdx.x < 128) {
    if (C::kRebalanceRegs) setmaxnreg_dec<C::kProducerRegs>();
    if (threadIdx.x == 0) {
      const BwdSm90Work w = bwd_sm90_work<C>(p, locate_sequence<C>(p, b, h_kv * p.kv_group), blockIdx.x);
      if (w.total_steps > 0) bwd_produce<C>(params, sm, w, h_kv, b, 0);
    } else if constexpr (Sm90BwdPipeline<C>::dq_writer()) {
      if (threadIdx.x == 32) {
        // The convert may launch once every CTA has started (it runs on the SMs the last wave frees).
        if constexpr (!Sm90BwdPipeline<C>::ordered_dq()) griddep_launch_dependents();
        const BwdSm90Work w = bwd_sm90_work<C>(p, locate_sequence<C>(p, b, h_kv * p.kv_group), blockIdx.x);
        if (w.total_steps > 0) bwd_write_dq<C>(params, sm, w, h_kv, b, blockIdx.x, 0);
        count_tile_reduced<C>(params, b, w.total_steps > 0);
        trace_tile_reduced(launch_order_tile());
      }
    }
  } else {
    if (C::kRebalanceRegs) setmaxnreg_inc<C::kConsumerRegs>();
    const SeqSlice seq = locate_sequence<C>(p, b, h_kv * p.kv_group);
    if (threadIdx.x == 128) trace_tile_begin(launch_order_tile());
    bwd_consume<C>(params, sm, seq, bwd_sm90_work<C>(p, seq, blockIdx.x), h_kv, b, 0, 0, launch_order_tile());
    if (threadIdx.x == 128) trace_tile_end(launch_order_tile());
  }
}

}  // namespace kern
}  // namespace sigjit
