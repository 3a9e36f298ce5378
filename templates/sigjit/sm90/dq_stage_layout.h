// Where the dQ writer's staging tiles (sm90/bwd.cuh, tile suffix _w) keep dQ element (row, col):
// the layout cp.reduce.async.bulk.tensor reads from shared memory, so that the consumers' plain
// stores and the writer's tensor reductions agree. Host and device: a CPU test
// (tests/cpu/templates/test_dq_stage_layout.cpp) checks the kernel's per-thread form against the
// canonical one for every thread, and the canonical one against the 128-byte swizzle's definition.
//
// A tile of block_q rows x D fp32 columns is D/32 boxes of 32 columns (128 bytes a row, the span
// the 128B swizzle allows a box row), each box block_q rows of 128 bytes, box after box. Inside a
// box the swizzle permutes the 16-byte chunks of a row: chunk j of row r sits at chunk j ^ (r % 8)
// (CU_TENSOR_MAP_SWIZZLE_128B: address bits 4-6 XOR bits 7-9 within each 1024-byte span).
#pragma once

#include "sigjit/common/host_device.h"

namespace sigjit {
namespace kern {
namespace sm90 {

enum : int { kDqStageRowBytes = 128, kDqStageBoxCols = 32 };

// The canonical byte offset of (row, col) in a staging tile whose boxes are box_bytes apart.
SIGJIT_HD constexpr unsigned dq_stage_offset(int row, int col, int box_bytes) {
  return (unsigned)((col / kDqStageBoxCols) * box_bytes + row * kDqStageRowBytes) +
         ((unsigned)((col % kDqStageBoxCols) / 4) ^ (unsigned)(row % 8)) * 16u + (unsigned)(col % 4) * 4u;
}

// The kernel's form, per thread of a wgmma accumulator tile: lane holds rows r0 = 16 warp + lane/4
// (+ 64 per m64 tile) and r0 + 8, and in n8 tile nt the columns 8 nt + 2 (lane % 4) + {0, 1}.
// Both rows have r % 8 = lane / 4, so the XOR term is one per thread (chunk_xor, which the kernel
// computes once per step); the second row is 8 rows = 1024 bytes further, the second column 4.
SIGJIT_HD constexpr unsigned dq_stage_chunk_xor(int lane) { return (unsigned)((lane % 4) / 2) ^ (unsigned)(lane / 4); }
SIGJIT_HD constexpr unsigned dq_stage_fragment_offset(int r0, int nt, int lane, unsigned chunk_xor, int box_bytes) {
  return (unsigned)(r0 * kDqStageRowBytes + (lane % 2) * 8 + (nt / 4) * box_bytes) + (((unsigned)(2 * (nt % 4))) ^ chunk_xor) * 16u;
}

// Bank-conflict-free stores: in store slot nt a thread stores n8 tile nt, or nt ^ 2 when its rows
// are odd (lane / 4 odd). Why: a warp's 64-bit stores are served per half-warp, rows r0..r0+3
// (or +4..+7); under the swizzle rows r and r ^ 1 put the 32 bytes of one n8 tile into the same
// two 16-byte chunks, i.e. the same 8 banks, so storing tile nt in every row takes two wavefronts
// per half-warp (ncu, H100 2026-12-06: 2x the ideal on every dQ staging store). Tile nt ^ 2 lies
// in the other half of the row: the half-warp's 128 bytes then cover the 32 banks once. The
// slot's address is the stored tile's: dq_stage_fragment_offset(r0, nt, lane, dq_stage_store_chunk_xor(lane), ...).
SIGJIT_HD constexpr bool dq_stage_store_swaps(int lane) { return ((lane / 4) & 1) != 0; }
SIGJIT_HD constexpr int dq_stage_store_tile(int nt, int lane) { return dq_stage_store_swaps(lane) ? nt ^ 2 : nt; }
SIGJIT_HD constexpr unsigned dq_stage_store_chunk_xor(int lane) {
  return dq_stage_chunk_xor(lane) ^ (dq_stage_store_swaps(lane) ? 4u : 0u);
}

}  // namespace sm90
}  // namespace kern
}  // namespace sigjit
