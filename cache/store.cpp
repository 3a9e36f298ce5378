// The on-disk kernel store (design: cache/store.hpp). This file opens the store and serves lookup,
// put and list; the file layer is files.cpp, what an entry means on disk index.cpp, and bundles
// (bundle.cpp) and verify, gc and prune (maintenance.cpp) build on both.
//
// Files, all written to tmp/, fsynced, renamed into place and the directory fsynced:
//   index/<fp id>/<key>.json  one per (device, problem); its format (magic, version, checksum) is in index.cpp.
//   blobs/<ab>/<sha>.cubin    raw cubin bytes, named by their SHA-256.
//   locks/<fp id>.<key>.lock  empty; flock(LOCK_EX | LOCK_NB) polled until a timeout. Never deleted
//                             (deleting a flock file lets two processes hold "the" lock).
//
// Environment:
//   SIGJIT_CACHE_DIR, XDG_CACHE_HOME, HOME   the root (default_root()).
//   SIGJIT_VERBOSE_CACHE=1                   also log plain misses (absent files).
//   SIGJIT_CACHE_LOCK_TIMEOUT=<seconds>      lock wait before put_entry throws (default 30).
//   SIGJIT_CACHE_NO_FSYNC=1                  skip fsync (still atomic against process crashes, not
//                                            against power loss): scratch caches and tests.
//   SIGJIT_CACHE_FAULT=exit_before_rename    fault injection for tests: _exit(86) after a temp file
//                                            is written and fsynced, before its rename.
//   SIGJIT_MAX_BUNDLE_BYTES=<bytes>          the largest bundle import reads (default 1 GiB).
#include "cache/store_internal.hpp"

#include "base/env.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

