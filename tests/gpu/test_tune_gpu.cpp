// The tuned cache end to end on the GPU: `sigjit tune` (or SIGJIT_AUTOTUNE=1 on first use) in
// one process, then a fresh process that must serve the tuned kernel from the store with zero
// NVRTC compiles, quickly, correctly, and no slower than the heuristic default at the tuned
// shape; `sigjit verify --gpu` reruns the stored cubins against the default config.
#include "cache/store.hpp"
#include "tune/verify.hpp"
#include "tune/gpu.hpp"
#include "cuda/device.hpp"
#include "jit/kernel_table.hpp"
#include "tests/gpu/forward_problem.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace sigjit::testing {
namespace {

// This test binary as a child command. The child must run its whole filter: gtest's sharding
// variables (scripts/device_run.sh splits the suite with them) would otherwise leave it running
// none of its tests and exiting 0.
std::string self_path() { return "env -u GTEST_TOTAL_SHARDS -u GTEST_SHARD_INDEX " + std::filesystem::read_symlink("/proc/self/exe").string(); }

int run_command(const std::string& cmd) {
  fmt::print("$ {}\n", cmd);
  std::fflush(stdout);
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool is_child(const char* role = "1") {
  const char* v = std::getenv("SIGJIT_TUNED_CHILD");
  return v && std::string(v) == role;
}

bool is_any_child() { return std::getenv("SIGJIT_TUNED_CHILD") != nullptr; }

struct ScratchCache {
  std::filesystem::path dir;
  std::string env;
  explicit ScratchCache(const char* tag)
      : dir(std::filesystem::temp_directory_path() / fmt::format("sigjit-{}-{}", tag, getpid())),
        env(fmt::format("SIGJIT_CACHE_DIR={} ", dir.string())) {
    std::filesystem::remove_all(dir);
  }
  ~ScratchCache() { std::filesystem::remove_all(dir); }
};

// hd 64, dense, bf16, L 2048: bucket le2k. The child uses the same spec on a small batch.
CaseSpec tuned_case() {
  CaseSpec c{Layout::dense, 64, DType::bf16, false, BiasMode::log_n, false, false, SigmoidMode::fast, {2048}, {2048}};
  c.row_step = 97;
  return c;
}

// One forward of case c through the public API on poisoned output, checked against fp64, with the
// NVRTC compile count so far (void: its CUDA checks are fatal assertions).
struct ServedForward {
  CaseResult result;
  int compiles = 0;
};

void forward_once(const CaseSpec& c, ServedForward& out) {
  std::mt19937 rng(std::random_device{}());
  ForwardProblem p(c, rng);
  p.poison_output();
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  sigjit::forward(p.args(), nullptr);
  SIGJIT_CUDA_OK(cudaGetLastError());
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  out = {p.check(), static_cast<int>(detail::compile_count())};
}

TEST(TunedCache, TuneThenFreshProcessCompilesNothing) {
  SIGJIT_REQUIRE_GPU();
  if (is_any_child()) GTEST_SKIP() << "parent test only";
  const ScratchCache cache("tune-test");
  const std::string& env = cache.env;
  ASSERT_EQ(run_command(env + SIGJIT_CLI_PATH + " tune --head-dim 64 --layout dense --seq 2048 --dtype bf16 --seconds-per-candidate 0.3"), 0);
  ASSERT_EQ(run_command(env + SIGJIT_CLI_PATH + " list"), 0);
  ASSERT_EQ(run_command(env + SIGJIT_CLI_PATH + " verify"), 0);
  ASSERT_EQ(run_command(env + SIGJIT_CLI_PATH + " verify --gpu"), 0);
  cache::Store store(cache.dir);
  const auto entries = store.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].entry.tuned);
  EXPECT_GT(entries[0].entry.tflops, 0);
  EXPECT_EQ(run_command(env + "SIGJIT_TUNED_CHILD=1 " + self_path() + " --gtest_filter='TunedCacheChild.*'"), 0);
}

