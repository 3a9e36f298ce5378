// The Hopper forward family (templates/sigjit/sm90/fwd.cuh): TMA loads, wgmma, a producer
// warpgroup and 1-3 consumer warpgroups; sm_90a only, head dims 64, 128 and 256. The default
// forward wherever it serves; calls whose tensors TMA cannot describe fall back to sm80.
#include "kernels/sm90_fwd.hpp"

#include "cuda/check.hpp"
#include "cuda/workspace.hpp"
#include "kernels/config_grammar.hpp"
#include "kernels/family.hpp"
#include "kernels/registry.hpp"
#include "sigjit/sm90/fwd_limits.h"
#include "sigjit/sm90/fwd_params.h"
#include "sigjit/sm90/tile_schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

namespace sigjit {
namespace kernels {
namespace {

bool is_fp8(const KernelSpec& spec) { return spec.dtype == DType::fp8_e4m3; }

constexpr int kFp8PrologueThreads = 256;

int smem(const KernelSpec& spec, const Sm90FwdTile& c) {
  return kern::sm90::fwd_smem_bytes(spec.head_dim, c.block_m(), c.block_n, c.stages, c.persistent, is_fp8(spec) ? 1 : 2);
}

// FwdSm90Config's static_asserts as messages, in the same order; sizes and limits from
// sm90/fwd_limits.h, which the template's config uses too.
std::string check(const KernelSpec& spec, const Sm90FwdTile& c) {
  if (spec.direction != Direction::forward) return "the sm90 family is forward only";
  if (!is_sm90a(spec.arch)) return fmt::format("the sm90 family (wgmma, setmaxnreg) needs arch sm_90a, not {}", spec.arch.name());
  if (spec.head_dim != 64 && spec.head_dim != 128 && spec.head_dim != 256) {
    return fmt::format("head_dim={}: the sm90 family supports 64, 128 and 256 (whole 128-byte swizzle rows)", spec.head_dim);
  }
  if (c.block_n % 16 != 0 || c.block_n < 16 || c.block_n > 256)
    return fmt::format("block_n={} must be a multiple of 16 in [16, 256]", c.block_n);
  if (c.consumers < 1 || c.consumers > 3)
    return fmt::format("consumers={}: the sm90 family takes 1, 2 or 3 consumer warpgroups", c.consumers);
  if (c.stages < 2 || c.stages > 4) return fmt::format("stages={} outside 2..4", c.stages);
  if (c.pingpong && c.consumers != 2)
    return fmt::format("ping-pong (_pp) needs 2 consumer warpgroups to alternate, not consumers={}", c.consumers);
  if (c.fma_quarters < 0 || c.fma_quarters > 4) return fmt::format("fma_quarters={} (_f) outside 0..4", c.fma_quarters);
  if (is_fp8(spec) && spec.head_dim != 64 && spec.head_dim != 128)
    return fmt::format("head_dim={}: the FP8 forward supports 64 and 128", spec.head_dim);
  if (is_fp8(spec) && c.block_n != 128)
    return fmt::format("block_n={}: the FP8 forward reads V^T in 128-key tiles (one 128-byte swizzle row per head-dim row), so BLOCK_N is 128",
                       c.block_n);
  const int bytes = smem(spec, c);
  if (const int limit = kern::sm90::kSmemLimit; bytes > limit) return fmt::format("needs {} B of shared memory, sm_90a allows {} B", bytes, limit);
  // FP8 configs are built on a 16-bit base config, whose estimate (P at two scores a register,
  // not four) is the stricter and is asserted too.
  const int regs = kern::sm90::fwd_fragment_regs(spec.head_dim, c.block_n);
  const int fragment_regs = kern::sm90::fwd_fragment_regs_limit(c.consumers);
  if (regs > fragment_regs) {
    return fmt::format("about {} O, S and P registers per consumer thread, {} fit with {} consumer warpgroups: would spill", regs,
                       fragment_regs, c.consumers);
  }
  return {};
}

class Sm90Fwd final : public Family {
 public:
  KernelFamily id() const override { return KernelFamily::sm90; }
  std::string_view grammar() const override {
    return "h<BLOCK_M>x<BLOCK_N>c<CONSUMERS>s<STAGES>[o][_pp][_f<QUARTERS>][_p] (sm90 family, e.g. h128x128c2s2o, h128x128c2s2o_pp_f1 or "
           "h128x128c2s2o_p)";
  }
  bool serves(const KernelSpec& spec) const override { return sm90_family_supports(spec); }

