// The Hopper forward's sizes and limits as functions of its tile parameters. The template's
// config (sm90/fwd.cuh) and the host's family (kernels/sm90_fwd.cpp) both compute from these, so
// the host's checks and launch size cannot drift from what the kernel lays out. Host and device:
// constexpr only, no CUDA.
#pragma once

#include "sigjit/common/host_device.h"
#include "sigjit/sm90/limits.h"

namespace sigjit {
namespace kern {
namespace sm90 {

// Q, STAGES x (K + V) tiles of 16-bit rows (FP8: one byte an element, V as V^T of the same
// size), 1 + 4 x STAGES mbarriers (one more, q_empty, when persistent), and 1024 bytes to align
// the base to the 128B-swizzle atom.
SIGJIT_HD constexpr int fwd_smem_bytes(int head_dim, int block_m, int block_n, int stages, bool persistent, int elem_bytes = 2) {
  return elem_bytes * head_dim * (block_m + 2 * stages * block_n) + 8 * (1 + 4 * stages + (persistent ? 1 : 0)) + 1024;
}

// fp32/b32 registers per consumer thread of the O, S and P fragments.
SIGJIT_HD constexpr int fwd_fragment_regs(int head_dim, int block_n) { return head_dim / 2 + block_n / 2 + block_n / 4; }

// FP8: P holds four e4m3 scores per register.
SIGJIT_HD constexpr int fwd_fp8_fragment_regs(int head_dim, int block_n) { return head_dim / 2 + block_n / 2 + block_n / 8; }

// What those fragments may take of setmaxnreg's consumer budget (the rest: addresses, loop
// state, the sigmoid's temporaries), from ptxas's reports (CUDA 13.0) over every feature.
SIGJIT_HD constexpr int fwd_fragment_regs_limit(int consumers) { return consumers == 3 ? 128 : 192; }

}  // namespace sm90
}  // namespace kern
}  // namespace sigjit
