// NVRTC compiles for tests that bypass the library's compiler: a test kernel's own source, or a
// spec/config's generated source without check_config (so that tests can show the templates'
// static_asserts reject what check_config would have refused). Both see the embedded templates.
#pragma once

#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "jit/compiler.hpp"

#include <cstddef>

#include <string>
#include <vector>

namespace sigjit::testing {

struct TemplateBuild {
  bool ok = false;
  std::string log;          // NVRTC's log (errors when !ok)
  std::vector<char> cubin;  // when ok
};

// Compiles `source` for sm_90a (C++17) with the embedded templates and extra NVRTC options.
TemplateBuild compile_with_templates(const std::string& source, const std::string& name, const std::vector<std::string>& options = {});

// The NVRTC log of compiling `config` for `spec` on sm_90a; `ok` says whether it compiled.
std::string force_compile_log(const KernelSpec& spec, const TileConfig& config, bool& ok);

// Compiles an sm90-family (spec, config) through the library's compiler and lists what is wrong
// with the result, "; "-separated (empty: all good): no cubin, a missing entry point, a parameter
// block of other than `param_bytes` (host/kernel mismatch), a missing .maxntid, an unparsed ptxas
// report, setmaxnreg ignored or wgmma serialized by ptxas, and spills when `forbid_spills`.
std::string sm90_compile_problems(const KernelSpec& spec, const TileConfig& config, std::size_t param_bytes, bool forbid_spills,
                                  ResourceUsage* usage = nullptr, std::string* ptx = nullptr);

struct ForcedConfig {
  KernelSpec spec;
  TileConfig config;
  const char* message;  // expected in the static_assert's NVRTC error
};

// gtest expectations: each forced config fails to compile with its message in the log.
void expect_templates_reject(const std::vector<ForcedConfig>& forced);

}  // namespace sigjit::testing
