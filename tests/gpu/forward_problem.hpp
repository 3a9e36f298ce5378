// A randomly generated forward problem on the device plus its fp64 reference, shared by the GPU
// correctness tests and the benchmark's spot checks.
#pragma once

#include "tests/common/gpu_env.hpp"
#include "tests/common/reference.hpp"

#include <sigjit/sigjit.hpp>

#include <cctype>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace sigjit::testing {

struct CaseSpec {
  Layout layout = Layout::dense;
  int head_dim = 64;
  DType dtype = DType::bf16;
  bool causal = false;
  BiasMode bias_mode = BiasMode::log_n;
  bool score_bias = false;
  bool gqa = false;
  SigmoidMode sigmoid = SigmoidMode::exact;
  std::vector<int> lens_q;  // one per sequence (dense: all equal)
  std::vector<int> lens_k;
  bool strided = false;  // non-contiguous strides: K head-major, Q/O with gaps between heads
  int row_step = 1;      // reference row sampling (the backward's: query rows and keys)
  std::string name() const;
};

// Every layout x head dim x dtype x causal x bias mode x score bias x GQA with the exact sigmoid,
// lengths unset: the feature space both GPU matrices (forward, backward) walk.
template <class Fn>
void for_each_exact_case(Fn&& fn) {
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {32, 64, 96, 128, 256})
      for (DType dt : {DType::bf16, DType::fp16})
        for (bool causal : {false, true})
          for (BiasMode bias : {BiasMode::log_n, BiasMode::scalar})
            for (bool sb : {false, true})
              for (bool gqa : {false, true}) fn(CaseSpec{layout, hd, dt, causal, bias, sb, gqa, SigmoidMode::exact});
}

// gtest prints parameters in test listings and ctest names: the readable name, not raw bytes.
inline void PrintTo(const CaseSpec& spec, std::ostream* os) { *os << spec.name(); }

// A gtest-safe test name for a case (letters, digits, underscores).
inline std::string case_name(const ::testing::TestParamInfo<CaseSpec>& info) {
  std::string n = info.param.name();
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

struct CaseResult {
  double rel_error = 0;      // ||out - ref|| / ||ref|| over checked elements
  double max_abs_error = 0;
  long unwritten = 0;        // output elements still holding the poison
  long clobbered = 0;        // non-output elements that changed
  long nonzero_padding = 0;  // padded rows not exactly zero
  long checked = 0;
};

class ForwardProblem {
 public:
  ForwardProblem(const CaseSpec& spec, std::mt19937& rng);
  const AttentionArgs& args() const { return args_; }
  void poison_output();
  CaseResult check(bool compute_reference = true) const;

  // Backward: random dO plus poisoned dQ/dK/dV buffers laid out like Q/K/V.
  void enable_backward(std::mt19937& rng);
  const Gradients& grads() const { return grads_; }
  void poison_gradients();
  // rel_error is the worst of dQ, dK, dV; unwritten counts gradient elements left poisoned or
  // not finite (every element, sampled or not); with row_step > 1 values are compared on the
  // sampled rows and keys only (padded ones are always compared: exactly 0). The fp64 reference
  // is computed on the first call and reused (the inputs never change).
  CaseResult check_backward() const;
  // The three gradient buffers' raw bits, to compare two runs bit for bit.
  std::vector<std::uint16_t> gradient_bits() const;

 private:
  std::vector<float> random_tensor(std::size_t n, std::mt19937& rng);
  void upload_u16(DeviceBuffer& dst, const std::vector<float>& values);

  CaseSpec spec_;
  AttentionArgs args_;
  std::vector<float> q_, k_, v_, score_bias_;
  std::vector<int> seq_q_, seq_k_, cu_q_, cu_k_;
  std::size_t o_elems_ = 0;
  DeviceBuffer dq_, dk_, dv_, do_, dsb_, dlq_, dlk_;
  std::vector<float> dout_;
  std::size_t k_elems_ = 0;
  Gradients grads_;
  DeviceBuffer g_dout_, g_dq_, g_dk_, g_dv_;
  mutable std::shared_ptr<const RefGrads> backward_ref_;
};

double error_bound(const CaseSpec& spec);
double backward_error_bound(const CaseSpec& spec);

}  // namespace sigjit::testing
