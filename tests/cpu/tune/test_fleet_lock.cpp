// The fleet-wide tuning lock (tune/fleet.hpp: FleetTuneLock on RemoteTier::try_lock) against a
// real redis-server (skipped when not installed): one node holds a (spec, bucket, device), another
// is told to skip it until it is released; a read-only or missing tier coordinates nothing (held).
// The refresher, with a short TTL: a holder working for several TTLs keeps the lock, a holder
// that dies (SIGKILL) loses it after one TTL, and a holder whose lock was deleted and taken by
// another node never extends or releases that node's lock.
#include "tests/common/redis_server.hpp"
#include "tune/fleet.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kKey = "fwd_bf16_d128_dense_full_logn_nosb_fast_le2k_sm_90a";

sigjit::cache::DeviceFingerprint gpu() {
  sigjit::cache::DeviceFingerprint fp;
  fp.gpu_name = "GPU";
  return fp;
}

// A real redis-server and two writable tiers on it (two nodes), or a skip.
class FleetLockRefresh : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sigjit_flr_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    redis_ = std::make_unique<sigjit::test::TestRedis>(dir_);
    if (!redis_->installed()) GTEST_SKIP() << "redis-server not installed (setup.sh installs it)";
    ASSERT_TRUE(redis_->start());
    a_ = node();
    b_ = node();
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    redis_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::unique_ptr<sigjit::cache::RemoteTier> node() const {
    auto config = sigjit::cache::RemoteConfig::parse_url(redis_->url());
    config.write = true;
    return std::make_unique<sigjit::cache::RemoteTier>(config, sigjit::cache::TrustedKeys{});
  }
  std::string lock_key() const { return sigjit::cache::remote_lock_key(gpu(), kKey); }
  bool lock_exists() const { return redis_->cli("EXISTS " + lock_key()).find('1') != std::string::npos; }

  fs::path dir_;
  std::unique_ptr<sigjit::test::TestRedis> redis_;
  std::unique_ptr<sigjit::cache::RemoteTier> a_, b_;
};

TEST_F(FleetLockRefresh, AHolderWorkingPastSeveralTtlsKeepsIt) {
  {
    const sigjit::tuner::FleetTuneLock holder(a_.get(), gpu(), kKey, 500ms);
    ASSERT_TRUE(holder.held());
    const auto t0 = Clock::now();
    while (Clock::now() - t0 < 2000ms) {  // four TTLs
      EXPECT_FALSE(sigjit::tuner::FleetTuneLock(b_.get(), gpu(), kKey, 500ms).held()) << "a second node took a lock still in use";
      std::this_thread::sleep_for(50ms);
    }
    EXPECT_FALSE(holder.lost());
  }
  EXPECT_FALSE(lock_exists()) << "released by its holder";
  EXPECT_TRUE(sigjit::tuner::FleetTuneLock(b_.get(), gpu(), kKey, 500ms).held());
}

TEST_F(FleetLockRefresh, AHolderThatDiesLosesItAfterOneTtl) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const auto tier = node();  // its own connection
    const sigjit::tuner::FleetTuneLock holder(tier.get(), gpu(), kKey, 500ms);
    const char c = holder.held() ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    ::pause();  // refreshing until killed
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  std::this_thread::sleep_for(700ms);  // past one TTL: its refresher kept it
  EXPECT_FALSE(sigjit::tuner::FleetTuneLock(b_.get(), gpu(), kKey, 500ms).held());
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  std::this_thread::sleep_for(600ms);
  EXPECT_TRUE(sigjit::tuner::FleetTuneLock(b_.get(), gpu(), kKey, 500ms).held());
}

TEST_F(FleetLockRefresh, AHolderWhoseLockWasTakenNeverExtendsOrReleasesTheNewOne) {
  auto holder = std::make_unique<sigjit::tuner::FleetTuneLock>(a_.get(), gpu(), kKey, 500ms);
  ASSERT_TRUE(holder->held());
  ASSERT_NE(redis_->cli("DEL " + lock_key()).find('1'), std::string::npos);  // as if it had expired
  sigjit::cache::RemoteLock theirs;
  ASSERT_EQ(b_->try_lock(gpu(), kKey, 1200ms, &theirs), sigjit::cache::RemoteStatus::ok);  // no refresher: a plain TTL
  const auto taken = Clock::now();
  std::this_thread::sleep_for(450ms);  // two or three of a's refresh ticks
  EXPECT_TRUE(holder->lost());
  holder.reset();  // a's release must leave b's lock alone
  EXPECT_EQ(redis_->cli("GET " + lock_key()), theirs.token + "\n") << "b's lock, untouched";
  // Neither extended nor shortened by a's refreshes (a PEXPIRE of a's 500 ms would leave < 500).
  const long pttl = std::stol("0" + redis_->cli("PTTL " + lock_key()));
  EXPECT_GT(pttl, 1200 - 450 - 250);
  EXPECT_LE(pttl, 1200 - 450);
  std::this_thread::sleep_until(taken + 1300ms);
  EXPECT_FALSE(lock_exists()) << "b's lock expires on b's own TTL";
}

TEST(FleetTuneLock, OneNodeTunesAKey) {
  const fs::path dir = fs::temp_directory_path() / ("sigjit_fl_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    sigjit::test::TestRedis redis(dir);
    if (!redis.installed()) GTEST_SKIP() << "redis-server not installed";
    ASSERT_TRUE(redis.start());
    auto config = sigjit::cache::RemoteConfig::parse_url(redis.url());
    config.write = true;
    sigjit::cache::RemoteTier a(config, {}), b(config, {});
    config.write = false;
    sigjit::cache::RemoteTier reader(config, {});
    sigjit::cache::DeviceFingerprint fp;
    fp.gpu_name = "GPU";
    const std::string key = "fwd_bf16_d128_dense_full_logn_nosb_fast_le2k_sm_90a";
    {
      const sigjit::tuner::FleetTuneLock first(&a, fp, key);
      EXPECT_TRUE(first.held());
      const sigjit::tuner::FleetTuneLock second(&b, fp, key);
      EXPECT_FALSE(second.held());  // another node tunes it
      const sigjit::tuner::FleetTuneLock other(&b, fp, "fwd_bf16_d64_dense_full_logn_nosb_fast_le2k_sm_90a");
      EXPECT_TRUE(other.held());                                           // another key is free
      EXPECT_TRUE(sigjit::tuner::FleetTuneLock(&reader, fp, key).held());  // read-only: nothing to coordinate
      EXPECT_TRUE(sigjit::tuner::FleetTuneLock(nullptr, fp, key).held());
    }
    EXPECT_TRUE(sigjit::tuner::FleetTuneLock(&b, fp, key).held());  // released by its holder
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
