// The CLI's fleet verbs (cli/fleet.cpp) against a real redis-server on 127.0.0.1 (skipped when
// not installed): keygen, push (only this machine's entries, signed), pull (verified, written
// through as claims, --device), stats and config (--json; never a password), clear, prune
// --dry-run, import --list/--dry-run, and exit status 2 for usage errors, 1 for failures.
#include "cache/store.hpp"
#include "kernels/registry.hpp"
#include "problem/spec.hpp"
#include "tests/common/redis_server.hpp"
#include "tests/common/run_command.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;
using sigjit::cache::Entry;
using sigjit::cache::Store;
using sigjit::test::CommandResult;
using sigjit::test::run_command;

sigjit::cache::DeviceFingerprint fp_of(const std::string& gpu) {
  sigjit::cache::DeviceFingerprint f;
  f.gpu_name = gpu;
  f.cc_major = 9;
  f.sm_count = 132;
  f.driver_version = 12040;
  f.nvrtc_version = "13.0";
  f.codegen_version = 3;
  f.compile_options = "--gpu-architecture=sm_90a templates=0123456789abcdef";
  return f;
}

// A tuned entry measured here (origin local) or a claim, with its cubin in `store`.
void put(Store& store, const std::string& gpu, int head_dim, const char* origin, double ms) {
  sigjit::KernelSpec s;
  s.head_dim = head_dim;
  s.bucket = sigjit::SeqBucket::up_to_2k;
  s.arch = sigjit::Arch::parse("sm_90a");
  const sigjit::TileConfig c = sigjit::default_config(s);
  std::vector<char> cubin(3000, static_cast<char>(head_dim + ms * 10));
  Entry e;
  e.problem_key = sigjit::problem_key(s);
  e.spec = sigjit::spec_to_json(s);
  e.config = c.describe();
  e.kernel_name = sigjit::kernel_name(s, c);
  e.tuned = true;
  e.median_ms = ms;
  e.spread = 0.01;
  e.tflops = 100;
  e.tuned_shape = "B=4 L=2048 H=16";
  e.cubin_sha256 = store.put_blob(cubin);
  e.provenance.push_back({"node", "2026-12-05T00:00:00Z", "0.1.0"});
  e.origin = origin;
  store.put_entry(fp_of(gpu), e);
}

class CliRemote : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sigjit_clir_" + std::to_string(::getpid()) + "_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(dir_);
    redis_ = std::make_unique<sigjit::test::TestRedis>(dir_);
    if (!redis_->installed()) GTEST_SKIP() << "redis-server not installed (setup.sh installs it)";
    ASSERT_TRUE(redis_->start());
  }
  void TearDown() override {
    redis_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // The CLI with a cache directory and extra environment ("NAME=value ..."), stdout only unless `both`.
  CommandResult cli(const fs::path& cache, const std::string& env, const std::string& args, bool both = true) const {
    return run_command("cd '" + dir_.string() + "' && env -u SIGJIT_REMOTE_CACHE -u SIGJIT_TRUSTED_KEYS SIGJIT_CACHE_DIR='" + cache.string() +
                       "' " + env + " " + SIGJIT_CLI_PATH + " " + args + (both ? " 2>&1" : " 2>/dev/null"));
  }
  std::string remote() const { return "SIGJIT_REMOTE_CACHE=" + redis_->url(); }
  fs::path dir_;
  std::unique_ptr<sigjit::test::TestRedis> redis_;
};

