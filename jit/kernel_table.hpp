// In-process kernel table: each (context, kernel) is compiled or loaded once per process.
// Lookups of a ready kernel take one mutex and a map probe. Loading is single-flight: the
// first caller compiles (or loads a given cubin) while later callers for the same kernel wait
// on that entry only; callers of other kernels proceed. A failure is not cached, so the next
// call retries.
#pragma once

#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "cuda/loaded_kernel.hpp"
#include "jit/compiler.hpp"

#include <cuda.h>

#include <functional>
#include <vector>

namespace sigjit::detail {

// `image`: a cubin already at hand (from the disk cache); when null or when it fails to load
// (wrong arch, corrupt), NVRTC compiles the kernel and `on_compiled` sees the result.
LoadedKernel get_kernel(CUcontext context, const KernelSpec& spec, const TileConfig& config, const std::vector<char>* image = nullptr,
                        const std::function<void(const CompiledKernel&)>& on_compiled = {});

// The cubin of a kernel get_kernel has loaded (empty if none).
std::vector<char> kernel_image(CUcontext context, const KernelSpec& spec, const TileConfig& config);

// Number of NVRTC compilations this process has run (for tests and diagnostics).
long compile_count();

// Unloads a kernel from the in-process table so that the next get_kernel loads the image it is
// given (`sigjit verify --gpu` runs each entry's cached cubin, not a kernel of the same name
// loaded earlier). Only for single-threaded tools: LoadedKernel copies of it become invalid.
void unload_kernel(CUcontext context, const KernelSpec& spec, const TileConfig& config);

}  // namespace sigjit::detail
