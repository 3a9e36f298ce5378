#pragma once

#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "jit/kernel_table.hpp"
#include "problem/call.hpp"
#include "sigjit/common/params.h"

#include <cuda.h>

#include <cstddef>

namespace sigjit::detail {

// The kernel spec that serves a (validated) call on a device of the given arch.
KernelSpec forward_spec(const Resolved& r, const Arch& arch);

// The kernel forward() launches for a validated call on `dev`: the spec's resolved kernel, or
// the portable family's default when TMA cannot describe the tensors.
struct DeviceInfo;
struct ResolvedKernel;
ResolvedKernel forward_kernel(const DeviceInfo& dev, const Resolved& r);

}  // namespace sigjit::detail
