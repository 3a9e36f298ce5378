#pragma once

#include "compiler/kernel_spec.hpp"
#include "runtime/kernel_cache.hpp"
#include "runtime/validate.hpp"

#include <cuda.h>

namespace sigjit::detail {

// The kernel spec that serves a (validated) call on a device of the given arch.
KernelSpec forward_spec(const Resolved& r, const Arch& arch);

// Launches a loaded forward kernel for a validated call (no further checks).
void launch_forward(const Resolved& r, const LoadedKernel& kernel, const TileConfig& config, CUstream stream);

// The tile config a call uses: SIGJIT_FORCE_TILE if set, else the heuristic default.
TileConfig choose_config(const KernelSpec& spec);

}  // namespace sigjit::detail
