// The kernel store against hostile or unlucky input (issue 18, findings F1-F3, F7-F12 of
// shared/reliability-findings.md): poisoned bundles and the trust model, nesting 100 000 deep,
// 100 000-digit configs, oversized bundles, 5 000 entries for one key, FIFOs, unusable cache
// directories, verify beside a writer, the heal of a cubin that does not load. Each case that
// could crash or hang runs in a child process under an alarm, so a regression fails the test
// instead of killing or blocking the test binary.
#include "cache/store.hpp"
#include "tune/verify.hpp"
#include "problem/spec.hpp"
#include "kernels/registry.hpp"
#include "runtime/resolve.hpp"
#include "tests/common/cache_test_files.hpp"
#include "tests/common/run_command.hpp"

#include <sigjit/sigjit.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sigjit::cache::DeviceFingerprint;
using sigjit::cache::Entry;
using sigjit::cache::Store;
using ::testing::HasSubstr;
using ::testing::Not;

using sigjit::test::read_text;
using sigjit::test::test_fp;
using sigjit::test::write_text;

std::vector<char> bytes_of(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

Entry make_entry(Store& s, const std::string& key, double ms, const std::string& cubin, bool tuned = true,
                 const std::string& config = "m128n64w4s2") {
  Entry e;
  e.problem_key = key;
  e.spec = {{"head_dim", 64}};
  e.config = config;
  e.kernel_name = "sigjit_" + key;
  e.tuned = tuned;
  e.median_ms = ms;
  e.cubin_sha256 = s.put_blob(bytes_of(cubin));
  e.provenance.push_back({"here", "2026-12-01T00:00:00Z", "0.1.0"});
  return e;
}

fs::path index_file(const Store& s, const DeviceFingerprint& fp, const std::string& key) {
  return s.root() / "index" / fp.id() / (key + ".json");
}

// A bundle as Store::export_bundle writes it (checksum included) from (fingerprint, entry, cubin) items.
std::string bundle_bytes(const json& entries) {
  json b = {{"magic", "sigjit-bundle"}, {"format_version", 1}, {"entries", entries}};
  const auto body = json::to_cbor(b);
  b["checksum"] = sigjit::cache::sha256_hex(body.data(), body.size());
  const auto bytes = json::to_cbor(b);
  return std::string(bytes.begin(), bytes.end());
}

json bundle_item(const DeviceFingerprint& fp, Entry e, const std::string& cubin) {
  e.cubin_sha256 = sigjit::cache::sha256_hex(cubin.data(), cubin.size());
  return {{"fingerprint", fp.to_json()},
          {"entry", e.to_json()},
          {"cubin", json::binary(std::vector<std::uint8_t>(cubin.begin(), cubin.end()))}};
}

// Runs `body` in a forked child under an alarm; returns its exit code, or 128 + the signal that
// ended it (SIGALRM: it hung; SIGSEGV: it crashed).
int in_child(const std::function<int()>& body, unsigned timeout_s = 60) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(timeout_s);
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: exception: %s\n", e.what());
      rc = 98;
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

using CliResult = sigjit::test::CommandResult;

CliResult cli(const fs::path& cache, const std::string& args, const std::string& env = "") {
  return sigjit::test::run_command(env + " SIGJIT_CACHE_DIR='" + cache.string() + "' timeout 60 " + SIGJIT_CLI_PATH + " " + args + " 2>&1");
}

class CacheHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("SIGJIT_CACHE_NO_FSYNC", "1", 1);
    std::string tmpl = (fs::temp_directory_path() / "sigjit_hostile_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    root_ = dir_ / "store";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_, root_;
};

class CacheTrust : public CacheHostileTest {};
class CacheHostileInput : public CacheHostileTest {};
class CacheHostileFiles : public CacheHostileTest {};
class CacheHeal : public CacheHostileTest {};

// ---- F1: trust ------------------------------------------------------------------------------------

TEST_F(CacheTrust, APoisonedBundleNeverDisplacesALocalMeasurement) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const std::string key = "fwd_bf16_d64_dense_full";
  const Entry ours = make_entry(s, key, 0.50, "OUR TUNED CUBIN");
  s.put_entry(fp, ours);

  // The bundle claims a far faster time, and claims to have been measured "local"ly.
  Entry evil = ours;
  evil.median_ms = 1e-6;
  evil.origin = sigjit::cache::kOriginLocal;
  evil.provenance = {{"forged-host", "2030-01-01T00:00:00Z", "9.9"}};
  write_text(dir_ / "evil.sjb", bundle_bytes(json::array({bundle_item(fp, evil, "ATTACKER BYTES")})));
  const auto rep = s.import_bundle(dir_ / "evil.sjb", &fp, false);
  EXPECT_EQ(rep.replaced, 0);
  EXPECT_EQ(rep.kept, 1);
  auto got = s.lookup(fp, key);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->cubin_sha256, ours.cubin_sha256);
  EXPECT_EQ(got->median_ms, 0.50);
  EXPECT_EQ(got->origin, sigjit::cache::kOriginLocal);
  EXPECT_EQ(got->provenance.size(), 1u) << "a claim's forged provenance is not merged into a measured entry";
  EXPECT_TRUE(got->measured_here());

  // A local re-tune still replaces it when faster.
  s.put_entry(fp, make_entry(s, key, 0.45, "OUR RETUNED CUBIN"));
  got = s.lookup(fp, key);
  EXPECT_EQ(got->median_ms, 0.45);
}

