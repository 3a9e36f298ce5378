// The store's file layer (files.cpp): what store.cpp, index.cpp, bundle.cpp and maintenance.cpp
// use to touch the disk. It knows nothing of entries, keys or formats; not part of the store's
// interface (cache/store.hpp), and never included by code outside cache/.
#pragma once

#include "base/posix_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace sigjit::cache::detail {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& message);  // throws sigjit::Error
std::string errno_text(int e);
bool env_flag(const char* name);  // set, non-empty and not "0"

using posix::Fd;

// ---- files (files.cpp says what each one does and refuses) ----------------------------------------

std::string read_error_text(int e);  // a message for read_all's result
// Instantiated for std::string, std::vector<char> and std::vector<std::uint8_t>.
template <class Buffer>
int read_all(const fs::path& path, Buffer& out, struct stat* st = nullptr, std::size_t limit = std::numeric_limits<std::size_t>::max(),
             bool follow_link = false);
using posix::write_all;
void ensure_dir(const fs::path& dir);
// <root>/<rel> opened as a directory to create or rename files in, following no symbolic link
// below the root and creating what is missing (as atomic_write does); throws Error naming it.
int open_cache_subdir(const fs::path& root, const fs::path& rel);
void atomic_write(const fs::path& tmp_dir, const fs::path& target, const void* data, std::size_t size, const char* outside = nullptr);
void atomic_write(const fs::path& tmp_dir, const fs::path& target, const std::string& data);
double age_seconds(const struct stat& st);
bool is_real_dir(const fs::path& p);
std::vector<fs::path> files_in(const fs::path& dir);
std::vector<fs::path> dirs_in(const fs::path& dir);

// ---- listing directories without following links --------------------------------------------------

int open_dir_at(int at, const char* name);
struct DirItem {
  std::string name;
  struct stat st {};  // lstat: a link is a link
};
std::vector<DirItem> list_dir(int dirfd);

// ---- per-key lock --------------------------------------------------------------------------------

// Held from construction to destruction: flock(LOCK_EX) on <root>/locks/<name>, polled with
// back-off until SIGJIT_CACHE_LOCK_TIMEOUT (default 30 s), then a named error.
class KeyLock {
 public:
  // `path`: <root>/locks/<name>. Neither locks/ nor the lock file is opened through a symbolic
  // link (O_NOFOLLOW; O_CREAT then creates nothing at a link's target), so a link planted there
  // cannot create or modify a file outside the cache. Such a link is a named error, not a miss:
  // a writer cannot go on without the lock (it could lose a concurrent update), and removing the
  // link here could race with whoever put it there; the message says to remove it.
  explicit KeyLock(const fs::path& path);
  KeyLock(const KeyLock&) = delete;
  KeyLock& operator=(const KeyLock&) = delete;
  ~KeyLock();

 private:
  Fd fd_;
};

}  // namespace sigjit::cache::detail
