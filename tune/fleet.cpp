#include "tune/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace sigjit::tuner {

std::pair<int, int> parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 4 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
    return std::stoi(s);
  };
  const int k = slash == std::string::npos ? -1 : number(text.substr(0, slash));
  const int n = slash == std::string::npos ? -1 : number(text.substr(slash + 1));
  if (k < 1 || n < 1 || k > n || n > 4096)
    throw Error(fmt::format("--shard {}: expected K/N with 1 <= K <= N <= 4096 (e.g. 3/8: the third of eight shards)", text));
  return {k, n};
}

std::vector<KernelSpec> shard_specs(const std::vector<KernelSpec>& specs, int k, int n) {
  if (k < 1 || n < 1 || k > n) throw Error(fmt::format("shard {}/{}: expected 1 <= K <= N", k, n));
  std::map<std::string, KernelSpec> by_key;  // sorted, distinct
  for (const auto& s : specs) by_key.emplace(problem_key(s), s);
  std::vector<KernelSpec> out;
  int i = 0;
  for (const auto& [key, spec] : by_key) {
    if (i % n == k - 1) out.push_back(spec);
    ++i;
  }
  return out;
}

FleetTuneLock::FleetTuneLock(cache::RemoteTier* tier, const cache::DeviceFingerprint& fp, const std::string& problem_key,
                             std::chrono::milliseconds ttl)
    : tier_(tier) {
  if (!tier_ || !tier_->writable()) return;
  cache::RemoteLock lock;
  const cache::RemoteStatus s = tier_->try_lock(fp, problem_key, ttl, &lock);
  if (s == cache::RemoteStatus::ok) lock_ = lock;
  held_ = s != cache::RemoteStatus::absent;
}

FleetTuneLock::~FleetTuneLock() {
  if (tier_ && lock_) tier_->unlock(*lock_);
}

}  // namespace sigjit::tuner
