#include "jit/kernel_table.hpp"

#include "base/env.hpp"
#include "cuda/check.hpp"

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace sigjit::detail {

namespace {
struct Entry {
  std::mutex mutex;  // held while compiling or loading: the single flight
  // Kept for the module's lifetime: kernel_image() hands it to the disk cache after tuning or a
  // heal, so it is never recompiled just to be stored.
  std::vector<char> cubin;
  CUmodule module = nullptr;
  LoadedKernel kernel;
};

std::atomic<long> g_compiles{0};

// The debug switches that change the binary but not the kernel's name (jit/compiler.hpp) are part
// of the key, so a process that turns one on after a launch (a test, a tracing run) loads the
// other binary instead of reusing the one already loaded.
std::string table_key(const std::string& name) {
  std::string key = name;
  if (env::flag("SIGJIT_LINEINFO")) key += "+lineinfo";
  if (env::text("SIGJIT_TRACE_TILES")) key += "+trace";
  return key;
}

std::shared_ptr<Entry> entry_for(CUcontext context, const std::string& name) {
  static std::mutex table_mutex;
  static std::map<std::pair<CUcontext, std::string>, std::shared_ptr<Entry>> table;
  std::lock_guard<std::mutex> lock(table_mutex);
  auto& slot = table[{context, table_key(name)}];
  if (!slot) slot = std::make_shared<Entry>();
  return slot;
}

// Loads entry->cubin; returns the driver's status instead of throwing so a bad cached image
// can fall back to a compile.
CUresult try_load(Entry& e, const std::string& name, const KernelSpec& spec, const TileConfig& config) {
  CUresult st = driver().cuModuleLoadData(&e.module, e.cubin.data());
  if (st != CUDA_SUCCESS) return st;
  LoadedKernel k;
  st = driver().cuModuleGetFunction(&k.function, e.module, name.c_str());
  if (const std::string_view suffix = second_entry_suffix(spec); st == CUDA_SUCCESS && !suffix.empty()) {
    st = driver().cuModuleGetFunction(&k.prologue, e.module, (name + std::string(suffix)).c_str());
  }
  if (st == CUDA_SUCCESS) {
    k.smem_bytes = smem_bytes(spec, config);
    k.threads = config.threads();
    st = driver().cuFuncSetAttribute(k.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, k.smem_bytes);
  }
  // Resident CTAs per SM, for grids that size themselves to the machine (persistent schedules);
  // one driver call per load, none per launch.
  if (st == CUDA_SUCCESS) {
    st = driver().cuOccupancyMaxActiveBlocksPerMultiprocessor(&k.ctas_per_sm, k.function, k.threads, k.smem_bytes);
  }
  if (st == CUDA_SUCCESS && env::text("SIGJIT_TRACE_TILES")) {
    size_t bytes = 0;  // not found: a module that records no tiles
    if (driver().cuModuleGetGlobal(&k.tile_trace, &bytes, e.module, "sigjit_tile_trace") != CUDA_SUCCESS) k.tile_trace = 0;
  }
  if (st != CUDA_SUCCESS) {
    driver().cuModuleUnload(e.module);
    e.module = nullptr;
    return st;
  }
  e.kernel = k;
  return CUDA_SUCCESS;
}
}  // namespace

LoadedKernel get_kernel(CUcontext context, const KernelSpec& spec, const TileConfig& config, const std::vector<char>* image,
                        const std::function<void(const CompiledKernel&)>& on_compiled) {
  const std::string name = kernel_name(spec, config);
  const std::shared_ptr<Entry> entry = entry_for(context, name);
  std::lock_guard<std::mutex> lock(entry->mutex);
  if (entry->kernel.function != nullptr) return entry->kernel;
  if (image && !image->empty()) {
    entry->cubin = *image;
    const CUresult st = try_load(*entry, name, spec, config);
    if (st == CUDA_SUCCESS) return entry->kernel;
    std::fprintf(stderr, "sigjit: cached cubin for %s did not load (%s); recompiling\n", name.c_str(), cu_error_text(st).c_str());
  }
  CompiledKernel compiled = compile_kernel(spec, config);
  ++g_compiles;
  entry->cubin = compiled.cubin;
  SIGJIT_CHECK_CU(try_load(*entry, name, spec, config));
  if (on_compiled) on_compiled(compiled);
  return entry->kernel;
}

std::vector<char> kernel_image(CUcontext context, const KernelSpec& spec, const TileConfig& config) {
  const std::shared_ptr<Entry> entry = entry_for(context, kernel_name(spec, config));
  std::lock_guard<std::mutex> lock(entry->mutex);
  return entry->cubin;
}

long compile_count() { return g_compiles.load(); }

void unload_kernel(CUcontext context, const KernelSpec& spec, const TileConfig& config) {
  const std::shared_ptr<Entry> entry = entry_for(context, kernel_name(spec, config));
  std::lock_guard<std::mutex> lock(entry->mutex);
  if (entry->module != nullptr) driver().cuModuleUnload(entry->module);
  entry->module = nullptr;
  entry->kernel = LoadedKernel{};
  entry->cubin.clear();
}

}  // namespace sigjit::detail
