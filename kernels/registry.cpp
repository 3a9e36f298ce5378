#include "kernels/registry.hpp"

#include "kernels/family.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace sigjit {

namespace kernels {
namespace {

// From the most portable to the most specialised: candidates are listed in this order, and a
// spec's default comes from the last family that serves it.
const std::array<const Family*, 3>& families() {
  static const std::array<const Family*, 3> list{&sm80_family(), &sm90_bwd_family(), &sm90_fwd_family()};
  return list;
}

const Family& most_specialised(const KernelSpec& spec) {
  const auto& list = families();
  const auto it = std::find_if(list.rbegin(), list.rend(), [&](const Family* f) { return f->serves(spec); });
  return it == list.rend() ? sm80_family() : **it;
}

constexpr std::size_t kMaxConfigText = 64;  // the longest valid config is about 25 characters

}  // namespace

const Family& family_of(const TileConfig& config) {
  for (const Family* f : families())
    if (f->id() == config.family()) return *f;
  return sm80_family();
}

}  // namespace kernels

std::string TileConfig::describe() const { return kernels::family_of(*this).describe(*this); }

int TileConfig::threads() const { return kernels::family_of(*this).threads(*this); }

std::vector<std::string> tile_grammars() {
  std::vector<std::string> out;
  for (const kernels::Family* f : kernels::families()) out.emplace_back(f->grammar());
  return out;
}

TileConfig TileConfig::parse(const std::string& text, const std::string& what) {
  if (text.size() <= kernels::kMaxConfigText) {
    for (const kernels::Family* f : kernels::families())
      if (auto c = f->parse(text, what)) return *c;
  }
  const std::string shown = text.size() <= kernels::kMaxConfigText
                                ? text
                                : text.substr(0, kernels::kMaxConfigText) + fmt::format("... ({} characters)", text.size());
  throw Error(fmt::format("{} '{}': expected {}; each number has 1 to 4 digits", what, shown, fmt::join(tile_grammars(), " or ")));
}

std::string check_config(const KernelSpec& spec, const TileConfig& config) { return kernels::family_of(config).check(spec, config); }

int smem_bytes(const KernelSpec& spec, const TileConfig& config) { return kernels::family_of(config).smem_bytes(spec, config); }

std::string unserved_reason(const KernelSpec& spec) {
  const auto& list = kernels::families();
  if (std::any_of(list.begin(), list.end(), [&](const kernels::Family* f) { return f->serves(spec); })) return {};
  return fmt::format(
      "no kernel serves {}: dtype fp8 is the Hopper forward only (direction fwd, head dims 64 and 128, arch sm_90a: "
      "H100, H200); use bf16 or fp16 elsewhere",
      spec.describe());
}

TileConfig default_config(const KernelSpec& spec) { return kernels::most_specialised(spec).default_config(spec); }

TileConfig portable_config(const KernelSpec& spec) { return kernels::sm80_family().default_config(spec); }

std::vector<TileConfig> candidate_configs(const KernelSpec& spec) {
  std::vector<TileConfig> out;
  for (const kernels::Family* f : kernels::families()) {
    if (!f->serves(spec)) continue;
    for (TileConfig& c : f->candidates(spec)) out.push_back(std::move(c));
  }
  // The default always competes, so a tuned entry is never slower than the untuned default (it
  // can fall outside a family's grid: hd 64's persistent default without overlap, narrowed tiles).
  const TileConfig def = default_config(spec);
  if (std::none_of(out.begin(), out.end(), [&](const TileConfig& c) { return c.describe() == def.describe(); })) out.push_back(def);
  return out;
}

std::string kernel_name(const KernelSpec& s, const TileConfig& c) {
  return fmt::format("sigjit_{}_{}_{}", kernel_stem(s), c.describe(), s.arch.name());
}

std::string_view second_entry_suffix(const KernelSpec& s) {
  if (s.dtype == DType::fp8_e4m3 && s.direction == Direction::forward) return "_vt";
  if (s.direction == Direction::backward_dq_convert && s.layout == Layout::padded) return "_zero";
  if (s.direction == Direction::backward_dq_convert && s.layout == Layout::varlen) return "_tail";
  if (s.direction == Direction::fp8_quantize) return "_amax";
  return {};
}

std::string emit_source(const KernelSpec& spec, const TileConfig& config) {
  return kernels::family_of(config).emit(spec, config, kernel_name(spec, config));
}

}  // namespace sigjit