TEST_F(CliRemote, KeygenPushPullStatsConfigClear) {
  const fs::path w = dir_ / "writer", r = dir_ / "reader", r2 = dir_ / "reader2";
  ASSERT_EQ(cli(w, "", "keygen a.pem a.pub").code, 0);
  ASSERT_EQ(cli(w, "", "keygen b.pem b.pub --json").code, 0);
  EXPECT_EQ(cli(w, "", "keygen a.pem a.pub").code, 1);  // never overwrites
  EXPECT_EQ(cli(w, "", "keygen only-one.pem").code, 2);
  {
    Store store(w);
    put(store, "NVIDIA H100", 128, sigjit::cache::kOriginLocal, 1.0);
    put(store, "NVIDIA H100", 64, sigjit::cache::kOriginImported, 0.5);  // a claim: never pushed
    put(store, "NVIDIA A100", 128, sigjit::cache::kOriginLocal, 2.0);
  }
  const std::string signer = remote() + " SIGJIT_SIGNING_KEY=a.pem";
  EXPECT_EQ(cli(w, remote(), "push").code, 1);  // read-only
  EXPECT_EQ(cli(w, remote() + " SIGJIT_REMOTE_CACHE_WRITE=1", "push").code, 1);  // no signing key
  const CommandResult pushed = cli(w, signer + " SIGJIT_REMOTE_CACHE_WRITE=1", "push --json", false);
  ASSERT_EQ(pushed.code, 0) << pushed.out;
  const auto pj = nlohmann::json::parse(pushed.out);
  int published = 0;
  for (const auto& e : pj["entries"]) published += e["result"] == "published";
  EXPECT_EQ(published, 2);
  EXPECT_NE(redis_->cli("DBSIZE").find("2"), std::string::npos);

  // Pull: only with a trusted key; --device filters; entries arrive as claims.
  EXPECT_EQ(cli(r, remote(), "pull").code, 1);  // no trusted key
  const CommandResult untrusted = cli(r2, remote() + " SIGJIT_TRUSTED_KEYS=b.pub", "pull");
  EXPECT_EQ(untrusted.code, 1) << untrusted.out;
  EXPECT_TRUE(Store(r2, Store::Open::existing).list().empty());
  const CommandResult pulled = cli(r, remote() + " SIGJIT_TRUSTED_KEYS=a.pub", "pull --device H100 --json", false);
  ASSERT_EQ(pulled.code, 0) << pulled.out;
  EXPECT_EQ(nlohmann::json::parse(pulled.out)["pulled"], 1);
  const auto listed = Store(r, Store::Open::existing).list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].entry.origin, sigjit::cache::kOriginImported);
  EXPECT_EQ(listed[0].fingerprint.gpu_name, "NVIDIA H100");

  // stats: local and remote.
  const CommandResult stats = cli(w, remote(), "stats --json", false);
  ASSERT_EQ(stats.code, 0) << stats.out;
  const auto sj = nlohmann::json::parse(stats.out);
  EXPECT_EQ(sj["local"]["entries"], 3);
  EXPECT_EQ(sj["local"]["origins"]["local"], 2);
  EXPECT_EQ(sj["remote"]["reachable"], true);
  EXPECT_EQ(sj["remote"]["entries"], 2);

  // config: every switch, the password never shown.
  const CommandResult config = cli(w, "SIGJIT_REMOTE_CACHE=redis://u:hunter2@127.0.0.1:1 SIGJIT_SIGNING_KEY=a.pem", "config --json", false);
  ASSERT_EQ(config.code, 0);
  EXPECT_EQ(config.out.find("hunter2"), std::string::npos);
  bool signing_set = false;
  for (const auto& s : nlohmann::json::parse(config.out)) signing_set |= s["name"] == "SIGJIT_SIGNING_KEY" && s["set"] == true;
  EXPECT_TRUE(signing_set);

  // prune --dry-run removes nothing; clear removes everything.
  const CommandResult dry = cli(w, "", "prune --dry-run --json d128", false);
  ASSERT_EQ(dry.code, 0);
  EXPECT_EQ(nlohmann::json::parse(dry.out).size(), 2u);
  EXPECT_EQ(Store(w, Store::Open::existing).list().size(), 3u);
  EXPECT_EQ(cli(w, "", "clear").code, 0);
  EXPECT_TRUE(Store(w, Store::Open::existing).list().empty());
  EXPECT_EQ(cli(dir_ / "not-a-cache-dir-x", "", "clear").code, 0);  // missing: nothing to clear
}

TEST_F(CliRemote, ImportListAndDryRunWriteNothing) {
  const fs::path w = dir_ / "w", r = dir_ / "r";
  {
    Store store(w);
    put(store, "NVIDIA H100", 128, sigjit::cache::kOriginLocal, 1.0);
    put(store, "NVIDIA H100", 64, sigjit::cache::kOriginLocal, 1.5);
  }
  ASSERT_EQ(cli(w, "", "export b.bundle --all-devices").code, 0);
  const CommandResult list = cli(r, "", "import --list --json b.bundle", false);
  ASSERT_EQ(list.code, 0) << list.out;
  EXPECT_EQ(nlohmann::json::parse(list.out)["entries"].size(), 2u);
  const CommandResult dry = cli(r, "", "import --dry-run b.bundle");
  ASSERT_EQ(dry.code, 0) << dry.out;
  EXPECT_NE(dry.out.find("would add 2"), std::string::npos) << dry.out;
  EXPECT_FALSE(fs::exists(r));  // nothing written
}

TEST_F(CliRemote, UsageErrorsExitTwo) {
  const fs::path c = dir_ / "c";
  EXPECT_EQ(cli(c, "", "tune --shard 0/3").code, 2);
  EXPECT_EQ(cli(c, "", "tune --shard 4/3").code, 2);
  EXPECT_EQ(cli(c, "", "tune --shard x").code, 2);
  EXPECT_EQ(cli(c, "", "pull --no-such-flag").code, 2);
  EXPECT_EQ(cli(c, "", "no-such-verb").code, 2);
}

}  // namespace
