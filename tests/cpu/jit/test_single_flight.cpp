// Single flight of compiles (jit/binaries.hpp: produce_once on Store::lock_production): 8
// processes needing the same kernel compile it once (real NVRTC compiles, counted in a file) and
// the others load what it stored; a holder that dies releases the lock; a waiter that times out
// compiles unlocked; and the per-process cap on concurrent NVRTC compiles
// (SIGJIT_MAX_PARALLEL_COMPILES). Runs without a GPU; skips without NVRTC.
#include "jit/binaries.hpp"
#include "jit/compiler.hpp"
#include "kernels/registry.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sigjit::cache::Entry;
using sigjit::cache::Store;
using Clock = std::chrono::steady_clock;

fs::path temp_dir() {
  fs::path p = fs::temp_directory_path() /
               ("sigjit_sf_" + std::to_string(::getpid()) + "_" + std::to_string(Clock::now().time_since_epoch().count()));
  fs::create_directories(p);
  return p;
}

sigjit::KernelSpec small_spec() {
  sigjit::KernelSpec s;
  s.head_dim = 64;
  s.arch = sigjit::Arch::parse("sm_80");
  return s;
}

sigjit::cache::DeviceFingerprint fp() {
  sigjit::cache::DeviceFingerprint f;
  f.gpu_name = "test GPU";
  f.cc_major = 8;
  f.sm_count = 108;
  f.driver_version = 13000;
  f.nvrtc_version = "13.0";
  f.codegen_version = 3;
  f.compile_options = "--gpu-architecture=sm_80";
  return f;
}

bool have_nvrtc() {
  try {
    sigjit::nvrtc_version();
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// What resolve_kernel's compile path does, with the compile counted in `counter` (one line each).
bool compile_or_load(Store& store, const fs::path& counter) {
  const sigjit::KernelSpec spec = small_spec();
  const std::string key = sigjit::problem_key(spec);
  bool loaded = false;
  sigjit::detail::produce_once(
      &store, fp(), key,
      [&] {
        const auto e = store.lookup(fp(), key);
        loaded = e && store.load_blob(e->cubin_sha256).has_value();
        return loaded;
      },
      [&] {
        const sigjit::TileConfig c = sigjit::default_config(spec);
        const sigjit::CompiledKernel k = sigjit::compile_kernel(spec, c);
        {
          const int fd = ::open(counter.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
          [[maybe_unused]] const auto n = ::write(fd, "compile\n", 8);
          ::close(fd);
        }
        Entry e;
        e.problem_key = key;
        e.spec = sigjit::spec_to_json(spec);
        e.config = c.describe();
        e.kernel_name = sigjit::kernel_name(spec, c);
        e.cubin_sha256 = store.put_blob(k.cubin);
        store.put_entry(fp(), e);
        loaded = true;
      });
  return loaded;
}

int count_lines(const fs::path& p) {
  std::ifstream in(p);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

TEST(SingleFlight, EightProcessesCompileOnce) {
  if (!have_nvrtc()) GTEST_SKIP() << "no NVRTC";
  const fs::path dir = temp_dir(), counter = dir / "compiles";
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  std::vector<pid_t> kids;
  for (int i = 0; i < 8; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(go[1]);
      char c;
      [[maybe_unused]] const auto n = ::read(go[0], &c, 1);  // all start together (EOF when the parent closes)
      Store store(dir / "cache");
      ::_exit(compile_or_load(store, counter) ? 0 : 1);
    }
    kids.push_back(pid);
  }
  ::close(go[0]);
  ::close(go[1]);
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(count_lines(counter), 1);
  fs::remove_all(dir);
}

TEST(SingleFlight, AHolderThatDiesReleasesTheLock) {
  const fs::path dir = temp_dir();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    Store store(dir / "cache");
    auto lock = store.lock_production(fp(), sigjit::problem_key(small_spec()));
    [[maybe_unused]] const auto n = ::write(ready[1], "x", 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(::getpid(), SIGKILL);  // dies holding it
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  Store store(dir / "cache");
  const auto t0 = Clock::now();
  bool produced = false;
  EXPECT_TRUE(sigjit::detail::produce_once(&store, fp(), sigjit::problem_key(small_spec()), [] { return false; }, [&] { produced = true; }));
  EXPECT_TRUE(produced);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  ::waitpid(pid, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  fs::remove_all(dir);
}

TEST(SingleFlight, AWaiterThatTimesOutCompilesUnlocked) {
  const fs::path dir = temp_dir();
  Store store(dir / "cache");
  auto held = store.lock_production(fp(), sigjit::problem_key(small_spec()));
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("SIGJIT_CACHE_LOCK_TIMEOUT", "0.3", 1);
    Store mine(dir / "cache");
    bool produced = false;
    sigjit::detail::produce_once(&mine, fp(), sigjit::problem_key(small_spec()), [] { return false; }, [&] { produced = true; });
    ::_exit(produced ? 0 : 1);
  }
  int status = 0;
  const auto t0 = Clock::now();
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  held.reset();
  fs::remove_all(dir);
}

// Run in a fresh process (the cap is read once per process, and earlier tests may have compiled):
// ConcurrentCompilesAreCapped execs this binary with only this test and the cap set to 1.
TEST(SingleFlight, DISABLED_CapChild) {
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([] { sigjit::compile_kernel(small_spec(), sigjit::default_config(small_spec())); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(sigjit::max_parallel_compiles(), 1);
  EXPECT_EQ(sigjit::peak_parallel_compiles(), 1);
}

TEST(SingleFlight, ConcurrentCompilesAreCapped) {
  if (!have_nvrtc()) GTEST_SKIP() << "no NVRTC";
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string cmd = "SIGJIT_MAX_PARALLEL_COMPILES=1 '" + self +
                          "' --gtest_also_run_disabled_tests --gtest_filter=SingleFlight.DISABLED_CapChild > /dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

}  // namespace
