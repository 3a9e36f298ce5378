// The Hopper fused backward family (templates/sigjit/sm90/bwd.cuh): TMA, wgmma, one CTA per key
// block of 64 keys per consumer warpgroup, dQ accumulated in an fp32 workspace (per-thread
// atomics, or bulk reductions from shared memory with _r). sm_90a, head dims 64 and 128; the
// default fused backward wherever it serves.
#include "kernels/sm90_bwd.hpp"

#include "base/env.hpp"
#include "cuda/check.hpp"
#include "kernels/config_grammar.hpp"
#include "kernels/family.hpp"
#include "sigjit/sm90/bwd_limits.h"
#include "sigjit/sm90/bwd_params.h"
#include "sigjit/sm90/bwd_schedule.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>

namespace sigjit {
namespace kernels {
namespace {

int smem(const KernelSpec& spec, const Sm90BwdTile& c) {
  return kern::sm90::bwd_smem_bytes(spec.head_dim, c.block_k(), c.block_q, c.stages, c.bulk_dq, c.dq_writer, c.local_dq, c.persistent);
}

// BwdSm90Config's static_asserts as messages; sizes, the dQ split and limits from
// sm90/bwd_limits.h, which the template's config uses too.
std::string check(const KernelSpec& spec, const Sm90BwdTile& c) {
  if (spec.direction != Direction::backward_fused) return "the sm90 backward family (hb...) is the fused backward kernel only";
  if (!is_sm90a(spec.arch)) return fmt::format("the sm90 backward family (wgmma, setmaxnreg) needs arch sm_90a, not {}", spec.arch.name());
  if (spec.head_dim != 64 && spec.head_dim != 128)
    return fmt::format("head_dim={}: the sm90 backward family supports 64 and 128", spec.head_dim);
  if (c.block_q != 64 && c.block_q != 128)
    return fmt::format("query block={}: the sm90 backward takes 64 or 128 (whole dS^T column blocks)", c.block_q);
  if (c.consumers != 1 && c.consumers != 2)
    return fmt::format("consumers={}: the sm90 backward takes 1 or 2 consumer warpgroups", c.consumers);
  if (c.stages < 2 || c.stages > 4) return fmt::format("stages={} outside 2..4", c.stages);
  if (c.bulk_dq && c.dq_writer) return "dQ by bulk row reductions (_r) and by the writer warp (_w) exclude each other: pick one";
  if (c.ordered_dq && !c.dq_writer) return "the ordered dQ reduction is the writer warp's: _wd, not d without _w";
  if (c.local_dq) {
    if (!c.dq_writer) return "warpgroup-local dQ sums in the writer warp's staging tile: _wl, not l without _w";
    if (c.ordered_dq) return "warpgroup-local dQ (_wl) and the ordered reduction (_wd) exclude each other: pick one";
    if (c.early_scores) return "warpgroup-local dQ (_wl) does not take early scores (e): drop one";
    if (c.consumers != 2)
      return fmt::format("consumers={}: warpgroup-local dQ (_wl) sums the partials of 2 consumer warpgroups", c.consumers);
    if (const int regs = kern::sm90::bwd_register_estimate(spec.head_dim, c.block_q, c.consumers, true);
        regs > kern::sm90::kBwdRegisterLimit)
      return fmt::format("about {} dK, dV and warpgroup-local dQ registers per consumer thread: would spill", regs);
  }
  if (c.persistent && (!c.dq_writer || c.early_scores || c.ordered_dq || c.local_dq))
    return "the persistent schedule is the plain dQ writer's: _wp, without early scores (e), _wd or _wl";
  if (kern::sm90::bwd_dq_cols(spec.head_dim, c.block_q, c.consumers) % 64 != 0) {
    return fmt::format(
        "query block={} over {} consumers at head_dim={}: the dQ split would cut a 64-column swizzle block (use query block 128)",
        c.block_q, c.consumers, spec.head_dim);
  }
  const int bytes = smem(spec, c);
  if (const int limit = kern::sm90::kSmemLimit; bytes > limit) return fmt::format("needs {} B of shared memory, sm_90a allows {} B", bytes, limit);
  const int regs = kern::sm90::bwd_register_estimate(spec.head_dim, c.block_q, c.consumers);
  if (regs > kern::sm90::kBwdRegisterLimit) return fmt::format("about {} dK, dV and S^T/dP^T or dQ registers per consumer thread: would spill", regs);
  return {};
}

// Valid configs that ptxas (CUDA 13.0) compiles with a few bytes of spills for some features
// although the register estimate allows them: early scores with per-thread dQ atomics at hd 128
// (4-12 B with top-left causal, score bias and the exact sigmoid: the atomics' addresses beside
// the next S^T), and the persistent writer at hd 64 with the exact sigmoid without causal masking
// (4-32 B with score bias or padding: the tile loop's state beside the exact sigmoid's). Forcing
// one still works; the tuner does not time them and no default takes them. (The dQ writer without
// early scores at hd 64 spilled 16 B until the conflict-free staging stores; it compiles clean now.)
bool spills_in_practice(const KernelSpec& spec, const Sm90BwdTile& c) {
  if (c.persistent && spec.head_dim <= 64 && spec.sigmoid == SigmoidMode::exact && !spec.causal) return true;
  return c.early_scores && !c.bulk_dq && !c.dq_writer && spec.head_dim == 128;
}

enum class DqPath { atomics, bulk_rows, writer };

class Sm90Bwd final : public Family {
 public:
  KernelFamily id() const override { return KernelFamily::sm90_bwd; }
  std::string_view grammar() const override {
    return "hb<KEYS>x<QUERIES>c<CONSUMERS>s<STAGES>[o][e][_r|_w[l|d|p]] (sm90 backward, e.g. hb128x64c2s2oe_r)";
  }
  bool serves(const KernelSpec& spec) const override { return sm90_backward_supports(spec); }

