// The store's file layer: descriptors, bounded whole-file reads, atomic writes and fsync, listings
// that never follow a link, and the per-key lock. Kept apart as jitify2 keeps its file cache apart
// from what it caches: nothing here knows what an index file or an entry means (store_internal.hpp).
#include "cache/files.hpp"

#include "base/env.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string_view>
#include <system_error>
#include <thread>

namespace sigjit::cache::detail {

constexpr int kFaultExitCode = 86;

[[noreturn]] void fail(const std::string& message) { throw Error(message); }

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

bool env_flag(const char* name) {
  const char* v = env::raw(name);
  return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

namespace {

bool fsync_enabled() { return !env_flag("SIGJIT_CACHE_NO_FSYNC"); }

double lock_timeout_seconds() {
  if (const char* v = env::raw("SIGJIT_CACHE_LOCK_TIMEOUT"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    const double t = std::strtod(v, &end);
    if (end != v && *end == '\0' && !std::isnan(t) && t >= 0) return t;  // inf or huge: wait without limit
    fail(fmt::format("SIGJIT_CACHE_LOCK_TIMEOUT='{}': expected a number of seconds >= 0, e.g. 30 (inf: wait without limit)", v));
  }
  return 30.0;
}

}  // namespace

// ---- files -------------------------------------------------------------------------------------

// read_all's "not a regular file" result (a FIFO, device, socket or directory): never read, so
// that a FIFO planted in the cache, or given as a bundle, cannot block the reader forever.
constexpr int kNotRegular = -1;

std::string read_error_text(int e) {
  if (e == kNotRegular) return "not a regular file (a FIFO, device, socket or directory); refused";
  if (e == ELOOP) return "a symbolic link; the cache never follows links inside it";
  return errno_text(e);
}

// Reads a whole file into `out`; returns 0, kNotRegular or an errno value (EFBIG: over `limit`,
// checked before reading). `st` receives the file's stat. Opens with O_NONBLOCK (opening a FIFO
// does not wait for a writer) and checks fstat before the first read; files inside the cache
// are opened with O_NOFOLLOW (follow_link = false): a symbolic link there is refused (ELOOP).
template <class Buffer>
int read_all(const fs::path& path, Buffer& out, struct stat* st, std::size_t limit, bool follow_link) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow_link ? 0 : O_NOFOLLOW)));
  if (fd.get() < 0) return errno;
  struct stat s {};
  if (::fstat(fd.get(), &s) != 0) return errno;
  if (!S_ISREG(s.st_mode)) return kNotRegular;
  if (static_cast<std::uint64_t>(s.st_size) > limit) return EFBIG;
  if (st != nullptr) *st = s;
  out.clear();
  out.resize(static_cast<std::size_t>(s.st_size));
  std::size_t done = 0;
  for (;;) {
    if (done == out.size()) out.resize(out.size() + 4096);  // the file may have grown; read to EOF
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
    if (done > limit) return EFBIG;
  }
  out.resize(done);
  return 0;
}

template int read_all(const fs::path&, std::string&, struct stat*, std::size_t, bool);
template int read_all(const fs::path&, std::vector<char>&, struct stat*, std::size_t, bool);
template int read_all(const fs::path&, std::vector<std::uint8_t>&, struct stat*, std::size_t, bool);

namespace {

void fsync_dir(const fs::path& dir) {
  if (!fsync_enabled()) return;
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) ::fsync(fd.get());  // best effort: some file systems refuse fsync on directories
}

// Opens a directory the cache keeps, `rel` below `root` ("tmp", "locks", "index/<id>",
// "blobs/<ab>"), to create or rename files in it, following no symbolic link below the root: a
// link planted at one of them must not make a write create or replace a file outside the cache.
// The root itself may be a link (SIGJIT_CACHE_DIR may name one). A missing directory is created
// (mkdirat, relative to its parent: never through a link). Returns the fd; throws Error naming
// the directory.
int open_cache_dir(const fs::path& root, const fs::path& rel) {
  fs::path dir = root;
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 && errno == ENOENT) {  // removed under us: recreate it
    ensure_dir(root);
    fd.reset(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  int err = fd.get() < 0 ? errno : 0;
  for (auto part = rel.begin(); err == 0 && part != rel.end(); ++part) {
    if (part->empty() || *part == ".") continue;
    dir /= *part;
    constexpr int kFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int next = ::openat(fd.get(), part->c_str(), kFlags);
    if (next < 0 && errno == ENOENT) {
      if (::mkdirat(fd.get(), part->c_str(), 0777) == 0 && fsync_enabled()) ::fsync(fd.get());
      next = ::openat(fd.get(), part->c_str(), kFlags);
    }
    if (next < 0) err = errno;
    else fd.reset(next);
  }
  if ((err == ELOOP || err == ENOTDIR) && dir != root)
    fail(fmt::format("cache: {} is a symbolic link or not a directory; the cache never writes through a link inside it. Remove it "
                     "(sigjit recreates the directory; `sigjit gc` removes links at tmp/, index/<id> and blobs/<ab>)",
                     dir.string()));
  if (err != 0)
    fail(fmt::format("cache: cannot open directory {}: {}; check the permissions of the cache or set SIGJIT_CACHE_DIR to a writable "
                     "directory",
                     dir.string(), errno_text(err)));
  return fd.release();
}

std::uint64_t random64() {
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 rng([] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
           static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }());
  return rng() ^ (counter.fetch_add(1) * 0x9e3779b97f4a7c15ull);
}

}  // namespace

