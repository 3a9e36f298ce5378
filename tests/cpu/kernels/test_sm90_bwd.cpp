// The sm90 (Hopper wgmma) fused backward family (sm90/bwd.cuh) without a GPU: every backward
// spec it serves compiles for sm_90a with its default config, without spills at head dims 64/128
// and without ptxas ignoring setmaxnreg or serializing wgmma; the PTX uses TMA, wgmma (with the
// transposed-A dQ product) and vector dQ reductions; config strings round-trip and bad configs are
// refused by check_config and, when forced past it, by the template's static_asserts; while
// true is false neither the default nor the tuner's candidates use the family.
#include "cuda/loaded_kernel.hpp"
#include "jit/codegen.hpp"
#include "jit/compiler.hpp"
#include "jit/templates.hpp"
#include "kernels/launch.hpp"
#include "kernels/registry.hpp"
#include "kernels/sm90_bwd.hpp"
#include "problem/call.hpp"
#include "problem/spec.hpp"
#include "sigjit/sm90/bwd_params.h"
#include "tests/common/forced_compile.hpp"
#include "tests/common/scoped_env.hpp"
#include "tests/common/spec_matrix.hpp"
#include "tests/common/text_count.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nvrtc.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using sigjit::test::occurrences;

using ::testing::HasSubstr;
using sigjit::Arch;
using sigjit::Direction;
using sigjit::KernelFamily;
using sigjit::KernelSpec;
using sigjit::TileConfig;

KernelSpec bwd_spec(int head_dim, const char* arch = "sm_90a") {
  KernelSpec s;
  s.direction = Direction::backward_fused;
  s.head_dim = head_dim;
  s.arch = Arch::parse(arch);
  return s;
}

// The plain spec, or the heaviest: padded, causal, score bias, exact sigmoid.
KernelSpec bwd_spec_of(int head_dim, bool heavy) {
  KernelSpec s = bwd_spec(head_dim);
  if (heavy) {
    s.layout = sigjit::Layout::padded;
    s.causal = true;
    s.score_bias = true;
    s.sigmoid = sigjit::SigmoidMode::exact;
  }
  return s;
}

// Every code-changing backward feature at hd 64/128 for sm_90a, as fused backward specs.
std::vector<KernelSpec> all_sm90_bwd_specs() {
  std::vector<KernelSpec> out = sigjit::testing::all_forward_specs(Arch::parse("sm_90a"), {64, 128});
  for (KernelSpec& s : out) s.direction = Direction::backward_fused;
  return out;
}

// Compiles one backward (spec, config) and lists what is wrong with the result (empty: all good;
// spills count as wrong).
std::string compile_problems(const KernelSpec& spec, const TileConfig& config, sigjit::ResourceUsage* usage = nullptr,
                             std::string* ptx = nullptr) {
  return sigjit::testing::sm90_compile_problems(spec, config, sizeof(SigjitBwdSm90Params), true, usage, ptx);
}

// The default's tile shape with dQ by bulk row reductions and no lever: the base the variants
// below add one lever at a time to (kernels/sm90_bwd.hpp: sm90_backward_variant).
TileConfig base_tile(const KernelSpec& spec) {
  sigjit::Sm90BwdTile levers;
  levers.bulk_dq = true;
  return sigjit::sm90_backward_variant(spec, levers);
}

// The deterministic mode's Hopper tile (runtime/attention.cpp: ordered_config): the default's
// shape with early scores and the dQ writer adding in key-block order.
TileConfig ordered_dq_config(const KernelSpec& spec) {
  sigjit::Sm90BwdTile levers;
  levers.early_scores = levers.dq_writer = levers.ordered_dq = true;
  return sigjit::sm90_backward_variant(spec, levers);
}

// Compiles every (spec, config) on all cores; each problem (spills included) is a failure.
void expect_all_compile(const std::vector<std::pair<KernelSpec, TileConfig>>& jobs) {
  const unsigned workers = std::max(1u, std::thread::hardware_concurrency());
  std::printf("compiling %zu sm90 backward kernels on %u threads\n", jobs.size(), workers);
  std::vector<std::string> failures;
  std::mutex mutex;
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < jobs.size(); i = next++) {
      const std::string why = compile_problems(jobs[i].first, jobs[i].second);
      std::lock_guard<std::mutex> lock(mutex);
      if (!why.empty()) failures.push_back(sigjit::kernel_name(jobs[i].first, jobs[i].second) + ": " + why);
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < workers; ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failures, first: " << (failures.empty() ? "" : failures.front());
  for (const auto& f : failures) std::printf("FAILED %s\n", f.c_str());
}

// Every tile the tuner may time compiles without spills (each tunable's every value, the levers
// included before the device has verified them), for the plain spec and the heaviest (padded,
// causal, score bias, exact sigmoid) at hd 64 and 128.
TEST(Sm90BwdCompileAll, EveryCandidateCompilesWithoutSpills) {
  std::vector<std::pair<KernelSpec, TileConfig>> jobs;
  for (int d : {64, 128})
    for (bool heavy : {false, true}) {
      const KernelSpec s = bwd_spec_of(d, heavy);
      for (const TileConfig& c : sigjit::sm90_backward_tiles(s, /*with_levers=*/true, /*with_local_dq=*/true)) jobs.emplace_back(s, c);
    }
  expect_all_compile(jobs);
}

// The default config (each length bucket's) and the deterministic mode's ordered dQ (_wd) for every
// spec; the default's shape with atomics, with bulk dQ (_r), with bulk dQ and early scores (e) and
// with the dQ writer and early scores (e_w) for the sweep's subset (dtype and bias mode paired:
// sweep_specs; tuner candidates, which it rejects with the reason if they fail).
TEST(Sm90BwdCompileAll, EveryBackwardSpecCompilesForSm90aWithTheDefaultConfig) {
  const std::vector<KernelSpec> specs = all_sm90_bwd_specs();
  ASSERT_EQ(specs.size(), 2u * 96u);
  ASSERT_EQ(sigjit::testing::sweep_specs(specs).size(), sigjit::testing::exhaustive_sweeps() ? specs.size() : specs.size() / 4);
  std::vector<std::pair<KernelSpec, TileConfig>> jobs;
  for (const KernelSpec& s : specs) {
    ASSERT_TRUE(sigjit::sm90_backward_supports(s)) << s.describe();
    jobs.emplace_back(s, sigjit::default_sm90_backward_config(s));
    jobs.emplace_back(s, ordered_dq_config(s));
    for (sigjit::SeqBucket b : {sigjit::SeqBucket::up_to_2k, sigjit::SeqBucket::up_to_8k}) {
      KernelSpec shorter = s;  // the shorter buckets' default where it differs (_wp)
      shorter.bucket = b;
      const TileConfig shorter_default = sigjit::default_sm90_backward_config(shorter);
      if (shorter_default.describe() != sigjit::default_sm90_backward_config(s).describe()) jobs.emplace_back(shorter, shorter_default);
    }
    if (!sigjit::testing::in_sweep(s)) continue;
    TileConfig c = base_tile(s);
    c.get<sigjit::Sm90BwdTile>().bulk_dq = false;
    jobs.emplace_back(s, c);
    c.get<sigjit::Sm90BwdTile>().bulk_dq = true;
    jobs.emplace_back(s, c);
    c.get<sigjit::Sm90BwdTile>().early_scores = true;
    jobs.emplace_back(s, c);
    c.get<sigjit::Sm90BwdTile>().bulk_dq = false;
    c.get<sigjit::Sm90BwdTile>().dq_writer = true;
    jobs.emplace_back(s, c);
  }
  expect_all_compile(jobs);
}

