// The Redis tier (design, key and record formats: cache/remote.hpp).
//
// hiredis is used in blocking mode, but never through redisCommand's unbounded wait: each command
// is queued (redisAppendCommandArgv), written (redisBufferWrite) and its reply read
// (redisBufferRead + redisGetReplyFromReader) in a loop that sets the socket timeout to what is
// left of the command's deadline before every read, and that counts the bytes received, so that
// neither a silent nor a trickling nor a flooding server holds a caller past the deadline or
// makes it buffer more than the bound. SIGPIPE is blocked around writes (hiredis writes with
// write(2); a server that vanished must not kill the training process).
#include "cache/remote.hpp"

#include "base/env.hpp"

#include <sigjit/sigjit.hpp>

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <set>
#include <system_error>
#include <utility>

namespace sigjit::cache {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kMaxKeyLength = 180;  // the store's bound on a problem key
constexpr std::size_t kMaxPasswordFileBytes = 4096;
constexpr std::size_t kMaxControlReplyBytes = 64u << 10;  // replies other than a record or a scan
constexpr std::size_t kMaxScanReplyBytes = 4u << 20;
constexpr int kScanCount = 1000;
constexpr int kMaxScanRounds = 100000;

[[noreturn]] void fail(const std::string& message) { throw Error(message); }

// Text that came from the network or a file, fit for a message: at most `keep` bytes, any byte
// outside printable ASCII shown as '?'.
std::string printable(std::string_view s, std::size_t keep = 120) {
  std::string out(s.substr(0, keep));
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';
  if (s.size() > keep) out += fmt::format("... ({} bytes)", s.size());
  return out;
}

bool is_hex64(std::string_view s) { return is_key_id(s); }

bool is_valid_problem_key(std::string_view k) {
  return !k.empty() && k.size() <= kMaxKeyLength && std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool is_config_text(std::string_view c) {
  return !c.empty() && c.size() <= kMaxConfigLength &&
         std::all_of(c.begin(), c.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; });
}

bool verbose() {
  const char* v = env::raw("SIGJIT_VERBOSE_CACHE");
  return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

std::string duration_text(milliseconds d) {
  if (d == kBackoffForever) return "the rest of this process";
  if (d.count() % 1000 == 0) return fmt::format("{} s", d.count() / 1000);
  return fmt::format("{} ms", d.count());
}

// ---- configuration ---------------------------------------------------------------------------

// The URL with its password replaced by ***, for messages about a URL that failed to parse.
std::string masked_url(std::string_view url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return printable(url);
  const std::size_t host_start = scheme + 3;
  const std::size_t authority_end = std::min(url.find('/', host_start), url.size());
  const std::size_t at = url.substr(0, authority_end).rfind('@');
  if (at == std::string_view::npos || at < host_start) return printable(url);
  const std::string_view userinfo = url.substr(host_start, at - host_start);
  const std::size_t colon = userinfo.find(':');
  std::string out(url.substr(0, host_start));
  out += colon == std::string_view::npos ? std::string(userinfo) : std::string(userinfo.substr(0, colon)) + ":***";
  out += url.substr(at);
  return printable(out, 300);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding of the URL's user and password; nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;  // needs two hex digits after the '%'
    const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

bool is_host_char(char c, bool ipv6) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.') return true;
  return ipv6 ? (c == ':' || c == '%') : (c == '-' || c == '_');
}

milliseconds env_ms(const char* name, milliseconds fallback) {
  const char* v = env::raw(name);
  if (v == nullptr || *v == '\0') return fallback;
  const auto ms = env::parse_int(v, 1, kMaxRemoteTimeout.count());
  if (!ms)
    fail(fmt::format("{}='{}': expected milliseconds from 1 to {}, e.g. {}", name, printable(v), kMaxRemoteTimeout.count(),
                     fallback.count()));
  return milliseconds(*ms);
}

milliseconds env_backoff() {
  const char* v = env::raw(kRemoteBackoffEnv);
  if (v == nullptr || *v == '\0') return kDefaultRemoteBackoff;
  if (std::string_view(v) == "inf") return kBackoffForever;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  if (end == v || *end != '\0' || !std::isfinite(s) || s < 0 || s > 1e7)
    fail(fmt::format("{}='{}': expected seconds from 0 to 1e7, e.g. 60, or inf (a failed server is not retried by this process)",
                     kRemoteBackoffEnv, printable(v)));
  return milliseconds(static_cast<long long>(std::llround(s * 1000)));
}

bool env_write() {
  const char* v = env::raw(kRemoteWriteEnv);
  if (v == nullptr || *v == '\0' || std::string_view(v) == "0") return false;
  if (std::string_view(v) == "1") return true;
  fail(fmt::format("{}='{}': expected 1 (publish tuned kernels to the remote tier) or 0 (read only, the default)", kRemoteWriteEnv,
                   printable(v)));
}

std::string read_password_file(const char* path) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    fail(fmt::format("{}='{}': {}; give a file holding the Redis password", kRemotePasswordFileEnv, printable(path),
                     std::error_code(errno, std::generic_category()).message()));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > kMaxPasswordFileBytes)
    fail(fmt::format("{}='{}': not a regular file of at most {} bytes; give a file holding the Redis password", kRemotePasswordFileEnv,
                     printable(path), kMaxPasswordFileBytes));
  std::string text(kMaxPasswordFileBytes + 1, '\0');
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  text.resize(std::min(done, kMaxPasswordFileBytes));
  std::string password = text.substr(0, text.find('\n'));  // the first line: a trailing newline is not part of it
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty())
    fail(fmt::format("{}='{}': the file's first line is empty; put the password there", kRemotePasswordFileEnv, printable(path)));
  return password;
}

