// The remote tier on the library's lookup path (jit/remote_tier.hpp), against a real redis-server
// on 127.0.0.1 (skipped when not installed): publish -> tier -> fetch_remote -> a fresh local
// store (the runtime's from_store calls exactly this, then reads the store); read-only clients
// never write; tampered, untrusted, cubin-swapped and unusable records never reach the local
// store; key rotation; a claim never displaces a measurement made here; tuned entries replace the
// tier's only when faster; 16 processes pushing and pulling the same keys for 20 rounds; the
// server killed and restarted mid-run. No GPU: the cubins are bytes (nothing here loads them).
#include "jit/binaries.hpp"
#include "jit/remote_tier.hpp"
#include "kernels/registry.hpp"
#include "tests/common/redis_server.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sigjit::KernelSpec;
using sigjit::cache::DeviceFingerprint;
using sigjit::cache::Entry;
using sigjit::cache::PrivateKey;
using sigjit::cache::RemoteConfig;
using sigjit::cache::RemoteRecord;
using sigjit::cache::RemoteTier;
using sigjit::cache::Store;
using sigjit::cache::TrustedKeys;
using sigjit::detail::fetch_remote;
using sigjit::detail::publish_entry;
using sigjit::detail::PublishResult;

fs::path make_temp(const std::string& tag) {
  static int n = 0;
  fs::path p = fs::temp_directory_path() / ("sigjit_rl_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(n++) + "_" +
                                            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  fs::create_directories(p);
  return p;
}

DeviceFingerprint fp_of(const std::string& gpu = "NVIDIA H100 80GB HBM3") {
  DeviceFingerprint f;
  f.gpu_name = gpu;
  f.cc_major = 9;
  f.cc_minor = 0;
  f.sm_count = 132;
  f.driver_version = 12040;
  f.nvrtc_version = "13.0";
  f.codegen_version = 3;
  f.compile_options = "--gpu-architecture=sm_90a templates=0123456789abcdef";
  return f;
}

KernelSpec spec_of(int head_dim = 128, sigjit::SeqBucket bucket = sigjit::SeqBucket::up_to_2k) {
  KernelSpec s;
  s.head_dim = head_dim;
  s.bucket = bucket;
  s.arch = sigjit::Arch::parse("sm_90a");
  return s;
}

std::vector<char> bytes_of(const std::string& tag, std::size_t n = 4096) {
  std::vector<char> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<char>((i * 37 + tag[i % tag.size()]) & 0xff);
  return v;
}

// An entry of `spec` with its default config, as this machine would store it.
Entry entry_of(const KernelSpec& spec, const std::vector<char>& cubin, bool tuned, double ms) {
  Entry e;
  const sigjit::TileConfig c = sigjit::default_config(spec);
  e.problem_key = sigjit::problem_key(spec);
  e.spec = sigjit::spec_to_json(spec);
  e.config = c.describe();
  e.kernel_name = sigjit::kernel_name(spec, c);
  e.tuned = tuned;
  e.median_ms = tuned ? ms : 0;
  e.spread = tuned ? 0.01 : 0;
  e.tuned_shape = tuned ? "B=4 L=2048 H=16" : "";
  e.cubin_sha256 = sigjit::cache::sha256_hex(cubin.data(), cubin.size());
  e.provenance.push_back({"tuner", "2026-12-05T00:00:00Z", "0.1.0"});
  return e;
}

class RemoteLookup : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp("t");
    redis_ = std::make_unique<sigjit::test::TestRedis>(dir_);
    if (!redis_->installed()) GTEST_SKIP() << "redis-server not installed (setup.sh installs it)";
    ASSERT_TRUE(redis_->start());
    const auto a = sigjit::cache::generate_key_pair(dir_ / "a.pem", dir_ / "a.pub.pem");
    const auto b = sigjit::cache::generate_key_pair(dir_ / "b.pem", dir_ / "b.pub.pem");
    (void)a;
    (void)b;
  }
  void TearDown() override {
    redis_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  RemoteConfig config(bool write) const {
    RemoteConfig c = RemoteConfig::parse_url(redis_->url());
    c.write = write;
    c.backoff = 0ms;
    return c;
  }
  std::unique_ptr<RemoteTier> tier(bool write, const std::string& trusted = "a") const {
    std::string list;
    for (char k : trusted) list += (list.empty() ? "" : ":") + (dir_ / (std::string(1, k) + ".pub.pem")).string();
    return std::make_unique<RemoteTier>(config(write), TrustedKeys::from_list(list));
  }
  PrivateKey key(char k) const { return PrivateKey::load(dir_ / (std::string(1, k) + ".pem")); }
  Store fresh_store() const { return Store(make_temp("store")); }
  static std::size_t entries(const Store& s) { return s.list().size(); }

  fs::path dir_;
  std::unique_ptr<sigjit::test::TestRedis> redis_;
};

