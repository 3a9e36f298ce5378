// The Redis tier (cache/remote.hpp) against a real redis-server started here (tests/common/
// redis_server.hpp: 127.0.0.1, a free port, a temp directory, no persistence; stopped at the end
// of each test), and
// against fake servers (plain TCP listener threads) that never answer, trickle or flood.
// Covers: URL and environment parsing, keys, record framing and its bounds, round trip, a
// read-only client never writing (checked by a Redis ACL user that may not write), tampered,
// unsigned-by-a-trusted-key, re-keyed and cubin-swapped records rejected, key rotation, a server
// killed mid-run and restarted (bounded misses, then recovery after the back-off), a silent
// server (bounded wait, then the breaker), and locks with a TTL. Without redis-server installed
// the server tests skip, saying so (setup.sh installs it). Each test takes well under 2 s.
#include "cache/remote.hpp"
#include "tests/common/scoped_env.hpp"
#include "cache/signing.hpp"
#include "tests/common/cache_test_files.hpp"
#include "tests/common/redis_server.hpp"

#include <sigjit/sigjit.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sigjit::cache::DeviceFingerprint;
using sigjit::cache::Entry;
using sigjit::cache::PrivateKey;
using sigjit::cache::PutMode;
using sigjit::cache::RemoteConfig;
using sigjit::cache::RemoteLock;
using sigjit::cache::RemoteRecord;
using sigjit::cache::RemoteStatus;
using sigjit::cache::RemoteTier;
using sigjit::cache::TrustedKeys;
using sigjit::test::test_fp;
using sigjit::test::write_text;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

constexpr const char* kKeyA = "fwd_bf16_d128_dense_nocausal_logn_nosb_fast_le2k_sm_90a";
constexpr const char* kKeyB = "fwd_bf16_d64_dense_nocausal_logn_nosb_fast_gt8k_sm_90a";

