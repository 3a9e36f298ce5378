// What to tune: workload_from_flags, workload_from_json, presets.
//
// Flags: the cartesian product head_dims x dtypes x layouts x causal x causal_align x sigmoid x
// directions x seq_lens (in that nesting order, head_dims outermost; causal_align only for the
// causal specs: a non-causal spec is listed once whatever it holds), bias log_n and no score bias (the
// KernelSpec defaults). Each sequence length maps to its bucket (seq_bucket_for); specs that
// end up with the same problem_key are listed once, at their first occurrence.
//
// JSON, either form (unknown keys are errors that name them):
//   {"specs": [{"head_dim": 128, "dtype": "bf16", "layout": "padded", "causal": false, "bias": "log_n",
//               "score_bias": false, "sigmoid": "fast", "direction": "fwd", "seq": 16384}, ...],
//    ("causal_align": "bottom_right" | "top_left" too, for a causal spec)
//    "lengths": [300, 1200, ...]}
//     head_dim and one of seq (a length, mapped to its bucket) or bucket ("le512", "le2k",
//     "le8k", "gt8k") are required; the others default as in KernelSpec (bf16, dense,
//     non-causal, log_n, no score bias, fast, fwd); "gqa_ratio" (a tuning hint) is accepted.
//   {"head_dims": [64, 128], "dtypes": ["bf16"], "layouts": [...], "seq_lens": [...], "causal": [false],
//    "causal_align": ["bottom_right"], "sigmoid": ["fast"], "directions": ["fwd"],
//    "lengths_file": "lens.txt" | "lengths": [...]}
//     the flags, by their WorkloadFlags names; a missing key keeps the flag's default; a single
//     value may stand for a one-element list.
// Lengths files: a JSON array of integers, or one integer per line (blank lines and lines
// starting with '#' skipped).
// Directions: "fwd"; "bwd", the default backward (its fused dK/dV/dQ-atomics kernel, timed
// with its workspace zeroing and dQ convert); "bwd_det", the deterministic backward's two
// kernels (each tuned on its own); or one kernel by its tag: "bwd_fused", "bwd_dkdv",
// "bwd_dq". The dQ convert kernel has one config and is never tuned.
#include "tune/tuner.hpp"

#include "kernels/registry.hpp"

#include "problem/names.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <limits>
#include <set>
#include <sstream>

