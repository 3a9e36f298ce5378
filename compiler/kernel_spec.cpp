#include "compiler/kernel_spec.hpp"

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

KernelSpec dq_convert_spec(const KernelSpec& s) {
  KernelSpec c;
  c.direction = Direction::backward_dq_convert;
  c.dtype = s.dtype;
  c.head_dim = s.head_dim;
  c.layout = s.layout;
  c.arch = s.arch;
  return c;
}

TileConfig dq_convert_config() { return TileConfig{64, 64, 4, 2, false}; }

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

TileConfig TileConfig::sm90(int block_n, int consumers, int stages, bool overlap, bool pingpong, int fma_quarters, bool persistent) {
  TileConfig c{64 * consumers, block_n, 4 * (consumers + 1), stages, false};
  c.family = KernelFamily::sm90;
  c.consumers = consumers;
  c.overlap = overlap;
  c.pingpong = pingpong;
  c.fma_quarters = fma_quarters;
  c.persistent = persistent;
  return c;
}

TileConfig TileConfig::sm90_bwd(int block_q, int consumers, int stages, bool overlap, bool bulk_dq) {
  TileConfig c{64 * consumers, block_q, 4 * (consumers + 1), stages, false};
  c.family = KernelFamily::sm90_bwd;
  c.consumers = consumers;
  c.overlap = overlap;
  c.bulk_dq = bulk_dq;
  return c;
}

std::string TileConfig::describe() const {
  if (family == KernelFamily::sm90_bwd) return fmt::format("hb{}x{}c{}s{}{}{}", block_m, block_n, consumers, stages, overlap ? "o" : "", bulk_dq ? "_r" : "");
  if (family == KernelFamily::sm90) {
    return fmt::format("h{}x{}c{}s{}{}{}{}{}", block_m, block_n, consumers, stages, overlap ? "o" : "", pingpong ? "_pp" : "",
                       fma_quarters != 0 ? fmt::format("_f{}", fma_quarters) : "", persistent ? "_p" : "");
  }
  // sm80 configs never carry the sm90 tunables (check_config rejects them), so the name needs no
  // suffix for them; show them anyway so that an invalid config never looks like a valid one.
  return fmt::format("m{}n{}w{}s{}{}{}{}{}", block_m, block_n, warps, stages, q_in_regs ? "" : "qs", pingpong ? "_pp" : "",
                     fma_quarters != 0 ? fmt::format("_f{}", fma_quarters) : "", persistent ? "_p" : "");
}

namespace {

// A strict reader of the tile config grammar (no std::regex: its recursive executor overflows
// the stack on long digit runs, and config strings come from cache files and bundles).
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

constexpr std::size_t kMaxConfigText = 64;  // the longest valid config is about 25 characters

}  // namespace