TEST_F(RemoteLookup, RoundTripThroughTheTierIntoAFreshLocalStore) {
  const KernelSpec spec = spec_of();
  const auto cubin = bytes_of("rt");
  const Entry e = entry_of(spec, cubin, true, 0.5);
  auto writer = tier(true);
  ASSERT_EQ(publish_entry(*writer, key('a'), fp_of(), e, cubin), PublishResult::published);

  Store store = fresh_store();
  auto reader = tier(false);
  const auto hit = fetch_remote(*reader, &store, fp_of(), spec);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->cubin, cubin);
  const auto local = store.lookup(fp_of(), sigjit::problem_key(spec));
  ASSERT_TRUE(local);
  EXPECT_EQ(local->origin, sigjit::cache::kOriginImported);  // a claim
  EXPECT_FALSE(local->measured_here());
  EXPECT_EQ(local->config, e.config);
  EXPECT_DOUBLE_EQ(local->median_ms, 0.5);
  EXPECT_EQ(local->provenance.back().host.rfind("remote:", 0), 0u);
  EXPECT_TRUE(sigjit::detail::store_entry_usable(spec, *local));
  const auto blob = store.load_blob(local->cubin_sha256);
  ASSERT_TRUE(blob);
  EXPECT_EQ(*blob, cubin);
  // Another device's fingerprint: a miss.
  EXPECT_FALSE(fetch_remote(*reader, nullptr, fp_of("NVIDIA A100"), spec));
}

TEST_F(RemoteLookup, ReadOnlyClientsNeverWrite) {
  const KernelSpec spec = spec_of();
  const auto cubin = bytes_of("ro");
  auto reader = tier(false);
  EXPECT_EQ(publish_entry(*reader, key('a'), fp_of(), entry_of(spec, cubin, true, 1.0), cubin), PublishResult::skipped);
  EXPECT_EQ(publish_entry(*reader, key('a'), fp_of(), entry_of(spec, cubin, false, 0), cubin), PublishResult::skipped);
  EXPECT_NE(redis_->cli("DBSIZE").find("0"), std::string::npos);
  EXPECT_EQ(reader->stats().writes, 0u);
}

