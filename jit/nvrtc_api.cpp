#include "jit/nvrtc_api.hpp"

#include "base/env.hpp"

#include <sigjit/sigjit.hpp>

#include <cuda.h>  // CUDA_VERSION: the toolkit (and NVRTC) sigjit was built against
#include <dlfcn.h>
#include <fmt/format.h>
#include <link.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace sigjit::detail {

namespace {

constexpr int kMajor = CUDA_VERSION / 1000;
constexpr int kMinor = CUDA_VERSION % 1000 / 10;

struct Loaded {
  NvrtcApi api;
  std::string path;
};

std::mutex& load_mutex() {
  static std::mutex m;
  return m;
}
Loaded* g_loaded = nullptr;  // set once, under load_mutex, never freed (NVRTC stays loaded)

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Directories holding this code: libsigjit.so's (dladdr on one of its functions) and the
// executable's, which differ when sigjit is linked statically into a program (the CLI).
std::vector<std::filesystem::path> own_dirs() {
  std::vector<std::filesystem::path> out;
  auto add = [&](const std::filesystem::path& file) {
    std::error_code ec;
    const auto dir = std::filesystem::weakly_canonical(file, ec).parent_path();
    if (ec || dir.empty()) return;
    for (const auto& d : out)
      if (d == dir) return;
    out.push_back(dir);
  };
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&nvrtc_library_path), &info) && info.dli_fname && info.dli_fname[0] == '/') add(info.dli_fname);
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) add(exe);
  return out;
}

// Every path tried, in order (see nvrtc_api.hpp).
std::vector<std::string> candidates() {
  const std::string soname = fmt::format("libnvrtc.so.{}", kMajor);
  // NVIDIA's wheels: nvidia-cuda-nvrtc (CUDA 13) installs nvidia/cu13/lib, nvidia-cuda-nvrtc-cu12
  // installs nvidia/cuda_nvrtc/lib.
  const std::string wheel_dir = kMajor >= 13 ? fmt::format("nvidia/cu{}/lib", kMajor) : "nvidia/cuda_nvrtc/lib";
  std::vector<std::string> out;
  auto add = [&](const std::string& p) {
    for (const auto& q : out)
      if (q == p) return;
    out.push_back(p);
  };
  for (const auto& dir : own_dirs()) {
    // site-packages/sigjit/libsigjit.so -> site-packages/nvidia/...; also one level further up
    // and the directory itself (a flat install, or --target trees side by side).
    for (const auto& base : {dir.parent_path(), dir, dir.parent_path().parent_path()}) {
      if (!base.empty()) add((base / wheel_dir / soname).string());
    }
  }
  add(soname);  // the loader: LD_LIBRARY_PATH, RUNPATH, ldconfig's cache
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const std::string root = env(var); !root.empty()) add(root + "/lib64/" + soname);
  }
  add("/usr/local/cuda/lib64/" + soname);
  add(fmt::format("/usr/local/cuda-{}.{}/lib64/{}", kMajor, kMinor, soname));
  return out;
}

std::string loaded_path(void* handle, const std::string& fallback) {
  link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && map->l_name[0]) return map->l_name;
  return fallback;
}

// Resolves every entry point; "" on success, else what is missing.
std::string resolve(void* handle, NvrtcApi& api) {
#define SIGJIT_RESOLVE(name)                                             \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(handle, #name)); \
  if (!api.name) return #name;
  SIGJIT_NVRTC_FUNCTIONS(SIGJIT_RESOLVE)
#undef SIGJIT_RESOLVE
  return {};
}

Loaded* load() {
  const std::string how_to_fix = fmt::format(
      "install NVRTC {0}: `pip install nvidia-cuda-nvrtc` (CUDA 13; `nvidia-cuda-nvrtc-cu12` for 12) or a CUDA {0} toolkit, "
      "or set SIGJIT_NVRTC_LIBRARY to the path of {1}",
      kMajor, fmt::format("libnvrtc.so.{}", kMajor));
  auto try_open = [](const std::string& path, std::string& why) -> Loaded* {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* e = dlerror();
      why = e ? e : "dlopen failed";
      return nullptr;
    }
    auto* l = new Loaded;
    if (const std::string missing = resolve(handle, l->api); !missing.empty()) {
      why = fmt::format("{} lacks {}", path, missing);
      delete l;
      dlclose(handle);
      return nullptr;
    }
    l->path = loaded_path(handle, path);
    return l;
  };
  std::string why;
  if (const std::string explicit_path = sigjit::env::text("SIGJIT_NVRTC_LIBRARY").value_or(""); !explicit_path.empty()) {
    if (Loaded* l = try_open(explicit_path, why)) return l;
    throw Error(fmt::format("cannot load NVRTC from SIGJIT_NVRTC_LIBRARY={}: {}; point it at libnvrtc.so.{} or unset it", explicit_path,
                            why, kMajor),
                ErrorKind::compile);
  }
  std::vector<std::string> tried;
  for (const auto& path : candidates()) {
    // Absolute paths that do not exist are reported as such, not as dlopen's longer message.
    if (path.front() == '/' && !std::filesystem::exists(path)) {
      tried.push_back(path + " (no such file)");
      continue;
    }
    if (Loaded* l = try_open(path, why)) return l;
    tried.push_back(fmt::format("{} ({})", path, why));
  }
  throw Error(fmt::format("NVRTC not found: sigjit compiles kernels with NVRTC {} and could load none of: {}. To fix: {}", kMajor,
                          fmt::join(tried, "; "), how_to_fix),
              ErrorKind::compile);
}

}  // namespace

const NvrtcApi& nvrtc() {
  std::lock_guard<std::mutex> lock(load_mutex());
  if (!g_loaded) g_loaded = load();  // a failure throws and is retried by the next call
  return g_loaded->api;
}

std::string nvrtc_library_path() {
  std::lock_guard<std::mutex> lock(load_mutex());
  return g_loaded ? g_loaded->path : std::string();
}

std::string nvrtc_build_version() { return fmt::format("{}.{}", kMajor, kMinor); }

}  // namespace sigjit::detail