  std::optional<TileConfig> parse(std::string_view text, const std::string& what) const override {
    int a = 0, b = 0, c = 0, d = 0;
    ConfigCursor k(text);
    if (!(k.lit("hb") && k.num(a) && k.lit("x") && k.num(b) && k.lit("c") && k.num(c) && k.lit("s") && k.num(d))) return std::nullopt;
    const bool overlap = k.lit("o");
    const bool early_scores = k.lit("e");
    const bool bulk_dq = k.lit("_r");
    const bool dq_writer = !bulk_dq && k.lit("_w");
    const bool local_dq = dq_writer && k.lit("l");
    const bool ordered_dq = dq_writer && k.lit("d");
    const bool persistent = dq_writer && k.lit("p");
    if (!k.done()) return std::nullopt;
    if (a != 64 * c) {
      throw Error(fmt::format("{} '{}': an sm90 backward config's key block is 64 per consumer warpgroup, so hb{}x...c{} needs hb{}", what,
                              text, a, c, 64 * c));
    }
    return TileConfig(sigjit::Sm90BwdTile{b, c, d, overlap, bulk_dq, early_scores, dq_writer, ordered_dq, local_dq, persistent});
  }

  std::string describe(const TileConfig& config) const override {
    const Sm90BwdTile& t = config.get<Sm90BwdTile>();
    return fmt::format("hb{}x{}c{}s{}{}{}{}{}{}{}{}", t.block_k(), t.block_q, t.consumers, t.stages, t.overlap ? "o" : "",
                       t.early_scores ? "e" : "", t.bulk_dq ? "_r" : "", t.dq_writer ? "_w" : "", t.local_dq ? "l" : "",
                       t.ordered_dq ? "d" : "", t.persistent ? "p" : "");
  }

  std::string check(const KernelSpec& spec, const TileConfig& config) const override {
    return kernels::check(spec, config.get<Sm90BwdTile>());
  }
  int smem_bytes(const KernelSpec& spec, const TileConfig& config) const override { return smem(spec, config.get<Sm90BwdTile>()); }
  int threads(const TileConfig& config) const override { return 128 * (config.get<Sm90BwdTile>().consumers + 1); }
  TileConfig default_config(const KernelSpec& spec) const override { return default_sm90_backward_config(spec); }

  std::vector<TileConfig> candidates(const KernelSpec& spec) const override {
    return sm90_backward_tiles(spec, kSm90BackwardLeversVerified, kSm90BackwardLocalDqVerified, kSm90BackwardPersistentVerified);
  }

