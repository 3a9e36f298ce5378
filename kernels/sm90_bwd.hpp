// The Hopper fused backward family's own decisions, for its file (kernels/sm90_bwd.cpp) and tests.
#pragma once

#include "kernels/tile_config.hpp"
#include "problem/spec.hpp"

namespace sigjit {

// True when the sm90_bwd family can serve the spec (backward_fused, sm_90a, head dim 64/128).
bool sm90_backward_supports(const KernelSpec& spec);
// The sm90_bwd config used without tuning (also what the GPU tests force).
TileConfig default_sm90_backward_config(const KernelSpec& spec);

}  // namespace sigjit
