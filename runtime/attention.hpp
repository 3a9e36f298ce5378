#pragma once

#include "compiler/kernel_spec.hpp"
#include "runtime/validate.hpp"

namespace sigjit::detail {

// The kernel spec that serves a (validated) call on a device of the given arch.
KernelSpec forward_spec(const Resolved& r, const Arch& arch);

// The tile config a call uses: SIGJIT_FORCE_TILE if set, else the heuristic default.
TileConfig choose_config(const KernelSpec& spec);

}  // namespace sigjit::detail
