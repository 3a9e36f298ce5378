// Argument validation. Everything that can be checked on the host is checked before any
// device work, and each failure names the argument and what would be allowed. The checks
// return a normalised copy of the arguments (contiguous default strides filled in, default
// scale and heads_kv resolved) that the launch code uses as is.
#pragma once

#include <sigjit/sigjit.hpp>

#include <cstdint>
#include <vector>

namespace sigjit::detail {

struct Resolved {
  AttentionArgs args;  // with strides, heads_kv, scale and score_bias_stride filled in
  float scale = 0;
};

Resolved resolve(const AttentionArgs& args);

// The gradient tensors of a backward call: pointers and strides checked like Q/O (dO, dQ) and
// K/V (dK, dV); returns them with contiguous strides filled in.
Gradients resolve_gradients(const Resolved& r, const Gradients& g);

// Checks per-sequence lengths (seq_lens for padded, cu_seqlens for varlen) given as host
// arrays of batch (padded) or batch + 1 (varlen) entries.
void check_lengths(const Resolved& r, const std::int32_t* lens_or_cu_q, const std::int32_t* lens_or_cu_k);

// check_lengths on the host copies the arguments carry (host_seq_lens_* for padded,
// host_cu_seqlens_* for varlen), when both are given; nothing otherwise. Touches no device:
// validate(), forward() and backward() run it before their first CUDA call, so that a bad call
// gets the argument error even where there is no GPU or driver.
void check_host_lengths(const Resolved& r);

}  // namespace sigjit::detail