namespace sigjit::tuner {

namespace {

using nlohmann::json;

constexpr const char* kDirections = "fwd, bwd, bwd_det, bwd_fused, bwd_dkdv, bwd_dq";

// Names a field in error messages: "--head-dim" for the CLI, "workload JSON: head_dims" for JSON.
using Namer = std::function<std::string(const std::string& field)>;

// The `sigjit tune` flag that fills each WorkloadFlags field.
std::string cli_name(const std::string& field) {
  static const std::map<std::string, std::string> flags{{"head_dims", "--head-dim"},
                                                        {"dtypes", "--dtype"},
                                                        {"layouts", "--layout"},
                                                        {"seq_lens", "--seq"},
                                                        {"causal", "--causal"},
                                                        {"sigmoid", "--sigmoid"},
                                                        {"causal_align", "--causal-align"},
                                                        {"directions", "--direction"},
                                                        {"lengths_file", "--lengths-file"}};
  const auto it = flags.find(field);
  return it != flags.end() ? it->second : "--" + field;
}

std::string json_name(const std::string& field) { return "workload JSON: " + field; }

std::string join_ints(const std::vector<int>& v) { return fmt::format("{}", fmt::join(v, ", ")); }

// Returns the index of `value` in `allowed`, or throws naming `what`.
std::size_t one_of(const std::string& what, const std::string& value, const std::vector<std::string>& allowed) {
  for (std::size_t i = 0; i < allowed.size(); ++i)
    if (value == allowed[i]) return i;
  throw_not_one_of(what, value, allowed);
}

DType parse_dtype(const std::string& what, const std::string& v) { return parse_name<DType>(what, v); }
Layout parse_layout(const std::string& what, const std::string& v) { return parse_name<Layout>(what, v); }
SigmoidMode parse_sigmoid(const std::string& what, const std::string& v) { return parse_name<SigmoidMode>(what, v); }
// "bottom_right" or "top_left"; the CLI's hyphenated spellings too.
CausalAlign parse_causal_align(const std::string& what, const std::string& v) { return parse_name<CausalAlign>(what, v); }
BiasMode parse_bias(const std::string& what, const std::string& v) { return parse_name<BiasMode>(what, v); }

// The kernels a direction name stands for (see the top of this file).
std::vector<Direction> parse_direction(const std::string& what, const std::string& v) {
  if (v == "bwd_dq_convert") throw Error(fmt::format("{}: 'bwd_dq_convert' has one config, nothing to tune; allowed: {}", what, kDirections));
  switch (one_of(what, v, {"fwd", "bwd", "bwd_det", "bwd_fused", "bwd_dkdv", "bwd_dq"})) {
    case 0: return {Direction::forward};
    case 1:
    case 3: return {Direction::backward_fused};
    case 2: return {Direction::backward_dkdv, Direction::backward_dq};
    case 4: return {Direction::backward_dkdv};
    default: return {Direction::backward_dq};
  }
}

SeqBucket parse_bucket(const std::string& what, const std::string& v) {
  switch (one_of(what, v, {"le512", "le2k", "le8k", "gt8k"})) {
    case 0: return SeqBucket::up_to_512;
    case 1: return SeqBucket::up_to_2k;
    case 2: return SeqBucket::up_to_8k;
    default: return SeqBucket::over_8k;
  }
}

int check_head_dim(const std::string& what, int d) {
  const auto& dims = supported_head_dims();
  if (std::find(dims.begin(), dims.end(), d) == dims.end())
    throw Error(fmt::format("{}: {} is not supported; allowed: {}", what, d, join_ints(dims)));
  return d;
}

int check_seq(const std::string& what, int l) {
  if (l <= 0) throw Error(fmt::format("{}: {} is not a sequence length; lengths must be positive", what, l));
  return l;
}

template <class T>
void require_nonempty(const std::string& what, const std::vector<T>& v, const std::string& allowed) {
  if (v.empty()) throw Error(fmt::format("{}: empty list; give at least one of {}", what, allowed));
}

// `what` names where the spec came from: a spec no kernel serves (FP8 off the Hopper forward) is
// refused here, so the tuner never compiles a fallback config that cannot build.
void add_unique(Workload& w, std::set<std::string>& keys, const KernelSpec& s, const std::string& what) {
  if (const std::string why = unserved_reason(s); !why.empty()) throw Error(fmt::format("{}: {}", what, why));
  if (keys.insert(problem_key(s)).second) w.specs.push_back(s);
}

std::vector<int> lengths_from_json(const std::string& what, const json& j) {
  if (!j.is_array()) throw Error(fmt::format("{}: expected a JSON array of positive integers", what));
  if (j.empty()) throw Error(fmt::format("{}: empty; give at least one length", what));
  std::vector<int> out;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const json& v = j[i];
    if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > std::numeric_limits<int>::max()) {
      throw Error(fmt::format("{}: entry {} is {}; lengths must be positive integers", what, i, v.dump()));
    }
    out.push_back(v.get<int>());
  }
  return out;
}

std::vector<int> read_lengths_file(const std::string& what, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("{}: cannot open '{}': {}", what, path, std::strerror(errno)));
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) throw Error(fmt::format("{}: '{}' is empty; expected one integer per line or a JSON array", what, path));
  if (text[first] == '[') {
    json j;
    try {
      j = json::parse(text);
    } catch (const json::parse_error& e) {
      throw Error(fmt::format("{}: '{}' is not valid JSON: {}", what, path, e.what()));
    }
    return lengths_from_json(fmt::format("{} '{}'", what, path), j);
  }
  std::vector<int> out;
  std::istringstream lines(text);
  std::string line;
  for (int no = 1; std::getline(lines, line); ++no) {
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const auto e = line.find_last_not_of(" \t\r");
    const std::string word = line.substr(b, e - b + 1);
    long long v = 0;
    std::size_t used = 0;
    bool ok =
        std::all_of(word.begin(), word.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+'; });
    if (ok) {
      try {
        v = std::stoll(word, &used);
      } catch (const std::exception&) {
        ok = false;
      }
    }
    if (!ok || used != word.size() || v <= 0 || v > std::numeric_limits<int>::max()) {
      throw Error(fmt::format("{}: '{}' line {}: '{}' is not a positive integer; expected one length per line or a JSON array", what, path,
                              no, word));
    }
    out.push_back(static_cast<int>(v));
  }
  if (out.empty()) throw Error(fmt::format("{}: '{}' holds no lengths", what, path));
  return out;
}

