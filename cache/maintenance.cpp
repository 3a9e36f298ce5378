// verify, gc and prune: the commands that check the whole cache or delete from it, and the guards
// that confine deleting to sigjit's own cache (the marker, directory fds opened with O_NOFOLLOW,
// unlinkat, only the names sigjit writes). Apart from the store's hot path (lookup, put).
#include "cache/store_internal.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>

namespace sigjit::cache {
namespace detail {

// ---- deleting inside the cache: directory fds opened with O_NOFOLLOW, unlinkat, sigjit's names --

namespace {

bool is_lower_hex(std::string_view s, std::size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// A name atomic_write gives its temp files in tmp/: <target>.<pid>.<16 hex>.tmp, where the
// target is an index file (<key>.json) or a blob (<sha256>.cubin). gc removes nothing else there.
bool is_temp_name(std::string_view name) {
  constexpr std::string_view suffix = ".tmp";
  if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix) return false;
  name.remove_suffix(suffix.size());
  std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || !is_lower_hex(name.substr(dot + 1), 16)) return false;
  name = name.substr(0, dot);
  dot = name.rfind('.');
  if (dot == std::string_view::npos) return false;
  const std::string_view pid = name.substr(dot + 1);
  if (pid.empty() || pid.size() > 10 || !std::all_of(pid.begin(), pid.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  const std::string_view target = name.substr(0, dot);
  if (target.size() > 5 && target.substr(target.size() - 5) == ".json") return is_valid_key(target.substr(0, target.size() - 5));
  if (target.size() > 6 && target.substr(target.size() - 6) == ".cubin") return is_sha256_hex(target.substr(0, target.size() - 6));
  return false;
}

// The cache marker: the CACHEDIR.TAG signature (backup and sync tools skip the directory) and a
// line that says sigjit wrote it, so another tool's cache directory is not taken for sigjit's.
constexpr std::string_view kMarkerSignature = "Signature: 8a477f597d28d172789f06886806bc55";
constexpr const char* kMarkerText =
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by sigjit (its kernel cache).\n"
    "# sigjit gc and sigjit prune delete nothing in a directory without it.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n";

bool has_marker(const fs::path& root) {
  const fs::path p = root / Store::kMarkerName;
  Fd fd(::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  char buf[512];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return false;
  const std::string_view text(buf, static_cast<std::size_t>(n));
  return text.substr(0, kMarkerSignature.size()) == kMarkerSignature && text.find("sigjit") != std::string_view::npos;
}

}  // namespace

// Creates the marker (never through a link, never over another file); false if it could not.
bool write_marker(const fs::path& root) {
  const fs::path p = root / Store::kMarkerName;
  Fd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (fd.get() < 0) return errno == EEXIST && has_marker(root);
  const std::string_view text = kMarkerText;
  return write_all(fd.get(), text.data(), text.size());
}

// A root that does not exist, or an empty directory: a cache with nothing in it.
bool absent_or_empty(const fs::path& root) {
  std::error_code ec;
  const fs::file_type type = fs::status(root, ec).type();
  return type == fs::file_type::not_found || (type == fs::file_type::directory && fs::is_empty(root, ec) && !ec);
}

namespace {

// Removes an index file under its key's lock if `still_remove` (given a fresh read) agrees.
// `dirfd`: its directory, opened with O_NOFOLLOW (the file is unlinked relative to it, so a
// directory swapped for a link meanwhile cannot redirect the unlink).
template <class Pred>
bool remove_index_locked(const fs::path& root, int dirfd, const fs::path& path, Pred still_remove, std::uint64_t* bytes) {
  const std::string key = path.stem().string();
  const std::string id = path.parent_path().filename().string();
  std::optional<KeyLock> lock;
  if (is_valid_key(key)) lock.emplace(lock_path(root, id, key));
  if (!still_remove(read_index(path, key, id))) return false;
  const std::string name = path.filename().string();
  struct stat st {};
  const bool have_size = ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
  if (::unlinkat(dirfd, name.c_str(), 0) != 0) return false;
  if (bytes != nullptr && have_size) *bytes += static_cast<std::uint64_t>(st.st_size);
  return true;
}

// Before gc or prune deletes anything: is `root` a sigjit cache? Yes if it holds the marker. A
// cache written before markers gets one when it clearly is sigjit's: index/, blobs/, locks/ and
// tmp/ are directories and an index/<16 hex>/<key>.json file reads as a valid sigjit index file.
// Otherwise throws, naming the root and saying how to proceed.
void require_cache(const fs::path& root, const char* verb) {
  if (has_marker(root)) return;
  bool layout = true;
  for (const char* sub : {"index", "blobs", "locks", "tmp"}) layout = layout && is_real_dir(root / sub);
  bool readable_index = false;
  if (layout) {
    for (const fs::path& dir : dirs_in(root / "index")) {
      const std::string id = dir.filename().string();
      if (!is_lower_hex(id, 16)) continue;
      for (const fs::path& file : files_in(dir)) {
        if (file.extension() != ".json" || !is_valid_key(file.stem().string())) continue;
        if (read_index(file, file.stem().string(), id).status == IndexRead::ok) {
          readable_index = true;
          break;
        }
      }
      if (readable_index) break;
    }
  }
  if (readable_index && write_marker(root)) return;
  fail(fmt::format(
      "cache {}: {} is not marked as a sigjit kernel cache (no {} written by sigjit){}; refusing to delete anything in it. Check "
      "SIGJIT_CACHE_DIR (it may point at the wrong directory). If this really is your sigjit cache, mark it with\n"
      "  printf '{}\\n# sigjit kernel cache\\n' > '{}'\n"
      "and run the command again",
      verb, root.string(), Store::kMarkerName,
      readable_index ? " and the marker cannot be written there"
                     : " and it does not look like one (index/, blobs/, locks/, tmp/ and a readable sigjit index file)",
      kMarkerSignature, (root / Store::kMarkerName).string()));
}

}  // namespace

}  // namespace detail

using namespace detail;  // the store's internals: files.hpp, store_internal.hpp

// ---- public: verify, gc, prune -------------------------------------------------------------------

VerifyReport Store::verify() const {
  VerifyReport rep;
  std::set<std::string> good_blobs;
  for (const fs::path& sub : dirs_in(root_ / "blobs")) {
    for (const fs::path& file : files_in(sub)) {
      const std::string name = file.filename().string();
      const std::string sha = file.stem().string();
      if (file.extension() != ".cubin" || !is_sha256_hex(sha) || sub.filename() != sha.substr(0, 2)) {
        rep.problems.push_back(fmt::format("{}: unexpected file in the blob store (not blobs/<sha[0:2]>/<sha256>.cubin)", file.string()));
        continue;
      }
      std::vector<char> data;
      if (const int e = read_all(file, data); e != 0) {
        if (e != ENOENT) rep.problems.push_back(fmt::format("{}: cannot read ({})", file.string(), errno_text(e)));
        continue;
      }
      const std::string got = sha256_hex(data.data(), data.size());
      if (got != sha) {
        rep.problems.push_back(fmt::format(
            "{}: content digest {} does not match its name (corrupted); delete it, it is rebuilt on next use", file.string(), got));
        continue;
      }
      ++rep.blobs_ok;
      good_blobs.insert(sha);
    }
  }
  for (const fs::path& dir : dirs_in(root_ / "index")) {
    const std::string id = dir.filename().string();
    for (const fs::path& file : files_in(dir)) {
      if (file.extension() != ".json" || !is_valid_key(file.stem().string())) {
        rep.problems.push_back(fmt::format("{}: unexpected file in the index (not <problem key>.json)", file.string()));
        continue;
      }
      IndexRead r = read_index(file, file.stem().string(), id);
      // Writers run beside verify (F12): an entry may reference a blob written after the blob
      // scan above, or be replaced while it is read. Before reporting, look again: the blob on
      // disk now, and the index file once more (a writer writes the blob before the entry).
      const auto blob_good_now = [&](const std::string& sha) {
        if (good_blobs.count(sha) != 0) return true;
        std::vector<char> data;
        if (read_all(blob_path(root_, sha), data, nullptr, kMaxBlobBytes) != 0 || sha256_hex(data.data(), data.size()) != sha) return false;
        good_blobs.insert(sha);
        return true;
      };
      for (int attempt = 0; attempt < 3; ++attempt) {
        if (r.status == IndexRead::absent || (r.status == IndexRead::ok && blob_good_now(r.entry.cubin_sha256))) break;
        IndexRead again = read_index(file, file.stem().string(), id);
        const bool same = again.status == r.status && again.reason == r.reason &&
                          (r.status != IndexRead::ok || again.entry.cubin_sha256 == r.entry.cubin_sha256);
        r = std::move(again);
        if (same) break;  // stable: not a concurrent write
      }
      if (r.status == IndexRead::absent) continue;  // removed meanwhile
      if (r.status != IndexRead::ok) {
        rep.problems.push_back(fmt::format("{}: {}; `sigjit gc` removes it, or it is rebuilt on next use", file.string(), r.reason));
        continue;
      }
      if (!blob_good_now(r.entry.cubin_sha256)) {
        rep.problems.push_back(fmt::format("{}: its cubin {} is missing or corrupted; it is rebuilt on next use", file.string(),
                                           blob_path(root_, r.entry.cubin_sha256).string()));
        continue;
      }
      if (r.entry.origin != kOriginLocal)
        rep.claims.push_back(
            fmt::format("{} ({}): {} {}, {:.4f} ms: {} entry, its cubin and time were not produced on this machine; "
                        "`sigjit verify --gpu` runs and re-times it here",
                        r.entry.problem_key, id, r.entry.config, r.entry.tuned ? "tuned" : "untuned", r.entry.median_ms, r.entry.origin));
      ++rep.entries_ok;
    }
  }
  return rep;
}

GcReport Store::gc(bool remove_foreign, const DeviceFingerprint* local, double temp_age_seconds) {
  if (remove_foreign && local == nullptr) fail("cache gc: remove_foreign needs the local device fingerprint (local is null)");
  if (absent_or_empty(root_)) return {};  // nothing to remove, and nothing is created
  require_cache(root_, "gc");
  GcReport rep;
  // Every directory below the root is opened with O_NOFOLLOW and every file removed with
  // unlinkat relative to it: a link where sigjit keeps a directory is unlinked, never followed.
  Fd root_fd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root_fd.get() < 0) fail(fmt::format("cache gc: cannot open {}: {}", root_.string(), errno_text(errno)));
  for (const char* sub : {"index", "blobs"}) {
    struct stat st {};
    if (::fstatat(root_fd.get(), sub, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
      fail(fmt::format("cache gc: {} is not a directory (a symbolic link?); sigjit never follows links in its cache. Replace it with a "
                       "directory (or remove the cache and let sigjit rebuild it)",
                       (root_ / sub).string()));
  }
  auto remove_link = [&](int dirfd, const DirItem& item) {
    if (S_ISLNK(item.st.st_mode) && ::unlinkat(dirfd, item.name.c_str(), 0) == 0) ++rep.links_removed;
  };
  auto remove_if_old = [&](int dirfd, const DirItem& item, int& counter) {
    if (!(S_ISREG(item.st.st_mode) || S_ISLNK(item.st.st_mode)) || age_seconds(item.st) < temp_age_seconds) return;
    if (::unlinkat(dirfd, item.name.c_str(), 0) == 0) {
      ++counter;
      if (S_ISREG(item.st.st_mode)) rep.bytes_freed += static_cast<std::uint64_t>(item.st.st_size);
    }
  };
  // 1. Temp files of writers that died before their rename (only names atomic_write gives them).
  if (Fd tmp(open_dir_at(root_fd.get(), "tmp")); tmp.get() >= 0) {
    for (const DirItem& item : list_dir(tmp.get()))
      if (is_temp_name(item.name)) remove_if_old(tmp.get(), item, rep.temp_files_removed);
  } else if (struct stat st {}; ::fstatat(root_fd.get(), "tmp", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
    remove_link(root_fd.get(), DirItem{"tmp", st});  // the next write recreates tmp/ as a directory
  }

  // 2. Index files: corrupt ones, and foreign ones when asked. Files of a newer format are kept.
  std::set<std::string> referenced;
  Fd index(open_dir_at(root_fd.get(), "index"));
  for (const DirItem& dir : index.get() >= 0 ? list_dir(index.get()) : std::vector<DirItem>{}) {
    const std::string& id = dir.name;
    if (!is_lower_hex(id, 16)) continue;  // not a name sigjit writes
    if (S_ISLNK(dir.st.st_mode)) {
      remove_link(index.get(), dir);
      continue;
    }
    Fd dirfd(open_dir_at(index.get(), id.c_str()));
    if (dirfd.get() < 0) continue;
    for (const DirItem& f : list_dir(dirfd.get())) {
      const fs::path file = root_ / "index" / id / f.name;
      if (file.extension() != ".json" || !is_valid_key(file.stem().string())) continue;
      if (!(S_ISREG(f.st.st_mode) || S_ISLNK(f.st.st_mode))) continue;
      const IndexRead r = read_index(file, file.stem().string(), id);
      bool remove = false;
      if (r.status == IndexRead::bad) {
        remove = remove_index_locked(
            root_, dirfd.get(), file, [](const IndexRead& again) { return again.status == IndexRead::bad; }, &rep.bytes_freed);
      } else if (r.status == IndexRead::ok && remove_foreign && r.fingerprint != *local) {
        remove = remove_index_locked(
            root_, dirfd.get(), file,
            [&](const IndexRead& again) { return again.status == IndexRead::ok && again.fingerprint != *local; }, &rep.bytes_freed);
      }
      if (remove) {
        ++rep.entries_removed;
        continue;
      }
      if (r.status == IndexRead::ok) referenced.insert(r.entry.cubin_sha256);
      if (r.status == IndexRead::newer && !r.newer_cubin.empty()) referenced.insert(r.newer_cubin);
      if (r.status == IndexRead::bad) {  // rewritten meanwhile: keep what it references now
        const IndexRead again = read_index(file, file.stem().string(), id);
        if (again.status == IndexRead::ok) referenced.insert(again.entry.cubin_sha256);
      }
    }
  }
  // 3. Blobs no entry references, once older than the grace period (a put_blob whose put_entry has
  //    not landed yet is younger: put_blob refreshes the mtime of an existing blob).
  Fd blobs(open_dir_at(root_fd.get(), "blobs"));
  for (const DirItem& sub : blobs.get() >= 0 ? list_dir(blobs.get()) : std::vector<DirItem>{}) {
    if (!is_lower_hex(sub.name, 2)) continue;
    if (S_ISLNK(sub.st.st_mode)) {
      remove_link(blobs.get(), sub);
      continue;
    }
    Fd subfd(open_dir_at(blobs.get(), sub.name.c_str()));
    if (subfd.get() < 0) continue;
    for (const DirItem& f : list_dir(subfd.get())) {
      const std::string_view name = f.name;
      if (name.size() != 64 + 6 || name.substr(64) != ".cubin") continue;
      const std::string sha(name.substr(0, 64));
      if (is_sha256_hex(sha) && sha.compare(0, 2, sub.name) == 0 && referenced.count(sha) == 0)
        remove_if_old(subfd.get(), f, rep.blobs_removed);
    }
  }
  return rep;
}

int Store::prune(const std::vector<std::string>& problem_key_substrings, const DeviceFingerprint* only_fp) {
  for (const std::string& s : problem_key_substrings)
    if (s.empty())
      fail("cache prune: an empty pattern matches every problem key; refusing to remove every entry (an unset shell variable?). "
           "To remove them all, pass no pattern (`sigjit prune --all`)");
  if (absent_or_empty(root_)) return 0;  // nothing to remove, and nothing is created
  require_cache(root_, "prune");
  int removed = 0;
  const std::string only_id = only_fp != nullptr ? only_fp->id() : std::string();
  Fd index(::open((root_ / "index").c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  for (const DirItem& dir : index.get() >= 0 ? list_dir(index.get()) : std::vector<DirItem>{}) {
    const std::string& id = dir.name;
    if (!is_lower_hex(id, 16) || !S_ISDIR(dir.st.st_mode)) continue;  // links are never followed
    if (only_fp != nullptr && id != only_id) continue;
    Fd dirfd(open_dir_at(index.get(), id.c_str()));
    if (dirfd.get() < 0) continue;
    for (const DirItem& f : list_dir(dirfd.get())) {
      const fs::path file = root_ / "index" / id / f.name;
      const std::string key = file.stem().string();
      if (file.extension() != ".json" || !is_valid_key(key) || !(S_ISREG(f.st.st_mode) || S_ISLNK(f.st.st_mode))) continue;
      // An entry matches when its key contains any of the substrings (none given: every key),
      // as `sigjit prune <patterns>` documents.
      if (!problem_key_substrings.empty() && std::none_of(problem_key_substrings.begin(), problem_key_substrings.end(),
                                                          [&](const std::string& s) { return key.find(s) != std::string::npos; }))
        continue;
      const bool gone = remove_index_locked(
          root_, dirfd.get(), file,
          [&](const IndexRead& r) { return only_fp == nullptr || r.status != IndexRead::ok || r.fingerprint == *only_fp; }, nullptr);
      if (gone) ++removed;
    }
  }
  return removed;
}

}  // namespace sigjit::cache
