// The on-disk kernel store (design: cache/store.hpp).
//
// Files, all written to tmp/, fsynced, renamed into place and the directory fsynced:
//   index/<fp id>/<key>.json  {"magic":"sigjit-index","format_version":1,"fingerprint":{..},"problem_key":..,
//                              "entry":{..},"checksum":sha256(canonical dump of the object without "checksum")}
//                             written as dump(2) with the top-level keys in that order, nested keys sorted.
//   blobs/<ab>/<sha>.cubin    raw cubin bytes, named by their SHA-256.
//   locks/<fp id>.<key>.lock  empty; flock(LOCK_EX | LOCK_NB) polled until a timeout. Never deleted
//                             (deleting a flock file lets two processes hold "the" lock).
// "Canonical dump" = nlohmann::json::dump() with no indentation, keys sorted (std::map), invalid
// UTF-8 replaced: the reader parses the file, erases "checksum" and re-dumps, so the checksum does
// not depend on whitespace or key order in the file.
//
// Environment:
//   SIGJIT_CACHE_DIR, XDG_CACHE_HOME, HOME   the root (default_root()).
//   SIGJIT_VERBOSE_CACHE=1                   also log plain misses (absent files).
//   SIGJIT_CACHE_LOCK_TIMEOUT=<seconds>      lock wait before put_entry throws (default 30).
//   SIGJIT_CACHE_NO_FSYNC=1                  skip fsync (still atomic against process crashes, not
//                                            against power loss): scratch caches and tests.
//   SIGJIT_CACHE_FAULT=exit_before_rename    fault injection for tests: _exit(86) after a temp file
//                                            is written and fsynced, before its rename.
#include "cache/store.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>
#include <openssl/evp.h>

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
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <ostream>
#include <random>
#include <set>
#include <streambuf>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>

namespace sigjit::cache {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kIndexMagic = "sigjit-index";
constexpr const char* kBundleMagic = "sigjit-bundle";
constexpr std::size_t kMaxKeyLength = 180;  // keeps every derived file name under 255 bytes
constexpr int kFaultExitCode = 86;

[[noreturn]] void fail(const std::string& message) { throw Error(message); }

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

bool fsync_enabled() { return !env_flag("SIGJIT_CACHE_NO_FSYNC"); }

double lock_timeout_seconds() {
  if (const char* v = std::getenv("SIGJIT_CACHE_LOCK_TIMEOUT"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    const double t = std::strtod(v, &end);
    if (end != v && *end == '\0' && !std::isnan(t) && t >= 0) return t;  // inf or huge: wait without limit
    fail(fmt::format("SIGJIT_CACHE_LOCK_TIMEOUT='{}': expected a number of seconds >= 0, e.g. 30 (inf: wait without limit)", v));
  }
  return 30.0;
}

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

void log_absent(const fs::path& path) {
  if (env_flag("SIGJIT_VERBOSE_CACHE")) std::fputs(fmt::format("sigjit: cache: {}: not cached (miss)\n", path.string()).c_str(), stderr);
}

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

// A string from a file, quoted and escaped for a message (control characters never reach a
// terminal), cut to `keep` bytes.
std::string quoted_prefix(const std::string& s, std::size_t keep = 64) {
  std::string q = nlohmann::json(s.substr(0, keep)).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (s.size() > keep) q += fmt::format("... ({} bytes)", s.size());
  return q;
}

// Entry::config as written by TileConfig::describe(): short, [a-z0-9_] only. TileConfig::parse
// (compiler/) checks the grammar; this keeps any other text out of the store.
bool is_config_text(std::string_view c) {
  return !c.empty() && c.size() <= kMaxConfigLength &&
         std::all_of(c.begin(), c.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; });
}

void check_length(const std::string& v, std::size_t limit, const char* what) {
  if (v.size() > limit) fail(fmt::format("{} is {} bytes long, over the limit of {}", what, v.size(), limit));
}

// Bounds every field an entry read from a file (index or bundle) may carry; throws Error naming
// the field and the limit.
void check_entry_bounds(const Entry& e) {
  if (!is_config_text(e.config))
    fail(fmt::format("entry config {} is not a tile config (1 to {} characters from [a-z0-9_], e.g. m128n64w4s2)", quoted_prefix(e.config),
                     kMaxConfigLength));
  check_length(e.kernel_name, kMaxNameLength, "entry kernel_name");
  check_length(e.tuned_shape, kMaxNameLength, "entry tuned_shape");
  for (const Provenance& p : e.provenance) {
    check_length(p.host, kMaxNameLength, "entry provenance host");
    check_length(p.time_utc, kMaxNameLength, "entry provenance time_utc");
    check_length(p.sigjit_version, kMaxNameLength, "entry provenance sigjit_version");
  }
  for (const Rejected& r : e.rejected) check_length(r.config, kMaxNameLength, "entry rejected config");
  for (const auto& [name, v] : {std::pair{"median_ms", e.median_ms}, std::pair{"spread", e.spread}, std::pair{"tflops", e.tflops}})
    if (!std::isfinite(v) || v < 0) fail(fmt::format("entry {} is {}; expected a finite number >= 0", name, v));
  if (e.origin != kOriginLocal && e.origin != kOriginImported && e.origin != kOriginUnknown)
    fail(fmt::format("entry origin {} is not one of \"{}\", \"{}\", \"{}\"", quoted_prefix(e.origin), kOriginLocal, kOriginImported,
                     kOriginUnknown));
}

void check_fingerprint_bounds(const DeviceFingerprint& f) {
  check_length(f.gpu_name, kMaxNameLength, "fingerprint gpu_name");
  check_length(f.nvrtc_version, kMaxNameLength, "fingerprint nvrtc_version");
  check_length(f.compile_options, kMaxIndexString, "fingerprint compile_options");
}

fs::path index_path(const fs::path& root, const std::string& fp_id, const std::string& key) {
  return root / "index" / fp_id / (key + ".json");
}
fs::path lock_path(const fs::path& root, const std::string& fp_id, const std::string& key) {
  return root / "locks" / (fp_id + "." + key + ".lock");
}
fs::path blob_path(const fs::path& root, const std::string& sha) { return root / "blobs" / sha.substr(0, 2) / (sha + ".cubin"); }

// ---- JSON field access -------------------------------------------------------------------------

std::string canonical(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const json& field(const json& j, const char* name, const char* what) {
  if (!j.is_object()) fail(fmt::format("{}: expected a JSON object, got {}", what, j.type_name()));
  const auto it = j.find(name);
  if (it == j.end()) fail(fmt::format("{}: missing field '{}'", what, name));
  return *it;
}

std::string get_string(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (!v.is_string()) fail(fmt::format("{}: field '{}' must be a string, got {}", what, name, v.type_name()));
  return v.get<std::string>();
}

int get_int(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u <= static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return static_cast<int>(u);
  } else if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i >= std::numeric_limits<int>::min() && i <= std::numeric_limits<int>::max()) return static_cast<int>(i);
  } else {
    fail(fmt::format("{}: field '{}' must be an integer, got {}", what, name, v.type_name()));
  }
  fail(fmt::format("{}: field '{}' is out of range for an int", what, name));
}