using sigjit::test::ScopedEnv;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// A listening socket on 127.0.0.1 and a port the kernel picks.
int listen_socket(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// A TCP server that accepts and then never answers (silent), answers with a bulk string header
// and then one byte every 50 ms (trickle), or with a header and 8 MB as fast as it can (flood).
class FakeServer {
 public:
  enum class Mode { silent, trickle, flood };
  explicit FakeServer(Mode mode) : mode_(mode) {
    listen_fd_ = listen_socket(&port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeServer() {
    stop_ = true;
    thread_.join();
    for (int fd : clients_) ::close(fd);
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  int port() const { return port_; }

 private:
  void serve() {
    const auto t0 = Clock::now();
    std::size_t flooded = 0;
    while (!stop_ && ms_since(t0) < 20000) {  // bounded whatever the test does
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c >= 0) {
          clients_.push_back(c);
          const std::string header = mode_ == Mode::flood ? "$8388608\r\n" : mode_ == Mode::trickle ? "$100000\r\n" : "";
          if (!header.empty()) ::send(c, header.data(), header.size(), MSG_NOSIGNAL);
        }
      }
      for (int c : clients_) {
        if (mode_ == Mode::trickle) ::send(c, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (mode_ == Mode::flood) {
          static const std::string chunk(64 << 10, 'z');
          while (flooded < (8u << 20)) {
            const ssize_t n = ::send(c, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n <= 0) break;
            flooded += static_cast<std::size_t>(n);
          }
        }
      }
    }
  }

  Mode mode_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<int> clients_;
  std::thread thread_;
};

std::vector<char> cubin_bytes(const std::string& tag, std::size_t size = 8192) {
  std::vector<char> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>((i * 131 + tag.size() * 7 + (i < tag.size() ? tag[i] : 0)) & 0xff);
  return v;
}

RemoteRecord signed_record(const PrivateKey& key, const DeviceFingerprint& fp, const std::string& problem_key, const std::string& tag,
                           double median_ms = 1.25) {
  RemoteRecord r;
  r.fingerprint = fp;
  r.cubin = cubin_bytes(tag);
  Entry& e = r.entry;
  e.problem_key = problem_key;
  e.spec = {{"dtype", "bf16"}, {"head_dim", 128}, {"bucket", "le2k"}, {"arch", "sm_90a"}};
  e.config = "h128x128c2s3o";
  e.kernel_name = "sigjit_" + problem_key + "_h128x128c2s3o";
  e.tuned = true;
  e.median_ms = median_ms;
  e.spread = 0.01;
  e.tflops = 650;
  e.tuned_shape = "B=8 L=2048 H=16";
  e.cubin_sha256 = sigjit::cache::sha256_hex(r.cubin.data(), r.cubin.size());
  e.provenance.push_back({"tuner-1", "2026-12-05T10:00:00Z", "0.1.0"});
  r.signature = sigjit::cache::sign_entry(key, fp, e, r.cubin);
  return r;
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("sigjit_remote_" + std::to_string(::getpid()) + "_" + std::to_string(Clock::now().time_since_epoch().count()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// ---- no server needed ------------------------------------------------------------------------------

TEST(RemoteConfig, ParsesTheUrlForms) {
  RemoteConfig c = RemoteConfig::parse_url("redis://cache.internal:6380/3");
  EXPECT_EQ(c.host, "cache.internal");
  EXPECT_EQ(c.port, 6380);
  EXPECT_EQ(c.db, 3);
  EXPECT_EQ(c.user, "");
  EXPECT_EQ(c.password, "");
  EXPECT_FALSE(c.write);
  EXPECT_EQ(c.connect_timeout, sigjit::cache::kDefaultConnectTimeout);
  EXPECT_EQ(c.command_timeout, sigjit::cache::kDefaultCommandTimeout);
  c = RemoteConfig::parse_url("redis://10.0.0.7");
  EXPECT_EQ(c.port, 6379);
  EXPECT_EQ(c.db, 0);
  c = RemoteConfig::parse_url("redis://tuner:p%40ss%3Aw0rd@[::1]:7000/");
  EXPECT_EQ(c.user, "tuner");
  EXPECT_EQ(c.password, "p@ss:w0rd");
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.port, 7000);
  EXPECT_EQ(c.url(), "redis://tuner:***@[::1]:7000/0");
  c = RemoteConfig::parse_url("redis://:secret@h:1");
  EXPECT_EQ(c.user, "");
  EXPECT_EQ(c.password, "secret");
}

TEST(RemoteConfig, RefusesBadUrlsWithoutShowingThePassword) {
  for (const char* url :
       {"http://h:6379", "rediss://h:6379", "redis://", "redis://h:0", "redis://h:65536", "redis://h:x", "redis://h:", "redis://h/x",
        "redis://h/70000", "redis://::1:6379", "redis://[::1", "redis://h?timeout=1", "redis://u:%zz@h", "redis://h o"}) {
    try {
      RemoteConfig::parse_url(url);
      ADD_FAILURE() << "accepted " << url;
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("SIGJIT_REMOTE_CACHE")) << url;
      EXPECT_THAT(e.what(), HasSubstr("redis://[user:password@]host")) << url;
    }
  }
  try {
    RemoteConfig::parse_url("redis://u:hunter2@h:99999");
    FAIL();
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), Not(HasSubstr("hunter2")));
    EXPECT_THAT(e.what(), HasSubstr("u:***@h"));
  }
}

TEST(RemoteConfig, FromEnvironment) {
  TempDir dir;
  ScopedEnv url(sigjit::cache::kRemoteCacheEnv, std::nullopt);
  EXPECT_FALSE(RemoteConfig::from_env());
  write_text(dir.path() / "pw", "s3cret\n");
  ScopedEnv url2(sigjit::cache::kRemoteCacheEnv, "redis://reader@127.0.0.1:6390/2");
  ScopedEnv pw(sigjit::cache::kRemotePasswordFileEnv, (dir.path() / "pw").string());
  ScopedEnv write(sigjit::cache::kRemoteWriteEnv, "1");
  ScopedEnv ct(sigjit::cache::kRemoteConnectTimeoutEnv, "50");
  ScopedEnv t(sigjit::cache::kRemoteTimeoutEnv, "750");
  ScopedEnv b(sigjit::cache::kRemoteBackoffEnv, "inf");
  const auto c = RemoteConfig::from_env();  // the user from the URL, its password from the file
  ASSERT_TRUE(c);
  EXPECT_EQ(c->user, "reader");
  EXPECT_EQ(c->password, "s3cret");
  EXPECT_EQ(c->url(), "redis://reader:***@127.0.0.1:6390/2");
  EXPECT_TRUE(c->write);
  EXPECT_EQ(c->connect_timeout, 50ms);
  EXPECT_EQ(c->command_timeout, 750ms);
  EXPECT_EQ(c->backoff, sigjit::cache::kBackoffForever);
  EXPECT_EQ(c->db, 2);
  {
    ScopedEnv both(sigjit::cache::kRemoteCacheEnv, "redis://:other@127.0.0.1:6390");
    EXPECT_THROW(RemoteConfig::from_env(), sigjit::Error);  // the password twice
  }
  for (const auto& [name, value] : std::vector<std::pair<const char*, const char*>>{{sigjit::cache::kRemoteWriteEnv, "yes"},
                                                                                    {sigjit::cache::kRemoteTimeoutEnv, "0"},
                                                                                    {sigjit::cache::kRemoteTimeoutEnv, "60001"},
                                                                                    {sigjit::cache::kRemoteConnectTimeoutEnv, "1s"},
                                                                                    {sigjit::cache::kRemoteBackoffEnv, "-1"}}) {
    ScopedEnv bad(name, value);
    try {
      RemoteConfig::from_env();
      ADD_FAILURE() << "accepted " << name << "=" << value;
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(name));
    }
  }
  ScopedEnv missing(sigjit::cache::kRemotePasswordFileEnv, (dir.path() / "absent").string());
  EXPECT_THROW(RemoteConfig::from_env(), sigjit::Error);
  ScopedEnv no_file(sigjit::cache::kRemotePasswordFileEnv, std::nullopt);
  const auto user_only = RemoteConfig::from_env();
  ASSERT_TRUE(user_only);
  EXPECT_THROW(RemoteTier(*user_only, TrustedKeys{}), sigjit::Error);  // a user needs a password
}

TEST(RemoteKeys, CarryEverythingTheLocalKeyCarries) {
  const DeviceFingerprint fp = test_fp();
  const std::string key = sigjit::cache::remote_key(fp, kKeyA);
  EXPECT_EQ(key.rfind("sigjit:v1:entry:", 0), 0u);
  EXPECT_THAT(key, HasSubstr(kKeyA));
  EXPECT_LE(key.size(), sigjit::cache::kMaxRemoteKeyBytes);
  EXPECT_EQ(sigjit::cache::remote_lock_key(fp, kKeyA).rfind("sigjit:v1:lock:", 0), 0u);
  std::vector<DeviceFingerprint> variants(6, fp);
  variants[0].driver_version += 10;
  variants[1].nvrtc_version = "13.0.48";
  variants[2].compile_options += " templates=feedbeef";  // the templates' digest
  variants[3].sm_count = 114;
  variants[4].codegen_version += 1;
  variants[5].gpu_name = "NVIDIA H200";
  for (const DeviceFingerprint& v : variants) EXPECT_NE(sigjit::cache::remote_key(v, kKeyA), key);
  EXPECT_NE(sigjit::cache::remote_key(fp, kKeyB), key);  // spec and bucket: the problem key
  EXPECT_THROW(sigjit::cache::remote_key(fp, "../etc"), sigjit::Error);
  EXPECT_THROW(sigjit::cache::remote_key(fp, ""), sigjit::Error);
  EXPECT_EQ(sigjit::cache::remote_key_pattern(&fp), key.substr(0, key.size() - std::string(kKeyA).size()) + "*");
  EXPECT_EQ(sigjit::cache::remote_key_pattern(nullptr), "sigjit:v1:entry:*");
}

class RemoteRecordFormat : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_ = sigjit::cache::generate_key_pair(dir_.path() / "k.pem", dir_.path() / "k.pub.pem");
    trusted_ = TrustedKeys::from_list(keys_.public_pem.string());
    record_ = signed_record(PrivateKey::load(keys_.private_pem), test_fp(), kKeyA, "c");
    key_ = sigjit::cache::remote_key(test_fp(), kKeyA);
    bytes_ = sigjit::cache::encode_record(record_);
  }
  std::string decode_error(const std::string& bytes, const std::string& key) {
    try {
      sigjit::cache::decode_record(bytes, key, trusted_);
      return "";
    } catch (const sigjit::Error& e) {
      return e.what();
    }
  }
  TempDir dir_;
  sigjit::cache::KeyPairFiles keys_;
  TrustedKeys trusted_;
  RemoteRecord record_;
  std::string key_, bytes_;
};