  std::optional<TileConfig> parse(std::string_view text, const std::string& what) const override {
    int a = 0, b = 0, c = 0, d = 0;
    ConfigCursor k(text);
    if (!(k.lit("h") && k.num(a) && k.lit("x") && k.num(b) && k.lit("c") && k.num(c) && k.lit("s") && k.num(d))) return std::nullopt;
    const bool overlap = k.lit("o"), pingpong = k.lit("_pp");
    int quarters = 0;
    if (k.lit("_f") && !k.num(quarters, 1)) return std::nullopt;
    const bool persistent = k.lit("_p");
    if (!k.done()) return std::nullopt;
    if (a != 64 * c) {
      throw Error(fmt::format("{} '{}': an sm90 config's BLOCK_M is 64 per consumer warpgroup, so h{}x...c{} needs BLOCK_M {}", what, text,
                              a, c, 64 * c));
    }
    return TileConfig(sigjit::Sm90FwdTile{b, c, d, overlap, pingpong, quarters, persistent});
  }

  std::string describe(const TileConfig& config) const override {
    const Sm90FwdTile& t = config.get<Sm90FwdTile>();
    return fmt::format("h{}x{}c{}s{}{}{}{}{}", t.block_m(), t.block_n, t.consumers, t.stages, t.overlap ? "o" : "", t.pingpong ? "_pp" : "",
                       t.fma_quarters != 0 ? fmt::format("_f{}", t.fma_quarters) : "", t.persistent ? "_p" : "");
  }

  std::string check(const KernelSpec& spec, const TileConfig& config) const override {
    return kernels::check(spec, config.get<Sm90FwdTile>());
  }
  int smem_bytes(const KernelSpec& spec, const TileConfig& config) const override { return smem(spec, config.get<Sm90FwdTile>()); }
  int threads(const TileConfig& config) const override { return 128 * (config.get<Sm90FwdTile>().consumers + 1); }
  TileConfig default_config(const KernelSpec& spec) const override { return default_sm90_config(spec); }

  std::vector<TileConfig> candidates(const KernelSpec& spec) const override {
    std::vector<TileConfig> out;
    const auto add = [&](const Sm90FwdTile& t) {
      if (kernels::check(spec, t).empty()) out.emplace_back(t);
    };
    // 192-key tiles pass the register estimate at hd 64 but spill with causal + score bias + exact.
    for (int consumers : {1, 2, 3})
      for (int bn : {64, 96, 128})
        for (int st : {2, 3})
          for (bool overlap : {true, false}) add({bn, consumers, st, overlap});
    for (int bn : {64, 96, 128})  // ping-pong needs two consumers
      for (int st : {2, 3})
        for (bool overlap : {true, false}) add({bn, 2, st, overlap, true});
    // A quarter of the sigmoids on the FMA pipes, with ping-pong, where it came closest
    // (bench/NOTES.md#sm90-fma-sigmoid).
    for (int bn : {64, 96, 128})
      for (int st : {2, 3}) add({bn, 2, st, true, true, 1});
    // Persistent scheduling of the overlapped base configs: its gain is in short and ragged
    // problems, whatever the tile.
    for (int consumers : {1, 2, 3})
      for (int bn : {64, 96, 128})
        for (int st : {2, 3}) add({bn, consumers, st, true, false, 0, true});
    // FP8: the MUFU wall (bench/MODEL-fp8.md) makes the FMA-sigmoid split a first-class tunable:
    // a quarter or a half of the sigmoids on the FMA pipes, with and without ping-pong.
    if (spec.dtype == DType::fp8_e4m3)
      for (int quarters : {1, 2})
        for (int st : {2, 3}) {
          add({128, 2, st, true, false, quarters});
          add({128, 2, st, true, true, quarters});
          add({128, 3, st, false, false, quarters});
        }
    return out;
  }

