// The lookup counters and their shard files (design: cache/counters.hpp).
#include "cache/counters.hpp"

#include "cache/store_internal.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

namespace sigjit::cache {
namespace {

using namespace detail;  // the store's file layer: Fd, open_cache_subdir, list_dir, bounded_parse

constexpr const char* kNames[kCounterCount] = {"process.hit", "process.miss", "local.hit",          "local.miss",    "remote.hit",
                                               "remote.miss", "remote.error", "remote.unavailable", "remote.refused"};
constexpr int kFileVersion = 1;
constexpr std::size_t kMaxNameBytes = 64;
constexpr std::size_t kMaxExtraNames = 16;  // names of a newer sigjit, kept through this one's flushes
constexpr auto kZeroLockWait = std::chrono::seconds(5);

// ---- one shard -----------------------------------------------------------------------------------

struct Shard {
  std::map<std::string, std::uint64_t> values;
  std::optional<std::int64_t> zeroed_at;
};

std::string shard_file(int n) { return fmt::format("stats_{:02d}.json", n); }

bool is_shard_file(std::string_view name) {
  for (int n = 0; n < kCounterShards; ++n)
    if (name == shard_file(n)) return true;
  return false;
}

bool is_counter_name(std::string_view s) {
  return !s.empty() && s.size() <= kMaxNameBytes &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'; });
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

// "" and the shard, or why the text is not a counters file.
std::string parse_shard(const std::string& text, Shard& out) {
  json j;
  ParseLimits limits;
  limits.max_depth = 3;
  limits.max_string = kMaxNameBytes;
  limits.max_values = 4 * (kCounterCount + kMaxExtraNames) + 8;
  if (std::string why = bounded_parse(text, false, limits, j); !why.empty()) return fmt::format("not valid JSON ({})", why);
  if (!j.is_object() || !j.contains("sigjit_counters") || j["sigjit_counters"] != kFileVersion)
    return "not a sigjit counters file of format 1";
  const auto counters = j.find("counters");
  if (counters == j.end() || !counters->is_object()) return "no counters object";
  if (counters->size() > kCounterCount + kMaxExtraNames) return fmt::format("{} counters, more than any sigjit writes", counters->size());
  for (const auto& [name, v] : counters->items()) {
    if (!is_counter_name(name)) return "a counter name that is not [a-z0-9_.], 1 to 64 characters";
    if (!v.is_number_unsigned()) return fmt::format("counter {} is not an unsigned integer", name);
    out.values[name] = v.get<std::uint64_t>();
  }
  if (const auto z = j.find("zeroed_at"); z != j.end()) {
    if (!z->is_number_integer() || z->get<std::int64_t>() < 0) return "zeroed_at is not a time in seconds";
    out.zeroed_at = z->get<std::int64_t>();
  }
  return {};
}

std::string shard_text(const Shard& s) {
  json counters = json::object();
  for (const auto& [name, v] : s.values) counters[name] = v;
  json j = {{"sigjit_counters", kFileVersion}, {"counters", std::move(counters)}};
  if (s.zeroed_at) j["zeroed_at"] = *s.zeroed_at;
  return j.dump() + "\n";
}

// Reads `name` in `dir` (never through a link, never a FIFO, within kMaxCountersFileBytes).
// 0, ENOENT, or another errno value (EFBIG: too large; EINVAL: not a regular file).
int read_at(int dir, const std::string& name, std::string& out) {
  Fd fd(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) return errno;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno;
  if (!S_ISREG(st.st_mode)) return EINVAL;
  out.assign(kMaxCountersFileBytes + 1, '\0');
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (done > kMaxCountersFileBytes) return EFBIG;
  out.resize(done);
  return 0;
}

// The shard `name` in `stats`: absent reads as empty; "" or why it is unreadable.
std::string read_shard(int stats, const std::string& name, Shard& out) {
  std::string text;
  const int e = read_at(stats, name, text);
  if (e == ENOENT) return {};
  if (e == EFBIG) return fmt::format("over {} bytes", kMaxCountersFileBytes);
  if (e == ELOOP) return "a symbolic link; the cache never follows links inside it";
  if (e == EINVAL) return "not a regular file";
  if (e != 0) return errno_text(e);
  return parse_shard(text, out);
}

// Writes `text` to a temp file in tmp/ and renames it onto stats/<name>. No fsync: a power loss may
// lose the last few seconds of counts, and a flush must stay cheap.
void write_shard(int tmp, int stats, const std::string& name, const std::string& text) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string tmp_name;
  Fd fd;
  for (int attempt = 0; fd.get() < 0; ++attempt) {
    tmp_name = fmt::format("{}.{}.{:016x}.tmp", name, ::getpid(), rng());  // gc's temp-file pattern
    fd.reset(::openat(tmp, tmp_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
    if (fd.get() < 0 && (errno != EEXIST || attempt >= 16))
      fail(fmt::format("cannot create a temp file in tmp/: {}; check free space and the cache's permissions", errno_text(errno)));
  }
  const bool written = write_all(fd.get(), text.data(), text.size());
  const bool closed = ::close(fd.release()) == 0;
  if (!written || !closed || ::renameat(tmp, tmp_name.c_str(), stats, name.c_str()) != 0) {
    const int e = errno;
    ::unlinkat(tmp, tmp_name.c_str(), 0);
    fail(fmt::format("cannot write stats/{}: {}; check free space and the cache's permissions", name, errno_text(e)));
  }
}

// flock on locks/stats_<NN>.lock, held for the object's life; not held() when another process
// holds it past `deadline`. Opened like the store's lock files: never through a link.
class ShardLock {
 public:
  ShardLock(int locks, int n, std::chrono::steady_clock::time_point deadline) {
    const std::string name = fmt::format("stats_{:02d}.lock", n);
    fd_.reset(::openat(locks, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666));
    struct stat st {};
    if (fd_.get() < 0 || ::fstat(fd_.get(), &st) != 0 || !S_ISREG(st.st_mode))
      fail(fmt::format("cannot open locks/{}: {}; remove it if it is a link or not a file (sigjit recreates it)", name,
                       fd_.get() < 0 ? errno_text(errno) : std::string("not a regular file")));
    while (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) fail(fmt::format("cannot lock locks/{}: {}", name, errno_text(errno)));
      if (std::chrono::steady_clock::now() >= deadline) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    held_ = true;
  }
  ~ShardLock() {
    if (held_) ::flock(fd_.get(), LOCK_UN);  // explicit: a forked copy of the descriptor must not keep it
  }
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;
  bool held() const { return held_; }

 private:
  Fd fd_;
  bool held_ = false;
};

// ---- adding a process's counts to the root -------------------------------------------------------

enum class AddResult { added, busy, no_root };

// A corrupt shard is rewritten from zero by the flush that finds it: said, a few times per process.
void log_reset(const std::string& name, const std::string& why) {
  static std::atomic<int> logged{0};
  if (logged.fetch_add(1) < 4)
    std::fputs(
        fmt::format("sigjit: cache: counters file stats/{} is unreadable ({}); its counts start again from zero\n", name, why).c_str(),
        stderr);
}

// Adds `d` to the first shard whose lock is free, starting at this process's own.
AddResult add_to_root(const fs::path& root, const CounterValues& d) {
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return AddResult::no_root;  // removed: not recreated for counters
  const Fd locks(open_cache_subdir(root, "locks")), stats(open_cache_subdir(root, "stats")), tmp(open_cache_subdir(root, "tmp"));
  const int first = static_cast<int>(::getpid() % kCounterShards);
  for (int i = 0; i < kCounterShards; ++i) {
    const int n = (first + i) % kCounterShards;
    const ShardLock lock(locks.get(), n, std::chrono::steady_clock::now());
    if (!lock.held()) continue;
    const std::string name = shard_file(n);
    Shard shard;
    if (const std::string why = read_shard(stats.get(), name, shard); !why.empty()) {
      log_reset(name, why);
      shard = Shard{};
    }
    for (std::size_t c = 0; c < kCounterCount; ++c) shard.values[kNames[c]] = saturating_add(shard.values[kNames[c]], d[c]);
    write_shard(tmp.get(), stats.get(), name, shard_text(shard));
    return AddResult::added;
  }
  return AddResult::busy;
}

// ---- the process's sink --------------------------------------------------------------------------

struct Sink {
  std::array<std::atomic<std::uint64_t>, kCounterCount> pending{};
  std::mutex mutex;  // root, the thread, flushes
  std::condition_variable wake;
  fs::path root;
  std::chrono::milliseconds interval = kFlushInterval;
  std::thread* thread = nullptr;  // a pointer: a forked child drops it (its thread is not there)
  bool stopping = false;
  std::atomic<bool> need_thread{false};  // a forked child starts its own on its next count
  bool warned = false;

  // Under `mutex`. Takes the pending counts and adds them to the root; puts them back on failure.
  bool flush_locked(int attempts = 1) {
    if (root.empty()) return false;
    CounterValues d{};
    bool any = false;
    for (std::size_t i = 0; i < kCounterCount; ++i) any |= (d[i] = pending[i].exchange(0, std::memory_order_relaxed)) != 0;
    if (!any) return true;
    AddResult r = AddResult::busy;
    try {
      for (int a = 0; a < attempts && (r = add_to_root(root, d)) == AddResult::busy; ++a)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } catch (const std::exception& e) {
      warn(e.what());
      r = AddResult::busy;
    }
    if (r == AddResult::added) return true;
    for (std::size_t i = 0; i < kCounterCount; ++i) pending[i].fetch_add(d[i], std::memory_order_relaxed);
    return false;
  }

  void warn(const std::string& why) {
    if (std::exchange(warned, true)) return;
    std::fputs(fmt::format("sigjit: cache: lookup counters not saved under {}: {} (`sigjit stats` misses this process's counts)\n",
                           root.string(), why)
                   .c_str(),
               stderr);
  }

  void run() {
    std::unique_lock lock(mutex);
    while (!stopping) {  // woken early (a new interval, the exit): wait again, or stop
      if (wake.wait_for(lock, interval) == std::cv_status::timeout && !stopping) flush_locked();
    }
  }

  // Under `mutex`. Without a thread (none to be had) the counts are still saved at exit.
  void start_thread_locked() {
    if (thread != nullptr || stopping || root.empty()) return;
    try {
      thread = new std::thread([this] { run(); });
    } catch (const std::exception& e) {
      warn(fmt::format("no thread for the periodic flush ({}); saved at exit only", e.what()));
    }
  }
};

std::atomic<Sink*> g_sink{nullptr};

// Never destroyed: the exit handler and a count() during static destruction may still use it.
Sink& sink() {
  static Sink* const first = [] {
    auto* s = new Sink;
    g_sink.store(s);
    return s;
  }();
  (void)first;
  return *g_sink.load();
}

void at_exit() {
  Sink& s = sink();
  std::thread* t = nullptr;
  {
    std::lock_guard lock(s.mutex);
    s.stopping = true;
    t = std::exchange(s.thread, nullptr);
  }
  s.wake.notify_all();
  if (t != nullptr) {
    t->join();
    delete t;
  }
  std::lock_guard lock(s.mutex);
  s.flush_locked(/*attempts=*/5);  // every shard busy: wait ~100 ms at most, then the counts are lost
}

// fork: no flush may be half done in the child, and the child counts only its own lookups.
void before_fork() { sink().mutex.lock(); }
void parent_after_fork() { sink().mutex.unlock(); }
void child_after_fork() {
  Sink* old = g_sink.load();  // its mutex and condition variable are left as the parent's thread had them: abandoned
  auto* fresh = new Sink;
  fresh->root = old->root;
  fresh->need_thread = !fresh->root.empty();
  g_sink.store(fresh);
}

void register_handlers_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit(at_exit);
    ::pthread_atfork(before_fork, parent_after_fork, child_after_fork);
  });
}

}  // namespace