TEST_F(RemoteRecordFormat, RoundTripAndEveryFramingFault) {
  const RemoteRecord back = sigjit::cache::decode_record(bytes_, key_, trusted_);
  EXPECT_EQ(back.fingerprint, record_.fingerprint);
  EXPECT_EQ(back.entry.to_json().dump(), [&] {
    Entry e = record_.entry;
    e.origin = sigjit::cache::kOriginImported;  // a record is a claim; the reader decides
    return e.to_json().dump();
  }());
  EXPECT_EQ(back.cubin, record_.cubin);
  EXPECT_EQ(back.signature.key_id, keys_.key_id);

  EXPECT_THAT(decode_error("GET / HTTP/1.0\r\n", key_), HasSubstr("magic"));
  EXPECT_THAT(decode_error(bytes_.substr(0, bytes_.size() - 1), key_), HasSubstr("follow"));
  EXPECT_THAT(decode_error(bytes_ + "x", key_), HasSubstr("after its last section"));
  EXPECT_THAT(decode_error(bytes_, sigjit::cache::remote_key(test_fp(), kKeyB)), HasSubstr("not for the key it was read from"));
  std::string huge = bytes_;
  const std::size_t meta_len_at = std::string(sigjit::cache::kRecordMagic).size();
  huge[meta_len_at] = '\x7f';  // a JSON section claiming ~2 GB
  EXPECT_THAT(decode_error(huge, key_), HasSubstr("over the limit"));
  EXPECT_THAT(decode_error(std::string(sigjit::cache::kMaxRemoteRecordBytes + 1, 's'), key_), HasSubstr("over the limit"));
}

