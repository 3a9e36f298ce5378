// Every forward spec the code generator distinguishes (dtype x layout x causal x bias mode x score
// bias x sigmoid mode) at the given head dims for one arch: the compile-everything tests of both
// kernel families enumerate the same feature space.
#pragma once

#include "problem/spec.hpp"
#include "kernels/registry.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace sigjit::testing {

// TileConfig::parse's error for `text` (as SIGJIT_FORCE_TILE), or "(no error)".
inline std::string tile_parse_error(const char* text) {
  try {
    TileConfig::parse(text, "SIGJIT_FORCE_TILE");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

inline std::vector<KernelSpec> all_forward_specs(const Arch& target, const std::vector<int>& head_dims) {
  std::vector<KernelSpec> out;
  for (int d : head_dims)
    for (auto dtype : {DType::bf16, DType::fp16})
      for (auto layout : {Layout::dense, Layout::padded, Layout::varlen})
        for (bool causal : {false, true})
          for (auto bias : {BiasMode::log_n, BiasMode::scalar})
            for (bool score_bias : {false, true})
              for (auto sig : {SigmoidMode::fast, SigmoidMode::exact}) {
                KernelSpec s;
                s.direction = Direction::forward;
                s.dtype = dtype;
                s.head_dim = d;
                s.layout = layout;
                s.causal = causal;
                s.bias_mode = bias;
                s.score_bias = score_bias;
                s.sigmoid = sig;
                s.arch = target;
                out.push_back(s);
              }
  return out;
}

// The compile sweeps' covering subset: dtype and bias mode paired so that each value of both meets
// every value of every other feature (bf16 + log_n when causal + score_bias + exact is even, fp16 +
// scalar when odd), a quarter of the specs. Every combination of the other features (head dim,
// layout, causal, score bias, sigmoid) is still compiled, the heaviest included; only bf16 with
// scalar and fp16 with log_n never meet, and those two touch disjoint code (the loads' and stores'
// element type; one scalar of the score).
// The sweeps over every feature run on this subset in CI (2 cores, 90 minutes), except the Hopper
// families' defaults (what Hopper users run), which compile for every spec;
// SIGJIT_TEST_EXHAUSTIVE=1 (`./setup.sh --test --exhaustive`) runs the whole product.
inline bool dtype_and_bias_paired(const KernelSpec& s) {
  const bool odd = (s.causal + s.score_bias + (s.sigmoid == SigmoidMode::exact)) % 2 == 1;
  return odd ? (s.dtype == DType::fp16 && s.bias_mode == BiasMode::scalar) : (s.dtype == DType::bf16 && s.bias_mode == BiasMode::log_n);
}

inline bool exhaustive_sweeps() {
  const char* v = std::getenv("SIGJIT_TEST_EXHAUSTIVE");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

inline bool in_sweep(const KernelSpec& s) { return exhaustive_sweeps() || dtype_and_bias_paired(s); }

// `specs` narrowed to the sweep (in_sweep); says which on stdout, so a log shows what it covered.
inline std::vector<KernelSpec> sweep_specs(const std::vector<KernelSpec>& specs) {
  std::vector<KernelSpec> out;
  for (const KernelSpec& s : specs)
    if (in_sweep(s)) out.push_back(s);
  std::printf("sweep: %zu of %zu specs (%s)\n", out.size(), specs.size(),
              exhaustive_sweeps() ? "SIGJIT_TEST_EXHAUSTIVE=1" : "dtype and bias mode paired; SIGJIT_TEST_EXHAUSTIVE=1: all");
  return out;
}

// Causal specs with the top-left diagonal (CausalAlign::top_left) for the compile tests of every
// kernel family: the diagonal is the only code it changes (one offset, shared by every mask and
// tile bound), so instead of the whole product each layout and head dim gets two feature sets
// that between them take every value once: {bf16, log_n, no score bias, fast} and {fp16, scalar,
// score bias, exact}. Forward specs; callers set the direction.
inline std::vector<KernelSpec> top_left_causal_specs(const Arch& target, const std::vector<int>& head_dims) {
  std::vector<KernelSpec> out;
  for (int d : head_dims)
    for (auto layout : {Layout::dense, Layout::padded, Layout::varlen})
      for (bool heavy : {false, true}) {
        KernelSpec s;
        s.direction = Direction::forward;
        s.dtype = heavy ? DType::fp16 : DType::bf16;
        s.head_dim = d;
        s.layout = layout;
        s.causal = true;
        s.causal_align = CausalAlign::top_left;
        s.bias_mode = heavy ? BiasMode::scalar : BiasMode::log_n;
        s.score_bias = heavy;
        s.sigmoid = heavy ? SigmoidMode::exact : SigmoidMode::fast;
        s.arch = target;
        out.push_back(s);
      }
  return out;
}

}  // namespace sigjit::testing