// Top-left causal specs (tests/common/spec_matrix.hpp: every layout, hd 64 and 128, two feature
// sets) with the default config, with early scores, with dQ atomics instead of bulk reductions
// and with the dQ writer: the key block's
// query range with the top-left diagonal, its own "causaltl" kernel, no spills.
TEST(Sm90BwdCompileAll, CausalTopLeftCompilesWithTheDefaultConfigAndAtomics) {
  std::vector<std::pair<KernelSpec, TileConfig>> jobs;
  for (KernelSpec s : sigjit::testing::top_left_causal_specs(Arch::parse("sm_90a"), {64, 128})) {
    s.direction = Direction::backward_fused;
    TileConfig c = sigjit::default_config(s);
    ASSERT_EQ(c.family(), KernelFamily::sm90_bwd) << s.describe();
    EXPECT_THAT(sigjit::emit_source(s, c), HasSubstr("/*causal_top_left*/ true>"));
    jobs.emplace_back(s, c);
    c = base_tile(s);
    c.get<sigjit::Sm90BwdTile>().early_scores = true;
    jobs.emplace_back(s, c);
    c.get<sigjit::Sm90BwdTile>().early_scores = false;
    c.get<sigjit::Sm90BwdTile>().bulk_dq = false;
    jobs.emplace_back(s, c);
    c.get<sigjit::Sm90BwdTile>().dq_writer = true;
    jobs.emplace_back(s, c);
  }
  ASSERT_EQ(jobs.size(), 48u);
  for (const auto& [spec, config] : jobs) EXPECT_THAT(sigjit::kernel_name(spec, config), HasSubstr("_causaltl_"));
  expect_all_compile(jobs);
}

TEST(Sm90BwdCompile, DefaultConfigsReportRegistersWithoutSpills) {
  // The numbers to compare with the GPU run (printed; spills and warnings fail), fast and the
  // heaviest variant (padded, causal, score bias, exact).
  for (int d : {64, 128})
    for (bool heavy : {false, true})
      for (int variant = 0; variant < 3; ++variant) {  // atomics, bulk dQ, bulk dQ with early scores
      const bool bulk = variant > 0;
      const KernelSpec s = bwd_spec_of(d, heavy);
      TileConfig c = base_tile(s);
      c.get<sigjit::Sm90BwdTile>().bulk_dq = bulk;
      c.get<sigjit::Sm90BwdTile>().early_scores = variant == 2;
      sigjit::ResourceUsage u;
      EXPECT_EQ(compile_problems(s, c, &u), "") << c.describe();
      std::printf("hd%d%s %s: %s\n", d, heavy ? " heavy" : "", c.describe().c_str(), u.describe().c_str());
    }
}

TEST(Sm90BwdCompile, OtherValidConfigsCompile) {
  for (int d : {64, 128})
    for (const char* tile : {"hb64x64c1s2", "hb128x64c2s3o", "hb64x128c1s2o", "hb128x128c2s2o", "hb128x64c2s2"}) {
      const KernelSpec s = bwd_spec(d);
      const TileConfig c = TileConfig::parse(tile, "test");
      if (!sigjit::check_config(s, c).empty()) continue;  // e.g. hb128x128 at hd 128: registers
      sigjit::ResourceUsage u;
      EXPECT_EQ(compile_problems(s, c, &u), "") << d << " " << tile;
      std::printf("hd%d %s: %s\n", d, tile, u.describe().c_str());
    }
}

// The default config with dQ added by per-thread atomics (the default itself uses the bulk
// reduction, _r): the tests below cover both.
TileConfig atomic_dq_config(const KernelSpec& s) {
  TileConfig c = base_tile(s);
  c.get<sigjit::Sm90BwdTile>().bulk_dq = false;
  return c;
}

TEST(Sm90BwdCompile, PtxUsesTheHopperInstructionsAndNoMmaSync) {
  const KernelSpec s = bwd_spec(128);
  std::string ptx;
  ASSERT_EQ(compile_problems(s, atomic_dq_config(s), nullptr, &ptx), "");
  // S^T / dP^T: m64n64 (64-query steps); dV, dK: m64n128 register-A; dQ: m64n64 per warpgroup with
  // both operands transposed (imm-trans-a 1, imm-trans-b 1). Overlapped: wait_group 1 after the
  // two score GEMMs.
  for (const char* insn : {"wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16", "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16",
                           "cp.async.bulk.tensor.4d", "mbarrier.try_wait.parity", "setmaxnreg.inc.sync.aligned.u32 240",
                           "setmaxnreg.dec.sync.aligned.u32 24", "red.global.add.v2.f32", "fence.proxy.async.shared::cta", "p, 1, 1, 1, 1;",
                           "p, 1, 1, 0, 0;", "wgmma.wait_group.sync.aligned 1;"}) {
    EXPECT_NE(ptx.find(insn), std::string::npos) << insn;  // (no gmock HasSubstr: it prints all the PTX)
  }
  // __syncthreads after the barrier init, and the consumers' dS^T barrier (named, id 1).
  EXPECT_EQ(occurrences(ptx, "bar.sync"), 2u);
  EXPECT_EQ(occurrences(ptx, "mma.sync.aligned"), 0u);
  EXPECT_EQ(occurrences(ptx, "atom.global"), 0u);
  // Four TMA loads per step at hd 128 (Q, dO: two 64-column boxes each) plus four for K and V.
  EXPECT_EQ(occurrences(ptx, "cp.async.bulk.tensor.4d"), 8u);
  EXPECT_EQ(occurrences(ptx, "cp.reduce.async.bulk"), 0u);
}