TEST_F(RemoteRecordFormat, DeepJsonIsRefusedWhileParsing) {
  // A record with a nested JSON section, framed by hand and carrying a trusted key id: refused by
  // the depth bound before anything else looks at it.
  const std::string meta = std::string(100000, '[') + std::string(100000, ']');
  std::string bytes = sigjit::cache::kRecordMagic;
  const auto section = [&](const std::string& s) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((s.size() >> shift) & 0xff));
    bytes += s;
  };
  section(meta);
  section("cubin");
  section(keys_.key_id);
  section(std::string(64, '\0'));
  EXPECT_THAT(decode_error(bytes, key_), HasSubstr("nested deeper"));
}

TEST_F(RemoteRecordFormat, EncodeRefusesUnsignedOrMismatchedRecords) {
  RemoteRecord r = record_;
  r.signature.key_id.clear();
  EXPECT_THROW(sigjit::cache::encode_record(r), sigjit::Error);
  r = record_;
  r.signature.signature.resize(10);
  EXPECT_THROW(sigjit::cache::encode_record(r), sigjit::Error);
  r = record_;
  r.cubin[0] ^= 1;
  EXPECT_THROW(sigjit::cache::encode_record(r), sigjit::Error);
  EXPECT_THROW(sigjit::cache::encode_record(record_, 1000), sigjit::Error);  // over the bound
}

// ---- against a real redis-server ---------------------------------------------------------------------

class RemoteTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<sigjit::test::TestRedis>(dir_.path());
    if (!redis_->installed())
      GTEST_SKIP() << "redis-server or redis-cli is not installed (apt-get install redis-server; ./setup.sh installs it): "
                      "the remote tier's tests need a real server";
    bool started = false;
    for (int attempt = 0; attempt < 3 && !started; ++attempt) started = redis_->start();  // a free port may be taken meanwhile
    ASSERT_TRUE(started) << "redis-server did not start; its log: " << sigjit::test::read_text(dir_.path() / "redis.log");
    publisher_ = sigjit::cache::generate_key_pair(dir_.path() / "publisher.pem", dir_.path() / "publisher.pub.pem");
    stranger_ = sigjit::cache::generate_key_pair(dir_.path() / "stranger.pem", dir_.path() / "stranger.pub.pem");
    trusted_ = TrustedKeys::from_list(publisher_.public_pem.string());
  }
  void TearDown() override { redis_.reset(); }

  RemoteConfig config(bool write, int port = 0) const {
    RemoteConfig c = RemoteConfig::parse_url("redis://127.0.0.1:" + std::to_string(port != 0 ? port : redis_->port()));
    c.write = write;
    c.connect_timeout = 200ms;
    c.command_timeout = 300ms;
    c.backoff = 300ms;
    return c;
  }
  RemoteRecord record(const std::string& problem_key = kKeyA, const std::string& tag = "c", bool by_stranger = false) const {
    return signed_record(PrivateKey::load(by_stranger ? stranger_.private_pem : publisher_.private_pem), fp_, problem_key, tag);
  }

  TempDir dir_;
  std::unique_ptr<sigjit::test::TestRedis> redis_;
  sigjit::cache::KeyPairFiles publisher_, stranger_;
  TrustedKeys trusted_;
  DeviceFingerprint fp_ = test_fp();
};

