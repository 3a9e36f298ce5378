// The Hopper forward family's own decisions, for its file (kernels/sm90_fwd.cpp) and its tests.
#pragma once

#include "kernels/tile_config.hpp"
#include "problem/spec.hpp"

namespace sigjit {

// True when the sm90 family can serve the spec at all (forward, sm_90a, head dim 64/128/256).
bool sm90_family_supports(const KernelSpec& spec);
// The sm90 config used without tuning (also what the GPU tests force).
TileConfig default_sm90_config(const KernelSpec& spec);
// Whether the sm90 default for the spec is scheduled persistently.
bool sm90_persistent_pays(const KernelSpec& spec);

}  // namespace sigjit
