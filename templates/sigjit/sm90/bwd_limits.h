// The Hopper fused backward's sizes, dQ split and limits as functions of its tile parameters
// (block_k keys per CTA = 64 per consumer warpgroup, block_q queries per step). The template's
// config (sm90/bwd.cuh) and the host's family (kernels/sm90_bwd.cpp) both compute from these.
// Host and device: constexpr only, no CUDA.
#pragma once

#include "sigjit/common/host_device.h"
#include "sigjit/sm90/limits.h"

namespace sigjit {
namespace kern {
namespace sm90 {

// The bulk-dQ staging tile (_r): block_q fp32 rows padded by 32 bytes, so that the 8 rows one
// warp stores start 8 banks apart.
SIGJIT_HD constexpr int bwd_dq_stage_row_bytes(int head_dim) { return head_dim * 4 + 32; }
SIGJIT_HD constexpr int bwd_dq_stage_bytes(int head_dim, int block_q, bool bulk_dq) {
  return bulk_dq ? block_q * bwd_dq_stage_row_bytes(head_dim) : 0;
}

// The dQ writer's staging (_w): two fp32 tiles of block_q rows, each in boxes of 32 columns (the
// 128 bytes a 128B-swizzled TMA box row may span), swizzled as TMA reads them (sm90/
// dq_stage_layout.h), so that the writer warp hands each box to one tensor bulk reduction. Two: the consumers fill one while the
// writer drains the other. Then two more mbarrier pairs (full, empty per tile).
enum : int { kBwdDqWriterBarriers = 4 };
SIGJIT_HD constexpr int bwd_dq_writer_tile_bytes(int head_dim, int block_q) { return block_q * head_dim * 4; }
SIGJIT_HD constexpr int bwd_dq_writer_stage_bytes(int head_dim, int block_q, bool dq_writer) {
  return dq_writer ? 2 * bwd_dq_writer_tile_bytes(head_dim, block_q) : 0;
}

// Warpgroup-local dQ (_wl): the writer's two staging tiles, plus one mbarrier per tile on which
// consumer warpgroup 0 hands its partial tile to warpgroup 1, which adds its own.
enum : int { kBwdDqLocalBarriers = 2 };

// The persistent schedule's (_wp) tile queue: two slots of one tile index, each with a full and an
// empty mbarrier, in 8-byte words after the other mbarriers.
enum : int { kBwdTileQueueWords = 6 };

// K and V, STAGES x (Q + dO) tiles, two dS^T tiles, the dQ staging (rows for _r, swizzled tiles
// for _w), 1 + 3 x STAGES mbarriers (+ 4 for _w, + 2 for _wl, + the tile queue for _wp), 1024
// bytes of alignment slack.
SIGJIT_HD constexpr int bwd_smem_bytes(int head_dim, int block_k, int block_q, int stages, bool bulk_dq, bool dq_writer = false,
                                       bool local_dq = false, bool persistent = false) {
  return 2 * head_dim * (2 * block_k + 2 * stages * block_q) + 2 * 2 * block_k * block_q + bwd_dq_stage_bytes(head_dim, block_q, bulk_dq) +
         bwd_dq_writer_stage_bytes(head_dim, block_q, dq_writer) +
         8 * (1 + 3 * stages + (dq_writer ? kBwdDqWriterBarriers : 0) + (local_dq ? kBwdDqLocalBarriers : 0) +
              (persistent ? kBwdTileQueueWords : 0)) +
         1024;
}

// How the consumers share a step's dQ tile: by m64 query tiles where they divide over the
// consumers, else by head-dim columns (whole 64-column swizzle blocks each).
SIGJIT_HD constexpr bool bwd_dq_split_rows(int block_q, int consumers) { return (block_q / 64) % consumers == 0; }
SIGJIT_HD constexpr int bwd_dq_mtiles(int block_q, int consumers) {
  return bwd_dq_split_rows(block_q, consumers) ? block_q / 64 / consumers : block_q / 64;
}
SIGJIT_HD constexpr int bwd_dq_cols(int head_dim, int block_q, int consumers) {
  return bwd_dq_split_rows(block_q, consumers) ? head_dim : head_dim / consumers;
}

// Live fp32/b32 registers per consumer thread: dK and dV throughout, plus the larger phase:
// S^T and dP^T (sigmoid), or this warpgroup's dQ tiles and the P^T/dS^T fragments (GEMMs). Early
// scores (sm90/bwd.cuh) hold the next step's S^T in place of the fragments, the same count.
// Warpgroup-local dQ (_wl) awaits dK/dV (freeing the fragments) before its dQ GEMM, whose tile
// is the whole step's: block_q x head_dim over the warpgroup's own 64 keys.
SIGJIT_HD constexpr int bwd_register_estimate(int head_dim, int block_q, int consumers, bool local_dq = false) {
  const int sigmoid_phase = block_q;
  const int fragments = block_q / 2;
  const int local_dq_tile = block_q * head_dim / 128;
  const int gemm_phase = local_dq ? (fragments > local_dq_tile ? fragments : local_dq_tile)
                                  : bwd_dq_mtiles(block_q, consumers) * bwd_dq_cols(head_dim, block_q, consumers) / 2 + fragments;
  return head_dim + (sigmoid_phase > gemm_phase ? sigmoid_phase : gemm_phase);
}
enum : int { kBwdRegisterLimit = 192 };  // above it ptxas spills (setmaxnreg gives the consumers 240)

}  // namespace sm90
}  // namespace kern
}  // namespace sigjit
