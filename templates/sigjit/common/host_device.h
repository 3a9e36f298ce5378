// Markers for functions that both the host's C++ and the kernels compile: NVRTC compiles an
// unannotated function as host-only and refuses it in JIT mode. SIGJIT_HD for constexpr functions
// (the limits headers' sizes), SIGJIT_HD_INLINE for the rest (the tile schedule, the FMA sigmoid),
// which the device always inlines.
#pragma once

#if defined(__CUDACC__)
#define SIGJIT_HD __host__ __device__
#define SIGJIT_HD_INLINE __host__ __device__ __forceinline__
#else
#define SIGJIT_HD
#define SIGJIT_HD_INLINE inline
#endif
