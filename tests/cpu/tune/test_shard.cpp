// tune --shard K/N (tune/fleet.hpp: shard_specs): every (spec, bucket) pair of a workload is in
// exactly one of the N shards for N = 1..8, whatever the workload's order; bad K/N refused.
#include "tune/fleet.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

namespace {

std::vector<sigjit::KernelSpec> workload() {
  std::vector<sigjit::KernelSpec> specs;
  for (int hd : {64, 128})
    for (auto dt : {sigjit::DType::bf16, sigjit::DType::fp16})
      for (auto layout : {sigjit::Layout::dense, sigjit::Layout::padded, sigjit::Layout::varlen})
        for (auto b : {sigjit::SeqBucket::up_to_512, sigjit::SeqBucket::up_to_2k, sigjit::SeqBucket::up_to_8k, sigjit::SeqBucket::over_8k})
          for (bool causal : {false, true}) {
            sigjit::KernelSpec s;
            s.head_dim = hd;
            s.dtype = dt;
            s.layout = layout;
            s.bucket = b;
            s.causal = causal;
            s.arch = sigjit::Arch::parse("sm_90a");
            specs.push_back(s);
          }
  specs.push_back(specs.front());  // a duplicate pair is still tuned once
  return specs;
}

TEST(TuneShard, EveryPairExactlyOnceForOneToEightShards) {
  const auto specs = workload();
  std::set<std::string> all;
  for (const auto& s : specs) all.insert(sigjit::problem_key(s));
  auto shuffled = specs;
  std::mt19937 rng(7);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  for (int n = 1; n <= 8; ++n) {
    std::map<std::string, int> seen;
    for (int k = 1; k <= n; ++k) {
      const auto part = sigjit::tuner::shard_specs(specs, k, n);
      const auto again = sigjit::tuner::shard_specs(shuffled, k, n);  // independent of the order
      ASSERT_EQ(part.size(), again.size());
      for (std::size_t i = 0; i < part.size(); ++i) EXPECT_EQ(sigjit::problem_key(part[i]), sigjit::problem_key(again[i]));
      EXPECT_LE(part.size(), all.size() / n + 1);  // balanced
      for (const auto& s : part) ++seen[sigjit::problem_key(s)];
    }
    EXPECT_EQ(seen.size(), all.size()) << "N=" << n;
    for (const auto& [key, count] : seen) EXPECT_EQ(count, 1) << key << " N=" << n;
  }
}

TEST(TuneShard, ParseRefusesBadShards) {
  EXPECT_EQ(sigjit::tuner::parse_shard("3/8"), std::make_pair(3, 8));
  for (const char* bad : {"0/3", "4/3", "3", "/3", "a/b", "1/0", "-1/3", "1/99999", ""}) EXPECT_THROW(sigjit::tuner::parse_shard(bad), sigjit::Error) << bad;
}

}  // namespace