TEST_F(RemoteLookup, TamperedUntrustedAndSwappedRecordsNeverReachTheLocalStore) {
  const KernelSpec spec = spec_of();
  const auto cubin = bytes_of("good");
  auto writer = tier(true);
  auto reader = tier(false, "a");
  Store store = fresh_store();

  // Signed by b, which the reader does not trust.
  ASSERT_EQ(publish_entry(*writer, key('b'), fp_of(), entry_of(spec, cubin, true, 1.0), cubin), PublishResult::published);
  EXPECT_FALSE(fetch_remote(*reader, &store, fp_of(), spec));
  EXPECT_EQ(entries(store), 0u);

  // Signed by a, then one byte of the stored record flipped (in the cubin, near the end).
  ASSERT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, cubin, true, 0.9), cubin), PublishResult::published);
  const std::string k = sigjit::cache::remote_key(fp_of(), sigjit::problem_key(spec));
  std::string raw = *writer->get_raw(k);
  raw[raw.size() - 200] ^= 0x01;
  ASSERT_EQ(writer->put_raw(k, raw), sigjit::cache::RemoteStatus::ok);
  EXPECT_FALSE(fetch_remote(*reader, &store, fp_of(), spec));
  EXPECT_EQ(entries(store), 0u);

  // A signature over another cubin: the record carries cubin B with B's digest, signed over A.
  RemoteRecord r;
  r.fingerprint = fp_of();
  r.entry = entry_of(spec, cubin, true, 0.8);
  r.signature = sigjit::cache::sign_entry(key('a'), fp_of(), r.entry, cubin);
  r.cubin = bytes_of("evil");
  r.entry.cubin_sha256 = sigjit::cache::sha256_hex(r.cubin.data(), r.cubin.size());
  ASSERT_EQ(writer->put_raw(k, sigjit::cache::encode_record(r)), sigjit::cache::RemoteStatus::ok);
  EXPECT_FALSE(fetch_remote(*reader, &store, fp_of(), spec));
  EXPECT_EQ(entries(store), 0u);

  // Validly signed by a trusted key but unusable here: a config that is not its kernel name's.
  Entry odd = entry_of(spec, cubin, true, 0.7);
  odd.kernel_name = "sigjit_something_else";
  ASSERT_EQ(publish_entry(*writer, key('a'), fp_of(), odd, cubin), PublishResult::published);
  EXPECT_FALSE(fetch_remote(*reader, &store, fp_of(), spec));
  EXPECT_EQ(entries(store), 0u);
}

TEST_F(RemoteLookup, KeyRotation) {
  const KernelSpec s1 = spec_of(128), s2 = spec_of(64);
  const auto c1 = bytes_of("k1"), c2 = bytes_of("k2");
  auto writer = tier(true);
  ASSERT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(s1, c1, true, 1.0), c1), PublishResult::published);
  ASSERT_EQ(publish_entry(*writer, key('b'), fp_of(), entry_of(s2, c2, true, 1.0), c2), PublishResult::published);
  // During the rotation readers trust both keys; afterwards only the new one.
  EXPECT_TRUE(fetch_remote(*tier(false, "ab"), nullptr, fp_of(), s1));
  EXPECT_TRUE(fetch_remote(*tier(false, "ab"), nullptr, fp_of(), s2));
  auto after = tier(false, "b");
  EXPECT_FALSE(fetch_remote(*after, nullptr, fp_of(), s1));
  EXPECT_TRUE(fetch_remote(*after, nullptr, fp_of(), s2));
  // Re-signed with the new key (a faster measurement replaces it), the entry serves again.
  ASSERT_EQ(publish_entry(*writer, key('b'), fp_of(), entry_of(s1, c1, true, 0.9), c1), PublishResult::published);
  EXPECT_TRUE(fetch_remote(*after, nullptr, fp_of(), s1));
}

TEST_F(RemoteLookup, AClaimNeverDisplacesAMeasurementMadeHere) {
  const KernelSpec spec = spec_of();
  const auto mine = bytes_of("mine"), theirs = bytes_of("theirs");
  Store store = fresh_store();
  Entry local = entry_of(spec, mine, true, 2.0);
  local.cubin_sha256 = store.put_blob(mine);
  store.put_entry(fp_of(), local);
  auto writer = tier(true);
  ASSERT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, theirs, true, 0.1), theirs), PublishResult::published);
  EXPECT_TRUE(fetch_remote(*tier(false), &store, fp_of(), spec));
  const auto e = store.lookup(fp_of(), sigjit::problem_key(spec));
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->measured_here());
  EXPECT_DOUBLE_EQ(e->median_ms, 2.0);
}

