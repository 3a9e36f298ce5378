// Backward correctness on the GPU against the fp64 reference gradients: every layout x head dim
// x dtype x causal x bias mode x score bias x GQA (exact sigmoid), fast sigmoid per layout/head
// dim, ragged lengths including 1, 17, 200 and 1000 (and 4096; 16384 is left to the benchmark:
// the fp64 reference backward has no row sampling), poisoned gradients, bitwise determinism.
#include "tests/gpu/forward_problem.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace sigjit::testing {
namespace {

std::vector<CaseSpec> backward_cases() {
  std::vector<CaseSpec> cases;
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {32, 64, 96, 128, 256})
      for (DType dt : {DType::bf16, DType::fp16})
        for (bool causal : {false, true})
          for (BiasMode bias : {BiasMode::log_n, BiasMode::scalar})
            for (bool sb : {false, true})
              for (bool gqa : {false, true}) {
                CaseSpec c{layout, hd, dt, causal, bias, sb, gqa, SigmoidMode::exact};
                c.lens_q = layout == Layout::dense ? std::vector<int>{200, 200} : std::vector<int>{1, 17, 200, 1000};
                c.lens_k = layout == Layout::dense ? std::vector<int>{(hd + sb) % 2 ? 333 : 200, (hd + sb) % 2 ? 333 : 200}
                                                   : std::vector<int>{1, 30, 200, 777};
                cases.push_back(c);
              }
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {64, 128}) {
      CaseSpec c{layout, hd, DType::bf16, false, BiasMode::log_n, false, true, SigmoidMode::fast};
      c.lens_q = c.lens_k = layout == Layout::dense ? std::vector<int>{4096} : std::vector<int>{4096, 17, 1};
      cases.push_back(c);
    }
  return cases;
}

class BackwardMatrix : public ::testing::TestWithParam<CaseSpec> {};

TEST_P(BackwardMatrix, MatchesFp64ReferenceAndIsDeterministic) {
  SIGJIT_REQUIRE_GPU();
  const CaseSpec& spec = GetParam();
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  ForwardProblem problem(spec, rng);
  problem.enable_backward(rng);
  problem.poison_gradients();
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  ASSERT_NO_THROW(sigjit::backward(problem.args(), problem.grads(), nullptr));
  SIGJIT_CUDA_OK(cudaGetLastError());
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<std::uint16_t> first = problem.gradient_bits();
  const CaseResult r = problem.check_backward();
  fmt::print("[bwd] {} rel_error={:.3e} max_abs={:.3e}\n", spec.name(), r.rel_error, r.max_abs_error);
  EXPECT_EQ(r.unwritten, 0) << "gradient elements left unwritten (still poison)";
  EXPECT_EQ(r.nonzero_padding, 0) << "padded rows and keys must get exactly zero gradient";
  EXPECT_LT(r.rel_error, backward_error_bound(spec));
  problem.poison_gradients();
  sigjit::backward(problem.args(), problem.grads(), nullptr);
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  EXPECT_TRUE(problem.gradient_bits() == first) << "two runs gave different gradient bits";
}


INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrix, ::testing::ValuesIn(backward_cases()), case_name);

}  // namespace
}  // namespace sigjit::testing
