#pragma once

#include "jit/nvrtc_api.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>

// One check for every NVRTC call (through detail::nvrtc(), the dlopen'ed table): API, error
// name, file:line. Throws; never exits.
#define SIGJIT_CHECK_NVRTC(call)                                                                                                  \
  do {                                                                                                                            \
    const nvrtcResult sigjit_nvrtc_status_ = (call);                                                                              \
    if (sigjit_nvrtc_status_ != NVRTC_SUCCESS) {                                                                                  \
      throw ::sigjit::Error(fmt::format("NVRTC call {} failed: {} ({}:{})", #call,                                                \
                                        ::sigjit::detail::nvrtc().nvrtcGetErrorString(sigjit_nvrtc_status_), __FILE__, __LINE__), \
                            ::sigjit::ErrorKind::compile);                                                                        \
    }                                                                                                                             \
  } while (0)
