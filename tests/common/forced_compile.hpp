// Compiles a spec/config's generated source with NVRTC directly, bypassing check_config, so that
// tests can show the templates' own static_asserts reject what check_config would have refused.
#pragma once

#include "compiler/kernel_spec.hpp"

#include <string>

namespace sigjit::testing {

// The NVRTC log of compiling `config` for `spec` on sm_90a; `ok` says whether it compiled.
std::string force_compile_log(const KernelSpec& spec, const TileConfig& config, bool& ok);

}  // namespace sigjit::testing