TEST(Sm90BwdCompile, BulkDqVariantReducesRowsFromSharedMemory) {
  for (int d : {64, 128}) {
    const KernelSpec s = bwd_spec(d);
    TileConfig c = base_tile(s);
    c.get<sigjit::Sm90BwdTile>().bulk_dq = true;
    std::string ptx;
    ASSERT_EQ(compile_problems(s, c, nullptr, &ptx), "") << c.describe();
    for (const char* insn : {"cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32", "cp.async.bulk.commit_group;",
                             "cp.async.bulk.wait_group.read 0;", "st.shared.v2.f32"}) {
      EXPECT_NE(ptx.find(insn), std::string::npos) << d << " " << insn;
    }
    // Only the reductions' reads of the staging tile are waited for, also at the end: their writes
    // are visible once the kernel ends.
    EXPECT_EQ(occurrences(ptx, "cp.async.bulk.wait_group 0;"), 0u) << d;
    EXPECT_EQ(occurrences(ptx, "red.global.add"), 0u) << d;
    EXPECT_EQ(occurrences(ptx, "bar.sync"), 4u) << d;  // __syncthreads, the dS^T barrier, the two staging barriers
    EXPECT_EQ(sigjit::smem_bytes(s, c) - sigjit::smem_bytes(s, atomic_dq_config(s)), c.get<sigjit::Sm90BwdTile>().block_q * (4 * d + 32)) << d;
  }
}

// The dQ writer (_w): one tensor bulk reduction per 32-column box of the step's dQ tile, issued
// by the writer (the consumers issue no reduction and meet at no staging barrier: only
// __syncthreads and the dS barrier remain), and the smem of two fp32 staging tiles.
TEST(Sm90BwdCompile, DqWriterReducesSwizzledBoxesWithTensorBulkReductions) {
  for (int d : {64, 128}) {
    const KernelSpec s = bwd_spec(d);
    TileConfig c = atomic_dq_config(s);
    c.get<sigjit::Sm90BwdTile>().dq_writer = true;
    std::string ptx;
    ASSERT_EQ(compile_problems(s, c, nullptr, &ptx), "") << c.describe();
    EXPECT_EQ(occurrences(ptx, "cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group"), static_cast<std::size_t>(d / 32))
        << d;
    EXPECT_EQ(occurrences(ptx, "cp.reduce.async.bulk.global"), 0u) << d;  // no per-row bulk reductions (_r)
    EXPECT_EQ(occurrences(ptx, "red.global.add"), 0u) << d;
    EXPECT_EQ(occurrences(ptx, "bar.sync"), 2u) << d;
    for (const char* insn : {"cp.async.bulk.wait_group.read 0;", "st.shared.v2.f32", "fence.proxy.async.shared::cta"}) {
      EXPECT_NE(ptx.find(insn), std::string::npos) << d << " " << insn;
    }
    // Reads only, at the end too (bwd_write_dq), but for the convert's handoff: once, after the
    // last step, its tile is counted reduced (count_tile_reduced).
    EXPECT_EQ(occurrences(ptx, "cp.async.bulk.wait_group 0;"), 1u) << d;
    const int block_q = c.get<sigjit::Sm90BwdTile>().block_q;
    EXPECT_EQ(sigjit::smem_bytes(s, c) - sigjit::smem_bytes(s, atomic_dq_config(s)), 2 * block_q * d * 4 + 4 * 8) << d;
    EXPECT_LE(sigjit::smem_bytes(s, c), 232448) << d;
  }
}

// The ordered dQ reduction (_wd): the writer acquires its query block's counter before adding,
// waits for its additions' writes (not only their reads), fences the async proxy and releases
// the counter, and has no convert handoff; without d it waits for reads only per step and
// touches no counter but the handoff's: a release add once its tile's writes are done (another
// for a wholly padded key block), after one wait for them and a proxy fence.
TEST(Sm90BwdCompile, OrderedDqWaitsForItsTurnAndReleasesAfterItsWrites) {
  for (int d : {64, 128})
    for (bool ordered : {false, true}) {
      const KernelSpec s = bwd_spec(d);
      TileConfig c = ordered_dq_config(s);
      c.get<sigjit::Sm90BwdTile>().ordered_dq = ordered;
      std::string ptx;
      ASSERT_EQ(compile_problems(s, c, nullptr, &ptx), "") << c.describe();
      EXPECT_EQ(occurrences(ptx, "ld.acquire.gpu.global.b32"), ordered ? 1u : 0u) << c.describe();
      EXPECT_EQ(occurrences(ptx, "red.release.gpu.global.add.s32"), ordered ? 1u : 2u) << c.describe();
      EXPECT_EQ(occurrences(ptx, "fence.proxy.async.global;"), ordered ? 2u : 1u) << c.describe();
      EXPECT_EQ(occurrences(ptx, "cp.async.bulk.wait_group.read 0;"), ordered ? 0u : 1u) << c.describe();
      EXPECT_EQ(occurrences(ptx, "cp.async.bulk.wait_group 0;"), 1u) << c.describe();  // per step (ordered), or the handoff's at the end
      EXPECT_EQ(occurrences(ptx, "griddepcontrol"), ordered ? 0u : 1u) << c.describe();
      const std::size_t acquire = ptx.find("ld.acquire.gpu"), reduce = ptx.find("cp.reduce.async.bulk.tensor"), release = ptx.find("red.release.gpu");
      EXPECT_LT(reduce, release) << c.describe();
      if (ordered) EXPECT_LT(acquire, reduce) << c.describe();
    }
}

// The wgmma and barrier instructions of a PTX text in order, by kind: "rs" (register-A wgmma: dV,
// dK), "ss" (shared-memory operands, not transposed: S^T, dP^T), "ss-t" (both transposed: dQ),
// "bar", "wait0", "wait1".
std::vector<std::string> gemm_sequence(const std::string& ptx) {
  std::vector<std::string> seq;
  std::istringstream in(ptx);
  for (std::string line; std::getline(in, line);) {
    if (line.find("wgmma.mma_async") != std::string::npos) {
      if (line.find("}, {%r") != std::string::npos) seq.push_back("rs");
      else if (line.find("p, 1, 1, 1, 1;") != std::string::npos) seq.push_back("ss-t");
      else if (line.find("p, 1, 1, 0, 0;") != std::string::npos) seq.push_back("ss");
      else seq.push_back("?" + line);
    } else if (line.find("bar.sync") != std::string::npos) {
      seq.push_back("bar");
    } else if (line.find("wgmma.wait_group.sync.aligned 0;") != std::string::npos) {
      seq.push_back("wait0");
    } else if (line.find("wgmma.wait_group.sync.aligned 1;") != std::string::npos) {
      seq.push_back("wait1");
    }
  }
  return seq;
}