double get_double(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (!v.is_number()) fail(fmt::format("{}: field '{}' must be a number, got {}", what, name, v.type_name()));
  return v.get<double>();
}

bool get_bool(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (!v.is_boolean()) fail(fmt::format("{}: field '{}' must be true or false, got {}", what, name, v.type_name()));
  return v.get<bool>();
}

const json& get_array(const json& j, const char* name, const char* what) {
  const json& v = field(j, name, what);
  if (!v.is_array()) fail(fmt::format("{}: field '{}' must be an array, got {}", what, name, v.type_name()));
  return v;
}

// ---- bounded parsing (F2, F7) ---------------------------------------------------------------------

struct ParseLimits {
  int max_depth = kMaxNestingDepth;
  std::size_t max_string = kMaxIndexString;
  std::size_t max_binary = 0;
  std::size_t max_values = std::numeric_limits<std::size_t>::max();
};

// A SAX consumer that builds the same tree as json::parse / json::from_cbor but refuses, before
// building anything, nesting deeper than the limit (nlohmann's dump(), copy and CBOR reader
// recurse: a 200 KB file of brackets overflows any stack), over-long strings and byte strings,
// and too many values. Returning false stops the parser; error() says why.
class BoundedDom {
 public:
  BoundedDom(json& root, const ParseLimits& limits) : root_(root), limits_(limits) {}
  bool null() { return put(json(nullptr)) != nullptr; }
  bool boolean(bool v) { return put(json(v)) != nullptr; }
  bool number_integer(json::number_integer_t v) { return put(json(v)) != nullptr; }
  bool number_unsigned(json::number_unsigned_t v) { return put(json(v)) != nullptr; }
  bool number_float(json::number_float_t v, const json::string_t&) { return put(json(v)) != nullptr; }
  bool string(json::string_t& v) {
    if (v.size() > limits_.max_string) return refuse(fmt::format("a string of {} bytes (the limit is {})", v.size(), limits_.max_string));
    return put(json(std::move(v))) != nullptr;
  }
  bool binary(json::binary_t& v) {
    if (v.size() > limits_.max_binary)
      return refuse(fmt::format("a byte string of {} bytes (the limit is {})", v.size(), limits_.max_binary));
    return put(json::binary(std::move(v))) != nullptr;
  }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool key(json::string_t& k) {
    if (k.size() > limits_.max_string)
      return refuse(fmt::format("an object key of {} bytes (the limit is {})", k.size(), limits_.max_string));
    key_ = std::move(k);
    return true;
  }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t, const std::string&, const json::exception& ex) {
    error_ = ex.what();
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  bool refuse(std::string why) {
    error_ = std::move(why);
    return false;
  }
  json* put(json&& v) {
    if (++values_ > limits_.max_values) {
      refuse(fmt::format("more than {} values", limits_.max_values));
      return nullptr;
    }
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];  // a repeated key keeps the last value, as json::parse does
    slot = std::move(v);
    return &slot;
  }
  bool open(json&& container) {
    if (static_cast<int>(stack_.size()) >= limits_.max_depth) return refuse(fmt::format("nested deeper than {} levels", limits_.max_depth));
    json* v = put(std::move(container));
    if (v == nullptr) return false;
    stack_.push_back(v);
    return true;
  }
  bool close() {
    if (!stack_.empty()) stack_.pop_back();
    return true;
  }

  json& root_;
  ParseLimits limits_;
  std::vector<json*> stack_;  // the open containers; a child is only added to the innermost one
  std::string key_;
  std::size_t values_ = 0;
  std::string error_;
};

