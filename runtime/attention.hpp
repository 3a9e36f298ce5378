#pragma once

#include "compiler/kernel_spec.hpp"
#include "runtime/validate.hpp"

namespace sigjit::detail {

// The kernel spec that serves a (validated) call on a device of the given arch.
KernelSpec forward_spec(const Resolved& r, const Arch& arch);

}  // namespace sigjit::detail
