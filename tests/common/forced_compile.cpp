#include "tests/common/forced_compile.hpp"

#include "jit/codegen.hpp"
#include "jit/nvrtc_api.hpp"
#include "jit/templates.hpp"

#include <gtest/gtest.h>

#include <exception>

namespace sigjit::testing {

TemplateBuild compile_with_templates(const std::string& source, const std::string& name, const std::vector<std::string>& options) {
  TemplateBuild build;
  const std::vector<TemplateFile> files = template_files();
  std::vector<const char*> texts, names;
  for (const auto& f : files) {
    texts.push_back(f.text.c_str());
    names.push_back(f.include_name.c_str());
  }
  const detail::NvrtcApi& api = detail::nvrtc();  // the library's NVRTC, loaded as it loads it
  nvrtcProgram prog;
  const nvrtcResult created =
      api.nvrtcCreateProgram(&prog, source.c_str(), name.c_str(), static_cast<int>(files.size()), texts.data(), names.data());
  if (created != NVRTC_SUCCESS) {
    build.log = std::string("nvrtcCreateProgram: ") + api.nvrtcGetErrorString(created);
    return build;
  }
  std::vector<const char*> opts = {"--gpu-architecture=sm_90a", "--std=c++17"};
  for (const auto& o : options) opts.push_back(o.c_str());
  build.ok = api.nvrtcCompileProgram(prog, static_cast<int>(opts.size()), opts.data()) == NVRTC_SUCCESS;
  size_t size = 0;
  api.nvrtcGetProgramLogSize(prog, &size);
  build.log.assign(size, '\0');
  api.nvrtcGetProgramLog(prog, build.log.data());
  if (build.ok) {
    api.nvrtcGetCUBINSize(prog, &size);
    build.cubin.resize(size);
    api.nvrtcGetCUBIN(prog, build.cubin.data());
  }
  api.nvrtcDestroyProgram(&prog);
  return build;
}

std::string force_compile_log(const KernelSpec& spec, const TileConfig& config, bool& ok) {
  TemplateBuild build = compile_with_templates(emit_source(spec, config), "forced.cu");
  ok = build.ok;
  return std::move(build.log);
}

std::string sm90_compile_problems(const KernelSpec& spec, const TileConfig& config, std::size_t param_bytes, bool forbid_spills,
                                  ResourceUsage* usage, std::string* ptx) {
  std::vector<std::string> problems;
  try {
    const CompiledKernel k = compile_kernel(spec, config);
    if (usage) *usage = k.resources;
    if (ptx) *ptx = k.ptx;
    const std::string name = kernel_name(spec, config);
    if (k.cubin.empty()) problems.push_back("empty cubin");
    if (k.ptx.find(".entry " + name + "(") == std::string::npos) problems.push_back("PTX lacks the entry " + name);
    const std::string param = name + "_param_0[" + std::to_string(param_bytes) + "]";
    if (k.ptx.find(param) == std::string::npos) problems.push_back("PTX parameter is not " + param + " (host/kernel parameter block mismatch)");
    const std::string bounds = ".maxntid " + std::to_string(config.threads()) + ", 1, 1";
    if (k.ptx.find(bounds) == std::string::npos) problems.push_back("PTX lacks '" + bounds + "'");
    if (k.resources.registers <= 0) problems.push_back("ptxas report not parsed");
    // ptxas says so when it ignores setmaxnreg (C7508) or serializes wgmma (performance loss).
    if (k.log.find("setmaxnreg") != std::string::npos || k.log.find("C7508") != std::string::npos) problems.push_back("ptxas: " + k.log);
    if (k.log.find("serialized") != std::string::npos) problems.push_back("ptxas serialized wgmma: " + k.log);
    if (forbid_spills && k.resources.has_spills()) problems.push_back("register spills: " + k.resources.describe());
  } catch (const std::exception& e) {
    problems.push_back(std::string("compile threw: ") + e.what());
  }
  std::string out;
  for (const auto& p : problems) out += (out.empty() ? "" : "; ") + p;
  return out;
}

void expect_templates_reject(const std::vector<ForcedConfig>& forced) {
  for (const ForcedConfig& f : forced) {
    bool ok = true;
    const std::string log = force_compile_log(f.spec, f.config, ok);
    EXPECT_FALSE(ok) << f.config.describe();
    EXPECT_NE(log.find(f.message), std::string::npos) << f.config.describe() << ": expected \"" << f.message << "\" in\n" << log;
  }
}

}  // namespace sigjit::testing
