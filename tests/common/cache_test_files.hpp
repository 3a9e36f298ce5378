// Small file and fingerprint helpers shared by the kernel-store tests (tests/cpu/cache/test_cache*.cpp):
// whole-file reads and writes, and one fixed device fingerprint that no real device produces.
#pragma once

#include "cache/store.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace sigjit::test {

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_text(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

inline cache::DeviceFingerprint test_fp(const std::string& gpu = "NVIDIA H100 80GB HBM3") {
  cache::DeviceFingerprint f;
  f.gpu_name = gpu;
  f.cc_major = 9;
  f.cc_minor = 0;
  f.sm_count = 132;
  f.driver_version = 12040;
  f.nvrtc_version = "12.4.131";
  f.codegen_version = 3;
  f.compile_options = "--gpu-architecture=sm_90a -std=c++17 -default-device";
  return f;
}

}  // namespace sigjit::test