const char* counter_name(Counter c) { return kNames[static_cast<std::size_t>(c)]; }

void count(Counter c) {
  Sink& s = sink();
  s.pending[static_cast<std::size_t>(c)].fetch_add(1, std::memory_order_relaxed);
  if (s.need_thread.load(std::memory_order_relaxed) && s.need_thread.exchange(false)) {
    std::lock_guard lock(s.mutex);
    s.start_thread_locked();
  }
}

CounterValues pending_counters() {
  CounterValues v{};
  Sink& s = sink();
  for (std::size_t i = 0; i < kCounterCount; ++i) v[i] = s.pending[i].load(std::memory_order_relaxed);
  return v;
}

void persist_counters(const fs::path& root, std::chrono::milliseconds interval) {
  register_handlers_once();
  Sink& s = sink();
  {
    std::lock_guard lock(s.mutex);
    if (s.root != root && !s.root.empty()) s.flush_locked();
    if (s.root != root) s.warned = false;
    s.root = root;
    s.interval = std::max(interval, std::chrono::milliseconds(1));
    s.start_thread_locked();
  }
  s.wake.notify_all();
}

bool flush_counters() {
  Sink& s = sink();
  std::lock_guard lock(s.mutex);
  return s.flush_locked(/*attempts=*/5);
}

