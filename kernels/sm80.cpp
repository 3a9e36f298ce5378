// The portable family (templates/sigjit/sm80/fwd.cuh, sm80/bwd.cuh): mma.sync and cp.async, any
// sm_80+ arch, every direction (forward, the fused backward, the deterministic dK/dV and dQ pair,
// the dQ convert kernel). The fallback wherever a specialised family cannot serve a call.
#include "kernels/config_grammar.hpp"
#include "kernels/family.hpp"
#include "kernels/registry.hpp"
#include "sigjit/sm80/limits.h"

#include <fmt/format.h>

#include <algorithm>

namespace sigjit {

KernelSpec dq_convert_spec(const KernelSpec& s) {
  KernelSpec c;
  c.direction = Direction::backward_dq_convert;
  c.dtype = s.dtype;
  c.head_dim = s.head_dim;
  c.layout = s.layout;
  c.arch = s.arch;
  return c;
}

KernelSpec fp8_quantize_spec(const KernelSpec& f) {
  KernelSpec s;
  s.direction = Direction::fp8_quantize;
  s.dtype = DType::bf16;
  s.head_dim = f.head_dim;
  s.layout = f.layout;
  s.arch = f.arch;
  return s;
}

TileConfig dq_convert_config() { return TileConfig(sigjit::Sm80Tile{64, 64, 4, 2, false}); }

namespace kernels {
namespace {

// Sizes from sm80/limits.h, which the templates' configs use too.
int sm80_smem(const KernelSpec& spec, const Sm80Tile& t) {
  if (spec.direction == Direction::forward) return kern::sm80::fwd_smem_bytes(spec.head_dim, t.block_m, t.block_n, t.stages);
  if (has_fixed_config(spec.direction)) return 0;  // registers only (the quantization's 16 B of static memory aside)
  return kern::sm80::bwd_smem_bytes(spec.head_dim, t.block_m, t.block_n, t.stages, spec.direction == Direction::backward_fused);
}

// Mirrors DqSplit's static_asserts (sm80/bwd.cuh): how the fused kernel's dQ tile is split.
std::string check_dq_split(const KernelSpec& spec, const Sm80Tile& c) {
  const int query_tiles = c.block_n / 16;
  const int warps_m = std::min(query_tiles, c.warps);
  if (c.warps % warps_m != 0 || query_tiles % warps_m != 0) {
    return fmt::format("block_n={} / warps={}: the fused kernel splits BLOCK_N/16={} query tiles over the warps, which must divide",
                       c.block_n, c.warps, query_tiles);
  }
  const int warps_d = c.warps / warps_m;
  if (spec.head_dim % (16 * warps_d) != 0) {
    return fmt::format("warps={} over block_n={}: {} warps per query tile would split head_dim={} below 16 columns each", c.warps,
                       c.block_n, warps_d, spec.head_dim);
  }
  return {};
}

int smem_limit(const Arch& arch) { return kern::sm80::smem_limit(arch.major, arch.minor); }

std::string check_sm80(const KernelSpec& spec, const Sm80Tile& c) {
  if (has_fixed_config(spec.direction)) {
    const std::string only = dq_convert_config().describe();
    if (TileConfig(c).describe() != only) return fmt::format("the {} kernel has one config, {}", direction_tag(spec.direction), only);
    // cvt.rn.satfinite.e4m3x2.f32: PTX ISA 7.8, sm_89 and newer.
    if (spec.direction == Direction::fp8_quantize && spec.arch.major * 10 + spec.arch.minor < 89)
      return fmt::format("the FP8 quantization needs sm_89 or newer (e4m3 conversions), not {}", spec.arch.name());
    return {};
  }
  if (spec.dtype == DType::fp8_e4m3)
    return "the portable family (m... tiles) has no FP8 kernel; dtype fp8 takes the Hopper family's h<BM>x<BN>... tiles (sm_90a)";
  if (c.warps < 1 || c.warps > 16) return fmt::format("warps={} outside 1..16", c.warps);
  if (c.block_m % (16 * c.warps) != 0) return fmt::format("block_m={} is not a multiple of 16*warps={}", c.block_m, 16 * c.warps);
  if (c.block_m / c.warps / 16 > 2)
    return fmt::format("block_m/warps={} rows per warp: at most 32 fit the register file", c.block_m / c.warps);
  if (c.block_n % 16 != 0 || c.block_n < 16 || c.block_n > 256)
    return fmt::format("block_n={} must be a multiple of 16 in [16, 256]", c.block_n);
  if (c.stages < 2 || c.stages > 4) return fmt::format("stages={} outside 2..4", c.stages);
  if (spec.direction != Direction::forward && c.q_in_regs)
    return "backward kernels read their fixed tiles from shared memory: use a qs config";
  if (spec.direction == Direction::backward_fused) {
    if (std::string why = check_dq_split(spec, c); !why.empty()) return why;
  }
  const int smem = sm80_smem(spec, c);
  if (smem > smem_limit(spec.arch))
    return fmt::format("needs {} B of shared memory, {} allows {} B", smem, spec.arch.name(), smem_limit(spec.arch));
  // Accumulators alone: O (D/2 per m16 tile) + S (block_n/2 per m16 tile) + Q (D/4 per m16 tile)
  // fp32/b32 registers. Backward: dK and dV (D/2 each) and S and dP per m16 tile.
  const int mtiles = c.block_m / c.warps / 16;
  const int regs = spec.direction == Direction::forward
                       ? mtiles * (spec.head_dim / 2 + c.block_n / 2 + (c.q_in_regs ? spec.head_dim / 4 : 0))
                       : mtiles * (spec.head_dim + c.block_n);
  if (spec.direction != Direction::forward && spec.head_dim > 128) return {};  // hd 256 backward: correctness only, spills accepted
  if (regs > kern::sm80::kAccumulatorRegisterLimit) return fmt::format("about {} accumulator registers per thread: would spill", regs);
  return {};
}

// Narrows the key tile until the config fits the spec (archs with 99 KB of shared memory, the
// fused kernel's dQ split).
Sm80Tile fit(const KernelSpec& spec, Sm80Tile t) {
  while (t.block_n > 16 && !check_sm80(spec, t).empty()) t.block_n /= 2;
  return t;
}

Sm80Tile sm80_default(const KernelSpec& spec) {
  if (has_fixed_config(spec.direction)) return dq_convert_config().get<Sm80Tile>();
  if (spec.direction == Direction::backward_fused) {
    // A 128-key tile over 8 warps: half the dQ atomics of a 64-key tile, no spills at hd 64/128
    // with every feature. hd 96: the 64-key tile (the 128 x 64 one does not fit 99 KB archs, and
    // the dQ split needs whole 16-column pairs per warp); hd 256 spills regardless.
    return fit(spec, spec.head_dim <= 64    ? Sm80Tile{128, 64, 8, 2, false}
                     : spec.head_dim == 96  ? Sm80Tile{64, 32, 4, 2, false}
                     : spec.head_dim <= 128 ? Sm80Tile{128, 32, 8, 2, false}
                                            : Sm80Tile{32, 32, 2, 2, false});
  }
  if (spec.direction != Direction::forward) {  // the deterministic dK/dV and dQ kernels
    return fit(spec, spec.head_dim <= 64    ? Sm80Tile{64, 64, 4, 2, false}
                     : spec.head_dim <= 128 ? Sm80Tile{64, 32, 4, 2, false}
                                            : Sm80Tile{32, 32, 2, 2, false});
  }
  // Forward: 32 rows per warp, so each K/V fragment read from shared memory feeds two m16 tiles
  // (bench/NOTES.md#sm80-defaults). hd <= 64: 128-key tiles, 64 with Q in shared memory where
  // causal masking, the score bias or the exact sigmoid would spill; hd 96/128: 32-key tiles with
  // Q in shared memory (16-row warps with score bias plus the exact sigmoid); hd 256: narrow.
  const bool heavy = spec.score_bias || spec.causal || spec.sigmoid == SigmoidMode::exact;
  return fit(spec, spec.head_dim <= 64    ? (heavy ? Sm80Tile{128, 64, 4, 2, false} : Sm80Tile{128, 128, 4, 2})
                   : spec.head_dim <= 128 ? (spec.score_bias && spec.sigmoid == SigmoidMode::exact ? Sm80Tile{128, 64, 8, 2, false}
                                                                                                   : Sm80Tile{128, 32, 4, 2, false})
                                          : Sm80Tile{64, 32, 4, 2});
}

const char* body(Direction d) {
  switch (d) {
    case Direction::forward: return "fwd_kernel";
    case Direction::backward_dkdv: return "dkdv_kernel";
    case Direction::backward_dq: return "dq_kernel";
    case Direction::backward_fused: return "dkdv_dq_fused_kernel";
    case Direction::backward_dq_convert: return "dq_convert_kernel";
    case Direction::fp8_quantize: return "quantize_fp8_kernel";
  }
  return "?";
}

// BwdSmem's PART numbering (sm80/bwd.cuh).
int backward_part(Direction d) {
  switch (d) {
    case Direction::backward_dkdv: return 0;
    case Direction::backward_dq: return 1;
    case Direction::backward_fused: return 2;
    default: return 3;
  }
}

class Sm80 final : public Family {
 public:
  KernelFamily id() const override { return KernelFamily::sm80; }
  std::string_view grammar() const override {
    return "m<BLOCK_M>n<BLOCK_N>w<WARPS>s<STAGES>[qs] (sm80 family, e.g. m128n64w4s2 or m128n64w4s2qs)";
  }
  // Every 16-bit spec; FP8 is Hopper only (sm90 family).
  bool serves(const KernelSpec& spec) const override { return spec.dtype != DType::fp8_e4m3; }

