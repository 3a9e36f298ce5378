// Which kernel serves a spec, in order: the in-process table (by problem key), the on-disk
// store (tuned or default config + verified cubin, no NVRTC), a tuning run when
// SIGJIT_AUTOTUNE=1, else the heuristic default config compiled on the spot and written to the
// store for the next process. SIGJIT_FORCE_TILE bypasses all of it (benchmarks, debugging);
// SIGJIT_DISABLE_CACHE=1 skips the store. Store problems are logged and never fail a call.
#pragma once

#include "cache/store.hpp"
#include "compiler/kernel_spec.hpp"
#include "kernels/registry.hpp"
#include "runtime/device.hpp"
#include "runtime/kernel_cache.hpp"

#include <optional>
#include <string>

namespace sigjit::detail {

struct ResolvedKernel {
  LoadedKernel kernel;
  TileConfig config;
  std::string origin;  // "forced", "process", "store", "tuned", "compiled"
};

ResolvedKernel resolve_kernel(const DeviceInfo& dev, const KernelSpec& spec);

// resolve_kernel's answer when the process has resolved `spec` already (no lookup beyond the
// in-process table, no compile); nullopt otherwise.
std::optional<ResolvedKernel> resolved_kernel(const DeviceInfo& dev, const KernelSpec& spec);

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
void heal_stored_kernel(const DeviceInfo& dev, const KernelSpec& spec, const TileConfig& config, const std::vector<char>& cubin,
                        const cache::Entry& broken);

// `sigjit verify --gpu` per local entry, the decision apart from the launch (unit-testable
// without a GPU). Facts: whether the cached cubin itself was loaded and run (false: missing or
// cuModuleLoadData failed), whether its output matched the default config's, and whether the
// entry was produced on this machine (origin local, tuned or not: not a claim).
struct GpuCheckFacts {
  bool cached_cubin_ran = false;
  bool output_ok = false;
  // false when the entry's config is the default one: the check compares a kernel with itself
  // (one kernel per name in a process), which proves nothing about the cached bytes.
  bool output_compared = true;
  bool produced_here = false;
};
enum class GpuCheckAction {
  keep,     // ran, right output, produced here
  promote,  // ran, right output, its time a claim: re-time here and store it as measured here
  heal,     // did not run, wrong output, or unproven bytes: replace its cubin with a fresh compile of its config
};
GpuCheckAction decide_gpu_check(const GpuCheckFacts& facts);

}  // namespace sigjit::detail
