#include "jit/binaries.hpp"

#include "base/env.hpp"
#include "cache/counters.hpp"
#include "jit/codegen.hpp"
#include "jit/compiler.hpp"
#include "jit/remote_tier.hpp"
#include "jit/templates.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>

namespace sigjit::detail {

namespace {

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
    if (env::flag("SIGJIT_DISABLE_CACHE")) return;
    // Any failure (F10: a directory that cannot be stat'ed, a path too long, a loop of links)
    // disables the store for the process with one line; kernels are compiled instead.
    std::string root = "(unknown)";
    try {
      root = cache::Store::default_root().string();
      store = std::make_unique<cache::Store>(cache::Store::default_root());
      cache::persist_counters(store->root());  // `sigjit stats` reads them
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
    const cache::DeviceFingerprint fp = fingerprint_for(dev, spec);
    store->put_entry(fp, entry);
    publish_stored(*store, fp, entry.problem_key);  // SIGJIT_REMOTE_CACHE_WRITE=1 with a signing key: signed and put
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigjit: cache: could not store %s: %s\n", kernel_name(spec, config).c_str(), e.what());
  }
}

bool produce_once(cache::Store* store, const cache::DeviceFingerprint& fp, const std::string& key, const std::function<bool()>& ready,
                  const std::function<void()>& produce) {
  std::shared_ptr<void> lock;
  if (store) {
    try {
      lock = store->lock_production(fp, key);
    } catch (const std::exception& e) {
      static std::once_flag once;
      std::call_once(once, [&] { std::fprintf(stderr, "sigjit: cache: %s; compiling without waiting for other processes\n", e.what()); });
    }
    if (ready()) return false;
  }
  produce();
  return true;
}

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

}  // namespace sigjit::detail
