// The portable (sm80) family's tile: its tunables (kernels/sm80.cpp gives their grammar and limits).
#pragma once

namespace sigjit {

// "m128n64w4s2[qs]": block_m query rows (key rows in the backward's dK/dV kernels) over `warps`
// warps, block_n streamed rows per step, `stages` cp.async stages; q_in_regs keeps the fixed
// tile's fragments in registers for the whole loop (qs: re-read from shared memory each step).
struct Sm80Tile {
  int block_m = 128;
  int block_n = 64;
  int warps = 8;
  int stages = 2;
  bool q_in_regs = true;
};

}  // namespace sigjit