TileConfig TileConfig::parse(const std::string& text, const std::string& what) {
  const auto syntax_error = [&] {
    const std::string shown =
        text.size() <= kMaxConfigText ? text : text.substr(0, kMaxConfigText) + fmt::format("... ({} characters)", text.size());
    return Error(
        fmt::format("{} '{}': expected m<BLOCK_M>n<BLOCK_N>w<WARPS>s<STAGES>[qs] (sm80 family, e.g. m128n64w4s2 or m128n64w4s2qs) "
                    "or h<BLOCK_M>x<BLOCK_N>c<CONSUMERS>s<STAGES>[o][_pp][_f<QUARTERS>][_p] (sm90 family, e.g. h128x128c2s2o, "
                    "h128x128c2s2o_pp_f1 or h128x128c2s2o_p) "
                    "or hb<KEYS>x<QUERIES>c<CONSUMERS>s<STAGES>[o][_r] (sm90 backward, e.g. hb128x64c2s2o); each number has 1 to 4 digits",
                    what, shown));
  };
  if (text.size() > kMaxConfigText) throw syntax_error();
  int a = 0, b = 0, c = 0, d = 0;
  if (ConfigCursor k(text); k.lit("hb") && k.num(a) && k.lit("x") && k.num(b) && k.lit("c") && k.num(c) && k.lit("s") && k.num(d)) {
    const bool overlap = k.lit("o"), bulk_dq = k.lit("_r");
    if (!k.done()) throw syntax_error();
    if (a != 64 * c) {
      throw Error(fmt::format("{} '{}': an sm90 backward config's key block is 64 per consumer warpgroup, so hb{}x...c{} needs hb{}", what,
                              text, a, c, 64 * c));
    }
    return TileConfig::sm90_bwd(b, c, d, overlap, bulk_dq);
  }
  if (ConfigCursor k(text); k.lit("m") && k.num(a) && k.lit("n") && k.num(b) && k.lit("w") && k.num(c) && k.lit("s") && k.num(d)) {
    const bool q_in_smem = k.lit("qs");
    if (!k.done()) throw syntax_error();
    return TileConfig{a, b, c, d, !q_in_smem};
  }
  if (ConfigCursor k(text); k.lit("h") && k.num(a) && k.lit("x") && k.num(b) && k.lit("c") && k.num(c) && k.lit("s") && k.num(d)) {
    const bool overlap = k.lit("o"), pingpong = k.lit("_pp");
    int quarters = 0;
    if (k.lit("_f") && !k.num(quarters, 1)) throw syntax_error();
    const bool persistent = k.lit("_p");
    if (!k.done()) throw syntax_error();
    if (a != 64 * c) {
      throw Error(fmt::format("{} '{}': an sm90 config's BLOCK_M is 64 per consumer warpgroup, so h{}x...c{} needs BLOCK_M {}", what, text,
                              a, c, 64 * c));
    }
    return TileConfig::sm90(b, c, d, overlap, pingpong, quarters, persistent);
  }
  throw syntax_error();
}

const std::vector<int>& supported_head_dims() {
  static const std::vector<int> dims{32, 64, 96, 128, 256};
  return dims;
}

