// The lookup counters (cache/counters.hpp) as the runtime's store-and-tier lookup counts them
// (jit/remote_tier.hpp: lookup_stored, what runtime/resolve.cpp's from_store calls), against a
// real redis-server on 127.0.0.1 (skipped when not installed): a local hit, a local miss served by
// the tier, a miss everywhere, a record signed by an untrusted key, a dead server (an error, then
// the breaker), each counted once in its tier; then persisted and shown by `sigjit stats --json`.
#include "cache/counters.hpp"
#include "jit/binaries.hpp"
#include "jit/remote_tier.hpp"
#include "kernels/registry.hpp"
#include "tests/common/cache_test_files.hpp"
#include "tests/common/redis_server.hpp"
#include "tests/common/run_command.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sigjit::KernelSpec;
using sigjit::cache::Counter;
using sigjit::cache::Entry;
using sigjit::cache::PrivateKey;
using sigjit::cache::RemoteConfig;
using sigjit::cache::RemoteTier;
using sigjit::cache::Store;
using sigjit::cache::TrustedKeys;
using sigjit::detail::lookup_stored;
using sigjit::detail::publish_entry;
using sigjit::detail::PublishResult;
using sigjit::test::test_fp;

KernelSpec spec_of(int head_dim, sigjit::SeqBucket bucket) {
  KernelSpec s;
  s.head_dim = head_dim;
  s.bucket = bucket;
  s.arch = sigjit::Arch::parse("sm_90a");
  return s;
}

std::vector<char> bytes_of(const std::string& tag) {
  std::vector<char> v(2048);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<char>((i * 31 + tag[i % tag.size()]) & 0xff);
  return v;
}

// A tuned entry of `spec` (its default config) measured here.
Entry tuned_entry(const KernelSpec& spec, const std::vector<char>& cubin) {
  Entry e;
  const sigjit::TileConfig c = sigjit::default_config(spec);
  e.problem_key = sigjit::problem_key(spec);
  e.spec = sigjit::spec_to_json(spec);
  e.config = c.describe();
  e.kernel_name = sigjit::kernel_name(spec, c);
  e.tuned = true;
  e.median_ms = 0.5;
  e.spread = 0.01;
  e.tuned_shape = "B=4 L=2048 H=16";
  e.cubin_sha256 = sigjit::cache::sha256_hex(cubin.data(), cubin.size());
  e.provenance.push_back({"tuner", "2026-12-05T00:00:00Z", "0.1.0"});
  return e;
}

// What one call added to this process's counters.
class Delta {
 public:
  Delta() : before_(sigjit::cache::pending_counters()) {}
  std::map<std::string, std::uint64_t> added() const {
    const auto now = sigjit::cache::pending_counters();
    std::map<std::string, std::uint64_t> out;
    for (std::size_t i = 0; i < sigjit::cache::kCounterCount; ++i)
      if (now[i] != before_[i]) out[sigjit::cache::counter_name(static_cast<Counter>(i))] = now[i] - before_[i];
    return out;
  }

 private:
  sigjit::cache::CounterValues before_;
};

using Counts = std::map<std::string, std::uint64_t>;

