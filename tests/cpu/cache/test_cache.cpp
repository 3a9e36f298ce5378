// The on-disk kernel store (cache/store.hpp): index format (golden file), corruption handling,
// crash safety, multi-process concurrency, bundles, merge policy, verify/gc/prune, default_root.
// CPU only; every test uses a fresh temp directory and takes well under a second or two.
#include "cache/store.hpp"
#include "tests/common/scoped_env.hpp"
#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "runtime/resolve.hpp"
#include "tests/common/cache_test_files.hpp"

#include <sigjit/sigjit.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef SIGJIT_GOLDEN_DIR
#define SIGJIT_GOLDEN_DIR "tests/golden"
#endif

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sigjit::cache::DeviceFingerprint;
using sigjit::cache::Entry;
using sigjit::cache::MergePolicy;
using sigjit::cache::Store;
using ::testing::HasSubstr;

// ---- helpers -----------------------------------------------------------------------------------

using sigjit::test::ScopedEnv;

using sigjit::test::read_text;
using sigjit::test::test_fp;
using sigjit::test::write_text;

std::vector<char> fake_cubin(const std::string& tag, std::size_t size = 2048) {
  std::vector<char> v(size);
  std::string head =
      "\x7f"
      "ELF fake cubin " +
      tag;
  for (std::size_t i = 0; i < size; ++i) v[i] = i < head.size() ? head[i] : static_cast<char>((i * 131 + tag.size() * 7) & 0xff);
  return v;
}

Entry make_entry(Store& s, const std::string& key, double median_ms, const std::string& host, bool tuned = true,
                 const std::string& config = "m128n64w4s2") {
  Entry e;
  e.problem_key = key;
  e.spec = {{"head_dim", 128}, {"dtype", "bf16"}, {"causal", true}};
  e.config = config;
  e.kernel_name = "sigjit_" + key + "_" + config;
  e.tuned = tuned;
  e.median_ms = median_ms;
  e.spread = 0.02;
  e.tflops = 400.5;
  e.tuned_shape = "B=4 L=4096 H=16";
  e.cubin_sha256 = s.put_blob(fake_cubin(key + config + host));
  e.provenance.push_back({host, "2026-11-23T12:00:00Z", "0.1.0"});
  e.rejected.push_back({"m256n128w8s3", "compile: too much shared memory"});
  return e;
}

fs::path index_file(const Store& s, const DeviceFingerprint& fp, const std::string& key) {
  return s.root() / "index" / fp.id() / (key + ".json");
}
fs::path blob_file(const Store& s, const std::string& sha) { return s.root() / "blobs" / sha.substr(0, 2) / (sha + ".cubin"); }

std::string checksum_of(json j) {
  j.erase("checksum");
  const std::string c = j.dump();
  return sigjit::cache::sha256_hex(c.data(), c.size());
}

std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) n += it->is_regular_file() ? 1 : 0;
  return n;
}

void set_mtime_ago(const fs::path& p, int seconds) {
  struct timespec times[2];
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= seconds;
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, 0), 0);
}

class CacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "sigjit_cache_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    root_ = dir_ / "store";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;   // scratch space of this test
  fs::path root_;  // the store's root inside it
};

// Suite names all contain "Cache": `ctest -R Cache` runs them.
class CacheIndex : public CacheTest {};
class CacheBlob : public CacheTest {};
class CacheCrash : public CacheTest {};
class CacheConcurrency : public CacheTest {};
class CacheBundle : public CacheTest {};
class CacheMerge : public CacheTest {};
class CacheMaintenance : public CacheTest {};
class CacheRoot : public CacheTest {};

// ---- JSON round trips ------------------------------------------------------------------------------

TEST_F(CacheIndex, EntryAndFingerprintJsonRoundTrip) {
  Store s(root_);
  const Entry e = make_entry(s, "fwd_bf16_d128", 1.25, "hostA");
  const Entry back = Entry::from_json(e.to_json());
  EXPECT_EQ(back.to_json(), e.to_json());
  EXPECT_EQ(back.provenance.size(), 1u);
  EXPECT_EQ(back.rejected.at(0).reason, "compile: too much shared memory");
  const DeviceFingerprint fp = test_fp();
  EXPECT_EQ(DeviceFingerprint::from_json(fp.to_json()), fp);
  EXPECT_EQ(fp.id().size(), 16u);
  EXPECT_NE(fp.id(), test_fp("NVIDIA A100-SXM4-80GB").id());
}

TEST_F(CacheIndex, FromJsonNamesTheMissingField) {
  Store s(root_);
  json e = make_entry(s, "k", 1.0, "h").to_json();
  e.erase("median_ms");
  try {
    Entry::from_json(e);
    FAIL() << "expected sigjit::Error";
  } catch (const sigjit::Error& ex) {
    EXPECT_THAT(ex.what(), HasSubstr("'median_ms'"));
  }
  json f = test_fp().to_json();
  f.erase("sm_count");
  try {
    DeviceFingerprint::from_json(f);
    FAIL() << "expected sigjit::Error";
  } catch (const sigjit::Error& ex) {
    EXPECT_THAT(ex.what(), HasSubstr("'sm_count'"));
  }
  json p = make_entry(s, "k", 1.0, "h").to_json();
  p["provenance"][0].erase("host");
  EXPECT_THROW(Entry::from_json(p), sigjit::Error);
  json t = test_fp().to_json();
  t["cc_major"] = "nine";
  EXPECT_THROW(DeviceFingerprint::from_json(t), sigjit::Error);
}

TEST_F(CacheIndex, PutLookupRoundTrip) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  EXPECT_FALSE(s.lookup(fp, "fwd_bf16_d128").has_value());
  const Entry e = make_entry(s, "fwd_bf16_d128", 1.25, "hostA");
  s.put_entry(fp, e);
  const auto got = s.lookup(fp, "fwd_bf16_d128");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->to_json(), e.to_json());
  EXPECT_FALSE(s.lookup(test_fp("NVIDIA A100"), "fwd_bf16_d128").has_value());  // other device: other directory
  const auto blob = s.load_blob(got->cubin_sha256);
  ASSERT_TRUE(blob.has_value());
  EXPECT_EQ(*blob, fake_cubin("fwd_bf16_d128m128n64w4s2hostA"));
  EXPECT_TRUE(fs::is_regular_file(index_file(s, fp, "fwd_bf16_d128")));
  EXPECT_EQ(count_files(root_ / "tmp"), 0u);
  // A second Store on the same root (another process) sees it.
  EXPECT_TRUE(Store(root_).lookup(fp, "fwd_bf16_d128").has_value());
}

TEST_F(CacheIndex, ProblemKeysMustBeFileNameSafe) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  for (const std::string& bad : std::vector<std::string>{"", "../etc", "a/b", "a.b", "a b", "key-with-dash", std::string(200, 'x')}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(s.lookup(fp, bad), sigjit::Error);
    Entry e = make_entry(s, "ok_key", 1.0, "h");
    e.problem_key = bad;
    EXPECT_THROW(s.put_entry(fp, e), sigjit::Error);
  }
  Entry e = make_entry(s, "ok_key", 1.0, "h");
  e.cubin_sha256 = "../../x";
  EXPECT_THROW(s.put_entry(fp, e), sigjit::Error);
  EXPECT_THROW(s.load_blob("not-a-digest"), sigjit::Error);
}

// ---- golden on-disk format -----------------------------------------------------------------------

DeviceFingerprint golden_fp() { return test_fp(); }

std::vector<char> golden_cubin() { return fake_cubin("golden"); }