TEST_F(CacheTrust, AClaimNeverDisplacesALocalMeasurementWhoseCubinIsMissing) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const std::string key = "fwd_bf16_d64_dense_full";
  const Entry ours = make_entry(s, key, 0.50, "OUR TUNED CUBIN");
  s.put_entry(fp, ours);
  // Our cubin is gone (deleted as corrupt by load_blob, or by hand): the entry still records our
  // measurement and its config, which the runtime recompiles on next use.
  ASSERT_TRUE(fs::remove(root_ / "blobs" / ours.cubin_sha256.substr(0, 2) / (ours.cubin_sha256 + ".cubin")));
  Entry claim = ours;
  claim.median_ms = 1e-6;
  write_text(dir_ / "evil.sjb", bundle_bytes(json::array({bundle_item(fp, claim, "ATTACKER BYTES")})));
  const auto rep = s.import_bundle(dir_ / "evil.sjb", &fp, false);
  EXPECT_EQ(rep.replaced, 0);
  EXPECT_EQ(rep.kept, 1);
  EXPECT_EQ(rep.kept_local, 1);
  EXPECT_EQ(rep.kept_local_cubin_missing, 1);
  auto got = s.lookup(fp, key);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->cubin_sha256, ours.cubin_sha256);
  EXPECT_TRUE(got->measured_here());

  // The CLI says why it kept ours, and what happens to the missing cubin.
  const CliResult r = cli(root_, "import " + (dir_ / "evil.sjb").string() + " --allow-foreign");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("kept 1"));
  EXPECT_THAT(r.out, HasSubstr("measured on this machine"));
  EXPECT_THAT(r.out, HasSubstr("never displaces"));
  EXPECT_THAT(r.out, HasSubstr("cubin is missing"));
  EXPECT_EQ(s.lookup(fp, key)->cubin_sha256, ours.cubin_sha256);

  // The runtime's heal (a fresh compile of our config, compare-and-replace) restores it, still
  // measured here.
  Entry healed = ours;
  healed.cubin_sha256 = s.put_blob(bytes_of("A FRESH COMPILE OF OUR CONFIG"));
  EXPECT_TRUE(s.replace_if_current(fp, healed, ours.cubin_sha256));
  got = s.lookup(fp, key);
  EXPECT_EQ(got->cubin_sha256, healed.cubin_sha256);
  EXPECT_TRUE(got->measured_here());
  EXPECT_EQ(s.import_bundle(dir_ / "evil.sjb", &fp, false).kept_local, 1);
  EXPECT_EQ(s.lookup(fp, key)->cubin_sha256, healed.cubin_sha256);
}

