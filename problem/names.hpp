// The one table of names for the enums users and files spell: spec JSON, the CLI's options,
// workload files, messages. Problem keys and kernel names have their own frozen spellings
// (problem/spec.cpp: kernel_stem), since they are cache keys.
#pragma once

#include <sigjit/sigjit.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sigjit {

enum class Direction;
enum class SeqBucket;

// Each enum's values and names, in declaration order.
template <class E>
struct EnumNames;
#define SIGJIT_ENUM_NAMES(E, ...)                                 \
  template <>                                                     \
  struct EnumNames<E> {                                           \
    static const std::vector<std::pair<E, const char*>>& table(); \
  }
SIGJIT_ENUM_NAMES(DType);        // bf16 fp16
SIGJIT_ENUM_NAMES(Layout);       // dense padded varlen
SIGJIT_ENUM_NAMES(BiasMode);     // log_n scalar
SIGJIT_ENUM_NAMES(SigmoidMode);  // fast exact
SIGJIT_ENUM_NAMES(CausalAlign);  // bottom_right top_left
SIGJIT_ENUM_NAMES(Direction);    // fwd bwd_dkdv bwd_dq bwd_fused bwd_dq_convert fp8_quantize
SIGJIT_ENUM_NAMES(SeqBucket);    // le512 le2k le8k gt8k
#undef SIGJIT_ENUM_NAMES

template <class E>
const char* name_of(E value) {
  for (const auto& [v, n] : EnumNames<E>::table())
    if (v == value) return n;
  return "?";
}

template <class E>
std::vector<std::string> names_of() {
  std::vector<std::string> out;
  for (const auto& entry : EnumNames<E>::table()) out.emplace_back(entry.second);
  return out;
}

// The value named `text` (hyphens read as underscores: the CLI's bottom-right); throws Error
// "<what>: '<text>' is not one of a, b, ..." naming the allowed names.
[[noreturn]] void throw_not_one_of(std::string_view what, std::string_view text, const std::vector<std::string>& allowed);
std::string underscored(std::string_view text);

template <class E>
E parse_name(std::string_view what, std::string_view text) {
  const std::string u = underscored(text);
  for (const auto& [v, n] : EnumNames<E>::table())
    if (u == n) return v;
  throw_not_one_of(what, text, names_of<E>());
}

}  // namespace sigjit