TEST_F(RemoteLookup, PublishingComparesFirst) {
  const KernelSpec spec = spec_of();
  const auto c = bytes_of("p");
  auto writer = tier(true);
  // Untuned: only if absent.
  EXPECT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, false, 0), c), PublishResult::published);
  EXPECT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, false, 0), c), PublishResult::kept_theirs);
  // Tuned beats untuned; a slower tuned one does not replace a faster one; a faster one does.
  EXPECT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, true, 1.0), c), PublishResult::published);
  EXPECT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, true, 1.5), c), PublishResult::kept_theirs);
  EXPECT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, false, 0), c), PublishResult::kept_theirs);
  EXPECT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, true, 0.5), c), PublishResult::published);
  const auto hit = fetch_remote(*tier(false), nullptr, fp_of(), spec);
  ASSERT_TRUE(hit);
  EXPECT_DOUBLE_EQ(hit->entry.median_ms, 0.5);
}

// 16 processes, 20 rounds: each publishes every key (with its own timing) and fetches every key
// into one shared local store. Nothing is lost (every fetch after the first round hits) and
// nothing is corrupt (every fetched record verified; the store verifies clean at the end).
TEST_F(RemoteLookup, SixteenProcessesPushAndPullTheSameKeys) {
  const std::vector<KernelSpec> specs = {spec_of(64), spec_of(128), spec_of(64, sigjit::SeqBucket::up_to_8k),
                                         spec_of(128, sigjit::SeqBucket::up_to_8k)};
  const fs::path shared = make_temp("shared");
  std::vector<pid_t> kids;
  for (int p = 0; p < 16; ++p) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int bad = 0;
      try {
        auto w = tier(true);
        const PrivateKey k = key('a');
        Store store(shared);
        for (int round = 0; round < 20; ++round) {
          for (std::size_t i = 0; i < specs.size(); ++i) {
            const auto c = bytes_of("s" + std::to_string(i) + "p" + std::to_string(p), 2048 + 64 * p);
            const auto r = publish_entry(*w, k, fp_of(), entry_of(specs[i], c, true, 1.0 + 0.01 * ((p * 7 + round) % 16)), c);
            if (r == PublishResult::failed) ++bad;
            const auto hit = fetch_remote(*w, &store, fp_of(), specs[i]);
            if (!hit) ++bad;  // published just before: must be there
          }
        }
      } catch (...) {
        bad = 99;
      }
      ::_exit(bad > 99 ? 99 : bad);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child failed " << WEXITSTATUS(status);
  }
  Store store(shared);
  EXPECT_TRUE(store.verify().problems.empty());
  EXPECT_EQ(store.list().size(), specs.size());
  auto reader = tier(false);
  for (const auto& s : specs) {
    const auto hit = fetch_remote(*reader, nullptr, fp_of(), s);
    ASSERT_TRUE(hit);
    EXPECT_LE(hit->entry.median_ms, 1.15);  // one of the claims, whole (compare-then-put races keep the last writer)
  }
  std::error_code ec;
  fs::remove_all(shared, ec);
}

TEST_F(RemoteLookup, ServerKilledAndRestartedMidRun) {
  const KernelSpec spec = spec_of();
  const auto c = bytes_of("kill");
  auto writer = tier(true);
  auto reader = tier(false);
  ASSERT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, true, 1.0), c), PublishResult::published);
  ASSERT_TRUE(fetch_remote(*reader, nullptr, fp_of(), spec));
  const int port = redis_->port();
  redis_->stop();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(fetch_remote(*reader, nullptr, fp_of(), spec));  // a miss, bounded
  EXPECT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, true, 0.5), c), PublishResult::failed);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ASSERT_TRUE(redis_->start(port));  // empty: no persistence
  EXPECT_FALSE(fetch_remote(*reader, nullptr, fp_of(), spec));
  EXPECT_EQ(publish_entry(*writer, key('a'), fp_of(), entry_of(spec, c, true, 0.5), c), PublishResult::published);
  EXPECT_TRUE(fetch_remote(*reader, nullptr, fp_of(), spec));
}

}  // namespace
