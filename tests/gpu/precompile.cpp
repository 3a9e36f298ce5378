#include "tests/gpu/precompile.hpp"

#include "kernels/launch.hpp"
#include "kernels/registry.hpp"
#include "kernels/sm90_bwd.hpp"
#include "runtime/attention.hpp"
#include "cuda/driver_api.hpp"
#include "jit/kernel_table.hpp"
#include "problem/call.hpp"

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

namespace sigjit::testing {

KernelSpec case_kernel_spec(const CaseSpec& c, const detail::DeviceInfo& dev, std::mt19937& rng) {
  CaseSpec tiny = c;  // only the spec matters: allocate one token per sequence
  tiny.lens_q.assign(c.lens_q.size(), 1);
  tiny.lens_k.assign(c.lens_k.size(), 1);
  ForwardProblem p(tiny, rng);
  detail::Resolved r = detail::resolve(p.args());
  r.args.seqlen_q = *std::max_element(c.lens_q.begin(), c.lens_q.end());
  r.args.seqlen_k = *std::max_element(c.lens_k.begin(), c.lens_k.end());
  return detail::forward_spec(r, dev.arch());
}

std::vector<CaseSpec> cases_to_run(const std::vector<CaseSpec>& cases, const std::string& suite) {
  std::set<std::string> selected;
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  for (int s = 0; s < unit.total_test_suite_count(); ++s) {
    const ::testing::TestSuite& ts = *unit.GetTestSuite(s);
    const std::string name = ts.name();  // "<instantiation>/<suite>"
    if (name.size() <= suite.size() || name.compare(name.size() - suite.size() - 1, std::string::npos, "/" + suite) != 0) continue;
    for (int t = 0; t < ts.total_test_count(); ++t) {
      const ::testing::TestInfo& info = *ts.GetTestInfo(t);
      if (info.should_run() && info.value_param() != nullptr) selected.insert(info.value_param());
    }
  }
  std::vector<CaseSpec> out;
  for (const CaseSpec& c : cases)
    if (selected.count(c.name()) > 0) out.push_back(c);
  return out;
}

void precompile_work(const std::vector<std::pair<KernelSpec, TileConfig>>& work) {
  const detail::DeviceInfo dev = detail::current_device();
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  const unsigned n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned t = 0; t < n; ++t) {
    pool.emplace_back([&] {
      cudaSetDevice(0);
      detail::driver().cuCtxSetCurrent(dev.context);
      for (size_t i; (i = next++) < work.size();) detail::get_kernel(dev.context, work[i].first, work[i].second);
    });
  }
  for (auto& t : pool) t.join();
  fmt::print("precompiled {} kernel requests, {} NVRTC compiles so far\n", work.size(), detail::compile_count());
}

void precompile_backward(const std::vector<CaseSpec>& cases) {
  const detail::DeviceInfo dev = detail::current_device();
  std::vector<std::pair<KernelSpec, TileConfig>> work;
  std::set<std::string> seen;
  const auto add = [&](const KernelSpec& spec, const TileConfig& config) {
    if (seen.insert(kernel_name(spec, config)).second) work.emplace_back(spec, config);
  };
  std::mt19937 rng(1);
  for (const auto& c : cases) {
    KernelSpec spec = case_kernel_spec(c, dev, rng);
    for (Direction part : {Direction::backward_fused, Direction::backward_dkdv, Direction::backward_dq}) {
      spec.direction = part;
      add(spec, default_config(spec));
    }
    spec.direction = Direction::backward_fused;
    add(dq_convert_spec(spec), dq_convert_config());
  }
  precompile_work(work);
}

TileConfig sm90_backward_test_config(const KernelSpec& spec, Sm90BwdVariant variant) {
  sigjit::Sm90BwdTile levers;
  levers.early_scores = variant.early_scores;
  levers.ordered_dq = variant.ordered_dq;
  levers.local_dq = variant.local_dq;
  levers.persistent = variant.persistent;
  levers.dq_writer = variant.dq_writer || variant.ordered_dq || variant.local_dq || variant.persistent;
  levers.bulk_dq = variant.bulk_dq && !levers.dq_writer;
  return sigjit::sm90_backward_variant(spec, levers);
}

void precompile_backward_sm90(const std::vector<CaseSpec>& cases, Sm90BwdVariant variant) {
  const detail::DeviceInfo dev = detail::current_device();
  std::vector<std::pair<KernelSpec, TileConfig>> work;
  std::set<std::string> seen;
  std::mt19937 rng(1);
  for (const auto& c : cases) {
    KernelSpec spec = case_kernel_spec(c, dev, rng);
    spec.direction = Direction::backward_fused;
    if (!sm90_backward_supports(spec)) continue;
    const TileConfig config = sm90_backward_test_config(spec, variant);
    for (const auto& [s, cfg] : {std::make_pair(spec, config), std::make_pair(dq_convert_spec(spec), dq_convert_config())}) {
      if (seen.insert(kernel_name(s, cfg)).second) work.emplace_back(s, cfg);
    }
  }
  precompile_work(work);
}

}  // namespace sigjit::testing