// `sigjit tune --direction bwd`: the fused backward kernel is tuned (every candidate's gradients
// checked against the default config's), stored with the dQ convert kernel, re-checked by
// `verify --gpu`, and a fresh process's backward then compiles nothing and is correct.
TEST(TunedCache, BackwardTuneThenFreshProcessCompilesNothing) {
  SIGJIT_REQUIRE_GPU();
  if (is_any_child()) GTEST_SKIP() << "parent test only";
  const ScratchCache cache("tune-bwd-test");
  const std::string& env = cache.env;
  ASSERT_EQ(run_command(env + SIGJIT_CLI_PATH + " tune --direction bwd --head-dim 64 --layout dense --seq 2048 --seconds-per-candidate 0.3"), 0);
  ASSERT_EQ(run_command(env + SIGJIT_CLI_PATH + " verify --gpu"), 0);
  cache::Store store(cache.dir);
  std::map<std::string, cache::Entry> by_direction;
  for (const auto& l : store.list()) by_direction[l.entry.spec.at("direction").get<std::string>()] = l.entry;
  ASSERT_EQ(by_direction.size(), 2u);
  ASSERT_TRUE(by_direction.count("bwd_fused") && by_direction.count("bwd_dq_convert"));
  EXPECT_TRUE(by_direction["bwd_fused"].tuned);
  EXPECT_GT(by_direction["bwd_fused"].tflops, 0);
  EXPECT_FALSE(by_direction["bwd_dq_convert"].tuned);
  EXPECT_EQ(run_command(env + "SIGJIT_TUNED_CHILD=bwd " + self_path() + " --gtest_filter='TunedBackwardChild.*'"), 0);
}

TEST(TunedBackwardChild, BackwardServedFromStoreWithoutCompiling) {
  if (!is_child("bwd")) GTEST_SKIP() << "runs in the child process of TunedCache.BackwardTuneThenFreshProcessCompilesNothing";
  SIGJIT_REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  CaseSpec c = tuned_case();
  c.lens_q = c.lens_k = {600};  // bucket le2k as tuned; short enough for the fp64 reference backward
  c.row_step = 1;
  ForwardProblem p(c, rng);
  p.enable_backward(rng);
  p.poison_gradients();
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  sigjit::backward(p.args(), p.grads(), nullptr);
  SIGJIT_CUDA_OK(cudaGetLastError());
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(detail::compile_count(), 0) << "the tuned fused kernel and the convert kernel must come from the store";
  const CaseResult r = p.check_backward();
  EXPECT_EQ(r.unwritten, 0);
  EXPECT_LT(r.rel_error, backward_error_bound(c));
}

// `sigjit tune --dtype fp8` (issue 22: FP8 through the tuner): the FP8 family's candidates timed
// on e4m3 inputs, each checked against the default config, the winner stored with its V^T
// prologue in the same module; `verify --gpu` re-runs it; a fresh process's padded FP8 forward
// then compiles nothing and matches fp64 of the dequantized inputs.
CaseSpec fp8_tuned_case() {
  CaseSpec c{Layout::padded, 128, DType::fp8_e4m3, false, BiasMode::log_n, false, false, SigmoidMode::fast, {1500, 700}, {1500, 700}};
  c.row_step = 37;
  return c;
}

std::string fp8_unavailable_reason() {
  if (std::string why = gpu_unavailable_reason(); !why.empty()) return why;
  const detail::DeviceInfo dev = detail::current_device();
  if (dev.cc_major != 9 || dev.cc_minor != 0)
    return fmt::format("FP8 runs on compute capability 9.0 (Hopper); this GPU is {}.{}", dev.cc_major, dev.cc_minor);
  return {};
}

TEST(TunedCache, Fp8TuneThenFreshProcessCompilesNothing) {
  if (const std::string why = fp8_unavailable_reason(); !why.empty()) GTEST_SKIP() << "FP8 tuning test skipped: " << why;
  if (is_any_child()) GTEST_SKIP() << "parent test only";
  const ScratchCache cache("tune-fp8-test");
  const std::string& env = cache.env;
  ASSERT_EQ(run_command(env + SIGJIT_CLI_PATH + " tune --dtype fp8 --head-dim 128 --layout padded --seq 1500 --seconds-per-candidate 0.2"),
            0);
  ASSERT_EQ(run_command(env + SIGJIT_CLI_PATH + " verify --gpu"), 0);
  cache::Store store(cache.dir);
  const auto entries = store.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].entry.tuned);
  EXPECT_EQ(entries[0].entry.spec.at("dtype").get<std::string>(), "fp8");
  EXPECT_EQ(entries[0].entry.config.rfind('h', 0), 0u) << "an FP8 entry must hold a Hopper-family config: " << entries[0].entry.config;
  EXPECT_GT(entries[0].entry.tflops, 0);
  EXPECT_EQ(run_command(env + "SIGJIT_TUNED_CHILD=fp8 " + self_path() + " --gtest_filter='TunedFp8Child.*'"), 0);
}