namespace {

bool is_sm90a(const Arch& a) { return a.major == 9 && a.minor == 0 && a.arch_specific; }

// Mirrors FwdSm90Config::kSmemBytes: Q + STAGES x (K + V) tiles, 1 + 4 x STAGES mbarriers (one
// more, q_empty, when persistent), and 1024 bytes to align the base to the 128B-swizzle atom.
int sm90_smem_bytes(const KernelSpec& spec, const TileConfig& c) {
  return 2 * spec.head_dim * (c.block_m + 2 * c.stages * c.block_n) + 8 * (1 + 4 * c.stages + (c.persistent ? 1 : 0)) + 1024;
}

// Mirrors FwdSm90Config's static_asserts, in the same order, with the same limits.
std::string check_sm90_config(const KernelSpec& spec, const TileConfig& c) {
  if (spec.direction != Direction::forward) return "the sm90 family is forward only";
  if (!is_sm90a(spec.arch)) return fmt::format("the sm90 family (wgmma, setmaxnreg) needs arch sm_90a, not {}", spec.arch.name());
  if (spec.head_dim != 64 && spec.head_dim != 128 && spec.head_dim != 256) {
    return fmt::format("head_dim={}: the sm90 family supports 64, 128 and 256 (whole 128-byte swizzle rows)", spec.head_dim);
  }
  if (c.block_n % 16 != 0 || c.block_n < 16 || c.block_n > 256) return fmt::format("block_n={} must be a multiple of 16 in [16, 256]", c.block_n);
  if (c.consumers < 1 || c.consumers > 3) return fmt::format("consumers={}: the sm90 family takes 1, 2 or 3 consumer warpgroups", c.consumers);
  if (c.block_m != 64 * c.consumers || c.warps != 4 * (c.consumers + 1)) {
    return fmt::format("block_m={} / warps={} do not match {} consumer warpgroups", c.block_m, c.warps, c.consumers);
  }
  if (c.stages < 2 || c.stages > 4) return fmt::format("stages={} outside 2..4", c.stages);
  if (c.pingpong && c.consumers != 2) return fmt::format("ping-pong (_pp) needs 2 consumer warpgroups to alternate, not consumers={}", c.consumers);
  if (c.fma_quarters < 0 || c.fma_quarters > 4) return fmt::format("fma_quarters={} (_f) outside 0..4", c.fma_quarters);
  const int smem = sm90_smem_bytes(spec, c);
  if (smem > 227 * 1024) return fmt::format("needs {} B of shared memory, sm_90a allows {} B", smem, 227 * 1024);
  const int regs = spec.head_dim / 2 + c.block_n / 2 + c.block_n / 4;
  const int fragment_regs = c.consumers == 3 ? 128 : 192;  // FwdSm90Config::kFragmentRegs
  if (regs > fragment_regs) {
    return fmt::format("about {} O, S and P registers per consumer thread, {} fit with {} consumer warpgroups: would spill", regs, fragment_regs,
                       c.consumers);
  }
  return {};
}

// Mirrors BwdSm90Config::kSmemBytes: K and V (block_m keys), STAGES x (Q + dO) tiles of block_n
// queries, two dS^T tiles, 1 + 3 x STAGES mbarriers, 1024 bytes of alignment slack.
int sm90_bwd_smem_bytes(const KernelSpec& spec, const TileConfig& c) {
  const int dq_stage = c.bulk_dq ? c.block_n * (4 * spec.head_dim + 32) : 0;  // fp32 rows padded by 32 B
  return 2 * spec.head_dim * (2 * c.block_m + 2 * c.stages * c.block_n) + 2 * 2 * c.block_m * c.block_n + dq_stage + 8 * (1 + 3 * c.stages) + 1024;
}

// Mirrors BwdSm90Config's static_asserts with the same limits.
std::string check_sm90_bwd_config(const KernelSpec& spec, const TileConfig& c) {
  if (spec.direction != Direction::backward_fused) return "the sm90 backward family (hb...) is the fused backward kernel only";
  if (!is_sm90a(spec.arch)) return fmt::format("the sm90 backward family (wgmma, setmaxnreg) needs arch sm_90a, not {}", spec.arch.name());
  if (spec.head_dim != 64 && spec.head_dim != 128) return fmt::format("head_dim={}: the sm90 backward family supports 64 and 128", spec.head_dim);
  if (c.block_n != 64 && c.block_n != 128) return fmt::format("query block={}: the sm90 backward takes 64 or 128 (whole dS^T column blocks)", c.block_n);
  if (c.consumers != 1 && c.consumers != 2) return fmt::format("consumers={}: the sm90 backward takes 1 or 2 consumer warpgroups", c.consumers);
  if (c.block_m != 64 * c.consumers || c.warps != 4 * (c.consumers + 1)) {
    return fmt::format("key block={} / warps={} do not match {} consumer warpgroups", c.block_m, c.warps, c.consumers);
  }
  if (c.stages < 2 || c.stages > 4) return fmt::format("stages={} outside 2..4", c.stages);
  // BwdSm90Config's dQ split: by m64 query tiles where they divide over the consumers, else by
  // whole 64-column blocks of the head dim.
  const bool dq_split_rows = (c.block_n / 64) % c.consumers == 0;
  const int dq_mtiles = dq_split_rows ? c.block_n / 64 / c.consumers : c.block_n / 64;
  const int dq_cols = dq_split_rows ? spec.head_dim : spec.head_dim / c.consumers;
  if (dq_cols % 64 != 0) {
    return fmt::format("query block={} over {} consumers at head_dim={}: the dQ split would cut a 64-column swizzle block (use query block 128)",
                       c.block_n, c.consumers, spec.head_dim);
  }
  if (c.pingpong || c.fma_quarters != 0 || c.persistent) return "the sm90 backward family has no ping-pong, FMA-sigmoid or persistent (_pp, _f, _p) variants";
  const int smem = sm90_bwd_smem_bytes(spec, c);
  if (smem > 227 * 1024) return fmt::format("needs {} B of shared memory, sm_90a allows {} B", smem, 227 * 1024);
  // BwdSm90Config::kRegEstimate: dK + dV, then the larger phase: S^T + dP^T, or this warpgroup's
  // dQ tiles + the P^T and dS^T fragments.
  const int dq_phase = dq_mtiles * dq_cols / 2 + c.block_n / 2;
  const int regs = spec.head_dim + std::max(c.block_n, dq_phase);
  if (regs > 192) return fmt::format("about {} dK, dV and S^T/dP^T or dQ registers per consumer thread: would spill", regs);
  return {};
}

}  // namespace

