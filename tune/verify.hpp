// `sigjit verify --gpu` of one stored entry: load and run the cached cubin itself (not a fresh
// compile of its config), compare its output with the default config's, then keep the entry,
// re-time a claim here (stored as measured here), or heal it (a fresh compile of its config
// replaces the cubin). The decision is apart from the launch, so it is tested without a GPU.
#pragma once

#include "cache/store.hpp"
#include "tune/gpu.hpp"

#include <string>

namespace sigjit::tuner {

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

struct GpuVerification {
  GpuCheckAction action = GpuCheckAction::heal;
  bool fine_as_found = false;              // ran, right output (a re-timed claim too)
  double claimed_ms = 0, measured_ms = 0;  // promote: the claim and this machine's time
  bool stored = false;                     // promote: written (false: the entry changed meanwhile)
  std::string reason;                      // heal: why the cached cubin was replaced
};

// Checks one entry of this device (the caller matched its fingerprint) and acts on it.
GpuVerification verify_on_gpu(cache::Store& store, const Device& dev, const KernelSpec& spec, const cache::Store::Listed& listed);

}  // namespace sigjit::tuner
