// Tuning as a fleet: the public face of the remote tier for tools (the CLI's push, pull and tune
// use it; it never reaches into sigjit::detail), sharding a workload over N nodes, and the
// fleet-wide lock around tuning one (spec, bucket, device).
#pragma once

#include "cache/remote.hpp"
#include "cache/signing.hpp"
#include "cache/store.hpp"
#include "jit/remote_tier.hpp"
#include "problem/spec.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sigjit::tuner {

// jit/remote_tier.hpp, for tools: publishing one entry (signed; if absent when untuned, replacing
// only a slower or untuned entry when tuned), checking a record for this library, and writing a
// checked record through to a local store (origin imported: a claim).
using PublishResult = detail::PublishResult;
using detail::publish_entry;
using detail::remote_record_problem;
using detail::to_string;
using detail::write_through;

// "K/N" with 1 <= K <= N <= 4096; throws Error otherwise.
std::pair<int, int> parse_shard(const std::string& text);
// Shard k of n (1-based) of `specs`: the distinct problem keys sorted, every n-th from the k-th.
// Deterministic (independent of the workload's order and of the machine), disjoint, and the n
// shards together cover every (spec, bucket) pair exactly once.
std::vector<KernelSpec> shard_specs(const std::vector<KernelSpec>& specs, int k, int n);

// A fleet-wide lock around tuning one (spec, bucket, device) (RemoteTier::try_lock, a TTL so a
// node that dies never blocks the fleet; released by its destructor). held(): this node tunes;
// otherwise another node does (or the tier is read-only or down: then held() is true too, since
// nothing can be coordinated and tuning locally is the safe choice).
// A tune may outlast the TTL: while held, a thread extends it every ttl/3 (RemoteTier::
// refresh_lock, a compare-and-extend in one Lua script: only while the key still holds this
// node's token). Why a thread rather than refreshes at the tune loop's progress points: one
// candidate's compile or timing has no bound the loop could promise, and a thread needs nothing
// from the tuner. A refresh that finds the lock gone (it expired while the tier was unreachable,
// or someone deleted it) stops refreshing, logs once and sets lost(): another node may be tuning
// the key now, and this node never extends or releases that node's lock (publishing compares
// first, so the faster entry stays).
class FleetTuneLock {
 public:
  FleetTuneLock(cache::RemoteTier* tier, const cache::DeviceFingerprint& fp, const std::string& problem_key,
                std::chrono::milliseconds ttl = std::chrono::minutes(30));
  ~FleetTuneLock();  // stops the refresher, then releases the lock if it is still this node's
  FleetTuneLock(const FleetTuneLock&) = delete;
  FleetTuneLock& operator=(const FleetTuneLock&) = delete;
  bool held() const { return held_; }
  bool lost() const { return lost_.load(); }

 private:
  void refresh_until_stopped();

  cache::RemoteTier* tier_;
  std::string problem_key_;
  std::chrono::milliseconds ttl_;
  std::optional<cache::RemoteLock> lock_;
  bool held_ = true;
  std::atomic<bool> lost_{false};
  std::mutex mutex_;  // stopping_, for the refresher's wait
  std::condition_variable stop_;
  bool stopping_ = false;
  std::thread refresher_;
};

}  // namespace sigjit::tuner
