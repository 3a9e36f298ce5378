#include "problem/spec.hpp"

#include "problem/names.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <regex>
#include <string_view>

namespace sigjit {

namespace {
// "causaltl" only for the top-left diagonal, so that bottom-right names and keys stay as they were.
const char* causal_tag(const KernelSpec& s) { return !s.causal ? "full" : s.top_left() ? "causaltl" : "causal"; }
const char* dtype_tag(DType t) { return name_of(t); }
const char* layout_tag(Layout l) { return name_of(l); }
}  // namespace

const char* direction_tag(Direction d) { return name_of(d); }

bool is_backward(Direction d) { return d != Direction::forward && d != Direction::fp8_quantize; }

bool has_fixed_config(Direction d) { return d == Direction::backward_dq_convert || d == Direction::fp8_quantize; }

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

const char* to_string(SeqBucket bucket) { return name_of(bucket); }

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
                      {"bias", name_of(s.bias_mode)},
                      {"score_bias", s.score_bias},
                      {"sigmoid", name_of(s.sigmoid)},
                      {"gqa_ratio", s.gqa_ratio},
                      {"bucket", to_string(s.bucket)},
                      {"arch", s.arch.name()}};
  // Only when it changes the code, so that the JSON of every other spec is what it was.
  if (s.top_left()) j["causal_align"] = name_of(s.causal_align);
  return j;
}

KernelSpec spec_from_json(const nlohmann::json& j) {
  auto field = [&](const char* name) -> const nlohmann::json& {
    if (!j.contains(name)) throw Error(fmt::format("spec JSON: missing field '{}'", name));
    return j.at(name);
  };
  // Spec JSON spells every enum exactly as the names table does (no hyphens).
  auto named = [&]<class E>(const char* name, E) {
    const std::string v = field(name).get<std::string>();
    const E e = parse_name<E>(fmt::format("spec JSON: {}", name), v);
    if (v != name_of(e)) throw_not_one_of(fmt::format("spec JSON: {}", name), v, names_of<E>());
    return e;
  };
  KernelSpec s;
  s.direction = named("direction", Direction{});
  s.dtype = named("dtype", DType{});
  s.head_dim = field("head_dim").get<int>();
  s.layout = named("layout", Layout{});
  s.causal = field("causal").get<bool>();
  if (j.contains("causal_align")) {  // absent: bottom-right (entries written before the field existed)
    s.causal_align = named("causal_align", CausalAlign{});
    if (!s.causal) s.causal_align = CausalAlign::bottom_right;
  }
  s.bias_mode = named("bias", BiasMode{});
  s.score_bias = field("score_bias").get<bool>();
  s.sigmoid = named("sigmoid", SigmoidMode{});
  s.gqa_ratio = field("gqa_ratio").get<int>();
  s.bucket = named("bucket", SeqBucket{});
  s.arch = Arch::parse(field("arch").get<std::string>());
  return s;
}

std::string kernel_stem(const KernelSpec& s) {
  return fmt::format("{}_{}_d{}_{}_{}_{}_{}_{}", direction_tag(s.direction), dtype_tag(s.dtype), s.head_dim, layout_tag(s.layout), causal_tag(s),
                     s.bias_mode == BiasMode::log_n ? "logn" : "scalar", s.score_bias ? "sb" : "nosb", s.sigmoid == SigmoidMode::fast ? "fast" : "exact");
}

std::string problem_key(const KernelSpec& s) { return fmt::format("{}_{}_{}", kernel_stem(s), to_string(s.bucket), s.arch.name()); }

}  // namespace sigjit