TEST(TunedFp8Child, ServedFromStoreWithoutCompiling) {
  if (!is_child("fp8")) GTEST_SKIP() << "runs in the child process of TunedCache.Fp8TuneThenFreshProcessCompilesNothing";
  SIGJIT_REQUIRE_GPU();
  ServedForward f;
  ASSERT_NO_FATAL_FAILURE(forward_once(fp8_tuned_case(), f));
  EXPECT_EQ(f.compiles, 0) << "the tuned FP8 kernel must come from the store";
  EXPECT_EQ(f.result.unwritten, 0);
  EXPECT_EQ(f.result.nonzero_padding, 0);
  EXPECT_LT(f.result.rel_error, error_bound(fp8_tuned_case()));
}

// SIGJIT_AUTOTUNE=1: the first forward of an untuned spec tunes it, answers correctly and
// stores a tuned entry; a fresh process without the variable then compiles nothing.
TEST(Autotune, FirstUseTunesStoresAndIsReused) {
  SIGJIT_REQUIRE_GPU();
  if (is_any_child()) GTEST_SKIP() << "parent test only";
  const ScratchCache cache("autotune-test");
  ASSERT_EQ(run_command(cache.env + "SIGJIT_AUTOTUNE=1 SIGJIT_TUNED_CHILD=autotune " + self_path() + " --gtest_filter='AutotuneChild.*'"), 0);
  cache::Store store(cache.dir);
  const auto entries = store.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].entry.tuned) << "SIGJIT_AUTOTUNE=1 must store a tuned entry, not the default";
  EXPECT_EQ(run_command(cache.env + "SIGJIT_TUNED_CHILD=1 " + self_path() + " --gtest_filter='TunedCacheChild.FirstCall*'"), 0);
}

TEST(AutotuneChild, TunesOnFirstUseAndAnswersCorrectly) {
  if (!is_child("autotune")) GTEST_SKIP() << "runs in the child process of Autotune.FirstUseTunesStoresAndIsReused";
  SIGJIT_REQUIRE_GPU();
  ServedForward f;
  ASSERT_NO_FATAL_FAILURE(forward_once(tuned_case(), f));
  EXPECT_GT(f.compiles, 1) << "tuning compiles several candidates";
  EXPECT_EQ(f.result.unwritten, 0);
  EXPECT_LT(f.result.rel_error, error_bound(tuned_case()));
}

TEST(TunedCacheChild, FirstCallServedFromStoreWithoutCompiling) {
  if (!is_child()) GTEST_SKIP() << "runs in the child process of TunedCache.TuneThenFreshProcessCompilesNothing";
  SIGJIT_REQUIRE_GPU();
  std::mt19937 rng(std::random_device{}());
  ForwardProblem p(tuned_case(), rng);
  SIGJIT_CUDA_OK(cudaFree(nullptr));  // context creation is the host application's cost, not sigjit's
  p.poison_output();
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  const auto t0 = std::chrono::steady_clock::now();
  sigjit::forward(p.args(), nullptr);
  SIGJIT_CUDA_OK(cudaDeviceSynchronize());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("first call with a warm cache: {:.1f} ms (NVRTC compiles: {})\n", ms, detail::compile_count());
  RecordProperty("first_call_ms", fmt::format("{:.1f}", ms));
  EXPECT_EQ(detail::compile_count(), 0) << "the tuned kernel must come from the store";
  EXPECT_LT(ms, 50.0);
  const CaseResult r = p.check();
  EXPECT_EQ(r.unwritten, 0);
  EXPECT_LT(r.rel_error, error_bound(tuned_case()));
}

TEST(TunedCacheChild, TunedConfigNotSlowerThanDefault) {
  if (!is_child()) GTEST_SKIP() << "runs in the child process of TunedCache.TuneThenFreshProcessCompilesNothing";
  SIGJIT_REQUIRE_GPU();
  const detail::DeviceInfo dev = detail::current_device();
  cache::Store store(cache::Store::default_root());
  const auto entries = store.list();
  ASSERT_EQ(entries.size(), 1u);
  const KernelSpec spec = spec_from_json(entries[0].entry.spec);
  const TileConfig tuned = TileConfig::parse(entries[0].entry.config, "entry");
  const TileConfig fallback = default_config(spec);
  const tuner::Samples t = sigjit::tuner::measure_config(dev, spec, tuned, 30);
  const tuner::Samples d = sigjit::tuner::measure_config(dev, spec, fallback, 30);
  fmt::print("tuned {} {:.4f} ms (spread {:.3f}) vs default {} {:.4f} ms (spread {:.3f})\n", tuned.describe(), t.median(), t.spread(),
             fallback.describe(), d.median(), d.spread());
  EXPECT_LE(t.median(), d.median() * (1.0 + t.spread() + d.spread()));
}