Entry golden_entry() {
  Entry e;
  e.problem_key = "fwd_bf16_d128_dense_causal_logn_nosb_fast_long_sm_90a";
  e.spec = {{"direction", "forward"}, {"dtype", "bf16"},      {"head_dim", 128},     {"layout", "dense"},
            {"causal", true},         {"bias_mode", "log_n"}, {"score_bias", false}, {"sigmoid", "fast"},
            {"gqa_ratio", 1},         {"bucket", "long"},     {"arch", "sm_90a"}};
  e.config = "m128n32w4s2qs";
  e.kernel_name = "sigjit_fwd_bf16_d128_dense_causal_logn_nosb_fast_m128n32w4s2qs_sm_90a";
  e.tuned = true;
  e.median_ms = 1.875;
  e.spread = 0.0125;
  e.tflops = 512.25;
  e.tuned_shape = "B=4 L=4096 H=16";
  const auto cubin = golden_cubin();
  e.cubin_sha256 = sigjit::cache::sha256_hex(cubin.data(), cubin.size());
  e.provenance = {{"node-a01", "2026-11-23T12:00:00Z", "0.1.0"}, {"node-b07", "2026-11-24T08:30:00Z", "0.1.0"}};
  e.rejected = {{"m256n128w8s3", "compile: needs 294912 B of shared memory, sm_90a allows 232448 B"},
                {"m64n32w4s2", "wrong output: rel error 0.3 > 0.02"}};
  return e;
}

TEST_F(CacheIndex, GoldenFileIsWrittenByteForByteAndAccepted) {
  // The current format's golden file; older ones stay readable (CacheTrust.FormatOneIndexFilesAreReadAsUnknownOrigin).
  const fs::path golden = fs::path(SIGJIT_GOLDEN_DIR) / ("index_v" + std::to_string(sigjit::cache::kFormatVersion) + ".json");
  const DeviceFingerprint fp = golden_fp();
  const Entry e = golden_entry();
  // The fingerprint id names directories in every existing cache: changing it orphans them.
  EXPECT_EQ(fp.id(), "6142a92eb0ac3cd7") << "DeviceFingerprint::id() changed: existing caches would be orphaned";

  Store s(root_);
  ASSERT_EQ(s.put_blob(golden_cubin()), e.cubin_sha256);
  s.put_entry(fp, e);
  const std::string written = read_text(index_file(s, fp, e.problem_key));
  if (const char* u = std::getenv("SIGJIT_UPDATE_GOLDEN"); u != nullptr && std::string(u) == "1") write_text(golden, written);
  ASSERT_TRUE(fs::is_regular_file(golden)) << golden;
  const std::string expected = read_text(golden);
  EXPECT_EQ(written, expected) << "the on-disk index format changed. If that is deliberate, bump sigjit::cache::kFormatVersion, add "
                                  "tests/golden/index_v<N>.json (run this test with SIGJIT_UPDATE_GOLDEN=1) and keep reading old versions "
                                  "as misses";

  // The golden file is self-consistent: its checksum is the SHA-256 of the canonical dump without it.
  const json g = json::parse(expected);
  EXPECT_EQ(g.at("magic"), "sigjit-index");
  EXPECT_EQ(g.at("format_version"), sigjit::cache::kFormatVersion);
  EXPECT_EQ(g.at("entry").at("origin"), "local");
  EXPECT_EQ(g.at("checksum"), checksum_of(g));
  EXPECT_EQ(expected.rfind("{\n  \"magic\": \"sigjit-index\",", 0), 0u) << "magic first, for humans and file(1)";

  // A reader accepts the golden file as found on disk.
  Store r(dir_ / "reader");
  fs::create_directories(r.root() / "index" / fp.id());
  fs::copy_file(golden, index_file(r, fp, e.problem_key));
  const auto got = r.lookup(fp, e.problem_key);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->to_json(), e.to_json());
}

// ---- corruption ----------------------------------------------------------------------------------

struct Corruption {
  const char* name;
  std::string (*apply)(const std::string& text);
};

void PrintTo(const Corruption& c, std::ostream* os) { *os << c.name; }  // stable ctest names

std::string rechecksummed(json j) {
  j["checksum"] = checksum_of(j);
  return j.dump(2);
}

const Corruption kCorruptions[] = {
    {"truncated", [](const std::string& t) { return t.substr(0, t.size() / 2); }},
    {"empty", [](const std::string&) { return std::string(); }},
    {"bad_json", [](const std::string&) { return std::string("{\"magic\": \"sigjit-index\", oops"); }},
    {"wrong_magic",
     [](const std::string& t) {
       json j = json::parse(t);
       j["magic"] = "sigjit-indeks";
       return rechecksummed(j);
     }},
    {"older_version",
     [](const std::string& t) {
       json j = json::parse(t);
       j["format_version"] = 0;
       return rechecksummed(j);
     }},
    {"newer_version",
     [](const std::string& t) {
       json j = json::parse(t);
       j["format_version"] = sigjit::cache::kFormatVersion + 1;
       return rechecksummed(j);
     }},
    {"bad_checksum",
     [](const std::string& t) {
       json j = json::parse(t);
       j["entry"]["median_ms"] = 0.001;
       return j.dump(2);
     }},
    {"foreign_fingerprint",
     [](const std::string& t) {
       json j = json::parse(t);
       j["fingerprint"]["driver_version"] = 11080;
       return rechecksummed(j);
     }},
    {"wrong_problem_key",
     [](const std::string& t) {
       json j = json::parse(t);
       j["problem_key"] = "other";
       j["entry"]["problem_key"] = "other";
       return rechecksummed(j);
     }},
    {"missing_field",
     [](const std::string& t) {
       json j = json::parse(t);
       j["entry"].erase("cubin_sha256");
       return rechecksummed(j);
     }},
    {"flipped_byte",
     [](const std::string& t) {
       std::string s = t;
       s[s.find("m128n64")] = 'M';
       return s;
     }},
};

class CacheCorruptIndex : public CacheTest, public ::testing::WithParamInterface<Corruption> {};

TEST_P(CacheCorruptIndex, IsALoggedMissAndRePutHeals) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry e = make_entry(s, "fwd_bf16_d128", 1.25, "hostA");
  s.put_entry(fp, e);
  const fs::path path = index_file(s, fp, e.problem_key);
  write_text(path, GetParam().apply(read_text(path)));

  ::testing::internal::CaptureStderr();
  const auto got = s.lookup(fp, e.problem_key);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(got.has_value());
  EXPECT_THAT(log, HasSubstr("sigjit: cache: " + path.string() + ": "));
  EXPECT_THAT(log, HasSubstr("; treating as a miss, it will be rebuilt"));
  EXPECT_FALSE(s.verify().problems.empty());

  s.put_entry(fp, e);  // what the caller does after recompiling
  const auto healed = s.lookup(fp, e.problem_key);
  ASSERT_TRUE(healed.has_value());
  EXPECT_EQ(healed->to_json(), e.to_json());
  EXPECT_TRUE(s.verify().problems.empty());
}

INSTANTIATE_TEST_SUITE_P(Kinds, CacheCorruptIndex, ::testing::ValuesIn(kCorruptions),
                         [](const ::testing::TestParamInfo<Corruption>& info) { return std::string(info.param.name); });

TEST_F(CacheIndex, AbsenceIsSilentUnlessVerbose) {
  Store s(root_);
  {
    ScopedEnv quiet("SIGJIT_VERBOSE_CACHE", nullptr);
    ::testing::internal::CaptureStderr();
    EXPECT_FALSE(s.lookup(test_fp(), "absent_key").has_value());
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  }
  ScopedEnv verbose("SIGJIT_VERBOSE_CACHE", "1");
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(s.lookup(test_fp(), "absent_key").has_value());
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("absent_key.json"));
}