// Early scores (e) in the PTX: per step the dK/dV GEMMs (register A), a wait for them, the next
// step's S^T (D/16 shared-memory wgmmas), then the dS barrier and the dQ GEMM (transposed
// operands). Without e the dS barrier follows the dK/dV GEMMs directly and dQ is issued with them
// still in flight.
TEST(Sm90BwdCompile, EarlyScoresIssueTheNextScoresBeforeTheDsBarrier) {
  for (int d : {64, 128})
    for (bool early : {false, true}) {
      const KernelSpec s = bwd_spec(d);
      TileConfig c = base_tile(s);
      c.get<sigjit::Sm90BwdTile>().early_scores = early;
      std::string ptx;
      ASSERT_EQ(compile_problems(s, c, nullptr, &ptx), "") << c.describe();
      const std::vector<std::string> seq = gemm_sequence(ptx);
      const auto last_rs = std::find(seq.rbegin(), seq.rend(), "rs");
      ASSERT_NE(last_rs, seq.rend()) << c.describe() << ": no register-A wgmma (dK/dV)";
      std::vector<std::string> after(last_rs.base(), seq.end());  // what follows the step's last dK/dV wgmma
      const std::vector<std::string> next_scores(d / 16, "ss");
      std::vector<std::string> expected;
      if (early) {
        expected.emplace_back("wait0");
        expected.insert(expected.end(), next_scores.begin(), next_scores.end());
      }
      for (const char* x : {"bar", "ss-t"}) expected.emplace_back(x);
      after.resize(std::min(after.size(), expected.size()));
      EXPECT_EQ(after, expected) << c.describe();
      for (const std::string& kind : seq) EXPECT_NE(kind[0], '?') << kind;
    }
}

// Warpgroup-local dQ (_wl) beside the writer tile it extends (_w), same spec: two more mbarriers
// (warpgroup 0 hands its partial over), warpgroup 1 loads the partial back from the staging tile,
// and at hd 128 each warpgroup's dQ GEMM spans the head dim over its own 64 keys: 4 more m64n128
// k-steps where the writer tile's dQ was m64n64 over 128 keys.
TEST(Sm90BwdCompile, LocalDqHandsThePartialOverAndAddsItInSharedMemory) {
  for (int d : {64, 128}) {
    const KernelSpec s = bwd_spec(d);
    TileConfig writer = base_tile(s);
    writer.get<sigjit::Sm90BwdTile>().bulk_dq = writer.get<sigjit::Sm90BwdTile>().early_scores = false;
    writer.get<sigjit::Sm90BwdTile>().dq_writer = true;
    TileConfig local = writer;
    local.get<sigjit::Sm90BwdTile>().local_dq = true;
    std::string writer_ptx, local_ptx;
    ASSERT_EQ(compile_problems(s, writer, nullptr, &writer_ptx), "") << writer.describe();
    ASSERT_EQ(compile_problems(s, local, nullptr, &local_ptx), "") << local.describe();
    EXPECT_EQ(occurrences(local_ptx, "mbarrier.init"), occurrences(writer_ptx, "mbarrier.init") + 2) << local.describe();
    EXPECT_EQ(occurrences(writer_ptx, "ld.shared.v2.f32"), 0u) << writer.describe();
    EXPECT_GT(occurrences(local_ptx, "ld.shared.v2.f32"), 0u) << local.describe();
    if (d == 128) {
      const std::string n128 = "wgmma.mma_async.sync.aligned.m64n128k16";
      EXPECT_EQ(occurrences(local_ptx, n128), occurrences(writer_ptx, n128) + 4) << local.describe();
    }
  }
}

// The persistent writer (_wp) beside the writer tile it extends (_w), same spec: the writer's
// mbarriers plus the tile queue's four (the next tile's K/V wait on the last step's ring stage, no
// barrier of their own) and 48 bytes more shared memory; tiles claimed with a global atomic past
// the grid's first ones (%nctaid.x), where the one-tile kernel reads its tile from %ctaid.y and
// %ctaid.z; the dQ workspace's zeroing jobs claimed with a second atomic, each counted done with a
// release add that the writer's acquire reads wait for, and, paced (SIGJIT_BWD_DQ_ZERO=paced, a
// launch parameter), held until the tile counter's relaxed reads show their sequence's first tile
// claimed, sleeping between polls (the one-tile writer has none of these).
// Both count each key tile reduced for the convert's handoff with a release add, after a wait for
// the bulk reductions' writes (the plain writer otherwise waits for their reads only), and let the
// convert launch: _wp once its claims run out, _w at its start; _w's wholly padded key blocks
// count at once, with a release add of their own.
TEST(Sm90BwdCompile, PersistentWriterWalksKeyTilesWithTheSameBarriers) {
  for (int d : {64, 128}) {
    const KernelSpec s = bwd_spec_of(d, /*heavy=*/true);  // padded: the wholly padded key blocks' zero rows too
    sigjit::Sm90BwdTile levers;
    levers.dq_writer = true;
    const TileConfig writer = sigjit::sm90_backward_variant(s, levers);
    levers.persistent = true;
    const TileConfig persistent = sigjit::sm90_backward_variant(s, levers);
    std::string writer_ptx, persistent_ptx;
    ASSERT_EQ(compile_problems(s, writer, nullptr, &writer_ptx), "") << writer.describe();
    ASSERT_EQ(compile_problems(s, persistent, nullptr, &persistent_ptx), "") << persistent.describe();
    EXPECT_EQ(occurrences(persistent_ptx, "mbarrier.init"), occurrences(writer_ptx, "mbarrier.init") + 4) << persistent.describe();
    EXPECT_EQ(sigjit::check_config(s, persistent), "");
    EXPECT_EQ(sigjit::smem_bytes(s, persistent), sigjit::smem_bytes(s, writer) + 48);
    EXPECT_EQ(occurrences(persistent_ptx, "atom.global.add.u32"), 2u) << persistent.describe();
    EXPECT_EQ(occurrences(writer_ptx, "atom.global.add.u32"), 0u) << writer.describe();
    EXPECT_EQ(occurrences(persistent_ptx, "red.release.gpu.global.add"), 2u) << persistent.describe();
    EXPECT_EQ(occurrences(writer_ptx, "red.release.gpu.global.add"), 2u) << writer.describe();
    EXPECT_EQ(occurrences(persistent_ptx, "ld.acquire.gpu.global"), 2u) << persistent.describe();
    EXPECT_EQ(occurrences(writer_ptx, "ld.acquire.gpu.global"), 0u) << writer.describe();
    EXPECT_GT(occurrences(persistent_ptx, "ld.relaxed.gpu.global"), 0u) << persistent.describe();
    EXPECT_GT(occurrences(persistent_ptx, "nanosleep"), 0u) << persistent.describe();
    EXPECT_EQ(occurrences(writer_ptx, "ld.relaxed.gpu.global") + occurrences(writer_ptx, "nanosleep"), 0u) << writer.describe();
    for (const std::string* ptx : {&persistent_ptx, &writer_ptx}) {
      EXPECT_EQ(occurrences(*ptx, "cp.async.bulk.wait_group "), 1u) << d;
      EXPECT_EQ(occurrences(*ptx, "griddepcontrol.launch_dependents"), 1u) << d;
    }
    EXPECT_GT(occurrences(persistent_ptx, "%nctaid.x"), 0u) << persistent.describe();
    EXPECT_EQ(occurrences(writer_ptx, "%nctaid.x"), 0u) << writer.describe();
    EXPECT_EQ(occurrences(persistent_ptx, "%ctaid.y") + occurrences(persistent_ptx, "%ctaid.z"), 0u) << persistent.describe();
    EXPECT_GT(occurrences(writer_ptx, "%ctaid.z"), 0u) << writer.describe();
  }
}

