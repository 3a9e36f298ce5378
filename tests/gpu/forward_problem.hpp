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
  // The causal diagonal (last, so that positional initialisers above stay valid): top-left cases
  // are named "causaltl".
  CausalAlign causal_align = CausalAlign::bottom_right;
  // dtype fp8_e4m3: one descale factor per tensor (strides 0) instead of one per (sequence, kv
  // head) (FlashAttention-3's [batch, heads_kv]).
  bool fp8_per_tensor = false;
  // varlen: buffer rows past cu_seqlens[batch] in Q/O and K/V (no sequence owns them): every
  // output must hold exact zeros there (checked as padding: nonzero_padding).
  int varlen_tail = 0;
  // 16-bit inputs: each (sequence, kv head) of Q, K and V scaled by its own power of two,
  // 2^((b + h_kv + tensor) % 5 - 2), so that a per-(sequence, head) factor applied to the wrong
  // sequence, head or tensor moves the scores by 2x or more (the FP8 on-the-fly quantization's test).
  bool head_scales = false;
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

// Causal cases with the top-left diagonal (CausalAlign::top_left, TritonSigmoid's rule) where it
// differs from bottom-right: every layout x hd 64/128, plain (bf16, fast) and heavy (fp16, exact,
// score bias, GQA, strided when dense). Dense: more keys than queries (plain) or more queries
// (heavy). Padded and varlen: per sequence both directions, equal lengths, lengths at tile
// edges; padded also a sequence without keys (its rows see no key: zeros, zero dQ) and one
// without queries (its keys are seen by none: zero dK, dV).
inline std::vector<CaseSpec> top_left_cases() {
  std::vector<CaseSpec> cases;
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {64, 128})
      for (bool heavy : {false, true}) {
        CaseSpec c{layout,
                   hd,
                   heavy ? DType::fp16 : DType::bf16,
                   true,
                   BiasMode::log_n,
                   heavy,
                   heavy,
                   heavy ? SigmoidMode::exact : SigmoidMode::fast};
        c.causal_align = CausalAlign::top_left;
        if (layout == Layout::dense) {
          c.lens_q = heavy ? std::vector<int>{333, 333} : std::vector<int>{200, 200};
          c.lens_k = heavy ? std::vector<int>{200, 200} : std::vector<int>{333, 333};
          c.strided = heavy;
        } else if (layout == Layout::padded) {
          c.lens_q = {200, 1000, 17, 300, 65, 5, 0};
          c.lens_k = {777, 200, 1, 300, 64, 0, 64};
          c.row_step = 5;
        } else {
          c.lens_q = {1, 200, 1000, 17, 193};
          c.lens_k = {30, 777, 200, 1, 192};
          c.row_step = 5;
        }
        cases.push_back(c);
      }
  return cases;
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
  // The output buffer's raw bits, to compare two runs bit for bit.
  std::vector<std::uint16_t> output_bits() const;

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
  // The same, read by copies on `stream` only: what the stream's next work sees.
  std::vector<std::uint16_t> gradient_bits(cudaStream_t stream) const;

 private:
  // Element offsets of the varlen tail rows (CaseSpec::varlen_tail) of a tensor laid out by s.
  std::vector<std::size_t> tail_elements(const Strides& s, int first_row, int rows, int heads) const;

  std::vector<float> random_tensor(std::size_t n, std::mt19937& rng);
  void upload_u16(DeviceBuffer& dst, const std::vector<float>& values);
  // FP8: quantizes `values` (a tensor of `heads` heads over `rows` buffer rows) to e4m3 with the
  // descale factor of each element's (sequence, kv head), uploads the bytes to `dst` and leaves
  // the dequantized values (what the reference sees) in `values`.
  void quantize_fp8(DeviceBuffer& dst, std::vector<float>& values, const Strides& s, int rows, int heads, const std::vector<float>& descale);
  std::vector<float> fp8_descale(int tensor) const;  // [batch, heads_kv] factors of Q (0), K (1) or V (2)

  CaseSpec spec_;
  AttentionArgs args_;
  std::vector<float> q_, k_, v_, score_bias_;
  std::vector<int> seq_q_, seq_k_, cu_q_, cu_k_;
  std::size_t o_elems_ = 0;
  DeviceBuffer dq_, dk_, dv_, do_, dsb_, dlq_, dlk_, ddescale_[3];
  std::vector<float> dout_;
  std::size_t k_elems_ = 0;
  Gradients grads_;
  DeviceBuffer g_dout_, g_dq_, g_dk_, g_dv_;
  mutable std::shared_ptr<const RefGrads> backward_ref_;
};

double error_bound(const CaseSpec& spec);
double backward_error_bound(const CaseSpec& spec);

}  // namespace sigjit::testing