TEST_F(RemoteTierTest, RoundTrip) {
  RemoteTier writer(config(true), trusted_);
  RemoteTier reader(config(false), trusted_);
  EXPECT_FALSE(reader.get(fp_, kKeyA));  // absent: a miss
  const RemoteRecord r = record();
  ASSERT_EQ(writer.put(r), RemoteStatus::ok);
  const auto got = reader.get(fp_, kKeyA);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->cubin, r.cubin);
  EXPECT_EQ(got->entry.config, r.entry.config);
  EXPECT_EQ(got->entry.median_ms, r.entry.median_ms);
  EXPECT_EQ(got->entry.provenance.size(), 1u);
  EXPECT_EQ(got->entry.origin, sigjit::cache::kOriginImported);
  EXPECT_EQ(got->signature.key_id, publisher_.key_id);
  EXPECT_FALSE(reader.get(fp_, kKeyB));
  DeviceFingerprint other = fp_;
  other.driver_version += 1;
  EXPECT_FALSE(reader.get(other, kKeyA));  // another driver: another key
  const auto s = reader.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.rejected, 0u);
  EXPECT_GT(s.bytes_read, r.cubin.size());
  EXPECT_EQ(writer.stats().writes, 1u);
  // if_absent never replaces; replace does.
  EXPECT_EQ(writer.put(record(kKeyA, "d"), PutMode::if_absent), RemoteStatus::absent);
  EXPECT_EQ(reader.get(fp_, kKeyA)->cubin, r.cubin);
  EXPECT_EQ(writer.put(record(kKeyA, "d")), RemoteStatus::ok);
  EXPECT_EQ(reader.get(fp_, kKeyA)->cubin, cubin_bytes("d"));
  // Listing: the device's entries.
  ASSERT_EQ(writer.put(record(kKeyB)), RemoteStatus::ok);
  const auto keys = reader.scan_keys(sigjit::cache::remote_key_pattern(&fp_));
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->size(), 2u);
  EXPECT_TRUE(reader.available());
}

TEST_F(RemoteTierTest, ReadOnlyClientNeverWrites) {
  RemoteTier writer(config(true), trusted_);
  ASSERT_EQ(writer.put(record()), RemoteStatus::ok);
  // A Redis user that may read but not write: any write it sent would be refused and logged.
  ASSERT_THAT(redis_->cli("ACL SETUSER reader on '>rpw' '~*' '&*' '+@all' '-@write' '-@scripting'"), HasSubstr("OK"));
  const std::string before = redis_->cli("INFO commandstats");
  RemoteConfig c = RemoteConfig::parse_url("redis://reader:rpw@127.0.0.1:" + std::to_string(redis_->port()));
  RemoteTier reader(c, trusted_);
  ASSERT_FALSE(reader.writable());
  EXPECT_TRUE(reader.get(fp_, kKeyA));
  EXPECT_EQ(reader.put(record(kKeyB)), RemoteStatus::read_only);
  EXPECT_EQ(reader.put_raw(sigjit::cache::remote_key(fp_, kKeyB), "x"), RemoteStatus::read_only);
  RemoteLock lock;
  EXPECT_EQ(reader.try_lock(fp_, kKeyA, 1000ms, &lock), RemoteStatus::read_only);
  EXPECT_EQ(reader.unlock(RemoteLock{sigjit::cache::remote_lock_key(fp_, kKeyA), "t"}), RemoteStatus::read_only);
  EXPECT_EQ(reader.refresh_lock(RemoteLock{sigjit::cache::remote_lock_key(fp_, kKeyA), "t"}, 1000ms), RemoteStatus::read_only);
  EXPECT_TRUE(reader.get(fp_, kKeyA));
  EXPECT_THAT(redis_->cli("ACL LOG"), Not(HasSubstr("reason")));
  EXPECT_THAT(redis_->cli("DBSIZE"), HasSubstr("1"));
  const auto write_stats = [](const std::string& info) {
    std::string out;
    for (const char* cmd : {"cmdstat_set:", "cmdstat_eval:", "cmdstat_del:", "cmdstat_pexpire:"})
      if (const auto at = info.find(cmd); at != std::string::npos) out += info.substr(at, info.find('\n', at) - at);
    return out;
  };
  EXPECT_EQ(write_stats(redis_->cli("INFO commandstats")), write_stats(before));
  // The check has teeth: the same user with writes switched on is refused by the server.
  c.write = true;
  RemoteTier forced(c, trusted_);
  EXPECT_EQ(forced.put(record(kKeyB)), RemoteStatus::refused);
  EXPECT_THAT(redis_->cli("ACL LOG"), HasSubstr("reason"));
}

TEST_F(RemoteTierTest, AuthAndDatabaseSelection) {
  ASSERT_THAT(redis_->cli("ACL SETUSER tuner on '>tpw' '~*' '&*' '+@all'"), HasSubstr("OK"));
  RemoteConfig c = RemoteConfig::parse_url("redis://tuner:tpw@127.0.0.1:" + std::to_string(redis_->port()) + "/5");
  c.write = true;
  RemoteTier tuner(c, trusted_);
  ASSERT_EQ(tuner.put(record()), RemoteStatus::ok);
  EXPECT_THAT(redis_->cli("-n 5 DBSIZE"), HasSubstr("1"));
  EXPECT_THAT(redis_->cli("-n 0 DBSIZE"), HasSubstr("0"));
  // A wrong password: a miss, logged, and the breaker opens.
  RemoteConfig wrong = RemoteConfig::parse_url("redis://tuner:nope@127.0.0.1:" + std::to_string(redis_->port()) + "/5");
  RemoteTier bad(wrong, trusted_);
  EXPECT_FALSE(bad.get(fp_, kKeyA));
  EXPECT_FALSE(bad.available());
}