  std::optional<TileConfig> parse(std::string_view text, const std::string&) const override {
    int a = 0, b = 0, c = 0, d = 0;
    ConfigCursor k(text);
    if (!(k.lit("m") && k.num(a) && k.lit("n") && k.num(b) && k.lit("w") && k.num(c) && k.lit("s") && k.num(d))) return std::nullopt;
    const bool q_in_smem = k.lit("qs");
    if (!k.done()) return std::nullopt;
    return TileConfig(sigjit::Sm80Tile{a, b, c, d, !q_in_smem});
  }

  std::string describe(const TileConfig& config) const override {
    const Sm80Tile& t = config.get<Sm80Tile>();
    return fmt::format("m{}n{}w{}s{}{}", t.block_m, t.block_n, t.warps, t.stages, t.q_in_regs ? "" : "qs");
  }

  std::string check(const KernelSpec& spec, const TileConfig& config) const override { return check_sm80(spec, config.get<Sm80Tile>()); }
  int smem_bytes(const KernelSpec& spec, const TileConfig& config) const override { return sm80_smem(spec, config.get<Sm80Tile>()); }
  int threads(const TileConfig& config) const override { return config.get<Sm80Tile>().warps * 32; }
  TileConfig default_config(const KernelSpec& spec) const override { return sm80_default(spec); }