  // Its own template and parameter block; the TU also checks that the host's shared-memory
  // formula agrees with the template's. Launch bounds with a minimum of one block per SM:
  // setmaxnreg needs a register cap at entry.
  // FP8 specs wrap the 16-bit base config (bf16 names O's type) in FwdSm90Fp8Config, inside the
  // persistent wrapper, and add the V^T prologue as a second entry point, `<name>_vt`.
  std::string emit(const KernelSpec& s, const TileConfig& config, const std::string& name) const override {
    const Sm90FwdTile& c = config.get<Sm90FwdTile>();
    const bool fp8 = is_fp8(s);
    const std::string alias = fmt::format(
        "using Cfg = {}{}sigjit::kern::FwdSm90Config</*head_dim*/ {}, /*block_n*/ {}, /*consumers*/ {}, /*stages*/ {}, /*overlap*/ {},\n"
        "    /*bf16*/ {}, {}, /*causal*/ {}, {}, /*score_bias*/ {}, /*exact*/ {},\n"
        "    /*pingpong*/ {}, /*fma_quarters*/ {}{}>{}{};\n"
        "static_assert(Cfg::kSmemBytes == {}, \"host and template disagree on the sm90 shared memory size\");\n",
        // Persistent configs wrap the base config (FwdSm90PersistentConfig).
        c.persistent ? "sigjit::kern::FwdSm90PersistentConfig<" : "", fp8 ? "sigjit::kern::FwdSm90Fp8Config<" : "", s.head_dim, c.block_n,
        c.consumers, c.stages, c.overlap, s.dtype != DType::fp16, layout_arg(s), s.causal, bias_mode_arg(s), s.score_bias,
        s.sigmoid == SigmoidMode::exact, c.pingpong, c.fma_quarters, top_left_arg(s), fp8 ? ">" : "", c.persistent ? ">" : "", smem(s, c));
    if (fp8) {
      return fmt::format(
          "// Generated by sigjit: {} | {}\n#include \"sigjit/sm90/fwd.cuh\"\n\n{}{}\n"
          "extern \"C\" __global__ void __launch_bounds__(Cfg::kThreads, 1) {}(const __grid_constant__ SigjitFwdSm90Fp8Params params) {{\n"
          "  sigjit::kern::fwd_sm90_fp8_kernel<Cfg>(params);\n}}\n"
          "extern \"C\" __global__ void __launch_bounds__({}) {}{}(const __grid_constant__ SigjitFwdSm90Fp8Params params) {{\n"
          "  sigjit::kern::fwd_sm90_fp8_vt_prologue<Cfg>(params);\n}}\n",
          s.describe(), describe(config), alias,
          param_block_check({{"SigjitFwdSm90Fp8Params", sizeof(SigjitFwdSm90Fp8Params)},
                             {"SigjitFwdSm90Params", sizeof(SigjitFwdSm90Params)},
                             {"SigjitFwdParams", sizeof(SigjitFwdParams)}}),
          name, kFp8PrologueThreads, name, second_entry_suffix(s));
    }
    return fmt::format(
        "// Generated by sigjit: {} | {}\n#include \"sigjit/sm90/fwd.cuh\"\n\n{}{}\n"
        "extern \"C\" __global__ void __launch_bounds__(Cfg::kThreads, 1) {}(const __grid_constant__ SigjitFwdSm90Params params) {{\n"
        "  sigjit::kern::fwd_sm90_kernel<Cfg>(params);\n}}\n",
        s.describe(), describe(config), alias,
        param_block_check({{"SigjitFwdSm90Params", sizeof(SigjitFwdSm90Params)}, {"SigjitFwdParams", sizeof(SigjitFwdParams)}}), name);
  }

  std::string unsupported(const detail::Resolved& call, const SigjitBwdParams*) const override { return tma_unsuitable(call); }