// Issue 18 on the GPU. A stored entry whose cubin does not load (here: bytes that are no cubin,
// under a valid digest, as a hostile bundle or a damaged disk could leave them) is found by
// `verify --gpu`, which runs the cached bytes themselves, fails that entry, and heals it with a
// fresh compile of its config; a second `verify --gpu` then passes, and a fresh process serves
// the healed kernel correctly without compiling.
TEST(TunedCache, VerifyGpuHealsACubinThatDoesNotLoad) {
  SIGJIT_REQUIRE_GPU();
  if (is_any_child()) GTEST_SKIP() << "parent test only";
  const ScratchCache cache("heal-test");
  const std::string& env = cache.env;
  // One forward in a child stores the default kernel (an untuned local entry).
  ASSERT_EQ(run_command(env + "SIGJIT_TUNED_CHILD=serve " + self_path() + " --gtest_filter='ServeChild.*'"), 0);
  cache::Store store(cache.dir);
  auto entries = store.list();
  ASSERT_EQ(entries.size(), 1u);
  const std::string junk = "not a cubin: issue 18's heal test";
  cache::Entry broken = entries[0].entry;
  broken.cubin_sha256 = store.put_blob(std::vector<char>(junk.begin(), junk.end()));
  ASSERT_TRUE(store.replace_if_current(entries[0].fingerprint, broken, entries[0].entry.cubin_sha256));
  EXPECT_EQ(run_command(env + SIGJIT_CLI_PATH + " verify --gpu"), 1) << "the cached bytes did not load: verify --gpu must say so";
  entries = store.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_NE(entries[0].entry.cubin_sha256, broken.cubin_sha256) << "the entry must be healed";
  EXPECT_EQ(entries[0].entry.config, broken.config) << "healed with its own config";
  EXPECT_EQ(run_command(env + SIGJIT_CLI_PATH + " verify --gpu"), 0);
  EXPECT_EQ(run_command(env + "SIGJIT_TUNED_CHILD=serve SIGJIT_EXPECT_NO_COMPILE=1 " + self_path() + " --gtest_filter='ServeChild.*'"), 0);
}

// F10 on the GPU: a cache directory that cannot be used (here a regular file) disables the cache
// for the process with one line, and forward() still answers correctly.
TEST(TunedCache, AnUnusableCacheDirectoryNeverFailsACall) {
  SIGJIT_REQUIRE_GPU();
  if (is_any_child()) GTEST_SKIP() << "parent test only";
  const ScratchCache cache("unusable-test");
  { std::ofstream(cache.dir) << "a file where the cache directory should be"; }
  EXPECT_EQ(run_command(cache.env + "SIGJIT_TUNED_CHILD=serve " + self_path() + " --gtest_filter='ServeChild.*'"), 0);
  EXPECT_TRUE(std::filesystem::is_regular_file(cache.dir)) << "the file must be left as it was";
}

// The child of the two tests above: one forward of the tuned case, checked against the fp64
// reference; with SIGJIT_EXPECT_NO_COMPILE=1, served from the store without NVRTC.
TEST(ServeChild, ForwardIsCorrect) {
  if (!is_child("serve")) GTEST_SKIP() << "runs in the child process of TunedCache.VerifyGpuHeals... / AnUnusableCache...";
  SIGJIT_REQUIRE_GPU();
  ServedForward f;
  ASSERT_NO_FATAL_FAILURE(forward_once(tuned_case(), f));
  EXPECT_EQ(f.result.unwritten, 0);
  EXPECT_LT(f.result.rel_error, error_bound(tuned_case()));
  if (const char* v = std::getenv("SIGJIT_EXPECT_NO_COMPILE"); v && std::string(v) == "1") EXPECT_EQ(f.compiles, 0);
}

}  // namespace
}  // namespace sigjit::testing