// ---- record -----------------------------------------------------------------------------------

void put_u32(std::string& out, std::size_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_section(std::string& out, std::string_view bytes) {
  put_u32(out, bytes.size());
  out.append(bytes);
}

// Reads one length-prefixed section at *pos, of at most `limit` bytes.
std::string_view take_section(std::string_view bytes, std::size_t* pos, std::size_t limit, const char* what) {
  if (bytes.size() - *pos < 4) fail(fmt::format("record truncated before its {}", what));
  std::size_t len = 0;
  for (int i = 0; i < 4; ++i) len = (len << 8) | static_cast<unsigned char>(bytes[*pos + i]);
  *pos += 4;
  if (len > limit) fail(fmt::format("record's {} is {} bytes, over the limit of {}", what, len, limit));
  if (len > bytes.size() - *pos) fail(fmt::format("record's {} claims {} bytes, but only {} follow", what, len, bytes.size() - *pos));
  const std::string_view out = bytes.substr(*pos, len);
  *pos += len;
  return out;
}

// JSON with bounded nesting: the parser is iterative, but copies, dumps and comparisons of the
// tree recurse, so a deeply nested meta section is refused while parsing.
json parse_meta(std::string_view text) {
  const json::parser_callback_t depth_limit = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxNestingDepth) throw Error(fmt::format("record's JSON is nested deeper than {} levels", kMaxNestingDepth));
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), depth_limit);
  } catch (const json::exception& ex) {
    fail(fmt::format("record's JSON does not parse: {}", ex.what()));
  }
}

void check_length(const std::string& v, std::size_t limit, const char* what) {
  if (v.size() > limit) fail(fmt::format("record's {} is {} bytes long, over the limit of {}", what, v.size(), limit));
}

// The same bounds the store applies to an entry it reads (cache/index.cpp), checked on a record
// before anything else looks at its fields.
void check_record_bounds(const DeviceFingerprint& fp, const Entry& e) {
  check_length(fp.gpu_name, kMaxNameLength, "fingerprint gpu_name");
  check_length(fp.nvrtc_version, kMaxNameLength, "fingerprint nvrtc_version");
  check_length(fp.compile_options, kMaxIndexString, "fingerprint compile_options");
  if (!is_valid_problem_key(e.problem_key))
    fail(fmt::format("record's problem key '{}' is not 1 to {} characters from [A-Za-z0-9_]", printable(e.problem_key), kMaxKeyLength));
  if (!is_config_text(e.config))
    fail(fmt::format("record's config '{}' is not a tile config ([a-z0-9_], 1 to {})", printable(e.config), kMaxConfigLength));
  if (!is_hex64(e.cubin_sha256)) fail(fmt::format("record's cubin_sha256 '{}' is not 64 lower-case hex digits", printable(e.cubin_sha256)));
  if (!e.spec.is_object()) fail("record's spec is not a JSON object");
  check_length(e.kernel_name, kMaxNameLength, "kernel_name");
  check_length(e.tuned_shape, kMaxNameLength, "tuned_shape");
  if (e.provenance.size() > kMaxProvenance)
    fail(fmt::format("record has {} provenance records, over the limit of {}", e.provenance.size(), kMaxProvenance));
  for (const Provenance& p : e.provenance) {
    check_length(p.host, kMaxNameLength, "provenance host");
    check_length(p.time_utc, kMaxNameLength, "provenance time_utc");
    check_length(p.sigjit_version, kMaxNameLength, "provenance sigjit_version");
  }
  for (const auto& [name, v] : {std::pair{"median_ms", e.median_ms}, std::pair{"spread", e.spread}, std::pair{"tflops", e.tflops}})
    if (!std::isfinite(v) || v < 0) fail(fmt::format("record's {} is {}; expected a finite number >= 0", name, v));
}

std::string fingerprint_digest(const DeviceFingerprint& fp) {
  std::string text;
  try {
    text = fp.to_json().dump();  // strict: invalid UTF-8 throws instead of being replaced
  } catch (const json::exception& ex) {
    fail(fmt::format("device fingerprint is not valid UTF-8: {}", ex.what()));
  }
  return sha256_hex(text.data(), text.size());
}

std::string key_suffix(const DeviceFingerprint& fp, const std::string& problem_key) {
  if (!is_valid_problem_key(problem_key))
    fail(fmt::format("remote cache: invalid problem key '{}': 1 to {} characters from [A-Za-z0-9_] (use sigjit::problem_key())",
                     printable(problem_key), kMaxKeyLength));
  return fingerprint_digest(fp) + ":" + problem_key;
}

// "entry <problem key> of device <digest prefix>" for a log line about a key of this tier.
std::string describe_key(std::string_view key) {
  std::string_view rest = key.substr(std::min(key.size(), std::strlen(kRemotePrefix)));
  const std::size_t kind_end = rest.find(':');
  if (kind_end == std::string_view::npos) return printable(key);
  const std::string_view kind = rest.substr(0, kind_end);
  rest.remove_prefix(kind_end + 1);
  if (rest.size() < 66 || rest[64] != ':') return printable(key);
  return fmt::format("{} {} of device {}", printable(kind), printable(rest.substr(65)), printable(rest.substr(0, 16)));
}