// Parses JSON text (cbor = false) or CBOR bytes into `out`; returns "" or what is wrong.
template <class Bytes>
std::string bounded_parse(const Bytes& bytes, bool cbor, const ParseLimits& limits, json& out) {
  BoundedDom sax(out, limits);
  bool ok = false;
  try {
    ok = json::sax_parse(bytes.begin(), bytes.end(), &sax, cbor ? json::input_format_t::cbor : json::input_format_t::json);
  } catch (const json::exception& ex) {
    return ex.what();
  }
  if (ok) return {};
  out = json();
  return sax.error().empty() ? std::string("parse error") : sax.error();
}

// ---- files -------------------------------------------------------------------------------------

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

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
int read_all(const fs::path& path, Buffer& out, struct stat* st = nullptr, std::size_t limit = std::numeric_limits<std::size_t>::max(),
             bool follow_link = false) {
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

bool write_all(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void fsync_dir(const fs::path& dir) {
  if (!fsync_enabled()) return;
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) ::fsync(fd.get());  // best effort: some file systems refuse fsync on directories
}

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

// Writes `data` to a unique temp file in `tmp_dir`, fsyncs it, renames it to `target` and fsyncs
// target's directory. Readers see the old file or the new one, never a partial one. `outside`:
// the target is not in the cache (an exported bundle): messages name its directory, and a missing
// directory is an error rather than recreated. Inside the cache (tmp_dir is <root>/tmp) both
// directories are opened with open_cache_dir: a link planted at tmp/, index/<id> or blobs/<ab>
// fails the write instead of sending the file outside the cache.
void atomic_write(const fs::path& tmp_dir, const fs::path& target, const void* data, std::size_t size, const char* outside = nullptr) {
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
  if (const char* f = std::getenv("SIGJIT_CACHE_FAULT"); f != nullptr && std::string_view(f) == "exit_before_rename")
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

// ---- deleting inside the cache: directory fds opened with O_NOFOLLOW, unlinkat, sigjit's names --

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

// Opens `name` in `at` as a directory without following a symbolic link; -1 if it is absent, a
// link or not a directory.
int open_dir_at(int at, const char* name) { return ::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); }

struct DirItem {
  std::string name;
  struct stat st {};  // lstat: a link is a link
};

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

// Creates the marker (never through a link, never over another file); false if it could not.
bool write_marker(const fs::path& root) {
  const fs::path p = root / Store::kMarkerName;
  Fd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (fd.get() < 0) return errno == EEXIST && has_marker(root);
  const std::string_view text = kMarkerText;
  return write_all(fd.get(), text.data(), text.size());
}

// ---- per-key lock --------------------------------------------------------------------------------

class KeyLock {
 public:
  // `path`: <root>/locks/<name>. Neither locks/ nor the lock file is opened through a symbolic
  // link (O_NOFOLLOW; O_CREAT then creates nothing at a link's target), so a link planted there
  // cannot create or modify a file outside the cache. Such a link is a named error, not a miss:
  // a writer cannot go on without the lock (it could lose a concurrent update), and removing the
  // link here could race with whoever put it there; the message says to remove it.
  explicit KeyLock(const fs::path& path) {
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
  KeyLock(const KeyLock&) = delete;
  KeyLock& operator=(const KeyLock&) = delete;
  ~KeyLock() {
    if (fd_.get() >= 0) ::flock(fd_.get(), LOCK_UN);
  }

 private:
  Fd fd_;
};

// ---- index files -------------------------------------------------------------------------------

struct IndexRead {
  enum Status { ok, absent, bad, newer } status = absent;
  std::string reason;  // bad / newer: what is wrong, for logs and verify()
  DeviceFingerprint fingerprint;
  Entry entry;
  std::string newer_cubin;  // newer: entry.cubin_sha256 if it has one (kept referenced by gc)
};

// Reads and checks one index file. `key` comes from the file name, `fp_id` from the directory.
IndexRead read_index(const fs::path& path, const std::string& key, const std::string& fp_id) {
  IndexRead r;
  std::string text;
  if (const int e = read_all(path, text, nullptr, kMaxIndexBytes); e != 0) {
    r.status = e == ENOENT ? IndexRead::absent : IndexRead::bad;
    r.reason = e == EFBIG ? fmt::format("larger than any index file (over {} bytes; corrupted)", kMaxIndexBytes)
                          : "cannot read (" + read_error_text(e) + ")";
    return r;
  }
  r.status = IndexRead::bad;
  json j;
  ParseLimits limits;
  limits.max_values = text.size();  // every value takes at least one byte: a bound, not a limit
  if (const std::string why = bounded_parse(text, false, limits, j); !why.empty()) {
    r.reason = fmt::format("not valid JSON, truncated, corrupted or hostile ({})", why);
    return r;
  }
  if (!j.is_object() || !j.contains("magic") || j["magic"] != kIndexMagic) {
    r.reason = "not a sigjit index file (wrong magic)";
    return r;
  }
  const auto version = j.find("format_version");
  if (version == j.end() || !version->is_number_integer()) {
    r.reason = "no integer format_version";
    return r;
  }
  if (!(version->is_number_unsigned() && *version >= kOldestReadableFormatVersion && *version <= kFormatVersion)) {
    // An unsigned value beyond int64 (>= 2^63) is a newer format too, not a negative one.
    const bool huge = version->is_number_unsigned() && version->get<std::uint64_t>() > std::uint64_t{INT64_MAX};
    const auto v = huge ? std::numeric_limits<std::int64_t>::max() : version->get<std::int64_t>();
    r.reason = fmt::format("format version {} ({} sigjit), this sigjit reads {}", version->dump(),
                           v > kFormatVersion ? "written by a newer" : "an older", kFormatVersion);
    if (v > kFormatVersion) {
      r.status = IndexRead::newer;
      if (const json* e = j.contains("entry") ? &j["entry"] : nullptr;
          e != nullptr && e->is_object() && e->contains("cubin_sha256") && (*e)["cubin_sha256"].is_string())
        r.newer_cubin = (*e)["cubin_sha256"].get<std::string>();
    }
    return r;
  }
  const auto sum = j.find("checksum");
  if (sum == j.end() || !sum->is_string()) {
    r.reason = "no checksum";
    return r;
  }
  const std::string stored = sum->get<std::string>();
  j.erase("checksum");
  const std::string body = canonical(j);
  if (sha256_hex(body.data(), body.size()) != stored) {
    r.reason = "checksum mismatch (the file is corrupted or was edited)";
    return r;
  }
  try {
    r.fingerprint = DeviceFingerprint::from_json(field(j, "fingerprint", "index file"));
    r.entry = Entry::from_json(field(j, "entry", "index file"));
    if (*version < 2) {
      r.entry.origin = kOriginUnknown;  // format 1 had no origin: it cannot prove it was measured here
    } else if (!field(j, "entry", "index file").contains("origin")) {
      r.reason = "entry has no origin (format 2 requires it)";
      return r;
    }
    check_entry_bounds(r.entry);
    const std::string file_key = get_string(j, "problem_key", "index file");
    if (file_key != key || r.entry.problem_key != key) {
      r.reason = fmt::format("holds problem key '{}' (entry: '{}'), not '{}' as its name says", file_key, r.entry.problem_key, key);
      return r;
    }
  } catch (const Error& ex) {
    r.reason = ex.what();
    return r;
  }
  if (r.fingerprint.id() != fp_id) {
    r.reason = fmt::format("its fingerprint has id {}, not {} as its directory says", r.fingerprint.id(), fp_id);
    return r;
  }
  if (!is_sha256_hex(r.entry.cubin_sha256)) {
    r.reason = fmt::format("entry.cubin_sha256 '{}' is not a SHA-256 digest", r.entry.cubin_sha256);
    return r;
  }
  r.status = IndexRead::ok;
  return r;
}

std::string index_text(const DeviceFingerprint& fp, const Entry& entry) {
  const json fpj = fp.to_json();
  const json ej = entry.to_json();
  const json body = {
      {"magic", kIndexMagic}, {"format_version", kFormatVersion}, {"fingerprint", fpj}, {"problem_key", entry.problem_key}, {"entry", ej}};
  const std::string c = canonical(body);
  // Same content, human-friendly order: magic first, checksum last, nested keys sorted.
  nlohmann::ordered_json out;
  out["magic"] = kIndexMagic;
  out["format_version"] = kFormatVersion;
  out["fingerprint"] = nlohmann::ordered_json::parse(canonical(fpj));
  out["problem_key"] = entry.problem_key;
  out["entry"] = nlohmann::ordered_json::parse(canonical(ej));
  out["checksum"] = sha256_hex(c.data(), c.size());
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

bool measured(const Entry& e) { return std::isfinite(e.median_ms) && e.median_ms > 0; }

// keep_faster: does `a` beat `b`? An entry measured here beats any that was not (an imported
// time is a claim: F1), then tuned beats untuned, a measured time beats none, then the lower
// median; a tie keeps `b` (the existing entry).
bool beats(const Entry& a, const Entry& b) {
  if (a.measured_here() != b.measured_here()) return a.measured_here();
  if (a.tuned != b.tuned) return a.tuned;
  if (measured(a) != measured(b)) return measured(a);
  return measured(a) && a.median_ms < b.median_ms;
}

// Keeps the lists of one entry bounded (F8): the newest kMaxProvenance provenance records (by
// time, order otherwise kept), the first kMaxRejected rejected configs, reasons cut short.
void cap_lists(Entry& e) {
  if (e.provenance.size() > kMaxProvenance) {
    std::vector<std::size_t> order(e.provenance.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return e.provenance[a].time_utc > e.provenance[b].time_utc; });
    std::vector<bool> keep(order.size(), false);
    for (std::size_t i = 0; i < kMaxProvenance; ++i) keep[order[i]] = true;
    std::vector<Provenance> kept;
    for (std::size_t i = 0; i < order.size(); ++i)
      if (keep[i]) kept.push_back(std::move(e.provenance[i]));
    e.provenance = std::move(kept);
  }
  if (e.rejected.size() > kMaxRejected) e.rejected.resize(kMaxRejected);
  for (Rejected& r : e.rejected)
    if (r.reason.size() > kMaxRejectedReason) r.reason = r.reason.substr(0, kMaxRejectedReason) + " [...]";
}

// Adds the loser's provenance records and rejected configs the winner lacks (linear: F8). An
// entry measured here takes none of them from a claim (an entry of another origin): a claim's
// provenance is forged as easily as its time.
void merge_lists(Entry& winner, const Entry& loser) {
  if (winner.measured_here() && loser.origin != kOriginLocal) return;
  std::set<std::tuple<std::string, std::string, std::string>> seen;
  for (const Provenance& p : winner.provenance) seen.emplace(p.host, p.time_utc, p.sigjit_version);
  for (const Provenance& p : loser.provenance)
    if (seen.emplace(p.host, p.time_utc, p.sigjit_version).second) winner.provenance.push_back(p);
  std::set<std::pair<std::string, std::string>> seen_rejected;
  for (const Rejected& r : winner.rejected) seen_rejected.emplace(r.config, r.reason);
  for (const Rejected& r : loser.rejected)
    if (seen_rejected.emplace(r.config, r.reason).second) winner.rejected.push_back(r);
  cap_lists(winner);
}

// The keep_faster merge of `incoming` into `current` (both readable): the result and whether
// `incoming` won.
std::pair<Entry, bool> merge_entries(const Entry& current, const Entry& incoming) {
  if (beats(incoming, current)) {
    Entry result = incoming;
    merge_lists(result, current);
    return {std::move(result), true};
  }
  Entry result = current;
  merge_lists(result, incoming);
  return {std::move(result), false};
}

// kept_local: kept because the current entry was measured here and the new one was not (F1);
// kept_local_cubin_missing: the same, although the current entry's cubin is missing or unreadable.
enum class Outcome { added, replaced, kept, kept_local, kept_local_cubin_missing };

// Validates an entry about to be written, with its lists capped: throws Error naming the field.
Entry checked_for_write(const Entry& in) {
  check_key(in.problem_key);
  check_sha(in.cubin_sha256, "entry.cubin_sha256");
  for (const auto& [name, v] : {std::pair{"median_ms", in.median_ms}, std::pair{"spread", in.spread}, std::pair{"tflops", in.tflops}})
    if (!std::isfinite(v))
      fail(fmt::format("cache: entry {}: {} is {}; store a finite number (0 when not measured)", in.problem_key, name, v));
  Entry e = in;
  cap_lists(e);
  try {
    check_entry_bounds(e);
  } catch (const Error& ex) {
    fail(fmt::format("cache: entry {}: {}", e.problem_key, ex.what()));
  }
  return e;
}

Outcome put_entry_locked(const fs::path& root, const DeviceFingerprint& fp, const Entry& entry_in, MergePolicy policy) {
  const Entry entry = checked_for_write(entry_in);
  const std::string id = fp.id();
  const fs::path path = index_path(root, id, entry.problem_key);
  KeyLock lock(lock_path(root, id, entry.problem_key));  // its directories are created by open_cache_dir, as atomic_write's
  IndexRead cur = read_index(path, entry.problem_key, id);
  if (cur.status == IndexRead::ok && cur.fingerprint != fp) {
    cur.status = IndexRead::bad;
    cur.reason = "written for a different device fingerprint with the same id";
  }
  if (cur.status == IndexRead::bad || cur.status == IndexRead::newer) log_miss(path, cur.reason);
  Outcome outcome;
  Entry result;
  std::error_code ec;
  const bool cur_cubin_gone = cur.status == IndexRead::ok && !fs::exists(blob_path(root, cur.entry.cubin_sha256), ec);
  // Trust (F1): an entry measured on this machine is displaced only by another one measured here.
  const bool measured_over_unmeasured = cur.status == IndexRead::ok && cur.entry.measured_here() && !entry.measured_here();
  if (cur.status != IndexRead::ok) {
    outcome = Outcome::added;
    result = entry;
  } else if (policy == MergePolicy::replace) {
    outcome = Outcome::replaced;
    result = entry;
  } else if (cur_cubin_gone && !(measured_over_unmeasured && entry.origin != kOriginLocal)) {
    // The existing entry's cubin is gone (deleted as corrupt, or by hand): however fast it was,
    // it can only miss, so a new entry from this machine replaces it, or an untuned re-put could
    // never heal it. Not so an entry from elsewhere (a claim) over one measured here, even with
    // its cubin gone: the measurement and its config stay, the runtime recompiles that config on
    // next use (resolve.cpp, from_store) and heals the entry with replace_if_current. Otherwise
    // deleting one blob would let any bundle displace a local measurement.
    outcome = Outcome::replaced;
    result = entry;
    merge_lists(result, cur.entry);
  } else if (beats(entry, cur.entry)) {
    outcome = Outcome::replaced;
    result = entry;
    merge_lists(result, cur.entry);
  } else {
    outcome = !measured_over_unmeasured ? Outcome::kept : cur_cubin_gone ? Outcome::kept_local_cubin_missing : Outcome::kept_local;
    result = cur.entry;
    merge_lists(result, entry);
    if (result.to_json() == cur.entry.to_json()) return outcome;  // nothing new: no write
  }
  atomic_write(root / "tmp", path, index_text(fp, result));
  return outcome;
}

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

// SHA-256 of json::to_cbor(j), fed to the digest as it is encoded (no second copy in memory).
// Lowercase hex of a 32-byte SHA-256 digest: the form of every digest in index files and names.
std::string digest_hex(const unsigned char* md) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(64, '0');
  for (unsigned k = 0; k < 32; ++k) {
    out[2 * k] = digits[md[k] >> 4];
    out[2 * k + 1] = digits[md[k] & 15];
  }
  return out;
}

class Sha256Sink : public std::streambuf {
 public:
  Sha256Sink() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1)
      fail("cache: OpenSSL's EVP_DigestInit(SHA-256) failed; check the OpenSSL installation (libcrypto)");
  }
  Sha256Sink(const Sha256Sink&) = delete;
  Sha256Sink& operator=(const Sha256Sink&) = delete;
  ~Sha256Sink() override { EVP_MD_CTX_free(ctx_); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!ok_ || EVP_DigestFinal_ex(ctx_, md, &len) != 1 || len != 32)
      fail("cache: OpenSSL's SHA-256 failed; check the OpenSSL installation");
    return digest_hex(md);
  }

 protected:
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      const char ch = traits_type::to_char_type(c);
      ok_ = ok_ && EVP_DigestUpdate(ctx_, &ch, 1) == 1;
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    ok_ = ok_ && EVP_DigestUpdate(ctx_, s, static_cast<std::size_t>(n)) == 1;
    return n;
  }

 private:
  EVP_MD_CTX* ctx_;
  bool ok_ = true;
};

