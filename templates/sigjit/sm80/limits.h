// The sm80 family's shared-memory sizes and limits as functions of its tile parameters. The
// templates' configs (sm80/fwd.cuh FwdConfig, sm80/bwd.cuh DkdvLayout) and the host's family
// (kernels/sm80.cpp) both compute from these. Host and device: constexpr only, no CUDA.
#pragma once

#include "sigjit/common/host_device.h"
namespace sigjit {
namespace kern {
namespace sm80 {

// Tile rows are padded by one 16-byte chunk: 8 consecutive rows then start 16 bytes apart
// modulo 128, so the eight row addresses of an ldmatrix hit eight distinct bank groups.
SIGJIT_HD constexpr int row_elems(int head_dim) { return head_dim + 8; }

// Forward: Q (block_m rows) and a STAGES-deep ring of K and V tiles (block_n rows), 16-bit.
SIGJIT_HD constexpr int fwd_smem_bytes(int head_dim, int block_m, int block_n, int stages) {
  return 2 * (block_m * row_elems(head_dim) + 2 * stages * block_n * row_elems(head_dim));
}

// Backward (block_m keys fixed, block_n queries streamed): two fixed tiles (K and V) where the
// forward keeps one, and for the fused kernel the dS^T staging tile, block_m x (block_n + 8).
SIGJIT_HD constexpr int bwd_smem_bytes(int head_dim, int block_m, int block_n, int stages, bool fused) {
  return 2 * (2 * block_m * row_elems(head_dim) + 2 * stages * block_n * row_elems(head_dim) + (fused ? block_m * (block_n + 8) : 0));
}

// Opt-in shared memory per block: 227 KB on sm_90/sm_100, 163 KB on sm_80, 99 KB on the other
// sm_8x and on sm_12x (consumer Blackwell). The templates assert the largest.
SIGJIT_HD constexpr int smem_limit(int major, int minor) {
  return major >= 9 && major != 12 ? 227 * 1024 : (major == 8 && minor == 0 ? 163 * 1024 : 99 * 1024);
}
enum : int { kSmemLimitMax = 227 * 1024 };

// Accumulator registers per thread that fit without spilling (O, S, Q fragments forward; dK,
// dV, S, dP backward).
enum : int { kAccumulatorRegisterLimit = 224 };

}  // namespace sm80
}  // namespace kern
}  // namespace sigjit