  std::string emit(const KernelSpec& s, const TileConfig& config, const std::string& name) const override {
    const Sm90BwdTile& c = config.get<Sm90BwdTile>();
    const bool tuned = c.early_scores || c.dq_writer || c.ordered_dq || c.local_dq;
    const std::string alias = fmt::format(
        "using Cfg = {}sigjit::kern::BwdSm90Config</*head_dim*/ {}, /*block_q*/ {}, /*consumers*/ {}, /*stages*/ {}, /*overlap*/ {},\n"
        "    /*bf16*/ {}, {}, /*causal*/ {}, {}, /*score_bias*/ {}, /*exact*/ {}, /*bulk_dq*/ {}{}>{};\n"
        "static_assert(Cfg::kSmemBytes == {}, \"host and template disagree on the sm90 backward shared memory size\");\n",
        // Early scores and the dQ writer wrap the base config (BwdSm90Tuned).
        tuned ? "sigjit::kern::BwdSm90Tuned<" : "", s.head_dim, c.block_q, c.consumers, c.stages, c.overlap, s.dtype == DType::bf16,
        layout_arg(s), s.causal, bias_mode_arg(s), s.score_bias, s.sigmoid == SigmoidMode::exact, c.bulk_dq, top_left_arg(s),
        tuned ? fmt::format(", /*early_scores*/ {}, /*dq_writer*/ {}{}{}{}>", c.early_scores, c.dq_writer,
                            c.ordered_dq || c.local_dq || c.persistent ? fmt::format(", /*ordered_dq*/ {}", c.ordered_dq) : "",
                            c.local_dq || c.persistent ? fmt::format(", /*local_dq*/ {}", c.local_dq) : "",
                            c.persistent ? ", /*persistent*/ true" : "")
              : "",
        smem(s, c));
    const std::string params_check = param_block_check({{"SigjitBwdSm90Params", sizeof(SigjitBwdSm90Params)},
                                                        {"SigjitBwdParams", sizeof(SigjitBwdParams)},
                                                        {"SigjitFwdParams", sizeof(SigjitFwdParams)}});
    return fmt::format(
        "// Generated by sigjit: {} | {}\n#include \"sigjit/sm90/bwd.cuh\"\n\n{}{}\n"
        "extern \"C\" __global__ void __launch_bounds__(Cfg::kThreads, 1) {}(const __grid_constant__ SigjitBwdSm90Params params) {{\n"
        "  sigjit::kern::bwd_sm90_kernel<Cfg>(params);\n}}\n",
        s.describe(), describe(config), alias, params_check, name);
  }

  std::string unsupported(const detail::Resolved& call, const SigjitBwdParams* backward) const override {
    return tma_unsuitable(call, backward);
  }

  // The four tensor maps (Q and dO boxes: one step's query rows; K and V: the key block), then
  // one CTA per key block, kv head and batch.
  void launch(const Launch& l, const TileConfig& config) const override {
    const Sm90BwdTile& t = config.get<Sm90BwdTile>();
    const AttentionArgs& a = l.call.args;
    // An ordered tile finds its counters after the fp32 values of the ordered path's workspace
    // only: any other workspace (the fast path's, the caller's, the tuner's) would have the
    // kernel wait on and write past its end, whoever chose the tile (a forced tile, an imported
    // cache entry). Refused before any work.
    if (t.ordered_dq && !l.ordered_workspace) {
      throw Error(fmt::format("tile {}: the ordered dQ reduction (_wd) belongs to the deterministic mode, whose workspace holds its "
                              "counters; call backward() with deterministic=true (SIGJIT_BACKWARD_PATH=ordered until it is the default)",
                              describe(config)));
    }
    if (a.seqlen_k == 0 || a.batch == 0) return;
    if (const std::string why = tma_unsuitable(l.call, l.backward); !why.empty()) {
      throw Error(fmt::format("sm90 backward kernel {}: {}", describe(config), why));
    }
    // The persistent grid before any driver call, so that a bad SIGJIT_PERSISTENT_BWD_CTAS or an
    // overflowing tile count is refused with nothing done.
    long long grid = 0;
    if (t.persistent) {
      const long long tiles = sched::bwd_tiles(a.seqlen_k, t.block_k(), a.heads_kv, a.batch);
      grid = std::min<long long>(tiles, sm_count(l));
      if (tiles + grid > std::numeric_limits<int>::max())  // the last claims pass the last tile by up to grid
        throw Error(fmt::format("sm90 backward kernel {}: {} key tiles overflow the persistent schedule's index; split the batch",
                                describe(config), tiles));
    }
    SigjitBwdSm90Params params{};
    const std::vector<TmaTensor> tensors = tma_tensors(l.call, l.backward);
    encode_tma_map(params.q_map, tensors[0], a, t.block_q);
    encode_tma_map(params.k_map, tensors[1], a, t.block_k());
    encode_tma_map(params.v_map, tensors[2], a, t.block_k());
    encode_tma_map(params.do_map, tensors[3], a, t.block_q);
    params.p = *l.backward;
    if (t.dq_writer && params.p.dq_accum != nullptr) encode_dq_accum_map(params.dqa_map, params.p, a, t.block_q);
    if (t.ordered_dq) {  // the counters follow the fp32 values (enqueue_ordered_backward)
      const DqCounters counters = dq_counters(l.call);
      params.dq_counters = reinterpret_cast<int*>(reinterpret_cast<char*>(params.p.dq_accum) + dq_workspace_bytes(l.call));
      params.dq_counters_per_head = counters.per_head;
      params.dq_counters_per_seq = counters.per_seq;
    }
    if (t.persistent) {
      params.tile_counter = tile_counter(l.call, params.p);
      if (params.p.dq_zeroed_in_kernel != 0) set_dq_zero_jobs(params, a);
      launch_kernel(l, static_cast<unsigned>(grid), 1, 1, &params);
      return;
    }
    launch_kernel(l, static_cast<unsigned>((a.seqlen_k + t.block_k() - 1) / t.block_k()), a.heads_kv, a.batch, &params);
  }

