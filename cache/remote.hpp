// The remote tier of the kernel store: one Redis server (or a primary with replicas) shared by a
// fleet, so that a kernel tuned once by one node serves every rank of every later job.
//
// What: a client on hiredis (no hand-written protocol) that gets and puts signed entry records
// (the index entry, its cubin, an Ed25519 signature and the signer's key id: cache/signing.hpp),
// and takes short locks with a TTL for the fleet's single flight (one node tunes a key, the
// others wait or skip). Read-only unless the configuration enables writes (tuning nodes).
// Why this shape: the tier sits on the lookup path of every rank, so a slow, refusing or vanished
// server must cost a bounded time, once: connect and command timeouts bound every call (the
// command timeout is a deadline for the whole command, not per read, so a server that trickles
// bytes is cut off too), and a circuit breaker makes the tier a miss without touching the
// network for a back-off period (or the rest of the process) after a failure, logged once.
// Nothing read from the server is trusted: a reply is bounded while it is read (before hiredis
// builds it), a record is bounds-checked before parsing, parsed with bounded nesting, bound to
// the key it was read from, and loaded only if its signature verifies against a trusted key.
// Cost: a hit is one GET round trip plus the record's transfer (~50 KB-2 MB) plus one SHA-256 and
// one Ed25519 verification (~0.1 ms); a miss is one round trip; a dead server, one timeout per
// back-off period. One connection per RemoteTier; its calls are serialized (a mutex).
// Not bounded: the host name's DNS lookup (getaddrinfo; use an address where that matters).
//
// Keys: kRemotePrefix + "entry:" + <SHA-256 of the device fingerprint's canonical JSON> + ":" +
// <problem key>. The fingerprint digest covers everything the local index path's fingerprint id
// covers (GPU, compute capability, SMs, driver version, NVRTC version, codegen version, compile
// options with the templates' digest), in full 64 hex digits rather than the local 16; the
// problem key carries the spec (direction, dtype, head dim, layout, mask, bias, sigmoid), the
// sequence-length bucket and the arch. Locks: kRemotePrefix + "lock:" + the same suffix.
//
// Record (the value of an entry key), every length checked against its bound before use:
//   "sigjit-record-v1\n"  magic and format version
//   u32 big-endian length + meta JSON   {"fingerprint": {..}, "entry": {..}} (no rejected list, no origin)
//   u32 + cubin bytes
//   u32 + signer's key id (64 hex)
//   u32 + Ed25519 signature (64 bytes) over entry_signing_message(fingerprint, entry, sha256(cubin))
#pragma once

#include "cache/signing.hpp"
#include "cache/store.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sigjit::cache {

inline constexpr const char* kRemotePrefix = "sigjit:v1:";
inline constexpr const char* kRecordMagic = "sigjit-record-v1\n";
inline constexpr std::chrono::milliseconds kDefaultConnectTimeout{200};
inline constexpr std::chrono::milliseconds kDefaultCommandTimeout{1000};
inline constexpr std::chrono::milliseconds kMaxRemoteTimeout{60000};
inline constexpr std::chrono::milliseconds kDefaultRemoteBackoff{60000};
inline constexpr std::chrono::milliseconds kBackoffForever = std::chrono::milliseconds::max();
inline constexpr std::size_t kMaxRemoteRecordBytes = 64u << 20;  // one record (a cubin is well under 10 MB)
inline constexpr std::size_t kMaxRemoteMetaBytes = 1u << 20;     // its JSON part (a few KB)
inline constexpr std::size_t kMaxRemoteKeyBytes = 512;           // a key of this tier (~270 bytes)
inline constexpr std::size_t kMaxScanKeys = 1u << 16;            // keys one scan_keys call returns
inline constexpr std::chrono::milliseconds kMaxLockTtl{24 * 3600 * 1000};