int forward_smem_bytes(const KernelSpec& spec, const TileConfig& c) {
  if (c.family == KernelFamily::sm90) return sm90_smem_bytes(spec, c);
  const int row = spec.head_dim + 8;
  return 2 * (c.block_m * row + 2 * c.stages * c.block_n * row);
}

int smem_bytes(const KernelSpec& spec, const TileConfig& c) {
  if (spec.direction == Direction::forward) return forward_smem_bytes(spec, c);
  if (spec.direction == Direction::backward_dq_convert) return 0;  // registers only
  if (c.family == KernelFamily::sm90_bwd) return sm90_bwd_smem_bytes(spec, c);
  // The backward kernels keep two fixed BLOCK_M tiles (K and V, or Q and dO) where the forward
  // keeps one (Q); the fused kernel also stages dS^T, BLOCK_M x (BLOCK_N + 8) 16-bit values
  // (mirrors BwdSmem in bwd_sm80.cuh).
  const int fixed = 2 * c.block_m * (spec.head_dim + 8);
  const int ds = spec.direction == Direction::backward_fused ? 2 * c.block_m * (c.block_n + 8) : 0;
  return forward_smem_bytes(spec, c) + fixed + ds;
}

namespace {

// Mirrors DqSplit's static_asserts (bwd_sm80.cuh): how the fused kernel's dQ tile is split.
std::string check_dq_split(const KernelSpec& spec, const TileConfig& c) {
  const int query_tiles = c.block_n / 16;
  const int warps_m = std::min(query_tiles, c.warps);
  if (c.warps % warps_m != 0 || query_tiles % warps_m != 0) {
    return fmt::format("block_n={} / warps={}: the fused kernel splits BLOCK_N/16={} query tiles over the warps, which must divide", c.block_n,
                       c.warps, query_tiles);
  }
  const int warps_d = c.warps / warps_m;
  if (spec.head_dim % (16 * warps_d) != 0) {
    return fmt::format("warps={} over block_n={}: {} warps per query tile would split head_dim={} below 16 columns each", c.warps, c.block_n,
                       warps_d, spec.head_dim);
  }
  return {};
}

}  // namespace

