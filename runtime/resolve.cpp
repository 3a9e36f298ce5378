#include "runtime/resolve.hpp"

#include "base/env.hpp"
#include "cache/counters.hpp"
#include "jit/remote_tier.hpp"
#include "tune/gpu.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

namespace sigjit::detail {

namespace {

// The local store, then the remote tier (jit/remote_tier.hpp: lookup_stored). Without a store, a
// remote hit serves directly. `ask_remote` false: the local store only (the recheck under the
// compile lock, where what another process produced, fetched or compiled, is already in the local
// store; no second GET).
std::optional<ResolvedKernel> from_store(const DeviceInfo& dev, const KernelSpec& spec, bool ask_remote = true) {
  cache::Store* store = default_store();
  cache::RemoteTier* tier = ask_remote ? default_remote_tier() : nullptr;
  if (!store && !tier) return std::nullopt;
  try {
    std::optional<StoredKernel> found = lookup_stored(store, tier, fingerprint_for(dev, spec), spec);
    if (!found) return std::nullopt;
    if (found->cubin) {
      const TileConfig config = TileConfig::parse(found->entry.config, "remote entry config");
      return ResolvedKernel{get_kernel(dev.context, spec, config, &*found->cubin), config, "remote"};
    }
    const cache::Entry& entry = found->entry;
    if (!entry.measured_here() && entry.tuned && env::flag("SIGJIT_AUTOTUNE")) {
      // An imported timing is a claim: with SIGJIT_AUTOTUNE=1 it is re-measured here on first use.
      std::fprintf(stderr, "sigjit: cache: %s: the cached entry was not measured on this machine (%s); SIGJIT_AUTOTUNE=1 tunes it here\n",
                   problem_key(spec).c_str(), entry.origin.c_str());
      return std::nullopt;
    }
    const TileConfig config = TileConfig::parse(entry.config, "cache entry config");
    // Missing or corrupt (logged by the store), or it did not load: get_kernel compiles the entry's
    // own config (not the default: an entry measured here keeps its tuned config, and no bundle
    // may displace it meanwhile, see put_entry_locked) and the fresh cubin replaces the entry's
    // (F9), unless another process rewrote the entry meanwhile. get_kernel's own callback says so;
    // the process-wide compile count would also see other threads' compiles.
    const auto blob = store->load_blob(entry.cubin_sha256);
    return ResolvedKernel{get_kernel(dev.context, spec, config, blob ? &*blob : nullptr,
                                     [&](const CompiledKernel& k) { heal_stored_kernel(dev, spec, config, k.cubin, entry); }),
                          config, found->remote ? "remote" : "store"};
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigjit: cache: %s; compiling instead\n", e.what());
    return std::nullopt;
  }
}

}  // namespace

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

namespace {

// SIGJIT_FORCE_TILE pins the tile config (benchmark sweeps, debugging); the config is part of the
// kernel name, so forced and default kernels never share a cache entry.
TileConfig choose_config(const KernelSpec& spec) {
  const std::optional<std::string> forced = env::text("SIGJIT_FORCE_TILE");
  if (!forced) return default_config(spec);
  const TileConfig c = TileConfig::parse(*forced, "SIGJIT_FORCE_TILE");
  if (const std::string why = check_config(spec, c); !why.empty()) throw Error(fmt::format("SIGJIT_FORCE_TILE={}: {}", *forced, why));
  return c;
}

}  // namespace

ResolvedKernel resolve_kernel(const DeviceInfo& dev, const KernelSpec& spec) {
  // The dQ convert and FP8 quantization kernels have one config: a forced tile is meant for the
  // tunable kernels.
  if (!has_fixed_config(spec.direction) && env::text("SIGJIT_FORCE_TILE")) {
    const TileConfig c = choose_config(spec);
    return {get_kernel(dev.context, spec, c), c, "forced"};
  }
  if (std::optional<ResolvedKernel> done = resolved_kernel(dev, spec)) {
    cache::count(cache::Counter::process_hit);
    return *std::move(done);
  }
  cache::count(cache::Counter::process_miss);
  std::optional<ResolvedKernel> r = from_store(dev, spec);
  if (!r && env::flag("SIGJIT_AUTOTUNE") && !has_fixed_config(spec.direction)) r = tuner::autotune_and_store(dev, spec);  // one config
  if (!r) {
    // One process of those sharing the store compiles; the others wait, then load what it stored.
    const TileConfig c = default_config(spec);
    produce_once(
        default_store(), fingerprint_for(dev, spec), problem_key(spec), [&] { return (r = from_store(dev, spec, /*ask_remote=*/false)).has_value(); },
        [&] {
          r = ResolvedKernel{get_kernel(dev.context, spec, c, nullptr,
                                        [&](const CompiledKernel& k) { store_kernel(dev, spec, c, k.cubin, cache::Entry{}); }),
                             c, "compiled"};
        });
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
