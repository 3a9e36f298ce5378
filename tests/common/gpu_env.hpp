// GPU test helpers: skip cleanly where there is no GPU; device buffers with RAII.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sigjit::testing {

// Empty when a CUDA device is usable, else why not (for GTEST_SKIP).
std::string gpu_unavailable_reason();

#define SIGJIT_REQUIRE_GPU()                                                          \
  do {                                                                                \
    const std::string why_ = ::sigjit::testing::gpu_unavailable_reason();             \
    if (!why_.empty()) GTEST_SKIP() << "no GPU, GPU test skipped: " << why_;          \
  } while (0)

#define SIGJIT_CUDA_OK(call)                                                                    \
  do {                                                                                          \
    const cudaError_t e_ = (call);                                                              \
    ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorName(e_) << " " << cudaGetErrorString(e_); \
  } while (0)

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;
  void fill_byte(int value);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Host <-> 16-bit float conversions (round to nearest even).
std::uint16_t float_to_bf16(float f);
float bf16_to_float(std::uint16_t h);
std::uint16_t float_to_fp16(float f);
float fp16_to_float(std::uint16_t h);
// float8_e4m3fn (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities, NaN is
// S.1111.111, largest 448): round to nearest even, saturating to +-448 like the device's
// cvt.rn.satfinite (NaN stays NaN).
std::uint8_t float_to_e4m3(float f);
float e4m3_to_float(std::uint8_t b);

}  // namespace sigjit::testing