std::string cbor_sha256_hex(const json& j) {
  Sha256Sink sink;
  std::ostream out(&sink);
  json::to_cbor(j, out);
  return sink.hex();
}

std::uint64_t max_bundle_bytes() {
  if (const char* v = std::getenv("SIGJIT_MAX_BUNDLE_BYTES"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(v, &end, 10);
    if (end != v && *end == '\0' && errno == 0 && n > 0 && v[0] != '-') return n;
    fail(fmt::format("SIGJIT_MAX_BUNDLE_BYTES='{}': expected a positive number of bytes, e.g. {}", v, kDefaultMaxBundleBytes));
  }
  return kDefaultMaxBundleBytes;
}

// The trust decision for one bundle entry: the origin it gets in this store. Every imported
// entry is a claim today (the bundle's own "origin" is never believed). Signed entries (the
// cluster tier: an Ed25519 signature over the entry and its cubin digest, checked against
// trusted keys) plug in here and nowhere else: a verified signature may return a trusted origin.
std::string origin_of_bundle_entry(const json& item) {
  static_cast<void>(item);
  return kOriginImported;
}

// Store::replace_if_current.
bool replace_locked_if(const fs::path& root, const DeviceFingerprint& fp, const Entry& entry_in, const std::string& expected_sha) {
  const Entry entry = checked_for_write(entry_in);
  const std::string id = fp.id();
  const fs::path path = index_path(root, id, entry.problem_key);
  KeyLock lock(lock_path(root, id, entry.problem_key));  // its directories are created by open_cache_dir, as atomic_write's
  const IndexRead cur = read_index(path, entry.problem_key, id);
  if (cur.status == IndexRead::newer) return false;
  Entry result = entry;
  if (cur.status == IndexRead::ok && cur.fingerprint == fp) {
    if (cur.entry.cubin_sha256 != expected_sha) return false;  // replaced meanwhile: leave the newer write alone
    merge_lists(result, cur.entry);
  }
  atomic_write(root / "tmp", path, index_text(fp, result));
  return true;
}

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

// A root that does not exist, or an empty directory: a cache with nothing in it.
bool absent_or_empty(const fs::path& root) {
  std::error_code ec;
  const fs::file_type type = fs::status(root, ec).type();
  return type == fs::file_type::not_found || (type == fs::file_type::directory && fs::is_empty(root, ec) && !ec);
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

// ---- public: hashing, JSON ----------------------------------------------------------------------

std::string sha256_hex(const void* data, std::size_t size) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data, size, md, &len, EVP_sha256(), nullptr) != 1 || len != 32)
    fail("cache: OpenSSL's EVP_Digest(SHA-256) failed; check the OpenSSL installation (libcrypto)");
  return digest_hex(md);
}