// ---- hiredis ---------------------------------------------------------------------------------------

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;
struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextFree>;

std::string_view reply_text(const redisReply* r) { return r->str == nullptr ? std::string_view() : std::string_view(r->str, r->len); }

timeval to_timeval(milliseconds d) {
  const long long ms = std::max<long long>(1, d.count());
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

// Blocks SIGPIPE in this thread for its lifetime and discards a SIGPIPE raised meanwhile (the
// usual way for a library to write to a socket without changing the process's signal handling).
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

enum class Failure { none, breaker, io, oversize };

struct Outcome {
  ReplyPtr reply;
  Failure failure = Failure::none;
  std::string why;
};

Outcome failed(Failure f, std::string why) { return Outcome{nullptr, f, std::move(why)}; }

std::string random_token() {
  unsigned char buf[16];
  if (RAND_bytes(buf, sizeof(buf)) != 1) fail("remote cache: OpenSSL's RAND_bytes failed; cannot make a lock token");
  char host[256] = "unknown";
  ::gethostname(host, sizeof(host) - 1);
  return fmt::format("{}:{}:{:02x}", printable(host, 64), ::getpid(), fmt::join(buf, buf + sizeof(buf), ""));
}

const char* kUnlockScript = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
const char* kRefreshScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

}  // namespace

// ---- configuration ------------------------------------------------------------------------------

RemoteConfig RemoteConfig::parse_url(std::string_view url, const char* what) {
  const auto bad = [&](const std::string& why) -> Error {
    return Error(fmt::format("{}='{}': {}; expected redis://[user:password@]host[:port][/db], e.g. redis://cache.internal:6379/0", what,
                             masked_url(url), why));
  };
  if (url.size() > 4096) throw bad("over 4096 characters");
  if (url.rfind("rediss://", 0) == 0)
    throw bad("TLS (rediss://) is not supported by this build's hiredis; use redis:// on a trusted network");
  if (url.rfind("redis://", 0) != 0) throw bad("the scheme must be redis://");
  std::string_view rest = url.substr(8);
  if (rest.find_first_of("?#") != std::string_view::npos) throw bad("query parameters and fragments are not supported");
  const std::size_t slash = std::min(rest.find('/'), rest.size());
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = rest.substr(slash);
  RemoteConfig c;
  std::string_view hostport = authority;
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    hostport = authority.substr(at + 1);
    const std::size_t colon = userinfo.find(':');
    const auto user = percent_decode(userinfo.substr(0, colon));
    const auto password = colon == std::string_view::npos ? std::optional<std::string>("") : percent_decode(userinfo.substr(colon + 1));
    if (!user || !password) throw bad("a malformed %-escape in the user or password (write %XX with two hex digits)");
    if (std::any_of(user->begin(), user->end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x21 || ch == 0x7f; }))
      throw bad("the user name has spaces or control characters");
    if (password->find('\0') != std::string::npos) throw bad("the password holds a NUL byte");
    c.user = *user;
    c.password = *password;  // a user without one may get it from SIGJIT_REMOTE_CACHE_PASSWORD_FILE
  }
  std::string_view port_text;
  bool ipv6 = false;
  if (!hostport.empty() && hostport.front() == '[') {
    const std::size_t close = hostport.find(']');
    if (close == std::string_view::npos) throw bad("an IPv6 address without its closing ']'");
    c.host = std::string(hostport.substr(1, close - 1));
    const std::string_view after = hostport.substr(close + 1);
    if (!after.empty() && after.front() != ':') throw bad("unexpected text after the IPv6 address");
    port_text = after.empty() ? std::string_view() : after.substr(1);
    if (!after.empty() && port_text.empty()) throw bad("an empty port");
    ipv6 = true;
  } else {
    const std::size_t colon = hostport.find(':');
    if (colon != std::string_view::npos && hostport.find(':', colon + 1) != std::string_view::npos)
      throw bad("an IPv6 address must be in brackets, e.g. redis://[::1]:6379");
    c.host = std::string(hostport.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = hostport.substr(colon + 1);
      if (port_text.empty()) throw bad("an empty port");
    }
  }
  if (c.host.empty() || c.host.size() > 253) throw bad("the host must be 1 to 253 characters");
  if (!std::all_of(c.host.begin(), c.host.end(), [&](char ch) { return is_host_char(ch, ipv6); }))
    throw bad(fmt::format("the host '{}' has characters other than letters, digits, '.', '-', '_'", printable(c.host)));
  if (!port_text.empty()) {
    const auto port = env::parse_int(port_text, 1, 65535);
    if (!port) throw bad(fmt::format("port '{}' is not a number from 1 to 65535", printable(port_text)));
    c.port = static_cast<int>(*port);
  }
  if (path.size() > 1) {
    const auto db = env::parse_int(path.substr(1), 0, 65535);
    if (!db) throw bad(fmt::format("database '{}' is not a number from 0 to 65535", printable(path.substr(1))));
    c.db = static_cast<int>(*db);
  }
  return c;
}

