#include "tests/common/forced_compile.hpp"

#include "compiler/codegen.hpp"
#include "compiler/templates.hpp"

#include <nvrtc.h>

#include <vector>

namespace sigjit::testing {

std::string force_compile_log(const KernelSpec& spec, const TileConfig& config, bool& ok) {
  const std::string source = emit_source(spec, config);
  const std::vector<TemplateFile> files = template_files();
  std::vector<const char*> texts, names;
  for (const auto& f : files) {
    texts.push_back(f.text.c_str());
    names.push_back(f.include_name.c_str());
  }
  nvrtcProgram prog;
  ok = false;
  const nvrtcResult created = nvrtcCreateProgram(&prog, source.c_str(), "forced.cu", static_cast<int>(files.size()), texts.data(), names.data());
  if (created != NVRTC_SUCCESS) return std::string("nvrtcCreateProgram: ") + nvrtcGetErrorString(created);
  const char* opts[] = {"--gpu-architecture=sm_90a", "--std=c++17"};
  ok = nvrtcCompileProgram(prog, 2, opts) == NVRTC_SUCCESS;
  size_t size = 0;
  nvrtcGetProgramLogSize(prog, &size);
  std::string log(size, '\0');
  nvrtcGetProgramLog(prog, log.data());
  nvrtcDestroyProgram(&prog);
  return log;
}

}  // namespace sigjit::testing