std::string DeviceFingerprint::id() const {
  const std::string c = canonical(to_json());
  return sha256_hex(c.data(), c.size()).substr(0, 16);
}

nlohmann::json DeviceFingerprint::to_json() const {
  return {{"gpu_name", gpu_name},
          {"cc_major", cc_major},
          {"cc_minor", cc_minor},
          {"sm_count", sm_count},
          {"driver_version", driver_version},
          {"nvrtc_version", nvrtc_version},
          {"codegen_version", codegen_version},
          {"compile_options", compile_options}};
}

DeviceFingerprint DeviceFingerprint::from_json(const nlohmann::json& j) {
  constexpr const char* what = "device fingerprint";
  DeviceFingerprint f;
  f.gpu_name = get_string(j, "gpu_name", what);
  f.cc_major = get_int(j, "cc_major", what);
  f.cc_minor = get_int(j, "cc_minor", what);
  f.sm_count = get_int(j, "sm_count", what);
  f.driver_version = get_int(j, "driver_version", what);
  f.nvrtc_version = get_string(j, "nvrtc_version", what);
  f.codegen_version = get_int(j, "codegen_version", what);
  f.compile_options = get_string(j, "compile_options", what);
  return f;
}

bool Entry::measured_here() const { return origin == kOriginLocal && tuned && measured(*this); }

