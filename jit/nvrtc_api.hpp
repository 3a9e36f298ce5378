// NVRTC, loaded on first use with dlopen rather than linked (like the driver, runtime/driver_api).
// Why: a pip-installed sigjit gets NVRTC from NVIDIA's wheel (nvidia-cuda-nvrtc), whose
// directory no loader path names, and a warm kernel cache must work where there is no NVRTC at
// all. Cost: one dlopen, at the first compile; calls go through a pointer.
//
// Search order, the first library that loads wins:
//   1. $SIGJIT_NVRTC_LIBRARY (an explicit path: if it fails, that is the error, no fallback);
//   2. NVIDIA's wheel next to the installed package: <dir of libsigjit.so or the sigjit
//      binary>/../nvidia/cu<major>/lib (CUDA 13) or ../nvidia/cuda_nvrtc/lib (CUDA 12), and the
//      same under <dir>/.. (sys.path-style siblings);
//   3. the soname libnvrtc.so.<major> through the loader (LD_LIBRARY_PATH, RUNPATH, ldconfig);
//   4. $CUDA_HOME/lib64, $CUDA_PATH/lib64, /usr/local/cuda/lib64, /usr/local/cuda-<major>.<minor>/lib64.
// None loads: Error(ErrorKind::compile) naming every place tried and what to install.
#pragma once

#include <nvrtc.h>

#include <string>

namespace sigjit::detail {

#define SIGJIT_NVRTC_FUNCTIONS(X)                                                                                      \
  X(nvrtcVersion)                                                                                                      \
  X(nvrtcGetErrorString) X(nvrtcCreateProgram) X(nvrtcDestroyProgram) X(nvrtcCompileProgram) X(nvrtcGetProgramLogSize) \
      X(nvrtcGetProgramLog) X(nvrtcGetPTXSize) X(nvrtcGetPTX) X(nvrtcGetCUBINSize) X(nvrtcGetCUBIN)

struct NvrtcApi {
#define SIGJIT_DECLARE(name) decltype(&::name) name = nullptr;
  SIGJIT_NVRTC_FUNCTIONS(SIGJIT_DECLARE)
#undef SIGJIT_DECLARE
};

// Loads NVRTC on the first call (thread-safe); throws Error(ErrorKind::compile) when it cannot.
const NvrtcApi& nvrtc();

// The file NVRTC was loaded from (dlinfo's path), or "" while it is not loaded; never loads it.
std::string nvrtc_library_path();

// The NVRTC version sigjit was built for, "major.minor" of the toolkit's headers (no loading).
// The cache fingerprint uses it, so a cache hit never needs NVRTC.
std::string nvrtc_build_version();

}  // namespace sigjit::detail