  // Q boxes of block_m rows, K and V boxes of block_n; the grid from the kernel's own schedule
  // (sm90/tile_schedule.h: launch_grid).
  void launch(const Launch& l, const TileConfig& config) const override {
    const Sm90FwdTile& t = config.get<Sm90FwdTile>();
    const AttentionArgs& a = l.call.args;
    if (const std::string why = tma_unsuitable(l.call); !why.empty()) throw Error(fmt::format("sm90 kernel {}: {}", describe(config), why));
    if (a.dtype == DType::fp8_e4m3) {
      launch_fp8(l, t);
      return;
    }
    SigjitFwdSm90Params params{};
    const std::vector<TmaTensor> tensors = tma_tensors(l.call);
    encode_tma_map(params.q_map, tensors[0], a, t.block_m());
    encode_tma_map(params.k_map, tensors[1], a, t.block_n);
    encode_tma_map(params.v_map, tensors[2], a, t.block_n);
    params.p = forward_params(l.call);
    const long long slots = static_cast<long long>(std::max(l.sm_count, 1)) * std::max(l.kernel.ctas_per_sm, 1);
    const sched::Grid grid = sched::launch_grid(t.persistent, t.block_m(), sched::Shape{a.batch, a.heads_q, a.seqlen_q}, slots);
    launch_kernel(l, grid.x, grid.y, grid.z, &params);
  }