nlohmann::json Entry::to_json() const {
  json prov = json::array();
  for (const Provenance& p : provenance) prov.push_back({{"host", p.host}, {"time_utc", p.time_utc}, {"sigjit_version", p.sigjit_version}});
  json rej = json::array();
  for (const Rejected& r : rejected) rej.push_back({{"config", r.config}, {"reason", r.reason}});
  json j = json::object();
  j["problem_key"] = problem_key;
  j["spec"] = spec;
  j["config"] = config;
  j["kernel_name"] = kernel_name;
  j["tuned"] = tuned;
  j["median_ms"] = median_ms;
  j["spread"] = spread;
  j["tflops"] = tflops;
  j["tuned_shape"] = tuned_shape;
  j["cubin_sha256"] = cubin_sha256;
  j["provenance"] = std::move(prov);
  j["rejected"] = std::move(rej);
  j["origin"] = origin;
  return j;
}

Entry Entry::from_json(const nlohmann::json& j) {
  constexpr const char* what = "cache entry";
  Entry e;
  e.problem_key = get_string(j, "problem_key", what);
  e.spec = field(j, "spec", what);
  e.config = get_string(j, "config", what);
  e.kernel_name = get_string(j, "kernel_name", what);
  e.tuned = get_bool(j, "tuned", what);
  e.median_ms = get_double(j, "median_ms", what);
  e.spread = get_double(j, "spread", what);
  e.tflops = get_double(j, "tflops", what);
  e.tuned_shape = get_string(j, "tuned_shape", what);
  e.cubin_sha256 = get_string(j, "cubin_sha256", what);
  for (const json& p : get_array(j, "provenance", what))
    e.provenance.push_back({get_string(p, "host", "cache entry provenance"), get_string(p, "time_utc", "cache entry provenance"),
                            get_string(p, "sigjit_version", "cache entry provenance")});
  for (const json& r : get_array(j, "rejected", what))
    e.rejected.push_back({get_string(r, "config", "cache entry rejected config"), get_string(r, "reason", "cache entry rejected config")});
  // Absent before index format 2 (and in bundles of older versions): nothing proves where it was measured.
  e.origin = j.contains("origin") ? get_string(j, "origin", what) : std::string(kOriginUnknown);
  return e;
}

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
  if (const char* d = std::getenv("SIGJIT_CACHE_DIR"); d != nullptr && *d != '\0') return fs::path(d);
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

