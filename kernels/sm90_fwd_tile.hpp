// The Hopper forward family's tile: its tunables (kernels/sm90_fwd.cpp gives their grammar and limits).
#pragma once

namespace sigjit {

// "h128x128c2s2[o][_pp][_f<Q>][_p]": 64 query rows per consumer warpgroup, block_n keys per
// step, `stages` TMA stages; overlap: the sigmoid overlaps the next tile's GEMMs; pingpong: the
// two consumer warpgroups take turns on the tensor cores; fma_quarters: quarters of the sigmoids
// on the FMA pipes; persistent: CTAs loop over work tiles.
struct Sm90FwdTile {
  int block_n = 128;
  int consumers = 2;
  int stages = 2;
  bool overlap = false;
  bool pingpong = false;
  int fma_quarters = 0;
  bool persistent = false;
  int block_m() const { return 64 * consumers; }
};

}  // namespace sigjit