TEST_F(CacheTrust, ImportedEntriesAreClaimsThatVerifyNames) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  // An untuned local default: a tuned claim may replace it (that is what bundles are for).
  s.put_entry(fp, make_entry(s, "k_untuned", 0.0, "DEFAULT", /*tuned=*/false));
  Entry claim = make_entry(s, "k_untuned", 0.7, "x");
  claim.origin = sigjit::cache::kOriginLocal;  // what the bundle says; never believed
  write_text(dir_ / "b.sjb", bundle_bytes(json::array({bundle_item(fp, claim, "THEIR TUNED CUBIN")})));
  const auto rep = s.import_bundle(dir_ / "b.sjb", &fp, false);
  EXPECT_EQ(rep.replaced, 1);
  const auto got = s.lookup(fp, "k_untuned");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->origin, sigjit::cache::kOriginImported);
  EXPECT_FALSE(got->measured_here());
  const auto v = s.verify();
  EXPECT_THAT(v.problems, ::testing::IsEmpty());
  ASSERT_EQ(v.claims.size(), 1u);
  EXPECT_THAT(v.claims[0], HasSubstr("k_untuned"));
  EXPECT_THAT(v.claims[0], HasSubstr("verify --gpu"));

  // Between claims, the faster claim wins (until one is measured here).
  Entry faster = claim;
  faster.median_ms = 0.6;
  write_text(dir_ / "c.sjb", bundle_bytes(json::array({bundle_item(fp, faster, "OTHER CUBIN")})));
  EXPECT_EQ(s.import_bundle(dir_ / "c.sjb", &fp, false).replaced, 1);
  // A local measurement of any time beats every claim.
  s.put_entry(fp, make_entry(s, "k_untuned", 5.0, "MEASURED HERE"));
  EXPECT_TRUE(s.lookup(fp, "k_untuned")->measured_here());
}

TEST_F(CacheTrust, FormatOneIndexFilesAreReadAsUnknownOrigin) {
  const fs::path golden = fs::path(SIGJIT_GOLDEN_DIR) / "index_v1.json";
  const DeviceFingerprint fp = DeviceFingerprint::from_json(json::parse(read_text(golden)).at("fingerprint"));
  const std::string key = json::parse(read_text(golden)).at("problem_key");
  Store s(root_);
  fs::create_directories(root_ / "index" / fp.id());
  fs::copy_file(golden, index_file(s, fp, key));
  const auto got = s.lookup(fp, key);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->origin, sigjit::cache::kOriginUnknown);
  EXPECT_FALSE(got->measured_here());
  // A local measurement replaces it, and the file is rewritten in the current format.
  Entry local = *got;
  local.origin = sigjit::cache::kOriginLocal;
  local.median_ms = 9.0;
  local.cubin_sha256 = s.put_blob(bytes_of("LOCAL"));
  s.put_entry(fp, local);
  EXPECT_EQ(json::parse(read_text(index_file(s, fp, key))).at("format_version"), sigjit::cache::kFormatVersion);
  EXPECT_TRUE(s.lookup(fp, key)->measured_here());
}