int open_cache_subdir(const fs::path& root, const fs::path& rel) { return open_cache_dir(root, rel); }

void ensure_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return;
  const std::error_code stat_error = ec;  // e.g. EACCES, ELOOP, ENAMETOOLONG: no throwing overloads here (F10)
  ec.clear();
  if (fs::create_directories(dir, ec)) fsync_dir(dir.parent_path());
  std::error_code again;
  if (!fs::is_directory(dir, again)) {
    const std::error_code& why = ec ? ec : again ? again : stat_error;
    fail(fmt::format(
        "cache: cannot create directory {}: {}; check the permissions of the cache or set SIGJIT_CACHE_DIR to a writable directory",
        dir.string(), why ? why.message() : std::string("not a directory")));
  }
}

// Writes `data` to a unique temp file in `tmp_dir`, fsyncs it, renames it to `target` and fsyncs
// target's directory. Readers see the old file or the new one, never a partial one. `outside`:
// the target is not in the cache (an exported bundle): messages name its directory, and a missing
// directory is an error rather than recreated. Inside the cache (tmp_dir is <root>/tmp) both
// directories are opened with open_cache_dir: a link planted at tmp/, index/<id> or blobs/<ab>
// fails the write instead of sending the file outside the cache.
void atomic_write(const fs::path& tmp_dir, const fs::path& target, const void* data, std::size_t size, const char* outside) {
  const std::string check = outside != nullptr ? std::string(outside) : std::string("of the cache or set SIGJIT_CACHE_DIR");
  Fd tmp_dir_fd, target_dir_fd;
  if (outside != nullptr) {
    tmp_dir_fd.reset(::open(tmp_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (tmp_dir_fd.get() < 0)
      fail(fmt::format("export: cannot open directory {}: {}; check that it exists and the permissions {}", tmp_dir.string(),
                       errno_text(errno), check));
  } else {
    const fs::path root = tmp_dir.parent_path();
    tmp_dir_fd.reset(open_cache_dir(root, tmp_dir.filename()));
    target_dir_fd.reset(open_cache_dir(root, target.parent_path().lexically_relative(root)));
  }
  const int target_dir = outside != nullptr ? tmp_dir_fd.get() : target_dir_fd.get();  // an export's temp file is beside it
  const std::string target_name = target.filename().string();
  std::string tmp_name;
  Fd fd;
  for (int attempt = 0;; ++attempt) {
    tmp_name = fmt::format("{}.{}.{:016x}.tmp", target_name, ::getpid(), random64());
    fd.reset(::openat(tmp_dir_fd.get(), tmp_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
    if (fd.get() >= 0) break;
    const int e = errno;
    if (e == EEXIST && attempt < 16) continue;
    fail(fmt::format("{}: cannot create temp file {}: {}; check free space and permissions {}", outside != nullptr ? "export" : "cache",
                     (tmp_dir / tmp_name).string(), errno_text(e), check));
  }
  auto give_up = [&](const char* step) {
    const int e = errno;
    fd.reset();
    ::unlinkat(tmp_dir_fd.get(), tmp_name.c_str(), 0);
    fail(fmt::format("{}: cannot {} {}: {}; check free space and permissions {}", outside != nullptr ? "export" : "cache", step,
                     step[0] == 'r' ? target.string() : (tmp_dir / tmp_name).string(), errno_text(e), check));
  };
  if (!write_all(fd.get(), data, size)) give_up("write");
  if (fsync_enabled() && ::fsync(fd.get()) != 0) give_up("fsync");
  if (::close(fd.release()) != 0) give_up("close");
  if (const char* f = env::raw("SIGJIT_CACHE_FAULT"); f != nullptr && std::string_view(f) == "exit_before_rename")
    ::_exit(kFaultExitCode);
  if (::renameat(tmp_dir_fd.get(), tmp_name.c_str(), target_dir, target_name.c_str()) != 0) give_up("rename a temp file onto");
  if (fsync_enabled()) ::fsync(target_dir);  // best effort: some file systems refuse fsync on directories
}

void atomic_write(const fs::path& tmp_dir, const fs::path& target, const std::string& data) {
  atomic_write(tmp_dir, target, data.data(), data.size());
}

// Seconds since the last modification; 0 if the file cannot be stat'ed.
double age_seconds(const struct stat& st) {
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<double>(now.tv_sec - st.st_mtim.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec - st.st_mtim.tv_nsec);
}

// Is `p` a directory itself, not a symbolic link to one?
bool is_real_dir(const fs::path& p) {
  std::error_code ec;
  return fs::symlink_status(p, ec).type() == fs::file_type::directory;
}

// Regular files and symbolic links (never followed: a reader sees a link as corrupt, gc unlinks
// the link itself) directly in `dir`; none if it does not exist or is itself a link.
std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!is_real_dir(dir)) return out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::file_type t = it->symlink_status(ec).type();
    if (t == fs::file_type::regular || t == fs::file_type::symlink) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Directories (not links to them) directly in `dir`.
std::vector<fs::path> dirs_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!is_real_dir(dir)) return out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->symlink_status(ec).type() == fs::file_type::directory) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

// ---- listing directories without following links --------------------------------------------------

// Opens `name` in `at` as a directory without following a symbolic link; -1 if it is absent, a
// link or not a directory.
int open_dir_at(int at, const char* name) { return ::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); }

