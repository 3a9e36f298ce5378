// Kernel binaries and the on-disk store: what a store entry of a kernel is (its device
// fingerprint, whether it may serve a spec), writing compiled kernels to the store and healing
// entries whose cubin did not load. The runtime's resolution order (runtime/resolve.hpp) and the
// tuner (tune/) use it; the store itself (cache/) knows nothing of kernels.
#pragma once

#include "cache/store.hpp"
#include "cuda/device.hpp"
#include "jit/kernel_table.hpp"
#include "kernels/registry.hpp"
#include "problem/spec.hpp"

#include <functional>
#include <string>
#include <vector>

namespace sigjit::detail {

// A kernel ready to launch, the config it was built with, and where it came from.
struct ResolvedKernel {
  LoadedKernel kernel;
  TileConfig config;
  std::string origin;  // "forced", "process", "store", "tuned", "compiled", "sm80 fallback"
};

cache::DeviceFingerprint fingerprint_for(const DeviceInfo& dev, const KernelSpec& spec);

// The store at Store::default_root(), or nullopt when disabled or unusable (logged once).
cache::Store* default_store();

// Digest of the embedded (or overridden) template sources: part of every fingerprint, so an
// edited kernel never reuses binaries of the old one.
const std::string& templates_digest();

// Whether a store entry may serve `spec`: a valid config whose kernel name matches the entry,
// and either tuned or this library's current default (an untuned entry of another version's
// default is a miss, healed by compiling the current default over it).
bool store_entry_usable(const KernelSpec& spec, const cache::Entry& entry);

// Writes a compiled kernel to the store as the entry of its problem (best effort, logged).
void store_kernel(const DeviceInfo& dev, const KernelSpec& spec, const TileConfig& config, const std::vector<char>& cubin, cache::Entry entry);

// The heal of an entry whose cached cubin did not load (or computed wrong output): `cubin` (a
// fresh compile of the entry's config) replaces it, keeping the entry's other fields, unless the
// store's entry no longer references broken.cubin_sha256 (another process rewrote it). Best
// effort, logged. keep_faster cannot do this: the heal has the same time, and a tie keeps the
// broken entry forever (F9).
// Single flight across the processes sharing `store`: under store->lock_production(fp, key),
// `ready()` first (another process may have stored the kernel while this one waited) and
// `produce()` (compile and store) only when it returns false. Without a store, or when the lock
// cannot be had (timeout, a file system without flock: logged once), produce() runs unlocked.
// Returns whether produce() ran.
bool produce_once(cache::Store* store, const cache::DeviceFingerprint& fp, const std::string& problem_key, const std::function<bool()>& ready,
                  const std::function<void()>& produce);

void heal_stored_kernel(const DeviceInfo& dev, const KernelSpec& spec, const TileConfig& config, const std::vector<char>& cubin,
                        const cache::Entry& broken);

}  // namespace sigjit::detail