// SIGJIT_TRACE_TILES builds record each key tile (common/params.h's SigjitTileTrace) in a module
// global that kernels/launch.cpp finds by name: the consumers' begin, K/V ready, steps done and
// end, and the writer's reduction, five timer reads, in the persistent and the one-tile writer
// kernels. It changes the
// binary, so it is a compile option (and the cache key's); without it no timer or global is left.
TEST(Sm90BwdCompile, TileTraceIsCompiledInOnlyWhenAsked) {
  const KernelSpec s = bwd_spec(128);
  sigjit::Sm90BwdTile levers;
  levers.dq_writer = true;
  for (const bool persistent : {false, true}) {
    levers.persistent = persistent;
    const TileConfig config = sigjit::sm90_backward_variant(s, levers);
    for (const bool traced : {false, true}) {
      const sigjit::test::ScopedEnv trace("SIGJIT_TRACE_TILES", traced ? "/tmp/unused-trace.csv" : nullptr);
      EXPECT_EQ(::testing::Matches(::testing::Contains("-DSIGJIT_TRACE_TILES=1"))(sigjit::compile_options(s)), traced);
      const sigjit::CompiledKernel k = sigjit::compile_kernel(s, config);
      EXPECT_EQ(occurrences(k.ptx, "%globaltimer"), traced ? 5u : 0u) << config.describe();
      EXPECT_EQ(occurrences(k.ptx, ".b8 sigjit_tile_trace[3145728]"), traced ? 1u : 0u) << config.describe();
      EXPECT_FALSE(k.resources.has_spills()) << config.describe() << (traced ? " traced" : "");
    }
  }
}

// A dense hd 128 backward call on fake (never dereferenced) device pointers, for launches that
// must be refused before any driver call.
struct FakeBackwardCall {
  sigjit::detail::Resolved r;
  SigjitBwdParams bp;
};

FakeBackwardCall fake_backward_call() {
  sigjit::AttentionArgs a;
  a.batch = 1, a.seqlen_q = a.seqlen_k = 256, a.heads_q = a.heads_kv = 2, a.head_dim = 128;
  a.q = reinterpret_cast<void*>(0x10000), a.k = reinterpret_cast<void*>(0x20000), a.v = reinterpret_cast<void*>(0x30000);
  a.o = reinterpret_cast<void*>(0x40000);
  const sigjit::detail::Resolved r = sigjit::detail::resolve(a);
  sigjit::Gradients g;
  g.dout = reinterpret_cast<void*>(0x50000), g.dq = reinterpret_cast<void*>(0x60000);
  g.dk = reinterpret_cast<void*>(0x70000), g.dv = reinterpret_cast<void*>(0x80000);
  const SigjitBwdParams bp = sigjit::kernels::backward_params(r, sigjit::detail::resolve_gradients(r, g), reinterpret_cast<void*>(0x90000));
  return {r, bp};
}

// An ordered tile (_wd) finds its counters only in the ordered path's workspace
// (enqueue_ordered_backward). Launched any other way (a forced tile on the fast path, an imported
// cache entry in the tuner or `sigjit verify`) it would wait on and write past the end of a
// plain dQ workspace: the family refuses it before any driver call, naming the tile and what to
// do instead.
TEST(Sm90BwdLaunch, AnOrderedTileLaunchesOnlyOnTheOrderedWorkspace) {
  const FakeBackwardCall call = fake_backward_call();
  const sigjit::detail::Resolved& r = call.r;
  const SigjitBwdParams& bp = call.bp;
  const TileConfig ordered = ordered_dq_config(bwd_spec(128));
  const sigjit::detail::LoadedKernel kernel{};  // never launched
  try {
    sigjit::kernels::launch(r, Direction::backward_fused, &bp, kernel, ordered, 0, nullptr);
    ADD_FAILURE() << "launched " << ordered.describe() << " on a plain workspace";
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(ordered.describe() + ": the ordered dQ reduction (_wd) belongs to the deterministic mode"));
    EXPECT_THAT(e.what(), HasSubstr("deterministic=true"));
  }
}