// The entries of an open directory (no "." or ".."), sorted by name.
std::vector<DirItem> list_dir(int dirfd) {
  std::vector<DirItem> out;
  const int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return out;
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return out;
  }
  ::rewinddir(d);
  while (const dirent* e = ::readdir(d)) {
    const std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    DirItem item;
    item.name = std::string(n);
    if (::fstatat(dirfd, e->d_name, &item.st, AT_SYMLINK_NOFOLLOW) == 0) out.push_back(std::move(item));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const DirItem& a, const DirItem& b) { return a.name < b.name; });
  return out;
}

// ---- per-key lock --------------------------------------------------------------------------------

KeyLock::KeyLock(const fs::path& path) {
  const Fd dir(open_cache_dir(path.parent_path().parent_path(), path.parent_path().filename()));
  fd_.reset(::openat(dir.get(), path.filename().c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666));
  struct stat st {};
  if (fd_.get() < 0 || ::fstat(fd_.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    const int e = fd_.get() < 0 ? errno : 0;
    if (e == ELOOP || e == 0)
      fail(fmt::format("cache: lock file {} is {}; the cache never opens a lock file through a link or of another type. Remove it "
                       "(sigjit recreates it)",
                       path.string(), e == ELOOP ? "a symbolic link" : "not a regular file"));
    fail(fmt::format("cache: cannot open lock file {}: {}; check the permissions of the cache or set SIGJIT_CACHE_DIR", path.string(),
                     errno_text(e)));
  }
  const double timeout = lock_timeout_seconds();
  const auto start = std::chrono::steady_clock::now();
  // Beyond ~30 years (or inf) there is no deadline: the conversion to the clock's integer
  // nanoseconds would overflow (at about 292 years) and time out at once.
  const auto deadline =
      timeout > 1e9 ? std::chrono::steady_clock::time_point::max()
                    : start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(timeout));
  std::uniform_int_distribution<int> jitter(0, 999);
  std::mt19937 rng(static_cast<unsigned>(random64()));
  auto wait = std::chrono::microseconds(500);
  while (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    if (e == EINTR) continue;
    if (e != EWOULDBLOCK)
      fail(fmt::format(
          "cache: cannot lock {}: flock failed ({}); the file system may not support flock: set SIGJIT_CACHE_DIR to a local directory",
          path.string(), errno_text(e)));
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      fail(
          fmt::format("cache: timed out after {:g} s waiting for the lock {}: another process holds it. Find it with `fuser -v {}` "
                      "(or `lsof {}`) and end it if it hangs; if no process holds it (a stale NFS lock), delete the lock file. "
                      "SIGJIT_CACHE_LOCK_TIMEOUT sets the wait in seconds",
                      timeout, path.string(), path.string(), path.string()));
    const auto nap = std::min<std::chrono::steady_clock::duration>(wait + std::chrono::microseconds(jitter(rng)), deadline - now);
    std::this_thread::sleep_for(nap);
    wait = std::min<std::chrono::microseconds>(wait * 2, std::chrono::milliseconds(10));
  }
}

KeyLock::~KeyLock() {
  if (fd_.get() >= 0) ::flock(fd_.get(), LOCK_UN);
}

}  // namespace sigjit::cache::detail
