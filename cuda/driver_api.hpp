// The CUDA driver, loaded on first use with dlopen + cuGetProcAddress rather than linked.
// Why: the same library and CLI must run where there is no driver (CI, build hosts running
// `sigjit compile`), and there every GPU entry point must fail with a clear error instead of
// the process failing to start. Cost: one dlopen per process; calls go through a pointer.
#pragma once

#include <cuda.h>

namespace sigjit::detail {

// Wrapped by hand: clang-format indents each line of the list further than the one before.
// clang-format off
#define SIGJIT_DRIVER_FUNCTIONS(X)                                                                                    \
  X(cuInit) X(cuGetErrorName) X(cuGetErrorString) X(cuDriverGetVersion) X(cuDeviceGet) X(cuDeviceGetCount)            \
  X(cuDeviceGetName) X(cuDeviceGetAttribute) X(cuDevicePrimaryCtxRetain) X(cuCtxGetCurrent) X(cuCtxSetCurrent)        \
  X(cuCtxGetDevice) X(cuModuleLoadData) X(cuModuleUnload) X(cuModuleGetFunction) X(cuModuleGetGlobal)                 \
  X(cuFuncSetAttribute) X(cuFuncGetAttribute) X(cuLaunchKernel) X(cuLaunchKernelEx) X(cuPointerGetAttribute)          \
  X(cuMemcpyDtoHAsync) X(cuStreamSynchronize) X(cuMemAlloc) X(cuMemFree) X(cuMemcpyHtoD) X(cuMemcpyDtoH)              \
  X(cuMemsetD8) X(cuMemsetD8Async) X(cuCtxSynchronize) X(cuEventCreate) X(cuEventDestroy) X(cuEventRecord)            \
  X(cuEventSynchronize) X(cuEventElapsedTime) X(cuTensorMapEncodeTiled)                                               \
  X(cuOccupancyMaxActiveBlocksPerMultiprocessor)
// clang-format on

struct DriverApi {
#define SIGJIT_DECLARE(name) decltype(&::name) name = nullptr;
  SIGJIT_DRIVER_FUNCTIONS(SIGJIT_DECLARE)
#undef SIGJIT_DECLARE
};

// Throws Error(ErrorKind::cuda) naming what is missing when libcuda.so.1 cannot be used.
const DriverApi& driver();

// True when a driver library could be loaded (says nothing about devices).
bool driver_available();

}  // namespace sigjit::detail