// The environment that configures the tier (RemoteConfig::from_env).
inline constexpr const char* kRemoteCacheEnv = "SIGJIT_REMOTE_CACHE";                       // redis://[user:password@]host:port[/db]
inline constexpr const char* kRemoteWriteEnv = "SIGJIT_REMOTE_CACHE_WRITE";                 // 1: publish (tuning nodes)
inline constexpr const char* kRemotePasswordFileEnv = "SIGJIT_REMOTE_CACHE_PASSWORD_FILE";  // the password, from a file
inline constexpr const char* kRemoteConnectTimeoutEnv = "SIGJIT_REMOTE_CACHE_CONNECT_TIMEOUT_MS";
inline constexpr const char* kRemoteTimeoutEnv = "SIGJIT_REMOTE_CACHE_TIMEOUT_MS";
inline constexpr const char* kRemoteBackoffEnv = "SIGJIT_REMOTE_CACHE_BACKOFF_S";  // seconds, or inf

struct RemoteConfig {
  std::string host;  // a name or an address (IPv6 without brackets)
  int port = 6379;
  int db = 0;            // SELECT db when not 0
  std::string user;      // an ACL user (Redis 6+); empty: AUTH with the password alone
  std::string password;  // empty: no AUTH
  bool write = false;    // put and locks only when true; a read-only tier never sends a write
  std::chrono::milliseconds connect_timeout = kDefaultConnectTimeout;
  std::chrono::milliseconds command_timeout = kDefaultCommandTimeout;  // a deadline per command
  std::chrono::milliseconds backoff = kDefaultRemoteBackoff;           // kBackoffForever: for the rest of the process
  std::size_t max_record_bytes = kMaxRemoteRecordBytes;

  // redis://[user[:password]@]host[:port][/db]; user and password percent-decoded; host a name,
  // an IPv4 address or a bracketed IPv6 address; port 1..65535 (default 6379); db 0..65535
  // (default 0). A user without a password is allowed here (the password file may supply it);
  // RemoteTier refuses it. Throws sigjit::Error naming what is wrong (never showing the password).
  static RemoteConfig parse_url(std::string_view url, const char* what = kRemoteCacheEnv);
  // nullopt when SIGJIT_REMOTE_CACHE is unset or empty; else the URL and the other variables
  // above (timeouts in ms, 1..60000; backoff in seconds >= 0 or inf). The password may come from
  // the URL or from SIGJIT_REMOTE_CACHE_PASSWORD_FILE (its first line), not both. Throws
  // sigjit::Error naming the variable and the allowed values.
  static std::optional<RemoteConfig> from_env();
  // The server as a URL for messages: redis://user:***@host:port/db (never the password).
  std::string url() const;
};

// A signed entry as the tier stores it.
struct RemoteRecord {
  DeviceFingerprint fingerprint;
  Entry entry;  // decoded: origin kOriginImported (a claim, signed or not), rejected empty
  std::vector<char> cubin;
  EntrySignature signature;
};

// The tier's key of an entry, and of its lock (see above). Throws sigjit::Error for a problem
// key that is not a valid store key, or a fingerprint that is not valid UTF-8.
std::string remote_key(const DeviceFingerprint& fp, const std::string& problem_key);
std::string remote_lock_key(const DeviceFingerprint& fp, const std::string& problem_key);
// A SCAN pattern for every entry of `fp`, or of every device when fp is nullptr.
std::string remote_key_pattern(const DeviceFingerprint* fp);

// The record's bytes; throws sigjit::Error when the record is unsigned, malformed (a key id that
// is not 64 hex digits, a signature that is not 64 bytes, a cubin whose digest is not
// entry.cubin_sha256) or over `max_bytes`.
std::string encode_record(const RemoteRecord& record, std::size_t max_bytes = kMaxRemoteRecordBytes);
// Checks bounds, then parses, then binds the record to `key` (the key it was read from must be
// remote_key of its own fingerprint and problem key), then verifies its signature against
// `trusted`. Throws sigjit::Error saying what is wrong; a record that returns is safe to load.
RemoteRecord decode_record(std::string_view bytes, const std::string& key, const TrustedKeys& trusted,
                           std::size_t max_bytes = kMaxRemoteRecordBytes);