int Store::export_bundle(const std::filesystem::path& file, const std::vector<Listed>& entries, int* skipped) const {
  // The destination first: nothing is read or written for one that will be refused.
  const bool to_stdout = file == "-";
  if (file.empty()) fail("export: the bundle path is empty; give a file name, or - for stdout");
  if (!to_stdout) {
    struct stat st {};
    if (::lstat(file.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      const char* what = S_ISLNK(st.st_mode)    ? "a symbolic link"
                         : S_ISDIR(st.st_mode)  ? "a directory"
                         : S_ISFIFO(st.st_mode) ? "a FIFO"
                         : S_ISCHR(st.st_mode)  ? "a character device"
                         : S_ISBLK(st.st_mode)  ? "a block device"
                         : S_ISSOCK(st.st_mode) ? "a socket"
                                                : "not a regular file";
      fail(fmt::format("export: {} exists and is {}; refusing to replace it (a bundle is written to a temp file beside the "
                       "destination and renamed onto it). Give the path of a regular file, or - to write the bundle to stdout",
                       file.string(), what));
    }
  }
  if (skipped != nullptr) *skipped = 0;
  json list = json::array();
  for (const Listed& l : entries) {
    check_key(l.entry.problem_key);
    const std::optional<std::vector<char>> cubin = load_blob(l.entry.cubin_sha256);
    if (!cubin) {
      std::fputs(fmt::format("sigjit: cache: export: skipping {} ({}): its cubin {} is missing or corrupted\n", l.entry.problem_key,
                             l.fingerprint.id(), l.entry.cubin_sha256)
                     .c_str(),
                 stderr);
      if (skipped != nullptr) ++*skipped;
      continue;
    }
    list.push_back({{"fingerprint", l.fingerprint.to_json()},
                    {"entry", l.entry.to_json()},
                    {"cubin", json::binary(std::vector<std::uint8_t>(cubin->begin(), cubin->end()))}});
  }
  const int count = static_cast<int>(list.size());
  json bundle = {{"magic", kBundleMagic}, {"format_version", kBundleFormatVersion}, {"entries", std::move(list)}};
  const std::vector<std::uint8_t> body = json::to_cbor(bundle);
  bundle["checksum"] = sha256_hex(body.data(), body.size());
  const std::vector<std::uint8_t> bytes = json::to_cbor(bundle);
  if (to_stdout) {
    if (!write_all(STDOUT_FILENO, bytes.data(), bytes.size()))
      fail(fmt::format("export: cannot write the bundle to stdout: {}", errno_text(errno)));
    return count;
  }
  fs::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  atomic_write(dir, file, bytes.data(), bytes.size(), "of the bundle's directory");
  return count;
}

ImportReport Store::import_bundle(const std::filesystem::path& file, const DeviceFingerprint* local, bool allow_foreign) {
  const std::uint64_t max_bytes = max_bundle_bytes();
  json b;
  try {
    // Size first (F7): the file's size is checked before a byte is read, and the tree is built
    // under bounds (depth, strings, cubins, values: F2) by a SAX parser; the raw bytes are freed
    // before the checksum is computed (streamed, no second encoding in memory).
    std::vector<std::uint8_t> data;
    if (const int e = read_all(file, data, nullptr, static_cast<std::size_t>(std::min<std::uint64_t>(max_bytes, SIZE_MAX)), true); e != 0) {
      if (e == EFBIG) {
        struct stat st {};
        const std::uint64_t size = ::stat(file.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
        fail(fmt::format("cache import: bundle {} is {} bytes, over the limit of {} bytes; set SIGJIT_MAX_BUNDLE_BYTES to import it anyway",
                         file.string(), size, max_bytes));
      }
      fail(fmt::format("cache import: cannot read bundle {}: {}", file.string(), read_error_text(e)));
    }
    ParseLimits limits;
    limits.max_binary = kMaxBlobBytes;
    limits.max_values = kMaxBundleValues;
    if (const std::string why = bounded_parse(data, true, limits, b); !why.empty())
      fail(fmt::format("cache import: {} is not a sigjit bundle, is truncated or exceeds a limit ({}); export it again", file.string(),
                       why));
  } catch (const std::bad_alloc&) {
    fail(
        fmt::format("cache import: out of memory reading bundle {}; import it on a host with more memory, or export smaller bundles "
                    "(sigjit export --match)",
                    file.string()));
  }
  if (!b.is_object() || !b.contains("magic") || b["magic"] != kBundleMagic)
    fail(fmt::format(
        "cache import: {} is not a sigjit bundle (wrong magic); bundles are written by Store::export_bundle / `sigjit export`",
        file.string()));
  if (!b.contains("format_version") || !b["format_version"].is_number_integer() || b["format_version"] != kBundleFormatVersion)
    fail(fmt::format("cache import: {}: bundle format version {}, this sigjit reads {}; export it with a matching sigjit version",
                     file.string(), b.contains("format_version") ? b["format_version"].dump() : "missing", kBundleFormatVersion));
  if (!b.contains("checksum") || !b["checksum"].is_string())
    fail(fmt::format("cache import: {}: the bundle has no checksum (corrupted); export it again", file.string()));
  const std::string stored = b["checksum"].get<std::string>();
  b.erase("checksum");
  if (cbor_sha256_hex(b) != stored)
    fail(fmt::format("cache import: {}: bundle checksum mismatch: the file is corrupted or truncated; export it again", file.string()));
  if (!b.contains("entries") || !b["entries"].is_array())
    fail(fmt::format("cache import: {}: the bundle has no entries array (corrupted); export it again", file.string()));
  if (b["entries"].size() > kMaxBundleEntries)
    fail(fmt::format("cache import: {}: {} entries, over the limit of {} per bundle; export smaller bundles (sigjit export --match)",
                     file.string(), b["entries"].size(), kMaxBundleEntries));

  // Entries of one (device, key) are merged in memory first and written once (F8: a bundle of
  // 5 000 entries for one key is one locked read-merge-write, not 5 000 rewrites of a growing file).
  struct Pending {
    DeviceFingerprint fp;
    Entry entry;
    const json::binary_t* cubin = nullptr;
    std::vector<std::size_t> items;  // bundle positions merged into it, for messages
  };
  std::vector<Pending> pending;
  std::map<std::pair<std::string, std::string>, std::size_t> slot;
  ImportReport rep;
  std::size_t i = 0;
  for (const json& item : b["entries"]) {
    const std::size_t n = i++;
    std::string key = "?";
    try {
      const DeviceFingerprint fp = DeviceFingerprint::from_json(field(item, "fingerprint", "bundle entry"));
      Entry entry = Entry::from_json(field(item, "entry", "bundle entry"));
      key = is_valid_key(entry.problem_key) ? entry.problem_key : quoted_prefix(entry.problem_key);
      check_key(entry.problem_key);
      check_sha(entry.cubin_sha256, "entry.cubin_sha256");
      check_fingerprint_bounds(fp);
      check_entry_bounds(entry);
      if (local != nullptr && fp != *local && !allow_foreign) {
        ++rep.refused_foreign;
        continue;
      }
      const json& cubin = field(item, "cubin", "bundle entry");
      if (!cubin.is_binary()) fail("bundle entry: field 'cubin' must be a CBOR byte string");
      const auto& bytes = cubin.get_binary();
      const std::string got = sha256_hex(bytes.data(), bytes.size());
      if (got != entry.cubin_sha256)
        fail(fmt::format("cubin digest {} does not match entry.cubin_sha256 {}; skipped", got, entry.cubin_sha256));
      entry.origin = origin_of_bundle_entry(item);
      cap_lists(entry);
      const auto [it, fresh] = slot.emplace(std::make_pair(fp.id(), entry.problem_key), pending.size());
      if (fresh) {
        pending.push_back({fp, std::move(entry), &bytes, {n}});
        continue;
      }
      Pending& p = pending[it->second];
      if (p.fp != fp) fail(fmt::format("its fingerprint has the same id {} as entry {}'s but differs", fp.id(), p.items.front()));
      auto [merged, incoming_won] = merge_entries(p.entry, entry);
      p.entry = std::move(merged);
      if (incoming_won) p.cubin = &bytes;
      p.items.push_back(n);
      ++rep.kept;  // a duplicate of an earlier entry of the bundle, merged into it
    } catch (const Error& ex) {
      rep.problems.push_back(fmt::format("{}: entry {} ({}): {}", file.string(), n, key, ex.what()));
    }
  }
  if (!pending.empty() && layout_pending_) create_layout();  // a refused or empty import creates nothing
  for (const Pending& p : pending) {
    try {
      put_blob_bytes(root_, p.cubin->data(), p.cubin->size());
      switch (put_entry_locked(root_, p.fp, p.entry, MergePolicy::keep_faster)) {
        case Outcome::added: ++rep.added; break;
        case Outcome::replaced: ++rep.replaced; break;
        case Outcome::kept: ++rep.kept; break;
        case Outcome::kept_local_cubin_missing: ++rep.kept_local_cubin_missing; [[fallthrough]];
        case Outcome::kept_local: ++rep.kept_local, ++rep.kept; break;
      }
    } catch (const Error& ex) {
      rep.problems.push_back(fmt::format("{}: entry {} ({}): {}", file.string(), p.items.front(), p.entry.problem_key, ex.what()));
    }
  }
  return rep;
}

}  // namespace sigjit::cache