TEST(CacheTrustGpuCheck, DecisionRunsTheCachedCubinAndNeverPromotesUnprovenBytes) {
  using sigjit::tuner::decide_gpu_check;
  using sigjit::tuner::GpuCheckAction;
  using F = sigjit::tuner::GpuCheckFacts;
  EXPECT_EQ(decide_gpu_check(F{false, false, true, true}), GpuCheckAction::heal);  // did not load
  EXPECT_EQ(decide_gpu_check(F{true, false, true, true}), GpuCheckAction::heal);   // wrong output
  EXPECT_EQ(decide_gpu_check(F{true, false, true, false}), GpuCheckAction::heal);
  EXPECT_EQ(decide_gpu_check(F{true, true, true, true}), GpuCheckAction::keep);
  EXPECT_EQ(decide_gpu_check(F{true, true, true, false}), GpuCheckAction::promote);  // a claim proven right: re-time
  EXPECT_EQ(decide_gpu_check(F{true, true, false, false}), GpuCheckAction::heal);    // default config: compared with itself
  EXPECT_EQ(decide_gpu_check(F{true, true, false, true}), GpuCheckAction::keep);
}

// ---- F2: nesting 100 000 deep ----------------------------------------------------------------------

TEST_F(CacheHostileInput, DeeplyNestedIndexIsALoggedMissAndGcRemovesIt) {
  {
    Store s(root_);
    s.put_entry(test_fp(), make_entry(s, "deep_key", 1.0, "c"));
  }
  const fs::path path = Store(root_).root() / "index" / test_fp().id() / "deep_key.json";
  std::string text = read_text(path);
  const std::size_t at = text.find("\"spec\": {");
  ASSERT_NE(at, std::string::npos);
  const int depth = 100000;
  text.insert(at + 9, "\"deep\": " + std::string(depth, '[') + std::string(depth, ']') + ",");
  write_text(path, text);
  const int rc = in_child([&] {
    Store s(root_);
    if (s.lookup(test_fp(), "deep_key").has_value()) return 1;  // the runtime's lookup on a miss
    if (!s.list().empty()) return 2;
    const auto v = s.verify();
    if (v.problems.size() != 1 || v.problems[0].find("nested deeper than 64") == std::string::npos) return 3;
    if (s.gc(false, nullptr).entries_removed != 1) return 4;
    return fs::exists(path) ? 5 : 0;
  });
  EXPECT_EQ(rc, 0) << "128+11 is SIGSEGV";
  // On a small thread stack too (a worker thread's lookup): the file is gone now, so rewrite it.
  write_text(path, text);
  EXPECT_EQ(in_child([&] {
              std::atomic<int> result{-1};
              pthread_attr_t attr;
              pthread_attr_init(&attr);
              pthread_attr_setstacksize(&attr, 256 * 1024);
              struct Arg {
                fs::path root;
                std::atomic<int>* result;
              } arg{root_, &result};
              pthread_t t;
              pthread_create(
                  &t, &attr,
                  [](void* p) -> void* {
                    auto* a = static_cast<Arg*>(p);
                    *a->result = Store(a->root).lookup(test_fp(), "deep_key").has_value() ? 1 : 0;
                    return nullptr;
                  },
                  &arg);
              pthread_join(t, nullptr);
              return result.load();
            }),
            0);
  const CliResult r = cli(root_, "list");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("nested deeper than 64"));
  const CliResult g = cli(root_, "gc");
  EXPECT_EQ(g.code, 0) << g.out;
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(CacheHostileInput, DeeplyNestedBundlesAreCleanErrors) {
  auto s = [](const std::string& t) { return std::string(1, static_cast<char>(0x60 + t.size())) + t; };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"nest", std::string(1, '\xa3') + s("magic") + s("sigjit-bundle") + s("format_version") + "\x01" + s("entries") +
                   std::string(100000, '\x81') + "\xf6"},
      {"indefinite", std::string(100000, '\x9f') + std::string(100000, '\xff')},
      {"maps", [] {
         std::string m;
         for (int i = 0; i < 100000; ++i)
           m += "\xa1\x61"
                "a";
         return m + "\xf6";
       }()}};
  for (const auto& [name, bytes] : cases) {
    SCOPED_TRACE(name);
    const fs::path file = dir_ / (name + ".sjb");
    write_text(file, bytes);
    const int rc = in_child([&] {
      Store st(root_);
      try {
        st.import_bundle(file, nullptr, true);
      } catch (const sigjit::Error& e) {
        return std::string(e.what()).find(file.string()) != std::string::npos ? 0 : 2;
      }
      return 1;
    });
    EXPECT_EQ(rc, 0) << "128+11 is SIGSEGV";
    const CliResult r = cli(root_, "import " + file.string() + " --allow-foreign");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("sigjit: error:"));
    EXPECT_THAT(r.out, Not(HasSubstr("internal error")));
  }
}

