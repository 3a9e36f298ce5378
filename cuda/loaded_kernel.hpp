// A kernel loaded into a context: what a launch needs (jit/kernel_table.hpp loads them).
#pragma once

#include <cuda.h>

namespace sigjit::detail {

struct LoadedKernel {
  CUfunction function = nullptr;
  int smem_bytes = 0;
  int threads = 0;
  // CTAs of this kernel resident per SM (the driver's occupancy at load time), which sizes
  // persistent grids without a driver call per launch.
  int ctas_per_sm = 0;
  // A second entry point of the same module, where the spec has one (second_entry_suffix,
  // kernels/registry.hpp: the FP8 forward's V^T prologue, the padded dQ workspace zeroing);
  // static shared memory only.
  CUfunction prologue = nullptr;
  // The module's tile trace (SIGJIT_TRACE_TILES builds only; else 0): launch_kernel clears it
  // before the launch and writes it out after.
  CUdeviceptr tile_trace = 0;
};

}  // namespace sigjit::detail