// ---- blobs -----------------------------------------------------------------------------------------

TEST_F(CacheBlob, FlippedByteIsAMissAndTheBlobIsDeleted) {
  Store s(root_);
  const auto data = fake_cubin("blob");
  const std::string sha = s.put_blob(data);
  EXPECT_EQ(sha, sigjit::cache::sha256_hex(data.data(), data.size()));
  EXPECT_EQ(s.put_blob(data), sha);  // present: no-op
  const fs::path path = blob_file(s, sha);
  ASSERT_TRUE(fs::is_regular_file(path));
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put(static_cast<char>(data[100] ^ 0x01));
  }
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(s.load_blob(sha).has_value());
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr(path.string()));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(s.load_blob(sha).has_value());  // now simply absent
  EXPECT_EQ(s.put_blob(data), sha);            // heals
  const auto back = s.load_blob(sha);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, data);
}

TEST_F(CacheBlob, PutBlobRepairsACorruptCopy) {
  Store s(root_);
  const auto data = fake_cubin("repair");
  const std::string sha = s.put_blob(data);
  write_text(blob_file(s, sha), "garbage");
  EXPECT_EQ(s.put_blob(data), sha);
  EXPECT_EQ(s.load_blob(sha), std::optional<std::vector<char>>(data));
}

// ---- crash safety ----------------------------------------------------------------------------------

TEST_F(CacheCrash, WriterKilledBeforeRenameLeavesTheIndexIntact) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry old_entry = make_entry(s, "fwd_bf16_d128", 2.0, "old");
  s.put_entry(fp, old_entry);
  const Entry faster = make_entry(s, "fwd_bf16_d128", 1.0, "new");
  const std::string before = read_text(index_file(s, fp, old_entry.problem_key));

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The library _exit()s after writing and fsyncing the temp file, before the rename: the
    // same state as a writer killed at that point (it also still holds the key's lock).
    ::setenv("SIGJIT_CACHE_FAULT", "exit_before_rename", 1);
    try {
      Store(root_).put_entry(fp, faster);
    } catch (...) {
    }
    ::_exit(1);  // not reached when the fault fires
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 86) << "the fault injection did not fire";

  EXPECT_EQ(read_text(index_file(s, fp, old_entry.problem_key)), before);
  const auto got = s.lookup(fp, old_entry.problem_key);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->to_json(), old_entry.to_json());
  ASSERT_EQ(count_files(root_ / "tmp"), 1u);
  EXPECT_TRUE(s.verify().problems.empty());

  EXPECT_EQ(s.gc(false, nullptr).temp_files_removed, 0);  // a fresh temp file may belong to a live writer
  for (const auto& f : fs::directory_iterator(root_ / "tmp")) set_mtime_ago(f.path(), 7200);
  const auto rep = s.gc(false, nullptr, 3600);
  EXPECT_EQ(rep.temp_files_removed, 1);
  EXPECT_GT(rep.bytes_freed, 0u);
  EXPECT_EQ(count_files(root_ / "tmp"), 0u);

  // The dead writer's lock went with it: the next put does not wait.
  const auto t0 = std::chrono::steady_clock::now();
  s.put_entry(fp, faster);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(s.lookup(fp, old_entry.problem_key)->median_ms, 1.0);
}

TEST_F(CacheCrash, LockTimeoutThrowsNamingTheLockFile) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry e = make_entry(s, "fwd_bf16_d128", 1.0, "h");
  const fs::path lock = root_ / "locks" / (fp.id() + ".fwd_bf16_d128.lock");
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0666);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);  // another open file description: conflicts even in this process
  ScopedEnv timeout("SIGJIT_CACHE_LOCK_TIMEOUT", "0.3");
  const auto t0 = std::chrono::steady_clock::now();
  try {
    s.put_entry(fp, e);
    ADD_FAILURE() << "expected a lock timeout";
  } catch (const sigjit::Error& ex) {
    EXPECT_THAT(ex.what(), HasSubstr(lock.string()));
    EXPECT_THAT(ex.what(), HasSubstr("timed out"));
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(waited, 0.25);
  EXPECT_LT(waited, 3.0);
  ::close(fd);
  s.put_entry(fp, e);
  EXPECT_TRUE(s.lookup(fp, "fwd_bf16_d128").has_value());
}

// ---- concurrency -----------------------------------------------------------------------------------

TEST_F(CacheConcurrency, EightProcessesLoseNothing) {
  constexpr int kProcs = 8;
  constexpr int kCycles = 50;
  const std::vector<std::string> keys = {"fwd_bf16_d64", "fwd_bf16_d128", "fwd_fp16_d128", "fwd_bf16_d256"};
  const DeviceFingerprint fp = test_fp();
  // A distinct median for every (process, cycle): 1.00 .. 4.99 ms in a scrambled order.
  auto median = [](int p, int i) { return 1.0 + ((p * kCycles + i) * 7919 % (kProcs * kCycles)) / 100.0; };
  auto key_of = [&](int p, int i) { return keys[static_cast<std::size_t>(p + i) % keys.size()]; };
  { const Store init(root_); }  // create the layout once, like a first process would
  // fsync makes no difference to atomicity or locking (rename does both), only to power-loss
  // durability; skipping it keeps 1600 fsyncs (~4 ms each here) out of the test's time.
  ScopedEnv no_fsync("SIGJIT_CACHE_NO_FSYNC", "1");

  std::vector<pid_t> children;
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 0;
      try {
        Store s(root_);
        for (int i = 0; i < kCycles && rc == 0; ++i) {
          const std::string key = key_of(p, i);
          Entry e;
          e.problem_key = key;
          e.spec = {{"p", p}, {"i", i}};
          e.config = "p" + std::to_string(p) + "i" + std::to_string(i);
          e.kernel_name = "k";
          e.tuned = true;
          e.median_ms = median(p, i);
          e.cubin_sha256 = s.put_blob(fake_cubin(e.config, 512));
          e.provenance.push_back({"proc" + std::to_string(p), "cycle" + std::to_string(i), "0.1.0"});
          s.put_entry(fp, e);
          const auto got = s.lookup(fp, key);
          if (!got)
            rc = 2;  // lost or unreadable
          else if (got->median_ms > e.median_ms)
            rc = 3;  // a slower entry won
          else if (!s.load_blob(got->cubin_sha256))
            rc = 4;  // its blob is missing
        }
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "child %d: %s\n", p, ex.what());
        rc = 5;
      }
      ::_exit(rc);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "a child failed (2: miss, 3: slower entry won, 4: blob missing, 5: exception)";
  }

  Store s(root_);
  for (const std::string& key : keys) {
    SCOPED_TRACE(key);
    double best = 1e9;
    std::size_t puts = 0;
    for (int p = 0; p < kProcs; ++p)
      for (int i = 0; i < kCycles; ++i)
        if (key_of(p, i) == key) {
          best = std::min(best, median(p, i));
          ++puts;
        }
    const auto got = s.lookup(fp, key);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->median_ms, best);          // the fastest of all puts won
    EXPECT_EQ(got->provenance.size(), puts);  // and no put's provenance was lost
    EXPECT_TRUE(s.load_blob(got->cubin_sha256).has_value());
  }
  const auto rep = s.verify();
  EXPECT_EQ(rep.entries_ok, static_cast<int>(keys.size()));
  EXPECT_EQ(rep.blobs_ok, kProcs * kCycles);
  EXPECT_THAT(rep.problems, ::testing::IsEmpty());
  EXPECT_EQ(count_files(root_ / "tmp"), 0u);
}

// ---- bundles -----------------------------------------------------------------------------------------