std::string check_config(const KernelSpec& spec, const TileConfig& c) {
  if (spec.direction == Direction::backward_dq_convert) {
    return c.describe() == dq_convert_config().describe() ? "" : fmt::format("the dQ convert kernel has one config, {}", dq_convert_config().describe());
  }
  if (c.family == KernelFamily::sm90_bwd) return check_sm90_bwd_config(spec, c);
  if (c.bulk_dq) return "bulk dQ reductions (_r) are an sm90 backward (hb...) option";
  if (c.family == KernelFamily::sm90) return check_sm90_config(spec, c);
  if (c.pingpong || c.fma_quarters != 0 || c.persistent) {
    return "ping-pong (_pp), the FMA-sigmoid fraction (_f) and persistent scheduling (_p) are sm90-family tunables";
  }
  if (c.warps < 1 || c.warps > 16) return fmt::format("warps={} outside 1..16", c.warps);
  if (c.block_m % (16 * c.warps) != 0) return fmt::format("block_m={} is not a multiple of 16*warps={}", c.block_m, 16 * c.warps);
  if (c.block_m / c.warps / 16 > 2) return fmt::format("block_m/warps={} rows per warp: at most 32 fit the register file", c.block_m / c.warps);
  if (c.block_n % 16 != 0 || c.block_n < 16 || c.block_n > 256) return fmt::format("block_n={} must be a multiple of 16 in [16, 256]", c.block_n);
  if (c.stages < 2 || c.stages > 4) return fmt::format("stages={} outside 2..4", c.stages);
  if (spec.direction != Direction::forward && c.q_in_regs) return "backward kernels read their fixed tiles from shared memory: use a qs config";
  if (spec.direction == Direction::backward_fused) {
    if (std::string why = check_dq_split(spec, c); !why.empty()) return why;
  }
  const int smem = smem_bytes(spec, c);
  // Opt-in shared memory per block: 227 KB on sm_90/sm_100, 163 KB on sm_80, 99 KB on the
  // other sm_8x and on sm_12x (consumer Blackwell).
  const int limit = spec.arch.major >= 9 && spec.arch.major != 12 ? 227 * 1024
                    : (spec.arch.major == 8 && spec.arch.minor == 0 ? 163 * 1024 : 99 * 1024);
  if (smem > limit) return fmt::format("needs {} B of shared memory, {} allows {} B", smem, spec.arch.name(), limit);
  // Accumulators alone: O (D/2 per m16 tile) + S (block_n/2 per m16 tile) + Q (D/4 per m16 tile) fp32/b32 registers.
  const int mtiles = c.block_m / c.warps / 16;
  // Backward: two accumulators of D/2 (dK and dV) and two score tiles (S and dP) per m16 tile.
  const int regs = spec.direction == Direction::forward ? mtiles * (spec.head_dim / 2 + c.block_n / 2 + (c.q_in_regs ? spec.head_dim / 4 : 0))
                                                        : mtiles * (spec.head_dim + c.block_n);
  if (spec.direction != Direction::forward && spec.head_dim > 128) return {};  // hd 256 backward: correctness only, spills accepted
  if (regs > 224) return fmt::format("about {} accumulator registers per thread: would spill", regs);
  return {};
}

bool sm90_family_supports(const KernelSpec& spec) {
  return spec.direction == Direction::forward && is_sm90a(spec.arch) && (spec.head_dim == 64 || spec.head_dim == 128 || spec.head_dim == 256);
}

TileConfig default_sm90_config(const KernelSpec& spec) {
  // Measured on an H200 (2026-12-03, bf16 dense, TritonSigmoid in the same run, bench/results/
  // 2026-12-03-h200-hopper-sweep.csv), with K and V released separately: at least three stages
  // or ping-pong, so that a key tile's TMA load starts a whole iteration before its GEMM.
  //  - hd 64: three consumer warpgroups (BLOCK_M 192) over 128-key tiles, two stages, no
  //    overlap: 623 TFLOPS at L 16384 (560 at L 4096), against 512 (506) for the two-warpgroup
  //    ping-pong 128 x 128 tile, in the same call on 2026-12-03 (bench/results/
  //    2026-12-03-h200-hd64-sweep.csv). Each K/V tile feeds 192 query rows instead of 128 and
  //    three warpgroups keep MUFU and the tensor cores busy without turns. With the score bias
  //    that tile spills 32-44 B (160 registers per consumer thread), so those specs take 96-key
  //    tiles (three stages, no spills).
  //  - hd 128: 128 x 128, three stages (225 KB), overlap without ping-pong: 781 at L 16384
  //    (740 at L 4096). With the score bias that tile spills 52-64 B (ptxas, CUDA 13.0), so those
  //    specs take 96-key tiles in ping-pong (177 KB, no spills): 768 / 720.
  //  - hd 256: 64-key tiles, two stages (193 KB; correctness first, not measured).
  // Short sequences (buckets up to 2k; at hd 128 no score bias, causal up to 8k) are scheduled
  // persistently: there each CTA's prologue, Q load and wave tail cost as much as its few key
  // tiles (sm90_persistent_pays explains, with the numbers); hd 128's padded and varlen specs up
  // to 512 keys take 96-key tiles there.
  constexpr bool overlap = true, pingpong = true;
  const bool persistent = sm90_persistent_pays(spec);
  TileConfig c;
  if (spec.head_dim <= 64)
    c = spec.score_bias ? TileConfig::sm90(96, 3, 3, !overlap) : TileConfig::sm90(128, 3, 2, !overlap);
  else if (spec.head_dim <= 128 && spec.score_bias)
    c = TileConfig::sm90(96, 2, 3, overlap, pingpong);
  else if (spec.head_dim <= 128)
    c = TileConfig::sm90(persistent && spec.layout != Layout::dense && spec.bucket == SeqBucket::up_to_512 ? 96 : 128, 2, 3, overlap);
  else
    c = TileConfig::sm90(64, 2, 2, overlap);
  c.persistent = persistent;
  return c;
}

