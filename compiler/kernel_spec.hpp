// What a kernel is specialised on (KernelSpec) and how it is tiled (TileConfig).
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

// Each kernel of the backward (templates/sigjit/bwd_sm80.cuh) is its own spec: the default
// path is backward_fused (dK, dV and dQ atomics into an fp32 workspace) then
// backward_dq_convert (workspace -> dQ); the deterministic path is backward_dkdv then
// backward_dq.
enum class Direction { forward, backward_dkdv, backward_dq, backward_fused, backward_dq_convert };
// "fwd", "bwd_dkdv", "bwd_dq", "bwd_fused", "bwd_dq_convert"
const char* direction_tag(Direction d);
bool is_backward(Direction d);


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

// Kernel families, a tuning dimension: the portable mma.sync kernel (fwd_sm80.cuh, any sm_80+)
// and the Hopper kernel (fwd_sm90.cuh: TMA, wgmma, warp specialization; sm_90a only).
// sm90_bwd: the Hopper fused backward (bwd_sm90.cuh; Direction::backward_fused on sm_90a only).
enum class KernelFamily { sm80, sm90, sm90_bwd };

struct TileConfig {
  int block_m = 128;
  int block_n = 64;
  int warps = 8;
  int stages = 2;
  // Q fragments held in registers for the whole key loop (true), or re-read from shared memory
  // at every key tile (false: frees D/2 registers per m16 tile, so 32-row warps fit at hd 128).
  bool q_in_regs = true;
  KernelFamily family = KernelFamily::sm80;
  // sm90 family only: consumer warpgroups (block_m = 64 * consumers; warps counts the producer
  // warpgroup too) and intra-warpgroup overlap of the sigmoid with the next tile's GEMMs.
  int consumers = 0;
  bool overlap = false;
  // sm90 family only (both off by default; an sm80 config with either set is invalid):
  // pingpong: the two consumer warpgroups take turns issuing their GEMMs (named barriers), so
  //   one warpgroup's GEMMs run on the tensor cores while the other computes its sigmoid
  //   (FlashAttention-3's inter-warpgroup ping-pong); needs consumers == 2.
  // fma_quarters: quarters (0..4) of each thread's scores whose sigmoid is computed with the
  //   FMA-only polynomial of sigmoid_poly.h instead of MUFU ops (relieves the MUFU pipe).
  bool pingpong = false;
  int fma_quarters = 0;
  // sm90 family only (off by default; invalid on sm80 configs): persistent tile scheduling, a
  //   grid of min(work tiles, SMs x CTAs per SM) CTAs each looping over work tiles, so the
  //   per-CTA prologue is paid once per SM and wholly padded tiles cost no CTA (fwd_sm90.cuh).
  bool persistent = false;
  // sm90_bwd only: dQ staged in shared memory and added to the workspace by one bulk reduction
  // per query row (cp.reduce.async.bulk) instead of red.global.add.v2 from registers.
  bool bulk_dq = false;

  // A well-formed sm90 config (check_config still decides whether it fits a spec).
  static TileConfig sm90(int block_n, int consumers, int stages, bool overlap, bool pingpong = false, int fma_quarters = 0,
                         bool persistent = false);
  // A well-formed sm90_bwd config: like the sm80 backward, block_m is the key block of a CTA
  // (64 per consumer warpgroup) and block_n the query rows of one step.
  static TileConfig sm90_bwd(int block_q, int consumers, int stages, bool overlap, bool bulk_dq = false);

  // sm80: "m128n64w4s2", with a "qs" suffix when Q stays in shared memory.
  // sm90: "h128x128c2s2o_pp_f1_p": h<BLOCK_M>x<BLOCK_N>c<CONSUMERS>s<STAGES>, "o" when
  //   overlapped, "_pp" with ping-pong, "_f<Q>" with Q quarters of the sigmoids on the FMA pipes,
  //   "_p" when persistent (suffixes only when on, so the strings of configs without them are
  //   unchanged).
  // sm90_bwd: "hb128x64c2s2o_r": hb<KEY BLOCK>x<QUERY BLOCK>c<CONSUMERS>s<STAGES>, "o" when the
  //   sigmoid of S^T overlaps the dP^T GEMM, "_r" with bulk dQ reductions.
  std::string describe() const;
  // Inverse of describe() for both families; throws Error naming `what` (a flag or variable)
  // on bad text.
  static TileConfig parse(const std::string& text, const std::string& what);
  int threads() const { return warps * 32; }
};

const std::vector<int>& supported_head_dims();

// The dQ convert kernel depends only on dtype, head dim and layout, and has one config:
// callers resolve it under this normalised spec so that every backward spec shares one binary.
KernelSpec dq_convert_spec(const KernelSpec& backward_spec);
TileConfig dq_convert_config();