TEST_F(CacheBundle, ExportImportRoundTrip) {
  Store a(root_);
  const DeviceFingerprint fp = test_fp();
  const DeviceFingerprint other = test_fp("NVIDIA A100-SXM4-80GB");
  a.put_entry(fp, make_entry(a, "fwd_bf16_d64", 0.5, "a"));
  a.put_entry(fp, make_entry(a, "fwd_bf16_d128", 1.5, "a"));
  a.put_entry(other, make_entry(a, "fwd_bf16_d128", 2.5, "a"));
  const auto listed = a.list();
  ASSERT_EQ(listed.size(), 3u);
  const fs::path bundle = dir_ / "out" / "kernels.sjb";
  fs::create_directories(bundle.parent_path());
  EXPECT_EQ(a.export_bundle(bundle, listed), 3);
  EXPECT_EQ(count_files(bundle.parent_path()), 1u);  // no temp file left beside it

  Store b(dir_ / "second");
  const auto rep = b.import_bundle(bundle, &fp, /*allow_foreign=*/true);
  EXPECT_EQ(rep.added, 3);
  EXPECT_EQ(rep.replaced + rep.kept + rep.refused_foreign, 0);
  EXPECT_THAT(rep.problems, ::testing::IsEmpty());
  const auto back = b.list();
  ASSERT_EQ(back.size(), listed.size());
  for (std::size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i].fingerprint, listed[i].fingerprint);
    Entry expected = listed[i].entry;
    expected.origin = sigjit::cache::kOriginImported;  // an imported time is a claim until measured here
    EXPECT_EQ(back[i].entry.to_json(), expected.to_json());
    EXPECT_EQ(b.load_blob(back[i].entry.cubin_sha256), a.load_blob(listed[i].entry.cubin_sha256));
  }
  EXPECT_EQ(b.verify().entries_ok, 3);

  // Importing the same bundle again changes nothing.
  const auto again = b.import_bundle(bundle, &fp, true);
  EXPECT_EQ(again.kept, 3);
  EXPECT_EQ(again.added + again.replaced, 0);
}

TEST_F(CacheBundle, ForeignFingerprintsAreRefusedUnlessAllowed) {
  Store a(root_);
  const DeviceFingerprint fp = test_fp();
  const DeviceFingerprint other = test_fp("NVIDIA A100-SXM4-80GB");
  a.put_entry(fp, make_entry(a, "fwd_bf16_d64", 0.5, "a"));
  a.put_entry(other, make_entry(a, "fwd_bf16_d128", 2.5, "a"));
  a.put_entry(other, make_entry(a, "fwd_fp16_d128", 2.5, "a"));
  const fs::path bundle = dir_ / "k.sjb";
  ASSERT_EQ(a.export_bundle(bundle, a.list()), 3);

  Store b(dir_ / "second");
  const auto refused = b.import_bundle(bundle, &fp, false);
  EXPECT_EQ(refused.added, 1);
  EXPECT_EQ(refused.refused_foreign, 2);
  EXPECT_FALSE(b.lookup(other, "fwd_bf16_d128").has_value());
  const auto allowed = b.import_bundle(bundle, &fp, true);
  EXPECT_EQ(allowed.added, 2);
  EXPECT_EQ(allowed.kept, 1);
  EXPECT_EQ(allowed.refused_foreign, 0);
  EXPECT_TRUE(b.lookup(other, "fwd_bf16_d128").has_value());
}

TEST_F(CacheBundle, ImportMergesKeepingTheFaster) {
  // Between imported entries (claims) the faster is kept, provenances merged; an entry measured
  // here is kept whatever the bundle claims (CacheTrust in test_cache_hostile.cpp).
  Store a(root_);
  Store b(dir_ / "second");
  Store c(dir_ / "third");
  const DeviceFingerprint fp = test_fp();
  a.put_entry(fp, make_entry(a, "fast_there", 1.0, "a"));
  a.put_entry(fp, make_entry(a, "fast_here", 3.0, "a"));
  c.put_entry(fp, make_entry(c, "fast_there", 2.0, "c"));
  c.put_entry(fp, make_entry(c, "fast_here", 1.0, "c"));
  const fs::path from_a = dir_ / "a.sjb", from_c = dir_ / "c.sjb";
  ASSERT_EQ(a.export_bundle(from_a, a.list()), 2);
  ASSERT_EQ(c.export_bundle(from_c, c.list()), 2);
  EXPECT_EQ(b.import_bundle(from_c, &fp, false).added, 2);
  const auto rep = b.import_bundle(from_a, &fp, false);
  EXPECT_EQ(rep.replaced, 1);
  EXPECT_EQ(rep.kept, 1);
  const auto there = b.lookup(fp, "fast_there");
  const auto here = b.lookup(fp, "fast_here");
  ASSERT_TRUE(there && here);
  EXPECT_EQ(there->median_ms, 1.0);
  EXPECT_EQ(here->median_ms, 1.0);
  EXPECT_EQ(there->provenance.size(), 2u);
  EXPECT_EQ(here->provenance.size(), 2u);
  EXPECT_TRUE(b.load_blob(there->cubin_sha256).has_value());  // the imported cubin came along
  // Into a store with its own measurements, nothing is replaced.
  const auto into_c = c.import_bundle(from_a, &fp, false);
  EXPECT_EQ(into_c.replaced, 0);
  EXPECT_EQ(into_c.kept, 2);
  EXPECT_EQ(c.lookup(fp, "fast_there")->median_ms, 2.0);
}

TEST_F(CacheBundle, CorruptBundlesAreRejected) {
  Store a(root_);
  const DeviceFingerprint fp = test_fp();
  a.put_entry(fp, make_entry(a, "fwd_bf16_d64", 0.5, "a"));
  const fs::path bundle = dir_ / "k.sjb";
  ASSERT_EQ(a.export_bundle(bundle, a.list()), 1);
  const std::string good = read_text(bundle);
  Store b(dir_ / "second");

  std::string flipped = good;
  flipped[flipped.size() - 200] ^= 0x20;  // in the last entry's JSON
  write_text(bundle, flipped);
  try {
    b.import_bundle(bundle, &fp, false);
    ADD_FAILURE() << "expected sigjit::Error";
  } catch (const sigjit::Error& ex) {
    EXPECT_THAT(ex.what(), HasSubstr(bundle.string()));
  }
  write_text(bundle, good.substr(0, good.size() / 2));
  EXPECT_THROW(b.import_bundle(bundle, &fp, false), sigjit::Error);
  write_text(bundle, "not cbor at all");
  EXPECT_THROW(b.import_bundle(bundle, &fp, false), sigjit::Error);
  EXPECT_THROW(b.import_bundle(dir_ / "missing.sjb", &fp, false), sigjit::Error);

  // Wrong magic / version (newer than this sigjit, or older than format 1) with a valid checksum.
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"magic", "sigjit-bundel"}, {"format_version", sigjit::cache::kBundleFormatVersion + 1}, {"format_version", 0}}) {
    json j = json::from_cbor(good);
    j[field] = value;
    j.erase("checksum");
    const auto body = json::to_cbor(j);
    j["checksum"] = sigjit::cache::sha256_hex(body.data(), body.size());
    const auto bytes = json::to_cbor(j);
    write_text(bundle, std::string(bytes.begin(), bytes.end()));
    EXPECT_THROW(b.import_bundle(bundle, &fp, false), sigjit::Error) << field;
  }

  // A cubin that does not match its entry's digest (checksum recomputed): that entry is skipped.
  json j = json::from_cbor(good);
  j["entries"][0]["cubin"] = json::binary(std::vector<std::uint8_t>{1, 2, 3});
  j.erase("checksum");
  const auto body = json::to_cbor(j);
  j["checksum"] = sigjit::cache::sha256_hex(body.data(), body.size());
  const auto bytes = json::to_cbor(j);
  write_text(bundle, std::string(bytes.begin(), bytes.end()));
  const auto rep = b.import_bundle(bundle, &fp, false);
  EXPECT_EQ(rep.added, 0);
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_THAT(rep.problems[0], HasSubstr("digest"));
  EXPECT_TRUE(b.list().empty());
}