bool sm90_persistent_pays(const KernelSpec& spec) {
  // H200, 2026-12-03, bf16, TFLOPS, one CTA per tile -> persistent, the same tile
  // (bench/results/2026-12-03-h200-order-tiles.csv and -order-defaults.csv, calls 10 and 11; the
  // one-CTA numbers repeat within 0.5 % across three calls):
  //  - hd 64 (h192x128c3s2): L 512 dense 341 -> 396, 25 % padded 239 -> 276; L 1024 441 -> 461,
  //    352 -> 379; L 2048 521 -> 531, 456 -> 477. Longer sequences amortise the prologue (L 16384:
  //    within the run-to-run spread).
  //  - hd 128 (h128x128c2s3o), since the persistent order keeps a head's query tiles together
  //    (sm90_tile_schedule.h): dense L 512 427 -> 478, L 1024 587 -> 620, L 2048 699 -> 720;
  //    25 % padded L 512 291 -> 325 (with 96-key tiles), L 1024 452 -> 490, L 2048 618 -> 616.
  //    The score bias's ping-pong default was not measured persistent.
  //  - hd 128 causal, since its persistent order pairs each query tile with its mirror
  //    (sm90_tile_schedule.h; H200, 2026-12-03 22:05, -causal-final.csv, L 512 / 1024 / 2048 /
  //    4096): dense 257 -> 297, 400 -> 451, 547 -> 595, 667 -> 700; 25 % padded 175 -> 175,
  //    298 -> 315, 454 -> 455, 601 -> 630. L 8192 737 -> 762, 16384 793 -> 798 (21:53; within
  //    the run-to-run spread at 16384, so the longest bucket stays as it was). hd 64's 192-row
  //    tiles keep the longest-rows-first order, persistent in the short buckets only (L 4096:
  //    466 against 474-480 for one CTA per tile).
  const bool short_bucket = spec.bucket == SeqBucket::up_to_512 || spec.bucket == SeqBucket::up_to_2k;
  if (spec.head_dim <= 64) return short_bucket;
  if (spec.head_dim <= 128) return !spec.score_bias && (short_bucket || (spec.causal && spec.bucket == SeqBucket::up_to_8k));
  return false;
}

bool sm90_backward_supports(const KernelSpec& spec) {
  return spec.direction == Direction::backward_fused && is_sm90a(spec.arch) && (spec.head_dim == 64 || spec.head_dim == 128);
}

TileConfig default_sm90_backward_config(const KernelSpec& spec) {
  // Measured on an H100 (2026-12-02, bf16 dense L 16384, bench/results/): two consumer
  // warpgroups over 128 keys (half the dQ reductions of 64 keys), dQ added by one bulk reduction
  // per row from shared memory (_r: 1.13-1.14x faster than per-thread atomics).
  // hd 128: 64-query steps (192 live registers per consumer thread), the sigmoid overlapping the
  //   dP^T GEMM: 484 TFLOPS (429 with atomics).
  // hd 64: 128-query steps (each warpgroup one m64 tile of dQ); no overlap, which spills 4-8 B
  //   there with the exact sigmoid (ptxas, CUDA 13.0): 439 TFLOPS (384 with atomics).
  constexpr bool bulk_dq = true;
  return spec.head_dim <= 64 ? TileConfig::sm90_bwd(128, 2, 2, false, bulk_dq) : TileConfig::sm90_bwd(64, 2, 2, true, bulk_dq);
}

