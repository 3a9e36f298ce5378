// Tuning on the GPU: a Measurer that runs candidates on a representative problem of the
// spec's bucket, checks each against the default config's output, and times it with CUDA
// events after an L2 flush; plus tune_and_store(), shared by `sigjit tune` and SIGJIT_AUTOTUNE.
#pragma once

#include "jit/binaries.hpp"
#include "tune/tuner.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sigjit::tuner {

// The GPU tuning runs on (cuda/device.hpp), and finding it: nullopt with the reason when there is
// none (no driver, no device, a context that cannot be made).
using Device = detail::DeviceInfo;
std::optional<Device> find_device(std::string* why);

// The store fingerprint of the spec's kernels on `dev` (jit/binaries.hpp).
cache::DeviceFingerprint fingerprint(const Device& dev, const KernelSpec& spec);


struct TuneOptions {
  Strategy strategy = Strategy::automatic;
  Budget budget;
  const std::vector<int>* user_lengths = nullptr;
  Progress progress;  // may be empty
};

// Tunes one spec on the current device and writes the winner (config, timings, cubin, rejected
// candidates, provenance) to the default store. Throws Error when nothing could be measured.
TuneResult tune_and_store(const Device& dev, const KernelSpec& spec, const TuneOptions& options);

// Compiles configs on all cores (NVRTC only, no GPU), reporting progress. Failures are returned
// as (config, reason) pairs, not thrown.
std::vector<std::pair<TileConfig, std::string>> compile_in_parallel(const KernelSpec& spec, const std::vector<TileConfig>& configs,
                                                                    const Progress& progress,
                                                                    std::vector<CompiledKernel>* results = nullptr);

// Bits a tuning run writes into every output element before a launch: NaN in bf16 and fp16, so an
// element the kernel left unwritten is told apart from any value it can compute.
inline constexpr std::uint16_t kPoisonBits = 0xFFFF;

// A candidate's outputs against the default config's (both 16-bit floats, poisoned before their
// runs): rejected when an element is written by one and not the other, or when the relative
// L2 error exceeds 1e-2 (bf16) / 2e-3 (fp16).
Verdict compare_with_baseline(const std::vector<std::uint16_t>& baseline, const std::vector<std::uint16_t>& out, bool bf16);

// Runs one config on a representative problem and compares it with the default config.
Verdict check_on_gpu(const Device& dev, const KernelSpec& spec, const TileConfig& config);

// Times one config on the spec's representative problem (same method as the tuner).
Samples measure_config(const Device& dev, const KernelSpec& spec, const TileConfig& config, int reps);

// SIGJIT_AUTOTUNE=1 path of resolve_kernel.
std::optional<detail::ResolvedKernel> autotune_and_store(const Device& dev, const KernelSpec& spec);

}  // namespace sigjit::tuner
