#include "tune/fleet.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
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
    : tier_(tier), problem_key_(problem_key), ttl_(ttl) {
  if (!tier_ || !tier_->writable()) return;
  cache::RemoteLock lock;
  const cache::RemoteStatus s = tier_->try_lock(fp, problem_key, ttl, &lock);
  held_ = s != cache::RemoteStatus::absent;
  if (s != cache::RemoteStatus::ok) return;
  lock_ = lock;
  try {
    refresher_ = std::thread([this] { refresh_until_stopped(); });
  } catch (const std::exception& e) {  // no thread to be had: the TTL still bounds the lock
    std::fprintf(stderr, "sigjit: fleet lock %s: not refreshed (%s); a tune longer than %lld ms may be repeated by another node\n",
                 problem_key_.c_str(), e.what(), static_cast<long long>(ttl_.count()));
  }
}

void FleetTuneLock::refresh_until_stopped() {
  const auto every = std::max(ttl_ / 3, std::chrono::milliseconds(1));
  std::unique_lock lock(mutex_);
  while (!stop_.wait_for(lock, every, [this] { return stopping_; })) {
    lock.unlock();
    cache::RemoteStatus s = cache::RemoteStatus::unavailable;
    try {
      s = tier_->refresh_lock(*lock_, ttl_);
    } catch (const std::exception&) {  // a ttl try_lock accepted: not expected; the next tick tries again
    }
    lock.lock();
    if (s == cache::RemoteStatus::absent) {  // unavailable or refused: try again next tick, the TTL still runs
      lost_ = true;
      std::fprintf(stderr,
                   "sigjit: fleet lock %s: lost (it expired while the remote tier was unreachable, or was removed); another node may "
                   "tune this key too: this one finishes, and publishing keeps the faster entry\n",
                   problem_key_.c_str());
      return;
    }
  }
}

FleetTuneLock::~FleetTuneLock() {
  if (refresher_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    stop_.notify_all();
    refresher_.join();
  }
  if (tier_ && lock_ && !lost_) tier_->unlock(*lock_);  // unlock compares the token too: never another node's lock
}

}  // namespace sigjit::tuner
