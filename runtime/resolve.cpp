#include "runtime/resolve.hpp"

#include "compiler/codegen.hpp"
#include "compiler/nvrtc_compiler.hpp"
#include "compiler/templates.hpp"
#include "runtime/autotune.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>

namespace sigjit::detail {

namespace {

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

std::optional<ResolvedKernel> from_store(const DeviceInfo& dev, const KernelSpec& spec) {
  cache::Store* store = default_store();
  if (!store) return std::nullopt;
  try {
    const auto entry = store->lookup(fingerprint_for(dev, spec), problem_key(spec));
    if (!entry || !store_entry_usable(spec, *entry)) return std::nullopt;
    if (!entry->measured_here() && entry->tuned && env_on("SIGJIT_AUTOTUNE")) {
      // An imported timing is a claim: with SIGJIT_AUTOTUNE=1 it is re-measured here on first use.
      std::fprintf(stderr, "sigjit: cache: %s: the cached entry was not measured on this machine (%s); SIGJIT_AUTOTUNE=1 tunes it here\n",
                   problem_key(spec).c_str(), entry->origin.c_str());
      return std::nullopt;
    }
    const TileConfig config = TileConfig::parse(entry->config, "cache entry config");
    // Missing or corrupt (logged by the store), or it did not load: get_kernel compiles the entry's
    // own config (not the default: an entry measured here keeps its tuned config, and no bundle
    // may displace it meanwhile, see put_entry_locked) and the fresh cubin replaces the entry's
    // (F9), unless another process rewrote the entry meanwhile. get_kernel's own callback says so;
    // the process-wide compile count would also see other threads' compiles.
    const auto blob = store->load_blob(entry->cubin_sha256);
    return ResolvedKernel{get_kernel(dev.context, spec, config, blob ? &*blob : nullptr,
                                     [&](const CompiledKernel& k) { heal_stored_kernel(dev, spec, config, k.cubin, *entry); }),
                          config, "store"};
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigjit: cache: %s; compiling instead\n", e.what());
    return std::nullopt;
  }
}

}  // namespace

bool store_entry_usable(const KernelSpec& spec, const cache::Entry& entry) {
  TileConfig config;
  try {
    config = TileConfig::parse(entry.config, "cache entry config");
  } catch (const std::exception&) {
    return false;
  }
  if (!check_config(spec, config).empty() || kernel_name(spec, config) != entry.kernel_name) return false;
  // An untuned entry only records the default of the library that wrote it; defaults change
  // between versions without changing the templates (so without changing the fingerprint), and
  // an old default must not outlive the upgrade. A miss compiles today's default over it.
  return entry.tuned || entry.config == default_config(spec).describe();
}

const std::string& templates_digest() {
  static const std::string digest = [] {
    std::string all;
    for (const auto& f : template_files()) all += f.include_name + '\n' + f.text + '\n';
    return cache::sha256_hex(all.data(), all.size()).substr(0, 16);
  }();
  return digest;
}

cache::DeviceFingerprint fingerprint_for(const DeviceInfo& dev, const KernelSpec& spec) {
  cache::DeviceFingerprint fp;
  fp.gpu_name = dev.name;
  fp.cc_major = dev.cc_major;
  fp.cc_minor = dev.cc_minor;
  fp.sm_count = dev.sm_count;
  fp.driver_version = dev.driver_version;
  // The NVRTC sigjit was built for (the soname major it loads, and the minor of its headers),
  // not the loaded library's version: asking that would dlopen NVRTC, and a cache hit must need
  // no NVRTC (a deployment with a warm cache may have none). A cubin stays a valid binary for
  // its arch whichever NVRTC 13.x wrote it; rebuilding against a new toolkit changes the key.
  fp.nvrtc_version = nvrtc_build_version();
  fp.codegen_version = kCodegenVersion;
  fp.compile_options = fmt::format("{} templates={}", fmt::join(compile_options(spec), " "), templates_digest());
  return fp;
}

cache::Store* default_store() {
  static std::once_flag once;
  static std::unique_ptr<cache::Store> store;
  std::call_once(once, [] {
    if (env_on("SIGJIT_DISABLE_CACHE")) return;
    // Any failure (F10: a directory that cannot be stat'ed, a path too long, a loop of links)
    // disables the store for the process with one line; kernels are compiled instead.
    std::string root = "(unknown)";
    try {
      root = cache::Store::default_root().string();
      store = std::make_unique<cache::Store>(cache::Store::default_root());
    } catch (const std::exception& e) {
      std::fprintf(stderr,
                   "sigjit: cache disabled for this process: %s (cache directory %s); kernels are compiled instead. Set "
                   "SIGJIT_CACHE_DIR to a writable directory, or SIGJIT_DISABLE_CACHE=1 to silence this\n",
                   e.what(), root.c_str());
      store.reset();
    }
  });
  return store.get();
}

void store_kernel(const DeviceInfo& dev, const KernelSpec& spec, const TileConfig& config, const std::vector<char>& cubin, cache::Entry entry) {
  cache::Store* store = default_store();
  if (!store || cubin.empty()) return;
  try {
    entry.problem_key = problem_key(spec);
    entry.config = config.describe();
    entry.kernel_name = kernel_name(spec, config);
    if (entry.spec.is_null()) entry.spec = spec_to_json(spec);
    entry.cubin_sha256 = store->put_blob(cubin);
    entry.provenance.push_back({host_name(), now_utc(), SIGJIT_VERSION});
    store->put_entry(fingerprint_for(dev, spec), entry);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigjit: cache: could not store %s: %s\n", kernel_name(spec, config).c_str(), e.what());
  }
}

namespace {

// The in-process table of resolve_kernel: (context, problem key) -> the kernel that serves it.
std::mutex& resolved_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::map<std::pair<CUcontext, std::string>, ResolvedKernel>& resolved_table() {
  static std::map<std::pair<CUcontext, std::string>, ResolvedKernel> table;
  return table;
}

}  // namespace

void heal_stored_kernel(const DeviceInfo& dev, const KernelSpec& spec, const TileConfig& config, const std::vector<char>& cubin,
                        const cache::Entry& broken) {
  cache::Store* store = default_store();
  if (!store || cubin.empty()) return;
  try {
    cache::Entry entry = broken;  // same config and claims; the origin stays what it was
    entry.cubin_sha256 = store->put_blob(cubin);
    entry.provenance.push_back({host_name(), now_utc(), SIGJIT_VERSION});
    if (store->replace_if_current(fingerprint_for(dev, spec), entry, broken.cubin_sha256))
      std::fprintf(stderr, "sigjit: cache: %s: replaced its cached cubin (missing, did not load, or unproven) with a fresh compile of %s\n",
                   problem_key(spec).c_str(), config.describe().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigjit: cache: could not heal %s: %s\n", kernel_name(spec, config).c_str(), e.what());
  }
}

GpuCheckAction decide_gpu_check(const GpuCheckFacts& f) {
  if (!f.cached_cubin_ran) return GpuCheckAction::heal;  // missing, or did not load: replace it with a compile of its config
  if (!f.output_ok) return GpuCheckAction::heal;         // it loaded and ran but computed the wrong thing: never trust those bytes
  if (f.produced_here) return GpuCheckAction::keep;
  // A claim: re-time it here if its output was proven right, else replace its bytes with our
  // own compile of the same config (a default-config entry cannot be compared in-process).
  return f.output_compared ? GpuCheckAction::promote : GpuCheckAction::heal;
}

namespace {

// SIGJIT_FORCE_TILE pins the tile config (benchmark sweeps, debugging); the config is part of the
// kernel name, so forced and default kernels never share a cache entry.
TileConfig choose_config(const KernelSpec& spec) {
  const char* forced = std::getenv("SIGJIT_FORCE_TILE");
  if (!forced || !*forced) return default_config(spec);
  const TileConfig c = TileConfig::parse(forced, "SIGJIT_FORCE_TILE");
  if (const std::string why = check_config(spec, c); !why.empty()) throw Error(fmt::format("SIGJIT_FORCE_TILE={}: {}", forced, why));
  return c;
}

}  // namespace

ResolvedKernel resolve_kernel(const DeviceInfo& dev, const KernelSpec& spec) {
  // The dQ convert kernel has one config: a forced tile is meant for the tunable kernels.
  const char* forced = spec.direction == Direction::backward_dq_convert ? nullptr : std::getenv("SIGJIT_FORCE_TILE");
  if (forced && *forced) {
    const TileConfig c = choose_config(spec);
    return {get_kernel(dev.context, spec, c), c, "forced"};
  }
  if (std::optional<ResolvedKernel> done = resolved_kernel(dev, spec)) return *std::move(done);
  std::optional<ResolvedKernel> r = from_store(dev, spec);
  if (!r && env_on("SIGJIT_AUTOTUNE") && spec.direction != Direction::backward_dq_convert) r = autotune_and_store(dev, spec);  // one config
  if (!r) {
    const TileConfig c = default_config(spec);
    r = ResolvedKernel{get_kernel(dev.context, spec, c, nullptr,
                                  [&](const CompiledKernel& k) { store_kernel(dev, spec, c, k.cubin, cache::Entry{}); }),
                       c, "compiled"};
  }
  std::lock_guard<std::mutex> lock(resolved_mutex());
  return resolved_table().emplace(std::make_pair(dev.context, problem_key(spec)), *r).first->second;
}

std::optional<ResolvedKernel> resolved_kernel(const DeviceInfo& dev, const KernelSpec& spec) {
  std::lock_guard<std::mutex> lock(resolved_mutex());
  const auto& table = resolved_table();
  if (auto it = table.find(std::make_pair(dev.context, problem_key(spec))); it != table.end()) return it->second;
  return std::nullopt;
}

}  // namespace sigjit::detail
