// NVRTC compiles for tests that bypass the library's compiler: a test kernel's own source, or a
// spec/config's generated source without check_config (so that tests can show the templates'
// static_asserts reject what check_config would have refused). Both see the embedded templates.
#pragma once

#include "compiler/kernel_spec.hpp"

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

struct ForcedConfig {
  KernelSpec spec;
  TileConfig config;
  const char* message;  // expected in the static_assert's NVRTC error
};

// gtest expectations: each forced config fails to compile with its message in the log.
void expect_templates_reject(const std::vector<ForcedConfig>& forced);

}  // namespace sigjit::testing