// ---- F3: configs ----------------------------------------------------------------------------------

TEST_F(CacheHostileInput, HugeDigitRunsInConfigsAreCleanErrors) {
  const std::string digits(100000, '1');
  EXPECT_EQ(in_child([&] {
              for (const std::string& text :
                   {"m" + digits + "n64w4s2", "h" + digits + "x64c1s2", std::string("m99999999999n64w4s2"), "m128n64w4s2" + digits}) {
                try {
                  sigjit::TileConfig::parse(text, "--tile");
                  return 1;
                } catch (const sigjit::Error& e) {
                  if (std::string(e.what()).find("--tile") == std::string::npos) return 2;
                }
              }
              return sigjit::TileConfig::parse("m128n64w4s2qs", "t").describe() == "m128n64w4s2qs" ? 0 : 3;
            }),
            0);
  // In an index entry (checksum recomputed, as an attacker would): a logged miss, and the runtime's
  // store_entry_usable says no without touching a regex.
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  s.put_entry(fp, make_entry(s, "cfg_key", 1.0, "c"));
  const fs::path path = index_file(s, fp, "cfg_key");
  json j = json::parse(read_text(path));
  j["entry"]["config"] = "m" + digits + "n64w4s2";
  j.erase("checksum");
  const std::string c = j.dump();
  j["checksum"] = sigjit::cache::sha256_hex(c.data(), c.size());
  write_text(path, j.dump(2));
  EXPECT_EQ(in_child([&] {
              if (Store(root_).lookup(fp, "cfg_key").has_value()) return 1;
              Entry e;
              e.config = "m" + digits + "n64w4s2";
              sigjit::KernelSpec spec;
              return sigjit::detail::store_entry_usable(spec, e) ? 2 : 0;
            }),
            0);
  ASSERT_EQ(s.verify().problems.size(), 1u);
  EXPECT_THAT(s.verify().problems[0], HasSubstr("a string of 100008 bytes (the limit is 65536)"));
  // In a bundle: over the string limit, the bundle is refused by name; under it, that entry is
  // refused by name and the others are imported.
  Entry bad = make_entry(s, "other_key", 1.0, "c");
  bad.config = "m" + digits + "n64w4s2";
  write_text(dir_ / "cfg.sjb",
             bundle_bytes(json::array({bundle_item(fp, bad, "c"), bundle_item(fp, make_entry(s, "good_key", 1.0, "g"), "g")})));
  try {
    Store(dir_ / "other").import_bundle(dir_ / "cfg.sjb", &fp, false);
    ADD_FAILURE() << "expected sigjit::Error";
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("the limit is 65536"));
  }
  bad.config = "m" + std::string(1000, '1') + "n64w4s2";
  write_text(dir_ / "cfg.sjb",
             bundle_bytes(json::array({bundle_item(fp, bad, "c"), bundle_item(fp, make_entry(s, "good_key", 1.0, "g"), "g")})));
  const auto rep = Store(dir_ / "other").import_bundle(dir_ / "cfg.sjb", &fp, false);
  EXPECT_EQ(rep.added, 1);
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_THAT(rep.problems[0], HasSubstr("is not a tile config"));
  // On the command line: a named error, never a crash or "internal error: stoi".
  for (const std::string& tile : {"m" + std::string(40000, '1') + "n64w4s2", std::string("m99999999999n64w4s2")}) {
    const CliResult r = cli(root_, "compile --arch sm_80 --head-dim 64 --tile " + tile);
    EXPECT_EQ(r.code, 1) << r.out.substr(0, 300);
    EXPECT_THAT(r.out, HasSubstr("--tile"));
    EXPECT_THAT(r.out, Not(HasSubstr("internal error")));
  }
}