Workload build_from_flags(const WorkloadFlags& f, const Arch& arch, const Namer& name) {
  require_nonempty(name("head_dims"), f.head_dims, join_ints(supported_head_dims()));
  require_nonempty(name("dtypes"), f.dtypes, "bf16, fp16");
  require_nonempty(name("layouts"), f.layouts, "dense, padded, varlen");
  require_nonempty(name("seq_lens"), f.seq_lens, "a positive sequence length");
  require_nonempty(name("causal"), f.causal, "true, false");
  require_nonempty(name("sigmoid"), f.sigmoid, "fast, exact");
  require_nonempty(name("causal_align"), f.causal_align, "bottom_right, top_left");
  require_nonempty(name("directions"), f.directions, kDirections);

  // Validate every value before building the product, so the first bad value is reported
  // whatever the other lists hold.
  std::vector<DType> dtypes;
  std::vector<Layout> layouts;
  std::vector<SigmoidMode> sigmoids;
  std::vector<CausalAlign> aligns;
  std::vector<Direction> directions;
  for (int d : f.head_dims) check_head_dim(name("head_dims"), d);
  for (const auto& v : f.dtypes) dtypes.push_back(parse_dtype(name("dtypes"), v));
  for (const auto& v : f.layouts) layouts.push_back(parse_layout(name("layouts"), v));
  for (int l : f.seq_lens) check_seq(name("seq_lens"), l);
  for (const auto& v : f.sigmoid) sigmoids.push_back(parse_sigmoid(name("sigmoid"), v));
  for (const auto& v : f.causal_align) {
    const CausalAlign a = parse_causal_align(name("causal_align"), v);
    if (std::find(aligns.begin(), aligns.end(), a) == aligns.end()) aligns.push_back(a);
  }
  const bool any_causal = std::find(f.causal.begin(), f.causal.end(), true) != f.causal.end();
  if (!any_causal && std::find(aligns.begin(), aligns.end(), CausalAlign::top_left) != aligns.end()) {
    throw Error(fmt::format("{}: top_left applies to causal specs only; add {}", name("causal_align"), name("causal")));
  }
  for (const auto& v : f.directions) {
    for (Direction d : parse_direction(name("directions"), v)) directions.push_back(d);
  }

  Workload w;
  std::set<std::string> keys;
  for (int d : f.head_dims)
    for (DType t : dtypes)
      for (Layout l : layouts)
        for (bool c : f.causal)
          for (CausalAlign ca : c ? aligns : std::vector<CausalAlign>{CausalAlign::bottom_right})
            for (SigmoidMode sg : sigmoids)
              for (Direction dir : directions)
                for (int len : f.seq_lens) {
                  KernelSpec s;
                  s.direction = dir;
                  s.dtype = t;
                  s.head_dim = d;
                  s.layout = l;
                  s.causal = c;
                  s.causal_align = ca;
                  s.sigmoid = sg;
                  s.bucket = seq_bucket_for(len);
                  s.arch = arch;
                  add_unique(w, keys, s, name("dtypes"));
                }
  if (!f.lengths_file.empty()) w.user_lengths = read_lengths_file(name("lengths_file"), f.lengths_file);
  return w;
}

void reject_unknown_keys(const std::string& where, const json& obj, const std::vector<std::string>& allowed) {
  std::vector<std::string> unknown;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) unknown.push_back("'" + it.key() + "'");
  }
  if (!unknown.empty()) {
    throw Error(fmt::format("{}: unknown key{} {} (allowed: {})", where, unknown.size() > 1 ? "s" : "", fmt::join(unknown, ", "),
                            fmt::join(allowed, ", ")));
  }
}

