// Measurements for bench/RESULTS-remote.md (disabled in CI; run with
//   sigjit_cpu_tests --gtest_also_run_disabled_tests --gtest_filter='RemoteBench.*'):
// lookup latency of the local store (index read + blob read and hash) against the remote tier
// (GET + record checks + SHA-256 + Ed25519 verify, jit fetch_remote without write-through), a
// remote miss, and the throughput of N reader processes on one redis-server on this host.
#include "jit/remote_tier.hpp"
#include "kernels/registry.hpp"
#include "tests/common/redis_server.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

struct Dist {
  std::vector<double> v;
  double pct(double p) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()))];
  }
};

TEST(RemoteBench, DISABLED_LookupLatencyAndReaders) {
  const fs::path dir = fs::temp_directory_path() / ("sigjit_bench_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  sigjit::test::TestRedis redis(dir);
  if (!redis.installed()) GTEST_SKIP();
  ASSERT_TRUE(redis.start());
  sigjit::cache::generate_key_pair(dir / "k.pem", dir / "k.pub");
  const auto key = sigjit::cache::PrivateKey::load(dir / "k.pem");
  auto config = sigjit::cache::RemoteConfig::parse_url(redis.url());
  config.write = true;
  sigjit::cache::RemoteTier tier(config, sigjit::cache::TrustedKeys::from_list((dir / "k.pub").string()));
  sigjit::cache::DeviceFingerprint fp;
  fp.gpu_name = "NVIDIA H100 80GB HBM3";
  fp.compile_options = "--gpu-architecture=sm_90a";
  for (std::size_t cubin_bytes : {std::size_t(48) << 10, std::size_t(1) << 20}) {
    sigjit::KernelSpec spec;
    spec.arch = sigjit::Arch::parse("sm_90a");
    spec.head_dim = cubin_bytes > 100000 ? 64 : 128;
    const sigjit::TileConfig c = sigjit::default_config(spec);
    std::vector<char> cubin(cubin_bytes);
    for (std::size_t i = 0; i < cubin.size(); ++i) cubin[i] = static_cast<char>(i * 2654435761u >> 13);
    sigjit::cache::Entry e;
    e.problem_key = sigjit::problem_key(spec);
    e.spec = sigjit::spec_to_json(spec);
    e.config = c.describe();
    e.kernel_name = sigjit::kernel_name(spec, c);
    e.tuned = true;
    e.median_ms = 1;
    e.cubin_sha256 = sigjit::cache::sha256_hex(cubin.data(), cubin.size());
    ASSERT_EQ(sigjit::detail::publish_entry(tier, key, fp, e, cubin), sigjit::detail::PublishResult::published);
    sigjit::cache::Store store(dir / "store");
    e.cubin_sha256 = store.put_blob(cubin);
    store.put_entry(fp, e);

    Dist local, remote, miss;
    sigjit::KernelSpec absent = spec;
    absent.bucket = sigjit::SeqBucket::up_to_512;
    for (int i = 0; i < 300; ++i) {
      auto t0 = Clock::now();
      const auto l = store.lookup(fp, e.problem_key);
      ASSERT_TRUE(l && store.load_blob(l->cubin_sha256));
      local.v.push_back(us(Clock::now() - t0));
      t0 = Clock::now();
      ASSERT_TRUE(sigjit::detail::fetch_remote(tier, nullptr, fp, spec));
      remote.v.push_back(us(Clock::now() - t0));
      t0 = Clock::now();
      ASSERT_FALSE(sigjit::detail::fetch_remote(tier, nullptr, fp, absent));
      miss.v.push_back(us(Clock::now() - t0));
    }
    std::printf("cubin %zu KB: local hit p50 %.0f us p99 %.0f us | remote hit p50 %.0f us p99 %.0f us | remote miss p50 %.0f us p99 %.0f us\n",
                cubin_bytes >> 10, local.pct(0.5), local.pct(0.99), remote.pct(0.5), remote.pct(0.99), miss.pct(0.5), miss.pct(0.99));

    for (int readers : {1, 4, 16, 64}) {
      auto* counts = static_cast<long*>(::mmap(nullptr, sizeof(long) * 2 * readers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
      std::vector<pid_t> kids;
      for (int r = 0; r < readers; ++r) {
        const pid_t pid = ::fork();
        if (pid == 0) {
          auto rc = sigjit::cache::RemoteConfig::parse_url(redis.url());
          sigjit::cache::RemoteTier t(rc, sigjit::cache::TrustedKeys::from_list((dir / "k.pub").string()));
          long ok = 0, failed = 0;
          const auto end = Clock::now() + std::chrono::seconds(2);
          while (Clock::now() < end) (sigjit::detail::fetch_remote(t, nullptr, fp, spec) ? ok : failed)++;
          counts[2 * r] = ok;
          counts[2 * r + 1] = failed;
          ::_exit(0);
        }
        kids.push_back(pid);
      }
      for (pid_t pid : kids) ::waitpid(pid, nullptr, 0);
      long ok = 0, failed = 0;
      for (int r = 0; r < readers; ++r) ok += counts[2 * r], failed += counts[2 * r + 1];
      std::printf("cubin %zu KB: %2d readers: %.0f verified hits/s in total (%.0f MB/s), %ld failed\n", cubin_bytes >> 10, readers, ok / 2.0,
                  ok / 2.0 * cubin_bytes / 1e6, failed);
      ::munmap(counts, sizeof(long) * 2 * readers);
    }
  }
  redis.stop();
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
