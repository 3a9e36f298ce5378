// The Hopper fused backward family's own decisions, for its file (kernels/sm90_bwd.cpp) and tests.
#pragma once

#include "kernels/tile_config.hpp"
#include "problem/spec.hpp"

#include <vector>

namespace sigjit {

// True when the sm90_bwd family can serve the spec (backward_fused, sm_90a, head dim 64/128).
bool sm90_backward_supports(const KernelSpec& spec);
// The sm90_bwd config used without tuning (also what the GPU tests force).
TileConfig default_sm90_backward_config(const KernelSpec& spec);

// Whether the tuner times the issue 21 levers (early scores e, the dQ writer _w). False until
// their GPU suites and compute-sanitizer have passed on a device (scripts/device/bwd_levers.sh):
// a tune must never run a kernel that could hang. Forced tiles (SIGJIT_FORCE_TILE, --tiles) reach
// them either way.
inline constexpr bool kSm90BackwardLeversVerified = false;

// Every valid tile the tuner could time for the spec, the levers included when with_levers
// (the family's candidates pass kSm90BackwardLeversVerified).
std::vector<TileConfig> sm90_backward_tiles(const KernelSpec& spec, bool with_levers);

}  // namespace sigjit