 private:
  // The zeroing jobs' counters follow the tile counter (fused_counter_bytes); the jobs are
  // sm90/bwd_schedule.h's for this call's workspace rows.
  static void set_dq_zero_jobs(SigjitBwdSm90Params& params, const AttentionArgs& a) {
    const bool paced = params.p.dq_zeroed_in_kernel == SIGJIT_DQ_ZERO_PACED;
    const int rows_per_job = sched::dq_zero_rows_per_job(static_cast<long long>(a.heads_q) * a.head_dim,
                                                         paced ? sched::kDqZeroPacedJobBytes : sched::kDqZeroJobBytes);
    const int jobs_per_seq = sched::dq_zero_jobs_per_seq(a.seqlen_q, rows_per_job);
    if (static_cast<long long>(jobs_per_seq) * a.batch > std::numeric_limits<int>::max())
      throw Error(
          fmt::format("sm90 persistent backward: {} x {} dQ zeroing jobs overflow their index; split the batch", a.batch, jobs_per_seq));
    params.dq_zero_next = params.tile_counter + 1;
    params.dq_zero_done = params.tile_counter + kTileCounterBytes / sizeof(int);
    params.dq_zero_rows_per_job = rows_per_job;
    params.dq_zero_jobs_per_seq = jobs_per_seq;
    params.dq_zero_paced = paced ? 1 : 0;
  }

