#pragma once

#include "compiler/kernel_spec.hpp"
#include "runtime/kernel_cache.hpp"
#include "runtime/validate.hpp"

#include <cuda.h>

namespace sigjit::detail {

// The kernel spec that serves a (validated) call on a device of the given arch.
KernelSpec forward_spec(const Resolved& r, const Arch& arch);

// Empty when TMA tensor maps can describe the call's Q, K and V (the sm90 family's loads);
// otherwise why not. forward() then falls back to the sm80 family.
std::string tma_unsuitable(const Resolved& r);

// Launches a loaded forward kernel (either family) for a validated call (no further checks
// beyond the sm90 family's TMA requirements).
void launch_forward(const Resolved& r, const LoadedKernel& kernel, const TileConfig& config, CUstream stream);

// The tile config a call uses: SIGJIT_FORCE_TILE if set, else the heuristic default.
TileConfig choose_config(const KernelSpec& spec);

}  // namespace sigjit::detail