int json_int(const std::string& what, const json& v) {
  if (!v.is_number_integer() || v.get<long long>() < std::numeric_limits<int>::min() ||
      v.get<long long>() > std::numeric_limits<int>::max()) {
    throw Error(fmt::format("{}: expected an integer, got {}", what, v.dump()));
  }
  return v.get<int>();
}

bool json_bool(const std::string& what, const json& v) {
  if (!v.is_boolean()) throw Error(fmt::format("{}: expected true or false, got {}", what, v.dump()));
  return v.get<bool>();
}

std::string json_string(const std::string& what, const json& v) {
  if (!v.is_string()) throw Error(fmt::format("{}: expected a string, got {}", what, v.dump()));
  return v.get<std::string>();
}

// A list of values, or one value standing for a one-element list.
template <class T, class Get>
std::vector<T> json_list(const std::string& what, const json& v, Get get) {
  std::vector<T> out;
  if (v.is_array()) {
    for (std::size_t i = 0; i < v.size(); ++i) out.push_back(get(fmt::format("{}[{}]", what, i), v[i]));
  } else {
    out.push_back(get(what, v));
  }
  return out;
}

// One spec, or two for "direction": "bwd_det" (the deterministic backward's two kernels).
std::vector<KernelSpec> specs_from_workload_json(const std::string& where, const json& j, const Arch& arch) {
  if (!j.is_object()) throw Error(fmt::format("{}: expected an object, got {}", where, j.dump()));
  reject_unknown_keys(where, j,
                      {"head_dim", "dtype", "layout", "causal", "causal_align", "bias", "score_bias", "sigmoid", "direction", "seq",
                       "bucket", "gqa_ratio"});
  auto at = [&](const char* key) { return fmt::format("{}.{}", where, key); };
  KernelSpec s;
  s.arch = arch;
  if (!j.contains("head_dim")) throw Error(fmt::format("{}: missing 'head_dim' (allowed: {})", where, join_ints(supported_head_dims())));
  s.head_dim = check_head_dim(at("head_dim"), json_int(at("head_dim"), j["head_dim"]));
  if (j.contains("seq") == j.contains("bucket")) {
    throw Error(fmt::format("{}: give exactly one of 'seq' (a sequence length) or 'bucket' (le512, le2k, le8k, gt8k)", where));
  }
  if (j.contains("seq")) s.bucket = seq_bucket_for(check_seq(at("seq"), json_int(at("seq"), j["seq"])));
  if (j.contains("bucket")) s.bucket = parse_bucket(at("bucket"), json_string(at("bucket"), j["bucket"]));
  if (j.contains("dtype")) s.dtype = parse_dtype(at("dtype"), json_string(at("dtype"), j["dtype"]));
  if (j.contains("layout")) s.layout = parse_layout(at("layout"), json_string(at("layout"), j["layout"]));
  if (j.contains("causal")) s.causal = json_bool(at("causal"), j["causal"]);
  if (j.contains("causal_align")) {
    s.causal_align = parse_causal_align(at("causal_align"), json_string(at("causal_align"), j["causal_align"]));
    if (s.causal_align == CausalAlign::top_left && !s.causal) {
      throw Error(fmt::format("{}: top_left applies to a causal spec only; add \"causal\": true", at("causal_align")));
    }
  }
  if (j.contains("bias")) s.bias_mode = parse_bias(at("bias"), json_string(at("bias"), j["bias"]));
  if (j.contains("score_bias")) s.score_bias = json_bool(at("score_bias"), j["score_bias"]);
  if (j.contains("sigmoid")) s.sigmoid = parse_sigmoid(at("sigmoid"), json_string(at("sigmoid"), j["sigmoid"]));
  std::vector<Direction> directions{Direction::forward};
  if (j.contains("direction")) directions = parse_direction(at("direction"), json_string(at("direction"), j["direction"]));
  if (j.contains("gqa_ratio")) {
    s.gqa_ratio = json_int(at("gqa_ratio"), j["gqa_ratio"]);
    if (s.gqa_ratio < 1) throw Error(fmt::format("{}: {} must be at least 1", at("gqa_ratio"), s.gqa_ratio));
  }
  std::vector<KernelSpec> out;
  for (Direction d : directions) {
    s.direction = d;
    out.push_back(s);
  }
  return out;
}

}  // namespace

