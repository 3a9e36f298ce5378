#pragma once

#include <sigjit/sigjit.hpp>

#include <cuda.h>

#include "cuda/driver_api.hpp"
#include <fmt/format.h>

namespace sigjit::detail {
inline std::string cu_error_text(CUresult status) {
  const char* name = nullptr;
  const char* text = nullptr;
  driver().cuGetErrorName(status, &name);
  driver().cuGetErrorString(status, &text);
  return fmt::format("{} ({})", name ? name : "unknown CUresult", text ? text : "no description");
}
}  // namespace sigjit::detail

// One check for every CUDA Driver API call: API, error name, file:line. Throws; never exits.
#define SIGJIT_CHECK_CU(call)                                                                                            \
  do {                                                                                                                   \
    const CUresult sigjit_cu_status_ = (call);                                                                           \
    if (sigjit_cu_status_ != CUDA_SUCCESS) {                                                                             \
      throw ::sigjit::Error(fmt::format("CUDA driver call {} failed: {} ({}:{})", #call,                                 \
                                        ::sigjit::detail::cu_error_text(sigjit_cu_status_), __FILE__, __LINE__), ::sigjit::ErrorKind::cuda); \
    }                                                                                                                    \
  } while (0)