  std::vector<TileConfig> candidates(const KernelSpec& spec) const override {
    if (has_fixed_config(spec.direction)) return {dq_convert_config()};
    std::vector<TileConfig> out;
    for (int bm : {64, 128, 256})
      for (int bn : {32, 64, 128})
        for (int w : {4, 8})
          for (int st : {2, 3})
            for (bool q_in_regs : {true, false}) {  // both, so that the default (Q in smem at hd 96/128) is a candidate
              const Sm80Tile t{bm, bn, w, st, q_in_regs};
              if (check_sm80(spec, t).empty()) out.emplace_back(t);
            }
    return out;
  }

  std::string emit(const KernelSpec& s, const TileConfig& config, const std::string& name) const override {
    const Sm80Tile& c = config.get<Sm80Tile>();
    const bool forward = s.direction == Direction::forward;
    // The one template configuration every direction instantiates; the backward kernels read
    // the fixed tile from shared memory, so their configs always have q_in_regs false.
    const std::string alias = fmt::format(
        "using Cfg = sigjit::kern::FwdConfig</*head_dim*/ {}, /*block_m*/ {}, /*block_n*/ {}, /*warps*/ {}, /*stages*/ {},\n"
        "    /*bf16*/ {}, {}, /*causal*/ {}, {}, /*score_bias*/ {}, /*exact*/ {}, /*q_in_regs*/ {}{}>;\n",
        s.head_dim, c.block_m, c.block_n, c.warps, c.stages, s.dtype == DType::bf16, layout_arg(s), s.causal,
        bias_mode_arg(s), s.score_bias, s.sigmoid == SigmoidMode::exact, c.q_in_regs, top_left_arg(s));
    // Backward: one block per SM is enough, so ptxas may use every register (without the 1 it
    // capped the dQ kernel at 168 registers to fit three blocks, and spilled).
    const char* bounds = forward || has_fixed_config(s.direction) ? "Cfg::kThreads" : "Cfg::kThreads, 1";
    if (s.direction == Direction::fp8_quantize) return emit_fp8_quantize(s, config, name, alias, bounds);
    // Backward: the template's shared-memory size must be the host's.
    const std::string smem_check = forward ? std::string()
                                           : fmt::format(
                                                 "static_assert(sigjit::kern::BwdSmem<Cfg, {}>::kBytes == {}, \"host and template disagree "
                                                 "on the backward shared memory size\");\n",
                                                 backward_part(s.direction), sm80_smem(s, c));
    const std::string params_check =
        forward ? param_block_check({{"SigjitFwdParams", sizeof(SigjitFwdParams)}})
                : param_block_check({{"SigjitBwdParams", sizeof(SigjitBwdParams)}, {"SigjitFwdParams", sizeof(SigjitFwdParams)}});
    std::string source = fmt::format(
        "// Generated by sigjit: {} | {}\n#include \"{}\"\n\n{}{}{}\n"
        "extern \"C\" __global__ void __launch_bounds__({}) {}(const __grid_constant__ {} params) {{\n"
        "  sigjit::kern::{}<Cfg>(params);\n}}\n",
        s.describe(), describe(config), forward ? "sigjit/sm80/fwd.cuh" : "sigjit/sm80/bwd.cuh", alias, smem_check, params_check, bounds,
        name, forward ? "SigjitFwdParams" : "SigjitBwdParams", body(s.direction));
    if (!second_entry_suffix(s).empty()) {  // the dQ convert module's padded workspace zeroing or varlen tail zeroing
      source += fmt::format(
          "\nextern \"C\" __global__ void __launch_bounds__(Cfg::kThreads) {}{}(const __grid_constant__ SigjitBwdParams params) {{\n"
          "  sigjit::kern::{}<Cfg>(params);\n}}\n",
          name, second_entry_suffix(s), s.layout == Layout::padded ? "dq_workspace_zero_kernel" : "varlen_tail_zero_kernel");
    }
    return source;
  }

