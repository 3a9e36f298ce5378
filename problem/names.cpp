#include "problem/names.hpp"

#include "problem/spec.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace sigjit {

#define SIGJIT_TABLE(E, ...)                                            \
  const std::vector<std::pair<E, const char*>>& EnumNames<E>::table() { \
    static const std::vector<std::pair<E, const char*>> t{__VA_ARGS__}; \
    return t;                                                           \
  }
SIGJIT_TABLE(DType, {DType::bf16, "bf16"}, {DType::fp16, "fp16"}, {DType::fp8_e4m3, "fp8"})
SIGJIT_TABLE(Layout, {Layout::dense, "dense"}, {Layout::padded, "padded"}, {Layout::varlen, "varlen"})
SIGJIT_TABLE(BiasMode, {BiasMode::log_n, "log_n"}, {BiasMode::scalar, "scalar"})
SIGJIT_TABLE(SigmoidMode, {SigmoidMode::fast, "fast"}, {SigmoidMode::exact, "exact"})
SIGJIT_TABLE(CausalAlign, {CausalAlign::bottom_right, "bottom_right"}, {CausalAlign::top_left, "top_left"})
SIGJIT_TABLE(Direction, {Direction::forward, "fwd"}, {Direction::backward_dkdv, "bwd_dkdv"}, {Direction::backward_dq, "bwd_dq"},
             {Direction::backward_fused, "bwd_fused"}, {Direction::backward_dq_convert, "bwd_dq_convert"},
             {Direction::fp8_quantize, "fp8_quantize"})
SIGJIT_TABLE(SeqBucket, {SeqBucket::up_to_512, "le512"}, {SeqBucket::up_to_2k, "le2k"}, {SeqBucket::up_to_8k, "le8k"},
             {SeqBucket::over_8k, "gt8k"})
#undef SIGJIT_TABLE

std::string underscored(std::string_view text) {
  std::string u(text);
  std::replace(u.begin(), u.end(), '-', '_');
  return u;
}

void throw_not_one_of(std::string_view what, std::string_view text, const std::vector<std::string>& allowed) {
  throw Error(fmt::format("{}: '{}' is not one of {}", what, text, fmt::join(allowed, ", ")));
}

}  // namespace sigjit
