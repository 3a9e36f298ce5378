// The work-tile schedule of the persistent sm90 backward (tile suffix _wp, sm90/bwd.cuh).
//
// What: a persistent CTA takes key tiles t = blockIdx.x + k * gridDim.x; a tile is (key block,
// kv head, sequence) with the key block fastest, the order the one-CTA-per-tile grid launches
// them in, so that the CTAs running at once share a few heads' Q and dO in L2.
// Why: a key block's fixed cost (launch, barrier init, K/V load, dK/dV stores) is 1.8-3.3 query
// steps, a fifth of the time at L 1024 (bench/PROFILE-backward.md); a CTA that stays loads the
// next block's K/V and Q/dO under this block's dK/dV stores and pays the launch once.
// Cost: nothing per tile beyond a division and a modulo; tiles of unequal cost (causal, ragged)
// are dealt round-robin, not balanced.
// Shared by host and device: tests/cpu/templates/test_sm90_schedule.cpp checks that every tile is taken
// exactly once for any grid.
#pragma once

#include "sigjit/common/host_device.h"

namespace sigjit {
namespace sched {

struct BwdTile {
  int key_block, head_kv, batch;
};

SIGJIT_HD constexpr int bwd_key_blocks(int seqlen_k, int block_k) { return (seqlen_k + block_k - 1) / block_k; }

// Tiles of the whole problem; the host checks that it fits an int before launching.
SIGJIT_HD constexpr long long bwd_tiles(int seqlen_k, int block_k, int heads_kv, int batch) {
  return (long long)bwd_key_blocks(seqlen_k, block_k) * heads_kv * batch;
}

SIGJIT_HD constexpr BwdTile bwd_tile(int t, int key_blocks, int heads_kv) {
  return BwdTile{t % key_blocks, (t / key_blocks) % heads_kv, t / key_blocks / heads_kv};
}

}  // namespace sched
}  // namespace sigjit