// The persistent tile's switches are refused by name, with the values they take, before any driver
// call: a bad SIGJIT_PERSISTENT_BWD_CTAS in the family's launch, a bad SIGJIT_BWD_DQ_ZERO or
// SIGJIT_BWD_DQ_CONVERT in the fused backward's enqueue (whose zeroing and handoff both kernels'
// launches must agree on).
TEST(Sm90BwdLaunch, PersistentSwitchesAreRefusedByNameBeforeAnyDriverCall) {
  const FakeBackwardCall call = fake_backward_call();
  const sigjit::detail::Resolved& r = call.r;
  const SigjitBwdParams& bp = call.bp;
  sigjit::Sm90BwdTile levers;
  levers.dq_writer = levers.persistent = true;
  const TileConfig persistent = sigjit::sm90_backward_variant(bwd_spec(128), levers);
  const sigjit::detail::LoadedKernel kernel{};  // never launched
  for (const char* bad : {"0", "-3", "many", "1e3"}) {
    const sigjit::test::ScopedEnv ctas("SIGJIT_PERSISTENT_BWD_CTAS", bad);
    try {
      sigjit::kernels::launch(r, Direction::backward_fused, &bp, kernel, persistent, 132, nullptr);
      ADD_FAILURE() << "launched with SIGJIT_PERSISTENT_BWD_CTAS=" << bad;
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string("SIGJIT_PERSISTENT_BWD_CTAS=") + bad + ": expected a positive integer"));
    }
  }
  const struct {
    const char *name, *value, *allowed;
  } switches[] = {{"SIGJIT_BWD_DQ_ZERO", "kernels", "kernel, paced or memset"}, {"SIGJIT_BWD_DQ_CONVERT", "later", "after or overlap"}};
  for (const auto& sw : switches) {
    const sigjit::test::ScopedEnv env(sw.name, sw.value);
    try {
      sigjit::kernels::enqueue_fused_backward(r, bp, kernel, persistent, kernel, 132, nullptr);
      ADD_FAILURE() << "enqueued with " << sw.name << "=" << sw.value;
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string(sw.name) + "=" + sw.value + ": expected " + sw.allowed));
    }
  }
}

// ---- configs ------------------------------------------------------------------------------------

TEST(Sm90BwdConfig, DescribeAndParseRoundTrip) {
  for (const TileConfig& c : {TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true}), TileConfig(sigjit::Sm90BwdTile{128, 1, 3, false}), TileConfig(sigjit::Sm90BwdTile{64, 1, 4, true})}) {
    const TileConfig back = TileConfig::parse(c.describe(), "test");
    EXPECT_EQ(back.describe(), c.describe());
    EXPECT_EQ(back.family(), KernelFamily::sm90_bwd);
    EXPECT_EQ(back.get<sigjit::Sm90BwdTile>().block_k(), 64 * c.get<sigjit::Sm90BwdTile>().consumers);
    EXPECT_EQ(back.get<sigjit::Sm90BwdTile>().block_q, c.get<sigjit::Sm90BwdTile>().block_q);
    EXPECT_EQ(back.get<sigjit::Sm90BwdTile>().consumers, c.get<sigjit::Sm90BwdTile>().consumers);
    EXPECT_EQ(back.get<sigjit::Sm90BwdTile>().stages, c.get<sigjit::Sm90BwdTile>().stages);
    EXPECT_EQ(back.get<sigjit::Sm90BwdTile>().overlap, c.get<sigjit::Sm90BwdTile>().overlap);
    EXPECT_EQ(back.threads(), 128 * (c.get<sigjit::Sm90BwdTile>().consumers + 1));
  }
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}).describe(), "hb128x64c2s2");
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true}).describe(), "hb128x64c2s2o");
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{128, 1, 3, false}).describe(), "hb64x128c1s3");
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, true}).describe(), "hb128x64c2s2o_r");
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{128, 2, 2, false, true}).describe(), "hb128x128c2s2_r");
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, true, true}).describe(), "hb128x64c2s2oe_r");
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{128, 2, 3, false, false, true}).describe(), "hb128x128c2s3e");
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, true, true}).describe(), "hb128x64c2s2oe_w");
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, false, true, true}).describe(), "hb128x64c2s2o_wd");
  EXPECT_TRUE(TileConfig::parse("hb128x128c2s2e_wd", "test").get<sigjit::Sm90BwdTile>().ordered_dq);
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, false, true, false, true}).describe(), "hb128x64c2s2o_wl");
  const sigjit::Sm90BwdTile local = TileConfig::parse("hb128x128c2s2_wl", "test").get<sigjit::Sm90BwdTile>();
  EXPECT_TRUE(local.local_dq && local.dq_writer && !local.ordered_dq && !local.early_scores);
  EXPECT_EQ(TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, false, true, false, false, true}).describe(), "hb128x64c2s2o_wp");
  const sigjit::Sm90BwdTile persistent = TileConfig::parse("hb128x128c2s2o_wp", "test").get<sigjit::Sm90BwdTile>();
  EXPECT_TRUE(persistent.persistent && persistent.dq_writer && persistent.overlap && !persistent.local_dq && !persistent.ordered_dq);
  for (const char* text : {"hb128x64c2s2o_r", "hb128x128c2s2_r", "hb128x64c2s3o", "hb128x64c2s2oe_r", "hb128x128c2s2e_r", "hb64x64c1s2e",
                           "hb128x64c2s2o_w", "hb128x128c2s2e_w"}) {
    const TileConfig back = TileConfig::parse(text, "test");
    EXPECT_EQ(back.describe(), text);
    EXPECT_EQ(back.get<sigjit::Sm90BwdTile>().bulk_dq, std::string(text).find("_r") != std::string::npos) << text;
    EXPECT_EQ(back.get<sigjit::Sm90BwdTile>().early_scores, std::string(text).find('e') != std::string::npos) << text;
    EXPECT_EQ(back.get<sigjit::Sm90BwdTile>().dq_writer, std::string(text).find("_w") != std::string::npos) << text;
  }
  // The family is part of the kernel name (and so of the cache key).
  const KernelSpec s = bwd_spec(128);
  EXPECT_THAT(sigjit::kernel_name(s, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false})), HasSubstr("_hb128x64c2s2_sm_90a"));
  EXPECT_THAT(sigjit::kernel_name(s, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true})), HasSubstr("_hb128x64c2s2o_sm_90a"));
}