TileConfig default_config(const KernelSpec& spec) {
  if (kSm90BackwardVerified && sm90_backward_supports(spec)) return default_sm90_backward_config(spec);
  if (kSm90DefaultOnHopper && sm90_family_supports(spec)) return default_sm90_config(spec);
  return default_sm80_config(spec);
}

TileConfig default_sm80_config(const KernelSpec& spec) {
  if (spec.direction == Direction::backward_dq_convert) return dq_convert_config();
  // Backward (not yet measured on a GPU): 16-row warps over a 64-row fixed tile, the streamed
  // tile narrowed as the head dim grows so S, dP, dK and dV fit in registers.
  if (spec.direction == Direction::backward_fused) {
    // Not yet measured. A 128-key tile over 8 warps: half the dQ atomics of a 64-key tile, and
    // no spills at hd 64/128 with every feature (ptxas, CUDA 13.0: 222-239 registers). hd 96
    // takes the 64-key tile (the 128 x 64 one does not fit 99 KB archs, and the dQ split needs
    // whole 16-column pairs per warp); hd 256 spills regardless (correctness only).
    TileConfig c = spec.head_dim <= 64    ? TileConfig{128, 64, 8, 2, false}
                   : spec.head_dim == 96  ? TileConfig{64, 32, 4, 2, false}
                   : spec.head_dim <= 128 ? TileConfig{128, 32, 8, 2, false}
                                          : TileConfig{32, 32, 2, 2, false};
    while (c.block_n > 16 && !check_config(spec, c).empty()) c.block_n /= 2;
    return c;
  }
  if (spec.direction != Direction::forward) {
    TileConfig c = spec.head_dim <= 64 ? TileConfig{64, 64, 4, 2, false} : spec.head_dim <= 128 ? TileConfig{64, 32, 4, 2, false} : TileConfig{32, 32, 2, 2, false};
    while (c.block_n > 16 && !check_config(spec, c).empty()) c.block_n /= 2;
    return c;
  }
  // From the H100 sweeps (bench/results/2026-11-23-h100-sweep.csv, bench/NOTES.md): 32 rows per
  // warp, so each K/V fragment read from shared memory feeds two m16 tiles.
  //  - hd <= 64: 128-key tile (309 TFLOPS dense); it needs 254 registers, and causal masking,
  //    score bias or the exact sigmoid push it into spills, so those take the 64-key tile with Q
  //    re-read from shared memory (289).
  //  - hd 96/128: 32-key tile with Q in shared memory (299); score bias plus the exact sigmoid
  //    spill 8 B there on sm_90a, so that pair takes 16-row warps (243).
  //  - hd 256: a narrow key tile and 16-row warps (correctness only; it still spills).
  const bool heavy = spec.score_bias || spec.causal || spec.sigmoid == SigmoidMode::exact;
  TileConfig c = spec.head_dim <= 64    ? (heavy ? TileConfig{128, 64, 4, 2, false} : TileConfig{128, 128, 4, 2})
                 : spec.head_dim <= 128 ? (spec.score_bias && spec.sigmoid == SigmoidMode::exact ? TileConfig{128, 64, 8, 2, false}
                                                                                          : TileConfig{128, 32, 4, 2, false})
                                        : TileConfig{64, 32, 4, 2};
  // Archs with 99 KB of shared memory per block (sm_86, sm_89, sm_120) do not fit the measured
  // head-dim-128 tile: narrow the key tile until the config fits.
  while (c.block_n > 16 && !check_config(spec, c).empty()) c.block_n /= 2;
  return c;
}