CounterReport read_counters(const fs::path& root) {
  CounterReport r;
  const Fd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) {
    if (errno != ENOENT) r.problems.push_back(fmt::format("{}: {}", root.string(), errno_text(errno)));
    return r;
  }
  const Fd stats(open_dir_at(dir.get(), "stats"));
  if (stats.get() < 0) {
    if (errno != ENOENT) r.problems.push_back(fmt::format("stats/: {} (a link or not a directory is not read)", errno_text(errno)));
    return r;
  }
  for (const DirItem& item : list_dir(stats.get())) {
    if (!is_shard_file(item.name)) continue;
    Shard shard;
    if (const std::string why = read_shard(stats.get(), item.name, shard); !why.empty()) {
      r.problems.push_back(fmt::format("stats/{}: {}; not counted (the next flush starts it again from zero)", item.name, why));
      continue;
    }
    for (std::size_t c = 0; c < kCounterCount; ++c)
      if (const auto it = shard.values.find(kNames[c]); it != shard.values.end()) r.totals[c] = saturating_add(r.totals[c], it->second);
    if (shard.zeroed_at && (!r.zeroed_at || *shard.zeroed_at > *r.zeroed_at)) r.zeroed_at = shard.zeroed_at;
    ++r.files;
  }
  return r;
}