TEST(Sm90BwdConfig, ParseRejectsMalformedAndInconsistentStrings) {
  const auto message = sigjit::testing::tile_parse_error;
  EXPECT_THAT(message("hb96x64c2s2"), HasSubstr("64 per consumer warpgroup"));
  EXPECT_THAT(message("hb128x64c2"), HasSubstr("hb<KEYS>x<QUERIES>c<CONSUMERS>s<STAGES>"));
  EXPECT_THAT(message("hb128x64c2s2oo"), HasSubstr("SIGJIT_FORCE_TILE 'hb128x64c2s2oo'"));
  EXPECT_THAT(message("hb128x64c2s2_ro"), HasSubstr("expected"));  // suffixes in a fixed order
  EXPECT_THAT(message("hb128x64c2s2o_r_r"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2eo"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2oee"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2o_re"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2_r_w"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2_we"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2_rd"), HasSubstr("expected"));  // d orders the writer's reductions only
  EXPECT_THAT(message("hb128x64c2s2od"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2ol"), HasSubstr("expected"));  // l sums in the writer's staging tile: _wl only
  EXPECT_THAT(message("hb128x64c2s2_rl"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2_wdl"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2op"), HasSubstr("expected"));  // p: the writer's persistent schedule, _wp only
  EXPECT_THAT(message("hb128x64c2s2_rp"), HasSubstr("expected"));
  EXPECT_THAT(message("hb128x64c2s2_wpd"), HasSubstr("expected"));
}

TEST(Sm90BwdConfig, CheckConfigRejectsWithAReason) {
  struct Bad {
    const char* arch;
    int head_dim;
    Direction direction;
    TileConfig config;
    const char* reason;
  };
  const Bad bad[] = {
      {"sm_90", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}), "needs arch sm_90a"},
      {"sm_80", 64, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}), "needs arch sm_90a"},
      {"sm_90a", 96, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}), "head_dim=96"},
      {"sm_90a", 256, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}), "head_dim=256"},
      {"sm_90a", 128, Direction::backward_dkdv, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}), "fused backward kernel only"},
      {"sm_90a", 128, Direction::forward, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}), "fused backward kernel only"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{96, 2, 2, false}), "query block=96"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 3, 2, false}), "consumers=3"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 5, false}), "stages=5"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{128, 2, 4, false}), "shared memory"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{128, 1, 2, false}), "registers"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 1, 2, false}),
       "registers"},  // dQ of 128 columns in one warpgroup
      {"sm_90a", 64, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}),
       "64-column swizzle block"},  // 32 dQ columns each
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, true, false, true}), "exclude each other"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 3, true, false, false, true}), "shared memory"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, true, false, false, true}),
       "writer warp's"},
      // Warpgroup-local dQ (_wl): the writer's, two consumers, neither early scores nor the ordered reduction.
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, false, false, false, true}),
       "not l without _w"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, false, true, true, true}),
       "pick one"},
      {"sm_90a", 64, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{128, 2, 2, false, false, true, true, false, true}),
       "early scores"},
      {"sm_90a", 64, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{128, 1, 2, false, false, false, true, false, true}),
       "sums the partials of 2"},
      // The persistent schedule (_wp): the plain writer's.
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, true, true, false, false, true}),
       "the persistent schedule is the plain dQ writer's"},
      {"sm_90a", 128, Direction::backward_fused, TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, false, false, false, false, true}),
       "the persistent schedule is the plain dQ writer's"},
  };
  for (const Bad& b : bad) {
    KernelSpec s = bwd_spec(b.head_dim, b.arch);
    s.direction = b.direction;
    EXPECT_THAT(sigjit::check_config(s, b.config), HasSubstr(b.reason)) << b.config.describe() << " " << b.arch;
    try {
      sigjit::compile_kernel(s, b.config);
      ADD_FAILURE() << "compiled " << b.config.describe();
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("is invalid")) << b.config.describe();
    }
  }
  for (int d : {64, 128}) EXPECT_EQ(sigjit::check_config(bwd_spec(d), sigjit::default_sm90_backward_config(bwd_spec(d))), "") << d;
  // The defaults issue 21's measurements chose (bench/PROFILE-backward.md): the overlapped dQ
  // writer at every length, 64-query steps at hd 128 (H100 2026-12-05), 128 at hd 64 (H200 2026-12-06).
  // The persistent writer (_wp) at hd 64 up to 2k keys, every layout and causal too (H100
  // 2026-12-06), except where it spills (the exact sigmoid without causal masking); at hd 128,
  // since it zeroes its own dQ workspace, up to 8k keys without causal masking (H100 2026-12-06,
  // sixth session: causal it trailed _w).
  const auto persistent_default = [](int d, sigjit::SeqBucket b, bool causal, bool exact) {
    const bool short_bucket = b == sigjit::SeqBucket::up_to_512 || b == sigjit::SeqBucket::up_to_2k;
    if (d == 64) return short_bucket && (causal || !exact);
    return !causal && (short_bucket || b == sigjit::SeqBucket::up_to_8k);
  };
  for (const auto& [d, tile] : {std::pair{128, "hb128x64c2s2o_w"}, std::pair{64, "hb128x128c2s2o_w"}}) {
    KernelSpec s = bwd_spec(d);
    for (sigjit::SeqBucket b : {sigjit::SeqBucket::up_to_512, sigjit::SeqBucket::up_to_2k, sigjit::SeqBucket::up_to_8k,
                                sigjit::SeqBucket::over_8k}) {
      s.bucket = b;
      for (bool causal : {false, true})
        for (bool exact : {false, true})
          for (sigjit::Layout layout : {sigjit::Layout::padded, sigjit::Layout::varlen, sigjit::Layout::dense}) {
            KernelSpec other = s;
            other.causal = causal;
            other.layout = layout;
            other.sigmoid = exact ? sigjit::SigmoidMode::exact : sigjit::SigmoidMode::fast;
            EXPECT_EQ(sigjit::default_sm90_backward_config(other).describe(),
                      std::string(tile) + (persistent_default(d, b, causal, exact) ? "p" : ""))
                << other.describe();
          }
    }
  }
  // _r belongs to the sm90 backward family only: another family's tile has no such field
  // (kernels/tile_config.hpp), and its grammar no such suffix.
  EXPECT_THROW(TileConfig::parse("h128x128c2s2o_r", "test"), sigjit::Error);
  EXPECT_THROW(TileConfig::parse("m128n32w8s2qs_r", "test"), sigjit::Error);
}