enum class RemoteStatus {
  ok,           // done (a put written, a lock taken or released)
  absent,       // a put with PutMode::if_absent found the key present; a lock held by another
  read_only,    // not sent: the tier is read-only
  unavailable,  // not done: the server failed or timed out now, or the breaker is open
  refused,      // the server answered with an error (logged once): e.g. no permission, out of memory
};
const char* to_string(RemoteStatus s);

enum class PutMode { replace, if_absent };

// What one get found (the lookup counters tell these apart: cache/counters.hpp).
enum class RemoteOutcome {
  hit,
  miss,         // absent (or a key this tier cannot form)
  error,        // the command failed now (timeout, connection, protocol) or the server refused it
  unavailable,  // not sent: the circuit breaker is open after an earlier failure
  rejected,     // a value that failed bounds, parsing, binding or its signature
};

struct RemoteLock {
  std::string key;
  std::string token;  // random; only its holder releases or extends the lock
};

struct RemoteStats {
  std::uint64_t hits = 0;      // verified records returned by get
  std::uint64_t misses = 0;    // get: absent, or not asked because the breaker was open
  std::uint64_t rejected = 0;  // get: a record that failed bounds, parsing, binding or signature
  std::uint64_t failures = 0;  // commands that failed (timeout, connection, protocol)
  std::uint64_t breaker_trips = 0;
  std::uint64_t writes = 0;      // records written
  std::uint64_t bytes_read = 0;  // record bytes received by get
  std::uint64_t bytes_written = 0;
};

class RemoteTier {
 public:
  // Connects lazily (the first call). `trusted`: the keys records must be signed by.
  RemoteTier(RemoteConfig config, TrustedKeys trusted);
  ~RemoteTier();
  RemoteTier(const RemoteTier&) = delete;
  RemoteTier& operator=(const RemoteTier&) = delete;

  const RemoteConfig& config() const;
  const TrustedKeys& trusted() const;
  bool writable() const { return config().write; }
  // False while the circuit breaker is open (calls are misses without a network round trip).
  bool available() const;
  RemoteStats stats() const;

  // A verified record for (fp, problem_key), or nullopt: absent, the server unavailable, or a
  // record rejected (logged once per key and reason, never returned). `outcome`: which of these.
  std::optional<RemoteRecord> get(const DeviceFingerprint& fp, const std::string& problem_key, RemoteOutcome* outcome = nullptr);
  // Publishes a signed record under remote_key(its fingerprint, its problem key); read_only
  // without a round trip when writes are off. Throws sigjit::Error for a malformed record.
  RemoteStatus put(const RemoteRecord& record, PutMode mode = PutMode::replace);

  // SET NX PX: ok with the lock in *out, absent when another holds it. `ttl` 1 ms..24 h; the
  // lock disappears by itself after it (a holder that dies never blocks the fleet).
  RemoteStatus try_lock(const DeviceFingerprint& fp, const std::string& problem_key, std::chrono::milliseconds ttl, RemoteLock* out);
  // Extend or release a lock only while it is still ours (a Lua script compares the token).
  // absent: it expired or another holds it now.
  RemoteStatus refresh_lock(const RemoteLock& lock, std::chrono::milliseconds ttl);
  RemoteStatus unlock(const RemoteLock& lock);

  // For tools (push, pull, tests): the raw value of a key of this tier, read within
  // config().max_record_bytes (nullopt: absent, unavailable or over the bound, logged), and a raw
  // write (read_only when writes are off). Keys must start with kRemotePrefix.
  std::optional<std::string> get_raw(const std::string& key);
  RemoteStatus put_raw(const std::string& key, std::string_view value, PutMode mode = PutMode::replace);
  // Keys matching `pattern` (SCAN, so the server is never blocked), at most `limit`
  // (<= kMaxScanKeys); those not of this tier's form are skipped. nullopt: unavailable.
  std::optional<std::vector<std::string>> scan_keys(const std::string& pattern, std::size_t limit = kMaxScanKeys);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sigjit::cache
