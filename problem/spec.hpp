// What a kernel is specialised on (KernelSpec); how it is tiled is its family's business
// (kernels/tile_config.hpp).
//
// The codegen turns (spec, config) into a translation unit; two pairs that produce the same
// binary must have the same kernel name, and anything that changes the binary must change the
// name (the in-process cache and the on-disk store are keyed by it). Sequence-length bucket and
// GQA ratio do not change the code: they select which tuned config to use.
#pragma once

#include <sigjit/sigjit.hpp>

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace sigjit {

// Each kernel of the backward (templates/sigjit/sm80/bwd.cuh) is its own spec: the default
// path is backward_fused (dK, dV and dQ atomics into an fp32 workspace) then
// backward_dq_convert (workspace -> dQ); the deterministic path is backward_dkdv then
// backward_dq. fp8_quantize: the FP8 forward's on-the-fly quantization of bf16 inputs
// (ForwardOptions::fp8; spec.dtype is the inputs' dtype).
enum class Direction { forward, backward_dkdv, backward_dq, backward_fused, backward_dq_convert, fp8_quantize };
// "fwd", "bwd_dkdv", "bwd_dq", "bwd_fused", "bwd_dq_convert", "fp8_quantize"
const char* direction_tag(Direction d);
bool is_backward(Direction d);
// Kernels with one config, never tuned nor forced: the dQ convert and the FP8 quantization.
bool has_fixed_config(Direction d);

// Target architecture as NVRTC names it, e.g. "sm_80", "sm_90", "sm_90a".
struct Arch {
  int major = 8;
  int minor = 0;
  bool arch_specific = false;  // the "a" suffix: sm_90a unlocks wgmma/setmaxnreg
  std::string name() const;
  static Arch parse(const std::string& text);  // throws Error naming the allowed forms
};

// Buckets follow TritonSigmoid's autotune key boundaries (512/2048/8192/16384) so that tuned
// results are comparable point for point.
enum class SeqBucket { up_to_512, up_to_2k, up_to_8k, over_8k };
SeqBucket seq_bucket_for(int max_seqlen);
const char* to_string(SeqBucket bucket);

struct KernelSpec {
  Direction direction = Direction::forward;
  DType dtype = DType::bf16;
  int head_dim = 128;
  Layout layout = Layout::dense;
  bool causal = false;
  // The causal diagonal (AttentionArgs::causal_align): part of the code, so part of the kernel
  // name and problem key, but only when causal and top-left (top_left() below); every name and
  // key of a bottom-right or non-causal spec is what it was before the field existed.
  CausalAlign causal_align = CausalAlign::bottom_right;
  BiasMode bias_mode = BiasMode::log_n;
  bool score_bias = false;
  SigmoidMode sigmoid = SigmoidMode::fast;
  int gqa_ratio = 1;  // tuning hint only
  SeqBucket bucket = SeqBucket::over_8k;
  Arch arch;

  std::string describe() const;  // human readable, one line
  // Causal with the top-left diagonal; a non-causal spec's causal_align means nothing.
  bool top_left() const { return causal && causal_align == CausalAlign::top_left; }
};

const std::vector<int>& supported_head_dims();

// Lossless JSON form of a spec (stored in cache entries, read back by `sigjit verify --gpu`).
nlohmann::json spec_to_json(const KernelSpec& spec);
KernelSpec spec_from_json(const nlohmann::json& j);  // throws Error naming the bad field

// Identifies a tuning problem: everything of the spec that selects code or a tuned config
// (the bucket included), nothing of the tile config. One cache entry per problem key.
std::string problem_key(const KernelSpec& spec);

// The spec's part of every kernel name (kernels/registry.hpp: kernel_name adds the tile config
// and the arch): direction, dtype, head dim, layout, mask, bias, score bias, sigmoid.
std::string kernel_stem(const KernelSpec& spec);

}  // namespace sigjit