// ---- F7: sizes -----------------------------------------------------------------------------------

TEST_F(CacheHostileInput, OversizedBundlesAreRefusedBeforeReading) {
  const fs::path big = dir_ / "big.sjb";
  {
    const int fd = ::open(big.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, off_t{3} << 30), 0);  // 3 GiB, sparse: nothing is written
    ::close(fd);
  }
  Store s(root_);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    s.import_bundle(big, nullptr, true);
    FAIL() << "expected sigjit::Error";
  } catch (const sigjit::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(big.string()));
    EXPECT_THAT(e.what(), HasSubstr("over the limit"));
    EXPECT_THAT(e.what(), HasSubstr("SIGJIT_MAX_BUNDLE_BYTES"));
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0) << "it must not read 3 GiB";
  // A configured limit applies to real bundles too.
  const DeviceFingerprint fp = test_fp();
  write_text(dir_ / "b.sjb", bundle_bytes(json::array({bundle_item(fp, make_entry(s, "k", 1.0, "c"), std::string(5000, 'x'))})));
  const CliResult r = cli(dir_ / "other", "import " + (dir_ / "b.sjb").string() + " --allow-foreign", "SIGJIT_MAX_BUNDLE_BYTES=1000");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("over the limit of 1000 bytes"));
  EXPECT_EQ(cli(dir_ / "other", "import " + (dir_ / "b.sjb").string() + " --allow-foreign").code, 0);
}

// ---- F8: many entries for one key --------------------------------------------------------------

TEST_F(CacheHostileInput, FiveThousandEntriesForOneKeyImportInLinearTime) {
  const DeviceFingerprint fp = test_fp();
  Store s(root_);
  json items = json::array();
  const int n = 5000;
  for (int i = 0; i < n; ++i) {
    Entry e = make_entry(s, "same_key", 1.0 + n - i, "unused");
    e.provenance = {{"host" + std::to_string(i), "t" + std::to_string(100000 + i), "0.1.0"}};
    e.rejected = {{"m64n64w4s2", "reason " + std::to_string(i)}};
    items.push_back(bundle_item(fp, e, "cubin " + std::to_string(i)));
  }
  write_text(dir_ / "same.sjb", bundle_bytes(items));
  const auto t0 = std::chrono::steady_clock::now();
  const auto rep = Store(dir_ / "other").import_bundle(dir_ / "same.sjb", &fp, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 15.0) << "was 121 s before the fix (quadratic merges, one locked rewrite per entry)";
  EXPECT_EQ(rep.added, 1);
  EXPECT_THAT(rep.problems, ::testing::IsEmpty());
  const auto got = Store(dir_ / "other").lookup(fp, "same_key");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->median_ms, 2.0);  // the fastest claim
  EXPECT_EQ(got->provenance.size(), sigjit::cache::kMaxProvenance);
  EXPECT_EQ(got->provenance.front().host, "host4999") << "the newest are kept";
  EXPECT_EQ(got->rejected.size(), sigjit::cache::kMaxRejected);
}

// ---- F11: FIFOs ------------------------------------------------------------------------------------