std::vector<TileConfig> candidate_configs(const KernelSpec& spec) {
  if (spec.direction == Direction::backward_dq_convert) return {dq_convert_config()};
  std::vector<TileConfig> out;
  for (int bm : {64, 128, 256})
    for (int bn : {32, 64, 128})
      for (int w : {4, 8})
        for (int st : {2, 3})
          for (bool q_in_regs : {true, false}) {  // both, so that the default (Q in smem at hd 96/128) is a candidate
            TileConfig c{bm, bn, w, st, q_in_regs};
            if (check_config(spec, c).empty()) out.push_back(c);
          }
  if (kSm90BackwardVerified && sm90_backward_supports(spec)) {
    for (int bq : {64, 128})
      for (int consumers : {1, 2})
        for (int st : {2, 3})
          for (bool overlap : {true, false})
            for (bool bulk_dq : {false, true}) {
              const TileConfig c = TileConfig::sm90_bwd(bq, consumers, st, overlap, bulk_dq);
              if (check_config(spec, c).empty()) out.push_back(c);
            }
  }
  if (!sm90_family_supports(spec)) return out;
  const std::vector<int> consumer_counts = kSm90ThreeConsumersVerified ? std::vector<int>{1, 2, 3} : std::vector<int>{1, 2};
  for (int consumers : consumer_counts)
    for (int bn : {64, 96, 128})  // 192 passes the register estimate at hd 64 but spills with causal + score bias + exact
      for (int st : {2, 3})
        for (bool overlap : {true, false}) {
          const TileConfig c = TileConfig::sm90(bn, consumers, st, overlap);
          if (check_config(spec, c).empty()) out.push_back(c);
        }
  // Issue 6's tunables, verified on an H200 (2026-12-03): ping-pong with two consumers (either
  // overlap), and a quarter of the sigmoids on the FMA pipes with ping-pong, where it came
  // closest (0.85-0.91x of the same tile without it at hd 64 and 128; half the sigmoids:
  // 0.78-0.83x), before K and V were released separately; not re-measured since.
  if (!kSm90TunablesVerified) return out;
  for (int bn : {64, 96, 128})
    for (int st : {2, 3})
      for (bool overlap : {true, false}) {
        const TileConfig c = TileConfig::sm90(bn, 2, st, overlap, true);
        if (check_config(spec, c).empty()) out.push_back(c);
      }
  for (int bn : {64, 96, 128})
    for (int st : {2, 3}) {
      const TileConfig c = TileConfig::sm90(bn, 2, st, true, true, 1);
      if (check_config(spec, c).empty()) out.push_back(c);
    }
  // Persistent scheduling of the overlapped base configs (its gain is in short and ragged
  // problems, whatever the tile): 12 more at most (18 with three consumers).
  for (int consumers : consumer_counts)
    for (int bn : {64, 96, 128})
      for (int st : {2, 3}) {
        const TileConfig c = TileConfig::sm90(bn, consumers, st, true, false, 0, true);
        if (check_config(spec, c).empty()) out.push_back(c);
      }
  // The default always competes, so a tuned entry is never slower than the untuned default
  // (hd 64's short-sequence default is persistent without overlap, outside the loops above).
  const TileConfig def = default_sm90_config(spec);
  const bool listed = std::any_of(out.begin(), out.end(), [&](const TileConfig& c) { return c.describe() == def.describe(); });
  if (!listed) out.push_back(def);
  return out;
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

std::string problem_key(const KernelSpec& s) {
  return fmt::format("{}_{}_d{}_{}_{}_{}_{}_{}_{}_{}", direction_tag(s.direction), dtype_tag(s.dtype), s.head_dim, layout_tag(s.layout),
                     causal_tag(s), s.bias_mode == BiasMode::log_n ? "logn" : "scalar", s.score_bias ? "sb" : "nosb",
                     s.sigmoid == SigmoidMode::fast ? "fast" : "exact", to_string(s.bucket), s.arch.name());
}

std::string kernel_name(const KernelSpec& s, const TileConfig& c) {
  return fmt::format("sigjit_{}_{}_d{}_{}_{}_{}_{}_{}_{}_{}", direction_tag(s.direction), dtype_tag(s.dtype), s.head_dim,
                     layout_tag(s.layout), causal_tag(s), s.bias_mode == BiasMode::log_n ? "logn" : "scalar", s.score_bias ? "sb" : "nosb",
                     s.sigmoid == SigmoidMode::fast ? "fast" : "exact", c.describe(), s.arch.name());
}

}  // namespace sigjit