std::optional<RemoteConfig> RemoteConfig::from_env() {
  const char* url = env::raw(kRemoteCacheEnv);
  if (url == nullptr || *url == '\0') return std::nullopt;
  RemoteConfig c = parse_url(url);
  if (const char* file = env::raw(kRemotePasswordFileEnv); file != nullptr && *file != '\0') {
    if (!c.password.empty())
      fail(fmt::format("{} has a password and {} is set too; give the password once (the file keeps it out of the environment)",
                       kRemoteCacheEnv, kRemotePasswordFileEnv));
    c.password = read_password_file(file);
  }
  c.write = env_write();
  c.connect_timeout = env_ms(kRemoteConnectTimeoutEnv, kDefaultConnectTimeout);
  c.command_timeout = env_ms(kRemoteTimeoutEnv, kDefaultCommandTimeout);
  c.backoff = env_backoff();
  return c;
}

std::string RemoteConfig::url() const {
  std::string auth;
  if (!user.empty() || !password.empty()) auth = fmt::format("{}{}@", printable(user, 64), password.empty() ? "" : ":***");
  const bool ipv6 = host.find(':') != std::string::npos;
  return fmt::format("redis://{}{}{}{}:{}/{}", auth, ipv6 ? "[" : "", printable(host, 253), ipv6 ? "]" : "", port, db);
}

const char* to_string(RemoteStatus s) {
  switch (s) {
    case RemoteStatus::ok: return "ok";
    case RemoteStatus::absent: return "absent";
    case RemoteStatus::read_only: return "read_only";
    case RemoteStatus::unavailable: return "unavailable";
    case RemoteStatus::refused: return "refused";
  }
  return "unknown";
}

// ---- keys and records ----------------------------------------------------------------------------

std::string remote_key(const DeviceFingerprint& fp, const std::string& problem_key) {
  return std::string(kRemotePrefix) + "entry:" + key_suffix(fp, problem_key);
}

std::string remote_lock_key(const DeviceFingerprint& fp, const std::string& problem_key) {
  return std::string(kRemotePrefix) + "lock:" + key_suffix(fp, problem_key);
}

std::string remote_key_pattern(const DeviceFingerprint* fp) {
  return std::string(kRemotePrefix) + "entry:" + (fp == nullptr ? std::string("*") : fingerprint_digest(*fp) + ":*");
}

std::string encode_record(const RemoteRecord& r, std::size_t max_bytes) {
  const Entry& e = r.entry;
  if (!is_key_id(r.signature.key_id))
    fail(fmt::format("remote record {}: signer key id '{}' is not 64 hex digits; sign it with sign_entry", printable(e.problem_key),
                     printable(r.signature.key_id)));
  if (r.signature.signature.size() != kEd25519SignatureBytes)
    fail(fmt::format("remote record {}: the signature is {} bytes, not {}; sign it with sign_entry", printable(e.problem_key),
                     r.signature.signature.size(), kEd25519SignatureBytes));
  check_record_bounds(r.fingerprint, e);
  if (sha256_hex(r.cubin.data(), r.cubin.size()) != e.cubin_sha256)
    fail(fmt::format("remote record {}: the cubin is not the one entry.cubin_sha256 names", e.problem_key));
  json entry = e.to_json();
  entry["rejected"] = json::array();  // a diagnostic list, not signed: not published
  entry.erase("origin");              // the reader's verdict, not the writer's
  std::string meta;
  try {
    meta = json{{"fingerprint", r.fingerprint.to_json()}, {"entry", std::move(entry)}}.dump();
  } catch (const json::exception& ex) {
    fail(fmt::format("remote record {}: not valid UTF-8: {}", e.problem_key, ex.what()));
  }
  if (meta.size() > kMaxRemoteMetaBytes)
    fail(fmt::format("remote record {}: its JSON is {} bytes, over the limit of {}", e.problem_key, meta.size(), kMaxRemoteMetaBytes));
  const std::size_t total = std::strlen(kRecordMagic) + 16 + meta.size() + r.cubin.size() + 64 + kEd25519SignatureBytes;
  if (total > max_bytes)
    fail(fmt::format("remote record {}: {} bytes, over the limit of {} (the cubin is {} bytes)", e.problem_key, total, max_bytes,
                     r.cubin.size()));
  std::string out(kRecordMagic);
  out.reserve(total);
  put_section(out, meta);
  put_section(out, std::string_view(r.cubin.data(), r.cubin.size()));
  put_section(out, r.signature.key_id);
  put_section(out, r.signature.signature);
  return out;
}