  // One CTA per SM (the tile takes the SM's shared memory): the device's SM count, which the
  // runtime and the tuner pass with the launch; SIGJIT_PERSISTENT_BWD_CTAS overrides it (tests:
  // every CTA walks many tiles).
  static int sm_count(const Launch& l) {
    if (const std::optional<std::string> cap = env::text("SIGJIT_PERSISTENT_BWD_CTAS")) {
      const std::optional<long long> n = env::parse_int(*cap, 1, std::numeric_limits<int>::max());
      if (!n) throw Error(fmt::format("SIGJIT_PERSISTENT_BWD_CTAS={}: expected a positive integer", *cap));
      return static_cast<int>(*n);
    }
    if (l.sm_count > 0) return l.sm_count;
    CUdevice device = 0;  // a launch without the count (none in the library): the current device's
    int count = 0;
    SIGJIT_CHECK_CU(detail::driver().cuCtxGetDevice(&device));
    SIGJIT_CHECK_CU(detail::driver().cuDeviceGetAttribute(&count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device));
    return std::max(count, 1);
  }
};

}  // namespace

const Family& sm90_bwd_family() {
  static const Sm90Bwd family;
  return family;
}

}  // namespace kernels

std::vector<TileConfig> sm90_backward_tiles(const KernelSpec& spec, bool with_levers, bool with_local_dq, bool with_persistent) {
  using kernels::DqPath;
  std::vector<TileConfig> out;
  for (int bq : {64, 128})
    for (int consumers : {1, 2})
      for (int st : {2, 3})
        for (bool overlap : {true, false})
          for (DqPath dq : {DqPath::atomics, DqPath::bulk_rows, DqPath::writer})
            for (bool early_scores : {false, true})
              for (bool local_dq : {false, true}) {
                if (!with_levers && (early_scores || dq == DqPath::writer)) continue;
                if (!with_local_dq && local_dq) continue;
                Sm90BwdTile t{bq, consumers, st, overlap, dq == DqPath::bulk_rows, early_scores, dq == DqPath::writer};
                t.local_dq = local_dq;
                if (kernels::check(spec, t).empty() && !kernels::spills_in_practice(spec, t)) out.emplace_back(t);
                t.persistent = true;  // short sequences: the launch and a key block's setup paid once per CTA
                if (with_persistent && kernels::check(spec, t).empty() && !kernels::spills_in_practice(spec, t)) out.emplace_back(t);
              }
  return out;
}

bool sm90_backward_supports(const KernelSpec& spec) {
  // 16-bit only: FP8 is forward only (inference), and an e4m3 spec here would build a kernel that
  // reads bytes as halves.
  return spec.direction == Direction::backward_fused && spec.dtype != DType::fp8_e4m3 && kernels::is_sm90a(spec.arch) &&
         (spec.head_dim == 64 || spec.head_dim == 128);
}

TileConfig default_sm90_backward_config(const KernelSpec& spec) {
  // Two consumer warpgroups over 128 keys (half the dQ reductions of 64 keys)
  // (bench/NOTES.md#sm90-backward-defaults), the sigmoid overlapping the dP^T GEMM, and the dQ
  // writer warp (_w) at every length, causal too. Query steps: 64 at hd 128 (192 live registers
  // per consumer thread), 128 at hd 64. Measured (bench/PROFILE-backward.md): _w was 8-18 % over
  // the bulk row reductions (_r) at hd 128 (H100, 2026-12-05); at hd 64, after the conflict-free
  // staging stores and the two-instruction dS let it compile without spills, o_w beat e_w by
  // 1-4 % from 4096 keys and _r by 6 % at 1024 (H200, 2026-12-06).
  // Persistent (_wp, tiles claimed from a counter) at hd 64 up to 2k keys, every layout, causal
  // too: over _w at L 512 / 1024 / 2048, dense +3 / +2.3 / +2 %, 25 % padded +6 / +5 / +3 %,
  // varlen +9 / +6 / +3 %, causal +11 / +6.5 / +2 %; within 1 % at L 4096 (H100, 2026-12-06,
  // bench/PROFILE-backward.md). Since _wp zeroes its own dQ workspace (no memset before it), it
  // also leads at hd 128 without causal masking: dense +3.4 / +6.4 / +5.8 / +4.9 / +4.1 % at L 512
  // / 1024 / 2048 / 4096 / 8192 (H100, 2026-12-06, two rounds), so up to 8k keys there; causal
  // it trails (-1.5 / -3 % at L 1024 / 2048, same machine): _w. Where it would spill, _w.
  const int block_q = spec.head_dim <= 64 ? 128 : 64;
  sigjit::Sm90BwdTile t{block_q, 2, 2, /*overlap*/ true, false, false, /*dq_writer*/ true};
  const bool short_keys = spec.bucket == SeqBucket::up_to_512 || spec.bucket == SeqBucket::up_to_2k;
  if (spec.head_dim <= 64) t.persistent = short_keys;
  else t.persistent = !spec.causal && (short_keys || spec.bucket == SeqBucket::up_to_8k);
  if (t.persistent && kernels::spills_in_practice(spec, t)) t.persistent = false;
  return TileConfig(t);
}

TileConfig sm90_backward_variant(const KernelSpec& spec, const Sm90BwdTile& levers) {
  TileConfig config = default_sm90_backward_config(spec);
  Sm90BwdTile& t = config.get<Sm90BwdTile>();
  const bool plain_writer = levers.dq_writer && !levers.bulk_dq && !levers.early_scores && !levers.ordered_dq && !levers.local_dq;
  if (spec.head_dim <= 64 && !plain_writer) t.overlap = false;
  t.bulk_dq = levers.bulk_dq;
  t.early_scores = levers.early_scores;
  t.dq_writer = levers.dq_writer;
  t.ordered_dq = levers.ordered_dq;
  t.local_dq = levers.local_dq;
  t.persistent = levers.persistent;
  return config;
}

}  // namespace sigjit