TEST_F(CacheHostileFiles, FifosInTheCacheAndAsTheBundleDoNotHang) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry e = make_entry(s, "fifo_key", 1.0, "c");
  s.put_entry(fp, e);
  const fs::path path = index_file(s, fp, "fifo_key");
  fs::remove(path);
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0);
  const fs::path bundle = dir_ / "x.sjb";
  ASSERT_EQ(::mkfifo(bundle.c_str(), 0644), 0);
  const int rc = in_child(
      [&] {
        Store st(root_);
        if (st.lookup(fp, "fifo_key").has_value()) return 1;
        st.verify();
        st.list();
        try {
          st.import_bundle(bundle, nullptr, true);
          return 3;
        } catch (const sigjit::Error& ex) {
          if (std::string(ex.what()).find("not a regular file") == std::string::npos) return 4;
        }
        st.put_entry(fp, e);  // replaces the FIFO
        return st.lookup(fp, "fifo_key").has_value() ? 0 : 5;
      },
      20);
  EXPECT_EQ(rc, 0) << "128+14 is SIGALRM: it hung";
  const CliResult r = cli(root_, "import " + bundle.string() + " --allow-foreign");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("FIFO"));
}

// ---- F10: unusable cache directories -------------------------------------------------------------

TEST_F(CacheHostileFiles, AnUnusableCacheDirectoryDisablesTheStoreWithOneLine) {
  // Constructions that fail stat() even for root (CI runs as root, where chmod 000 does nothing):
  // a loop of symbolic links (ELOOP) and a name over NAME_MAX (ENAMETOOLONG).
  fs::create_symlink(dir_ / "loop", dir_ / "loop");
  for (const fs::path& bad : {dir_ / "loop" / "cache", dir_ / std::string(300, 'd') / "cache"}) {
    SCOPED_TRACE(bad.string().substr(0, 80));
    try {
      Store st(bad);
      ADD_FAILURE() << "expected sigjit::Error";
    } catch (const sigjit::Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("cannot create directory"));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a sigjit::Error: " << e.what();
    }
    // The runtime: default_store() disables the cache for the process, logs one line, never throws.
    const fs::path log = dir_ / "stderr.txt";
    const int rc = in_child([&] {
      std::freopen(log.c_str(), "w", stderr);
      ::setenv("SIGJIT_CACHE_DIR", bad.c_str(), 1);
      ::unsetenv("SIGJIT_DISABLE_CACHE");
      if (sigjit::detail::default_store() != nullptr) return 1;
      if (sigjit::detail::default_store() != nullptr) return 2;
      return 0;
    });
    EXPECT_EQ(rc, 0);
    const std::string text = read_text(log);
    EXPECT_THAT(text, HasSubstr("sigjit: cache disabled for this process"));
    EXPECT_THAT(text, HasSubstr("SIGJIT_CACHE_DIR"));
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
    const CliResult r = cli(bad, "list");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("sigjit: error:"));
    EXPECT_THAT(r.out, Not(HasSubstr("internal error")));
  }
}

// ---- F12: verify beside writers ---------------------------------------------------------------

TEST_F(CacheHostileFiles, VerifyBesideAWriterReportsNoFalseCorruption) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  for (int k = 0; k < 8; ++k) s.put_entry(fp, make_entry(s, "key" + std::to_string(k), 100.0, "start" + std::to_string(k)));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    Store w(root_);
    for (int i = 0; !stop; ++i) {
      // Each round a faster entry with a new cubin: the blob lands first, then the entry.
      w.put_entry(fp, make_entry(w, "key" + std::to_string(i % 8), 99.0 - i * 1e-3, "cubin" + std::to_string(i)));
    }
  });
  std::vector<std::string> false_reports;
  for (int round = 0; round < 60; ++round) {
    const auto v = s.verify();
    false_reports.insert(false_reports.end(), v.problems.begin(), v.problems.end());
  }
  stop = true;
  writer.join();
  EXPECT_THAT(false_reports, ::testing::IsEmpty());
  EXPECT_THAT(s.verify().problems, ::testing::IsEmpty());
}

// ---- F9: the heal of a cubin that does not load ---------------------------------------------------