  // Two entries: the amax pass (<name>_amax) and the quantization (<name>).
  std::string emit_fp8_quantize(const KernelSpec& s, const TileConfig& config, const std::string& name, const std::string& alias,
                                const char* bounds) const {
    constexpr const char* kEntry =
        "extern \"C\" __global__ void __launch_bounds__({}) {}(const __grid_constant__ SigjitQuantizeParams params) {{\n"
        "  sigjit::kern::{}<Cfg>(params);\n}}\n";
    return fmt::format(
               "// Generated by sigjit: {} | {}\n#include \"sigjit/sm80/fwd.cuh\"\n#include \"sigjit/common/quantize_fp8.cuh\"\n\n{}{}\n",
               s.describe(), describe(config), alias,
               param_block_check({{"SigjitQuantizeParams", sizeof(SigjitQuantizeParams)}, {"SigjitFwdParams", sizeof(SigjitFwdParams)}})) +
           fmt::format(kEntry, bounds, name + std::string(second_entry_suffix(s)), "quantize_amax_kernel") + "\n" +
           fmt::format(kEntry, bounds, name, "quantize_fp8_kernel");
  }

  std::string unsupported(const detail::Resolved&, const SigjitBwdParams*) const override { return {}; }

  // One CTA per block_m rows of the fixed tile (queries, or keys for dK/dV and the fused
  // kernel) per head and batch.
  void launch(const Launch& l, const TileConfig& config) const override {
    const Sm80Tile& t = config.get<Sm80Tile>();
    const AttentionArgs& a = l.call.args;
    if (l.part == Direction::fp8_quantize)
      throw std::logic_error("the FP8 quantization is launched by enqueue_fp8_quantize, not by its family");
    if (l.part == Direction::forward) {
      SigjitFwdParams params = forward_params(l.call);
      return launch_kernel(l, static_cast<unsigned>((a.seqlen_q + t.block_m - 1) / t.block_m), a.heads_q, a.batch, &params);
    }
    const bool over_keys = l.part == Direction::backward_dkdv || l.part == Direction::backward_fused;
    const int rows = over_keys ? a.seqlen_k : a.seqlen_q;
    if (rows == 0 || a.batch == 0) return;
    launch_kernel(l, static_cast<unsigned>((rows + t.block_m - 1) / t.block_m), over_keys ? a.heads_kv : a.heads_q, a.batch,
                  const_cast<SigjitBwdParams*>(l.backward));
  }
};

}  // namespace

const Family& sm80_family() {
  static const Sm80 family;
  return family;
}

}  // namespace kernels
}  // namespace sigjit