 private:
  // The FP8 forward: the V^T prologue into the stream's workspace (held for both launches), then
  // the kernel reading it (sm90/fp8_layout.h).
  void launch_fp8(const Launch& l, const Sm90FwdTile& t) const {
    const AttentionArgs& a = l.call.args;
    if (l.kernel.prologue == nullptr) throw Error(fmt::format("sm90 FP8 kernel {}: its module has no V^T prologue (<name>_vt)", describe(TileConfig(t))), ErrorKind::cuda);
    const Fp8VtLayout vt = fp8_vt_layout(l.call);
    std::optional<detail::WorkspaceLease> lease;  // the library's, unless the caller passed one (forward_workspace_size)
    unsigned char* workspace = static_cast<unsigned char*>(l.forward_workspace);
    if (workspace == nullptr) {
      CUcontext context = nullptr;
      SIGJIT_CHECK_CU(detail::driver().cuCtxGetCurrent(&context));
      lease.emplace(detail::acquire_workspace(context, l.stream, vt.bytes, "the FP8 forward's V^T",
                                              "free device memory, run fewer tokens per call, or pass ForwardOptions::workspace"));
      workspace = reinterpret_cast<unsigned char*>(lease->ptr());
    }
    SigjitFwdSm90Fp8Params params{};
    const std::vector<TmaTensor> tensors = tma_tensors(l.call);
    encode_tma_map(params.base.q_map, tensors[0], a, t.block_m());
    encode_tma_map(params.base.k_map, tensors[1], a, t.block_n);
    encode_fp8_vt_map(params.base.v_map, workspace, vt, a);
    params.base.p = forward_params(l.call);
    params.vt = workspace;
    params.q_descale = a.q_descale;
    params.k_descale = a.k_descale;
    params.v_descale = a.v_descale;
    params.vt_columns = vt.columns;
    params.vt_stride_h = static_cast<sigjit_i64>(a.head_dim) * vt.columns;
    params.vt_stride_b = a.layout == Layout::varlen ? 0 : params.vt_stride_h * a.heads_kv;
    params.descale_stride_b = a.descale_stride_batch;
    params.descale_stride_h = a.descale_stride_head;
    void* args[] = {&params};
    SIGJIT_CHECK_CU(detail::driver().cuLaunchKernel(l.kernel.prologue, static_cast<unsigned>(vt.prologue_blocks), a.heads_kv, a.batch,
                                                    kFp8PrologueThreads, 1, 1, 0, l.stream, args, nullptr));
    const long long slots = static_cast<long long>(std::max(l.sm_count, 1)) * std::max(l.kernel.ctas_per_sm, 1);
    const sched::Grid grid = sched::launch_grid(t.persistent, t.block_m(), sched::Shape{a.batch, a.heads_q, a.seqlen_q}, slots);
    launch_kernel(l, grid.x, grid.y, grid.z, &params);
  }
};

}  // namespace

const Family& sm90_fwd_family() {
  static const Sm90Fwd family;
  return family;
}

}  // namespace kernels

bool sm90_family_supports(const KernelSpec& spec) {
  const bool head_dim = spec.dtype == DType::fp8_e4m3 ? spec.head_dim == 64 || spec.head_dim == 128
                                                      : spec.head_dim == 64 || spec.head_dim == 128 || spec.head_dim == 256;
  return spec.direction == Direction::forward && kernels::is_sm90a(spec.arch) && head_dim;
}

TileConfig default_sm90_config(const KernelSpec& spec) {
  // At least three stages or ping-pong, so that a key tile's TMA load starts a whole iteration
  // before its GEMM (bench/NOTES.md#sm90-defaults, H200 2026-12-03):
  //  - hd 64: three consumer warpgroups (BLOCK_M 192) over 128-key tiles, two stages, no overlap:
  //    each K/V tile feeds 192 rows and three warpgroups keep MUFU and the tensor cores busy
  //    without turns; 96-key tiles with the score bias (the 128-key tile spills there).
  //  - hd 128: 128 x 128, three stages, overlap; with the score bias 96-key tiles in ping-pong
  //    (the 128-key tile spills).
  //  - hd 256: 64-key tiles, two stages (correctness first, not measured).
  // Short sequences are scheduled persistently (sm90_persistent_pays); hd 128's padded and varlen
  // specs up to 512 keys take 96-key tiles there.
  constexpr bool overlap = true, pingpong = true;
  const bool persistent = sm90_persistent_pays(spec);
  Sm90FwdTile t;
  if (spec.dtype == DType::fp8_e4m3) {
    // FP8 (bench/RESULTS-fp8.md): 128-key tiles only (V^T rows), the 16-bit shapes where they
    // build without spills (ptxas, CUDA 13.0): with the score bias, hd 64 takes two consumer
    // warpgroups instead of three, and hd 128 with the exact sigmoid drops the overlap (4-8 B
    // spilled otherwise). hd 64 overlaps: the tuner's pick at L 16384 and 1.4-2.2 % faster than
    // without at L 1024-16384 (H100, 2026-12-06), but not with the exact sigmoid (varlen spilled).
    const bool exact = spec.sigmoid == SigmoidMode::exact;
    if (spec.head_dim <= 64)
      t = spec.score_bias ? Sm90FwdTile{128, 2, 3, overlap} : Sm90FwdTile{128, 3, 2, !exact};
    else
      t = Sm90FwdTile{128, 2, 3, !(spec.score_bias && exact)};
    t.persistent = persistent;
    return t;
  }
  if (spec.head_dim <= 64)
    t = spec.score_bias ? Sm90FwdTile{96, 3, 3, !overlap} : Sm90FwdTile{128, 3, 2, !overlap};
  else if (spec.head_dim <= 128 && spec.score_bias)
    t = Sm90FwdTile{96, 2, 3, overlap, pingpong};
  else if (spec.head_dim <= 128)
    t = Sm90FwdTile{persistent && spec.layout != Layout::dense && spec.bucket == SeqBucket::up_to_512 ? 96 : 128, 2, 3, overlap};
  else
    t = Sm90FwdTile{64, 2, 2, overlap};
  t.persistent = persistent;
  return t;
}

bool sm90_persistent_pays(const KernelSpec& spec) {
  // Where each CTA's prologue, Q load and wave tail cost as much as its few key tiles
  // (bench/NOTES.md#sm90-persistent): the short buckets at hd 64; at hd 128 without the score bias
  // (its ping-pong default was not measured persistent) the short buckets, and causal up to 8k
  // (its persistent order pairs each query tile with its mirror).
  const bool short_bucket = spec.bucket == SeqBucket::up_to_512 || spec.bucket == SeqBucket::up_to_2k;
  if (spec.head_dim <= 64) return short_bucket;
  if (spec.head_dim <= 128) return !spec.score_bias && (short_bucket || (spec.causal && spec.bucket == SeqBucket::up_to_8k));
  return false;
}

}  // namespace sigjit