namespace sigjit::cache {
namespace detail {

constexpr std::size_t kMaxKeyLength = 180;  // keeps every derived file name under 255 bytes

// ---- logging -------------------------------------------------------------------------------

// Every miss other than plain absence is logged once per (path, reason) and process.
void log_miss(const fs::path& path, const std::string& reason) {
  static std::mutex mutex;
  static std::set<std::string> seen;
  {
    std::lock_guard lock(mutex);
    if (!seen.insert(path.string() + '\n' + reason).second) return;
  }
  std::fputs(fmt::format("sigjit: cache: {}: {}; treating as a miss, it will be rebuilt\n", path.string(), reason).c_str(), stderr);
}

namespace {

void log_absent(const fs::path& path) {
  if (env_flag("SIGJIT_VERBOSE_CACHE")) std::fputs(fmt::format("sigjit: cache: {}: not cached (miss)\n", path.string()).c_str(), stderr);
}

}  // namespace

// ---- names -----------------------------------------------------------------------------------

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_valid_key(std::string_view k) {
  return !k.empty() && k.size() <= kMaxKeyLength && std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

void check_key(const std::string& key) {
  if (!is_valid_key(key))
    fail(
        fmt::format("cache: invalid problem key '{}': it names a file, so it must be 1 to {} characters from [A-Za-z0-9_] "
                    "(use sigjit::problem_key())",
                    key, kMaxKeyLength));
}

void check_sha(const std::string& sha, const char* what) {
  if (!is_sha256_hex(sha)) fail(fmt::format("cache: {} '{}' is not a SHA-256 digest (64 lower-case hex digits)", what, sha));
}

fs::path index_path(const fs::path& root, const std::string& fp_id, const std::string& key) {
  return root / "index" / fp_id / (key + ".json");
}
fs::path lock_path(const fs::path& root, const std::string& fp_id, const std::string& key) {
  return root / "locks" / (fp_id + "." + key + ".lock");
}
fs::path blob_path(const fs::path& root, const std::string& sha) { return root / "blobs" / sha.substr(0, 2) / (sha + ".cubin"); }

// ---- blobs ------------------------------------------------------------------------------------------

std::string put_blob_bytes(const fs::path& root, const void* data, std::size_t size) {
  const std::string sha = sha256_hex(data, size);
  const fs::path path = blob_path(root, sha);
  std::vector<char> existing;
  if (read_all(path, existing, nullptr, size) == 0 && sha256_hex(existing.data(), existing.size()) == sha) {
    ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // fresh mtime: gc's grace period protects it until put_entry lands
    return sha;
  }
  atomic_write(root / "tmp", path, data, size);
  return sha;
}

}  // namespace detail

using namespace detail;  // the store's internals: files.hpp, store_internal.hpp

// ---- public: Store --------------------------------------------------------------------------------

Store::Store(std::filesystem::path root, Open open) : root_(std::move(root)) {
  if (root_.empty()) fail("cache: the cache root is an empty path; set SIGJIT_CACHE_DIR to a writable directory");
  if (open == Open::create) {
    create_layout();
    return;
  }
  layout_pending_ = true;
  // Absent is fine (an empty cache); a root that cannot be examined (a loop of links, a name too
  // long, no permission) or is not a directory is an error, not a silently empty cache.
  std::error_code ec;
  const fs::file_type type = fs::status(root_, ec).type();
  if (type != fs::file_type::not_found && type != fs::file_type::directory)
    fail(fmt::format("cache: cannot use the cache directory {}: {}; check its permissions or set SIGJIT_CACHE_DIR to a directory",
                     root_.string(), ec ? ec.message() : std::string("not a directory")));
}

void Store::create_layout() {
  // A root sigjit creates (or finds empty) is marked as its cache before anything else goes in.
  if (absent_or_empty(root_)) {
    ensure_dir(root_);
    write_marker(root_);  // best effort: gc and prune check for it (and say how to add it)
  }
  for (const char* sub : {"index", "blobs", "locks", "tmp"}) ensure_dir(root_ / sub);
  layout_pending_ = false;
}

std::filesystem::path Store::default_root() {
  if (const char* d = env::raw("SIGJIT_CACHE_DIR"); d != nullptr && *d != '\0') return fs::path(d);
  // The XDG spec says to ignore a relative XDG_CACHE_HOME.
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0' && fs::path(x).is_absolute()) return fs::path(x) / "sigjit";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') return fs::path(h) / ".cache" / "sigjit";
  fail(
      "cache: cannot locate the kernel cache: none of SIGJIT_CACHE_DIR, XDG_CACHE_HOME and HOME is set; set SIGJIT_CACHE_DIR to a writable "
      "directory");
}

std::optional<Entry> Store::lookup(const DeviceFingerprint& fp, const std::string& problem_key) const {
  check_key(problem_key);
  const std::string id = fp.id();
  const fs::path path = index_path(root_, id, problem_key);
  IndexRead r = read_index(path, problem_key, id);
  if (r.status == IndexRead::absent) {
    log_absent(path);
    return std::nullopt;
  }
  if (r.status == IndexRead::ok && r.fingerprint != fp) {
    r.status = IndexRead::bad;
    r.reason = "written for a different device fingerprint with the same id";
  }
  if (r.status != IndexRead::ok) {
    log_miss(path, r.reason);
    return std::nullopt;
  }
  return std::move(r.entry);
}

std::optional<std::vector<char>> Store::load_blob(const std::string& sha256) const {
  check_sha(sha256, "blob digest");
  const fs::path path = blob_path(root_, sha256);
  std::vector<char> data;
  struct stat st {};
  if (const int e = read_all(path, data, &st); e != 0) {
    if (e == ENOENT)
      log_absent(path);
    else
      log_miss(path, "cannot read (" + errno_text(e) + ")");
    return std::nullopt;
  }
  const std::string got = sha256_hex(data.data(), data.size());
  if (got == sha256) return data;
  // Delete it unless a writer has already replaced it with a good copy (another inode).
  struct stat now {};
  bool deleted = false;
  if (::stat(path.c_str(), &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev) deleted = ::unlink(path.c_str()) == 0;
  log_miss(path,
           fmt::format("content digest {} does not match its name (corrupted); {}", got, deleted ? "deleted it" : "could not delete it"));
  return std::nullopt;
}

std::string Store::put_blob(const std::vector<char>& data) {
  if (layout_pending_) create_layout();
  return put_blob_bytes(root_, data.data(), data.size());
}

void Store::put_entry(const DeviceFingerprint& fp, const Entry& entry, MergePolicy policy) {
  if (layout_pending_) create_layout();
  put_entry_locked(root_, fp, entry, policy);
}

bool Store::replace_if_current(const DeviceFingerprint& fp, const Entry& entry, const std::string& expected_sha256) {
  check_sha(expected_sha256, "expected cubin digest");
  if (layout_pending_) create_layout();
  return replace_locked_if(root_, fp, entry, expected_sha256);
}

std::shared_ptr<void> Store::lock_production(const DeviceFingerprint& fp, const std::string& problem_key) {
  if (!is_valid_key(problem_key)) throw Error(fmt::format("cache: '{}' is not a valid problem key", problem_key.substr(0, 80)));
  if (layout_pending_) create_layout();
  return std::make_shared<KeyLock>(root_ / "locks" / (fp.id() + "." + problem_key + ".compile"));
}

std::vector<Store::Listed> Store::list() const {
  std::vector<Listed> out;
  for (const fs::path& dir : dirs_in(root_ / "index")) {
    const std::string id = dir.filename().string();
    for (const fs::path& file : files_in(dir)) {
      if (file.extension() != ".json") continue;
      IndexRead r = read_index(file, file.stem().string(), id);
      if (r.status == IndexRead::ok)
        out.push_back({std::move(r.fingerprint), std::move(r.entry)});
      else if (r.status != IndexRead::absent)
        log_miss(file, r.reason);
    }
  }
  return out;  // directories and files were visited sorted: by fingerprint id, then key
}

std::uint64_t Store::size_bytes() const {
  std::uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2)) {
      const auto s = it->file_size(e2);
      if (!e2) total += s;
    }
  }
  return total;
}

}  // namespace sigjit::cache
