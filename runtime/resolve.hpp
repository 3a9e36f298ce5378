// Which kernel serves a spec, in order: the in-process table (by problem key), the on-disk
// store (tuned or default config + verified cubin, no NVRTC), a tuning run when
// SIGJIT_AUTOTUNE=1, else the heuristic default config compiled on the spot and written to the
// store for the next process. SIGJIT_FORCE_TILE bypasses all of it (benchmarks, debugging);
// SIGJIT_DISABLE_CACHE=1 skips the store. Store problems are logged and never fail a call.
#pragma once

#include "jit/binaries.hpp"

#include <optional>
#include <string>

namespace sigjit::detail {

ResolvedKernel resolve_kernel(const DeviceInfo& dev, const KernelSpec& spec);

// resolve_kernel's answer when the process has resolved `spec` already (no lookup beyond the
// in-process table, no compile); nullopt otherwise.
std::optional<ResolvedKernel> resolved_kernel(const DeviceInfo& dev, const KernelSpec& spec);

}  // namespace sigjit::detail
