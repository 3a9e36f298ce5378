// Backward correctness on the GPU against the fp64 reference gradients: every layout x head dim
// x dtype x causal x bias mode x score bias x GQA (exact sigmoid), fast sigmoid per layout/head
// dim, ragged lengths 1, 17, 200, 1000, 4096 and 16384 (16384 alone and among 1000/17/1, hd 64
// and 128, causal and not, checked on sampled rows and keys: reference_backward_sampled),
// poisoned gradients (every element must be written, sampled or not). Each case runs both
// modes: the fast path (fused kernel + dQ atomics; run twice, so a workspace that was not
// zeroed would double dQ) and the deterministic pair (two runs compared bit for bit). Then: a
// caller's workspace (poisoned before the call), and the library workspace's reuse (allocation
// counts: none in the steady state, one per new stream, growth only for a bigger problem).
#include "tests/gpu/forward_problem.hpp"
#include "tests/gpu/precompile.hpp"

#include "kernels/launch.hpp"
#include "kernels/registry.hpp"
#include "kernels/sm90_bwd.hpp"
#include "runtime/attention.hpp"
#include "problem/call.hpp"
#include "cuda/workspace.hpp"
#include "jit/kernel_table.hpp"
#include "tests/common/scoped_env.hpp"

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <utility>

