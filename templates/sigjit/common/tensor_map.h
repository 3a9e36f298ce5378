// An opaque TMA tensor map, byte-compatible with the driver's CUtensorMap (cuda.h:
// `typedef struct CUtensorMap_st { alignas(64) cuuint64_t opaque[16]; } CUtensorMap;`), so that
// NVRTC-compiled kernels need no CUDA header. The host encodes it with cuTensorMapEncodeTiled
// and copies the 128 bytes in; runtime/attention.cpp static_asserts the size. 64-byte alignment
// is what TMA requires of a map (cuda.h of CUDA 13 over-aligns its own to 128).
#pragma once

struct alignas(64) SigjitTensorMap {
  unsigned long long opaque[16];
};
