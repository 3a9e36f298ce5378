// The fleet-wide tuning lock (tune/fleet.hpp: FleetTuneLock on RemoteTier::try_lock) against a
// real redis-server (skipped when not installed): one node holds a (spec, bucket, device), another
// is told to skip it until it is released; a read-only or missing tier coordinates nothing (held).
#include "tests/common/redis_server.hpp"
#include "tune/fleet.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

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
      EXPECT_TRUE(other.held());  // another key is free
      EXPECT_TRUE(sigjit::tuner::FleetTuneLock(&reader, fp, key).held());  // read-only: nothing to coordinate
      EXPECT_TRUE(sigjit::tuner::FleetTuneLock(nullptr, fp, key).held());
    }
    EXPECT_TRUE(sigjit::tuner::FleetTuneLock(&b, fp, key).held());  // released by its holder
    {
      const sigjit::tuner::FleetTuneLock dies(&a, fp, key, 200ms);  // a holder that never releases: the TTL frees it
      EXPECT_TRUE(dies.held());
      EXPECT_FALSE(sigjit::tuner::FleetTuneLock(&b, fp, key).held());
      std::this_thread::sleep_for(300ms);
      EXPECT_TRUE(sigjit::tuner::FleetTuneLock(&b, fp, key).held());
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
