#include "runtime/kernel_cache.hpp"

#include "compiler/nvrtc_compiler.hpp"
#include "runtime/cuda_check.hpp"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace sigjit::detail {

namespace {
struct Entry {
  std::mutex mutex;  // held while compiling: the single flight
  // The image must outlive the module: with lazy loading (CUDA_MODULE_LOADING=LAZY, the default
  // since CUDA 12.2) the driver reads functions from it at their first launch, not at load.
  std::vector<char> cubin;
  CUmodule module = nullptr;
  LoadedKernel kernel;
};

std::atomic<long> g_compiles{0};

LoadedKernel load(const CompiledKernel& compiled, const std::vector<char>& image, CUmodule& module) {
  SIGJIT_CHECK_CU(driver().cuModuleLoadData(&module, image.data()));
  LoadedKernel k;
  SIGJIT_CHECK_CU(driver().cuModuleGetFunction(&k.function, module, compiled.name.c_str()));
  k.smem_bytes = compiled.resources.shared_dynamic_bytes;
  SIGJIT_CHECK_CU(driver().cuFuncSetAttribute(k.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, k.smem_bytes));
  return k;
}
}  // namespace

LoadedKernel get_kernel(CUcontext context, const KernelSpec& spec, const TileConfig& config) {
  static std::mutex table_mutex;
  static std::map<std::pair<CUcontext, std::string>, std::shared_ptr<Entry>> table;
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard<std::mutex> lock(table_mutex);
    auto& slot = table[{context, kernel_name(spec, config)}];
    if (!slot) slot = std::make_shared<Entry>();
    entry = slot;
  }
  std::lock_guard<std::mutex> lock(entry->mutex);
  if (entry->kernel.function == nullptr) {
    CompiledKernel compiled = compile_kernel(spec, config);
    ++g_compiles;
    entry->cubin = std::move(compiled.cubin);
    LoadedKernel k = load(compiled, entry->cubin, entry->module);
    k.threads = config.threads();
    entry->kernel = k;
  }
  return entry->kernel;
}

long compile_count() { return g_compiles.load(); }

}  // namespace sigjit::detail
