// In-process kernel table: each (context, kernel) is compiled and loaded once per process.
// Lookups of a ready kernel take one mutex and a hash probe. Compilation is single-flight: the
// first caller compiles while later callers for the same kernel wait on that entry only;
// callers of other kernels proceed. A failed compile is not cached, so the next call retries.
#pragma once

#include "compiler/kernel_spec.hpp"

#include <cuda.h>

namespace sigjit::detail {

struct LoadedKernel {
  CUfunction function = nullptr;
  int smem_bytes = 0;
  int threads = 0;
};

LoadedKernel get_kernel(CUcontext context, const KernelSpec& spec, const TileConfig& config);

// Number of NVRTC compilations this process has run (for tests and diagnostics).
long compile_count();

}  // namespace sigjit::detail
