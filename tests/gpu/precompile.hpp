// Compiles every kernel a GPU test suite will need on all cores before its (serial) cases run.
// Why: each case otherwise pays its NVRTC compiles one after another (a backward case needs up to
// four kernels), and the matrices would not fit one device call.
#pragma once

#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "cuda/device.hpp"
#include "tests/gpu/forward_problem.hpp"

#include <random>
#include <string>
#include <utility>
#include <vector>

namespace sigjit::testing {

// The forward kernel spec a case resolves to on this device.
KernelSpec case_kernel_spec(const CaseSpec& c, const detail::DeviceInfo& dev, std::mt19937& rng);

// The cases of the parameterised suite `suite` (e.g. "BackwardMatrix", any instantiation) that gtest's filter
// and sharding will run, so that a narrowed run compiles only what it needs.
std::vector<CaseSpec> cases_to_run(const std::vector<CaseSpec>& cases, const std::string& suite);

// Compiles (spec, config) pairs into the in-process kernel table on all cores.
void precompile_work(const std::vector<std::pair<KernelSpec, TileConfig>>& work);

// Every backward kernel the cases resolve to by default: the fused kernel and its dQ convert
// kernel, and the deterministic dK/dV and dQ pair.
void precompile_backward(const std::vector<CaseSpec>& cases);

// Which of the sm90 backward family's tunables a GPU test sets on its default tile.
struct Sm90BwdVariant {
  bool bulk_dq = false;       // _r: dQ by bulk reductions from shared memory
  bool early_scores = false;  // e: the next step's S^T issued before the dS barrier
  bool dq_writer = false;     // _w: dQ by a writer warp's tensor bulk reductions
  bool ordered_dq = false;    // _wd: ... in key-block order (the deterministic mode)
  bool local_dq = false;      // _wl: ... of each warpgroup's own keys, summed in shared memory
  bool persistent = false;    // _wp: ... by CTAs that walk the key tiles
  std::string label() const {
    return std::string(ordered_dq   ? "ordered"
                       : local_dq   ? "writer-local"
                       : persistent ? "writer-persistent"
                       : dq_writer  ? "writer"
                       : bulk_dq    ? "bulk"
                                    : "atomic") +
           (early_scores ? "-early" : "");
  }
};
TileConfig sm90_backward_test_config(const KernelSpec& spec, Sm90BwdVariant variant);

// That config of the sm90 backward family (fused kernel) and the dQ convert kernel of every case
// it supports (head dim 64/128), for the BackwardMatrixSm90 suites.
void precompile_backward_sm90(const std::vector<CaseSpec>& cases, Sm90BwdVariant variant);

}  // namespace sigjit::testing