// Bytes of dynamic shared memory the forward template needs (mirrors FwdConfig::kSmemBytes).
int forward_smem_bytes(const KernelSpec& spec, const TileConfig& config);
// Dynamic shared memory of the spec's kernel, whatever its direction.
int smem_bytes(const KernelSpec& spec, const TileConfig& config);

// Empty when the config satisfies the template's static constraints and fits the arch;
// otherwise the reason. Lets the tuner drop a config before paying for a compile.
std::string check_config(const KernelSpec& spec, const TileConfig& config);

// The sm90 family is the default on sm_90a wherever it can serve the spec: its forward matrix
// (every layout, causal, bias mode, score bias, GQA; bf16 at hd 64/128) passed on an H100 on
// 2026-11-23 and the tuner preferred it there (459 vs 307 TFLOPS at hd 64, L 2048).
inline constexpr bool kSm90DefaultOnHopper = true;

// True when the sm90 family can serve the spec at all (forward, sm_90a, head dim 64/128/256).
bool sm90_family_supports(const KernelSpec& spec);

// The sm90 config used for a spec when the family is chosen without tuning (also what the GPU
// tests force). Only meaningful where sm90_family_supports(spec).
TileConfig default_sm90_config(const KernelSpec& spec);
// Whether the sm90 default for this spec (head dim, layout, causal, score bias, length bucket) is
// scheduled persistently: where short sequences make the per-CTA prologue a large share.
bool sm90_persistent_pays(const KernelSpec& spec);

// The config used when nothing better is known (no tuning result).
TileConfig default_config(const KernelSpec& spec);

// The sm80-family default, whatever kSm90DefaultOnHopper says (the fallback when a call's
// tensors cannot be described by TMA tensor maps).
TileConfig default_sm80_config(const KernelSpec& spec);

// The fused (dQ-atomics) backward serves non-deterministic calls: its GPU matrix (every layout,
// head dim, dtype and feature, lengths up to 16384) passed on an H100 (2026-11-23 and
// 2026-12-02, bench/results/). Set it false to send them back to the two-kernel path.
inline constexpr bool kFusedBackwardVerified = true;

// Whether the tuner tries the sm90 ping-pong (_pp), FMA-sigmoid (_f) and persistent (_p)
// variants. Their GPU matrix (Variants/ForwardSm90Tunables: 422 cases, every layout and
// feature, lengths up to 16384, ragged batches) passed on an H200 on 2026-12-03
// (bench/results/2026-12-03-h200-*). A barrier-order mistake in a variant would hang a tuning
// run rather than fail a candidate's check: set this false to take them out of tuning again.
inline constexpr bool kSm90TunablesVerified = true;

// Whether the tuner tries three consumer warpgroups (BLOCK_M 192, 160 registers per consumer
// thread: hd 64 at up to 128 keys, hd 128 at 64 keys). Their GPU matrix (Variants/
// ForwardSm90Tunables c3 and c3p, with w192: 133 cases, every layout and feature, lengths up to
// 16384, ragged batches) passed on an H200 on 2026-12-03.
inline constexpr bool kSm90ThreeConsumersVerified = true;

// The Hopper fused backward (bwd_sm90.cuh): its GPU matrix (tests/gpu: BackwardMatrixSm90 and
// BackwardMatrixSm90BulkDq) passed on an H100 (2026-12-02), so it is the default fused backward
// on sm_90a at head dims 64 and 128 and the tuner's candidates include it. While false, the
// default stays the sm80 path and SIGJIT_FORCE_TILE=hb... (with SIGJIT_BACKWARD_PATH=fused)
// reaches it for verification.
inline constexpr bool kSm90BackwardVerified = true;

// True when the sm90_bwd family can serve the spec (backward_fused, sm_90a, head dim 64/128).
bool sm90_backward_supports(const KernelSpec& spec);

// The sm90_bwd config used without tuning (also what the GPU tests force).
TileConfig default_sm90_backward_config(const KernelSpec& spec);

// Configs worth trying for a spec (all pass check_config).
std::vector<TileConfig> candidate_configs(const KernelSpec& spec);

// Lossless JSON form of a spec (stored in cache entries, read back by `sigjit verify --gpu`).
nlohmann::json spec_to_json(const KernelSpec& spec);
KernelSpec spec_from_json(const nlohmann::json& j);  // throws Error naming the bad field

// Identifies a tuning problem: everything of the spec that selects code or a tuned config
// (the bucket included), nothing of the tile config. One cache entry per problem key.
std::string problem_key(const KernelSpec& spec);

// Deterministic entry-point name; distinct for every distinct binary.
std::string kernel_name(const KernelSpec& spec, const TileConfig& config);

}  // namespace sigjit