Workload workload_from_flags(const WorkloadFlags& flags, const Arch& arch) { return build_from_flags(flags, arch, cli_name); }

Workload workload_from_json(const nlohmann::json& j, const Arch& arch) {
  if (!j.is_object()) throw Error(fmt::format("workload JSON: expected an object with \"specs\" or flag lists, got {}", j.dump()));
  if (j.contains("specs")) {
    reject_unknown_keys("workload JSON (with \"specs\")", j, {"specs", "lengths"});
    const json& specs = j["specs"];
    if (!specs.is_array()) throw Error(fmt::format("workload JSON: specs: expected an array of spec objects, got {}", specs.dump()));
    if (specs.empty()) throw Error("workload JSON: specs: empty; give at least one spec");
    Workload w;
    std::set<std::string> keys;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const std::string where = fmt::format("workload JSON: specs[{}]", i);
      for (const KernelSpec& s : specs_from_workload_json(where, specs[i], arch)) add_unique(w, keys, s, where);
    }
    if (j.contains("lengths")) w.user_lengths = lengths_from_json("workload JSON: lengths", j["lengths"]);
    return w;
  }
  reject_unknown_keys("workload JSON", j,
                      {"specs", "head_dims", "dtypes", "layouts", "seq_lens", "causal", "causal_align", "sigmoid", "directions",
                       "lengths_file", "lengths"});
  if (j.contains("lengths") && j.contains("lengths_file")) throw Error("workload JSON: give 'lengths' or 'lengths_file', not both");
  WorkloadFlags f;
  auto ints = [&](const char* key, std::vector<int>& out) {
    if (j.contains(key)) out = json_list<int>(json_name(key), j[key], json_int);
  };
  auto strings = [&](const char* key, std::vector<std::string>& out) {
    if (j.contains(key)) out = json_list<std::string>(json_name(key), j[key], json_string);
  };
  ints("head_dims", f.head_dims);
  strings("dtypes", f.dtypes);
  strings("layouts", f.layouts);
  ints("seq_lens", f.seq_lens);
  if (j.contains("causal")) f.causal = json_list<bool>(json_name("causal"), j["causal"], json_bool);
  strings("causal_align", f.causal_align);
  strings("sigmoid", f.sigmoid);
  strings("directions", f.directions);
  if (j.contains("lengths_file")) f.lengths_file = json_string(json_name("lengths_file"), j["lengths_file"]);
  Workload w = build_from_flags(f, arch, json_name);
  if (j.contains("lengths")) w.user_lengths = lengths_from_json(json_name("lengths"), j["lengths"]);
  return w;
}

Workload preset(const std::string& name, const Arch& arch, const std::vector<std::string>& directions) {
  if (name == "single-cell") {
    // Single-cell transcriptomics models: hd 64 and 128 in bf16, cells of every length up to
    // 16K genes, dense or ragged batches, bidirectional (non-causal), the fast sigmoid; trained,
    // so the backward too: the path the library runs by default (the fused one).
    WorkloadFlags f;
    f.head_dims = {64, 128};
    f.dtypes = {"bf16"};
    f.layouts = {"dense", "padded", "varlen"};
    f.seq_lens = {512, 2048, 8192, 16384};
    f.causal = {false};
    f.sigmoid = {"fast"};
    f.directions = {"fwd", "bwd"};
    if (!directions.empty()) f.directions = directions;
    return build_from_flags(f, arch, [&](const std::string& field) { return fmt::format("preset '{}': {}", name, field); });
  }
  throw Error(fmt::format("preset: '{}' is unknown; available: {}", name, fmt::join(preset_names(), ", ")));
}

std::vector<std::string> preset_names() { return {"single-cell"}; }

}  // namespace sigjit::tuner
