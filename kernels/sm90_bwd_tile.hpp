// The Hopper backward family's tile: its tunables (kernels/sm90_bwd.cpp gives their grammar and limits).
#pragma once

namespace sigjit {

// "hb128x64c2s2[o][e][_r|_w[l|d|p]]": 64 keys per consumer warpgroup (a CTA's key block), block_q
// query rows per step; overlap: the sigmoid of S^T overlaps the dP^T GEMM; early_scores: the
// next step's S^T GEMM is issued before this step's dS barrier and dQ GEMM; dQ added to the
// workspace by per-thread atomics, by one bulk reduction per row from shared memory (bulk_dq,
// _r), or by a writer warp's tensor bulk reductions from swizzled staging tiles (dq_writer, _w),
// in key-block order with ordered_dq (_wd: the deterministic mode's, never a tuner candidate);
// local_dq (_wl): each consumer warpgroup's dQ over its own keys, summed in the staging tile (no
// dS barrier between the warpgroups); persistent (_wp): min(key tiles, SMs) CTAs claiming the key
// tiles from a counter in the workspace (sm90/bwd_schedule.h), the plain writer's only.
struct Sm90BwdTile {
  int block_q = 64;
  int consumers = 2;
  int stages = 2;
  bool overlap = false;
  bool bulk_dq = false;
  bool early_scores = false;
  bool dq_writer = false;
  bool ordered_dq = false;
  bool local_dq = false;
  bool persistent = false;
  int block_k() const { return 64 * consumers; }
};

}  // namespace sigjit