// ---- merge policy ------------------------------------------------------------------------------------

TEST_F(CacheMerge, KeepsTheFasterEntryWithBothProvenances) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const std::string key = "fwd_bf16_d128";
  Entry slow = make_entry(s, key, 2.0, "hostA", true, "m64n64w4s2");
  slow.rejected = {{"m256n128w8s3", "compile: too much shared memory"}};
  Entry fast = make_entry(s, key, 1.5, "hostB", true, "m128n64w4s2");
  fast.rejected = {{"m256n128w8s3", "compile: too much shared memory"}, {"m64n32w4s2", "wrong output"}};
  s.put_entry(fp, slow);
  s.put_entry(fp, fast);
  auto got = s.lookup(fp, key);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->config, "m128n64w4s2");
  EXPECT_EQ(got->cubin_sha256, fast.cubin_sha256);
  ASSERT_EQ(got->provenance.size(), 2u);
  EXPECT_EQ(got->provenance[0].host, "hostB");
  EXPECT_EQ(got->provenance[1].host, "hostA");
  EXPECT_EQ(got->rejected.size(), 2u);  // merged without duplicates

  s.put_entry(fp, slow);  // slower again: kept, provenance already there
  got = s.lookup(fp, key);
  EXPECT_EQ(got->config, "m128n64w4s2");
  EXPECT_EQ(got->provenance.size(), 2u);

  Entry untuned = make_entry(s, key, 0.5, "hostC", /*tuned=*/false, "m128n128w4s2");
  s.put_entry(fp, untuned);  // tuned beats untuned, whatever the times
  got = s.lookup(fp, key);
  EXPECT_EQ(got->config, "m128n64w4s2");
  EXPECT_EQ(got->provenance.size(), 3u);

  s.put_entry(fp, untuned, MergePolicy::replace);
  got = s.lookup(fp, key);
  EXPECT_EQ(got->to_json(), untuned.to_json());
}

TEST_F(CacheMerge, AnEntryWhoseCubinIsGoneLosesToAnyNewEntry) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry tuned = make_entry(s, "k", 1.0, "h1", true, "m64n64w4s2");
  s.put_entry(fp, tuned);
  fs::remove(blob_file(s, tuned.cubin_sha256));  // e.g. deleted by load_blob as corrupt
  const Entry fallback = make_entry(s, "k", 0.0, "h2", false, "m128n128w4s2");
  s.put_entry(fp, fallback);  // the caller's recompiled heuristic default
  const auto got = s.lookup(fp, "k");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->config, "m128n128w4s2");
  EXPECT_TRUE(s.load_blob(got->cubin_sha256).has_value());
  EXPECT_EQ(got->provenance.size(), 2u);
}

TEST_F(CacheMerge, NonFiniteTimesAreRefused) {
  Store s(root_);
  Entry e = make_entry(s, "k", 1.0, "h");
  e.median_ms = std::nan("");
  EXPECT_THROW(s.put_entry(test_fp(), e), sigjit::Error);
}

TEST_F(CacheMerge, TunedReplacesUntuned) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  s.put_entry(fp, make_entry(s, "k", 0.0, "h1", false, "m128n128w4s2"));  // heuristic default, not timed
  s.put_entry(fp, make_entry(s, "k", 3.0, "h2", true, "m64n64w4s2"));
  const auto got = s.lookup(fp, "k");
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->tuned);
  EXPECT_EQ(got->config, "m64n64w4s2");
}

// ---- list, size, verify, gc, prune ----------------------------------------------------------------------

TEST_F(CacheMaintenance, ListIsSortedAndSizeCounts) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const DeviceFingerprint other = test_fp("NVIDIA A100-SXM4-80GB");
  EXPECT_TRUE(s.list().empty());
  for (const char* k : {"zeta", "alpha", "mid"}) {
    s.put_entry(fp, make_entry(s, k, 1.0, "h"));
    s.put_entry(other, make_entry(s, k, 1.0, "h"));
  }
  const auto l = s.list();
  ASSERT_EQ(l.size(), 6u);
  for (std::size_t i = 1; i < l.size(); ++i) {
    const auto a = std::make_pair(l[i - 1].fingerprint.id(), l[i - 1].entry.problem_key);
    const auto b = std::make_pair(l[i].fingerprint.id(), l[i].entry.problem_key);
    EXPECT_LT(a, b);
  }
  EXPECT_GT(s.size_bytes(), 3u * 2048u);
}

TEST_F(CacheMaintenance, VerifyReportsACorruptedBlob) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry a = make_entry(s, "a_key", 1.0, "h");
  const Entry b = make_entry(s, "b_key", 1.0, "h");
  s.put_entry(fp, a);
  s.put_entry(fp, b);
  auto rep = s.verify();
  EXPECT_EQ(rep.entries_ok, 2);
  EXPECT_EQ(rep.blobs_ok, 2);
  EXPECT_THAT(rep.problems, ::testing::IsEmpty());

  const fs::path blob = blob_file(s, b.cubin_sha256);
  std::string bytes = read_text(blob);
  bytes[10] ^= 0x40;
  write_text(blob, bytes);
  rep = s.verify();
  EXPECT_EQ(rep.blobs_ok, 1);
  EXPECT_EQ(rep.entries_ok, 1);
  ASSERT_FALSE(rep.problems.empty());
  EXPECT_THAT(rep.problems[0], HasSubstr(blob.string()));
  EXPECT_TRUE(fs::exists(blob));  // verify reports, never deletes
}

TEST_F(CacheMaintenance, PruneRemovesMatchingEntries) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const DeviceFingerprint other = test_fp("NVIDIA A100-SXM4-80GB");
  for (const char* k : {"fwd_bf16_d64", "fwd_fp16_d64", "fwd_bf16_d128"}) s.put_entry(fp, make_entry(s, k, 1.0, "h"));
  s.put_entry(other, make_entry(s, "fwd_bf16_d64", 1.0, "h"));

  EXPECT_EQ(s.prune({"bf16"}, &fp), 2);
  EXPECT_FALSE(s.lookup(fp, "fwd_bf16_d64").has_value());
  EXPECT_FALSE(s.lookup(fp, "fwd_bf16_d128").has_value());
  EXPECT_TRUE(s.lookup(fp, "fwd_fp16_d64").has_value());
  EXPECT_TRUE(s.lookup(other, "fwd_bf16_d64").has_value());

  EXPECT_EQ(s.prune({"bwd", "d128"}, nullptr), 0);
  EXPECT_EQ(s.prune({"fp16", "no_such"}, nullptr), 1);  // a key containing any of them matches
  EXPECT_TRUE(s.lookup(other, "fwd_bf16_d64").has_value());
  EXPECT_EQ(s.prune({}, &other), 1);  // no substrings: every entry (of that fingerprint)
  EXPECT_TRUE(s.list().empty());

  // The cubins are now unreferenced: gc removes them (grace period 0 here). Both fingerprints'
  // fwd_bf16_d64 entries share one cubin (same fake bytes): 3 blobs.
  const auto rep = s.gc(false, nullptr, 0);
  EXPECT_EQ(rep.blobs_removed, 3);
  EXPECT_EQ(s.verify().blobs_ok, 0);
}