TEST_F(RemoteTierTest, TamperedRecordsAreRejected) {
  RemoteTier writer(config(true), trusted_);
  RemoteTier reader(config(false), trusted_);
  const std::string key = sigjit::cache::remote_key(fp_, kKeyA);
  ASSERT_EQ(writer.put(record()), RemoteStatus::ok);
  const std::optional<std::string> good = writer.get_raw(key);
  ASSERT_TRUE(good);
  int rejected = 0;
  const auto expect_rejected = [&](const std::string& bytes, const char* what) {
    ASSERT_EQ(writer.put_raw(key, bytes), RemoteStatus::ok);
    EXPECT_FALSE(reader.get(fp_, kKeyA)) << what;
    EXPECT_EQ(reader.stats().rejected, static_cast<std::uint64_t>(++rejected)) << what;
  };
  std::string cubin_flip = *good;
  cubin_flip[good->size() - 64 - 4 - 64 - 4 - 100] ^= 0x40;  // a byte inside the cubin
  expect_rejected(cubin_flip, "a cubin byte changed");
  std::string faster = *good;
  const auto at = faster.find("\"median_ms\":1.25");
  ASSERT_NE(at, std::string::npos);
  faster.replace(at, 16, "\"median_ms\":0.25");  // a better time claimed
  expect_rejected(faster, "the timing changed");
  std::string sig_flip = *good;
  sig_flip[good->size() - 1] ^= 1;
  expect_rejected(sig_flip, "the signature changed");
  expect_rejected(good->substr(0, good->size() / 2), "truncated");
  expect_rejected("just some bytes", "not a record");
  // A valid record of another problem copied under this key.
  ASSERT_EQ(writer.put(record(kKeyB)), RemoteStatus::ok);
  expect_rejected(*writer.get_raw(sigjit::cache::remote_key(fp_, kKeyB)), "another key's record");
  // The good bytes again: loaded.
  ASSERT_EQ(writer.put_raw(key, *good), RemoteStatus::ok);
  EXPECT_TRUE(reader.get(fp_, kKeyA));
  // A value over the reader's bound is not even read in full.
  RemoteConfig small = config(false);
  small.max_record_bytes = 4096;
  RemoteTier bounded(small, trusted_);
  EXPECT_FALSE(bounded.get(fp_, kKeyA));
  EXPECT_EQ(bounded.stats().rejected, 1u);
  EXPECT_TRUE(bounded.available());  // an oversized value says nothing about the server's health
}

TEST_F(RemoteTierTest, UntrustedSignerAndAnotherCubinAreRejected) {
  RemoteTier writer(config(true), trusted_);
  RemoteTier reader(config(false), trusted_);
  // A well-formed record signed by a key the reader does not trust.
  ASSERT_EQ(writer.put(record(kKeyA, "c", /*by_stranger=*/true)), RemoteStatus::ok);
  EXPECT_FALSE(reader.get(fp_, kKeyA));
  EXPECT_EQ(reader.stats().rejected, 1u);
  RemoteTier trusting_stranger(config(false), TrustedKeys::from_list(stranger_.public_pem.string()));
  EXPECT_TRUE(trusting_stranger.get(fp_, kKeyA));  // the same bytes, trusted: loaded
  // A trusted signature over another cubin: the cubin and its digest swapped, the signature kept.
  RemoteRecord swapped = record(kKeyA, "good");
  swapped.cubin = cubin_bytes("evil");
  swapped.entry.cubin_sha256 = sigjit::cache::sha256_hex(swapped.cubin.data(), swapped.cubin.size());
  ASSERT_EQ(writer.put(swapped), RemoteStatus::ok);  // encode checks framing, not the signature
  EXPECT_FALSE(reader.get(fp_, kKeyA));
  EXPECT_EQ(reader.stats().rejected, 2u);
  EXPECT_EQ(reader.stats().hits, 0u);
}

TEST_F(RemoteTierTest, KeyRotation) {
  const auto next = sigjit::cache::generate_key_pair(dir_.path() / "next.pem", dir_.path() / "next.pub.pem");
  RemoteTier writer(config(true), trusted_);
  ASSERT_EQ(writer.put(record(kKeyA)), RemoteStatus::ok);  // signed by the old key
  ASSERT_EQ(writer.put(signed_record(PrivateKey::load(next.private_pem), fp_, kKeyB, "n")), RemoteStatus::ok);
  RemoteTier both(config(false), TrustedKeys::from_list(publisher_.public_pem.string() + ":" + next.public_pem.string()));
  EXPECT_TRUE(both.get(fp_, kKeyA));
  EXPECT_TRUE(both.get(fp_, kKeyB));
  RemoteTier rotated(config(false), TrustedKeys::from_list(next.public_pem.string()));
  EXPECT_FALSE(rotated.get(fp_, kKeyA));  // the old key removed: its entries stop loading
  EXPECT_TRUE(rotated.get(fp_, kKeyB));
}