int zero_counters(const fs::path& root) {
  const Fd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0 && errno == ENOENT) return 0;
  const Fd stats(dir.get() < 0 ? -1 : open_dir_at(dir.get(), "stats"));
  if (stats.get() < 0 && errno == ENOENT) return 0;
  if (stats.get() < 0)
    fail(fmt::format("stats --zero: cannot open {}/stats: {}; remove it if it is a link or not a directory", root.string(),
                     errno_text(errno)));
  Shard zero;
  zero.zeroed_at = static_cast<std::int64_t>(std::time(nullptr));
  const std::string text = shard_text(zero);
  int zeroed = 0;
  for (int n = 0; n < kCounterShards; ++n) {
    struct stat st {};
    if (::fstatat(stats.get(), shard_file(n).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    const Fd locks(open_cache_subdir(root, "locks")), tmp(open_cache_subdir(root, "tmp"));
    const ShardLock lock(locks.get(), n, std::chrono::steady_clock::now() + kZeroLockWait);
    if (!lock.held()) fail(fmt::format("stats --zero: locks/stats_{:02d}.lock stays held by another process; try again", n));
    write_shard(tmp.get(), stats.get(), shard_file(n), text);
    ++zeroed;
  }
  return zeroed;
}

}  // namespace sigjit::cache
