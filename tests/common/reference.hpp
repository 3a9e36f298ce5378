// fp64 CPU reference of sigjit's forward: the definition every kernel is tested against.
// Inputs are host float arrays holding the (already dtype-rounded) values, laid out with the
// same element strides the device tensors use, so one set of index rules serves both.
#pragma once

#include <sigjit/sigjit.hpp>

#include <cstdint>
#include <vector>

namespace sigjit::testing {

struct RefInputs {
  AttentionArgs args;  // shapes, layout and options; strides may be zero (contiguous)
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  const std::int32_t* seq_lens_q = nullptr;    // padded
  const std::int32_t* seq_lens_k = nullptr;    // padded
  const std::int32_t* cu_seqlens_q = nullptr;  // varlen
  const std::int32_t* cu_seqlens_k = nullptr;  // varlen
  const float* score_bias = nullptr;
};

// The causal diagonal of a sequence with len_q queries and len_k keys: query i sees keys
// j <= i + causal_offset (and j < len_k). args.causal_align bottom_right: len_k - len_q; top_left: 0.
int causal_offset(const AttentionArgs& args, int len_q, int len_k);

// Exact logistic function in double.
double sigmoid(double x);

// O over an output buffer of o_elements elements laid out by args.o_strides. Positions that are
// not part of the output (stride gaps) stay NaN, so a test can tell "must be written" from
// "must not be touched"; padded rows are 0 as the padded layout promises.
std::vector<double> reference_forward(const RefInputs& in, std::size_t o_elements);

// What the reference knows about each output element.
enum class OutState : unsigned char {
  untouched = 0,  // not part of the output (stride gap, rows past the last sequence): must keep its old value
  checked = 1,    // value computed: compare
  written = 2,    // part of the output but not computed (row sampling): must be written, not compared
};

struct RefOutput {
  std::vector<double> values;  // NaN where not computed
  std::vector<OutState> state;
};

// Like reference_forward, but computes only every row_step-th query row of each sequence (and
// always its first and last 8 rows), so 16K-token sequences stay cheap; (batch, head) pairs run
// on all hardware threads.
RefOutput reference_forward_sampled(const RefInputs& in, std::size_t o_elements, int row_step);

// fp64 gradients of the forward for upstream gradient dout (laid out like O, by o_strides).
// dq follows q_strides, dk/dv follow k_strides/v_strides; every element of the three buffers
// starts at 0, so padded rows and keys read exactly 0. dK/dV sum over each GQA group's heads.
struct RefGrads {
  std::vector<double> dq, dk, dv;
};
RefGrads reference_backward(const RefInputs& in, const float* dout, std::size_t q_elements, std::size_t k_elements);

// Like reference_backward (it is this with steps 1), but computes dQ only for every row_step-th
// query row of each sequence and dK/dV only for every key_step-th key (always also the first and
// last 8 of each), so 16K-token sequences stay cheap: O(L D) per sampled row or key. The rows and
// keys of a sequence that are not sampled are NaN (a checker skips them); padded rows and keys
// and stride gaps are 0 as in the full reference. Sampled rows and keys run on all hardware
// threads, so one long sequence uses them all.
RefGrads reference_backward_sampled(const RefInputs& in, const float* dout, std::size_t q_elements, std::size_t k_elements, int row_step,
                                    int key_step);

// Effective (contiguous-filled) strides, matching the library's rules.
Strides effective_strides(Strides s, int tokens, int heads, int head_dim);

}  // namespace sigjit::testing