TEST_F(CacheMaintenance, GcRemovesForeignCorruptAndUnreferenced) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const DeviceFingerprint other = test_fp("NVIDIA A100-SXM4-80GB");
  const Entry mine = make_entry(s, "mine", 1.0, "h");
  s.put_entry(fp, mine);
  s.put_entry(other, make_entry(s, "theirs", 1.0, "h"));
  const Entry broken = make_entry(s, "broken", 1.0, "h");
  s.put_entry(fp, broken);
  write_text(index_file(s, fp, "broken"), "{ truncated");
  s.put_blob(fake_cubin("orphan"));

  // Young unreferenced blobs survive the grace period.
  ::testing::internal::CaptureStderr();
  auto rep = s.gc(false, nullptr);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rep.entries_removed, 1);  // the corrupt index
  EXPECT_EQ(rep.blobs_removed, 0);
  EXPECT_THROW(s.gc(true, nullptr), sigjit::Error);  // foreign needs the local fingerprint

  rep = s.gc(true, &fp, 0);
  EXPECT_EQ(rep.entries_removed, 1);  // theirs
  EXPECT_EQ(rep.blobs_removed, 3);    // broken's, theirs', the orphan
  EXPECT_GT(rep.bytes_freed, 0u);
  EXPECT_TRUE(s.lookup(fp, "mine").has_value());
  EXPECT_TRUE(s.load_blob(mine.cubin_sha256).has_value());
  const auto v = s.verify();
  EXPECT_EQ(v.entries_ok, 1);
  EXPECT_EQ(v.blobs_ok, 1);
  EXPECT_THAT(v.problems, ::testing::IsEmpty());
}

// ---- file handling that cannot escape the cache (findings F4, F5, F6, F15, F17) ---------------------

class CacheSafety : public CacheTest {};

std::string marker_of(const fs::path& root) { return read_text(root / Store::kMarkerName); }

// A sigjit temp name in tmp/ (what atomic_write gives a file before its rename).
const char* kTempName = "fwd_bf16_d64.json.4242.0123456789abcdef.tmp";

TEST_F(CacheSafety, ANewRootGetsTheMarkerAnExistingDirectoryDoesNot) {
  Store s(root_);
  EXPECT_THAT(marker_of(root_), ::testing::StartsWith("Signature: 8a477f597d28d172789f06886806bc55\n"));
  EXPECT_THAT(marker_of(root_), HasSubstr("sigjit"));
  const fs::path home = dir_ / "home";
  fs::create_directories(home / "Documents");
  Store in_home(home);
  EXPECT_FALSE(fs::exists(home / Store::kMarkerName)) << "a directory with other files in it is not claimed";
}

TEST_F(CacheSafety, GcNeverFollowsSymlinkedDirectories) {  // F4 (a), (b)
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry kept = make_entry(s, "kept_key", 1.0, "h");
  s.put_entry(fp, kept);
  // index/<id> and blobs/<ab> as links to a user's directory of files sigjit would delete in
  // its own directories (a corrupt <key>.json, an unreferenced <sha>.cubin), all of them old.
  const fs::path v1 = dir_ / "victim1", v2 = dir_ / "victim2", v3 = dir_ / "victim3";
  fs::create_directories(v1);
  fs::create_directories(v2);
  fs::create_directories(v3);
  write_text(v1 / "settings.json", "{\"user\":\"data\"}");
  write_text(v2 / "thesis.tex", "precious");
  write_text(v2 / kTempName, "precious too");
  const std::string sha = std::string(2, 'e') + std::string(62, '0');
  write_text(v3 / (sha + ".cubin"), "user bytes");
  for (const fs::path& f : {v1 / "settings.json", v2 / "thesis.tex", v2 / fs::path(kTempName), v3 / (sha + ".cubin")})
    set_mtime_ago(f, 7200);
  fs::create_directory_symlink(v1, root_ / "index" / "aaaaaaaaaaaaaaaa");
  fs::create_directory_symlink(v3, root_ / "blobs" / "ee");
  fs::remove_all(root_ / "tmp");
  fs::create_directory_symlink(v2, root_ / "tmp");

  ::testing::internal::CaptureStderr();
  const auto rep = s.gc(false, nullptr, 0);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rep.links_removed, 3);
  EXPECT_EQ(rep.entries_removed, 0);
  EXPECT_EQ(rep.temp_files_removed, 0);
  EXPECT_EQ(rep.blobs_removed, 0);
  EXPECT_EQ(read_text(v1 / "settings.json"), "{\"user\":\"data\"}");
  EXPECT_EQ(read_text(v2 / "thesis.tex"), "precious");
  EXPECT_EQ(read_text(v2 / kTempName), "precious too");
  EXPECT_EQ(read_text(v3 / (sha + ".cubin")), "user bytes");
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "tmp")));  // the links themselves are gone
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "index" / "aaaaaaaaaaaaaaaa")));
  // The cache still works: tmp/ is recreated as a directory by the next write.
  s.put_entry(fp, make_entry(s, "new_key", 1.0, "h"));
  EXPECT_TRUE(s.lookup(fp, "new_key").has_value());
  EXPECT_TRUE(s.lookup(fp, "kept_key").has_value());
  EXPECT_EQ(fs::symlink_status(root_ / "tmp").type(), fs::file_type::directory);
}

TEST_F(CacheSafety, ALinkInsideTheCacheIsUnlinkedNotItsTarget) {
  Store s(root_);
  const fs::path victim = dir_ / "victim.json";
  write_text(victim, "{\"user\":\"data\"}");
  set_mtime_ago(victim, 7200);
  const DeviceFingerprint fp = test_fp();
  s.put_entry(fp, make_entry(s, "some_key", 1.0, "h"));
  fs::create_symlink(victim, index_file(s, fp, "linked_key"));
  fs::create_symlink(victim, root_ / "tmp" / kTempName);
  ::testing::internal::CaptureStderr();
  const auto rep = s.gc(false, nullptr, 0);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rep.entries_removed, 1);
  EXPECT_FALSE(fs::exists(fs::symlink_status(index_file(s, fp, "linked_key"))));
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_ / "tmp" / kTempName)));
  EXPECT_EQ(read_text(victim), "{\"user\":\"data\"}");
}

TEST_F(CacheSafety, GcRemovesOnlyNamesSigjitWrites) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  s.put_entry(fp, make_entry(s, "some_key", 1.0, "h"));
  const fs::path id_dir = index_file(s, fp, "some_key").parent_path();
  const std::vector<fs::path> foreign = {
      root_ / "tmp" / "notes.txt", root_ / "tmp" / "stale.tmp",        root_ / "tmp" / "x.json.12.nothex.tmp",     id_dir / "README",
      id_dir / "bad key.json",     root_ / "blobs" / "zz" / "x.cubin", root_ / "index" / "project" / "config.json"};
  for (const fs::path& f : foreign) {
    fs::create_directories(f.parent_path());
    write_text(f, "not sigjit's");
    set_mtime_ago(f, 7200);
  }
  write_text(root_ / "tmp" / kTempName, "a dead writer's temp file");
  set_mtime_ago(root_ / "tmp" / kTempName, 7200);
  ::testing::internal::CaptureStderr();
  const auto rep = s.gc(false, nullptr, 0);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rep.temp_files_removed, 1);
  EXPECT_FALSE(fs::exists(root_ / "tmp" / kTempName));
  for (const fs::path& f : foreign) EXPECT_TRUE(fs::exists(f)) << f;
  EXPECT_TRUE(s.lookup(fp, "some_key").has_value());
}