namespace sigjit::testing {
namespace {

// These tests verify the fused path (on sm_90a at head dims 64/128: the Hopper family, the
// default), whatever SIGJIT_BACKWARD_PATH in the environment would route non-deterministic calls to.
const bool kFusedPathForced = [] { return setenv("SIGJIT_BACKWARD_PATH", "fused", 0) == 0; }();

// For helpers that return a value (gtest's ASSERT needs a void function): throws instead.
#define SIGJIT_CUDA_OK_OR(call)                                                                                \
  do {                                                                                                         \
    const cudaError_t e_ = (call);                                                                             \
    if (e_ != cudaSuccess) throw std::runtime_error(fmt::format("{}: {}", #call, cudaGetErrorString(e_)));     \
  } while (0)

std::vector<CaseSpec> backward_cases() {
  std::vector<CaseSpec> cases;
  for_each_exact_case([&](CaseSpec c) {
    const bool dense = c.layout == Layout::dense, square = (c.head_dim + c.score_bias) % 2 == 0;
    c.lens_q = dense ? std::vector<int>{200, 200} : std::vector<int>{1, 17, 200, 1000};
    c.lens_k = dense ? std::vector<int>{square ? 200 : 333, square ? 200 : 333} : std::vector<int>{1, 30, 200, 777};
    cases.push_back(c);
  });
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {64, 128}) {
      CaseSpec c{layout, hd, DType::bf16, false, BiasMode::log_n, false, true, SigmoidMode::fast};
      c.lens_q = c.lens_k = layout == Layout::dense ? std::vector<int>{4096} : std::vector<int>{4096, 17, 1};
      cases.push_back(c);
    }
  // 16384 tokens, alone (dense) and among ragged lengths; the fp64 reference samples every
  // kLongStep-th query row and key (plus each sequence's first and last 8): 0.7-5.5 CPU seconds a
  // case (measured 2026-11-23 on a 2-core x86 host, hd 128 padded/varlen with GQA the most),
  // spread over all cores.
  constexpr int kLongStep = 64;
  for (Layout layout : {Layout::dense, Layout::padded, Layout::varlen})
    for (int hd : {64, 128})
      for (bool causal : {false, true}) {
        const bool dense = layout == Layout::dense;
        CaseSpec c{layout, hd, DType::bf16, causal, BiasMode::log_n, false, !dense, causal == (hd == 128) ? SigmoidMode::fast : SigmoidMode::exact};
        c.lens_q = c.lens_k = dense ? std::vector<int>{16384} : std::vector<int>{16384, 1000, 17, 1};
        c.row_step = kLongStep;
        cases.push_back(c);
      }
  return cases;
}

class BackwardMatrix : public ::testing::TestWithParam<CaseSpec> {
 public:
  static void SetUpTestSuite() {
    if (gpu_unavailable_reason().empty()) precompile_backward(cases_to_run(backward_cases(), "BackwardMatrix"));
  }
};

// One backward call with the gradients poisoned first; returns the check against fp64.
CaseResult run_and_check(ForwardProblem& problem, const BackwardOptions& options) {
  problem.poison_gradients();
  SIGJIT_CUDA_OK_OR(cudaDeviceSynchronize());
  sigjit::backward(problem.args(), problem.grads(), nullptr, options);
  SIGJIT_CUDA_OK_OR(cudaGetLastError());
  SIGJIT_CUDA_OK_OR(cudaDeviceSynchronize());
  return problem.check_backward();
}

void expect_good(const CaseSpec& spec, const CaseResult& r, const char* mode) {
  fmt::print("[bwd {}] {} rel_error={:.3e} max_abs={:.3e}\n", mode, spec.name(), r.rel_error, r.max_abs_error);
  EXPECT_EQ(r.unwritten, 0) << mode << ": gradient elements left unwritten (still poison)";
  EXPECT_EQ(r.nonzero_padding, 0) << mode << ": padded rows and keys must get exactly zero gradient";
  EXPECT_LT(r.rel_error, backward_error_bound(spec)) << mode;
}

// The deterministic mode twice on the same inputs (gradients poisoned each time): each run against
// fp64, and the second run's gradient bits equal to the first's.
void expect_deterministic_and_bitwise(ForwardProblem& problem, const CaseSpec& spec, const std::string& mode) {
  BackwardOptions det;
  det.deterministic = true;
  CaseResult r;
  ASSERT_NO_THROW(r = run_and_check(problem, det));
  expect_good(spec, r, mode.c_str());
  const std::vector<std::uint16_t> first = problem.gradient_bits();
  ASSERT_NO_THROW(r = run_and_check(problem, det));
  expect_good(spec, r, (mode + "-2nd-run").c_str());
  EXPECT_TRUE(problem.gradient_bits() == first) << mode << ": two runs gave different gradient bits";
}

TEST_P(BackwardMatrix, BothModesMatchFp64ReferenceAndDeterministicIsBitwise) {
  SIGJIT_REQUIRE_GPU();
  const CaseSpec& spec = GetParam();
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  ForwardProblem problem(spec, rng);
  problem.enable_backward(rng);
  BackwardOptions fast;
  for (int run = 0; run < 2; ++run) {  // the second run reuses (and must re-zero) the workspace
    CaseResult r;
    ASSERT_NO_THROW(r = run_and_check(problem, fast));
    expect_good(spec, r, run == 0 ? "atomic" : "atomic-2nd-run");
  }
  expect_deterministic_and_bitwise(problem, spec, "deterministic");
}

INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrix, ::testing::ValuesIn(backward_cases()), case_name);

// ---- the same matrix on the sm90 backward family (sm90/bwd.cuh), forced -------------------------
// The family is the default on sm_90a at head dims 64 and 128 since these suites passed on an
// H100; each variant below is forced on its default tile. Runs on compute capability 9.0 only; cases at head dims the family
// does not support are skipped; every other case must really take the sm90 path (TMA-describable
// tensors, else run_fused would silently fall back to the sm80 fused kernel). The fast path only:
// the deterministic pair does not involve the family.

std::string sm90_backward_unavailable_reason() {
  if (std::string why = gpu_unavailable_reason(); !why.empty()) return why;
  const detail::DeviceInfo dev = detail::current_device();
  if (dev.cc_major != 9 || dev.cc_minor != 0) return fmt::format("the sm90 backward family needs compute capability 9.0, this GPU is {}.{}", dev.cc_major, dev.cc_minor);
  return {};
}

class ScopedForceTile {
 public:
  explicit ScopedForceTile(const std::string& tile) { setenv("SIGJIT_FORCE_TILE", tile.c_str(), 1); }
  ~ScopedForceTile() { unsetenv("SIGJIT_FORCE_TILE"); }
};

// The sm90 family's default tile with each dQ path (per-thread atomics; _r: bulk reductions
// from shared memory; _w: a writer warp's tensor bulk reductions) and with early scores (e: the
// next step's S^T issued before the dS barrier), each a suite of its own so that one can be
// filtered or sharded alone.
template <bool BULK_DQ, bool EARLY_SCORES, bool DQ_WRITER = false, bool LOCAL_DQ = false, bool PERSISTENT = false>
class BackwardMatrixSm90Variant : public ::testing::TestWithParam<CaseSpec> {
 public:
  static constexpr Sm90BwdVariant kVariant{BULK_DQ, EARLY_SCORES, DQ_WRITER, false, LOCAL_DQ, PERSISTENT};
  static void SetUpTestSuite() {
    if (!sm90_backward_unavailable_reason().empty()) return;
    precompile_backward_sm90(cases_to_run(backward_cases(), suite_name()), kVariant);
  }
  static std::string suite_name() {
    if (LOCAL_DQ) return "BackwardMatrixSm90DqWriterLocal";
    if (PERSISTENT) return "BackwardMatrixSm90DqWriterPersistent";
    if (DQ_WRITER) return EARLY_SCORES ? "BackwardMatrixSm90DqWriterEarlyScores" : "BackwardMatrixSm90DqWriter";
    if (EARLY_SCORES) return "BackwardMatrixSm90EarlyScores";
    return BULK_DQ ? "BackwardMatrixSm90BulkDq" : "BackwardMatrixSm90";
  }
};
using BackwardMatrixSm90 = BackwardMatrixSm90Variant<false, false>;
using BackwardMatrixSm90BulkDq = BackwardMatrixSm90Variant<true, false>;
using BackwardMatrixSm90EarlyScores = BackwardMatrixSm90Variant<true, true>;
using BackwardMatrixSm90DqWriter = BackwardMatrixSm90Variant<false, false, true>;
using BackwardMatrixSm90DqWriterEarlyScores = BackwardMatrixSm90Variant<false, true, true>;
// Warpgroup-local dQ (_wl): on the default tile's query block and overlap, without early scores.
using BackwardMatrixSm90DqWriterLocal = BackwardMatrixSm90Variant<false, false, true, true>;
// The persistent writer (_wp) on the default tile's shape, its grid capped at 3 CTAs so that each
// walks many key tiles: wholly padded ones, causal ones without a step, and the stage, phase and
// staging-buffer counts carried across them.
using BackwardMatrixSm90DqWriterPersistent = BackwardMatrixSm90Variant<false, false, true, false, true>;

void run_sm90_backward_case(const CaseSpec& spec, Sm90BwdVariant variant) {
  if (const std::string why = sm90_backward_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 backward test skipped: " << why;
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  KernelSpec ks = case_kernel_spec(spec, detail::current_device(), rng);
  ks.direction = Direction::backward_fused;
  if (!sm90_backward_supports(ks)) GTEST_SKIP() << "the sm90 backward family does not serve " << ks.describe() << " (the sm80 path does)";
  const TileConfig config = sm90_backward_test_config(ks, variant);
  ForwardProblem problem(spec, rng);
  problem.enable_backward(rng);
  {
    const detail::Resolved r = detail::resolve(problem.args());
    const SigjitBwdParams bp = kernels::backward_params(r, detail::resolve_gradients(r, problem.grads()), nullptr);
    ASSERT_EQ(kernels::tma_unsuitable(r, &bp), "") << "this case would fall back to the sm80 fused kernel";
  }
  fmt::print("[bwd sm90] {} with SIGJIT_FORCE_TILE={}\n", spec.name(), config.describe());
  const ScopedForceTile force(config.describe());
  const sigjit::test::ScopedEnv few_ctas("SIGJIT_PERSISTENT_BWD_CTAS", variant.persistent ? "3" : nullptr);
  BackwardOptions fast;
  for (int run = 0; run < 2; ++run) {  // the second run reuses (and must re-zero) the workspace
    CaseResult r;
    ASSERT_NO_THROW(r = run_and_check(problem, fast));
    const std::string mode = "sm90-" + variant.label() + (run == 0 ? "" : "-2nd-run");
    expect_good(spec, r, mode.c_str());
  }
}

TEST_P(BackwardMatrixSm90, FusedSm90MatchesFp64Reference) { run_sm90_backward_case(GetParam(), kVariant); }

TEST_P(BackwardMatrixSm90BulkDq, FusedSm90MatchesFp64Reference) { run_sm90_backward_case(GetParam(), kVariant); }

TEST_P(BackwardMatrixSm90EarlyScores, FusedSm90MatchesFp64Reference) { run_sm90_backward_case(GetParam(), kVariant); }

TEST_P(BackwardMatrixSm90DqWriter, FusedSm90MatchesFp64Reference) { run_sm90_backward_case(GetParam(), kVariant); }

TEST_P(BackwardMatrixSm90DqWriterEarlyScores, FusedSm90MatchesFp64Reference) { run_sm90_backward_case(GetParam(), kVariant); }

TEST_P(BackwardMatrixSm90DqWriterLocal, FusedSm90MatchesFp64Reference) { run_sm90_backward_case(GetParam(), kVariant); }

TEST_P(BackwardMatrixSm90DqWriterPersistent, FusedSm90MatchesFp64Reference) { run_sm90_backward_case(GetParam(), kVariant); }

INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrixSm90, ::testing::ValuesIn(backward_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrixSm90BulkDq, ::testing::ValuesIn(backward_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrixSm90EarlyScores, ::testing::ValuesIn(backward_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrixSm90DqWriter, ::testing::ValuesIn(backward_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrixSm90DqWriterEarlyScores, ::testing::ValuesIn(backward_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrixSm90DqWriterLocal, ::testing::ValuesIn(backward_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrixSm90DqWriterPersistent, ::testing::ValuesIn(backward_cases()), case_name);

// ---- the deterministic mode on the Hopper family: the ordered dQ reduction (_wd) ----------------
// SIGJIT_BACKWARD_PATH=ordered sends deterministic calls to the fused kernel whose dQ writer adds
// in key-block order (their default wherever kSm90BackwardLeversVerified, kernels/sm90_bwd.hpp).
// Every case the family serves must match fp64, give the same gradient bits on a second run (the
// workspace is the library's, zeroed again), and really have run the ordered kernel.
constexpr Sm90BwdVariant kOrdered{false, true, true, true};  // runtime/attention.cpp: ordered_config

class BackwardMatrixOrdered : public ::testing::TestWithParam<CaseSpec> {
 public:
  static void SetUpTestSuite() {
    if (sm90_backward_unavailable_reason().empty()) precompile_backward_sm90(cases_to_run(backward_cases(), "BackwardMatrixOrdered"), kOrdered);
  }
};

TEST_P(BackwardMatrixOrdered, DeterministicModeIsBitwiseAndMatchesFp64Reference) {
  if (const std::string why = sm90_backward_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 backward test skipped: " << why;
  const CaseSpec& spec = GetParam();
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  KernelSpec ks = case_kernel_spec(spec, detail::current_device(), rng);
  ks.direction = Direction::backward_fused;
  if (!sm90_backward_supports(ks)) GTEST_SKIP() << "the sm90 backward family does not serve " << ks.describe() << " (the two-kernel pair does)";
  ForwardProblem problem(spec, rng);
  problem.enable_backward(rng);
  {
    const detail::Resolved r = detail::resolve(problem.args());
    const SigjitBwdParams bp = kernels::backward_params(r, detail::resolve_gradients(r, problem.grads()), nullptr);
    ASSERT_EQ(kernels::tma_unsuitable(r, &bp), "") << "this case would fall back to the two-kernel pair";
  }
  const sigjit::test::ScopedEnv path("SIGJIT_BACKWARD_PATH", "ordered");
  expect_deterministic_and_bitwise(problem, spec, "ordered");
  EXPECT_FALSE(detail::kernel_image(detail::current_device().context, ks, sm90_backward_test_config(ks, kOrdered)).empty())
      << "the ordered kernel was not loaded: the call took another path";
}

INSTANTIATE_TEST_SUITE_P(Matrix, BackwardMatrixOrdered, ::testing::ValuesIn(backward_cases()), case_name);

// ---- the padded dQ rows' zeros from the Hopper fused kernel (SIGJIT_PADDED_DQ_ZERO=fused) -------
// Padded batches whose sequences meet both cases of common/padded_rows.h: wholly padded key blocks
// that zero a share of the padded dQ rows, and a sequence whose keys reach every key block (its
// padded rows stay with the convert kernel); a sequence without queries or keys. Poisoned
// gradients against fp64 on the fast path (the default tile, and a tile of the other key block
// size) and on the ordered deterministic path, whose bits must equal those of the convert kernel's
// zeros: the switch moves zero stores only.
std::vector<CaseSpec> padded_dq_zero_cases() {
  std::vector<CaseSpec> cases;
  for (int hd : {64, 128})
    for (bool causal : {false, true}) {
      CaseSpec c{Layout::padded, hd, DType::bf16, causal, BiasMode::log_n, hd == 128, causal, SigmoidMode::fast};
      c.lens_q = {17, 1000, 1, 200, 0};
      c.lens_k = {777, 30, 1, 300, 0};
      cases.push_back(c);
    }
  CaseSpec ragged{Layout::padded,    128, DType::bf16, false, BiasMode::log_n, false, true, SigmoidMode::fast, {4096, 17, 300, 1},
                  {4096, 17, 300, 1}};
  ragged.row_step = 16;
  cases.push_back(ragged);
  return cases;
}

// A tile the family's tuner may pick whose key block differs from the default's; none where every
// tile of the spec has the default's key block (hd 128: kernels/sm90_bwd.cpp admits no one-consumer
// tile, so every key block there is 128 keys).
std::optional<TileConfig> other_key_block_tile(const KernelSpec& spec) {
  const int block_k = default_sm90_backward_config(spec).get<Sm90BwdTile>().block_k();
  for (const TileConfig& t : sm90_backward_tiles(spec, /*with_levers=*/true, /*with_local_dq=*/false))
    if (t.get<Sm90BwdTile>().block_k() != block_k) return t;
  return std::nullopt;
}

class BackwardPaddedDqZero : public ::testing::TestWithParam<CaseSpec> {
 public:
  static void SetUpTestSuite() {
    if (!sm90_backward_unavailable_reason().empty()) return;
    const std::vector<CaseSpec> cases = cases_to_run(padded_dq_zero_cases(), "BackwardPaddedDqZero");
    precompile_backward(cases);
    precompile_backward_sm90(cases, kOrdered);
  }
};

TEST_P(BackwardPaddedDqZero, FusedKernelZeroesThePaddedRowsTheConvertKernelSkips) {
  if (const std::string why = sm90_backward_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 backward test skipped: " << why;
  const CaseSpec& spec = GetParam();
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  KernelSpec ks = case_kernel_spec(spec, detail::current_device(), rng);
  ks.direction = Direction::backward_fused;
  ASSERT_TRUE(sm90_backward_supports(ks)) << ks.describe();
  ForwardProblem problem(spec, rng);
  problem.enable_backward(rng);
  {
    const detail::Resolved r = detail::resolve(problem.args());
    const SigjitBwdParams bp = kernels::backward_params(r, detail::resolve_gradients(r, problem.grads()), nullptr);
    ASSERT_EQ(kernels::tma_unsuitable(r, &bp), "") << "this case would not take the Hopper kernel";
  }
  BackwardOptions det;
  det.deterministic = true;
  std::vector<std::uint16_t> convert_bits;
  {
    const sigjit::test::ScopedEnv path("SIGJIT_BACKWARD_PATH", "ordered");
    const sigjit::test::ScopedEnv zero("SIGJIT_PADDED_DQ_ZERO", "convert");
    CaseResult r;
    ASSERT_NO_THROW(r = run_and_check(problem, det));
    expect_good(spec, r, "ordered-convert-zeros");
    convert_bits = problem.gradient_bits();
  }
  const sigjit::test::ScopedEnv zero("SIGJIT_PADDED_DQ_ZERO", "fused");
  const std::optional<TileConfig> other = other_key_block_tile(ks);
  if (spec.head_dim == 64) ASSERT_TRUE(other.has_value()) << "hd 64 has tiles of 64 and 128 keys; both must be tested";
  if (!other) std::printf("[padded dq zeros] %s: every tile has the default's key block; one key block size tested\n", spec.name().c_str());
  for (const bool other_tile : {false, true}) {
    if (other_tile && !other) continue;
    std::optional<ScopedForceTile> force;
    if (other_tile) force.emplace(other->describe());
    for (int run = 0; run < 2; ++run) {
      CaseResult r;
      ASSERT_NO_THROW(r = run_and_check(problem, BackwardOptions{}));
      expect_good(spec, r, fmt::format("fused-zeros{}{}", other_tile ? "-other-key-block" : "", run ? "-2nd-run" : "").c_str());
    }
  }
  const sigjit::test::ScopedEnv path("SIGJIT_BACKWARD_PATH", "ordered");
  CaseResult r;
  ASSERT_NO_THROW(r = run_and_check(problem, det));
  expect_good(spec, r, "ordered-fused-zeros");
  EXPECT_TRUE(problem.gradient_bits() == convert_bits) << "the fused kernel's zero rows changed the deterministic gradients";
}

INSTANTIATE_TEST_SUITE_P(Matrix, BackwardPaddedDqZero, ::testing::ValuesIn(padded_dq_zero_cases()), case_name);

// ---- varlen buffers longer than their sequences: zeros past cu_seqlens[batch] ----------------------
// Rows no sequence owns (CaseSpec::varlen_tail, 100 of them in Q/O and K/V) get exact zeros in O,
// dQ, dK and dV on every path (the binding allocates with torch.empty), poisoned before each call:
// the forward, the fast path, the deterministic mode's default, and each path forced (two_kernel,
// ordered). The last sequence has no tokens, so the tail starts where an empty sequence ends.
std::vector<CaseSpec> varlen_tail_cases() {
  std::vector<CaseSpec> cases;
  for (int hd : {64, 128}) {
    CaseSpec c{Layout::varlen, hd,   DType::bf16,       hd == 128,       BiasMode::log_n,
               hd == 128,      true, SigmoidMode::fast, {1, 17, 200, 0}, {1, 30, 200, 0}};
    c.varlen_tail = 100;
    cases.push_back(c);
  }
  return cases;
}

class BackwardVarlenTail : public ::testing::TestWithParam<CaseSpec> {
 public:
  static void SetUpTestSuite() {
    if (!gpu_unavailable_reason().empty()) return;
    const std::vector<CaseSpec> cases = cases_to_run(varlen_tail_cases(), "BackwardVarlenTail");
    precompile_backward(cases);
    if (sm90_backward_unavailable_reason().empty()) precompile_backward_sm90(cases, kOrdered);
  }
};

TEST_P(BackwardVarlenTail, EveryOutputIsZeroPastTheSequences) {
  SIGJIT_REQUIRE_GPU();
  const CaseSpec& spec = GetParam();
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  ForwardProblem problem(spec, rng);
  problem.poison_output();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_NO_THROW(sigjit::forward(problem.args(), nullptr));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const CaseResult fwd = problem.check();
  EXPECT_EQ(fwd.unwritten, 0) << "forward: O rows left unwritten (the tail's included)";
  EXPECT_EQ(fwd.nonzero_padding, 0) << "forward: O rows past cu_seqlens_q[batch] must be exactly zero";
  EXPECT_EQ(fwd.clobbered, 0);
  EXPECT_LT(fwd.rel_error, error_bound(spec));
  problem.enable_backward(rng);
  BackwardOptions det;
  det.deterministic = true;
  for (const char* path : {"fused", "two_kernel", "ordered"}) {
    const sigjit::test::ScopedEnv forced("SIGJIT_BACKWARD_PATH", path);
    CaseResult r;
    // SIGJIT_BACKWARD_PATH routes fused and two_kernel for non-deterministic calls, ordered for deterministic ones.
    ASSERT_NO_THROW(r = run_and_check(problem, std::string(path) == "ordered" ? det : BackwardOptions{})) << path;
    expect_good(spec, r, path);
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, BackwardVarlenTail, ::testing::ValuesIn(varlen_tail_cases()), case_name);

// A forced _wd tile on the fast path would find no counters in its workspace: refused with what
// to do instead, before its launch (tests/cpu: Sm90BwdLaunch covers the family's check itself).
TEST(BackwardOrdered, ForcedOrderedTileOnTheFastPathIsRefused) {
  if (const std::string why = sm90_backward_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 backward test skipped: " << why;
  CaseSpec spec{Layout::dense, 128, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast};
  spec.lens_q = spec.lens_k = {256};
  std::mt19937 rng(7);
  ForwardProblem problem(spec, rng);
  problem.enable_backward(rng);
  KernelSpec ks = case_kernel_spec(spec, detail::current_device(), rng);
  ks.direction = Direction::backward_fused;
  const ScopedForceTile force(sm90_backward_test_config(ks, kOrdered).describe());
  try {
    sigjit::backward(problem.args(), problem.grads(), nullptr, BackwardOptions{});
    ADD_FAILURE() << "the fast path ran an ordered tile";
  } catch (const sigjit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to the deterministic mode"), std::string::npos) << e.what();
  }
}

// The deterministic mode's ordered reduction in a caller's workspace (what the PyTorch binding
// passes, so that a CUDA graph capture allocates nothing outside PyTorch's pool): the workspace
// is poisoned first (the call zeroes it), and the gradients are bitwise those of the library-held
// workspace.
TEST(BackwardOrdered, CallerWorkspaceGivesTheSameBits) {
  if (const std::string why = sm90_backward_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 backward test skipped: " << why;
  CaseSpec spec{Layout::varlen, 128, DType::bf16, true, BiasMode::log_n, true, true, SigmoidMode::exact};
  spec.lens_q = {1, 300, 1000};
  spec.lens_k = {17, 300, 777};
  spec.row_step = 5;
  std::mt19937 rng(11);
  ForwardProblem problem(spec, rng);
  problem.enable_backward(rng);
  BackwardOptions det;
  det.deterministic = true;
  const CaseResult own = run_and_check(problem, det);
  expect_good(spec, own, "ordered-library-workspace");
  const std::vector<std::uint16_t> bits = problem.gradient_bits();
  const std::size_t bytes = sigjit::backward_workspace_size(problem.args(), true);
  ASSERT_GT(bytes, 0u);
  DeviceBuffer workspace(bytes);
  workspace.fill_byte(0x7F);
  det.workspace = workspace.get();
  det.workspace_bytes = bytes;
  const CaseResult caller = run_and_check(problem, det);
  expect_good(spec, caller, "ordered-caller-workspace");
  EXPECT_TRUE(problem.gradient_bits() == bits) << "the caller's workspace changed the deterministic gradients";
}

// ---- top-left causal alignment (CausalAlign::top_left) through every backward kernel ----------
// top_left_cases() (forward_problem.hpp; padded, varlen and dense, lengths differing both ways, a
// sequence without keys and one without queries; not strided) plus a long ragged varlen batch: the
// deterministic pair (two runs bit for bit), the portable fused kernel forced (its default
// config), and on compute capability 9.0 the Hopper fused kernel with each dQ path (atomics,
// bulk row reductions, the writer warp) and early scores, each against the fp64 reference
// gradients, and the deterministic mode on its ordered dQ reduction (two runs bit for bit).

std::vector<CaseSpec> top_left_backward_cases() {
  std::vector<CaseSpec> cases = top_left_cases();
  // Not strided: the backward harness lays dV out like dK (enable_backward), and the strided
  // layout makes K head-major but V contiguous.
  for (CaseSpec& c : cases) c.strided = false;
  for (int hd : {64, 128}) {
    CaseSpec ragged{Layout::varlen,     hd, DType::bf16, true, BiasMode::log_n, false, true, SigmoidMode::fast, {4096, 17, 300, 1},
                    {2000, 1, 4096, 30}};
    ragged.causal_align = CausalAlign::top_left;
    ragged.row_step = 64;
    cases.push_back(ragged);
  }
  return cases;
}

const Sm90BwdVariant kTopLeftSm90Variants[] = {{false, false, false}, {true, false, false}, {true, true, false}, {false, false, true}};

class BackwardTopLeft : public ::testing::TestWithParam<CaseSpec> {
 public:
  static void SetUpTestSuite() {
    if (!gpu_unavailable_reason().empty()) return;
    const std::vector<CaseSpec> cases = cases_to_run(top_left_backward_cases(), "BackwardTopLeft");
    precompile_backward(cases);  // the defaults: the deterministic pair, the fused kernel, dQ convert
    const detail::DeviceInfo dev = detail::current_device();
    std::vector<std::pair<KernelSpec, TileConfig>> work;
    std::mt19937 rng(1);
    for (const CaseSpec& c : cases) {  // the portable fused kernel where the Hopper one is the default
      KernelSpec spec = case_kernel_spec(c, dev, rng);
      spec.direction = Direction::backward_fused;
      work.emplace_back(spec, portable_config(spec));
    }
    precompile_work(work);
    if (sm90_backward_unavailable_reason().empty()) {
      for (const Sm90BwdVariant& variant : kTopLeftSm90Variants) precompile_backward_sm90(cases, variant);
      precompile_backward_sm90(cases, kOrdered);
    }
  }
};

TEST_P(BackwardTopLeft, EveryBackwardKernelMatchesFp64Reference) {
  SIGJIT_REQUIRE_GPU();
  const CaseSpec& spec = GetParam();
  std::mt19937 rng(std::hash<std::string>{}(spec.name()) ^ static_cast<unsigned>(std::random_device{}()));
  KernelSpec ks = case_kernel_spec(spec, detail::current_device(), rng);
  ASSERT_TRUE(ks.top_left()) << ks.describe();
  ForwardProblem problem(spec, rng);
  problem.enable_backward(rng);

  expect_deterministic_and_bitwise(problem, spec, "top-left-deterministic");
  CaseResult r;

  ks.direction = Direction::backward_fused;
  const TileConfig sm80 = portable_config(ks);
  {
    fmt::print("[bwd top-left sm80] {} with SIGJIT_FORCE_TILE={}\n", spec.name(), sm80.describe());
    const ScopedForceTile force(sm80.describe());
    for (int run = 0; run < 2; ++run) {  // the second run reuses (and must re-zero) the workspace
      ASSERT_NO_THROW(r = run_and_check(problem, BackwardOptions{}));
      expect_good(spec, r, run == 0 ? "top-left-sm80-atomic" : "top-left-sm80-atomic-2nd-run");
    }
  }
  if (!sm90_backward_unavailable_reason().empty() || !sm90_backward_supports(ks)) return;  // the sm90 family does not apply here
  for (const Sm90BwdVariant& variant : kTopLeftSm90Variants) {
    const TileConfig config = sm90_backward_test_config(ks, variant);
    const detail::Resolved res = detail::resolve(problem.args());
    const SigjitBwdParams bp = kernels::backward_params(res, detail::resolve_gradients(res, problem.grads()), nullptr);
    ASSERT_EQ(kernels::tma_unsuitable(res, &bp), "") << "this case would fall back to the sm80 fused kernel";
    fmt::print("[bwd top-left sm90] {} with SIGJIT_FORCE_TILE={}\n", spec.name(), config.describe());
    const ScopedForceTile force(config.describe());
    ASSERT_NO_THROW(r = run_and_check(problem, BackwardOptions{}));
    expect_good(spec, r, ("top-left-sm90-" + variant.label()).c_str());
  }
  const sigjit::test::ScopedEnv ordered("SIGJIT_BACKWARD_PATH", "ordered");
  expect_deterministic_and_bitwise(problem, spec, "top-left-sm90-ordered");
}

INSTANTIATE_TEST_SUITE_P(TopLeft, BackwardTopLeft, ::testing::ValuesIn(top_left_backward_cases()), case_name);

CaseSpec workspace_case(int len) {
  CaseSpec c{Layout::padded, 64, DType::bf16, false, BiasMode::log_n, false, true, SigmoidMode::fast};
  c.lens_q = c.lens_k = {len, len / 2 + 1};
  return c;
}

// A caller's workspace: used as given (poisoned with NaN first: the call must zero it), and a
// bigger-than-needed one is fine.
TEST(BackwardWorkspace, CallerWorkspaceIsZeroedAndUsed) {
  SIGJIT_REQUIRE_GPU();
  std::mt19937 rng(7);
  ForwardProblem problem(workspace_case(300), rng);
  problem.enable_backward(rng);
  const std::size_t need = sigjit::backward_workspace_size(problem.args());
  ASSERT_GT(need, 0u);
  void* ws = nullptr;
  SIGJIT_CUDA_OK(cudaMalloc(&ws, need + 4096));
  SIGJIT_CUDA_OK(cudaMemset(ws, 0xFF, need + 4096));
  const long before = detail::workspace_allocation_count();
  BackwardOptions o;
  o.workspace = ws;
  o.workspace_bytes = need + 4096;
  CaseResult r;
  ASSERT_NO_THROW(r = run_and_check(problem, o));
  expect_good(workspace_case(300), r, "atomic-caller-workspace");
  EXPECT_EQ(detail::workspace_allocation_count(), before) << "a caller's workspace must not make the library allocate";
  SIGJIT_CUDA_OK(cudaFree(ws));
}

// A caller's backward workspace of exactly the size the call needs, freed with the scope.
class CallerWorkspace {
 public:
  explicit CallerWorkspace(const AttentionArgs& args) : bytes_(sigjit::backward_workspace_size(args)) {
    if (cudaMalloc(&ptr_, bytes_) != cudaSuccess) throw std::runtime_error("cudaMalloc of the backward workspace failed");
  }
  CallerWorkspace(const CallerWorkspace&) = delete;
  CallerWorkspace& operator=(const CallerWorkspace&) = delete;
  ~CallerWorkspace() { cudaFree(ptr_); }
  BackwardOptions options() const {
    BackwardOptions o;
    o.workspace = ptr_;
    o.workspace_bytes = bytes_;
    return o;
  }
  cudaError_t poison() const { return cudaMemset(ptr_, 0xFF, bytes_); }  // NaN values, counters past any target

 private:
  std::size_t bytes_;
  void* ptr_ = nullptr;
};

// The persistent kernel's counters sit after the dQ values in the caller's workspace, and the
// kernel zeroes the values itself: poisoned (0xFF: NaN values; a claim would start at the grid's
// last tile and take it twice, a zeroing job counted done before it ran), each call must zero
// the counters and every value it reads. Both zeroings (the kernel's warps, and the memset
// SIGJIT_BWD_DQ_ZERO=memset restores), the kernel's paced zeroing (SIGJIT_BWD_DQ_ZERO=paced: each
// sequence's jobs wait for its first tile's claim) and both converts (the handoff, whose CTAs start
// on the SMs the 3 fused CTAs leave free and wait for each sequence's tiles, and the convert after
// the kernel), in every layout; 3 CTAs, so that a few warps do every zeroing job while the writers
// of other sequences wait for theirs (paced: while most sequences are not yet due).
TEST(BackwardWorkspace, PersistentKernelZeroesACallersWorkspace) {
  if (const std::string why = sm90_backward_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 backward test skipped: " << why;
  const std::pair<const char*, const char*> passes[] = {
      {"kernel", "overlap"}, {"memset", "overlap"}, {"kernel", "after"}, {"paced", "after"}, {"paced", "overlap"}};
  for (const auto& [zeroing, convert] : passes)
    for (const Layout layout : {Layout::dense, Layout::padded, Layout::varlen}) {
      SCOPED_TRACE(std::string(zeroing) + " zeroing, convert " + convert + ", layout " + std::to_string(static_cast<int>(layout)));
      CaseSpec spec{layout, 64, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast};
      spec.lens_q = spec.lens_k = {700, 333, 0, 65};
      spec.lens_k[3] = 0;  // queries without keys: dQ zero, read from zeroed rows
      if (layout == Layout::dense) spec.lens_q = spec.lens_k = {700, 700};
      std::mt19937 rng(11);
      ForwardProblem problem(spec, rng);
      problem.enable_backward(rng);
      const ScopedForceTile force("hb128x128c2s2o_wp");
      const sigjit::test::ScopedEnv few_ctas("SIGJIT_PERSISTENT_BWD_CTAS", "3");
      const sigjit::test::ScopedEnv zero("SIGJIT_BWD_DQ_ZERO", zeroing);
      const sigjit::test::ScopedEnv handoff("SIGJIT_BWD_DQ_CONVERT", convert);
      const CallerWorkspace ws(problem.args());
      for (int run = 0; run < 2; ++run) {
        SIGJIT_CUDA_OK(ws.poison());
        CaseResult r;
        ASSERT_NO_THROW(r = run_and_check(problem, ws.options()));
        expect_good(spec, r, "persistent-caller-workspace");
      }
    }
}

// The convert's handoff (the default after the dQ writer tiles, _w and _wp) starts the convert while
// the fused kernel runs; its last CTA waits for that kernel, so the stream's next work still sees
// every gradient: copies enqueued right after the call, dK and dV first (the fused kernel's last
// writes), must read what a device-wide synchronisation reads, and no poison. Then the same call
// captured in a CUDA graph (a programmatic edge) and replayed. Padded, with a sequence shorter than
// a key block (wholly padded key blocks count at once), at hd 64 on both writer tiles.
TEST(BackwardWorkspace, ConvertHandoffKeepsStreamOrderAndCapturesInAGraph) {
  if (const std::string why = sm90_backward_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 backward test skipped: " << why;
  for (const char* tile : {"hb128x128c2s2o_wp", "hb128x128c2s2o_w"}) {
    SCOPED_TRACE(tile);
    CaseSpec spec{Layout::padded, 64, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast};
    spec.lens_q = spec.lens_k = {1000, 333, 17, 640};
    std::mt19937 rng(13);
    ForwardProblem problem(spec, rng);
    problem.enable_backward(rng);
    const ScopedForceTile force(tile);
    const sigjit::test::ScopedEnv handoff("SIGJIT_BWD_DQ_CONVERT", "overlap");
    const CallerWorkspace ws(problem.args());
    const BackwardOptions o = ws.options();
    cudaStream_t stream = nullptr;
    SIGJIT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    problem.poison_gradients();
    SIGJIT_CUDA_OK(cudaDeviceSynchronize());
    ASSERT_NO_THROW(sigjit::backward(problem.args(), problem.grads(), stream, o));
    const std::vector<std::uint16_t> stream_read = problem.gradient_bits(stream);
    SIGJIT_CUDA_OK(cudaDeviceSynchronize());
    EXPECT_TRUE(stream_read == problem.gradient_bits()) << "the stream's next copies saw the gradients before they were written";
    expect_good(spec, problem.check_backward(), "handoff-stream-order");

    AttentionArgs in_graph = problem.args();
    in_graph.validate_lengths = false;  // a capture cannot copy the lengths to the host
    cudaGraph_t graph = nullptr;
    SIGJIT_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    EXPECT_NO_THROW(sigjit::backward(in_graph, problem.grads(), stream, o));
    SIGJIT_CUDA_OK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    SIGJIT_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    for (int replay = 0; replay < 2; ++replay) {
      problem.poison_gradients();
      SIGJIT_CUDA_OK(ws.poison());
      SIGJIT_CUDA_OK(cudaDeviceSynchronize());
      SIGJIT_CUDA_OK(cudaGraphLaunch(exec, stream));
      SIGJIT_CUDA_OK(cudaStreamSynchronize(stream));
      expect_good(spec, problem.check_backward(), "handoff-graph-replay");
    }
    SIGJIT_CUDA_OK(cudaGraphExecDestroy(exec));
    SIGJIT_CUDA_OK(cudaGraphDestroy(graph));
    SIGJIT_CUDA_OK(cudaStreamDestroy(stream));
  }
}

struct TraceRecord {
  long long tile, sm, cta, begin_ns, end_ns, reduced_ns, kv_ready_ns, steps_done_ns;
};

std::vector<TraceRecord> read_tile_trace(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::vector<TraceRecord> rows;
  if (!std::getline(in, line) || line != "tile,sm,cta,begin_ns,end_ns,reduced_ns,kv_ready_ns,steps_done_ns") return rows;
  while (std::getline(in, line)) {
    TraceRecord r{};
    if (std::sscanf(line.c_str(), "%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld", &r.tile, &r.sm, &r.cta, &r.begin_ns, &r.end_ns, &r.reduced_ns,
                    &r.kv_ready_ns, &r.steps_done_ns) == 8)
      rows.push_back(r);
  }
  return rows;
}

// SIGJIT_TRACE_TILES (bench/tile_timeline.py's input): one record per key tile, each tile once,
// on a real SM, with the consumers' marks in order (begin <= K/V ready <= steps done <= end). The writer's end follows the consumers' begin
// (it reduces what they staged) but may precede their end (they still store dK and dV). The
// persistent kernel's 3 CTAs walk their tiles one after another; on the one-tile writer each CTA
// is its tile. The gradients stay right. Dense hd 64, 2 sequences x 2 heads x 6 key blocks of 128
// (700 keys): 24 tiles.
TEST(BackwardTileTrace, RecordsEveryKeyTileOnceInOrderOfItsRoles) {
  if (const std::string why = sm90_backward_unavailable_reason(); !why.empty()) GTEST_SKIP() << "sm90 backward test skipped: " << why;
  int sms = 0;
  SIGJIT_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  for (const char* tile : {"hb128x128c2s2o_wp", "hb128x128c2s2o_w"}) {
    SCOPED_TRACE(tile);
    const bool persistent = std::string(tile).ends_with("_wp");
    CaseSpec spec{Layout::dense, 64, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast};
    spec.lens_q = spec.lens_k = {700, 700};
    std::mt19937 rng(17);
    ForwardProblem problem(spec, rng);
    problem.enable_backward(rng);
    const std::string path = (std::filesystem::temp_directory_path() / fmt::format("sigjit-trace-{}-{}.csv", getpid(), tile)).string();
    std::filesystem::remove(path);
    {
      const ScopedForceTile force(tile);
      const sigjit::test::ScopedEnv trace("SIGJIT_TRACE_TILES", path.c_str());
      const sigjit::test::ScopedEnv few_ctas("SIGJIT_PERSISTENT_BWD_CTAS", persistent ? "3" : nullptr);
      CaseResult r;
      ASSERT_NO_THROW(r = run_and_check(problem, BackwardOptions{}));
      expect_good(spec, r, "traced");
    }
    std::vector<TraceRecord> rows = read_tile_trace(path);
    std::filesystem::remove(path);
    ASSERT_EQ(rows.size(), 24u) << "one record per key tile in " << path;
    std::map<long long, std::vector<TraceRecord>> by_cta;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const TraceRecord& t = rows[i];
      EXPECT_EQ(t.tile, static_cast<long long>(i));
      EXPECT_GT(t.begin_ns, 0);
      EXPECT_LE(t.begin_ns, t.kv_ready_ns) << "tile " << t.tile;
      EXPECT_LE(t.kv_ready_ns, t.steps_done_ns) << "tile " << t.tile;
      EXPECT_LE(t.steps_done_ns, t.end_ns) << "tile " << t.tile;
      EXPECT_LT(t.begin_ns, t.reduced_ns) << "tile " << t.tile << ": the writer ended a tile before its consumers began it";
      EXPECT_LT(t.sm, sms);
      if (!persistent) EXPECT_EQ(t.cta, t.tile);
      by_cta[t.cta].push_back(t);
    }
    if (!persistent) continue;
    EXPECT_EQ(by_cta.size(), 3u) << "SIGJIT_PERSISTENT_BWD_CTAS=3";
    for (auto& [cta, tiles] : by_cta) {
      EXPECT_LT(cta, 3);
      std::sort(tiles.begin(), tiles.end(), [](const TraceRecord& a, const TraceRecord& b) { return a.begin_ns < b.begin_ns; });
      for (std::size_t i = 1; i < tiles.size(); ++i)
        EXPECT_LE(tiles[i - 1].end_ns, tiles[i].begin_ns)
            << "CTA " << cta << " began tile " << tiles[i].tile << " before ending " << tiles[i - 1].tile;
    }
  }
}

// The library's workspace: one allocation per (context, stream), reused by every later call that
// fits, grown once for a bigger problem, allocated again after release_backward_workspaces().
TEST(BackwardWorkspace, LibraryWorkspaceIsReusedPerStream) {
  SIGJIT_REQUIRE_GPU();
  std::mt19937 rng(8);
  ForwardProblem small(workspace_case(200), rng), big(workspace_case(3000), rng);
  small.enable_backward(rng);
  big.enable_backward(rng);
  cudaStream_t stream = nullptr;
  SIGJIT_CUDA_OK(cudaStreamCreate(&stream));
  const auto call = [&](ForwardProblem& p) {
    sigjit::backward(p.args(), p.grads(), stream);
    SIGJIT_CUDA_OK_OR(cudaStreamSynchronize(stream));
  };
  ASSERT_NO_THROW(call(small));  // compiles; allocates on this new stream
  const long first = detail::workspace_allocation_count();
  for (int i = 0; i < 10; ++i) ASSERT_NO_THROW(call(small));
  EXPECT_EQ(detail::workspace_allocation_count(), first) << "steady state: no allocation per call";
  ASSERT_NO_THROW(call(big));
  EXPECT_EQ(detail::workspace_allocation_count(), first + 1) << "a bigger problem grows the workspace once";
  ASSERT_NO_THROW(call(small));
  ASSERT_NO_THROW(call(big));
  EXPECT_EQ(detail::workspace_allocation_count(), first + 1) << "a smaller problem reuses the grown workspace";
  const CaseResult r = big.check_backward();
  expect_good(workspace_case(3000), r, "atomic-library-workspace");
  ASSERT_NO_THROW(sigjit::release_backward_workspaces());
  ASSERT_NO_THROW(call(small));
  EXPECT_EQ(detail::workspace_allocation_count(), first + 2) << "after release the next call allocates again";
  SIGJIT_CUDA_OK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace sigjit::testing