TEST_F(RemoteTierTest, ServerKilledThenRestarted) {
  RemoteTier writer(config(true), trusted_);
  RemoteTier reader(config(false), trusted_);
  ASSERT_EQ(writer.put(record()), RemoteStatus::ok);
  ASSERT_TRUE(reader.get(fp_, kKeyA));
  const int port = redis_->port();
  redis_->stop();  // SIGKILL: the reader's open connection is cut mid-run

  auto t0 = Clock::now();
  EXPECT_FALSE(reader.get(fp_, kKeyA));
  EXPECT_LT(ms_since(t0), 200 + 300 + 400) << "a dead server costs at most the connect and command timeouts";
  EXPECT_FALSE(reader.available());
  const auto failures = reader.stats().failures;
  t0 = Clock::now();
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(reader.get(fp_, kKeyA));
  EXPECT_LT(ms_since(t0), 250) << "while the breaker is open, a lookup touches no network";
  EXPECT_EQ(reader.stats().failures, failures);
  EXPECT_EQ(reader.stats().breaker_trips, 1u);

  ASSERT_TRUE(redis_->start(port));  // restarted empty (no persistence)
  // The writer's connection is stale too: its first put may fail (breaker), then it recovers.
  const auto deadline = Clock::now() + 3s;
  RemoteStatus put = RemoteStatus::unavailable;
  while (Clock::now() < deadline && (put = writer.put(record())) != RemoteStatus::ok) std::this_thread::sleep_for(50ms);
  ASSERT_EQ(put, RemoteStatus::ok);
  std::this_thread::sleep_for(350ms);  // the reader's back-off (300 ms) passes
  EXPECT_TRUE(reader.get(fp_, kKeyA));
  EXPECT_TRUE(reader.available());
}

TEST_F(RemoteTierTest, ReadersStayBoundedWhileTheServerDiesAndReturns) {
  RemoteTier writer(config(true), trusted_);
  ASSERT_EQ(writer.put(record()), RemoteStatus::ok);
  RemoteConfig c = config(false);
  c.backoff = 100ms;
  RemoteTier reader(c, trusted_);
  std::atomic<bool> done{false};
  std::atomic<int> hits_before{0}, hits_after{0}, misses{0};
  std::atomic<bool> restarted{false};
  double worst_ms = 0;
  std::thread lookups([&] {
    while (!done) {
      const auto t0 = Clock::now();
      const bool hit = reader.get(fp_, kKeyA).has_value();
      worst_ms = std::max(worst_ms, ms_since(t0));
      if (hit)
        ++(restarted ? hits_after : hits_before);
      else
        ++misses;
      std::this_thread::sleep_for(5ms);
    }
  });
  std::this_thread::sleep_for(200ms);
  const int port = redis_->port();
  redis_->stop();
  std::this_thread::sleep_for(400ms);
  ASSERT_TRUE(redis_->start(port));
  const auto deadline = Clock::now() + 3s;
  while (Clock::now() < deadline && writer.put(record()) != RemoteStatus::ok) std::this_thread::sleep_for(50ms);
  restarted = true;
  std::this_thread::sleep_for(600ms);
  done = true;
  lookups.join();
  EXPECT_GT(hits_before.load(), 0);
  EXPECT_GT(misses.load(), 0);
  EXPECT_GT(hits_after.load(), 0) << "the reader recovers after its back-off";
  EXPECT_LT(worst_ms, 200 + 300 + 400) << "no lookup waits longer than the timeouts";
}

