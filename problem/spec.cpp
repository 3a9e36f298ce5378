#include "problem/spec.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <regex>
#include <string_view>

namespace sigjit {

namespace {
const char* dtype_tag(DType t) { return t == DType::bf16 ? "bf16" : "fp16"; }
// "causaltl" only for the top-left diagonal, so that bottom-right names and keys stay as they were.
const char* causal_tag(const KernelSpec& s) { return !s.causal ? "full" : s.top_left() ? "causaltl" : "causal"; }
const char* layout_tag(Layout l) {
  switch (l) {
    case Layout::dense: return "dense";
    case Layout::padded: return "padded";
    case Layout::varlen: return "varlen";
  }
  return "?";
}
}  // namespace

const char* direction_tag(Direction d) {
  switch (d) {
    case Direction::forward: return "fwd";
    case Direction::backward_dkdv: return "bwd_dkdv";
    case Direction::backward_dq: return "bwd_dq";
    case Direction::backward_fused: return "bwd_fused";
    case Direction::backward_dq_convert: return "bwd_dq_convert";
  }
  return "?";
}

bool is_backward(Direction d) { return d != Direction::forward; }

std::string Arch::name() const { return fmt::format("sm_{}{}{}", major, minor, arch_specific ? "a" : ""); }

Arch Arch::parse(const std::string& text) {
  // One or two digits of major version: sm_80, sm_90a, but also Blackwell's sm_100 and sm_120.
  static const std::regex form(R"(sm_([1-9][0-9]?)([0-9])(a?))");
  std::smatch m;
  if (!std::regex_match(text, m, form)) {
    throw Error(fmt::format("arch: '{}' is not a target; use sm_XY or sm_XYa, e.g. sm_80, sm_90, sm_90a", text));
  }
  Arch a{std::stoi(m[1]), std::stoi(m[2]), m[3].length() > 0};
  if (a.major < 8) throw Error(fmt::format("arch: {} is not supported; sigjit needs sm_80 or newer (mma.sync bf16, cp.async)", text));
  return a;
}

SeqBucket seq_bucket_for(int max_seqlen) {
  if (max_seqlen <= 512) return SeqBucket::up_to_512;
  if (max_seqlen <= 2048) return SeqBucket::up_to_2k;
  if (max_seqlen <= 8192) return SeqBucket::up_to_8k;
  return SeqBucket::over_8k;
}

const char* to_string(SeqBucket bucket) {
  switch (bucket) {
    case SeqBucket::up_to_512: return "le512";
    case SeqBucket::up_to_2k: return "le2k";
    case SeqBucket::up_to_8k: return "le8k";
    case SeqBucket::over_8k: return "gt8k";
  }
  return "?";
}

std::string KernelSpec::describe() const {
  const char* mask = !causal ? "" : top_left() ? " causal(top-left)" : " causal";
  return fmt::format("{} {} hd{} {}{} bias={} {}sigmoid={} gqa={} bucket={} arch={}", direction_tag(direction), dtype_tag(dtype), head_dim,
                     layout_tag(layout), mask, bias_mode == BiasMode::log_n ? "-log(n)" : "scalar", score_bias ? "score_bias " : "",
                     sigmoid == SigmoidMode::fast ? "fast" : "exact", gqa_ratio, to_string(bucket), arch.name());
}

const std::vector<int>& supported_head_dims() {
  static const std::vector<int> dims{32, 64, 96, 128, 256};
  return dims;
}

nlohmann::json spec_to_json(const KernelSpec& s) {
  nlohmann::json j = {{"direction", direction_tag(s.direction)},
                      {"dtype", dtype_tag(s.dtype)},
                      {"head_dim", s.head_dim},
                      {"layout", layout_tag(s.layout)},
                      {"causal", s.causal},
                      {"bias", s.bias_mode == BiasMode::log_n ? "log_n" : "scalar"},
                      {"score_bias", s.score_bias},
                      {"sigmoid", s.sigmoid == SigmoidMode::fast ? "fast" : "exact"},
                      {"gqa_ratio", s.gqa_ratio},
                      {"bucket", to_string(s.bucket)},
                      {"arch", s.arch.name()}};
  // Only when it changes the code, so that the JSON of every other spec is what it was.
  if (s.top_left()) j["causal_align"] = "top_left";
  return j;
}

KernelSpec spec_from_json(const nlohmann::json& j) {
  auto field = [&](const char* name) -> const nlohmann::json& {
    if (!j.contains(name)) throw Error(fmt::format("spec JSON: missing field '{}'", name));
    return j.at(name);
  };
  auto one_of = [&](const char* name, std::initializer_list<const char*> allowed) {
    const std::string v = field(name).get<std::string>();
    for (const char* a : allowed)
      if (v == a) return v;
    throw Error(fmt::format("spec JSON: {}='{}' is not one of {}", name, v, fmt::join(allowed, ", ")));
  };
  KernelSpec s;
  const std::string direction = one_of("direction", {"fwd", "bwd_dkdv", "bwd_dq", "bwd_fused", "bwd_dq_convert"});
  for (Direction d : {Direction::forward, Direction::backward_dkdv, Direction::backward_dq, Direction::backward_fused, Direction::backward_dq_convert}) {
    if (direction == direction_tag(d)) s.direction = d;
  }
  s.dtype = one_of("dtype", {"bf16", "fp16"}) == "bf16" ? DType::bf16 : DType::fp16;
  s.head_dim = field("head_dim").get<int>();
  const std::string layout = one_of("layout", {"dense", "padded", "varlen"});
  s.layout = layout == "dense" ? Layout::dense : layout == "padded" ? Layout::padded : Layout::varlen;
  s.causal = field("causal").get<bool>();
  if (j.contains("causal_align")) {  // absent: bottom-right (entries written before the field existed)
    s.causal_align = one_of("causal_align", {"bottom_right", "top_left"}) == "top_left" ? CausalAlign::top_left : CausalAlign::bottom_right;
    if (!s.causal) s.causal_align = CausalAlign::bottom_right;
  }
  s.bias_mode = one_of("bias", {"log_n", "scalar"}) == "log_n" ? BiasMode::log_n : BiasMode::scalar;
  s.score_bias = field("score_bias").get<bool>();
  s.sigmoid = one_of("sigmoid", {"fast", "exact"}) == "fast" ? SigmoidMode::fast : SigmoidMode::exact;
  s.gqa_ratio = field("gqa_ratio").get<int>();
  const std::string bucket = one_of("bucket", {"le512", "le2k", "le8k", "gt8k"});
  s.bucket = bucket == "le512" ? SeqBucket::up_to_512 : bucket == "le2k" ? SeqBucket::up_to_2k : bucket == "le8k" ? SeqBucket::up_to_8k : SeqBucket::over_8k;
  s.arch = Arch::parse(field("arch").get<std::string>());
  return s;
}

std::string kernel_stem(const KernelSpec& s) {
  return fmt::format("{}_{}_d{}_{}_{}_{}_{}_{}", direction_tag(s.direction), dtype_tag(s.dtype), s.head_dim, layout_tag(s.layout), causal_tag(s),
                     s.bias_mode == BiasMode::log_n ? "logn" : "scalar", s.score_bias ? "sb" : "nosb", s.sigmoid == SigmoidMode::fast ? "fast" : "exact");
}

std::string problem_key(const KernelSpec& s) { return fmt::format("{}_{}_{}", kernel_stem(s), to_string(s.bucket), s.arch.name()); }

}  // namespace sigjit
