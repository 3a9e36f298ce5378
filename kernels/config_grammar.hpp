// A strict reader of the tile config grammars, shared by the family files. No std::regex: its
// recursive executor overflows the stack on long digit runs, and config strings come from cache
// files and bundles.
#pragma once

#include "problem/spec.hpp"

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace sigjit::kernels {

class ConfigCursor {
 public:
  explicit ConfigCursor(std::string_view s) : s_(s) {}
  bool lit(std::string_view t) {
    if (s_.substr(i_, t.size()) != t) return false;
    i_ += t.size();
    return true;
  }
  // 1 to `max_digits` decimal digits (so the value cannot overflow an int).
  bool num(int& out, std::size_t max_digits = 4) {
    std::size_t j = i_;
    while (j < s_.size() && s_[j] >= '0' && s_[j] <= '9') ++j;
    if (j == i_ || j - i_ > max_digits) return false;
    out = 0;
    for (; i_ < j; ++i_) out = out * 10 + (s_[i_] - '0');
    return true;
  }
  bool done() const { return i_ == s_.size(); }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

inline bool is_sm90a(const Arch& a) { return a.major == 9 && a.minor == 0 && a.arch_specific; }

// The emitted TU's check that the entry point's parameter block is laid out as the host's: a
// template tree from another sigjit version (SIGJIT_TEMPLATE_DIR) whose structs gained or lost a
// member fails to compile, naming the struct, instead of launching with members read at the wrong
// offsets. Each struct the block holds is checked, not only the outer one: the tensor maps'
// 64-byte alignment pads the outer struct, so an inner one can grow without changing its size.
// (A reordering that keeps every size is not caught.) `blocks`: {struct, its sizeof in this build}.
inline std::string param_block_check(std::initializer_list<std::pair<const char*, std::size_t>> blocks) {
  std::string out;
  for (const auto& [type, host_bytes] : blocks)
    out += std::string("static_assert(sizeof(") + type + ") == " + std::to_string(host_bytes) +
           ", \"host and template disagree on the size of " + type + " (SIGJIT_TEMPLATE_DIR from another sigjit version?)\");\n";
  return out;
}

// The causal diagonal's template argument (kCausalTopLeft, the configs' last parameter): only for
// top-left specs, so that every other spec's source is what it was before the parameter.
inline const char* top_left_arg(const KernelSpec& s) { return s.top_left() ? ", /*causal_top_left*/ true" : ""; }

// The templates' own enumerators (common/sequence.cuh) as the emitted TU's arguments: the TU
// reads as names, and the instantiation (an int parameter) is the same as with the numbers.
inline const char* layout_arg(const KernelSpec& s) {
  switch (s.layout) {
    case Layout::dense: return "sigjit::kern::kDense";
    case Layout::padded: return "sigjit::kern::kPadded";
    case Layout::varlen: return "sigjit::kern::kVarlen";
  }
  return "?";
}
inline const char* bias_mode_arg(const KernelSpec& s) {
  return s.bias_mode == BiasMode::log_n ? "sigjit::kern::kBiasLogN" : "sigjit::kern::kBiasScalar";
}

}  // namespace sigjit::kernels