// The deterministic mode and the forced GPU suites take their tiles from sm90_backward_variant:
// the default's shape with their dQ path, where at hd 64 only the plain writer (the default
// itself) overlaps, since overlap with atomics or _r spills with the exact sigmoid there.
TEST(Sm90BwdConfig, VariantsKeepTheDefaultShapeAndOverlapOnlyWhereItCompilesClean) {
  auto variant = [](int d, bool bulk_dq, bool early_scores, bool dq_writer, bool ordered_dq) {
    sigjit::Sm90BwdTile levers;
    levers.bulk_dq = bulk_dq;
    levers.early_scores = early_scores;
    levers.dq_writer = dq_writer;
    levers.ordered_dq = ordered_dq;
    return sigjit::sm90_backward_variant(bwd_spec(d), levers).describe();
  };
  EXPECT_EQ(variant(64, false, false, true, false), "hb128x128c2s2o_w");  // the default's, without the persistent schedule
  EXPECT_EQ(variant(64, false, false, false, false), "hb128x128c2s2");
  EXPECT_EQ(variant(64, true, false, false, false), "hb128x128c2s2_r");
  EXPECT_EQ(variant(64, false, true, true, false), "hb128x128c2s2e_w");
  EXPECT_EQ(variant(64, false, true, true, true), "hb128x128c2s2e_wd");  // the deterministic mode's, as measured
  EXPECT_EQ(variant(128, false, false, true, false), "hb128x64c2s2o_w");
  EXPECT_EQ(variant(128, true, false, false, false), "hb128x64c2s2o_r");
  EXPECT_EQ(variant(128, false, true, true, true), "hb128x64c2s2oe_wd");
  sigjit::Sm90BwdTile persistent;
  persistent.dq_writer = persistent.persistent = true;
  EXPECT_EQ(sigjit::sm90_backward_variant(bwd_spec(64), persistent).describe(), "hb128x128c2s2o_wp");
  EXPECT_EQ(sigjit::sm90_backward_variant(bwd_spec(128), persistent).describe(), "hb128x64c2s2o_wp");
}

using sigjit::testing::expect_templates_reject;

TEST(Sm90BwdConfig, TemplateStaticAssertsRejectForcedBadConfigs) {
  expect_templates_reject({
      {bwd_spec(128), TileConfig(sigjit::Sm90BwdTile{64, 3, 2, false}), "sm90 backward: 1 or 2 consumer warpgroups"},
      {bwd_spec(96), TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}), "sm90 backward: head dim 64 or 128"},
      {bwd_spec(128), TileConfig(sigjit::Sm90BwdTile{96, 2, 2, false}), "sm90 backward BLOCK_M: 64 or 128"},
      {bwd_spec(128), TileConfig(sigjit::Sm90BwdTile{128, 2, 4, false}), "exceeds the 227 KB of shared memory"},
      {bwd_spec(128), TileConfig(sigjit::Sm90BwdTile{128, 1, 2, false}), "would spill"},
      {bwd_spec(64), TileConfig(sigjit::Sm90BwdTile{64, 2, 2, false}), "the dQ split needs whole 64-column blocks"},
      {bwd_spec(128), TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, true, false, true}),
       "the dQ writer (_w) replaces the consumers' bulk reductions"},
      {bwd_spec(128), TileConfig(sigjit::Sm90BwdTile{64, 2, 3, true, false, false, true}), "exceeds the 227 KB of shared memory"},
      {bwd_spec(128), TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, false, false, true}), "is the dQ writer's (_wd)"},
      {bwd_spec(64), TileConfig(sigjit::Sm90BwdTile{128, 2, 2, false, false, true, true, false, true}),
       "warpgroup-local dQ (_wl) is the dQ writer's"},
      {bwd_spec(128), TileConfig(sigjit::Sm90BwdTile{64, 2, 2, true, false, true, true, false, false, true}),
       "the persistent schedule (_wp) is the plain dQ writer's"},
  });
}

TEST(Sm90BwdConfig, GateKeepsTheFamilyOutOfDefaultsAndCandidates) {
  for (int d : {64, 128}) {
    const KernelSpec s = bwd_spec(d);
    EXPECT_TRUE(sigjit::sm90_backward_supports(s)) << d;
    int sm90_bwd = 0;
    for (const TileConfig& c : sigjit::candidate_configs(s)) {
      EXPECT_EQ(sigjit::check_config(s, c), "") << c.describe();
      sm90_bwd += c.family() == KernelFamily::sm90_bwd;
    }
    EXPECT_EQ(sigjit::default_config(s).family(), KernelFamily::sm90_bwd) << d;
    EXPECT_GT(sm90_bwd, 0) << d;
    // The levers (e, _w) are tiles the tuner times once the device has verified them (it has:
    // kSm90BackwardLeversVerified); until then no candidate has one. The base tile with e and
    // with e_w is a tile, and
    // every tile with e also comes without it.
    for (const TileConfig& c : sigjit::candidate_configs(s)) {
      if (c.family() != KernelFamily::sm90_bwd || sigjit::kSm90BackwardLeversVerified) continue;
      EXPECT_FALSE(c.get<sigjit::Sm90BwdTile>().early_scores || c.get<sigjit::Sm90BwdTile>().dq_writer) << c.describe();
    }
    std::set<std::string> names;
    for (const TileConfig& c : sigjit::sm90_backward_tiles(s, /*with_levers=*/true, /*with_local_dq=*/true)) names.insert(c.describe());
    TileConfig lever = base_tile(s);
    lever.get<sigjit::Sm90BwdTile>().early_scores = true;
    EXPECT_EQ(names.count(lever.describe()), 1u) << lever.describe();
    lever.get<sigjit::Sm90BwdTile>().bulk_dq = false;
    lever.get<sigjit::Sm90BwdTile>().dq_writer = true;
    EXPECT_EQ(names.count(lever.describe()), 1u) << lever.describe();
    for (const std::string& name : names) {
      const std::size_t e = name.find('e');
      if (e == std::string::npos) continue;
      EXPECT_EQ(names.count(name.substr(0, e) + name.substr(e + 1)), 1u) << name;
    }
    EXPECT_EQ(sigjit::sm90_backward_tiles(s, sigjit::kSm90BackwardLeversVerified, sigjit::kSm90BackwardLocalDqVerified,
                                          sigjit::kSm90BackwardPersistentVerified)
                  .size(),
              static_cast<std::size_t>(sm90_bwd))
        << d;
    // The ordered dQ reduction is the deterministic mode's, never a tuner's choice.
    for (const TileConfig& c : sigjit::sm90_backward_tiles(s, /*with_levers=*/true, /*with_local_dq=*/true))
      EXPECT_FALSE(c.get<sigjit::Sm90BwdTile>().ordered_dq);
  }
  // Never for other directions, archs or head dims.
  KernelSpec dkdv = bwd_spec(128);
  dkdv.direction = Direction::backward_dkdv;
  for (const KernelSpec& s : {dkdv, bwd_spec(128, "sm_90"), bwd_spec(96), bwd_spec(256)}) {
    EXPECT_FALSE(sigjit::sm90_backward_supports(s)) << s.describe();
    EXPECT_NE(sigjit::default_config(s).family(), KernelFamily::sm90_bwd) << s.describe();
  }
}

}  // namespace