TEST_F(CacheSafety, GcAndPruneRefuseADirectoryThatIsNotACache) {  // F4 (c)
  const fs::path home = dir_ / "fakehome";
  fs::create_directories(home / "tmp");
  fs::create_directories(home / "index" / "project");
  write_text(home / "tmp" / "download.iso", "data");
  write_text(home / "tmp" / kTempName, "looks like ours");
  write_text(home / "index" / "project" / "config.json", "{\"a\":1}");
  set_mtime_ago(home / "tmp" / "download.iso", 10800);
  set_mtime_ago(home / "tmp" / kTempName, 10800);
  Store s(home);  // as SIGJIT_CACHE_DIR=$HOME would
  for (int verb = 0; verb < 2; ++verb) {
    try {
      ::testing::internal::CaptureStderr();
      if (verb == 0)
        s.gc(false, nullptr, 0);
      else
        s.prune({"x"}, nullptr);
      ::testing::internal::GetCapturedStderr();
      ADD_FAILURE() << "expected a refusal";
    } catch (const sigjit::Error& ex) {
      ::testing::internal::GetCapturedStderr();
      EXPECT_THAT(ex.what(), HasSubstr(home.string()));
      EXPECT_THAT(ex.what(), HasSubstr("not marked as a sigjit kernel cache"));
      EXPECT_THAT(ex.what(), HasSubstr("CACHEDIR.TAG"));
      EXPECT_THAT(ex.what(), HasSubstr("SIGJIT_CACHE_DIR"));
    }
  }
  EXPECT_EQ(read_text(home / "tmp" / "download.iso"), "data");
  EXPECT_TRUE(fs::exists(home / "tmp" / kTempName));
  EXPECT_EQ(read_text(home / "index" / "project" / "config.json"), "{\"a\":1}");
  EXPECT_FALSE(fs::exists(home / Store::kMarkerName));
}

TEST_F(CacheSafety, AnUnmarkedCacheWithSigjitIndexFilesGetsTheMarker) {
  {
    Store s(root_);
    s.put_entry(test_fp(), make_entry(s, "some_key", 1.0, "h"));
  }
  fs::remove(root_ / Store::kMarkerName);  // a cache written before markers
  Store s(root_);
  EXPECT_FALSE(fs::exists(root_ / Store::kMarkerName));
  s.gc(false, nullptr);
  EXPECT_THAT(marker_of(root_), HasSubstr("sigjit"));
  // A marker of another tool (the CACHEDIR.TAG signature alone) is not sigjit's.
  write_text(root_ / Store::kMarkerName, "Signature: 8a477f597d28d172789f06886806bc55\n# another tool\n");
  fs::remove_all(root_ / "index");
  fs::create_directories(root_ / "index");
  EXPECT_THROW(s.gc(false, nullptr), sigjit::Error);
}

TEST_F(CacheSafety, PruneRefusesAnEmptyPattern) {  // F6
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  for (const char* k : {"fwd_bf16_d64", "fwd_bf16_d128"}) s.put_entry(fp, make_entry(s, k, 1.0, "h"));
  try {
    s.prune({"d64", ""}, nullptr);
    ADD_FAILURE() << "expected a refusal";
  } catch (const sigjit::Error& ex) {
    EXPECT_THAT(ex.what(), HasSubstr("empty pattern"));
    EXPECT_THAT(ex.what(), HasSubstr("--all"));
  }
  EXPECT_EQ(s.list().size(), 2u);
}

TEST_F(CacheSafety, ExportRefusesADestinationThatIsNotARegularFile) {  // F5
  Store s(root_);
  s.put_entry(test_fp(), make_entry(s, "some_key", 1.0, "h"));
  const fs::path target = dir_ / "target.txt", link = dir_ / "link.sjb", fifo = dir_ / "fifo.sjb", sub = dir_ / "subdir";
  write_text(target, "original");
  fs::create_symlink(target, link);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  fs::create_directories(sub);
  const std::pair<fs::path, const char*> cases[] = {
      {link, "symbolic link"}, {fifo, "FIFO"}, {sub, "directory"}, {"/dev/null", "character device"}};
  for (const auto& [dest, what] : cases) {
    try {
      s.export_bundle(dest, s.list());
      ADD_FAILURE() << "expected a refusal for " << dest;
    } catch (const sigjit::Error& ex) {
      EXPECT_THAT(ex.what(), HasSubstr(dest.string()));
      EXPECT_THAT(ex.what(), HasSubstr(what));
    }
  }
  EXPECT_EQ(fs::symlink_status(link).type(), fs::file_type::symlink);
  EXPECT_EQ(fs::read_symlink(link), target);
  EXPECT_EQ(read_text(target), "original");
  EXPECT_EQ(fs::status("/dev/null").type(), fs::file_type::character);
  EXPECT_TRUE(fs::is_empty(sub));
  EXPECT_THROW(s.export_bundle("", s.list()), sigjit::Error);
  // A regular file is replaced (temp file beside it, renamed), and nothing else is left there.
  const fs::path regular = dir_ / "out" / "b.sjb";
  fs::create_directories(regular.parent_path());
  write_text(regular, "old bundle");
  EXPECT_EQ(s.export_bundle(regular, s.list()), 1);
  EXPECT_NE(read_text(regular), "old bundle");
  EXPECT_EQ(std::distance(fs::directory_iterator(regular.parent_path()), fs::directory_iterator()), 1);
}

// A link planted where the store opens a file for writing (a lock file, or the directories its
// locks, temp files and renames go to) must not create, truncate or replace anything outside the
// cache: the write fails with a named error and the link's target is untouched.
TEST_F(CacheSafety, ALinkWhereTheStoreWritesIsNeverFollowed) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const auto put_error = [&](const std::string& key) {
    try {
      s.put_entry(fp, make_entry(s, key, 1.0, "h"));
    } catch (const sigjit::Error& ex) {
      return std::string(ex.what());
    }
    return std::string("no error");
  };
  // A dangling link at a lock path: open(O_CREAT) through it would create the file it names.
  const fs::path created = dir_ / "created_outside";
  fs::create_symlink(created, root_ / "locks" / (fp.id() + ".k1.lock"));
  // A link to a user's file at a lock path: it must not be opened for writing.
  const fs::path victim = dir_ / "victim.txt";
  write_text(victim, "precious");
  set_mtime_ago(victim, 7200);
  const auto mtime = fs::last_write_time(victim);
  fs::create_symlink(victim, root_ / "locks" / (fp.id() + ".k2.lock"));
  for (const std::string key : {"k1", "k2"}) {
    const std::string error = put_error(key);
    EXPECT_THAT(error, HasSubstr(key + ".lock")) << key;
    EXPECT_THAT(error, HasSubstr("symbolic link")) << key;
    EXPECT_FALSE(s.lookup(fp, key).has_value()) << key;
  }
  EXPECT_FALSE(fs::exists(fs::symlink_status(created)));
  EXPECT_EQ(read_text(victim), "precious");
  EXPECT_EQ(fs::last_write_time(victim), mtime);
  s.put_entry(fp, make_entry(s, "k5", 1.0, "h"));  // other keys are unaffected
  EXPECT_TRUE(s.lookup(fp, "k5").has_value());

  // locks/, tmp/ and index/<id> as links to directories outside the cache: no lock file, temp
  // file or index file lands there, and a user's file of an index file's name is not replaced.
  const fs::path elsewhere = dir_ / "elsewhere";
  fs::create_directories(elsewhere);
  write_text(elsewhere / "k4.json", "{\"user\":\"data\"}");
  for (const char* dir : {"locks", "tmp", "index_id"}) {
    const fs::path in_cache = std::string(dir) == "index_id" ? root_ / "index" / fp.id() : root_ / dir;
    const fs::path saved = dir_ / "saved";
    fs::rename(in_cache, saved);
    fs::create_directory_symlink(elsewhere, in_cache);
    const std::string error = put_error("k4");
    EXPECT_THAT(error, HasSubstr("symbolic link")) << dir;
    EXPECT_THAT(error, HasSubstr(in_cache.string())) << dir;
    std::vector<std::string> names;
    for (const auto& f : fs::directory_iterator(elsewhere)) names.push_back(f.path().filename().string());
    EXPECT_EQ(names, std::vector<std::string>{"k4.json"}) << dir;
    EXPECT_EQ(read_text(elsewhere / "k4.json"), "{\"user\":\"data\"}") << dir;
    fs::remove(in_cache);
    fs::rename(saved, in_cache);
  }
  s.put_entry(fp, make_entry(s, "k4", 1.0, "h"));
  EXPECT_TRUE(s.lookup(fp, "k4").has_value());
}

