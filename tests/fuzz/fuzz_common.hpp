// Shared by the libFuzzer targets fuzz_index.cpp, fuzz_bundle.cpp and fuzz_record.cpp: a scratch
// cache per process, a fixed device fingerprint, and a depth check that keeps the harness's own
// JSON/CBOR parsing (used only to fix up checksums and signatures) from recursing on deep input.
//
// Each target compiles the store's sources in (coverage of the store itself) and catches only
// sigjit::Error: any other exception, a crash, a sanitizer report or a hang is a finding.
#pragma once

#include "cache/store.hpp"

#include <sigjit/sigjit.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace sigjit_fuzz {

namespace fs = std::filesystem;
using nlohmann::json;

inline const fs::path& scratch() {
  static const fs::path dir = [] {
    ::setenv("SIGJIT_CACHE_NO_FSYNC", "1", 1);
    ::setenv("SIGJIT_CACHE_LOCK_TIMEOUT", "5", 1);
    std::string tmpl = (fs::temp_directory_path() / "sigjit-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    static const std::string keep = tmpl;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(keep, ec);
    });
    return fs::path(tmpl);
  }();
  return dir;
}

inline sigjit::cache::DeviceFingerprint local_fp() {
  sigjit::cache::DeviceFingerprint f;
  f.gpu_name = "NVIDIA H100 80GB HBM3";
  f.cc_major = 9;
  f.sm_count = 132;
  f.driver_version = 12080;
  f.nvrtc_version = "13.0";
  f.codegen_version = 2;
  f.compile_options = "--gpu-architecture=sm_90a -std=c++17";
  return f;
}

inline void write_file(const fs::path& p, const std::uint8_t* data, std::size_t size) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// SAX handler that only counts nesting and stops past `limit` (nlohmann's parsers recurse once
// per level; stopping at start_* keeps the recursion shallow).
struct DepthCheck : nlohmann::json_sax<json> {
  int depth = 0, limit = 48;
  bool push() { return ++depth <= limit; }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return push(); }
  bool key(string_t&) override { return true; }
  bool end_object() override { return --depth, true; }
  bool start_array(std::size_t) override { return push(); }
  bool end_array() override { return --depth, true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
};

// Parses `data` as JSON or CBOR if it is well-formed and shallow; false otherwise.
inline bool parse_shallow(const std::uint8_t* data, std::size_t size, bool cbor, json& out) {
  if (size > (256u << 10)) return false;
  DepthCheck check;
  const bool ok = cbor ? json::sax_parse(data, data + size, &check, nlohmann::detail::input_format_t::cbor, true)
                       : json::sax_parse(data, data + size, &check, nlohmann::detail::input_format_t::json, true);
  if (!ok) return false;
  try {
    out = cbor ? json::from_cbor(data, data + size) : json::parse(data, data + size);
  } catch (const json::exception&) {
    return false;
  }
  return true;
}

}  // namespace sigjit_fuzz