RemoteRecord decode_record(std::string_view bytes, const std::string& key, const TrustedKeys& trusted, std::size_t max_bytes) {
  // 1. Bounds and framing, before anything is parsed.
  if (bytes.size() > max_bytes) fail(fmt::format("record is {} bytes, over the limit of {}", bytes.size(), max_bytes));
  const std::string_view magic(kRecordMagic);
  if (bytes.substr(0, magic.size()) != magic) fail("not a sigjit record of format 1 (its first bytes are not the magic)");
  std::size_t pos = magic.size();
  const std::string_view meta = take_section(bytes, &pos, kMaxRemoteMetaBytes, "JSON");
  const std::string_view cubin = take_section(bytes, &pos, max_bytes, "cubin");
  const std::string_view key_id = take_section(bytes, &pos, 64, "key id");
  const std::string_view signature = take_section(bytes, &pos, kEd25519SignatureBytes, "signature");
  if (pos != bytes.size()) fail(fmt::format("record has {} bytes after its last section", bytes.size() - pos));
  RemoteRecord r;
  r.signature.key_id = std::string(key_id);
  r.signature.signature = std::string(signature);
  // 2. Cheap refusals: a malformed or untrusted signer is refused before its JSON is parsed.
  if (!is_key_id(r.signature.key_id)) fail(fmt::format("record's signer key id '{}' is not 64 lower-case hex digits", printable(key_id)));
  if (!trusted.trusts(r.signature.key_id)) fail(trusted.verify({}, r.signature.signature, r.signature.key_id));
  // 3. Parse (bounded nesting) and bound every field.
  const json j = parse_meta(meta);
  if (!j.is_object() || !j.contains("fingerprint") || !j.contains("entry")) fail("record's JSON lacks its fingerprint or entry");
  try {
    r.fingerprint = DeviceFingerprint::from_json(j.at("fingerprint"));
    r.entry = Entry::from_json(j.at("entry"));
  } catch (const json::exception& ex) {
    fail(fmt::format("record's JSON has a field of the wrong type: {}", ex.what()));
  }
  r.entry.rejected.clear();
  r.entry.origin = kOriginImported;
  check_record_bounds(r.fingerprint, r.entry);
  // 4. Bound to the key it was read from: a valid record copied under another key is refused.
  if (remote_key(r.fingerprint, r.entry.problem_key) != key)
    fail(fmt::format("record is for {}, not for the key it was read from", describe_key(remote_key(r.fingerprint, r.entry.problem_key))));
  // 5. The signature, over the fields and the digest of the cubin actually received.
  r.cubin.assign(cubin.begin(), cubin.end());
  if (std::string why = verify_entry(trusted, r.fingerprint, r.entry, r.cubin, r.signature); !why.empty()) fail(why);
  return r;
}

// ---- the client ---------------------------------------------------------------------------------

struct RemoteTier::Impl {
  RemoteConfig config;
  TrustedKeys trusted;
  std::string url;

  std::mutex mutex;  // guards ctx: a hiredis context is not thread-safe
  ContextPtr ctx;
  // The breaker: open while Clock::now() < open_until (in Clock ticks; 0: closed).
  std::atomic<Clock::rep> open_until{0};
  std::atomic<bool> tripped{false};

  std::atomic<std::uint64_t> hits{0}, misses{0}, rejected{0}, failures{0}, trips{0}, writes{0}, bytes_read{0}, bytes_written{0};

  std::mutex log_mutex;
  std::set<std::string> logged;

  void log_once(const std::string& what) {
    {
      std::lock_guard lock(log_mutex);
      if (logged.size() > 1024 || !logged.insert(what).second) return;  // bounded: a flood of distinct reasons stops logging
    }
    std::fputs(fmt::format("sigjit: remote cache {}: {}\n", url, what).c_str(), stderr);
  }

  bool breaker_open() const { return Clock::now().time_since_epoch().count() < open_until.load(); }

  void trip(const std::string& why) {
    ctx.reset();
    ++failures;
    ++trips;
    const Clock::rep now = Clock::now().time_since_epoch().count();
    constexpr Clock::rep kForever = std::numeric_limits<Clock::rep>::max();
    // Saturating: a backoff of years (or kBackoffForever) must not overflow into the past.
    const bool forever = config.backoff >= std::chrono::duration_cast<milliseconds>(Clock::duration(kForever - now));
    open_until = forever ? kForever : now + std::chrono::duration_cast<Clock::duration>(config.backoff).count();
    tripped = true;
    log_once(fmt::format("{}; the remote tier is a miss for {} ({})", why, duration_text(config.backoff), kRemoteBackoffEnv));
  }

  void recovered() {
    if (tripped.exchange(false)) {
      open_until = 0;
      log_once("reachable again");
    }
  }

