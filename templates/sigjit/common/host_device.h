// SIGJIT_HD marks functions that both the host's C++ and the kernels call (the limits headers'
// constexpr sizes): NVRTC compiles an unannotated function as host-only and refuses it in JIT mode.
#pragma once

#if defined(__CUDACC__)
#define SIGJIT_HD __host__ __device__
#else
#define SIGJIT_HD
#endif