TEST_F(RemoteTierTest, LockWithTtl) {
  RemoteTier a(config(true), trusted_);
  RemoteTier b(config(true), trusted_);
  RemoteLock la, lb;
  ASSERT_EQ(a.try_lock(fp_, kKeyA, 400ms, &la), RemoteStatus::ok);
  EXPECT_EQ(la.key, sigjit::cache::remote_lock_key(fp_, kKeyA));
  EXPECT_EQ(b.try_lock(fp_, kKeyA, 400ms, &lb), RemoteStatus::absent);  // held by a
  EXPECT_EQ(b.try_lock(fp_, kKeyB, 400ms, &lb), RemoteStatus::ok);      // another key: free
  EXPECT_EQ(b.unlock(lb), RemoteStatus::ok);
  // Only the holder releases: b's token does not unlock a's lock.
  EXPECT_EQ(b.unlock(RemoteLock{la.key, "not-the-token"}), RemoteStatus::absent);
  EXPECT_EQ(b.try_lock(fp_, kKeyA, 400ms, &lb), RemoteStatus::absent);
  EXPECT_EQ(a.refresh_lock(la, 400ms), RemoteStatus::ok);
  // The holder vanishes: the lock expires by itself.
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(b.try_lock(fp_, kKeyA, 5000ms, &lb), RemoteStatus::ok);
  EXPECT_EQ(a.unlock(la), RemoteStatus::absent);  // a's lock expired: it must not release b's
  EXPECT_EQ(a.refresh_lock(la, 400ms), RemoteStatus::absent);
  EXPECT_EQ(a.try_lock(fp_, kKeyA, 400ms, &la), RemoteStatus::absent);
  EXPECT_EQ(b.unlock(lb), RemoteStatus::ok);
  EXPECT_EQ(a.try_lock(fp_, kKeyA, 400ms, &la), RemoteStatus::ok);
  EXPECT_THROW(a.try_lock(fp_, kKeyA, 0ms, &la), sigjit::Error);
}

// ---- fake servers: nothing from them may hold a caller past its deadline ------------------------

TEST(RemoteTierFake, SilentServerCostsOneBoundedTimeout) {
  FakeServer silent(FakeServer::Mode::silent);
  RemoteConfig c = RemoteConfig::parse_url("redis://127.0.0.1:" + std::to_string(silent.port()));
  c.command_timeout = 300ms;
  c.backoff = sigjit::cache::kBackoffForever;
  RemoteTier tier(c, TrustedKeys{});
  auto t0 = Clock::now();
  EXPECT_FALSE(tier.get(test_fp(), kKeyA));
  const double first = ms_since(t0);
  EXPECT_GE(first, 250);
  EXPECT_LT(first, 300 + 400);
  EXPECT_FALSE(tier.available());
  t0 = Clock::now();
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(tier.get(test_fp(), kKeyA));
  EXPECT_LT(ms_since(t0), 250) << "the rest of the process pays nothing";
  // With a password, the AUTH during connection set-up is bounded the same way.
  RemoteConfig with_auth = RemoteConfig::parse_url("redis://:pw@127.0.0.1:" + std::to_string(silent.port()));
  with_auth.command_timeout = 300ms;
  RemoteTier auth_tier(with_auth, TrustedKeys{});
  t0 = Clock::now();
  EXPECT_FALSE(auth_tier.get(test_fp(), kKeyA));
  EXPECT_LT(ms_since(t0), 300 + 400);
}

TEST(RemoteTierFake, TricklingServerIsCutOffAtTheDeadline) {
  FakeServer trickle(FakeServer::Mode::trickle);  // one byte every 50 ms: each read succeeds
  RemoteConfig c = RemoteConfig::parse_url("redis://127.0.0.1:" + std::to_string(trickle.port()));
  c.command_timeout = 300ms;
  RemoteTier tier(c, TrustedKeys{});
  const auto t0 = Clock::now();
  EXPECT_FALSE(tier.get(test_fp(), kKeyA));
  EXPECT_LT(ms_since(t0), 300 + 400) << "the command timeout is a deadline, not a per-read timeout";
  EXPECT_FALSE(tier.available());
}

TEST(RemoteTierFake, FloodingServerIsCutOffAtTheBound) {
  FakeServer flood(FakeServer::Mode::flood);  // announces 8 MB and sends them
  RemoteConfig c = RemoteConfig::parse_url("redis://127.0.0.1:" + std::to_string(flood.port()));
  c.command_timeout = 2000ms;
  c.max_record_bytes = 64 << 10;
  RemoteTier tier(c, TrustedKeys{});
  EXPECT_FALSE(tier.get(test_fp(), kKeyA));
  const auto s = tier.stats();
  EXPECT_EQ(s.rejected, 1u);
  EXPECT_EQ(s.hits, 0u);
  EXPECT_EQ(s.bytes_read, 0u) << "nothing of an oversized reply is handed on";
}

TEST(RemoteTierFake, RefusedConnectionIsAMissAtOnce) {
  RemoteConfig c = RemoteConfig::parse_url("redis://127.0.0.1:" + std::to_string(sigjit::test::free_tcp_port()));
  RemoteTier tier(c, TrustedKeys{});
  const auto t0 = Clock::now();
  EXPECT_FALSE(tier.get(test_fp(), kKeyA));
  EXPECT_LT(ms_since(t0), 200 + 100);
  EXPECT_FALSE(tier.available());
  EXPECT_EQ(tier.put(RemoteRecord{}), RemoteStatus::read_only);  // read-only by default: nothing checked or sent
}

}  // namespace
