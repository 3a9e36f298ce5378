// Hit and miss counters of the kernel lookup's tiers (the in-process table, the local store, the
// remote tier), counted by the runtime and persisted under the cache root, merged by `sigjit stats`.
//
// Why this shape (ccache's stats files): a lookup must not pay for its bookkeeping, and many
// processes share one root. count() is one relaxed atomic add; a background thread, started when
// the runtime opens its store (persist_counters), adds what was counted to a file of the root at
// most every kFlushInterval and once more at exit. The files are shards: a flush takes the first
// shard whose flock is free (never waits), reads it, adds, writes a temp file and renames it
// (readers see the old sum or the new one), so processes rarely contend and none ever blocks.
// What a crash loses: at most one interval of its own counts. A forked child starts from zero
// (the parent flushes what it counted).
//
// Layout (the store's rules: no link below the root is followed, temp files in tmp/ that gc removes):
//   stats/stats_<NN>.json   {"sigjit_counters": 1, "zeroed_at": <unix s>, "counters": {"local.hit": 3, ...}}
//   locks/stats_<NN>.lock   the shard's flock
// A file is read within kMaxCountersFileBytes, bounded while parsing, and each value checked; a
// corrupt shard is logged once and counts again from zero (the next flush rewrites it), never a
// failure of the caller. Reading (read_counters) creates nothing; zero_counters rewrites only
// shards that exist.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sigjit::cache {

enum class Counter {
  process_hit,         // the in-process table served a resolve
  process_miss,        // it did not: the local store was asked
  local_hit,           // the local store served a usable entry (also after waiting for another process's compile)
  local_miss,          // absent or unusable there (a compile's recheck under its lock asks again)
  remote_hit,          // a verified, usable record of the remote tier
  remote_miss,         // the tier does not have it
  remote_error,        // the tier failed: timeout, connection, protocol, or the server refused the command
  remote_unavailable,  // not asked: the circuit breaker was open after an earlier error
  remote_refused,      // a record refused: bad or untrusted signature, malformed, for another key, unusable here
};
inline constexpr std::size_t kCounterCount = 9;
// "process.hit", "local.miss", "remote.refused", ...: the names in the files and in `sigjit stats --json`.
const char* counter_name(Counter c);

using CounterValues = std::array<std::uint64_t, kCounterCount>;

inline constexpr std::chrono::seconds kFlushInterval{5};
inline constexpr int kCounterShards = 16;
inline constexpr std::size_t kMaxCountersFileBytes = 4096;

// Adds one to `c` in this process (lock-free; never touches the disk).
void count(Counter c);
// What this process counted and has not yet written.
CounterValues pending_counters();

// Persists this process's counts under `root` from now on (the runtime calls it when it opens its
// store): flushes every `interval` (tests choose theirs) and at exit. Another root flushes the
// pending counts to the old one first; an empty path stops persisting (flushing first).
void persist_counters(const std::filesystem::path& root, std::chrono::milliseconds interval = kFlushInterval);
// Writes the pending counts now (tests, tools). False when nothing could be written (no root, a
// root that vanished, every shard busy, an I/O error: the counts stay pending, logged once).
bool flush_counters();

struct CounterReport {
  CounterValues totals{};
  int files = 0;                          // shards read
  std::optional<std::int64_t> zeroed_at;  // newest `zeroed_at` of the shards (unix seconds)
  std::vector<std::string> problems;      // shards skipped: what is wrong with each
};
// The sum of the shards under `root`; a missing root or stats/ reads as zeros. Creates nothing.
CounterReport read_counters(const std::filesystem::path& root);
// Sets every existing shard to zero (each under its flock) and records the time. Returns the
// number of shards zeroed; creates nothing where there are none. Throws sigjit::Error when a
// shard cannot be written (e.g. a read-only cache), naming it.
int zero_counters(const std::filesystem::path& root);

}  // namespace sigjit::cache