  void set_timeout(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()) + milliseconds(1);
    redisSetTimeout(ctx.get(), to_timeval(left));
  }

  // One command on the open connection, within the command timeout, its reply within `max_reply`
  // bytes received.
  Outcome run(const std::vector<std::string_view>& args, std::size_t max_reply) {
    const Clock::time_point deadline = Clock::now() + config.command_timeout;
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const std::string_view a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx.get(), static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK)
      return failed(Failure::io, fmt::format("cannot queue the command: {}", ctx->errstr));
    {
      SigpipeBlock no_sigpipe;
      for (int done = 0; !done;) {
        if (Clock::now() >= deadline) return failed(Failure::io, timeout_text("sending"));
        set_timeout(deadline);
        if (redisBufferWrite(ctx.get(), &done) != REDIS_OK) return failed(Failure::io, io_text("sending"));
      }
    }
    std::size_t received = 0;
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(ctx.get(), &raw) != REDIS_OK)
        return failed(Failure::io, fmt::format("a malformed reply: {}", printable(ctx->errstr)));
      if (raw != nullptr) {
        ReplyPtr reply(static_cast<redisReply*>(raw));
        if (ctx->reader->pos < ctx->reader->len) return failed(Failure::io, "the server sent more than one reply to one command");
        return Outcome{std::move(reply), Failure::none, {}};
      }
      if (Clock::now() >= deadline) return failed(Failure::io, timeout_text("waiting for the reply"));
      set_timeout(deadline);
      const std::size_t before = ctx->reader->len;
      if (redisBufferRead(ctx.get()) != REDIS_OK) return failed(Failure::io, io_text("waiting for the reply"));
      const std::size_t after = ctx->reader->len;
      received += after >= before ? after - before : after;
      if (received > max_reply)
        return failed(Failure::oversize, fmt::format("the reply is over {} bytes (its read was stopped there)", max_reply));
    }
  }

  std::string timeout_text(const char* while_doing) const {
    return fmt::format("no answer within {} ms {} ({})", config.command_timeout.count(), while_doing, kRemoteTimeoutEnv);
  }

  std::string io_text(const char* while_doing) const {
    if (ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) return timeout_text(while_doing);  // hiredis 0.14
#ifdef REDIS_ERR_TIMEOUT
    if (ctx->err == REDIS_ERR_TIMEOUT) return timeout_text(while_doing);  // hiredis 1.x
#endif
    return fmt::format("connection failed {}: {}", while_doing, printable(ctx->errstr));
  }

  // A command during connection set-up (AUTH, SELECT): "" or why it failed.
  std::string setup_command(const std::vector<std::string_view>& args, const char* name, const char* advice) {
    Outcome o = run(args, kMaxControlReplyBytes);
    if (o.failure != Failure::none) return fmt::format("{}: {}", name, o.why);
    if (o.reply->type == REDIS_REPLY_ERROR) return fmt::format("{} refused: {}; {}", name, printable(reply_text(o.reply.get())), advice);
    if (o.reply->type != REDIS_REPLY_STATUS) return fmt::format("{}: unexpected reply type {}", name, o.reply->type);
    return {};
  }

  // Connects, authenticates and selects the database: "" or why not.
  std::string connect() {
    ctx.reset(redisConnectWithTimeout(config.host.c_str(), config.port, to_timeval(config.connect_timeout)));
    if (!ctx) return "cannot allocate a connection";
    if (ctx->err != 0)
      return fmt::format("cannot connect within {} ms ({}): {}", config.connect_timeout.count(), kRemoteConnectTimeoutEnv,
                         printable(ctx->errstr));
    if (!config.password.empty()) {
      std::vector<std::string_view> auth{"AUTH"};
      if (!config.user.empty()) auth.push_back(config.user);
      auth.push_back(config.password);
      if (std::string why = setup_command(auth, "AUTH", "check the user and password (the URL, or SIGJIT_REMOTE_CACHE_PASSWORD_FILE)");
          !why.empty())
        return why;
    }
    if (config.db != 0) {
      const std::string db = std::to_string(config.db);
      if (std::string why = setup_command({"SELECT", db}, "SELECT", "check the URL's /db (the server's databases setting)"); !why.empty())
        return why;
    }
    return {};
  }

  // One command, connecting first when needed. An I/O failure trips the breaker; an oversized
  // reply only drops the connection (it says nothing about the server's health).
  Outcome command(const std::vector<std::string_view>& args, std::size_t max_reply, const char* name) {
    if (breaker_open()) return failed(Failure::breaker, "the breaker is open");
    std::lock_guard lock(mutex);
    if (breaker_open()) return failed(Failure::breaker, "the breaker is open");  // tripped while this thread waited
    if (!ctx) {
      if (std::string why = connect(); !why.empty()) {
        trip(why);
        return failed(Failure::io, why);
      }
    }
    Outcome o = run(args, max_reply);
    if (o.failure == Failure::io) {
      o.why = fmt::format("{}: {}", name, o.why);
      trip(o.why);
    } else if (o.failure == Failure::oversize) {
      ctx.reset();
    } else {
      recovered();
    }
    return o;
  }

  // The reply to a write (SET, EVAL) as a status.
  RemoteStatus write_status(const Outcome& o, const char* name) {
    if (o.failure != Failure::none) return RemoteStatus::unavailable;
    const redisReply* r = o.reply.get();
    if (r->type == REDIS_REPLY_ERROR) {
      log_once(fmt::format("{} refused: {}", name, printable(reply_text(r))));
      return RemoteStatus::refused;
    }
    return RemoteStatus::ok;
  }

  // nullopt with *why: miss, error, unavailable or rejected.
  std::optional<std::string> get_value(const std::string& key, RemoteOutcome* why) {
    const Outcome o = command({"GET", key}, config.max_record_bytes + 64, "GET");
    if (o.failure == Failure::oversize) {
      *why = RemoteOutcome::rejected;
      log_once(fmt::format("{}: the value is over {} bytes; not read (a miss)", describe_key(key), config.max_record_bytes));
      return std::nullopt;
    }
    if (o.failure != Failure::none) {
      *why = o.failure == Failure::breaker ? RemoteOutcome::unavailable : RemoteOutcome::error;
      return std::nullopt;
    }
    const redisReply* r = o.reply.get();
    if (r->type == REDIS_REPLY_NIL) {
      *why = RemoteOutcome::miss;
      if (verbose()) std::fputs(fmt::format("sigjit: remote cache {}: {}: not cached (miss)\n", url, describe_key(key)).c_str(), stderr);
      return std::nullopt;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      *why = RemoteOutcome::error;
      log_once(fmt::format("GET {} refused: {}", describe_key(key), printable(reply_text(r))));
      return std::nullopt;
    }
    if (r->type != REDIS_REPLY_STRING) {
      *why = RemoteOutcome::rejected;
      log_once(fmt::format("GET {}: unexpected reply type {}", describe_key(key), r->type));
      return std::nullopt;
    }
    bytes_read += r->len;
    *why = RemoteOutcome::hit;
    return std::string(reply_text(r));
  }
};