TEST_F(CacheSafety, AHugeLockTimeoutWaitsInsteadOfTimingOutAtOnce) {  // F15
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry e = make_entry(s, "fwd_bf16_d128", 1.0, "h");
  const fs::path lock = root_ / "locks" / (fp.id() + ".fwd_bf16_d128.lock");
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0666);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  for (const char* timeout : {"1e10", "1e308", "inf"}) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::setenv("SIGJIT_CACHE_LOCK_TIMEOUT", timeout, 1);
      try {
        Store(root_).put_entry(fp, e);
        ::_exit(0);
      } catch (...) {
        ::_exit(3);  // timed out (at once, before the fix)
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    int status = 0;
    EXPECT_EQ(::waitpid(child, &status, WNOHANG), 0)
        << "SIGJIT_CACHE_LOCK_TIMEOUT=" << timeout << ": the writer gave up instead of waiting";
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
  }
  ::close(fd);
  ScopedEnv bad("SIGJIT_CACHE_LOCK_TIMEOUT", "-1");
  try {
    s.put_entry(fp, e);
    ADD_FAILURE() << "expected an error";
  } catch (const sigjit::Error& ex) {
    EXPECT_THAT(ex.what(), HasSubstr("SIGJIT_CACHE_LOCK_TIMEOUT='-1'"));
  }
}

TEST_F(CacheSafety, AFormatVersionBeyondInt64IsNewerAndKept) {  // F17
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  s.put_entry(fp, make_entry(s, "some_key", 1.0, "h"));
  const fs::path f = index_file(s, fp, "some_key");
  std::string text = read_text(f);
  const std::size_t at = text.find("\"format_version\": ");
  ASSERT_NE(at, std::string::npos);
  const std::size_t end = text.find(',', at);
  text.replace(at, end - at, "\"format_version\": 18446744073709551615");
  write_text(f, text);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(s.gc(false, nullptr).entries_removed, 0);
  EXPECT_FALSE(s.lookup(fp, "some_key").has_value());
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("newer"));
  EXPECT_THAT(log, HasSubstr("18446744073709551615"));
  EXPECT_TRUE(fs::exists(f));
}

// ---- root -----------------------------------------------------------------------------------------------

TEST_F(CacheRoot, DefaultRootHonoursTheEnvironment) {
  ScopedEnv dir("SIGJIT_CACHE_DIR", "/scratch/shared/sigjit");
  ScopedEnv xdg("XDG_CACHE_HOME", "/xdg/cache");
  ScopedEnv home("HOME", "/home/someone");
  EXPECT_EQ(Store::default_root(), fs::path("/scratch/shared/sigjit"));
  {
    ScopedEnv unset("SIGJIT_CACHE_DIR", nullptr);
    EXPECT_EQ(Store::default_root(), fs::path("/xdg/cache/sigjit"));
    ScopedEnv empty_xdg("XDG_CACHE_HOME", "");
    EXPECT_EQ(Store::default_root(), fs::path("/home/someone/.cache/sigjit"));
    ScopedEnv relative_xdg("XDG_CACHE_HOME", "relative/cache");  // the XDG spec says to ignore it
    EXPECT_EQ(Store::default_root(), fs::path("/home/someone/.cache/sigjit"));
    ScopedEnv no_xdg("XDG_CACHE_HOME", nullptr);
    ScopedEnv no_home("HOME", nullptr);
    EXPECT_THROW(Store::default_root(), sigjit::Error);
  }
}

TEST_F(CacheRoot, UnwritableRootThrowsNamingThePath) {
  if (::geteuid() == 0) {
    // root ignores permissions: use a path under a regular file instead.
    write_text(dir_ / "file", "x");
    try {
      Store s(dir_ / "file" / "cache");
      ADD_FAILURE() << "expected sigjit::Error";
    } catch (const sigjit::Error& ex) {
      EXPECT_THAT(ex.what(), HasSubstr((dir_ / "file").string()));
      EXPECT_THAT(ex.what(), HasSubstr("SIGJIT_CACHE_DIR"));
    }
    return;
  }
  fs::create_directories(dir_ / "ro");
  fs::permissions(dir_ / "ro", fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_THROW(Store(dir_ / "ro" / "cache"), sigjit::Error);
  fs::permissions(dir_ / "ro", fs::perms::owner_all);
}

}  // namespace

// ---- which store entries may serve a call (runtime/resolve.cpp) ------------------------------
// A tuned entry serves whatever valid config it holds; an untuned one only while it is this
// library's default, so a default changed by an upgrade (same templates, so the same
// fingerprint) is not shadowed by the old default's entry.
namespace {
sigjit::cache::Entry entry_for(const sigjit::KernelSpec& spec, const sigjit::TileConfig& config, bool tuned) {
  sigjit::cache::Entry e;
  e.problem_key = sigjit::problem_key(spec);
  e.config = config.describe();
  e.kernel_name = sigjit::kernel_name(spec, config);
  e.tuned = tuned;
  return e;
}
}  // namespace

TEST(StoreEntryUsable, TunedAnyValidConfigButUntunedOnlyTheCurrentDefault) {
  for (const char* arch : {"sm_80", "sm_90a"})
    for (sigjit::SeqBucket bucket : {sigjit::SeqBucket::up_to_512, sigjit::SeqBucket::over_8k}) {
      sigjit::KernelSpec spec;
      spec.head_dim = 64;
      spec.arch = sigjit::Arch::parse(arch);
      spec.bucket = bucket;
      const sigjit::TileConfig def = sigjit::default_config(spec);
      std::optional<sigjit::TileConfig> other;
      for (const sigjit::TileConfig& c : sigjit::candidate_configs(spec))
        if (c.describe() != def.describe()) other = c;
      ASSERT_TRUE(other) << arch;
      const std::string where = std::string(arch) + " " + sigjit::to_string(bucket);
      EXPECT_TRUE(sigjit::detail::store_entry_usable(spec, entry_for(spec, def, false))) << where;
      EXPECT_TRUE(sigjit::detail::store_entry_usable(spec, entry_for(spec, def, true))) << where;
      EXPECT_TRUE(sigjit::detail::store_entry_usable(spec, entry_for(spec, *other, true))) << where << " " << other->describe();
      EXPECT_FALSE(sigjit::detail::store_entry_usable(spec, entry_for(spec, *other, false))) << where << " " << other->describe();
      sigjit::cache::Entry renamed = entry_for(spec, def, true);
      renamed.kernel_name += "_x";
      EXPECT_FALSE(sigjit::detail::store_entry_usable(spec, renamed)) << where;
      sigjit::cache::Entry garbled = entry_for(spec, def, true);
      garbled.config = "h999";
      EXPECT_FALSE(sigjit::detail::store_entry_usable(spec, garbled)) << where;
    }
}
