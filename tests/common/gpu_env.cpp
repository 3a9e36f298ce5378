#include "tests/common/gpu_env.hpp"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace sigjit::testing {

std::string gpu_unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
  if (count == 0) return "no CUDA device present";
  return {};
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (cudaMalloc(&ptr_, bytes ? bytes : 16) != cudaSuccess) throw std::runtime_error("cudaMalloc failed");
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
  }
  return *this;
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}
void DeviceBuffer::upload(const void* host, std::size_t bytes) {
  if (cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess) throw std::runtime_error("cudaMemcpy H2D failed");
}
void DeviceBuffer::download(void* host, std::size_t bytes) const {
  if (cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) throw std::runtime_error("cudaMemcpy D2H failed");
}
void DeviceBuffer::fill_byte(int value) {
  if (cudaMemset(ptr_, value, bytes_) != cudaSuccess) throw std::runtime_error("cudaMemset failed");
}

std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<std::uint16_t>(u >> 16);
}
float bf16_to_float(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float e4m3_to_float(std::uint8_t b) {
  const int sign = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return std::numeric_limits<float>::quiet_NaN();
  const float magnitude = e == 0 ? std::ldexp(static_cast<float>(m), -9) : std::ldexp(1.0f + m / 8.0f, e - 7);
  return sign ? -magnitude : magnitude;
}

std::uint8_t float_to_e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const std::uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;  // satfinite
  if (a < std::ldexp(1.0f, -6)) {        // subnormal: multiples of 2^-9, nearest even
    const int m = static_cast<int>(std::nearbyint(std::ldexp(a, 9)));
    return sign | static_cast<std::uint8_t>(m);  // m == 8 is the smallest normal's code, 0x08
  }
  int e = 0;
  const float mant = std::frexp(a, &e) * 2.0f;  // a = mant 2^(e - 1), mant in [1, 2)
  e -= 1;
  int m = static_cast<int>(std::nearbyint((mant - 1.0f) * 8.0f));
  if (m == 8) m = 0, ++e;
  if (e > 8 || (e == 8 && m == 7)) return sign | 0x7e;
  return sign | static_cast<std::uint8_t>(((e + 7) << 3) | m);
}

std::uint16_t float_to_fp16(float f) {
  // Via _Float16 where the compiler has it (g++ >= 12 on x86-64), which rounds to nearest even.
  const _Float16 h = static_cast<_Float16>(f);
  std::uint16_t out;
  std::memcpy(&out, &h, 2);
  return out;
}
float fp16_to_float(std::uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<float>(h);
}

}  // namespace sigjit::testing

namespace sigjit::testing {
namespace {
// Tests must never read or write the user's real kernel cache: unless the caller chose one,
// point SIGJIT_CACHE_DIR at a fresh directory for this test process.
class IsolatedCache : public ::testing::Environment {
 public:
  void SetUp() override {
    if (std::getenv("SIGJIT_CACHE_DIR")) return;
    char tmpl[] = "/tmp/sigjit-test-cache-XXXXXX";
    if (mkdtemp(tmpl)) {
      dir_ = tmpl;
      setenv("SIGJIT_CACHE_DIR", tmpl, 1);
    }
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

 private:
  std::string dir_;
};
const ::testing::Environment* const kIsolatedCache = ::testing::AddGlobalTestEnvironment(new IsolatedCache);
}  // namespace
}  // namespace sigjit::testing