RemoteTier::RemoteTier(RemoteConfig config, TrustedKeys trusted) : impl_(std::make_unique<Impl>()) {
  if (config.host.empty()) fail("remote cache: no host; configure it with RemoteConfig::parse_url (SIGJIT_REMOTE_CACHE=redis://host:port)");
  if (config.port < 1 || config.port > 65535) fail(fmt::format("remote cache: port {} is not from 1 to 65535", config.port));
  if (!config.user.empty() && config.password.empty())
    fail(fmt::format("remote cache {}: user '{}' has no password; give it in the URL (user:password@) or in {}", config.url(),
                     printable(config.user, 64), kRemotePasswordFileEnv));
  for (const auto& [name, t] : {std::pair{"connect_timeout", config.connect_timeout}, std::pair{"command_timeout", config.command_timeout}})
    if (t.count() < 1 || t > kMaxRemoteTimeout)
      fail(fmt::format("remote cache: {} is {} ms; allowed: 1 to {} ms", name, t.count(), kMaxRemoteTimeout.count()));
  if (config.backoff.count() < 0) fail("remote cache: the backoff must be >= 0 (kBackoffForever: the rest of the process)");
  if (config.max_record_bytes < 1024 || config.max_record_bytes > kMaxRemoteRecordBytes)
    fail(fmt::format("remote cache: max_record_bytes is {}; allowed: 1024 to {}", config.max_record_bytes, kMaxRemoteRecordBytes));
  impl_->url = config.url();
  impl_->config = std::move(config);
  impl_->trusted = std::move(trusted);
}

RemoteTier::~RemoteTier() = default;

const RemoteConfig& RemoteTier::config() const { return impl_->config; }
const TrustedKeys& RemoteTier::trusted() const { return impl_->trusted; }
bool RemoteTier::available() const { return !impl_->breaker_open(); }

RemoteStats RemoteTier::stats() const {
  const Impl& i = *impl_;
  return RemoteStats{i.hits, i.misses, i.rejected, i.failures, i.trips, i.writes, i.bytes_read, i.bytes_written};
}

std::optional<RemoteRecord> RemoteTier::get(const DeviceFingerprint& fp, const std::string& problem_key, RemoteOutcome* outcome) {
  Impl& i = *impl_;
  RemoteOutcome ignored;
  RemoteOutcome& why = outcome != nullptr ? *outcome : ignored;
  std::string key;
  try {
    key = remote_key(fp, problem_key);
  } catch (const Error& e) {
    i.log_once(e.what());
    ++i.misses;
    why = RemoteOutcome::miss;
    return std::nullopt;
  }
  const std::optional<std::string> value = i.get_value(key, &why);
  if (!value) {
    ++(why == RemoteOutcome::rejected ? i.rejected : i.misses);
    return std::nullopt;
  }
  try {
    RemoteRecord r = decode_record(*value, key, i.trusted, i.config.max_record_bytes);
    if (r.fingerprint != fp || r.entry.problem_key != problem_key) fail("record is for another device or problem");
    ++i.hits;
    why = RemoteOutcome::hit;
    return r;
  } catch (const std::exception& e) {
    ++i.rejected;
    why = RemoteOutcome::rejected;
    i.log_once(fmt::format("{}: rejected, not loaded (a miss): {}", describe_key(key), e.what()));
    return std::nullopt;
  }
}

RemoteStatus RemoteTier::put(const RemoteRecord& record, PutMode mode) {
  if (!impl_->config.write) return RemoteStatus::read_only;
  const std::string value = encode_record(record, impl_->config.max_record_bytes);
  return put_raw(remote_key(record.fingerprint, record.entry.problem_key), value, mode);
}

std::optional<std::string> RemoteTier::get_raw(const std::string& key) {
  if (key.rfind(kRemotePrefix, 0) != 0 || key.size() > kMaxRemoteKeyBytes)
    fail(fmt::format("remote cache: key '{}' is not a key of this tier (it starts with {}, at most {} bytes)", printable(key),
                     kRemotePrefix, kMaxRemoteKeyBytes));
  RemoteOutcome why;
  return impl_->get_value(key, &why);
}

RemoteStatus RemoteTier::put_raw(const std::string& key, std::string_view value, PutMode mode) {
  Impl& i = *impl_;
  if (key.rfind(kRemotePrefix, 0) != 0 || key.size() > kMaxRemoteKeyBytes)
    fail(fmt::format("remote cache: key '{}' is not a key of this tier (it starts with {}, at most {} bytes)", printable(key),
                     kRemotePrefix, kMaxRemoteKeyBytes));
  if (value.size() > i.config.max_record_bytes)
    fail(fmt::format("remote cache: a value of {} bytes is over the limit of {}", value.size(), i.config.max_record_bytes));
  if (!i.config.write) return RemoteStatus::read_only;
  std::vector<std::string_view> args{"SET", key, value};
  if (mode == PutMode::if_absent) args.push_back("NX");
  const Outcome o = i.command(args, kMaxControlReplyBytes, "SET");
  if (o.failure == Failure::none && o.reply->type == REDIS_REPLY_NIL) return RemoteStatus::absent;  // NX: already there
  const RemoteStatus s = i.write_status(o, "SET");
  if (s == RemoteStatus::ok) {
    ++i.writes;
    i.bytes_written += value.size();
  }
  return s;
}