TEST(LookupCounters, EachTierCountsWhatItAnswered) {
  const fs::path dir = fs::temp_directory_path() / ("sigjit_lc_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  sigjit::test::TestRedis redis(dir);
  if (!redis.installed()) GTEST_SKIP() << "redis-server not installed (setup.sh installs it)";
  ASSERT_TRUE(redis.start());
  // Counts from here on stay pending until this test flushes them (no periodic flush meanwhile).
  sigjit::cache::persist_counters({}, std::chrono::hours(1));
  const auto a = sigjit::cache::generate_key_pair(dir / "a.pem", dir / "a.pub.pem");
  const auto b = sigjit::cache::generate_key_pair(dir / "b.pem", dir / "b.pub.pem");
  RemoteConfig config = RemoteConfig::parse_url(redis.url());
  config.write = true;
  RemoteTier writer(config, {});
  config.write = false;
  config.backoff = 60s;
  RemoteTier reader(config, TrustedKeys::from_list(a.public_pem.string()));
  Store store(dir / "cache");

  const KernelSpec here = spec_of(128, sigjit::SeqBucket::up_to_2k), fleet = spec_of(64, sigjit::SeqBucket::up_to_2k),
                   nowhere = spec_of(128, sigjit::SeqBucket::over_8k), stranger = spec_of(64, sigjit::SeqBucket::over_8k);
  store.put_entry(test_fp(), tuned_entry(here, bytes_of("here")));
  ASSERT_EQ(publish_entry(writer, PrivateKey::load(a.private_pem), test_fp(), tuned_entry(fleet, bytes_of("fleet")), bytes_of("fleet")),
            PublishResult::published);
  ASSERT_EQ(publish_entry(writer, PrivateKey::load(b.private_pem), test_fp(), tuned_entry(stranger, bytes_of("s")), bytes_of("s")),
            PublishResult::published);

  Delta d1;
  const auto local = lookup_stored(&store, &reader, test_fp(), here);
  ASSERT_TRUE(local);
  EXPECT_FALSE(local->remote);
  EXPECT_EQ(d1.added(), (Counts{{"local.hit", 1}})) << "a tuned local entry: the tier is not asked";

  Delta d2;
  const auto remote = lookup_stored(&store, &reader, test_fp(), fleet);
  ASSERT_TRUE(remote);
  EXPECT_TRUE(remote->remote);
  EXPECT_EQ(d2.added(), (Counts{{"local.miss", 1}, {"remote.hit", 1}}));
  Delta d2b;
  EXPECT_TRUE(lookup_stored(&store, &reader, test_fp(), fleet));
  EXPECT_EQ(d2b.added(), (Counts{{"local.hit", 1}})) << "written through: the next lookup is local";

  Delta d3;
  EXPECT_FALSE(lookup_stored(&store, &reader, test_fp(), nowhere));
  EXPECT_EQ(d3.added(), (Counts{{"local.miss", 1}, {"remote.miss", 1}}));

  Delta d4;
  EXPECT_FALSE(lookup_stored(&store, &reader, test_fp(), stranger));
  EXPECT_EQ(d4.added(), (Counts{{"local.miss", 1}, {"remote.refused", 1}}));

  Delta d5;
  EXPECT_FALSE(lookup_stored(nullptr, &reader, test_fp(), nowhere));  // no store: the local tier is not counted
  EXPECT_EQ(d5.added(), (Counts{{"remote.miss", 1}}));

  redis.stop();
  Delta d6;
  EXPECT_FALSE(lookup_stored(&store, &reader, test_fp(), nowhere));
  EXPECT_FALSE(lookup_stored(&store, &reader, test_fp(), nowhere));
  EXPECT_EQ(d6.added(), (Counts{{"local.miss", 2}, {"remote.error", 1}, {"remote.unavailable", 1}}));

  // Persisted under the store's root and shown by `sigjit stats`.
  const auto pending = sigjit::cache::pending_counters();
  sigjit::cache::persist_counters(store.root(), std::chrono::hours(1));
  ASSERT_TRUE(sigjit::cache::flush_counters());
  sigjit::cache::persist_counters({});
  EXPECT_EQ(sigjit::cache::read_counters(store.root()).totals, pending);
  const auto r = sigjit::test::run_command("env -u SIGJIT_REMOTE_CACHE SIGJIT_CACHE_DIR='" + store.root().string() +
                                           "' '" SIGJIT_CLI_PATH "' stats --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out)["counters"]["tiers"];
  EXPECT_GE(j["local"]["hit"].get<std::uint64_t>(), 2u);
  EXPECT_GE(j["remote"]["hit"].get<std::uint64_t>(), 1u);
  EXPECT_GE(j["remote"]["refused"].get<std::uint64_t>(), 1u);
  EXPECT_GE(j["remote"]["error"].get<std::uint64_t>(), 1u);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