TEST_F(CacheHeal, ACubinThatDidNotLoadIsReplacedByTheFreshCompile) {
  const int rc = in_child([&] {
    ::setenv("SIGJIT_CACHE_DIR", root_.c_str(), 1);
    ::unsetenv("SIGJIT_DISABLE_CACHE");
    sigjit::detail::DeviceInfo dev;
    dev.name = "NVIDIA H100 80GB HBM3";
    dev.cc_major = 9;
    dev.sm_count = 132;
    dev.driver_version = 12080;
    sigjit::KernelSpec spec;
    spec.head_dim = 64;
    spec.arch = sigjit::Arch::parse("sm_90");
    const sigjit::TileConfig config = sigjit::default_config(spec);
    Store* store = sigjit::detail::default_store();
    if (store == nullptr || store->root() != root_) return 1;
    Entry e;
    e.problem_key = sigjit::problem_key(spec);
    e.spec = sigjit::spec_to_json(spec);
    e.config = config.describe();
    e.kernel_name = sigjit::kernel_name(spec, config);
    e.tuned = true;
    e.median_ms = 1e-6;
    e.origin = sigjit::cache::kOriginImported;
    e.cubin_sha256 = store->put_blob(bytes_of("GARBAGE THAT DOES NOT LOAD"));
    const DeviceFingerprint fp = sigjit::detail::fingerprint_for(dev, spec);
    store->put_entry(fp, e);
    const auto broken = store->lookup(fp, e.problem_key);
    if (!broken) return 2;
    const std::vector<char> fresh = bytes_of(
        "\x7f"
        "ELF a fresh compile");
    sigjit::detail::heal_stored_kernel(dev, spec, config, fresh, *broken);
    const auto healed = store->lookup(fp, e.problem_key);
    if (!healed || healed->cubin_sha256 != sigjit::cache::sha256_hex(fresh.data(), fresh.size())) return 3;
    if (healed->origin != sigjit::cache::kOriginImported) return 4;  // its time is still a claim
    // A second process healing from a stale read leaves the newer entry alone.
    sigjit::detail::heal_stored_kernel(dev, spec, config, bytes_of("another"), *broken);
    return store->lookup(fp, e.problem_key)->cubin_sha256 == healed->cubin_sha256 ? 0 : 5;
  });
  EXPECT_EQ(rc, 0);
}

TEST_F(CacheHeal, ReplaceIfCurrentComparesTheCubin) {
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  const Entry a = make_entry(s, "k", 1.0, "A");
  s.put_entry(fp, a);
  const Entry b = make_entry(s, "k", 1.0, "B");
  EXPECT_FALSE(s.replace_if_current(fp, b, b.cubin_sha256));
  EXPECT_EQ(s.lookup(fp, "k")->cubin_sha256, a.cubin_sha256);
  EXPECT_TRUE(s.replace_if_current(fp, b, a.cubin_sha256));
  EXPECT_EQ(s.lookup(fp, "k")->cubin_sha256, b.cubin_sha256);
}

// ---- the words a user reads ----------------------------------------------------------------------

TEST_F(CacheTrust, ImportHelpSaysImportingMeansRunningItsCode) {
  const CliResult r = cli(root_, "import --help");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("IMPORTING A BUNDLE MEANS RUNNING ITS CODE"));
  EXPECT_THAT(r.out, HasSubstr("never displaces one measured on this machine, not even one whose cubin is missing"));
  Store s(root_);
  const DeviceFingerprint fp = test_fp();
  write_text(dir_ / "b.sjb", bundle_bytes(json::array({bundle_item(fp, make_entry(s, "k", 1.0, "c"), "c")})));
  ASSERT_EQ(cli(root_, "import " + (dir_ / "b.sjb").string() + " --allow-foreign").code, 0);
  const CliResult v = cli(root_, "verify");
  EXPECT_EQ(v.code, 0) << v.out;
  EXPECT_THAT(v.out, HasSubstr("claim: k"));
}

}  // namespace