RemoteStatus RemoteTier::try_lock(const DeviceFingerprint& fp, const std::string& problem_key, milliseconds ttl, RemoteLock* out) {
  if (ttl.count() < 1 || ttl > kMaxLockTtl)
    fail(fmt::format("remote cache: lock ttl {} ms; allowed: 1 ms to {} ms (24 h)", ttl.count(), kMaxLockTtl.count()));
  Impl& i = *impl_;
  if (!i.config.write) return RemoteStatus::read_only;
  RemoteLock lock{remote_lock_key(fp, problem_key), random_token()};
  const std::string px = std::to_string(ttl.count());
  const Outcome o = i.command({"SET", lock.key, lock.token, "NX", "PX", px}, kMaxControlReplyBytes, "SET NX (lock)");
  if (o.failure == Failure::none && o.reply->type == REDIS_REPLY_NIL) return RemoteStatus::absent;
  const RemoteStatus s = i.write_status(o, "SET NX (lock)");
  if (s == RemoteStatus::ok && out != nullptr) *out = std::move(lock);
  return s;
}

RemoteStatus RemoteTier::refresh_lock(const RemoteLock& lock, milliseconds ttl) {
  if (ttl.count() < 1 || ttl > kMaxLockTtl)
    fail(fmt::format("remote cache: lock ttl {} ms; allowed: 1 ms to {} ms (24 h)", ttl.count(), kMaxLockTtl.count()));
  Impl& i = *impl_;
  if (!i.config.write) return RemoteStatus::read_only;
  const std::string px = std::to_string(ttl.count());
  const Outcome o = i.command({"EVAL", kRefreshScript, "1", lock.key, lock.token, px}, kMaxControlReplyBytes, "EVAL (refresh lock)");
  const RemoteStatus s = i.write_status(o, "EVAL (refresh lock)");
  if (s != RemoteStatus::ok) return s;
  return o.reply->type == REDIS_REPLY_INTEGER && o.reply->integer == 1 ? RemoteStatus::ok : RemoteStatus::absent;
}

RemoteStatus RemoteTier::unlock(const RemoteLock& lock) {
  Impl& i = *impl_;
  if (!i.config.write) return RemoteStatus::read_only;
  const Outcome o = i.command({"EVAL", kUnlockScript, "1", lock.key, lock.token}, kMaxControlReplyBytes, "EVAL (unlock)");
  const RemoteStatus s = i.write_status(o, "EVAL (unlock)");
  if (s != RemoteStatus::ok) return s;
  return o.reply->type == REDIS_REPLY_INTEGER && o.reply->integer == 1 ? RemoteStatus::ok : RemoteStatus::absent;
}

std::optional<std::vector<std::string>> RemoteTier::scan_keys(const std::string& pattern, std::size_t limit) {
  if (pattern.rfind(kRemotePrefix, 0) != 0 || pattern.size() > kMaxRemoteKeyBytes)
    fail(fmt::format("remote cache: scan pattern '{}' must start with {} (at most {} bytes)", printable(pattern), kRemotePrefix,
                     kMaxRemoteKeyBytes));
  if (limit > kMaxScanKeys) fail(fmt::format("remote cache: scan limit {} is over {}", limit, kMaxScanKeys));
  Impl& i = *impl_;
  std::set<std::string> keys;  // SCAN may return a key twice
  std::string cursor = "0";
  const std::string count = std::to_string(kScanCount);
  for (int round = 0; round < kMaxScanRounds && keys.size() < limit; ++round) {
    const Outcome o = i.command({"SCAN", cursor, "MATCH", pattern, "COUNT", count}, kMaxScanReplyBytes, "SCAN");
    if (o.failure != Failure::none) return std::nullopt;
    const redisReply* r = o.reply.get();
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
      i.log_once(r->type == REDIS_REPLY_ERROR ? fmt::format("SCAN refused: {}", printable(reply_text(r)))
                                              : std::string("SCAN: a malformed reply"));
      return std::nullopt;
    }
    cursor = std::string(reply_text(r->element[0]));  // an unsigned 64-bit decimal
    if (cursor.empty() || cursor.size() > 20 || !std::all_of(cursor.begin(), cursor.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      i.log_once("SCAN: a malformed cursor");
      return std::nullopt;
    }
    const redisReply* batch = r->element[1];
    for (std::size_t k = 0; k < batch->elements && keys.size() < limit; ++k) {
      const redisReply* e = batch->element[k];
      if (e->type != REDIS_REPLY_STRING) continue;
      const std::string_view key = reply_text(e);
      if (key.size() <= kMaxRemoteKeyBytes && key.rfind(kRemotePrefix, 0) == 0 &&
          std::all_of(key.begin(), key.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
        keys.emplace(key);
    }
    if (cursor == "0") break;
  }
  return std::vector<std::string>(keys.begin(), keys.end());
}

}  // namespace sigjit::cache
